package controlplane_test

import (
	"bufio"
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/agent"
	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/controlplane"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
)

const fleetModel = "meta-llama/Llama-3.1-8B-Instruct"

// fleet is a control plane with its gateway and agents in front of
// simulator engines, all on loopback over real TLS.
type fleet struct {
	cp     *controlplane.Server
	url    string // the gateway
	key    string
	agents []*fleetAgent
}

type fleetAgent struct {
	agent  *agent.Agent
	engine *sim.Server
	stop   context.CancelFunc // SIGTERM
	done   chan error
}

// newFleet starts a control plane and n agents with certificates of the
// given lifetime.
func newFleet(t *testing.T, n int, lifetime time.Duration,
	tune func(*config.Config)) *fleet {
	t.Helper()
	ctx := context.Background()
	cfg := config.Default()
	cfg.DataDir, cfg.AdminToken = t.TempDir(), "admin-token"
	cfg.Health.Interval = 200 * time.Millisecond
	cfg.Heartbeat.Interval = 200 * time.Millisecond
	cfg.Heartbeat.TTL = 2 * time.Second
	cfg.PKI.CertLifetime = lifetime
	cfg.DrainTimeout = 10 * time.Second
	if tune != nil {
		tune(&cfg)
	}
	cp, err := controlplane.New(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fleet{cp: cp}

	public := listen(t)
	agentAPI := listen(t)
	cpCtx, stopCP := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() { served <- cp.Serve(cpCtx, public, agentAPI) }()
	t.Cleanup(func() {
		for _, a := range f.agents {
			a.stop()
			<-a.done
		}
		stopCP()
		<-served
	})
	f.url = "http://" + public.Addr().String()

	k, err := cp.Admin().CreateKey(ctx, admin.CreateKeyRequest{Name: "e2e"})
	if err != nil {
		t.Fatal(err)
	}
	f.key = k.Secret

	for i := range n {
		engine, err := sim.New(sim.Config{Models: []string{fleetModel},
			TimeBetweenTokens: 5 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		run, err := engine.Start("127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { run.Close() })
		tok, err := cp.Admin().CreateJoinToken(ctx, admin.CreateJoinTokenRequest{
			Models: []string{fleetModel}})
		if err != nil {
			t.Fatal(err)
		}
		ln := listen(t)
		a, err := agent.New(agent.Config{
			ControlPlane:  "https://" + agentAPI.Addr().String(),
			JoinToken:     tok.Secret,
			CAFingerprint: cp.Fingerprint(),
			StateDir:      t.TempDir(),
			Listener:      ln,
			AdvertiseURL:  "https://" + ln.Addr().String(),
			Name:          fmt.Sprintf("node-%d", i),
			Facts: agentapi.Facts{Provider: "local", Engine: "sim",
				Models: []string{fleetModel}},
			EngineURL:           run.URL,
			EngineCheckInterval: 100 * time.Millisecond,
			DrainTimeout:        10 * time.Second,
		})
		if err != nil {
			t.Fatal(err)
		}
		actx, stop := context.WithCancel(ctx)
		fa := &fleetAgent{agent: a, engine: engine, stop: stop, done: make(chan error, 1)}
		go func() { fa.done <- a.Run(actx) }()
		f.agents = append(f.agents, fa)
	}

	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	for _, fa := range f.agents {
		select {
		case <-fa.agent.Ready():
		case err := <-fa.done:
			t.Fatalf("agent stopped before it was ready: %v", err)
		case <-wctx.Done():
			t.Fatal("agent not ready in time")
		}
	}
	f.waitReady(t, n)
	return f
}

// waitReady polls until n nodes are ready.
func (f *fleet) waitReady(t *testing.T, n int) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ready := 0
		for _, st := range f.cp.Registry().List() {
			if st.State == registry.StateReady {
				ready++
			}
		}
		if ready == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d nodes ready: %+v", ready, n, f.cp.Registry().List())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// request sends one chat completion through the gateway and checks the
// answer is whole; stream selects SSE.
func (f *fleet) request(ctx context.Context, stream bool, tokens int) error {
	body := fmt.Sprintf(`{"model":%q,"max_tokens":%d,"stream":%v,`+
		`"messages":[{"role":"user","content":"tell me about spot GPUs"}]}`,
		fleetModel, tokens, stream)
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.url+"/v1/chat/completions",
		strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+f.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("status %d: %s", resp.StatusCode, b)
	}
	if !stream {
		var c struct {
			Usage struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&c); err != nil {
			return err
		}
		if c.Usage.CompletionTokens != tokens {
			return fmt.Errorf("completion tokens %d, want %d", c.Usage.CompletionTokens, tokens)
		}
		return nil
	}
	words, done := 0, false
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		data, ok := strings.CutPrefix(sc.Text(), "data: ")
		if !ok {
			continue
		}
		if data == "[DONE]" {
			done = true
			continue
		}
		if strings.Contains(data, `"error"`) {
			return fmt.Errorf("error event: %s", data)
		}
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			return err
		}
		if len(c.Choices) > 0 {
			words += len(strings.Fields(c.Choices[0].Delta.Content))
		}
	}
	if err := sc.Err(); err != nil {
		return err
	}
	if !done || words != tokens {
		return fmt.Errorf("stream: %d words, [DONE] %v; want %d and [DONE]", words, done, tokens)
	}
	return nil
}

// load sends requests from workers until stop is closed and returns the
// count sent and the failures.
func (f *fleet) load(workers, tokens int, stop <-chan struct{}) (sent int64, failures []error) {
	var (
		wg  sync.WaitGroup
		mu  sync.Mutex
		cnt atomic.Int64
	)
	for w := range workers {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				cnt.Add(1)
				if err := f.request(context.Background(), (w+i)%2 == 0, tokens); err != nil {
					mu.Lock()
					failures = append(failures, err)
					mu.Unlock()
				}
			}
		})
	}
	wg.Wait()
	return cnt.Load(), failures
}

// TestAgentsServeThroughTheGateway: two agents joined with tokens serve
// their engines to the gateway over mTLS.
func TestAgentsServeThroughTheGateway(t *testing.T) {
	f := newFleet(t, 2, time.Hour, nil)
	for _, stream := range []bool{false, true} {
		if err := f.request(context.Background(), stream, 20); err != nil {
			t.Errorf("stream=%v: %v", stream, err)
		}
	}
	for _, st := range f.cp.Registry().List() {
		if !strings.HasPrefix(st.Endpoint, "https://") || st.Source != registry.SourceAgent ||
			st.CertNotAfter.IsZero() || st.LastHeartbeat.IsZero() {
			t.Errorf("node %s: %+v, want an agent node on https with a certificate", st.ID, st)
		}
	}
}

// TestGatewayRequiresTheNodeID: a registry entry whose expected node ID
// differs from the certificate at its endpoint is refused at the
// handshake, and never becomes ready.
func TestGatewayRequiresTheNodeID(t *testing.T) {
	f := newFleet(t, 1, time.Hour, nil)
	real := f.cp.Registry().List()[0]

	// Ask for "impostor" at the real node's address.
	rt := f.cp.NodeTransport("impostor")
	req, _ := http.NewRequest(http.MethodGet, real.Endpoint+"/health", nil)
	_, err := rt.RoundTrip(req)
	var pe *pki.PeerError
	if !errors.As(err, &pe) || pe.Want != pki.NodeIdentity("impostor") ||
		pe.Presented != pki.NodeIdentity(real.ID) {
		t.Fatalf("dialing node %s as impostor: err = %v, want a PeerError naming both",
			real.ID, err)
	}

	if err := f.cp.Registry().Add(registry.Spec{ID: "impostor", Endpoint: real.Endpoint,
		Models: []string{fleetModel}, Source: registry.SourceAdmin,
		Transport: f.cp.NodeTransport("impostor")}); err != nil {
		t.Fatal(err)
	}
	// Several health rounds pass; the impostor entry never turns ready.
	deadline := time.Now().Add(1 * time.Second)
	for time.Now().Before(deadline) {
		if st, _ := f.cp.Registry().Get("impostor"); st.State == registry.StateReady {
			t.Fatal("a node entry whose certificate names another node became ready")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestCertificateRotationUnderLoad runs traffic while every certificate,
// the agents' and the gateway's, is renewed several times; no request
// fails.
func TestCertificateRotationUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("rotation needs several certificate lifetimes")
	}
	const lifetime = 10 * time.Second // the shortest the config allows
	f := newFleet(t, 2, lifetime, nil)
	first := make([]*x509.Certificate, len(f.agents))
	for i, a := range f.agents {
		first[i] = a.agent.Certificate()
	}

	// Run traffic until each agent has renewed twice (renewals come at
	// about 2/3 of the lifetime), or three lifetimes have passed.
	stop := make(chan struct{})
	go func() {
		defer close(stop)
		renewals := make([]int, len(f.agents))
		last := append([]*x509.Certificate(nil), first...)
		deadline := time.Now().Add(3 * lifetime)
		for time.Now().Before(deadline) {
			all := true
			for i, a := range f.agents {
				if c := a.agent.Certificate(); c.SerialNumber.Cmp(last[i].SerialNumber) != 0 {
					last[i] = c
					renewals[i]++
				}
				all = all && renewals[i] >= 2
			}
			if all {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	sent, failures := f.load(4, 10, stop)
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed during rotation; first: %v", len(failures), sent,
			failures[0])
	}
	for i, a := range f.agents {
		if c := a.agent.Certificate(); c.SerialNumber.Cmp(first[i].SerialNumber) == 0 {
			t.Errorf("agent %d never renewed its certificate", i)
		}
	}
	t.Logf("%d requests, 0 failed, while certificates rotated", sent)
}

// TestAgentSIGTERMUnderLoad stops an agent while streams run through it:
// none fails, although failover is off, because the agent drains.
func TestAgentSIGTERMUnderLoad(t *testing.T) {
	f := newFleet(t, 2, time.Hour, func(c *config.Config) {
		c.Gateway.DisableFailover = true
	})
	stop := make(chan struct{})
	var sent int64
	var failures []error
	done := make(chan struct{})
	go func() {
		sent, failures = f.load(6, 150, stop) // 150 tokens × 5 ms: long streams
		close(done)
	}()

	// Stop the first agent once requests are on it.
	victim := f.agents[0]
	deadline := time.Now().Add(5 * time.Second)
	for victim.agent.InFlight() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	inflight := victim.agent.InFlight()
	victim.stop()
	if err := <-victim.done; err != nil {
		t.Errorf("agent drain: %v", err)
	}
	victim.done <- nil // for the cleanup
	if _, ok := f.cp.Registry().Get(victim.agent.NodeID()); ok {
		t.Error("drained agent is still registered")
	}
	// Keep the load going on the other node a little longer.
	time.Sleep(300 * time.Millisecond)
	close(stop)
	<-done
	if len(failures) > 0 {
		t.Fatalf("%d of %d requests failed across an agent's SIGTERM; first: %v",
			len(failures), sent, failures[0])
	}
	if inflight < 2 {
		t.Errorf("%d requests in flight on the agent when it was stopped, want 2 or more",
			inflight)
	}
	t.Logf("%d requests, %d in flight on the stopped agent, 0 failed", sent, inflight)
}

// TestAgentStreamsOverHTTP2: the stream transport of an agent node speaks
// HTTP/2 over the same mutual TLS, and it too refuses a certificate that
// names another node.
func TestAgentStreamsOverHTTP2(t *testing.T) {
	f := newFleet(t, 1, time.Hour, nil)
	real := f.cp.Registry().List()[0]

	req, _ := http.NewRequest(http.MethodGet, real.Endpoint+"/health", nil)
	resp, err := f.cp.NodeStreamTransport(real.ID).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.ProtoMajor != 2 {
		t.Fatalf("health over the stream transport: %d over HTTP/%d, want 200 over HTTP/2",
			resp.StatusCode, resp.ProtoMajor)
	}

	req, _ = http.NewRequest(http.MethodGet, real.Endpoint+"/health", nil)
	_, err = f.cp.NodeStreamTransport("impostor").RoundTrip(req)
	var pe *pki.PeerError
	if !errors.As(err, &pe) {
		t.Fatalf("stream transport expecting another node: err = %v, want a PeerError", err)
	}

	// A stream through the gateway goes over it.
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := f.request(ctx, true, 8); err != nil {
		t.Fatal(err)
	}
}
