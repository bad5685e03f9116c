package agent

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/logtest"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// ioTimeout bounds every wait of a test, so that a bug shows as a
// failure rather than a hung test. It is a deadline, not a sleep.
const ioTimeout = 20 * time.Second

// model is the model every test engine serves.
const model = "m"

// waitFor polls cond until it holds or ioTimeout passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(ioTimeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// fakeClock is a Clock that moves only when a test advances it.
type fakeClock struct {
	mu sync.Mutex
	// now and timers are guarded by mu.
	now    time.Time
	timers []*fakeTimer // pending, in no particular order
}

type fakeTimer struct {
	c    *fakeClock
	when time.Time
	d    time.Duration
	ch   chan time.Time
}

func newFakeClock() *fakeClock {
	// Now, not a fixed date: the fake control plane's CA signs on this
	// clock and the test's TLS peers check certificates on it, but the
	// engine and net/http run on the wall clock.
	return &fakeClock{now: time.Now().Round(time.Second)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) NewTimer(d time.Duration) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := &fakeTimer{c: c, when: c.now.Add(d), d: d, ch: make(chan time.Time, 1)}
	if d <= 0 {
		t.ch <- c.now
		return t
	}
	c.timers = append(c.timers, t)
	return t
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	t.c.mu.Lock()
	defer t.c.mu.Unlock()
	i := slices.Index(t.c.timers, t)
	if i < 0 {
		return false
	}
	t.c.timers = slices.Delete(t.c.timers, i, i+1)
	return true
}

// Advance moves the clock by d and fires the timers that are due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.when.After(c.now) {
			kept = append(kept, t)
			continue
		}
		t.ch <- c.now
	}
	clear(c.timers[len(kept):])
	c.timers = kept
}

// AdvanceTo moves the clock to t, if t is later than now.
func (c *fakeClock) AdvanceTo(t time.Time) {
	if d := t.Sub(c.Now()); d > 0 {
		c.Advance(d)
	}
}

// waitTimer waits until a timer for which match holds is pending.
func (c *fakeClock) waitTimer(t *testing.T, what string, match func(*fakeTimer) bool) {
	t.Helper()
	waitFor(t, what, func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return slices.ContainsFunc(c.timers, match)
	})
}

// waitTimerFor waits until a timer of duration d is pending.
func (c *fakeClock) waitTimerFor(t *testing.T, what string, d time.Duration) {
	t.Helper()
	c.waitTimer(t, what, func(ft *fakeTimer) bool { return ft.d == d })
}

// waitTimerAt waits until a timer due at when is pending.
func (c *fakeClock) waitTimerAt(t *testing.T, what string, when time.Time) {
	t.Helper()
	c.waitTimer(t, what, func(ft *fakeTimer) bool { return ft.when.Equal(when) })
}

// hasTimer reports whether a timer for which match holds is pending.
func (c *fakeClock) hasTimer(match func(*fakeTimer) bool) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.ContainsFunc(c.timers, match)
}

// logRecorder keeps the logs of a test.
type (
	logRecorder = logtest.Recorder
	logRecord   = logtest.Record
)

// pkiEnv is a CA on a fake clock, as the control plane runs it.
type pkiEnv struct {
	ca    *pki.CA
	clock *fakeClock
}

func newPKI(t *testing.T, clock *fakeClock) *pkiEnv {
	t.Helper()
	dataKey := make([]byte, pki.DataKeySize)
	if _, err := rand.Read(dataKey); err != nil {
		t.Fatal(err)
	}
	root, err := pki.NewRoot(dataKey, clock.Now())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := pki.LoadCA([]pki.RootMaterial{root}, dataKey, pki.Options{Now: clock.Now})
	if err != nil {
		t.Fatal(err)
	}
	return &pkiEnv{ca: ca, clock: clock}
}

// issue issues a leaf for identity, valid a day.
func (p *pkiEnv) issue(t *testing.T, identity string) *tls.Certificate {
	t.Helper()
	cert, err := p.ca.Issue(identity, nil, []net.IP{net.IPv4(127, 0, 0, 1)}, 0)
	if err != nil {
		t.Fatal(err)
	}
	return cert
}

// client returns an HTTP client presenting cert (none if nil), trusting
// p's bundle and requiring the server identity want.
func (p *pkiEnv) client(t *testing.T, cert *tls.Certificate, want string) *http.Client {
	t.Helper()
	src := pki.Source{Bundle: p.ca.Bundle, Now: p.clock.Now}
	if cert != nil {
		src.Certificate = func() *tls.Certificate { return cert }
	}
	tr := &http.Transport{TLSClientConfig: pki.ClientConfig(src, want), ForceAttemptHTTP2: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: ioTimeout}
}

// fakeCP is a control plane's agent API as agentapi describes it, on
// loopback with real mutual TLS, recording what agents send.
type fakeCP struct {
	*pkiEnv
	URL      string
	token    string        // the valid join token
	lifetime time.Duration // of node certificates

	mu sync.Mutex
	// The fields below are guarded by mu.
	intervalMS  int64           // heartbeat interval answered
	nodes       map[string]bool // registered and not removed
	seq         int
	failures    map[string]int // path → how many more calls to answer 503
	registers   []agentapi.RegisterRequest
	heartbeats  []heartbeatRecord
	renewals    int
	deregisters []agentapi.DeregisterRequest
}

type heartbeatRecord struct {
	NodeID string
	At     time.Time // by the fake clock
	agentapi.HeartbeatRequest
}

func startFakeCP(t *testing.T, env *pkiEnv) *fakeCP {
	t.Helper()
	cp := &fakeCP{
		pkiEnv:     env,
		token:      "jt_valid",
		lifetime:   time.Hour,
		intervalMS: 7000,
		nodes:      map[string]bool{},
		failures:   map[string]int{},
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST "+agentapi.PathRegister, cp.register)
	mux.HandleFunc("POST "+agentapi.PathHeartbeat, cp.authenticated(cp.heartbeat))
	mux.HandleFunc("POST "+agentapi.PathRenew, cp.authenticated(cp.renew))
	mux.HandleFunc("POST "+agentapi.PathDeregister, cp.authenticated(cp.deregister))

	cert := env.issue(t, pki.ControlPlaneIdentity)
	src := pki.Source{
		Certificate: func() *tls.Certificate { return cert },
		Bundle:      env.ca.Bundle,
		Now:         env.clock.Now,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		Handler:  cp.failing(mux),
		ErrorLog: slog.NewLogLogger(slog.DiscardHandler, slog.LevelDebug),
	}
	go srv.Serve(tls.NewListener(ln, pki.ServerConfigOptionalClient(src)))
	t.Cleanup(func() { srv.Close() })
	cp.URL = "https://" + ln.Addr().String()
	return cp
}

// fail makes the next n calls to path answer 503.
func (cp *fakeCP) fail(path string, n int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.failures[path] = n
}

func (cp *fakeCP) failing(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cp.mu.Lock()
		n := cp.failures[r.URL.Path]
		if n > 0 {
			cp.failures[r.URL.Path] = n - 1
		}
		cp.mu.Unlock()
		if n > 0 {
			writeError(w, http.StatusServiceUnavailable, "", "try later")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, code, msg string) {
	e := &openai.Error{Status: status, Type: openai.TypeInvalidRequest, Code: code, Message: msg}
	if status >= 500 {
		e.Type = openai.TypeServer
	}
	e.Write(w)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (cp *fakeCP) register(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+cp.token {
		writeError(w, http.StatusUnauthorized, agentapi.CodeInvalidToken, "join token refused")
		return
	}
	var req agentapi.RegisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, agentapi.CodeInvalidRequest, err.Error())
		return
	}
	csr, err := pki.ParseCSR([]byte(req.CSR))
	if err != nil || len(csr.URIs) > 0 || !csrCovers(csr.DNSNames, csr.IPAddresses, req.Endpoint) {
		writeError(w, http.StatusBadRequest, agentapi.CodeInvalidCSR, "bad CSR")
		return
	}

	cp.mu.Lock()
	cp.seq++
	id := fmt.Sprintf("%s-%d", req.Name, cp.seq)
	cp.nodes[id] = true
	cp.registers = append(cp.registers, req)
	cp.mu.Unlock()
	cp.sign(w, http.StatusCreated, id, req.CSR)
}

// csrCovers reports whether the SANs cover the host of endpoint.
func csrCovers(dnsNames []string, ips []net.IP, endpoint string) bool {
	host := strings.TrimPrefix(endpoint, "https://")
	host, _, _ = net.SplitHostPort(host)
	if ip := net.ParseIP(host); ip != nil {
		return slices.ContainsFunc(ips, ip.Equal)
	}
	return slices.Contains(dnsNames, host)
}

// sign answers a Certificate for the CSR.
func (cp *fakeCP) sign(w http.ResponseWriter, status int, nodeID, csrPEM string) {
	csr, err := pki.ParseCSR([]byte(csrPEM))
	if err != nil {
		writeError(w, http.StatusBadRequest, agentapi.CodeInvalidCSR, err.Error())
		return
	}
	leaf, err := cp.ca.SignCSR(csr, pki.NodeIdentity(nodeID), csr.DNSNames, csr.IPAddresses,
		cp.lifetime)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "", err.Error())
		return
	}
	cp.mu.Lock()
	interval := cp.intervalMS
	cp.mu.Unlock()
	writeJSON(w, status, agentapi.Certificate{
		NodeID:              nodeID,
		Certificate:         string(pki.CertPEM(leaf)),
		Bundle:              string(cp.ca.Bundle().PEM()),
		NotAfter:            leaf.NotAfter,
		HeartbeatIntervalMS: interval,
	})
}

// nodeHandler handles a call from the node nodeID.
type nodeHandler func(w http.ResponseWriter, r *http.Request, nodeID string)

// authenticated passes the node ID of the client certificate to h, or
// refuses the call as the control plane does.
func (cp *fakeCP) authenticated(h nodeHandler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		identity, ok := pki.PeerIdentity(r.TLS)
		id, isNode := strings.CutPrefix(identity, pki.NodeIdentity(""))
		if !ok || !isNode {
			writeError(w, http.StatusUnauthorized, agentapi.CodeNotAuthenticated,
				"no node certificate")
			return
		}
		cp.mu.Lock()
		known := cp.nodes[id]
		cp.mu.Unlock()
		if !known {
			writeError(w, http.StatusForbidden, agentapi.CodeNodeGone, "node removed")
			return
		}
		h(w, r, id)
	}
}

func (cp *fakeCP) heartbeat(w http.ResponseWriter, r *http.Request, id string) {
	var req agentapi.HeartbeatRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, agentapi.CodeInvalidRequest, err.Error())
		return
	}
	cp.mu.Lock()
	cp.heartbeats = append(cp.heartbeats, heartbeatRecord{id, cp.clock.Now(), req})
	interval := cp.intervalMS
	cp.mu.Unlock()
	writeJSON(w, http.StatusOK, agentapi.HeartbeatResponse{HeartbeatIntervalMS: interval})
}

func (cp *fakeCP) renew(w http.ResponseWriter, r *http.Request, id string) {
	var req agentapi.RenewRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, agentapi.CodeInvalidRequest, err.Error())
		return
	}
	cp.mu.Lock()
	cp.renewals++
	cp.mu.Unlock()
	cp.sign(w, http.StatusOK, id, req.CSR)
}

func (cp *fakeCP) deregister(w http.ResponseWriter, r *http.Request, id string) {
	var req agentapi.DeregisterRequest
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, agentapi.CodeInvalidRequest, err.Error())
		return
	}
	cp.mu.Lock()
	cp.deregisters = append(cp.deregisters, req)
	delete(cp.nodes, id)
	cp.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// remove removes a node, as an operator would.
func (cp *fakeCP) remove(id string) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	delete(cp.nodes, id)
}

func (cp *fakeCP) setInterval(ms int64) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	cp.intervalMS = ms
}

// heartbeatsOf returns a copy of the heartbeats received.
func (cp *fakeCP) heartbeatsOf() []heartbeatRecord {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return slices.Clone(cp.heartbeats)
}

// lastHeartbeat returns the last heartbeat, if any.
func (cp *fakeCP) lastHeartbeat() (heartbeatRecord, bool) {
	hb := cp.heartbeatsOf()
	if len(hb) == 0 {
		return heartbeatRecord{}, false
	}
	return hb[len(hb)-1], true
}

// counts returns how many registers, renewals and deregisters arrived.
func (cp *fakeCP) counts() (registers, renewals, deregisters int) {
	cp.mu.Lock()
	defer cp.mu.Unlock()
	return len(cp.registers), cp.renewals, len(cp.deregisters)
}

// Request bodies.
const (
	chatBody = `{"model":"m","messages":[{"role":"user","content":"hello there"}],` +
		`"max_tokens":5}`
	streamBody = `{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":8,` +
		`"stream":true}`
)

// holdHeader makes the test engine hold a chat stream after its first
// event until the test releases it.
const holdHeader = "X-Test-Hold"

// testEngine is the simulator on loopback, plus held streams: a chat
// request carrying holdHeader gets one event, then waits for release
// (or for its client to go away) before the rest.
type testEngine struct {
	*sim.Server
	URL     string
	release chan struct{} // closed to let held streams finish
	gone    chan struct{} // receives when a held stream's client went away
}

func startEngine(t *testing.T, cfg sim.Config) *testEngine {
	t.Helper()
	if cfg.Models == nil {
		cfg.Models = []string{model}
	}
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e := &testEngine{Server: s, release: make(chan struct{}), gone: make(chan struct{}, 8)}
	h := s.Handler()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get(holdHeader) != "" {
			e.hold(w, r)
			return
		}
		h.ServeHTTP(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.URL = "http://" + ln.Addr().String()
	return e
}

func (e *testEngine) hold(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":" first"}}]}`+"\n\n")
	w.(http.Flusher).Flush()
	select {
	case <-e.release:
	case <-r.Context().Done():
		e.gone <- struct{}{}
		return
	}
	io.WriteString(w, `data: {"choices":[{"index":0,"delta":{"content":" last"}}]}`+"\n\n")
	io.WriteString(w, "data: [DONE]\n\n")
}

// runningAgent is an agent whose Run goes on in the background.
type runningAgent struct {
	*Agent
	cfg    Config
	cancel context.CancelFunc
	done   chan struct{}
	err    error // Run's result; read after done is closed
}

// newConfig returns a config joining cp and attached to eng, on clock,
// listening on a fresh loopback port.
func newConfig(t *testing.T, cp *fakeCP, engineURL string, logs *logRecorder) Config {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return Config{
		ControlPlane:        cp.URL,
		JoinToken:           cp.token,
		CAFingerprint:       cp.ca.Fingerprint(),
		StateDir:            t.TempDir() + "/state",
		Listener:            ln,
		AdvertiseURL:        "https://" + ln.Addr().String(),
		Name:                "node",
		Facts:               agentapi.Facts{Engine: "sim", Models: []string{model}},
		EngineURL:           engineURL,
		EngineCheckInterval: 10 * time.Millisecond,
		Clock:               cp.clock,
		Rand:                func() float64 { return 0.5 },
		Logger:              slog.New(logs),
	}
}

// start runs an agent for cfg in the background; it is stopped, and
// waited for, when the test ends.
func start(t *testing.T, cfg Config) *runningAgent {
	t.Helper()
	a, err := New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ra := &runningAgent{Agent: a, cfg: cfg, cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(ra.done)
		ra.err = a.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-ra.done:
		case <-time.After(ioTimeout):
			t.Error("agent did not stop")
		}
	})
	return ra
}

// waitReady waits until ra is ready and returns it.
func (ra *runningAgent) waitReady(t *testing.T) *runningAgent {
	t.Helper()
	select {
	case <-ra.Ready():
	case <-ra.done:
		t.Fatalf("agent stopped before it was ready: %v", ra.err)
	case <-time.After(ioTimeout):
		t.Fatal("agent not ready in time")
	}
	return ra
}

// wait waits for Run to return and returns its error.
func (ra *runningAgent) wait(t *testing.T) error {
	t.Helper()
	select {
	case <-ra.done:
		return ra.err
	case <-time.After(ioTimeout):
		t.Fatal("agent did not stop in time")
		return nil
	}
}

// stop cancels Run's context and returns Run's error.
func (ra *runningAgent) stop(t *testing.T) error {
	t.Helper()
	ra.cancel()
	return ra.wait(t)
}

// url returns the agent's URL for path.
func (ra *runningAgent) url(path string) string { return ra.cfg.AdvertiseURL + path }

// gateway returns a client with the gateway's identity that requires
// ra's node identity.
func (ra *runningAgent) gateway(t *testing.T, env *pkiEnv) *http.Client {
	t.Helper()
	return env.client(t, env.issue(t, pki.GatewayIdentity), pki.NodeIdentity(ra.NodeID()))
}

// post sends a JSON body to the agent.
func post(t *testing.T, ctx context.Context, c *http.Client, url, body string,
	header http.Header) *http.Response {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("POST %s: %v", url, err)
	}
	return resp
}

// readEvent reads one server-sent event's data line.
func readEvent(t *testing.T, br *bufio.Reader) string {
	t.Helper()
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("read event: %v", err)
		}
		if data, ok := strings.CutPrefix(strings.TrimSpace(line), "data: "); ok {
			return data
		}
	}
}

// fileMode returns the permission bits of the file at path.
func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}
