package pki

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"strings"
	"testing"
)

func TestBundle(t *testing.T) {
	dataKey := newDataKey(t)
	a := loadCA(t, dataKey, testNow, newRoot(t, dataKey, testNow)).Root()
	b := loadCA(t, dataKey, testNow, newRoot(t, dataKey, testNow)).Root()

	bundle, err := NewBundle(a, b)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ParseBundle(bundle.PEM())
	if err != nil {
		t.Fatalf("ParseBundle(PEM()): %v", err)
	}
	roots := parsed.Roots()
	if len(roots) != 2 || !roots[0].Equal(a) || !roots[1].Equal(b) {
		t.Fatalf("ParseBundle(PEM()) has %d roots, want [a, b] in order", len(roots))
	}

	tests := []struct {
		fingerprint string
		want        bool
	}{
		{Fingerprint(a), true},
		{Fingerprint(b), true},
		{strings.ToUpper(Fingerprint(b)), true},
		{"sha256:" + strings.Repeat("0", 64), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := parsed.Contains(tt.fingerprint); got != tt.want {
			t.Errorf("Contains(%q) = %v, want %v", tt.fingerprint, got, tt.want)
		}
	}

	// What callers get back is theirs to change.
	other := newCA(t, testNow)
	bundle.Pool().AddCert(other.Root())
	bundle.PEM()[0] = 'X'
	if !bytes.Equal(bundle.PEM(), parsed.PEM()) {
		t.Error("changing PEM()'s result changed the bundle")
	}
	opts := x509.VerifyOptions{Roots: bundle.Pool(), CurrentTime: testNow}
	if _, err := issue(t, other, GatewayIdentity).Leaf.Verify(opts); err == nil {
		t.Error("adding to Pool()'s result changed the bundle")
	}
}

func TestFingerprint(t *testing.T) {
	root := newCA(t, testNow).Root()
	fp := Fingerprint(root)
	if !strings.HasPrefix(fp, "sha256:") || len(fp) != len("sha256:")+64 ||
		strings.ToLower(fp) != fp {
		t.Errorf("Fingerprint = %q, want sha256: and 64 lowercase hex digits", fp)
	}
}

func TestBundleRefuses(t *testing.T) {
	dataKey := newDataKey(t)
	ca := loadCA(t, dataKey, testNow, newRoot(t, dataKey, testNow))
	a := ca.Root()
	b := newCA(t, testNow).Root()
	c := newCA(t, testNow).Root()
	leaf := issue(t, ca, GatewayIdentity).Leaf

	tests := []struct {
		name  string
		roots []*x509.Certificate
	}{
		{"none", nil},
		{"three", []*x509.Certificate{a, b, c}},
		{"duplicate", []*x509.Certificate{a, a}},
		{"leaf", []*x509.Certificate{leaf}},
		{"nil", []*x509.Certificate{nil}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewBundle(tt.roots...); err == nil {
				t.Error("NewBundle: got nil error, want one")
			}
			var pemBytes []byte
			for _, r := range tt.roots {
				if r != nil {
					pemBytes = append(pemBytes, CertPEM(r)...)
				}
			}
			if _, err := ParseBundle(pemBytes); err == nil {
				t.Error("ParseBundle: got nil error, want one")
			}
		})
	}

	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})
	bad := map[string][]byte{
		"key block":      append(CertPEM(a), key...),
		"trailing bytes": append(CertPEM(a), "trailing"...),
		"bad DER":        pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}}),
	}
	for name, b := range bad {
		if _, err := ParseBundle(b); err == nil {
			t.Errorf("ParseBundle(%s): got nil error, want one", name)
		}
	}
}

func TestParseCertPEM(t *testing.T) {
	root := newCA(t, testNow).Root()
	key := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})

	got, err := ParseCertPEM(append(key, CertPEM(root)...))
	if err != nil {
		t.Fatalf("ParseCertPEM: %v", err)
	}
	if !got.Equal(root) {
		t.Error("ParseCertPEM did not return the first certificate")
	}
	if _, err := ParseCertPEM(key); err == nil {
		t.Error("ParseCertPEM(key only): got nil error, want one")
	}
}
