package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
)

// PEM block types this package reads and writes.
const (
	pemPrivateKey  = "PRIVATE KEY"
	pemCSR         = "CERTIFICATE REQUEST"
	pemCertificate = "CERTIFICATE"
)

// minRSABits is the smallest RSA modulus SignCSR accepts.
const minRSABits = 2048

// NewKey makes an ECDSA P-256 private key.
func NewKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("pki: generate key: %w", err)
	}
	return key, nil
}

// EncodeKeyPEM encodes key as a PKCS#8 "PRIVATE KEY" PEM block. key must be
// one of the private key types crypto/x509 marshals (*ecdsa.PrivateKey,
// ed25519.PrivateKey, *rsa.PrivateKey).
func EncodeKeyPEM(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// DecodeKeyPEM decodes the first PEM block of pemBytes, which must be a
// PKCS#8 "PRIVATE KEY".
func DecodeKeyPEM(pemBytes []byte) (crypto.Signer, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("pki: decode key: no PEM block")
	}
	if block.Type != pemPrivateKey {
		return nil, fmt.Errorf("pki: decode key: PEM block is %q, want %q",
			block.Type, pemPrivateKey)
	}
	return parseKeyDER(block.Bytes)
}

func parseKeyDER(der []byte) (crypto.Signer, error) {
	key, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("pki: decode key: %w", err)
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: decode key: %T cannot sign", key)
	}
	return signer, nil
}

// NewCSR makes a PEM "CERTIFICATE REQUEST" signed by key, asking for
// dnsNames and ips. It carries no subject and no URI SAN: the control
// plane decides the identity, and the names it grants, when it signs.
func NewCSR(key crypto.Signer, dnsNames []string, ips []net.IP) ([]byte, error) {
	tmpl := &x509.CertificateRequest{DNSNames: dnsNames, IPAddresses: ips}
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		return nil, fmt.Errorf("pki: create CSR: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemCSR, Bytes: der}), nil
}

// ParseCSR parses the first PEM block of pemBytes as a "CERTIFICATE
// REQUEST" and checks its signature, which proves that the sender holds
// the private key of the public key it asks a certificate for.
func ParseCSR(pemBytes []byte) (*x509.CertificateRequest, error) {
	block, _ := pem.Decode(pemBytes)
	if block == nil {
		return nil, errors.New("pki: parse CSR: no PEM block")
	}
	if block.Type != pemCSR {
		return nil, fmt.Errorf("pki: parse CSR: PEM block is %q, want %q",
			block.Type, pemCSR)
	}
	csr, err := x509.ParseCertificateRequest(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("pki: parse CSR: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return nil, fmt.Errorf("pki: check CSR signature: %w", err)
	}
	return csr, nil
}

// checkPublicKey reports whether pub is a key a leaf may certify: one that
// TLS 1.3 can use and that is not too weak.
func checkPublicKey(pub any) error {
	switch k := pub.(type) {
	case *ecdsa.PublicKey:
		switch k.Curve {
		case elliptic.P256(), elliptic.P384(), elliptic.P521():
			return nil
		}
		return fmt.Errorf("pki: unsupported ECDSA curve %s", k.Curve.Params().Name)
	case ed25519.PublicKey:
		return nil
	case *rsa.PublicKey:
		if bits := k.N.BitLen(); bits < minRSABits {
			return fmt.Errorf("pki: RSA key of %d bits, want at least %d",
				bits, minRSABits)
		}
		return nil
	}
	return fmt.Errorf("pki: unsupported public key type %T", pub)
}
