package sim_test

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// forever is a delay no test outlives: requests waiting on it end only
// by cancellation.
const forever = time.Hour

// pending is a request running in the background.
type pending struct {
	cancel context.CancelFunc
	done   chan error // receives the request's error once it ends
}

// startRequest sends body to path in the background; its error (nil
// for a whole answer) arrives on done.
func (n *node) startRequest(t *testing.T, path, body string) *pending {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	p := &pending{cancel: cancel, done: make(chan error, 1)}
	go func() {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.URL+path,
			strings.NewReader(body))
		if err != nil {
			p.done <- err
			return
		}
		resp, err := n.client.Do(req)
		if err != nil {
			p.done <- err
			return
		}
		defer resp.Body.Close()
		_, err = io.ReadAll(resp.Body)
		p.done <- err
	}()
	return p
}

// ended waits for a request that must fail with a cancellation.
func (p *pending) ended(t *testing.T) {
	t.Helper()
	select {
	case err := <-p.done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("got request error %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("request did not end after its cancellation")
	}
}

const shortChat = `{"messages":[{"role":"user","content":"hi"}],"max_tokens":2}`

func TestMaxNumSeqsQueues(t *testing.T) {
	n := startNode(t, sim.Config{MaxNumSeqs: 1, TimeToFirstToken: forever})
	stats := func(running, waiting, cancelled int64) func(sim.Stats) bool {
		return func(s sim.Stats) bool {
			return s.Running == running && s.Waiting == waiting && s.Cancelled == cancelled
		}
	}

	a := n.startRequest(t, "/v1/chat/completions", shortChat)
	n.waitStats(t, "a running", stats(1, 0, 0))
	b := n.startRequest(t, "/v1/chat/completions", shortChat)
	n.waitStats(t, "b waiting", stats(1, 1, 0))
	c := n.startRequest(t, "/v1/completions", `{"prompt":"x"}`)
	n.waitStats(t, "c waiting", stats(1, 2, 0))

	// A client leaving the queue frees its place, not a slot.
	c.cancel()
	c.ended(t)
	n.waitStats(t, "c gone from the queue", stats(1, 1, 1))

	// A running request that ends hands its slot to the next in line.
	a.cancel()
	a.ended(t)
	n.waitStats(t, "b running", stats(1, 0, 2))

	b.cancel()
	b.ended(t)
	n.waitStats(t, "all done", stats(0, 0, 3))
	if st := n.Server().Stats(); st.Requests != 3 || st.Completed != 0 {
		t.Errorf("got %d requests, %d completed; want 3, 0", st.Requests, st.Completed)
	}
}

func TestCancelStopsGeneration(t *testing.T) {
	tests := []struct {
		name   string
		cfg    sim.Config
		stream bool
		read   int // events to read before cancelling
		tokens int64
	}{
		{"stream between tokens", sim.Config{TimeBetweenTokens: forever}, true, 2, 1},
		{"stream before the first token", sim.Config{TimeToFirstToken: forever}, true, 0, 0},
		{"whole answer before the first token", sim.Config{TimeToFirstToken: forever},
			false, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, tt.cfg)
			body := mustJSON(t, map[string]any{"max_tokens": 50, "stream": tt.stream,
				"messages": []any{map[string]any{"role": "user", "content": "hi"}}})
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			if tt.stream {
				resp := n.openStream(ctx, t, "/v1/chat/completions", body)
				r := newSSEReader(resp.Body)
				for i := range tt.read {
					if _, err := r.next(); err != nil {
						t.Fatalf("event %d: %v", i, err)
					}
				}
				n.waitStats(t, "running", func(s sim.Stats) bool { return s.Running == 1 })
				cancel()
			} else {
				p := n.startRequest(t, "/v1/chat/completions", body)
				n.waitStats(t, "running", func(s sim.Stats) bool { return s.Running == 1 })
				p.cancel()
				p.ended(t)
			}
			n.waitStats(t, "cancelled", func(s sim.Stats) bool {
				return s.Cancelled == 1 && s.Running == 0
			})
			if got := n.Server().Stats().GenerationTokens; got != tt.tokens {
				t.Errorf("got %d tokens generated, want %d", got, tt.tokens)
			}
		})
	}
}

func TestKillAndRestart(t *testing.T) {
	n := startNode(t, sim.Config{TimeBetweenTokens: forever})
	resp := n.openStream(context.Background(), t, "/v1/chat/completions",
		`{"messages":[{"role":"user","content":"hi"}],"stream":true}`)
	r := newSSEReader(resp.Body)
	for i := range 2 { // role and first token
		if _, err := r.next(); err != nil {
			t.Fatalf("event %d: %v", i, err)
		}
	}

	n.Kill()
	if _, err := r.all(); err == nil {
		t.Fatal("stream ended cleanly after Kill, want an error")
	}
	if _, err := n.send(context.Background(), t, http.MethodGet, "/health", "", nil); err == nil {
		t.Fatal("killed node answered /health")
	}
	if err := n.Close(); err != nil {
		t.Fatalf("Close after Kill: %v", err)
	}
	if st := n.Server().Stats(); st.Cancelled != 1 || st.Running != 0 {
		t.Errorf("got %d cancelled, %d running; want 1, 0", st.Cancelled, st.Running)
	}

	// The same server comes back on the same address, counters intact.
	again, err := n.Server().Start(n.Addr)
	if err != nil {
		t.Fatalf("restart on %s: %v", n.Addr, err)
	}
	t.Cleanup(func() { again.Close() })
	n2 := &node{Running: again, client: n.client}
	if status, b := n2.do(t, http.MethodGet, "/health", "", nil); status != http.StatusOK {
		t.Fatalf("restarted node: got %d %s, want 200", status, b)
	}
	if got := n2.Server().Stats().Requests; got != 1 {
		t.Errorf("got %d requests after restart, want 1", got)
	}
}

func TestCloseEndsHungRequests(t *testing.T) {
	n := startNode(t, sim.Config{Faults: sim.Faults{HangRate: 1}})
	p := n.startRequest(t, "/v1/completions", `{"prompt":"x"}`)
	n.waitStats(t, "hang", func(s sim.Stats) bool { return s.InjectedHangs == 1 })
	if err := n.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case err := <-p.done:
		if err == nil {
			t.Error("hung request got a whole answer after Close, want an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("hung request still open after Close")
	}
}

func TestMetrics(t *testing.T) {
	n := startNode(t, sim.Config{Models: []string{"m"}, MaxNumSeqs: 2})
	var out chatResponse
	n.post(t, "/v1/chat/completions",
		`{"messages":[{"role":"user","content":"one two three"}],"max_tokens":5}`, &out)
	n.post(t, "/v1/completions", `{"prompt":"four"}`, &completionResponse{})

	// Hold one request running to see the gauges move.
	if err := n.Server().SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	slow := startNode(t, sim.Config{Models: []string{"m"}, MaxNumSeqs: 2,
		TimeToFirstToken: forever})
	p := slow.startRequest(t, "/v1/completions", `{"prompt":"x"}`)
	slow.waitStats(t, "running", func(s sim.Stats) bool { return s.Running == 1 })

	tests := []struct {
		name string
		node *node
		want []string
	}{
		{"counters", n, []string{
			"# TYPE vllm:prompt_tokens_total counter",
			`vllm:prompt_tokens_total{engine="0",model_name="m"} 4`,
			`vllm:generation_tokens_total{engine="0",model_name="m"} 21`,
			`vllm:request_success_total{engine="0",finished_reason="length",model_name="m"} 1`,
			`vllm:request_success_total{engine="0",finished_reason="stop",model_name="m"} 1`,
			`vllm:num_requests_running{engine="0",model_name="m"} 0`,
			`vllm:num_requests_waiting{engine="0",model_name="m"} 0`,
		}},
		{"gauges", slow, []string{
			"# TYPE vllm:num_requests_running gauge",
			`vllm:num_requests_running{engine="0",model_name="m"} 1`,
			`vllm:num_requests_waiting{engine="0",model_name="m"} 0`,
			`vllm:gpu_cache_usage_perc{engine="0",model_name="m"} 0.5`,
			`vllm:kv_cache_usage_perc{engine="0",model_name="m"} 0.5`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := tt.node.do(t, http.MethodGet, "/metrics", "", nil)
			if status != http.StatusOK {
				t.Fatalf("got status %d, want 200", status)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(b), w+"\n") {
					t.Errorf("metrics lack %q; got:\n%s", w, b)
				}
			}
		})
	}
	p.cancel()
	p.ended(t)
}

func TestShutdown(t *testing.T) {
	t.Run("lets requests finish", func(t *testing.T) {
		n := startNode(t, sim.Config{TimeToFirstToken: 50 * time.Millisecond})
		p := n.startRequest(t, "/v1/chat/completions", shortChat)
		n.waitStats(t, "running", func(s sim.Stats) bool { return s.Running == 1 })
		if err := n.Shutdown(context.Background()); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if err := <-p.done; err != nil {
			t.Errorf("got request error %v, want a whole answer", err)
		}
		if st := n.Server().Stats(); st.Completed != 1 {
			t.Errorf("got %d completed, want 1", st.Completed)
		}
	})
	t.Run("aborts what outlives ctx", func(t *testing.T) {
		n := startNode(t, sim.Config{Faults: sim.Faults{HangRate: 1}})
		p := n.startRequest(t, "/v1/chat/completions", shortChat)
		n.waitStats(t, "hang", func(s sim.Stats) bool { return s.InjectedHangs == 1 })
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := n.Shutdown(ctx); !errors.Is(err, context.Canceled) {
			t.Fatalf("got Shutdown error %v, want context.Canceled", err)
		}
		if err := <-p.done; err == nil {
			t.Error("hung request got a whole answer, want an error")
		}
	})
}

func TestListenAndServe(t *testing.T) {
	s, err := sim.New(sim.Config{Models: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ListenAndServe(context.Background(), "127.0.0.1:-1"); err == nil {
		t.Fatal("ListenAndServe on a bad address succeeded")
	}

	// Borrow a free port; nothing else on loopback should take it in
	// the meantime.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- s.ListenAndServe(ctx, addr) }()
	waitFor(t, "serving", func() bool {
		resp, err := http.Get("http://" + addr + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	cancel()
	if err := <-errc; err != nil {
		t.Errorf("got ListenAndServe error %v, want nil", err)
	}
}
