package pki

import (
	"crypto/x509"
	"net/url"
	"testing"
)

// certWithURIs returns an unsigned certificate carrying uris as URI SANs:
// IdentityOf and NodeIDOf look at nothing else.
func certWithURIs(t *testing.T, uris ...string) *x509.Certificate {
	t.Helper()
	cert := &x509.Certificate{}
	for _, s := range uris {
		u, err := url.Parse(s)
		if err != nil {
			t.Fatal(err)
		}
		cert.URIs = append(cert.URIs, u)
	}
	return cert
}

func TestNodeIdentity(t *testing.T) {
	if got, want := NodeIdentity("a-1"), "spiffe://crosslogic/node/a-1"; got != want {
		t.Errorf("NodeIdentity = %q, want %q", got, want)
	}
	if err := CheckIdentity(NodeIdentity("gpu-7.us-east-1")); err != nil {
		t.Errorf("CheckIdentity(NodeIdentity) = %v, want nil", err)
	}
}

func TestIdentityOf(t *testing.T) {
	tests := []struct {
		name     string
		uris     []string
		identity string // "" means IdentityOf reports false
		nodeID   string // "" means NodeIDOf reports false
	}{
		{name: "none"},
		{name: "gateway", uris: []string{GatewayIdentity}, identity: GatewayIdentity},
		{name: "control plane", uris: []string{ControlPlaneIdentity},
			identity: ControlPlaneIdentity},
		{name: "node", uris: []string{NodeIdentity("a")},
			identity: NodeIdentity("a"), nodeID: "a"},
		{name: "two identities",
			uris: []string{GatewayIdentity, NodeIdentity("a")}},
		{name: "other trust domain ignored",
			uris:     []string{"spiffe://example.org/gateway", NodeIdentity("b")},
			identity: NodeIdentity("b"), nodeID: "b"},
		{name: "other trust domain only", uris: []string{"spiffe://example.org/gateway"}},
		{name: "other scheme", uris: []string{"https://crosslogic/gateway"}},
		{name: "empty node ID", uris: []string{"spiffe://crosslogic/node/"}},
		{name: "dot segment", uris: []string{"spiffe://crosslogic/node/.."}},
		{name: "query", uris: []string{"spiffe://crosslogic/gateway?x=1"}},
		{name: "nested node path", uris: []string{"spiffe://crosslogic/node/a/b"},
			identity: "spiffe://crosslogic/node/a/b"},
		{name: "node prefix only", uris: []string{"spiffe://crosslogic/node"},
			identity: "spiffe://crosslogic/node"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cert := certWithURIs(t, tt.uris...)

			id, ok := IdentityOf(cert)
			if got, want := ok, tt.identity != ""; got != want || id != tt.identity {
				t.Errorf("IdentityOf = %q, %v; want %q, %v", id, got, tt.identity, want)
			}
			nodeID, ok := NodeIDOf(cert)
			if got, want := ok, tt.nodeID != ""; got != want || nodeID != tt.nodeID {
				t.Errorf("NodeIDOf = %q, %v; want %q, %v", nodeID, got, tt.nodeID, want)
			}
		})
	}

	if _, ok := IdentityOf(nil); ok {
		t.Error("IdentityOf(nil) reports true, want false")
	}
}

func TestCheckIdentity(t *testing.T) {
	tests := []struct {
		identity string
		ok       bool
	}{
		{GatewayIdentity, true},
		{ControlPlaneIdentity, true},
		{NodeIdentity("n_1.a-b"), true},
		{"spiffe://crosslogic/", false},
		{"spiffe://crosslogic", false},
		{"spiffe://example.org/gateway", false},
		{"spiffe://crosslogic:443/gateway", false},
		{"spiffe://user@crosslogic/gateway", false},
		{"SPIFFE://crosslogic/gateway", false},
		{"spiffe://crosslogic//gateway", false},
		{"spiffe://crosslogic/gateway/", false},
		{"spiffe://crosslogic/node/./a", false},
		{"spiffe://crosslogic/gateway#x", false},
		{"spiffe://crosslogic/gate way", false},
		{"spiffe://crosslogic/gat%65way", false},
	}
	for _, tt := range tests {
		err := CheckIdentity(tt.identity)
		if got := err == nil; got != tt.ok {
			t.Errorf("CheckIdentity(%q) = %v, want ok %v", tt.identity, err, tt.ok)
		}
	}
}
