package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestNewRootLoadCA(t *testing.T) {
	dataKey := newDataKey(t)
	material := newRoot(t, dataKey, testNow)
	root, err := ParseCertPEM(material.CertPEM)
	if err != nil {
		t.Fatal(err)
	}

	cn := regexp.MustCompile(`^CrossLogic Root CA [0-9a-f]{8}$`)
	if got := root.Subject.CommonName; !cn.MatchString(got) {
		t.Errorf("CommonName = %q, want a match for %s", got, cn)
	}
	if !root.IsCA || !root.BasicConstraintsValid {
		t.Errorf("IsCA = %v, BasicConstraintsValid = %v; want true, true",
			root.IsCA, root.BasicConstraintsValid)
	}
	if root.MaxPathLen != 0 || !root.MaxPathLenZero {
		t.Errorf("MaxPathLen = %d (zero %v), want 0 (zero true)",
			root.MaxPathLen, root.MaxPathLenZero)
	}
	if got, want := root.KeyUsage, x509.KeyUsageCertSign|x509.KeyUsageCRLSign; got != want {
		t.Errorf("KeyUsage = %v, want %v", got, want)
	}
	if got, want := root.NotBefore, testNow.Add(-time.Minute); !got.Equal(want) {
		t.Errorf("NotBefore = %v, want %v", got, want)
	}
	if got, want := root.NotAfter, testNow.Add(DefaultRootLifetime); !got.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got, want)
	}
	pub, ok := root.PublicKey.(*ecdsa.PublicKey)
	if !ok || pub.Curve != elliptic.P256() {
		t.Errorf("public key is %T, want an ECDSA P-256 key", root.PublicKey)
	}
	if err := root.CheckSignatureFrom(root); err != nil {
		t.Errorf("root is not self-signed: %v", err)
	}
	if bytes.Contains(material.SealedKey, pub.X.Bytes()) {
		t.Error("sealed key contains the public point: is it sealed at all?")
	}

	ca := loadCA(t, dataKey, testNow, material)
	if !ca.Root().Equal(root) {
		t.Error("Root() is not the root made by NewRoot")
	}
	if got, want := ca.Fingerprint(), Fingerprint(root); got != want {
		t.Errorf("Fingerprint() = %q, want %q", got, want)
	}
	if got, want := len(ca.Bundle().Roots()), 1; got != want {
		t.Errorf("bundle has %d roots, want %d", got, want)
	}
	if !ca.Bundle().Contains(ca.Fingerprint()) {
		t.Error("bundle does not contain the signing root")
	}
}

func TestLoadCARefuses(t *testing.T) {
	dataKey := newDataKey(t)
	a := newRoot(t, dataKey, testNow)
	b := newRoot(t, dataKey, testNow)
	c := newRoot(t, dataKey, testNow)
	leaf := issue(t, loadCA(t, dataKey, testNow, a), GatewayIdentity)

	tests := []struct {
		name    string
		roots   []RootMaterial
		dataKey []byte
		wantErr error // checked with errors.Is when set
	}{
		{name: "wrong data key", roots: []RootMaterial{a}, dataKey: newDataKey(t),
			wantErr: ErrWrongDataKey},
		{name: "no roots", dataKey: dataKey},
		{name: "three roots", roots: []RootMaterial{a, b, c}, dataKey: dataKey},
		{name: "same root twice", roots: []RootMaterial{a, a}, dataKey: dataKey},
		{name: "key of another root", dataKey: dataKey,
			roots: []RootMaterial{{CertPEM: a.CertPEM, SealedKey: b.SealedKey}}},
		{name: "no sealed key", dataKey: dataKey,
			roots: []RootMaterial{{CertPEM: a.CertPEM}}, wantErr: ErrSealedCorrupt},
		{name: "not PEM", dataKey: dataKey,
			roots: []RootMaterial{{CertPEM: []byte("root"), SealedKey: a.SealedKey}}},
		{name: "leaf as root", dataKey: dataKey,
			roots: []RootMaterial{{CertPEM: CertPEM(leaf.Leaf), SealedKey: a.SealedKey}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca, err := LoadCA(tt.roots, tt.dataKey, Options{Now: clock(testNow)})
			if err == nil {
				t.Fatalf("LoadCA = %v, nil; want an error", ca)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Fatalf("LoadCA error = %v, want %v", err, tt.wantErr)
			}
			if !strings.HasPrefix(err.Error(), "pki: ") {
				t.Errorf("error %q lacks the package prefix", err)
			}
		})
	}
}

// newCSR makes a CSR from tmpl signed by a new P-256 key and returns it
// parsed.
func newCSR(t *testing.T, tmpl *x509.CertificateRequest) *x509.CertificateRequest {
	t.Helper()
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	return csrWithKey(t, tmpl, key)
}

func csrWithKey(t *testing.T, tmpl *x509.CertificateRequest,
	key crypto.Signer) *x509.CertificateRequest {
	t.Helper()
	der, err := x509.CreateCertificateRequest(rand.Reader, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	csr, err := x509.ParseCertificateRequest(der)
	if err != nil {
		t.Fatal(err)
	}
	return csr
}

func TestSignCSR(t *testing.T) {
	dataKey := newDataKey(t)
	material := newRoot(t, dataKey, testNow)
	rootNotAfter := testNow.Add(DefaultRootLifetime)

	identity := NodeIdentity("a")
	dnsNames := []string{"a.nodes.crosslogic.internal"}
	ips := []net.IP{net.ParseIP("203.0.113.7").To4()}
	smuggler := &x509.CertificateRequest{
		Subject:     pkix.Name{CommonName: GatewayIdentity},
		DNSNames:    []string{"gateway.example.com"},
		IPAddresses: []net.IP{net.IPv4(10, 0, 0, 1)},
		URIs:        []*url.URL{{Scheme: "spiffe", Host: TrustDomain, Path: "/gateway"}},
	}

	tests := []struct {
		name         string
		csr          *x509.CertificateRequest
		now          time.Time // the CA's clock
		lifetime     time.Duration
		wantNotAfter time.Time
	}{
		{name: "default lifetime", csr: newCSR(t, &x509.CertificateRequest{}),
			now: testNow, wantNotAfter: testNow.Add(DefaultLeafLifetime)},
		{name: "one hour", csr: newCSR(t, &x509.CertificateRequest{}),
			now: testNow, lifetime: time.Hour, wantNotAfter: testNow.Add(time.Hour)},
		{name: "CSR asks for another identity and names", csr: newCSR(t, smuggler),
			now: testNow, wantNotAfter: testNow.Add(DefaultLeafLifetime)},
		{name: "clamped to the root's expiry", csr: newCSR(t, &x509.CertificateRequest{}),
			now: rootNotAfter.Add(-time.Hour), wantNotAfter: rootNotAfter},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := loadCA(t, dataKey, tt.now, material)
			leaf, err := ca.SignCSR(tt.csr, identity, dnsNames, ips, tt.lifetime)
			if err != nil {
				t.Fatalf("SignCSR: %v", err)
			}

			// Identity and names are the caller's, never the CSR's.
			if got, ok := IdentityOf(leaf); !ok || got != identity {
				t.Errorf("identity = %q, %v; want %q, true", got, ok, identity)
			}
			if got, want := len(leaf.URIs), 1; got != want {
				t.Errorf("%d URI SANs, want %d", got, want)
			}
			if !slices.Equal(leaf.DNSNames, dnsNames) {
				t.Errorf("DNSNames = %q, want %q", leaf.DNSNames, dnsNames)
			}
			if !slices.EqualFunc(leaf.IPAddresses, ips, net.IP.Equal) {
				t.Errorf("IPAddresses = %v, want %v", leaf.IPAddresses, ips)
			}
			if leaf.Subject.CommonName != identity {
				t.Errorf("CommonName = %q, want %q", leaf.Subject.CommonName, identity)
			}
			if !publicKeysEqual(leaf.PublicKey, tt.csr.PublicKey) {
				t.Error("leaf does not certify the CSR's public key")
			}

			// Validity.
			if got, want := leaf.NotBefore, tt.now.Add(-time.Minute); !got.Equal(want) {
				t.Errorf("NotBefore = %v, want %v", got, want)
			}
			if got, want := leaf.NotAfter, tt.wantNotAfter; !got.Equal(want) {
				t.Errorf("NotAfter = %v, want %v", got, want)
			}

			// Usage.
			wantEKU := []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth,
				x509.ExtKeyUsageClientAuth}
			if !slices.Equal(leaf.ExtKeyUsage, wantEKU) {
				t.Errorf("ExtKeyUsage = %v, want %v", leaf.ExtKeyUsage, wantEKU)
			}
			if got, want := leaf.KeyUsage, x509.KeyUsageDigitalSignature; got != want {
				t.Errorf("KeyUsage = %v, want %v", got, want)
			}
			if leaf.IsCA {
				t.Error("leaf is a CA")
			}
			if s := leaf.SerialNumber; s.Sign() <= 0 || s.BitLen() > 128 {
				t.Errorf("serial number %v, want positive and at most 128 bits", s)
			}
			_, err = leaf.Verify(x509.VerifyOptions{
				Roots:       ca.Bundle().Pool(),
				CurrentTime: tt.now,
				KeyUsages:   wantEKU,
			})
			if err != nil {
				t.Errorf("leaf does not verify: %v", err)
			}
		})
	}
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func TestSignCSRRefuses(t *testing.T) {
	dataKey := newDataKey(t)
	material := newRoot(t, dataKey, testNow)
	rootNotAfter := testNow.Add(DefaultRootLifetime)
	good := newCSR(t, &x509.CertificateRequest{})

	badSig := newCSR(t, &x509.CertificateRequest{})
	badSig.Signature = bytes.Clone(badSig.Signature)
	badSig.Signature[len(badSig.Signature)-1] ^= 0x01

	weakKey, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	weak := csrWithKey(t, &x509.CertificateRequest{}, weakKey)

	tests := []struct {
		name     string
		csr      *x509.CertificateRequest
		identity string
		lifetime time.Duration
		now      time.Time
		want     string // in the error
	}{
		{"other trust domain", good, "spiffe://example.org/node/a", 0, testNow,
			"does not begin with"},
		{"empty identity path", good, "spiffe://crosslogic/", 0, testNow, "empty"},
		{"negative lifetime", good, NodeIdentity("a"), -time.Hour, testNow, "negative"},
		{"root expired", good, NodeIdentity("a"), 0, rootNotAfter.Add(time.Second),
			"expired"},
		{"nil CSR", nil, NodeIdentity("a"), 0, testNow, "nil CSR"},
		{"bad signature", badSig, NodeIdentity("a"), 0, testNow, "signature"},
		{"weak key", weak, NodeIdentity("a"), 0, testNow, "1024 bits"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ca := loadCA(t, dataKey, tt.now, material)
			leaf, err := ca.SignCSR(tt.csr, tt.identity, nil, nil, tt.lifetime)
			if err == nil {
				t.Fatalf("SignCSR issued %v, want an error", leaf.Subject)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error = %q, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestIssue(t *testing.T) {
	ca := newCA(t, testNow)
	ips := []net.IP{net.IPv4(127, 0, 0, 1)}
	cert, err := ca.Issue(GatewayIdentity, []string{"localhost"}, ips, 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}

	if got, want := len(cert.Certificate), 2; got != want {
		t.Fatalf("chain of %d certificates, want %d", got, want)
	}
	if !bytes.Equal(cert.Certificate[0], cert.Leaf.Raw) {
		t.Error("chain[0] is not Leaf")
	}
	if !bytes.Equal(cert.Certificate[1], ca.Root().Raw) {
		t.Error("chain[1] is not the signing root")
	}
	if got, ok := IdentityOf(cert.Leaf); !ok || got != GatewayIdentity {
		t.Errorf("identity = %q, %v; want %q, true", got, ok, GatewayIdentity)
	}
	if got, want := cert.Leaf.NotAfter, testNow.Add(2*time.Hour); !got.Equal(want) {
		t.Errorf("NotAfter = %v, want %v", got, want)
	}
	signer, ok := cert.PrivateKey.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), cert.Leaf.PublicKey) {
		t.Error("private key does not match the leaf")
	}

	again := issue(t, ca, GatewayIdentity)
	if again.Leaf.SerialNumber.Cmp(cert.Leaf.SerialNumber) == 0 {
		t.Error("two leaves have the same serial number")
	}
}

func TestKeyPEM(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := key.Curve, elliptic.P256(); got != want {
		t.Errorf("curve = %v, want %v", got.Params().Name, want.Params().Name)
	}
	encoded, err := EncodeKeyPEM(key)
	if err != nil {
		t.Fatal(err)
	}
	if block, _ := pem.Decode(encoded); block == nil || block.Type != "PRIVATE KEY" {
		t.Fatalf("EncodeKeyPEM wrote %q, want a PRIVATE KEY block", encoded)
	}
	decoded, err := DecodeKeyPEM(encoded)
	if err != nil {
		t.Fatal(err)
	}
	if !key.Equal(decoded) {
		t.Error("decoded key differs from the encoded one")
	}

	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	bad := map[string][]byte{
		"not PEM":    []byte("key"),
		"SEC 1 type": pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}),
		"garbage":    pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}}),
	}
	for name, b := range bad {
		if _, err := DecodeKeyPEM(b); err == nil {
			t.Errorf("DecodeKeyPEM(%s): got nil error, want one", name)
		}
	}
}

func TestParseCSR(t *testing.T) {
	key, err := NewKey()
	if err != nil {
		t.Fatal(err)
	}
	dnsNames := []string{"node.example"}
	ips := []net.IP{net.IPv4(192, 0, 2, 1)}
	good, err := NewCSR(key, dnsNames, ips)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(good)
	tampered := bytes.Clone(block.Bytes)
	tampered[len(tampered)-1] ^= 0x01 // inside the signature, at the end

	tests := []struct {
		name string
		pem  []byte
		ok   bool
	}{
		{"good", good, true},
		{"bad signature", pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: tampered}),
			false},
		{"wrong block type",
			pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: block.Bytes}), false},
		{"not PEM", []byte("csr"), false},
		{"garbage", pem.EncodeToMemory(&pem.Block{Type: block.Type, Bytes: []byte{0}}),
			false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			csr, err := ParseCSR(tt.pem)
			if got := err == nil; got != tt.ok {
				t.Fatalf("ParseCSR error = %v, want ok %v", err, tt.ok)
			}
			if !tt.ok {
				return
			}
			if len(csr.URIs) != 0 {
				t.Errorf("CSR has URI SANs %v, want none", csr.URIs)
			}
			if !slices.Equal(csr.DNSNames, dnsNames) {
				t.Errorf("DNSNames = %q, want %q", csr.DNSNames, dnsNames)
			}
			if !slices.EqualFunc(csr.IPAddresses, ips, net.IP.Equal) {
				t.Errorf("IPAddresses = %v, want %v", csr.IPAddresses, ips)
			}
			if !publicKeysEqual(csr.PublicKey, key.Public()) {
				t.Error("CSR does not carry the key's public key")
			}
		})
	}
}

func TestCheckPublicKey(t *testing.T) {
	p384, err := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	p224, err := ecdsa.GenerateKey(elliptic.P224(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	edPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name string
		pub  any
		ok   bool
	}{
		{"P-384", p384.Public(), true},
		{"Ed25519", edPub, true},
		{"P-224", p224.Public(), false},
		{"not a key", "key", false},
	}
	for _, tt := range tests {
		err := checkPublicKey(tt.pub)
		if got := err == nil; got != tt.ok {
			t.Errorf("checkPublicKey(%s) = %v, want ok %v", tt.name, err, tt.ok)
		}
	}
}
