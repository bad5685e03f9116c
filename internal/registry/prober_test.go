package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/registry"
)

// engine is a node's engine on loopback answering /health with a fixed
// status, recording the requests it gets.
type engine struct {
	*httptest.Server

	mu   sync.Mutex
	seen []*http.Request // guarded by mu
}

func newEngine(t *testing.T, status int) *engine {
	t.Helper()
	e := &engine{}
	e.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		e.mu.Lock()
		e.seen = append(e.seen, r.Clone(context.Background()))
		e.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(e.Close)
	return e
}

func (e *engine) requests() []*http.Request {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]*http.Request(nil), e.seen...)
}

// closedURL returns the URL of a loopback server that has been closed, so
// connecting to it is refused.
func closedURL(t *testing.T) string {
	t.Helper()
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	return srv.URL
}

func TestProberRound(t *testing.T) {
	healthy := newEngine(t, http.StatusOK)
	failing := newEngine(t, http.StatusInternalServerError)
	down := closedURL(t)

	tests := []struct {
		name      string
		threshold int
		rounds    int
		want      map[string]registry.State
	}{
		{"one round, threshold 1", 1, 1, map[string]registry.State{
			"healthy": registry.StateReady, "failing": registry.StateUnhealthy,
			"down": registry.StateUnhealthy}},
		{"one round, default threshold", 0, 1, map[string]registry.State{
			"healthy": registry.StateReady, "failing": registry.StateJoining,
			"down": registry.StateJoining}},
		{"two rounds, default threshold", 0, 2, map[string]registry.State{
			"healthy": registry.StateReady, "failing": registry.StateUnhealthy,
			"down": registry.StateUnhealthy}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := registry.New(nil)
			for id, url := range map[string]string{"healthy": healthy.URL,
				"failing": failing.URL, "down": down} {
				add(t, r, registry.Spec{ID: id, Endpoint: url, Models: []string{"m"}})
			}
			p := &registry.Prober{Registry: r, Client: healthy.Client(),
				FailureThreshold: tt.threshold, Timeout: 5 * time.Second}
			for range tt.rounds {
				p.Round(context.Background())
			}
			for id, want := range tt.want {
				if got := state(t, r, id); got != want {
					t.Errorf("node %s: got %s, want %s", id, got, want)
				}
			}
			if got := readyIDs(r, "m"); len(got) != 1 || got[0] != "healthy" {
				t.Errorf("ready: got %v, want [healthy]", got)
			}
			if st, _ := r.Get("failing"); !strings.Contains(st.LastError, "status 500") {
				t.Errorf("failing last error: got %q, want it to mention status 500",
					st.LastError)
			}
			if st, _ := r.Get("down"); st.LastError == "" {
				t.Error("down: no last error")
			}
		})
	}
}

func TestProberCheckRequest(t *testing.T) {
	e := newEngine(t, http.StatusOK)
	tests := []struct {
		name     string
		endpoint string
		key      string
		wantAuth string
	}{
		{"with upstream key", e.URL, "engine-key", "Bearer engine-key"},
		{"without upstream key", e.URL, "", ""},
		{"endpoint with path and slash", e.URL + "/tenant/", "k", "Bearer k"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := registry.New(nil)
			add(t, r, registry.Spec{ID: "n", Endpoint: tt.endpoint, Models: []string{"m"},
				UpstreamKey: tt.key})
			p := &registry.Prober{Registry: r, Client: e.Client()}
			before := len(e.requests())
			if err := p.Check(context.Background(), node(t, r, "n")); err != nil {
				t.Fatalf("Check: %v", err)
			}
			reqs := e.requests()
			if len(reqs) != before+1 {
				t.Fatalf("got %d requests, want 1", len(reqs)-before)
			}
			req := reqs[len(reqs)-1]
			wantPath := strings.TrimSuffix(strings.TrimPrefix(tt.endpoint, e.URL), "/") +
				"/health"
			if req.Method != http.MethodGet || req.URL.Path != wantPath {
				t.Errorf("got %s %s, want GET %s", req.Method, req.URL.Path, wantPath)
			}
			if got := req.Header.Get("Authorization"); got != tt.wantAuth {
				t.Errorf("Authorization: got %q, want %q", got, tt.wantAuth)
			}
		})
	}
}

func TestProberTimeout(t *testing.T) {
	// The engine holds every check until the check gives up; release
	// lets it go at the end in case one does not.
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs before srv.Close

	r := registry.New(nil)
	add(t, r, registry.Spec{ID: "stuck", Endpoint: srv.URL, Models: []string{"m"}})
	p := &registry.Prober{Registry: r, Client: srv.Client(), Timeout: 20 * time.Millisecond,
		FailureThreshold: 1}

	done := make(chan error, 1)
	go func() { done <- p.Check(context.Background(), node(t, r, "stuck")) }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "no answer within 20ms") {
			t.Errorf("Check: got %v, want a timeout after 20ms", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Check did not return: the timeout was not applied")
	}

	// A round reports the timeout as a failure.
	p.Round(context.Background())
	if st, _ := r.Get("stuck"); st.State != registry.StateUnhealthy ||
		!strings.Contains(st.LastError, "no answer within") {
		t.Errorf("after a round: got %s %q, want unhealthy with a timeout error",
			st.State, st.LastError)
	}
}

func TestProberRoundCancelledReportsNothing(t *testing.T) {
	e := newEngine(t, http.StatusInternalServerError)
	r := registry.New(nil)
	add(t, r, registry.Spec{ID: "n", Endpoint: e.URL, Models: []string{"m"}})
	p := &registry.Prober{Registry: r, Client: e.Client(), FailureThreshold: 1}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	p.Round(ctx)
	if st, _ := r.Get("n"); st.State != registry.StateJoining || st.LastError != "" {
		t.Errorf("after a cancelled round: got %s %q, want joining with no error",
			st.State, st.LastError)
	}
}

func TestProberRun(t *testing.T) {
	e := newEngine(t, http.StatusOK)
	r := registry.New(nil)
	add(t, r, registry.Spec{ID: "n", Endpoint: e.URL, Models: []string{"m"}})
	// An interval far longer than the test: only the first round, which
	// starts at once, can make the node ready.
	p := &registry.Prober{Registry: r, Client: e.Client(), Interval: time.Hour}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		p.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})

	deadline := time.Now().Add(10 * time.Second)
	for state(t, r, "n") != registry.StateReady {
		if time.Now().After(deadline) {
			t.Fatal("node not ready: Run did not start a round at once")
		}
		time.Sleep(time.Millisecond)
	}

	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after its context was cancelled")
	}
}
