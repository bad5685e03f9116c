package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Default lifetimes.
const (
	// DefaultLeafLifetime is the lifetime of a leaf when none is asked for.
	// Short, because revocation is "stop renewing".
	DefaultLeafLifetime = 24 * time.Hour
	// DefaultRootLifetime is the lifetime of a root made by NewRoot.
	DefaultRootLifetime = 10 * 365 * 24 * time.Hour
)

// clockSkew is how far before "now" a certificate's validity begins, so
// that a peer whose clock is a little behind accepts it at once.
const clockSkew = time.Minute

// serialBits is the size of a random serial number. 128 bits of entropy
// make collisions and prediction out of the question.
const serialBits = 128

// maxCommonName is the longest subject common name RFC 5280 allows.
const maxCommonName = 64

// organization is the subject organization of every certificate made here.
const organization = "CrossLogic"

// RootMaterial is a root as the control plane stores it.
type RootMaterial struct {
	// CertPEM is the root's self-signed certificate as a PEM block.
	CertPEM []byte
	// SealedKey is the root's PKCS#8 private key, sealed with the data
	// key (see Seal). LoadCA opens only the signing root's key, so an
	// older root's SealedKey may be empty.
	SealedKey []byte
}

// NewRoot makes a new root: an ECDSA P-256 self-signed CA certificate,
// valid from a minute before now for DefaultRootLifetime, that signs leaves
// directly (MaxPathLen 0). Its key is sealed with dataKey.
func NewRoot(dataKey []byte, now time.Time) (RootMaterial, error) {
	key, err := NewKey()
	if err != nil {
		return RootMaterial{}, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return RootMaterial{}, fmt.Errorf("pki: new root: %w", err)
	}
	serial, err := newSerial()
	if err != nil {
		return RootMaterial{}, err
	}

	// The short ID tells roots apart in listings; it is derived from the
	// key, so it is stable for the root's whole life.
	sum := sha256.Sum256(pubDER)
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			Organization: []string{organization},
			CommonName:   "CrossLogic Root CA " + hex.EncodeToString(sum[:4]),
		},
		NotBefore:             now.Add(-clockSkew),
		NotAfter:              now.Add(DefaultRootLifetime),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return RootMaterial{}, fmt.Errorf("pki: new root: %w", err)
	}

	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return RootMaterial{}, fmt.Errorf("pki: new root: %w", err)
	}
	sealed, err := Seal(dataKey, keyDER)
	if err != nil {
		return RootMaterial{}, fmt.Errorf("pki: new root: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return RootMaterial{}, fmt.Errorf("pki: new root: %w", err)
	}
	return RootMaterial{CertPEM: CertPEM(cert), SealedKey: sealed}, nil
}

// A CA signs leaves with its signing root and knows the bundle that
// trusts them. A CA is immutable and safe for concurrent use; after a
// rotation step, load a new one.
type CA struct {
	root   *x509.Certificate // the signing root: the last one given to LoadCA
	key    crypto.Signer     // root's private key
	bundle *Bundle           // every root given to LoadCA, in its order
	now    func() time.Time
}

// Options configure a CA.
type Options struct {
	// Now returns the current time; nil means time.Now. Tests set it.
	Now func() time.Time
}

// LoadCA loads a CA from its roots: one, or two during a rotation, when
// both are trusted and the last one signs (see the package doc for the
// order at each step). It opens the signing root's key with dataKey and
// checks that it matches the root. A CA whose signing root has expired
// loads, but SignCSR and Issue then fail.
func LoadCA(roots []RootMaterial, dataKey []byte, o Options) (*CA, error) {
	if n := len(roots); n < 1 || n > maxBundleRoots {
		return nil, fmt.Errorf("pki: load CA: %d roots, want 1 to %d", n, maxBundleRoots)
	}
	certs := make([]*x509.Certificate, len(roots))
	for i, r := range roots {
		cert, err := ParseCertPEM(r.CertPEM)
		if err != nil {
			return nil, fmt.Errorf("pki: load CA: root %d: %w", i, err)
		}
		certs[i] = cert
	}
	bundle, err := NewBundle(certs...)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}

	// Open the signing root's key and make sure it is that root's key: a
	// mismatch would issue leaves that verify nowhere.
	root := certs[len(certs)-1]
	keyDER, err := Open(dataKey, roots[len(roots)-1].SealedKey)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: open root key: %w", err)
	}
	key, err := parseKeyDER(keyDER)
	if err != nil {
		return nil, fmt.Errorf("pki: load CA: %w", err)
	}
	pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool })
	if !ok || !pub.Equal(root.PublicKey) {
		return nil, errors.New("pki: load CA: root key does not match the root certificate")
	}

	now := o.Now
	if now == nil {
		now = time.Now
	}
	return &CA{root: root, key: key, bundle: bundle, now: now}, nil
}

// Bundle returns the bundle of every root the CA was loaded with.
func (ca *CA) Bundle() *Bundle {
	return ca.bundle
}

// Fingerprint returns the fingerprint of the signing root (see the
// package-level Fingerprint): what a join command pins.
func (ca *CA) Fingerprint() string {
	return Fingerprint(ca.root)
}

// Root returns the signing root. It is shared and must not be modified.
func (ca *CA) Root() *x509.Certificate {
	return ca.root
}

// SignCSR issues a leaf for identity certifying csr's public key, after
// checking csr's signature. Everything else csr asks for (subject, DNS
// names, IPs, URIs) is ignored: the leaf's DNS and IP SANs are dnsNames
// and ips, chosen by the caller, and its only URI SAN is identity, so a
// CSR cannot smuggle in an identity. The leaf is valid from a minute ago
// for lifetime (DefaultLeafLifetime if zero), but never past the signing
// root's NotAfter.
func (ca *CA) SignCSR(csr *x509.CertificateRequest, identity string,
	dnsNames []string, ips []net.IP, lifetime time.Duration) (*x509.Certificate, error) {
	if csr == nil {
		return nil, errors.New("pki: sign CSR: nil CSR")
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: sign CSR: check signature: %w", err)
	}
	return ca.sign(csr.PublicKey, identity, dnsNames, ips, lifetime)
}

// Issue makes a key and a leaf for identity in-process, as SignCSR would
// for a CSR, and returns them ready for a tls.Config: Leaf is set and the
// chain is [leaf, signing root]. The gateway and the control plane use it
// for their own certificates; the root is sent so that an agent pinning
// its fingerprint (PinnedConfig) finds it.
func (ca *CA) Issue(identity string, dnsNames []string, ips []net.IP,
	lifetime time.Duration) (*tls.Certificate, error) {
	key, err := NewKey()
	if err != nil {
		return nil, err
	}
	leaf, err := ca.sign(key.Public(), identity, dnsNames, ips, lifetime)
	if err != nil {
		return nil, err
	}
	return &tls.Certificate{
		Certificate: [][]byte{leaf.Raw, ca.root.Raw},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// sign issues a leaf for pub. See SignCSR.
func (ca *CA) sign(pub any, identity string, dnsNames []string, ips []net.IP,
	lifetime time.Duration) (*x509.Certificate, error) {
	if err := CheckIdentity(identity); err != nil {
		return nil, err
	}
	if err := checkPublicKey(pub); err != nil {
		return nil, err
	}
	if lifetime < 0 {
		return nil, fmt.Errorf("pki: negative lifetime %v", lifetime)
	}
	if lifetime == 0 {
		lifetime = DefaultLeafLifetime
	}
	uri, err := url.Parse(identity)
	if err != nil {
		return nil, fmt.Errorf("pki: identity %q: %w", identity, err)
	}

	// Validity: from a minute ago for lifetime, inside the root's own
	// validity. Go checks each certificate of a chain against the current
	// time, so a leaf outliving its root would stop verifying early anyway;
	// clamping makes the leaf say so, and RenewAt then schedules from it.
	//
	// The backdating for clock skew is at most an eighth of the lifetime:
	// renewal is scheduled at ~2/3 of NotAfter-NotBefore from NotBefore,
	// which is now + 2/3·lifetime - 1/3·skew, and must stay in the future
	// even for the lifetimes of seconds that tests use.
	now := ca.now()
	notBefore := now.Add(-min(clockSkew, lifetime/8))
	if notBefore.Before(ca.root.NotBefore) {
		notBefore = ca.root.NotBefore
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.root.NotAfter) {
		notAfter = ca.root.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("pki: signing root %s expired at %s",
			Fingerprint(ca.root), ca.root.NotAfter.UTC().Format(time.RFC3339))
	}

	serial, err := newSerial()
	if err != nil {
		return nil, err
	}
	// Every leaf may both serve and dial: an agent serves the gateway and
	// dials the control plane with the same certificate.
	eku := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               leafSubject(identity),
		NotBefore:             notBefore,
		NotAfter:              notAfter,
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           eku,
		BasicConstraintsValid: true,
		DNSNames:              dnsNames,
		IPAddresses:           ips,
		URIs:                  []*url.URL{uri},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, pub, ca.key)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", identity, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("pki: sign %s: %w", identity, err)
	}
	return leaf, nil
}

// leafSubject names a leaf for people reading it (openssl x509 -text,
// logs). Verification never looks at the subject, only at the URI SAN.
func leafSubject(identity string) pkix.Name {
	name := pkix.Name{Organization: []string{organization}}
	if len(identity) <= maxCommonName {
		name.CommonName = identity
	}
	return name
}

// newSerial returns a random positive serial number of serialBits bits.
func newSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), serialBits)
	for {
		n, err := rand.Int(rand.Reader, limit)
		if err != nil {
			return nil, fmt.Errorf("pki: generate serial number: %w", err)
		}
		if n.Sign() > 0 {
			return n, nil
		}
	}
}
