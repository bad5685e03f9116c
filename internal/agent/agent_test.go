package agent

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/logtest"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// env is one test's world: a clock, a control plane and an engine.
type env struct {
	clock  *fakeClock
	cp     *fakeCP
	engine *testEngine
	logs   *logRecorder
}

func newEnv(t *testing.T, engineCfg sim.Config) *env {
	t.Helper()
	clock := newFakeClock()
	return &env{
		clock:  clock,
		cp:     startFakeCP(t, newPKI(t, clock)),
		engine: startEngine(t, engineCfg),
		logs:   logtest.New(t),
	}
}

func (e *env) config(t *testing.T) Config {
	t.Helper()
	return newConfig(t, e.cp, e.engine.URL, e.logs)
}

func TestJoinPersistsIdentityAndRestartReusesIt(t *testing.T) {
	e := newEnv(t, sim.Config{})
	cfg := e.config(t)
	cfg.StayRegistered = true // so that the restart finds the node known

	ra := start(t, cfg).waitReady(t)
	id := ra.NodeID()
	if !strings.HasPrefix(id, "node-") {
		t.Fatalf("NodeID: got %q, want one made from the name hint", id)
	}
	if got, ok := pki.NodeIDOf(ra.Certificate()); !ok || got != id {
		t.Errorf("certificate names node %q, want %q", got, id)
	}

	// What was registered.
	e.cp.mu.Lock()
	reg := e.cp.registers[0]
	e.cp.mu.Unlock()
	if reg.Endpoint != cfg.AdvertiseURL || reg.Name != "node" || reg.Facts.Models[0] != model {
		t.Errorf("register request: got %+v", reg)
	}

	// What was stored, and how.
	dir := cfg.StateDir
	if got := fileMode(t, dir); got != 0o700 {
		t.Errorf("state directory mode: got %v, want 0700", got)
	}
	if got := fileMode(t, filepath.Join(dir, keyFile)); got != 0o600 {
		t.Errorf("key.pem mode: got %v, want 0600", got)
	}
	var rec nodeRecord
	b, err := os.ReadFile(filepath.Join(dir, nodeFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rec); err != nil || rec.NodeID != id ||
		rec.HeartbeatIntervalMS != 7000 {
		t.Errorf("node.json: got %+v (%v), want node %s and interval 7000", rec, err, id)
	}
	stored, err := os.ReadFile(filepath.Join(dir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	if leaf, err := pki.ParseCertPEM(stored); err != nil ||
		leaf.SerialNumber.Cmp(ra.Certificate().SerialNumber) != 0 {
		t.Errorf("cert.pem is not the certificate in use (%v)", err)
	}
	keyBefore, _ := os.ReadFile(filepath.Join(dir, keyFile))

	if err := ra.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, _, deregs := e.cp.counts(); deregs != 0 {
		t.Errorf("deregistered %d times, want none with StayRegistered", deregs)
	}

	// A restart without a token carries on as the same node.
	before := len(e.cp.heartbeatsOf())
	cfg2 := e.config(t)
	cfg2.StateDir, cfg2.JoinToken, cfg2.CAFingerprint = dir, "", ""
	ra2 := start(t, cfg2).waitReady(t)
	if ra2.NodeID() != id {
		t.Errorf("NodeID after restart: got %q, want %q", ra2.NodeID(), id)
	}
	if regs, _, _ := e.cp.counts(); regs != 1 {
		t.Errorf("registered %d times, want 1", regs)
	}
	keyAfter, _ := os.ReadFile(filepath.Join(dir, keyFile))
	if string(keyAfter) != string(keyBefore) {
		t.Error("key.pem changed across the restart")
	}
	waitFor(t, "a ready heartbeat from the restarted agent", func() bool {
		hb, ok := e.cp.lastHeartbeat()
		return ok && len(e.cp.heartbeatsOf()) > before && hb.NodeID == id &&
			hb.State == agentapi.StateReady
	})
}

func TestJoinRefused(t *testing.T) {
	e := newEnv(t, sim.Config{})
	other := newPKI(t, e.clock)

	tests := []struct {
		name     string
		edit     func(*Config)
		wantCode string // APIError code, if any
		wantText string
	}{
		{
			name:     "bad token",
			edit:     func(c *Config) { c.JoinToken = "jt_wrong" },
			wantCode: agentapi.CodeInvalidToken,
			wantText: "create a new one",
		},
		{
			name:     "fingerprint of another CA",
			edit:     func(c *Config) { c.CAFingerprint = other.ca.Fingerprint() },
			wantText: "check the CA fingerprint",
		},
		{
			name:     "no token",
			edit:     func(c *Config) { c.JoinToken = "" },
			wantText: "no join token",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := e.config(t)
			tt.edit(&cfg)
			a, err := New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), ioTimeout)
			defer cancel()
			err = a.Run(ctx)
			if err == nil {
				t.Fatal("Run: got nil, want an error")
			}
			if tt.wantCode != "" {
				apiErr, ok := errors.AsType[*APIError](err)
				if !ok || apiErr.Code != tt.wantCode || apiErr.Status != http.StatusUnauthorized {
					t.Errorf("Run: got %v, want a 401 %s refusal", err, tt.wantCode)
				}
			}
			if !strings.Contains(err.Error(), tt.wantText) {
				t.Errorf("Run: got %q, want it to say %q", err, tt.wantText)
			}
			if strings.Contains(err.Error(), "jt_") {
				t.Errorf("error %q shows the join token", err)
			}
			for _, f := range []string{keyFile, certFile, bundleFile, nodeFile} {
				if _, err := os.Stat(filepath.Join(cfg.StateDir, f)); err == nil {
					t.Errorf("%s stored after a refused join", f)
				}
			}
			if a.NodeID() != "" {
				t.Errorf("NodeID: got %q, want none", a.NodeID())
			}
		})
	}
}

func TestJoinRetriesServerErrors(t *testing.T) {
	e := newEnv(t, sim.Config{})
	e.cp.fail(agentapi.PathRegister, 2)
	ra := start(t, e.config(t))

	// Each failure leaves the agent waiting out a backoff on the clock:
	// 1s, then 2s, each ±20%.
	for _, want := range []time.Duration{time.Second, 2 * time.Second} {
		e.clock.waitTimerFor(t, "a join retry timer", want)
		e.clock.Advance(want)
	}
	ra.waitReady(t)
	if !e.logs.Has("join failed; retrying") {
		t.Error("no warning about the failed join")
	}
}

func TestJoinWithExpiredStoredCertificate(t *testing.T) {
	e := newEnv(t, sim.Config{})
	cfg := e.config(t)
	cfg.StayRegistered = true
	ra := start(t, cfg).waitReady(t)
	if err := ra.stop(t); err != nil {
		t.Fatal(err)
	}

	e.clock.Advance(e.cp.lifetime + time.Minute)
	cfg2 := e.config(t)
	cfg2.StateDir = cfg.StateDir
	a, err := New(cfg2)
	if err != nil {
		t.Fatal(err)
	}
	err = a.Run(context.Background())
	if !errors.Is(err, ErrCertificateExpired) || !strings.Contains(err.Error(), "new token") {
		t.Errorf("Run: got %v, want ErrCertificateExpired asking for a new token", err)
	}
}

func TestProxyToEngine(t *testing.T) {
	e := newEnv(t, sim.Config{TimeBetweenTokens: time.Millisecond})
	ra := start(t, e.config(t)).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)
	ctx := context.Background()

	t.Run("health", func(t *testing.T) {
		resp, err := gw.Get(ra.url("/health"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /health: got %d, want 200", resp.StatusCode)
		}
	})

	t.Run("control plane may check health", func(t *testing.T) {
		c := e.cp.client(t, e.cp.issue(t, pki.ControlPlaneIdentity), pki.NodeIdentity(ra.NodeID()))
		resp, err := c.Get(ra.url("/health"))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Errorf("GET /health: got %d, want 200", resp.StatusCode)
		}
	})

	t.Run("chat", func(t *testing.T) {
		resp := post(t, ctx, gw, ra.url("/v1/chat/completions"), chatBody, nil)
		defer resp.Body.Close()
		var body struct {
			Choices []struct {
				Message struct{ Content string }
			}
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			}
		}
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			t.Fatal(err)
		}
		if resp.StatusCode != http.StatusOK || body.Usage.CompletionTokens != 5 ||
			len(body.Choices) != 1 || body.Choices[0].Message.Content == "" {
			t.Errorf("chat: got %d %+v, want 200 with 5 tokens", resp.StatusCode, body)
		}
	})

	t.Run("stream", func(t *testing.T) {
		resp := post(t, ctx, gw, ra.url("/v1/chat/completions"), streamBody, nil)
		defer resp.Body.Close()
		if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
			t.Fatalf("Content-Type: got %q, want text/event-stream", ct)
		}
		br := bufio.NewReader(resp.Body)
		tokens, finish := 0, ""
		for {
			ev := readEvent(t, br)
			if ev == "[DONE]" {
				break
			}
			var chunk struct {
				Choices []struct {
					Delta        struct{ Content string }
					FinishReason string `json:"finish_reason"`
				}
			}
			if err := json.Unmarshal([]byte(ev), &chunk); err != nil || len(chunk.Choices) != 1 {
				t.Fatalf("event %q: %v", ev, err)
			}
			if chunk.Choices[0].Delta.Content != "" {
				tokens++
			}
			if f := chunk.Choices[0].FinishReason; f != "" {
				finish = f
			}
		}
		if tokens != 8 || finish != "length" {
			t.Errorf("stream: got %d tokens, finish reason %q; want 8 and length", tokens, finish)
		}
	})

	t.Run("events are flushed; a client going away cancels the engine", func(t *testing.T) {
		waitFor(t, "earlier requests to end", func() bool { return ra.InFlight() == 0 })
		ctx, cancel := context.WithCancel(ctx)
		defer cancel()
		resp := post(t, ctx, gw, ra.url("/v1/chat/completions"),
			`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
			http.Header{holdHeader: {"1"}})
		defer resp.Body.Close()

		// The engine holds the rest of the stream until released, so the
		// first event can only arrive if the agent flushed it alone.
		if ev := readEvent(t, bufio.NewReader(resp.Body)); !strings.Contains(ev, "first") {
			t.Errorf("first event: got %q", ev)
		}
		if n := ra.InFlight(); n != 1 {
			t.Errorf("InFlight: got %d, want 1", n)
		}

		cancel()
		select {
		case <-e.engine.gone:
		case <-time.After(ioTimeout):
			t.Fatal("the engine's request was not cancelled")
		}
		waitFor(t, "no request in flight", func() bool { return ra.InFlight() == 0 })
	})

	t.Run("unknown path", func(t *testing.T) {
		resp, err := gw.Get(ra.url("/admin"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ Error struct{ Code string } }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		if resp.StatusCode != http.StatusNotFound || body.Error.Code != "unknown_url" {
			t.Errorf("GET /admin: got %d %+v, want a 404 unknown_url", resp.StatusCode, body)
		}
	})
}

func TestHealthFollowsTheEngine(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ra := start(t, e.config(t)).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)

	health := func() (int, string) {
		resp, err := gw.Get(ra.url("/health"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var body struct{ State string }
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, body.State
	}

	if err := e.engine.SetFaults(sim.Faults{Unhealthy: true}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "GET /health to answer 503", func() bool {
		status, state := health()
		return status == http.StatusServiceUnavailable && state == string(agentapi.StateUnhealthy)
	})
	waitFor(t, "an unhealthy heartbeat", func() bool {
		hb, ok := e.cp.lastHeartbeat()
		return ok && hb.State == agentapi.StateUnhealthy && strings.Contains(hb.Reason, "503")
	})

	if err := e.engine.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "GET /health to answer 200", func() bool {
		status, _ := health()
		return status == http.StatusOK
	})
	waitFor(t, "a ready heartbeat", func() bool {
		hb, ok := e.cp.lastHeartbeat()
		return ok && hb.State == agentapi.StateReady
	})
}

func TestHandshakeRefusals(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ra := start(t, e.config(t)).waitReady(t)
	other := newPKI(t, e.clock)
	want := pki.NodeIdentity(ra.NodeID())

	tests := []struct {
		name string
		cert *tls.Certificate // presented; nil for none
	}{
		{"no certificate", nil},
		{"gateway identity from another CA", other.issue(t, pki.GatewayIdentity)},
		{"node identity", e.cp.issue(t, pki.NodeIdentity("other"))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			src := pki.Source{Bundle: e.cp.ca.Bundle, Now: e.clock.Now}
			if tt.cert != nil {
				src.Certificate = func() *tls.Certificate { return tt.cert }
			}
			conn, err := tls.Dial("tcp", ra.Addr().String(), pki.ClientConfig(src, want))
			if err == nil {
				// In TLS 1.3 the server checks the client's certificate
				// after the client has finished: its verdict comes with
				// the first read.
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(ioTimeout))
				_, err = conn.Read(make([]byte, 1))
			}
			// "remote error": the agent refused, not the client.
			if err == nil || !strings.Contains(err.Error(), "remote error") {
				t.Errorf("handshake: got %v, want a TLS alert from the agent", err)
			}
		})
	}
}

func TestHeartbeatsFollowTheRequestedInterval(t *testing.T) {
	// An engine that never gets ready: no change of state wakes the
	// heartbeat loop, so only its timer makes it beat.
	e := newEnv(t, sim.Config{Faults: sim.Faults{Unhealthy: true}})
	ra := start(t, e.config(t))
	interval := 7 * time.Second // the fake control plane's

	waitFor(t, "the first heartbeat", func() bool { return len(e.cp.heartbeatsOf()) == 1 })
	first := e.cp.heartbeatsOf()[0]
	if first.State != agentapi.StateStarting || first.Reason == "" {
		t.Errorf("first heartbeat: got %+v, want starting with a reason", first)
	}
	e.clock.waitTimerAt(t, "the heartbeat timer", first.At.Add(interval))

	// Nothing is sent before the interval has passed...
	e.clock.Advance(interval - time.Millisecond)
	if !e.clock.hasTimer(func(ft *fakeTimer) bool { return ft.d == interval }) {
		t.Fatal("the heartbeat timer fired before the interval")
	}
	// ...and the next heartbeat goes out when it has.
	e.clock.Advance(time.Millisecond)
	waitFor(t, "the next heartbeat", func() bool { return len(e.cp.heartbeatsOf()) == 2 })
	second := e.cp.heartbeatsOf()[1]
	if got := second.At.Sub(first.At); got != interval {
		t.Errorf("time between heartbeats: got %v, want %v", got, interval)
	}
	if second.NodeID != ra.NodeID() {
		t.Errorf("heartbeat from %q, want %q", second.NodeID, ra.NodeID())
	}

	// A new interval is honoured from the answer that names it.
	e.cp.setInterval(3000)
	e.clock.waitTimerAt(t, "the heartbeat timer", second.At.Add(interval))
	e.clock.Advance(interval)
	e.clock.waitTimerFor(t, "a 3s heartbeat timer", 3*time.Second)
}

func TestHeartbeatLoad(t *testing.T) {
	// The simulator's first token waits an hour: requests stay running
	// (one, with the only slot) or waiting (the rest).
	e := newEnv(t, sim.Config{MaxNumSeqs: 1, TimeToFirstToken: time.Hour})
	ra := start(t, e.config(t)).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	for range 3 {
		go func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
				ra.url("/v1/completions"), strings.NewReader(`{"model":"m","prompt":"hi"}`))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := gw.Do(req); err == nil {
				resp.Body.Close()
			}
		}()
	}
	waitFor(t, "three requests in flight", func() bool { return ra.InFlight() == 3 })
	want := agentapi.Load{Running: 1, Waiting: 2, KVCacheUsage: 1}
	for i := 0; ; i++ {
		n := len(e.cp.heartbeatsOf())
		e.clock.waitTimerFor(t, "the heartbeat timer", 7*time.Second)
		e.clock.Advance(7 * time.Second)
		waitFor(t, "a heartbeat", func() bool { return len(e.cp.heartbeatsOf()) > n })
		hb, _ := e.cp.lastHeartbeat()
		if hb.Load == want {
			break
		}
		if i == 100 {
			t.Fatalf("heartbeat load: got %+v, want %+v", hb.Load, want)
		}
	}
}

func TestRenewalSwapsTheCertificate(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ra := start(t, e.config(t)).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)
	old := ra.Certificate()

	// The renewal is scheduled at RenewAt by the agent's clock.
	renewAt := pki.RenewAt(old.NotBefore, old.NotAfter, 0.5)
	e.clock.waitTimerAt(t, "the renewal timer", renewAt)

	// A stream opened on the old certificate.
	resp := post(t, context.Background(), gw, ra.url("/v1/chat/completions"),
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		http.Header{holdHeader: {"1"}})
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readEvent(t, br)

	e.clock.AdvanceTo(renewAt)
	waitFor(t, "a new certificate", func() bool {
		return ra.Certificate().SerialNumber.Cmp(old.SerialNumber) != 0
	})
	renewed := ra.Certificate()
	if _, renewals, _ := e.cp.counts(); renewals != 1 {
		t.Errorf("renewals: got %d, want 1", renewals)
	}
	if !renewed.NotAfter.After(old.NotAfter) {
		t.Errorf("renewed certificate ends %v, not after the old one's %v",
			renewed.NotAfter, old.NotAfter)
	}

	// A new connection sees the new certificate...
	fresh := ra.gateway(t, e.cp.pkiEnv)
	hr, err := fresh.Get(ra.url("/health"))
	if err != nil {
		t.Fatal(err)
	}
	hr.Body.Close()
	if got := hr.TLS.PeerCertificates[0].SerialNumber; got.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("new handshake: got serial %v, want %v", got, renewed.SerialNumber)
	}
	// ...while the stream on the old one carries on to its end.
	if resp.TLS.PeerCertificates[0].SerialNumber.Cmp(old.SerialNumber) != 0 {
		t.Error("the stream's connection does not use the old certificate")
	}
	close(e.engine.release)
	if ev := readEvent(t, br); !strings.Contains(ev, "last") {
		t.Errorf("event after renewal: got %q", ev)
	}
	if ev := readEvent(t, br); ev != "[DONE]" {
		t.Errorf("end of stream: got %q, want [DONE]", ev)
	}

	// The new certificate is stored, and the next renewal is scheduled
	// from it.
	stored, err := os.ReadFile(filepath.Join(ra.cfg.StateDir, certFile))
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := pki.ParseCertPEM(stored)
	if err != nil || leaf.SerialNumber.Cmp(renewed.SerialNumber) != 0 {
		t.Errorf("cert.pem is not the renewed certificate (%v)", err)
	}
	next := pki.RenewAt(renewed.NotBefore, renewed.NotAfter, 0.5)
	e.clock.waitTimerAt(t, "the next renewal timer", next)

	// RenewNow renews at once and reschedules.
	if err := ra.RenewNow(context.Background()); err != nil {
		t.Fatalf("RenewNow: %v", err)
	}
	now := ra.Certificate()
	if now.SerialNumber.Cmp(renewed.SerialNumber) == 0 {
		t.Fatal("RenewNow did not change the certificate")
	}
	after := pki.RenewAt(now.NotBefore, now.NotAfter, 0.5)
	e.clock.waitTimerAt(t, "the renewal timer after RenewNow", after)
}

func TestRenewalRetriesUntilExpiry(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ra := start(t, e.config(t)).waitReady(t)
	cert := ra.Certificate()
	e.cp.fail(agentapi.PathRenew, 1000)

	renewAt := pki.RenewAt(cert.NotBefore, cert.NotAfter, 0.5)
	e.clock.waitTimerAt(t, "the renewal timer", renewAt)
	e.clock.AdvanceTo(renewAt)

	// The first retry comes after 1s (±20%; Rand is 0.5).
	e.clock.waitTimerFor(t, "a renewal retry", time.Second)
	if !e.logs.Has("certificate renewal failed") {
		t.Error("no warning about the failed renewal")
	}

	e.clock.AdvanceTo(cert.NotAfter)
	err := ra.wait(t)
	if !errors.Is(err, ErrCertificateExpired) {
		t.Errorf("Run: got %v, want ErrCertificateExpired", err)
	}
}

func TestNodeGoneStopsTheAgent(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ra := start(t, e.config(t)).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)

	e.clock.waitTimerFor(t, "the heartbeat timer", 7*time.Second)
	e.cp.remove(ra.NodeID())
	e.clock.Advance(7 * time.Second)

	err := ra.wait(t)
	if !errors.Is(err, ErrNodeGone) || !strings.Contains(err.Error(), "removed") {
		t.Fatalf("Run: got %v, want ErrNodeGone saying the node was removed", err)
	}
	gw.Transport.(*http.Transport).CloseIdleConnections()
	if resp, err := gw.Get(ra.url("/health")); err == nil {
		resp.Body.Close()
		t.Error("the agent still serves after its node was removed")
	}
	if _, err := os.Stat(filepath.Join(ra.cfg.StateDir, nodeFile)); err == nil {
		t.Error("the removed node's identity is still stored")
	}
}

func TestDrain(t *testing.T) {
	e := newEnv(t, sim.Config{})
	ra := start(t, e.config(t)).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)

	resp := post(t, context.Background(), gw, ra.url("/v1/chat/completions"),
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		http.Header{holdHeader: {"1"}})
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	readEvent(t, br)

	// SIGTERM.
	ra.cancel()
	waitFor(t, "a draining heartbeat", func() bool {
		hb, ok := e.cp.lastHeartbeat()
		return ok && hb.State == agentapi.StateDraining
	})

	// Still listening while the stream is in flight, but not healthy.
	other := ra.gateway(t, e.cp.pkiEnv)
	hr, err := other.Get(ra.url("/health"))
	if err != nil {
		t.Fatalf("GET /health while draining: %v", err)
	}
	hr.Body.Close()
	if hr.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("GET /health while draining: got %d, want 503", hr.StatusCode)
	}
	select {
	case <-ra.done:
		t.Fatal("Run returned with a request in flight")
	default:
	}

	// The request completes in full.
	close(e.engine.release)
	rest, err := io.ReadAll(br)
	if err != nil {
		t.Fatalf("reading the rest of the stream: %v", err)
	}
	if !strings.Contains(string(rest), "last") ||
		!strings.HasSuffix(string(rest), "data: [DONE]\n\n") {
		t.Errorf("rest of the stream: got %q", rest)
	}

	if err := ra.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.cp.mu.Lock()
	deregs := e.cp.deregisters
	e.cp.mu.Unlock()
	if len(deregs) != 1 || deregs[0].Reason == "" {
		t.Errorf("deregisters: got %+v, want one with a reason", deregs)
	}
	// No heartbeat said ready after the drain began.
	hbs := e.cp.heartbeatsOf()
	draining := false
	for _, hb := range hbs {
		draining = draining || hb.State == agentapi.StateDraining
		if draining && hb.State != agentapi.StateDraining {
			t.Errorf("heartbeat %q after a draining one", hb.State)
		}
	}
	if _, err := os.Stat(filepath.Join(ra.cfg.StateDir, nodeFile)); err == nil {
		t.Error("the deregistered node's identity is still stored")
	}
}

func TestDrainTimeoutCutsRequests(t *testing.T) {
	e := newEnv(t, sim.Config{})
	cfg := e.config(t)
	cfg.DrainTimeout = 50 * time.Millisecond
	ra := start(t, cfg).waitReady(t)
	gw := ra.gateway(t, e.cp.pkiEnv)

	resp := post(t, context.Background(), gw, ra.url("/v1/chat/completions"),
		`{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":true}`,
		http.Header{holdHeader: {"1"}})
	defer resp.Body.Close()
	readEvent(t, bufio.NewReader(resp.Body))

	if err := ra.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if !e.logs.Has("drain timeout; cutting requests in flight") {
		t.Error("no warning about cut requests")
	}
	if _, _, deregs := e.cp.counts(); deregs != 1 {
		t.Errorf("deregisters: got %d, want 1", deregs)
	}
}

func TestSpotNoticeDrains(t *testing.T) {
	e := newEnv(t, sim.Config{})
	preempted := make(chan struct{})
	md := newMetadataServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Metadata-Flavor") != "Google" {
			http.Error(w, "missing header", http.StatusForbidden)
			return
		}
		select {
		case <-preempted:
			io.WriteString(w, "TRUE")
		default:
			io.WriteString(w, "FALSE")
		}
	})
	cfg := e.config(t)
	cfg.Spot, cfg.SpotMetadataURL = SpotGCP, md
	ra := start(t, cfg).waitReady(t)

	e.clock.waitTimerFor(t, "the spot check timer", DefaultSpotCheckInterval)
	close(preempted)
	e.clock.Advance(DefaultSpotCheckInterval)

	if err := ra.wait(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	e.cp.mu.Lock()
	deregs := e.cp.deregisters
	e.cp.mu.Unlock()
	if len(deregs) != 1 || !strings.Contains(deregs[0].Reason, "spot interruption") {
		t.Errorf("deregisters: got %+v, want one for a spot interruption", deregs)
	}
}
