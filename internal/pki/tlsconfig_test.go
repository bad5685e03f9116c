package pki

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// anyErr, as the only want of checkErr, asks for an error of any kind. A
// client refused by the server learns it from the server's alert, or from a
// reset if the server closed first: only the refusing side's error says
// why.
const anyErr = ""

// checkErr fails t unless err is nil when wants is empty, or contains
// every string of wants otherwise.
func checkErr(t *testing.T, what string, err error, wants ...string) {
	t.Helper()
	if len(wants) == 0 {
		if err != nil {
			t.Errorf("%s: got error %q, want none", what, err)
		}
		return
	}
	if err == nil {
		t.Errorf("%s: got no error, want one containing %q", what, wants)
		return
	}
	for _, want := range wants {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%s: got error %q, want it to contain %q", what, err, want)
		}
	}
}

// TestMutualTLS runs the gateway → agent hop: the agent's server allows
// only the gateway, and the gateway requires the node it meant to reach.
func TestMutualTLS(t *testing.T) {
	ca := newCA(t, testNow)
	other := newCA(t, testNow) // a CA nobody trusts

	gateway := issue(t, ca, GatewayIdentity)
	nodeA := issue(t, ca, NodeIdentity("a"))
	nodeB := issue(t, ca, NodeIdentity("b"))
	nodeX := issue(t, ca, NodeIdentity("x"))
	foreignGateway := issue(t, other, GatewayIdentity)
	foreignNodeA := issue(t, other, NodeIdentity("a"))

	tests := []struct {
		name       string
		client     *tls.Certificate // nil: the gateway presents none
		server     *tls.Certificate
		serverNow  time.Time // the agent's clock
		want       string    // the node the gateway means to reach
		clientErrs []string  // what the gateway's error says; none: success
		serverErrs []string  // what the agent's handshake error says
	}{
		{
			name:   "gateway reaches node a",
			client: gateway, server: nodeA, serverNow: testNow, want: NodeIdentity("a"),
		},
		{
			name:   "no client certificate",
			client: nil, server: nodeA, serverNow: testNow, want: NodeIdentity("a"),
			clientErrs: []string{anyErr},
			serverErrs: []string{"certificate"},
		},
		{
			name:   "client certificate from another CA",
			client: foreignGateway, server: nodeA, serverNow: testNow,
			want:       NodeIdentity("a"),
			clientErrs: []string{anyErr},
			serverErrs: []string{GatewayIdentity, "does not verify", "unknown authority"},
		},
		{
			name:   "node identity where the gateway is required",
			client: nodeX, server: nodeA, serverNow: testNow, want: NodeIdentity("a"),
			clientErrs: []string{anyErr},
			serverErrs: []string{`presented identity "spiffe://crosslogic/node/x"`,
				"not allowed"},
		},
		{
			name:   "expired client certificate",
			client: gateway, server: nodeA, want: NodeIdentity("a"),
			serverNow:  gateway.Leaf.NotAfter.Add(time.Minute),
			clientErrs: []string{anyErr},
			serverErrs: []string{GatewayIdentity, "expired"},
		},
		{
			name:   "client certificate not yet valid",
			client: gateway, server: nodeA, want: NodeIdentity("a"),
			serverNow:  gateway.Leaf.NotBefore.Add(-time.Minute),
			clientErrs: []string{anyErr},
			serverErrs: []string{GatewayIdentity, "not yet valid"},
		},
		{
			name:   "node b answers where node a was expected",
			client: gateway, server: nodeB, serverNow: testNow, want: NodeIdentity("a"),
			clientErrs: []string{
				`presented identity "spiffe://crosslogic/node/b"`,
				`want "spiffe://crosslogic/node/a"`,
			},
			serverErrs: []string{"bad certificate"},
		},
		{
			name:   "agent has no certificate yet",
			client: gateway, server: nil, serverNow: testNow, want: NodeIdentity("a"),
			clientErrs: []string{anyErr},
			serverErrs: []string{"no certificate to present"},
		},
		{
			name:   "server certificate from another CA",
			client: gateway, server: foreignNodeA, serverNow: testNow,
			want: NodeIdentity("a"),
			clientErrs: []string{NodeIdentity("a"), "does not verify",
				"unknown authority"},
			serverErrs: []string{"bad certificate"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, ServerConfig(
				source(tt.server, ca.Bundle(), tt.serverNow), Allow(GatewayIdentity)))
			cfg := ClientConfig(source(tt.client, ca.Bundle(), testNow), tt.want)

			seen, err := roundTrip(t, srv, cfg)
			checkErr(t, "gateway", err, tt.clientErrs...)
			checkErr(t, "agent", srv.handshakeErr(t), tt.serverErrs...)
			if err == nil && seen != GatewayIdentity {
				t.Errorf("agent saw identity %q, want %q", seen, GatewayIdentity)
			}
		})
	}
}

// TestPeerErrorIs checks that a refusal can be told apart with errors.As
// and still says why the certificate did not verify.
func TestPeerErrorIs(t *testing.T) {
	ca := newCA(t, testNow)
	srv := startServer(t, ServerConfig(
		source(issue(t, ca, NodeIdentity("a")), ca.Bundle(), testNow),
		Allow(GatewayIdentity)))
	cfg := ClientConfig(source(nil, newCA(t, testNow).Bundle(), testNow), NodeIdentity("a"))

	_, err := roundTrip(t, srv, cfg)
	var pe *PeerError
	if !errors.As(err, &pe) {
		t.Fatalf("error %v (%T) is not a *PeerError", err, err)
	}
	if pe.Peer != "server" || pe.Presented != NodeIdentity("a") ||
		pe.Want != NodeIdentity("a") {
		t.Errorf("PeerError = %+v, want server presenting and wanted %q", pe, NodeIdentity("a"))
	}
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("error %v does not wrap an x509.UnknownAuthorityError", err)
	}
}

// TestOptionalClient runs the control plane's agent API: a client
// certificate is optional, verified if given, and PeerIdentity reports it.
func TestOptionalClient(t *testing.T) {
	ca := newCA(t, testNow)
	srv := startServer(t, ServerConfigOptionalClient(
		source(issue(t, ca, ControlPlaneIdentity), ca.Bundle(), testNow)))

	tests := []struct {
		name       string
		client     *tls.Certificate
		wantSeen   string   // the identity PeerIdentity reports
		serverErrs []string // none: success
	}{
		{name: "no certificate (register with a join token)", wantSeen: noPeer},
		{name: "node certificate", client: issue(t, ca, NodeIdentity("a")),
			wantSeen: NodeIdentity("a")},
		{name: "certificate from another CA",
			client:     issue(t, newCA(t, testNow), NodeIdentity("a")),
			serverErrs: []string{NodeIdentity("a"), "unknown authority"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := ClientConfig(source(tt.client, ca.Bundle(), testNow), ControlPlaneIdentity)
			seen, err := roundTrip(t, srv, cfg)
			checkErr(t, "agent API", srv.handshakeErr(t), tt.serverErrs...)
			if len(tt.serverErrs) > 0 {
				if err == nil {
					t.Error("client: got no error, want the refusal")
				}
				return
			}
			if err != nil {
				t.Fatalf("client: %v", err)
			}
			if seen != tt.wantSeen {
				t.Errorf("PeerIdentity = %q, want %q", seen, tt.wantSeen)
			}
		})
	}
}

// TestCertificateRotation swaps the server's certificate between
// handshakes: the next connection gets the new one, and a connection made
// before the swap keeps working.
func TestCertificateRotation(t *testing.T) {
	ca := newCA(t, testNow)
	first := issue(t, ca, NodeIdentity("a"))
	second := issue(t, ca, NodeIdentity("a"))

	var current atomic.Pointer[tls.Certificate]
	current.Store(first)
	src := source(nil, ca.Bundle(), testNow)
	src.Certificate = current.Load
	srv := startServer(t, ServerConfig(src, Allow(GatewayIdentity)))
	cfg := ClientConfig(source(issue(t, ca, GatewayIdentity), ca.Bundle(), testNow),
		NodeIdentity("a"))

	// servedSerial dials, exchanges a line and returns the connection and
	// the serial number of the certificate the server presented.
	servedSerial := func() (*tls.Conn, string) {
		t.Helper()
		conn, err := dial(t, srv, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exchange(conn); err != nil {
			t.Fatal(err)
		}
		return conn, conn.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}

	old, got := servedSerial()
	if want := first.Leaf.SerialNumber.String(); got != want {
		t.Fatalf("before the swap: served serial %s, want %s", got, want)
	}

	current.Store(second)
	if _, got := servedSerial(); got != second.Leaf.SerialNumber.String() {
		t.Errorf("after the swap: served serial %s, want %s",
			got, second.Leaf.SerialNumber)
	}
	if _, err := exchange(old); err != nil {
		t.Errorf("connection from before the swap: %v, want it to keep working", err)
	}
}

// TestRootRotation walks a root rotation: with a bundle of both roots,
// leaves of the old and the new root are accepted alike, whichever signs.
func TestRootRotation(t *testing.T) {
	dataKey := newDataKey(t)
	oldRoot := newRoot(t, dataKey, testNow)
	newRootM := newRoot(t, dataKey, testNow)
	// Only the signing (last) root's key is opened, so the other one's
	// may be left out.
	without := func(r RootMaterial) RootMaterial { return RootMaterial{CertPEM: r.CertPEM} }

	before := loadCA(t, dataKey, testNow, oldRoot)                     // one root
	overlap := loadCA(t, dataKey, testNow, without(newRootM), oldRoot) // steps 1–2
	after := loadCA(t, dataKey, testNow, without(oldRoot), newRootM)   // step 3

	if got, want := overlap.Fingerprint(), before.Fingerprint(); got != want {
		t.Errorf("during the overlap the signing root is %s, want the old one, %s",
			got, want)
	}
	if got, want := after.Fingerprint(), Fingerprint(after.Bundle().Roots()[1]); got != want {
		t.Errorf("after the switch the signing root is %s, want the new one, %s",
			got, want)
	}
	if got, want := len(after.Bundle().Roots()), 2; got != want {
		t.Fatalf("bundle during rotation has %d roots, want %d", got, want)
	}

	tests := []struct {
		name       string
		client     *CA // issues the gateway's certificate
		server     *CA // issues node a's certificate
		bundle     *Bundle
		clientErrs []string
	}{
		{name: "old client, new server", client: before, server: after,
			bundle: after.Bundle()},
		{name: "new client, old server", client: after, server: before,
			bundle: after.Bundle()},
		{name: "new client, new server", client: after, server: after,
			bundle: overlap.Bundle()},
		{name: "overlap client, new server", client: overlap, server: after,
			bundle: overlap.Bundle()},
		{name: "old bundle refuses the new root", client: before, server: after,
			bundle: before.Bundle(), clientErrs: []string{"unknown authority"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, ServerConfig(
				source(issue(t, tt.server, NodeIdentity("a")), tt.bundle, testNow),
				Allow(GatewayIdentity)))
			cfg := ClientConfig(
				source(issue(t, tt.client, GatewayIdentity), tt.bundle, testNow),
				NodeIdentity("a"))
			seen, err := roundTrip(t, srv, cfg)
			checkErr(t, "gateway", err, tt.clientErrs...)
			if err == nil && seen != GatewayIdentity {
				t.Errorf("agent saw %q, want %q", seen, GatewayIdentity)
			}
		})
	}
}

// TestResumedSessionRechecked checks that VerifyConnection runs again when
// a client resumes a session: dropping a root from the bundle refuses a
// client that had a session from before.
func TestResumedSessionRechecked(t *testing.T) {
	ca := newCA(t, testNow)
	unrelated := newCA(t, testNow)

	var bundle atomic.Pointer[Bundle]
	bundle.Store(ca.Bundle())
	src := source(issue(t, ca, NodeIdentity("a")), nil, testNow)
	src.Bundle = bundle.Load
	srv := startServer(t, ServerConfig(src, Allow(GatewayIdentity)))

	cfg := ClientConfig(source(issue(t, ca, GatewayIdentity), ca.Bundle(), testNow),
		NodeIdentity("a"))
	cfg.ClientSessionCache = tls.NewLRUClientSessionCache(4)

	for i, wantResumed := range []bool{false, true} {
		conn, err := dial(t, srv, cfg)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := exchange(conn); err != nil { // also receives the ticket
			t.Fatal(err)
		}
		checkErr(t, "agent", srv.handshakeErr(t))
		if got := conn.ConnectionState().DidResume; got != wantResumed {
			t.Fatalf("connection %d: DidResume = %v, want %v", i, got, wantResumed)
		}
	}

	bundle.Store(unrelated.Bundle())
	conn, err := dial(t, srv, cfg)
	if err == nil {
		_, err = exchange(conn)
	}
	checkErr(t, "gateway", err, anyErr)
	checkErr(t, "agent", srv.handshakeErr(t), GatewayIdentity, "unknown authority")
}

// TestPinned runs an agent's first contact: it knows only the fingerprint
// of the control plane's signing root.
func TestPinned(t *testing.T) {
	ca := newCA(t, testNow)
	controlPlane := issue(t, ca, ControlPlaneIdentity)
	leafOnly := &tls.Certificate{
		Certificate: controlPlane.Certificate[:1],
		PrivateKey:  controlPlane.PrivateKey,
		Leaf:        controlPlane.Leaf,
	}

	tests := []struct {
		name        string
		server      *tls.Certificate
		fingerprint string
		now         time.Time
		clientErrs  []string
	}{
		{name: "right fingerprint", server: controlPlane,
			fingerprint: ca.Fingerprint(), now: testNow},
		{name: "wrong fingerprint", server: controlPlane,
			fingerprint: newCA(t, testNow).Fingerprint(), now: testNow,
			clientErrs: []string{"pinned root", ControlPlaneIdentity}},
		{name: "right CA, but not the control plane",
			server:      issue(t, ca, GatewayIdentity),
			fingerprint: ca.Fingerprint(), now: testNow,
			clientErrs: []string{`presented identity "` + GatewayIdentity + `"`,
				`want "` + ControlPlaneIdentity + `"`}},
		{name: "chain without the root", server: leafOnly,
			fingerprint: ca.Fingerprint(), now: testNow,
			clientErrs: []string{"pinned root"}},
		{name: "expired server certificate", server: controlPlane,
			fingerprint: ca.Fingerprint(), now: controlPlane.Leaf.NotAfter.Add(time.Second),
			clientErrs: []string{"expired"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := startServer(t, ServerConfigOptionalClient(
				source(tt.server, ca.Bundle(), testNow)))
			seen, err := roundTrip(t, srv, PinnedConfig(tt.fingerprint, clock(tt.now)))
			checkErr(t, "agent", err, tt.clientErrs...)
			if err == nil && seen != noPeer {
				t.Errorf("control plane saw identity %q, want none", seen)
			}
		})
	}
}

func TestVerifyPeer(t *testing.T) {
	ca := newCA(t, testNow)
	leaf := issue(t, ca, GatewayIdentity).Leaf

	// A leaf of our CA without an identity: SignCSR never makes one.
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(7),
		NotBefore:    testNow.Add(-time.Hour),
		NotAfter:     testNow.Add(time.Hour),
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		DNSNames:     []string{"gateway.example"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.root, leaf.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	anonymous, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}

	client, server := x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth
	tests := []struct {
		name         string
		certs        []*x509.Certificate
		bundle       *Bundle
		usage        x509.ExtKeyUsage
		wantIdentity string
		wantErr      string // "" means success
	}{
		{"good", []*x509.Certificate{leaf}, ca.Bundle(), client, GatewayIdentity, ""},
		{"no certificate", nil, ca.Bundle(), client, "", "no certificate"},
		{"no bundle", []*x509.Certificate{leaf}, nil, client, GatewayIdentity,
			"no trust bundle"},
		{"root presented as leaf", []*x509.Certificate{ca.Root()}, ca.Bundle(), client,
			"", "CA, not a leaf"},
		{"no identity", []*x509.Certificate{anonymous}, ca.Bundle(), client, "",
			"no single crosslogic URI SAN"},
		{"client leaf used as server", []*x509.Certificate{anonymous}, ca.Bundle(), server,
			"", "usage"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			identity, err := verifyPeer(tt.certs, tt.bundle, testNow, tt.usage)
			if identity != tt.wantIdentity {
				t.Errorf("identity = %q, want %q", identity, tt.wantIdentity)
			}
			if tt.wantErr == "" {
				checkErr(t, "verifyPeer", err)
			} else {
				checkErr(t, "verifyPeer", err, tt.wantErr)
			}
		})
	}
}

func TestAllow(t *testing.T) {
	ids := []string{GatewayIdentity, ControlPlaneIdentity}
	allow := Allow(ids...)
	ids[0] = NodeIdentity("x") // Allow keeps its own copy

	tests := []struct {
		identity string
		want     bool
	}{
		{GatewayIdentity, true},
		{ControlPlaneIdentity, true},
		{NodeIdentity("x"), false},
		{"", false},
	}
	for _, tt := range tests {
		if got := allow(tt.identity); got != tt.want {
			t.Errorf("allow(%q) = %v, want %v", tt.identity, got, tt.want)
		}
	}
}

func TestConfigsRequireTLS13(t *testing.T) {
	src := source(nil, nil, testNow)
	configs := map[string]*tls.Config{
		"ServerConfig":               ServerConfig(src, nil),
		"ServerConfigOptionalClient": ServerConfigOptionalClient(src),
		"ClientConfig":               ClientConfig(src, GatewayIdentity),
		"PinnedConfig":               PinnedConfig("sha256:00", nil),
	}
	for name, cfg := range configs {
		if got, want := cfg.MinVersion, uint16(tls.VersionTLS13); got != want {
			t.Errorf("%s: MinVersion = %#x, want %#x", name, got, want)
		}
		if cfg.VerifyConnection == nil {
			t.Errorf("%s: no VerifyConnection", name)
		}
	}
}

func TestPeerIdentity(t *testing.T) {
	leaf := issue(t, newCA(t, testNow), NodeIdentity("a")).Leaf
	tests := []struct {
		name string
		cs   *tls.ConnectionState
		want string // "" means false
	}{
		{"nil state", nil, ""},
		{"no certificate", &tls.ConnectionState{}, ""},
		{"node", &tls.ConnectionState{PeerCertificates: []*x509.Certificate{leaf}},
			NodeIdentity("a")},
	}
	for _, tt := range tests {
		got, ok := PeerIdentity(tt.cs)
		if got != tt.want || ok != (tt.want != "") {
			t.Errorf("%s: PeerIdentity = %q, %v; want %q", tt.name, got, ok, tt.want)
		}
	}
}
