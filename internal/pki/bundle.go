package pki

import (
	"bytes"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strings"
)

// maxBundleRoots is how many roots a bundle holds: the current one, and
// its successor while the root rotates.
const maxBundleRoots = 2

// A Bundle is the set of roots a peer trusts: one, or two during a root
// rotation. A Bundle is immutable and safe for concurrent use; to change
// what is trusted, make a new one.
type Bundle struct {
	roots        []*x509.Certificate
	fingerprints []string
	pool         *x509.CertPool
	pem          []byte
}

// NewBundle returns a bundle of roots, which must be one or two distinct
// self-signed CA certificates.
func NewBundle(roots ...*x509.Certificate) (*Bundle, error) {
	if n := len(roots); n < 1 || n > maxBundleRoots {
		return nil, fmt.Errorf("pki: bundle of %d roots, want 1 to %d", n, maxBundleRoots)
	}
	b := &Bundle{pool: x509.NewCertPool()}
	for _, root := range roots {
		if err := checkRoot(root); err != nil {
			return nil, fmt.Errorf("pki: bundle: %w", err)
		}
		fp := Fingerprint(root)
		if slices.Contains(b.fingerprints, fp) {
			return nil, fmt.Errorf("pki: bundle: root %s appears twice", fp)
		}
		b.roots = append(b.roots, root)
		b.fingerprints = append(b.fingerprints, fp)
		b.pool.AddCert(root)
		b.pem = append(b.pem, CertPEM(root)...)
	}
	return b, nil
}

// checkRoot reports why cert cannot be a root of a bundle.
func checkRoot(cert *x509.Certificate) error {
	if cert == nil {
		return errors.New("nil root")
	}
	if !cert.BasicConstraintsValid || !cert.IsCA {
		return fmt.Errorf("certificate %q is not a CA", cert.Subject.CommonName)
	}
	if err := cert.CheckSignatureFrom(cert); err != nil {
		return fmt.Errorf("certificate %q is not self-signed: %w",
			cert.Subject.CommonName, err)
	}
	return nil
}

// ParseBundle parses a PEM bundle of one or two CA certificates, as
// written by Bundle.PEM. Blocks other than "CERTIFICATE" are an error.
func ParseBundle(pemBytes []byte) (*Bundle, error) {
	var roots []*x509.Certificate
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			break
		}
		if block.Type != pemCertificate {
			return nil, fmt.Errorf("pki: parse bundle: PEM block is %q, want %q",
				block.Type, pemCertificate)
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse bundle: %w", err)
		}
		roots = append(roots, cert)
	}
	if len(bytes.TrimSpace(rest)) != 0 {
		return nil, errors.New("pki: parse bundle: data after the last PEM block")
	}
	return NewBundle(roots...)
}

// PEM returns the bundle's roots as PEM "CERTIFICATE" blocks, in the
// order they were given.
func (b *Bundle) PEM() []byte {
	return bytes.Clone(b.pem)
}

// Pool returns a new certificate pool holding the bundle's roots.
func (b *Bundle) Pool() *x509.CertPool {
	return b.pool.Clone()
}

// Roots returns the bundle's roots in the order they were given. The
// certificates are shared and must not be modified.
func (b *Bundle) Roots() []*x509.Certificate {
	return slices.Clone(b.roots)
}

// Contains reports whether the bundle holds the root with fingerprint, as
// returned by Fingerprint. Hex digits may be of either case.
func (b *Bundle) Contains(fingerprint string) bool {
	return slices.ContainsFunc(b.fingerprints, func(fp string) bool {
		return strings.EqualFold(fp, fingerprint)
	})
}

// Fingerprint returns "sha256:" followed by the lowercase hex SHA-256 of
// cert's DER encoding. It names a root to pin, e.g. in a join command.
func Fingerprint(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.Raw)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// CertPEM returns cert as a PEM "CERTIFICATE" block.
func CertPEM(cert *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: pemCertificate, Bytes: cert.Raw})
}

// ParseCertPEM parses the first "CERTIFICATE" block of pemBytes, skipping
// blocks of other types before it.
func ParseCertPEM(pemBytes []byte) (*x509.Certificate, error) {
	rest := pemBytes
	for {
		var block *pem.Block
		block, rest = pem.Decode(rest)
		if block == nil {
			return nil, errors.New("pki: parse certificate: no CERTIFICATE PEM block")
		}
		if block.Type != pemCertificate {
			continue
		}
		cert, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: parse certificate: %w", err)
		}
		return cert, nil
	}
}
