package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// statusNode answers every request with one status and an error body in
// vLLM's shape, and counts the requests.
type statusNode struct {
	status int
	hits   atomic.Int64
}

func (s *statusNode) body() string {
	return fmt.Sprintf(`{"error":{"message":"status %d","type":"Error","param":null,"code":%d}}`,
		s.status, s.status)
}

func (s *statusNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.hits.Add(1)
	_, _ = io.Copy(io.Discard, r.Body)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(s.status)
	_, _ = io.WriteString(w, s.body())
}

// closedURL returns the URL of a loopback port nothing listens on.
func closedURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	url := "http://" + ln.Addr().String()
	ln.Close()
	return url
}

// TestRetryOnStatus checks which engine answers send a request to
// another node: 502 and 503 (overloaded, shutting down) are retried; a
// 4xx is the request's fault and a 500 may be too, so both reach the
// client as the engine sent them.
func TestRetryOnStatus(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		stream     bool
		single     bool // the failing node is the only one
		wantStatus int
	}{
		{name: "502 retried", status: 502, wantStatus: 200},
		{name: "503 retried", status: 503, wantStatus: 200},
		{name: "503 retried, stream", status: 503, stream: true, wantStatus: 200},
		{name: "500 passed on", status: 500, wantStatus: 500},
		{name: "500 passed on, stream", status: 500, stream: true, wantStatus: 500},
		{name: "400 never retried", status: 400, wantStatus: 400},
		{name: "404 never retried", status: 404, wantStatus: 404},
		{name: "429 never retried", status: 429, wantStatus: 429},
		{name: "503 from the only node passed on", status: 503, single: true, wantStatus: 503},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Round robin tries node-a first.
			f := newFleet(t, fleetOptions{policy: new(balancer.RoundRobin)})
			bad := &statusNode{status: tt.status}
			f.addHandler(t, "node-a", bad)
			var good *sim.Running
			if !tt.single {
				good = f.addSim(t, "node-b", sim.Config{})
			}

			c := call{path: pathChat, prompt: "try elsewhere", seed: 5, maxTokens: 6,
				stream: tt.stream}
			res, err := f.send(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if res.status != tt.wantStatus {
				t.Fatalf("got status %d (%s), want %d", res.status, res.body, tt.wantStatus)
			}
			if got := bad.hits.Load(); got != 1 {
				t.Errorf("failing node: got %d requests, want 1", got)
			}

			retried := tt.wantStatus == 200
			if retried {
				if err := check(c, res); err != nil {
					t.Error(err)
				}
			} else if res.body != bad.body() {
				t.Errorf("got body %s, want the engine's %s", res.body, bad.body())
			}
			wantRetries := 0.0
			if retried {
				wantRetries = 1
			}
			if got := f.count(t, metricRetries, "node", "node-a"); got != wantRetries {
				t.Errorf("got %v retries, want %v", got, wantRetries)
			}
			if got := f.count(t, metricFailovers, "phase", "before_first_byte"); got != wantRetries {
				t.Errorf("got %v failovers before the first byte, want %v", got, wantRetries)
			}
			if good != nil {
				want := int64(0)
				if retried {
					want = 1
				}
				if got := good.Server().Stats().Requests; got != want {
					t.Errorf("other node: got %d requests, want %d", got, want)
				}
			}
		})
	}
}

// TestRetryConnectionRefused checks that a node nobody listens on, as a
// node whose machine is gone, costs the client nothing but a retry.
func TestRetryConnectionRefused(t *testing.T) {
	for _, stream := range []bool{false, true} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			f := newFleet(t, fleetOptions{policy: new(balancer.RoundRobin)})
			f.addNode(t, "node-a", closedURL(t))
			f.addSim(t, "node-b", sim.Config{})

			c := call{path: pathCompletions, prompt: "anyone home", seed: 2, maxTokens: 5,
				stream: stream}
			res, err := f.send(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := check(c, res); err != nil {
				t.Fatal(err)
			}
			if got := f.count(t, metricRetries, "node", "node-a"); got != 1 {
				t.Errorf("got %v retries off node-a, want 1", got)
			}
		})
	}
}

// TestMaxRetries checks a request tries at most 1+MaxRetries nodes.
func TestMaxRetries(t *testing.T) {
	tests := []struct {
		name         string
		maxRetries   int
		wantAttempts int64
	}{
		{"zero means 2", 0, 3},
		{"one", 1, 2},
		{"negative disables", -1, 1},
		{"bounded by the nodes", 10, 5},
	}
	const nodes = 5
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, fleetOptions{config: gateway.Config{MaxRetries: tt.maxRetries}})
			handlers := make([]*statusNode, nodes)
			for i := range handlers {
				handlers[i] = &statusNode{status: http.StatusServiceUnavailable}
				f.addHandler(t, fmt.Sprintf("node-%d", i), handlers[i])
			}

			c := call{path: pathChat, prompt: "all busy", maxTokens: 3}
			res, err := f.send(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			var attempts int64
			for i, h := range handlers {
				switch n := h.hits.Load(); n {
				case 0:
				case 1:
					attempts++
				default:
					t.Errorf("node-%d: got %d attempts, want at most 1", i, n)
				}
			}
			if attempts != tt.wantAttempts {
				t.Errorf("got %d attempts, want %d", attempts, tt.wantAttempts)
			}
			if got, want := f.count(t, metricRetries), float64(tt.wantAttempts-1); got != want {
				t.Errorf("got %v retries counted, want %v", got, want)
			}
			// The last node's 503 is passed on when no other node is left
			// to try; otherwise the gateway reports the failed attempts.
			wantStatus := http.StatusBadGateway
			if tt.wantAttempts == nodes {
				wantStatus = http.StatusServiceUnavailable
			}
			if res.status != wantStatus {
				t.Errorf("got status %d (%s), want %d", res.status, res.body, wantStatus)
			}
		})
	}
}

// TestRetryBudget checks that retries stop when the budget is empty, on a
// fleet where every node refuses connections, and that the budget then
// refills at RetryBudget retries per request.
func TestRetryBudget(t *testing.T) {
	tests := []struct {
		name   string
		budget float64
		// After the budget first runs dry, 40 more requests may retry:
		wantRetries float64
	}{
		{"tiny budget stays empty", 1e-6, 0},
		{"half a retry per request", 0.5, 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFleet(t, fleetOptions{config: gateway.Config{RetryBudget: tt.budget}})
			for i := range 3 {
				f.addNode(t, fmt.Sprintf("node-%d", i), closedURL(t))
			}
			c := call{path: pathChat, prompt: "nobody", maxTokens: 3}
			send := func() (retries float64) {
				t.Helper()
				before := f.count(t, metricRetries)
				res, err := f.send(context.Background(), c, nil)
				if err != nil {
					t.Fatal(err)
				}
				if res.status != http.StatusBadGateway {
					t.Fatalf("got status %d, want 502", res.status)
				}
				return f.count(t, metricRetries) - before
			}

			// A full bucket lets the first requests retry as often as
			// MaxRetries allows, until it runs dry.
			first, last, n := send(), 2.0, 1
			if first != 2 {
				t.Fatalf("first request: got %v retries, want 2 (a full budget)", first)
			}
			for ; last != 0; n++ {
				r := send()
				if r > last {
					t.Fatalf("request %d: got %v retries after %v, want no more", n, r, last)
				}
				if n > 100 {
					t.Fatal("the budget never ran out in 100 requests")
				}
				last = r
			}

			before := f.count(t, metricRetries)
			for range 40 {
				send()
			}
			if got := f.count(t, metricRetries) - before; got != tt.wantRetries {
				t.Errorf("got %v retries over 40 requests once dry, want %v", got, tt.wantRetries)
			}
		})
	}
}
