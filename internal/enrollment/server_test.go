package enrollment_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/enrollment"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/store"
	"github.com/crosslogic/crosslogic/internal/store/sqlite"
)

// env is an agent API server over real TLS with a real store and CA.
type env struct {
	url      string
	store    store.Store
	registry *registry.Registry
	ca       *pki.CA
	now      time.Time
}

func newEnv(t *testing.T) *env {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	dataKey := bytes.Repeat([]byte{7}, pki.DataKeySize)
	root, err := pki.NewRoot(dataKey, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA([]pki.RootMaterial{root}, dataKey, pki.Options{})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{store: st, registry: registry.New(nil), ca: ca, now: time.Now()}
	srv := &enrollment.Server{Store: st, Registry: e.registry, CA: ca,
		NodeTransport:     func(string) http.RoundTripper { return nil },
		HeartbeatInterval: 2 * time.Second, CertLifetime: time.Hour}

	cert, err := ca.Issue(pki.ControlPlaneIdentity, nil, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg := pki.ServerConfigOptionalClient(pki.Source{
		Certificate: func() *tls.Certificate { return cert }, Bundle: ca.Bundle})
	hs := &http.Server{Handler: srv.Handler()}
	go func() { _ = hs.Serve(tls.NewListener(ln, tlsCfg)) }()
	t.Cleanup(func() { hs.Close() })
	e.url = "https://" + ln.Addr().String()
	return e
}

// token stores a join token and returns its secret.
func (e *env) token(t *testing.T, mutate func(*store.JoinToken)) string {
	t.Helper()
	secret, id, digest, err := enrollment.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	tok := store.JoinToken{ID: id, Hash: digest[:], MaxUses: 1,
		CreatedAt: e.now.Add(-time.Minute), ExpiresAt: e.now.Add(time.Hour)}
	if mutate != nil {
		mutate(&tok)
	}
	if err := e.store.CreateJoinToken(context.Background(), tok); err != nil {
		t.Fatal(err)
	}
	return secret
}

// node is what an agent holds after joining.
type node struct {
	id   string
	key  *ecdsa.PrivateKey
	cert *x509.Certificate
}

func (n *node) tlsCert() *tls.Certificate {
	return &tls.Certificate{Certificate: [][]byte{n.cert.Raw}, PrivateKey: n.key, Leaf: n.cert}
}

// call posts body to path and decodes the answer into out; it returns the
// status and the error code, if any.
func call(t *testing.T, client *http.Client, url, bearer string, body, out any) (int, string) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code string } `json:"error"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error.Code
	}
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode, ""
}

func (e *env) pinned() *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: pki.PinnedConfig(e.ca.Fingerprint(), nil)}}
}

func (e *env) mtls(n *node) *http.Client {
	src := pki.Source{Bundle: e.ca.Bundle}
	if n != nil {
		src.Certificate = n.tlsCert
	}
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig: pki.ClientConfig(src, pki.ControlPlaneIdentity)}}
}

func csr(t *testing.T, key *ecdsa.PrivateKey) string {
	t.Helper()
	b, err := pki.NewCSR(key, nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func registerRequest(t *testing.T, key *ecdsa.PrivateKey) agentapi.RegisterRequest {
	return agentapi.RegisterRequest{CSR: csr(t, key), Endpoint: "https://127.0.0.1:9443",
		Name: "gpu-host-1", Facts: agentapi.Facts{Provider: "aws", Region: "us-east-1",
			Spot: true, Models: []string{"m1"}}}
}

// join registers a node with a fresh token and returns it.
func (e *env) join(t *testing.T) *node {
	t.Helper()
	key, _ := pki.NewKey()
	var got agentapi.RegisterResponse
	status, code := call(t, e.pinned(), e.url+agentapi.PathRegister, e.token(t, nil),
		registerRequest(t, key), &got)
	if status != http.StatusCreated {
		t.Fatalf("register = %d %s, want 201", status, code)
	}
	cert, err := pki.ParseCertPEM([]byte(got.Certificate))
	if err != nil {
		t.Fatal(err)
	}
	return &node{id: got.NodeID, key: key, cert: cert}
}

func TestRegister(t *testing.T) {
	e := newEnv(t)
	n := e.join(t)

	if id, ok := pki.NodeIDOf(n.cert); !ok || id != n.id {
		t.Errorf("certificate names node %q, want %q", id, n.id)
	}
	if !strings.HasPrefix(n.id, "gpu-host-1-") {
		t.Errorf("node ID %q does not follow the name hint", n.id)
	}
	if len(n.cert.IPAddresses) != 1 || !n.cert.IPAddresses[0].Equal(net.ParseIP("127.0.0.1")) {
		t.Errorf("certificate IPs = %v, want the endpoint's", n.cert.IPAddresses)
	}
	st, ok := e.registry.Get(n.id)
	if !ok || st.Source != registry.SourceAgent || st.State != registry.StateJoining {
		t.Fatalf("registry has %+v, want an agent node joining", st)
	}
	nodes, _ := e.store.ListNodes(context.Background())
	if len(nodes) != 1 || nodes[0].Kind != "agent" || !nodes[0].Spot ||
		nodes[0].CertNotAfter.IsZero() {
		t.Errorf("stored nodes = %+v, want one agent node with facts and cert expiry", nodes)
	}
}

// TestRegisterRefusals checks every refusal of a join, and that a refusal
// stores nothing and uses no token.
func TestRegisterRefusals(t *testing.T) {
	e := newEnv(t)
	key, _ := pki.NewKey()
	otherCSR := func() string {
		// A CSR that asks for the gateway's identity.
		other, _ := pki.NewKey()
		tmpl := &x509.CertificateRequest{URIs: []*url.URL{mustURL(pki.GatewayIdentity)}}
		der, err := x509.CreateCertificateRequest(nil, tmpl, other)
		if err != nil {
			t.Fatal(err)
		}
		return string(pemBlock("CERTIFICATE REQUEST", der))
	}()
	past := e.now.Add(-time.Second)

	tests := []struct {
		name       string
		token      func() string
		mutate     func(*agentapi.RegisterRequest)
		wantStatus int
		wantCode   string
	}{
		{"malformed token", func() string { return "not-a-token" }, nil, 401,
			agentapi.CodeInvalidToken},
		{"unknown token", func() string { s, _, _, _ := enrollment.NewToken(); return s },
			nil, 401, agentapi.CodeInvalidToken},
		{"expired token", func() string {
			return e.token(t, func(j *store.JoinToken) { j.ExpiresAt = past })
		}, nil, 401, agentapi.CodeInvalidToken},
		{"revoked token", func() string {
			return e.token(t, func(j *store.JoinToken) { j.RevokedAt = past })
		}, nil, 401, agentapi.CodeInvalidToken},
		{"used token", func() string {
			return e.token(t, func(j *store.JoinToken) { j.Uses = 1 })
		}, nil, 401, agentapi.CodeInvalidToken},
		{"model not allowed", func() string {
			return e.token(t, func(j *store.JoinToken) { j.Models = []string{"other"} })
		}, nil, 401, agentapi.CodeInvalidToken},
		{"CSR asks for another identity", func() string { return e.token(t, nil) },
			func(r *agentapi.RegisterRequest) { r.CSR = otherCSR }, 400, agentapi.CodeInvalidCSR},
		{"CSR garbage", func() string { return e.token(t, nil) },
			func(r *agentapi.RegisterRequest) { r.CSR = "garbage" }, 400, agentapi.CodeInvalidCSR},
		{"plain http endpoint", func() string { return e.token(t, nil) },
			func(r *agentapi.RegisterRequest) { r.Endpoint = "http://127.0.0.1:9443" }, 400,
			agentapi.CodeInvalidRequest},
		{"no models", func() string { return e.token(t, nil) },
			func(r *agentapi.RegisterRequest) { r.Facts.Models = nil }, 400,
			agentapi.CodeInvalidRequest},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := registerRequest(t, key)
			if tt.mutate != nil {
				tt.mutate(&req)
			}
			status, code := call(t, e.pinned(), e.url+agentapi.PathRegister, tt.token(), req, nil)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Fatalf("register = %d %q, want %d %q", status, code, tt.wantStatus, tt.wantCode)
			}
			if nodes, _ := e.store.ListNodes(context.Background()); len(nodes) != 0 {
				t.Errorf("a refused join stored nodes: %+v", nodes)
			}
			if n := len(e.registry.List()); n != 0 {
				t.Errorf("a refused join registered %d nodes", n)
			}
		})
	}

	// A refused CSR did not use up the token: the same token still works.
	tok := e.token(t, nil)
	req := registerRequest(t, key)
	req.CSR = otherCSR
	call(t, e.pinned(), e.url+agentapi.PathRegister, tok, req, nil)
	if status, code := call(t, e.pinned(), e.url+agentapi.PathRegister, tok,
		registerRequest(t, key), nil); status != 201 {
		t.Fatalf("token after a refused CSR: %d %s, want 201", status, code)
	}
	// And now it is used: a replay is refused.
	if status, _ := call(t, e.pinned(), e.url+agentapi.PathRegister, tok,
		registerRequest(t, key), nil); status != 401 {
		t.Errorf("replayed token: status %d, want 401", status)
	}
}

func TestRegisterPinsTheCA(t *testing.T) {
	e := newEnv(t)
	other := newEnv(t)
	client := &http.Client{Transport: &http.Transport{
		TLSClientConfig: pki.PinnedConfig(other.ca.Fingerprint(), nil)}}
	key, _ := pki.NewKey()
	b, _ := json.Marshal(registerRequest(t, key))
	req, _ := http.NewRequest("POST", e.url+agentapi.PathRegister, bytes.NewReader(b))
	req.Header.Set("Authorization", "Bearer "+e.token(t, nil))
	if _, err := client.Do(req); err == nil {
		t.Fatal("a control plane with another CA was trusted")
	}
}

func TestHeartbeatRenewDeregister(t *testing.T) {
	e := newEnv(t)
	n := e.join(t)
	client := e.mtls(n)

	var hb agentapi.HeartbeatResponse
	status, code := call(t, client, e.url+agentapi.PathHeartbeat, "",
		agentapi.HeartbeatRequest{State: agentapi.StateReady,
			Load: agentapi.Load{Running: 3, Waiting: 1, KVCacheUsage: 0.5}}, &hb)
	if status != 200 || hb.HeartbeatIntervalMS != 2000 {
		t.Fatalf("heartbeat = %d %s interval %d, want 200 and 2000ms", status, code,
			hb.HeartbeatIntervalMS)
	}
	st, _ := e.registry.Get(n.id)
	if st.Load.Running != 3 || st.LastHeartbeat.IsZero() {
		t.Errorf("registry after heartbeat: %+v", st)
	}

	key2, _ := pki.NewKey()
	var renewed agentapi.RenewResponse
	if status, code := call(t, client, e.url+agentapi.PathRenew, "",
		agentapi.RenewRequest{CSR: csr(t, key2)}, &renewed); status != 200 {
		t.Fatalf("renew = %d %s, want 200", status, code)
	}
	cert, _ := pki.ParseCertPEM([]byte(renewed.Certificate))
	if id, _ := pki.NodeIDOf(cert); id != n.id || cert.SerialNumber.Cmp(n.cert.SerialNumber) == 0 {
		t.Errorf("renewed certificate: node %q serial %v, want node %q and a new serial",
			id, cert.SerialNumber, n.id)
	}

	if status, _ := call(t, client, e.url+agentapi.PathDeregister, "",
		agentapi.DeregisterRequest{Reason: "test"}, nil); status != 204 {
		t.Fatalf("deregister = %d, want 204", status)
	}
	if _, ok := e.registry.Get(n.id); ok {
		t.Error("node still registered after deregister")
	}
}

// TestRemovedNodeRefused checks a removed node can neither heartbeat nor
// renew, although its certificate is still valid.
func TestRemovedNodeRefused(t *testing.T) {
	e := newEnv(t)
	n := e.join(t)
	if err := e.registry.Remove(n.id); err != nil {
		t.Fatal(err)
	}
	_ = e.store.DeleteNode(context.Background(), n.id)
	client := e.mtls(n)
	key, _ := pki.NewKey()
	for _, tt := range []struct {
		path string
		body any
	}{
		{agentapi.PathHeartbeat, agentapi.HeartbeatRequest{State: agentapi.StateReady}},
		{agentapi.PathRenew, agentapi.RenewRequest{CSR: csr(t, key)}},
	} {
		if status, code := call(t, client, e.url+tt.path, "", tt.body, nil); status != 403 ||
			code != agentapi.CodeNodeGone {
			t.Errorf("%s from a removed node = %d %q, want 403 %s", tt.path, status, code,
				agentapi.CodeNodeGone)
		}
	}
}

func TestNodeCallsNeedACertificate(t *testing.T) {
	e := newEnv(t)
	status, code := call(t, e.mtls(nil), e.url+agentapi.PathHeartbeat, "",
		agentapi.HeartbeatRequest{State: agentapi.StateReady}, nil)
	if status != 401 || code != agentapi.CodeNotAuthenticated {
		t.Errorf("heartbeat without a certificate = %d %q, want 401", status, code)
	}
}

func TestRenewRefusesAnotherIdentity(t *testing.T) {
	e := newEnv(t)
	a, b := e.join(t), e.join(t)
	key, _ := pki.NewKey()
	tmpl := &x509.CertificateRequest{URIs: []*url.URL{mustURL(pki.NodeIdentity(b.id))}}
	der, err := x509.CreateCertificateRequest(nil, tmpl, key)
	if err != nil {
		t.Fatal(err)
	}
	status, code := call(t, e.mtls(a), e.url+agentapi.PathRenew, "",
		agentapi.RenewRequest{CSR: string(pemBlock("CERTIFICATE REQUEST", der))}, nil)
	if status != 400 || code != agentapi.CodeInvalidCSR {
		t.Errorf("renewal asking for node %s's identity = %d %q, want 400 %s", b.id, status,
			code, agentapi.CodeInvalidCSR)
	}
}

func TestParseToken(t *testing.T) {
	tok, id, digest, err := enrollment.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	gotID, gotDigest, err := enrollment.ParseToken(tok)
	if err != nil || gotID != id || gotDigest != digest {
		t.Fatalf("ParseToken(new token) = %q, %v; want %q", gotID, err, id)
	}
	for _, bad := range []string{"", "cljt_", tok[:len(tok)-1], "cljt_zzzzzzzzzzzzzzzz." +
		tok[22:], strings.Replace(tok, ".", "_", 1)} {
		if _, _, err := enrollment.ParseToken(bad); !errors.Is(err, enrollment.ErrMalformedToken) {
			t.Errorf("ParseToken(%q) error = %v, want ErrMalformedToken", bad, err)
		}
	}
}
