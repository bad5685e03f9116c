package controlplane_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
	"github.com/crosslogic/crosslogic/internal/registry"
)

const (
	adminToken = "controlplane-test-admin-token"
	model      = "test-model"
	// waitFor bounds every wait in these tests. It is far above what any
	// of them needs, so it only ends a test that would otherwise hang.
	waitFor = 10 * time.Second
)

// engine is a node's engine on loopback: /health answers 200 and
// /v1/chat/completions calls chat, or answers 200 at once when chat is
// nil. It records the Authorization header of every completion.
type engine struct {
	*httptest.Server

	mu   sync.Mutex
	auth []string // guarded by mu
}

func newEngine(t *testing.T, chat http.HandlerFunc) *engine {
	t.Helper()
	e := &engine{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) {})
	mux.HandleFunc("POST /v1/chat/completions", func(w http.ResponseWriter, r *http.Request) {
		e.mu.Lock()
		e.auth = append(e.auth, r.Header.Get("Authorization"))
		e.mu.Unlock()
		if chat != nil {
			chat(w, r)
			return
		}
		answer(w)
	})
	e.Server = httptest.NewServer(mux)
	t.Cleanup(e.Close)
	return e
}

// answer writes a small chat completion.
func answer(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"id":"chatcmpl-1","object":"chat.completion","choices":[]}`)
}

func (e *engine) authorizations() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.auth)
}

// newConfig returns a valid configuration keeping its data in dataDir,
// with one node in the config file served by e.
func newConfig(dataDir string, e *engine) config.Config {
	cfg := config.Default()
	cfg.DataDir = dataDir
	cfg.AdminToken = adminToken
	cfg.DrainTimeout = waitFor
	cfg.Nodes = []config.Node{{ID: "config-node", Endpoint: e.URL, Models: []string{model}}}
	return cfg
}

// running is a control plane serving on a loopback port.
type running struct {
	cp     *controlplane.Server
	addr   string
	url    string
	http   *http.Client
	admin  *admin.Client
	cancel context.CancelFunc
	done   chan error // receives Serve's result
	once   sync.Once
	err    error
}

// start builds a control plane from cfg and serves it until the test ends
// or stop is called.
func start(t *testing.T, cfg config.Config) *running {
	t.Helper()
	cp, err := controlplane.New(context.Background(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{cp: cp, addr: ln.Addr().String(), url: "http://" + ln.Addr().String(),
		http: &http.Client{Transport: &http.Transport{}}, cancel: cancel,
		done: make(chan error, 1)}
	r.admin = &admin.Client{Server: r.url, Token: adminToken, HTTP: r.http}
	go func() { r.done <- cp.Serve(ctx, ln, nil) }()
	t.Cleanup(func() {
		if err := r.stop(); err != nil {
			t.Errorf("stop: %v", err)
		}
		r.http.CloseIdleConnections()
	})
	return r
}

// stop cancels Serve's context and waits for it to return.
func (r *running) stop() error {
	r.once.Do(func() {
		r.cancel()
		select {
		case r.err = <-r.done:
		case <-time.After(waitFor):
			r.err = errors.New("Serve did not return after its context was cancelled")
		}
	})
	return r.err
}

// waitReady waits until model has a ready node.
func (r *running) waitReady(t *testing.T, models ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := r.cp.WaitReady(ctx, models...); err != nil {
		t.Fatalf("WaitReady(%v): %v", models, err)
	}
}

// get fetches path and returns the status and body.
func (r *running) get(t *testing.T, path string) (int, string) {
	t.Helper()
	resp, err := r.http.Get(r.url + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// chatRequest returns a chat completion request for m through the
// gateway, with key as the bearer token.
func (r *running) chatRequest(t *testing.T, key, m string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, r.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+m+`","messages":[{"role":"user","content":"hi"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+key)
	return req
}

// chat sends a chat completion for m and returns the status and body.
func (r *running) chat(t *testing.T, key, m string) (int, string) {
	t.Helper()
	resp, err := r.http.Do(r.chatRequest(t, key, m))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

func (r *running) createKey(t *testing.T, name string) admin.CreatedKey {
	t.Helper()
	k, err := r.admin.CreateKey(context.Background(), admin.CreateKeyRequest{Name: name})
	if err != nil {
		t.Fatalf("CreateKey: %v", err)
	}
	return k
}

func TestServe(t *testing.T) {
	e := newEngine(t, nil)
	r := start(t, newConfig(t.TempDir(), e))
	r.waitReady(t, model)

	probes := []struct {
		path   string
		status int
		body   string
	}{
		{"/healthz", http.StatusOK, "ok\n"},
		{"/readyz", http.StatusOK, "ready\n"},
	}
	for _, p := range probes {
		if status, body := r.get(t, p.path); status != p.status || body != p.body {
			t.Errorf("GET %s: got %d %q, want %d %q", p.path, status, body, p.status, p.body)
		}
	}

	// The admin API answers with the token and only with it.
	nodes, err := r.admin.ListNodes(context.Background())
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	if len(nodes) != 1 || nodes[0].ID != "config-node" || nodes[0].Source != "config" ||
		nodes[0].State != "ready" {
		t.Errorf("ListNodes: got %+v, want config-node from the config, ready", nodes)
	}
	if status, _ := r.get(t, "/admin/nodes"); status != http.StatusUnauthorized {
		t.Errorf("GET /admin/nodes without token: got %d, want 401", status)
	}

	// A key made through the admin API works through the gateway at once.
	k := r.createKey(t, "customer")
	if status, body := r.chat(t, k.Secret, model); status != http.StatusOK {
		t.Errorf("chat with new key: got %d %s, want 200", status, body)
	}
	if status, _ := r.chat(t, "sk-cl-not-a-key", model); status != http.StatusUnauthorized {
		t.Errorf("chat with unknown key: got %d, want 401", status)
	}
	// The customer key is not an admin token.
	c := *r.admin
	c.Token = k.Secret
	if _, err := c.ListKeys(context.Background()); err == nil {
		t.Error("ListKeys with a customer key: got success, want 401")
	}
}

func TestWaitReadyUnknownModel(t *testing.T) {
	e := newEngine(t, nil)
	r := start(t, newConfig(t.TempDir(), e))
	r.waitReady(t, model)

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	err := r.cp.WaitReady(ctx, model, "no-such-model")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want %v", err, context.DeadlineExceeded)
	}
	if want := "no ready node for no-such-model:"; !strings.Contains(err.Error(), want) {
		t.Errorf("error %q: want it to contain %q", err, want)
	}
}

func TestKeySurvivesRestart(t *testing.T) {
	e := newEngine(t, nil)
	cfg := newConfig(t.TempDir(), e)

	first := start(t, cfg)
	kept := first.createKey(t, "kept")
	revoked := first.createKey(t, "revoked")
	if _, err := first.admin.RevokeKey(context.Background(), revoked.ID); err != nil {
		t.Fatal(err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("first Serve: %v", err)
	}

	second := start(t, cfg)
	second.waitReady(t, model)
	if status, body := second.chat(t, kept.Secret, model); status != http.StatusOK {
		t.Errorf("kept key after restart: got %d %s, want 200", status, body)
	}
	if status, body := second.chat(t, revoked.Secret, model); status != http.StatusUnauthorized ||
		!strings.Contains(body, "revoked") {
		t.Errorf("revoked key after restart: got %d %s, want 401 revoked", status, body)
	}
	keys, err := second.admin.ListKeys(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]string{}
	for _, k := range keys {
		states[k.ID] = k.State
	}
	if want := map[string]string{kept.ID: admin.KeyActive,
		revoked.ID: admin.KeyRevoked}; !maps.Equal(states, want) {
		t.Errorf("keys after restart: got %v, want %v", states, want)
	}
}

func TestNodeSurvivesRestart(t *testing.T) {
	e := newEngine(t, nil)
	external := newEngine(t, nil)
	cfg := newConfig(t.TempDir(), e)
	const other = "other-model"

	first := start(t, cfg)
	k := first.createKey(t, "customer")
	if _, err := first.admin.AddNode(context.Background(), admin.AddNodeRequest{
		ID: "admin-node", Endpoint: external.URL, Models: []string{other},
		Region: "eu-west", UpstreamKey: "engine-key"}); err != nil {
		t.Fatalf("AddNode: %v", err)
	}
	if err := first.stop(); err != nil {
		t.Fatalf("first Serve: %v", err)
	}

	second := start(t, cfg)
	second.waitReady(t, model, other)
	st, ok := second.cp.Registry().Get("admin-node")
	if !ok {
		t.Fatal("admin-node not in the registry after restart")
	}
	if st.Source != registry.SourceAdmin || st.Endpoint != external.URL ||
		!slices.Equal(st.Models, []string{other}) || st.Region != "eu-west" {
		t.Errorf("admin-node after restart: got %+v", st)
	}

	// The upstream key survived too: the engine gets it.
	if status, body := second.chat(t, k.Secret, other); status != http.StatusOK {
		t.Fatalf("chat to admin-node: got %d %s, want 200", status, body)
	}
	if got := external.authorizations(); len(got) != 1 || got[0] != "Bearer engine-key" {
		t.Errorf("engine saw Authorization %q, want [Bearer engine-key]", got)
	}

	// Removed, it stays removed.
	if _, err := second.admin.RemoveNode(context.Background(), "admin-node"); err != nil {
		t.Fatal(err)
	}
	if err := second.stop(); err != nil {
		t.Fatalf("second Serve: %v", err)
	}
	third := start(t, cfg)
	if _, ok := third.cp.Registry().Get("admin-node"); ok {
		t.Error("removed admin-node came back after restart")
	}
}

func TestConfigFileWinsOverStoredNode(t *testing.T) {
	e := newEngine(t, nil)
	cfg := newConfig(t.TempDir(), e)
	cfg.Nodes = nil

	first := start(t, cfg)
	if _, err := first.admin.AddNode(context.Background(), admin.AddNodeRequest{
		ID: "shared", Endpoint: "http://127.0.0.1:1", Models: []string{"stored"}}); err != nil {
		t.Fatal(err)
	}
	if err := first.stop(); err != nil {
		t.Fatal(err)
	}

	cfg.Nodes = []config.Node{{ID: "shared", Endpoint: e.URL, Models: []string{model}}}
	second := start(t, cfg)
	st, ok := second.cp.Registry().Get("shared")
	if !ok || st.Source != registry.SourceConfig || st.Endpoint != e.URL {
		t.Errorf("shared after restart: got %+v, %v, want the config file's node", st, ok)
	}
}

func TestNewRejects(t *testing.T) {
	e := newEngine(t, nil)
	tests := []struct {
		name    string
		mutate  func(*config.Config)
		wantErr string
	}{
		{"unknown balancer", func(c *config.Config) { c.Gateway.Balancer = "random" },
			"random"},
		{"invalid config node", func(c *config.Config) { c.Nodes[0].Endpoint = "ftp://h" },
			"http or https URL"},
		{"empty upstream key env", func(c *config.Config) {
			c.Nodes[0].UpstreamKeyEnv = "CROSSLOGIC_TEST_UNSET_VARIABLE"
		}, "CROSSLOGIC_TEST_UNSET_VARIABLE is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := newConfig(t.TempDir(), e)
			tt.mutate(&cfg)
			_, err := controlplane.New(context.Background(), cfg, nil)
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("got %v, want an error mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestNilLogger(t *testing.T) {
	e := newEngine(t, nil)
	cp, err := controlplane.New(context.Background(), newConfig(t.TempDir(), e), nil)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- cp.Serve(ctx, ln, nil) }()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(waitFor):
		t.Fatal("Serve did not return")
	}
}

// TestDrain cancels Serve while a request is in flight: the listener
// closes, /readyz fails, and Serve waits for the request, which finishes.
func TestDrain(t *testing.T) {
	entered := make(chan struct{}, 1)
	release := make(chan struct{})
	var releaseOnce sync.Once
	releaseAll := func() { releaseOnce.Do(func() { close(release) }) }
	e := newEngine(t, func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-release:
			answer(w)
		case <-r.Context().Done():
		}
	})
	t.Cleanup(releaseAll) // before the engine closes, should the test fail early

	r := start(t, newConfig(t.TempDir(), e))
	r.waitReady(t, model)
	k := r.createKey(t, "customer")

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	req := r.chatRequest(t, k.Secret, model)
	go func() {
		resp, err := r.http.Do(req)
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	select {
	case <-entered:
	case <-time.After(waitFor):
		t.Fatal("the request never reached the engine")
	}

	r.cancel()

	// The listener closes: new connections are refused.
	deadline := time.Now().Add(waitFor)
	for {
		c, err := net.Dial("tcp", r.addr)
		if err != nil {
			break
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("the listener still accepts connections after cancel")
		}
		time.Sleep(time.Millisecond)
	}
	rec := httptest.NewRecorder()
	r.cp.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
	if rec.Code != http.StatusServiceUnavailable {
		t.Errorf("/readyz while draining: got %d, want 503", rec.Code)
	}
	select {
	case err := <-r.done:
		t.Fatalf("Serve returned (%v) with a request in flight", err)
	default:
	}

	releaseAll()
	select {
	case res := <-got:
		if res.err != nil || res.status != http.StatusOK ||
			!strings.Contains(res.body, "chat.completion") {
			t.Errorf("in-flight request: got %d %q (%v), want 200 with the answer",
				res.status, res.body, res.err)
		}
	case <-time.After(waitFor):
		t.Fatal("the in-flight request did not finish")
	}
	if err := r.stop(); err != nil {
		t.Errorf("Serve: got %v, want nil", err)
	}
}

// TestDetachedStreamsGauge: the open detached streams show on the metrics
// handler while they run.
func TestDetachedStreamsGauge(t *testing.T) {
	release := make(chan struct{})
	e := newEngine(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk",`+
			`"created":1,"choices":[{"index":0,"delta":{"content":"hi"}}]}`+"\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		_, _ = io.WriteString(w, `data: {"id":"c","object":"chat.completion.chunk",`+
			`"created":1,"choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}`+
			"\n\ndata: [DONE]\n\n")
	})
	r := start(t, newConfig(t.TempDir(), e))
	r.waitReady(t, model)
	gauge := func() string {
		rec := httptest.NewRecorder()
		r.cp.MetricsHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
		for line := range strings.Lines(rec.Body.String()) {
			if v, ok := strings.CutPrefix(line, "crosslogic_gateway_detached_streams "); ok {
				return strings.TrimSpace(v)
			}
		}
		return "missing"
	}
	if got := gauge(); got != "0" {
		t.Fatalf("gauge before any stream = %s, want 0", got)
	}

	k := r.createKey(t, "streams")
	req, _ := http.NewRequest(http.MethodPost, r.url+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+model+`","stream":true,`+
			`"messages":[{"role":"user","content":"hi"}]}`))
	req.Header.Set("Authorization", "Bearer "+k.Secret)
	resp, err := r.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	if got := gauge(); got != "1" {
		t.Errorf("gauge with a stream open = %s, want 1", got)
	}
	close(release)
	_, _ = io.Copy(io.Discard, resp.Body)
	deadline := time.Now().Add(10 * time.Second)
	for gauge() != "0" {
		if time.Now().After(deadline) {
			t.Fatalf("gauge after the stream = %s, want 0", gauge())
		}
		time.Sleep(10 * time.Millisecond)
	}
}
