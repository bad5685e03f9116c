package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// A Source is what a TLS configuration of this package reads at every
// handshake, so that a renewed certificate or a new trust bundle is used
// from the next handshake on, without restarting a listener or dropping
// the connections already open. Its funcs are called concurrently and
// should be cheap: an atomic.Pointer's Load is the usual implementation.
type Source struct {
	// Certificate returns the certificate to present. A nil func, or a
	// nil result, means none: a server then fails the handshake, a client
	// proceeds without a client certificate.
	Certificate func() *tls.Certificate
	// Bundle returns the roots a peer's certificate must chain to. A nil
	// func, or a nil result, refuses every peer.
	Bundle func() *Bundle
	// Now returns the time certificates are checked at; nil means
	// time.Now.
	Now func() time.Time
}

func (s Source) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s Source) certificate() *tls.Certificate {
	if s.Certificate == nil {
		return nil
	}
	return s.Certificate()
}

func (s Source) bundle() *Bundle {
	if s.Bundle == nil {
		return nil
	}
	return s.Bundle()
}

// getCertificate is a server's tls.Config.GetCertificate.
func (s Source) getCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c := s.certificate(); c != nil {
		return c, nil
	}
	return nil, errors.New("pki: no certificate to present")
}

// ErrNoPeerCertificate is wrapped by a PeerError when the peer presented
// no certificate.
var ErrNoPeerCertificate = errors.New("pki: peer presented no certificate")

// A PeerError is why the certificate a peer presented during a handshake
// was refused. The handshake fails with it on the side that refused.
type PeerError struct {
	// Peer is the side that was refused: "client" or "server".
	Peer string
	// Presented is the identity in the peer's certificate, or empty if it
	// presented no certificate or one without an identity.
	Presented string
	// Want is the identity that was required, or empty when any identity
	// an allow func accepts would have done.
	Want string
	// Err is why the certificate did not verify, or nil if it verified
	// but its identity is not the one wanted.
	Err error
}

// Error says what was presented, what was wanted and why it was refused.
func (e *PeerError) Error() string {
	var b strings.Builder
	b.WriteString("pki: " + e.Peer + " presented ")
	switch {
	case errors.Is(e.Err, ErrNoPeerCertificate):
		b.WriteString("no certificate")
	case e.Presented == "":
		b.WriteString("a certificate without a crosslogic identity")
	default:
		fmt.Fprintf(&b, "identity %q", e.Presented)
	}
	if e.Want != "" {
		fmt.Fprintf(&b, ", want %q", e.Want)
	}
	switch {
	case errors.Is(e.Err, ErrNoPeerCertificate):
	case e.Err != nil:
		fmt.Fprintf(&b, ": %v", e.Err)
	case e.Want == "":
		b.WriteString(", which is not allowed here")
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *PeerError) Unwrap() error { return e.Err }

// verifyPeer checks that certs, as presented by a peer, begin with a leaf
// that chains to bundle at now and may be used for usage. It returns the
// leaf's identity, empty if it has none, even when verification fails, so
// that errors can name it.
func verifyPeer(certs []*x509.Certificate, bundle *Bundle, now time.Time,
	usage x509.ExtKeyUsage) (string, error) {
	if len(certs) == 0 {
		return "", ErrNoPeerCertificate
	}
	leaf := certs[0]
	identity, ok := IdentityOf(leaf)
	if bundle == nil {
		return identity, errors.New("no trust bundle to verify against")
	}
	if leaf.IsCA {
		return identity, errors.New("certificate is a CA, not a leaf")
	}

	// No intermediates: roots sign leaves directly (MaxPathLen 0), so
	// whatever the peer sent after its leaf (normally the root itself) is
	// never used to build a path. No DNSName: hostnames are not checked,
	// because node addresses are ephemeral; the identity is checked
	// instead.
	_, err := leaf.Verify(x509.VerifyOptions{
		Roots:       bundle.pool,
		CurrentTime: now,
		KeyUsages:   []x509.ExtKeyUsage{usage},
	})
	if err != nil {
		return identity, fmt.Errorf("certificate does not verify: %w", err)
	}
	if !ok {
		return "", errors.New("certificate has no single crosslogic URI SAN")
	}
	return identity, nil
}

// Allow returns an allow func for ServerConfig that accepts exactly the
// given identities.
func Allow(identities ...string) func(identity string) bool {
	identities = slices.Clone(identities)
	return func(identity string) bool {
		return slices.Contains(identities, identity)
	}
}

// ServerConfig returns a TLS 1.3 server configuration that presents src's
// certificate and requires a client certificate that chains to src's
// bundle, is valid for client authentication at src's time, and whose
// identity allow accepts. A nil allow accepts nobody.
//
// Verification happens in VerifyConnection, which also runs when a client
// resumes a session, so a resumed session is checked against the current
// bundle and time too.
func ServerConfig(src Source, allow func(identity string) bool) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: src.getCertificate,
		// RequireAnyClientCert makes a certificate mandatory but leaves
		// its verification to VerifyConnection below.
		ClientAuth: tls.RequireAnyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			identity, err := verifyPeer(cs.PeerCertificates, src.bundle(), src.now(),
				x509.ExtKeyUsageClientAuth)
			if err != nil {
				return &PeerError{Peer: "client", Presented: identity, Err: err}
			}
			if allow == nil || !allow(identity) {
				return &PeerError{Peer: "client", Presented: identity}
			}
			return nil
		},
		Time: src.Now,
	}
}

// ServerConfigOptionalClient returns a TLS 1.3 server configuration for
// the control plane's agent API. A client certificate is not required,
// since an agent's first call (register) carries a join token instead, but
// one that is presented must chain to src's bundle, be valid for client
// authentication at src's time and carry an identity, or the handshake
// fails. Handlers learn who called with PeerIdentity.
func ServerConfigOptionalClient(src Source) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS13,
		GetCertificate: src.getCertificate,
		// RequestClientCert asks for a certificate without requiring or
		// verifying one: VerifyConnection gives it the meaning of
		// tls.VerifyClientCertIfGiven, with our identity check added.
		ClientAuth: tls.RequestClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			if len(cs.PeerCertificates) == 0 {
				return nil
			}
			identity, err := verifyPeer(cs.PeerCertificates, src.bundle(), src.now(),
				x509.ExtKeyUsageClientAuth)
			if err != nil {
				return &PeerError{Peer: "client", Presented: identity, Err: err}
			}
			return nil
		},
		Time: src.Now,
	}
}

// ClientConfig returns a TLS 1.3 client configuration that presents src's
// certificate when the server asks for one (none if src has none) and
// requires a server certificate that chains to src's bundle, is valid for
// server authentication at src's time, and has identity want. The server's
// hostname or IP address is not checked.
func ClientConfig(src Source, want string) *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// SECURITY: InsecureSkipVerify only turns off crypto/tls's own
		// verification, which would check the hostname against the
		// certificate, and hostnames mean nothing here. The server's
		// certificate IS verified, in VerifyConnection below: chain to
		// the bundle, validity, key usage and identity. Never copy this
		// line without the VerifyConnection that goes with it.
		InsecureSkipVerify: true,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			if c := src.certificate(); c != nil {
				return c, nil
			}
			return new(tls.Certificate), nil // an empty one sends none
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			return checkServer(cs, src.bundle(), src.now(), want)
		},
		Time: src.Now,
	}
}

// checkServer verifies the server's certificate of cs and requires
// identity want.
func checkServer(cs tls.ConnectionState, bundle *Bundle, now time.Time, want string) error {
	identity, err := verifyPeer(cs.PeerCertificates, bundle, now, x509.ExtKeyUsageServerAuth)
	if err != nil {
		return &PeerError{Peer: "server", Presented: identity, Want: want, Err: err}
	}
	if identity != want {
		return &PeerError{Peer: "server", Presented: identity, Want: want}
	}
	return nil
}

// PinnedConfig returns a TLS 1.3 client configuration for an agent's first
// contact with the control plane, before it has a bundle. It accepts a
// server whose chain includes, after the leaf, the CA certificate with the
// given fingerprint (see Fingerprint), whose leaf verifies to that CA at
// now (nil means time.Now), and whose identity is ControlPlaneIdentity.
// It presents no client certificate.
func PinnedConfig(fingerprint string, now func() time.Time) *tls.Config {
	if now == nil {
		now = time.Now
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS13,
		// SECURITY: as in ClientConfig, crypto/tls's verification is off
		// because it would check the hostname; VerifyConnection below
		// verifies the chain against the pinned root and the identity.
		InsecureSkipVerify: true,
		VerifyConnection: func(cs tls.ConnectionState) error {
			bundle, err := pinnedBundle(cs.PeerCertificates, fingerprint)
			if err != nil {
				var identity string
				if len(cs.PeerCertificates) > 0 {
					identity, _ = IdentityOf(cs.PeerCertificates[0])
				}
				return &PeerError{Peer: "server", Presented: identity,
					Want: ControlPlaneIdentity, Err: err}
			}
			return checkServer(cs, bundle, now(), ControlPlaneIdentity)
		},
		Time: now,
	}
}

// pinnedBundle finds the certificate with fingerprint among those a server
// sent after its leaf and returns a bundle of it alone. Its fingerprint
// is what makes it trusted; NewBundle still checks that it is a root.
func pinnedBundle(certs []*x509.Certificate, fingerprint string) (*Bundle, error) {
	for i, cert := range certs {
		if i > 0 && strings.EqualFold(Fingerprint(cert), fingerprint) {
			return NewBundle(cert)
		}
	}
	return nil, fmt.Errorf("chain does not include the pinned root %s", fingerprint)
}

// PeerIdentity returns the identity of the client certificate of cs, the
// state of a connection accepted with ServerConfig or
// ServerConfigOptionalClient: those refuse the handshake unless the
// certificate verified, so a certificate present here is a verified one.
// It reports false if the client presented none. Do not use it with other
// configurations.
func PeerIdentity(cs *tls.ConnectionState) (string, bool) {
	if cs == nil || len(cs.PeerCertificates) == 0 {
		return "", false
	}
	return IdentityOf(cs.PeerCertificates[0])
}
