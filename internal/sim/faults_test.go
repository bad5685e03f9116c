package sim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/sim"
)

func TestErrorRate(t *testing.T) {
	n := startNode(t, sim.Config{Faults: sim.Faults{ErrorRate: 1}})
	tests := []struct {
		name string
		path string
		body string
	}{
		{"chat", "/v1/chat/completions", shortChat},
		{"chat stream", "/v1/chat/completions",
			`{"messages":[{"role":"user","content":"hi"}],"stream":true}`},
		{"completions", "/v1/completions", `{"prompt":"x"}`},
		{"embeddings", "/v1/embeddings", `{"input":"x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := n.do(t, http.MethodPost, tt.path, tt.body, nil)
			if status != http.StatusInternalServerError {
				t.Fatalf("got status %d (%s), want 500", status, b)
			}
			var body struct {
				Error struct {
					Type string `json:"type"`
					Code int    `json:"code"`
				} `json:"error"`
			}
			if err := json.Unmarshal(b, &body); err != nil ||
				body.Error.Type != "InternalServerError" || body.Error.Code != 500 {
				t.Errorf("got body %s, want an InternalServerError with code 500", b)
			}
		})
	}
	if st := n.Server().Stats(); st.InjectedErrors != int64(len(tests)) || st.Completed != 0 {
		t.Errorf("got %d injected errors, %d completed; want %d, 0",
			st.InjectedErrors, st.Completed, len(tests))
	}
}

func TestBreakRate(t *testing.T) {
	tests := []struct {
		name       string
		breakAfter int
		maxTokens  int
		wantTokens int
	}{
		{"after three tokens", 3, 10, 3},
		{"default: half", 0, 8, 4},
		{"capped at the length", 50, 5, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, sim.Config{
				Faults: sim.Faults{BreakRate: 1, BreakAfter: tt.breakAfter}})
			body := mustJSON(t, map[string]any{"prompt": "x", "max_tokens": tt.maxTokens,
				"stream": true})
			resp := n.openStream(context.Background(), t, "/v1/completions", body)
			events, err := newSSEReader(resp.Body).all()
			if !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Fatalf("got stream error %v after %q, want an unexpected EOF", err, events)
			}
			if len(events) != tt.wantTokens {
				t.Errorf("got %d events before the break, want %d token events: %q",
					len(events), tt.wantTokens, events)
			}
			n.waitStats(t, "break counted", func(s sim.Stats) bool {
				return s.InjectedBreaks == 1 && s.Running == 0 &&
					s.GenerationTokens == int64(tt.wantTokens)
			})
		})
	}

	t.Run("whole answer", func(t *testing.T) {
		n := startNode(t, sim.Config{Faults: sim.Faults{BreakRate: 1}})
		resp, err := n.send(context.Background(), t, http.MethodPost, "/v1/chat/completions",
			shortChat, nil)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err == nil {
			t.Fatalf("got status %d and a whole body, want a connection error", resp.StatusCode)
		}
		n.waitStats(t, "break counted", func(s sim.Stats) bool { return s.InjectedBreaks == 1 })
	})
}

func TestHangRate(t *testing.T) {
	n := startNode(t, sim.Config{Faults: sim.Faults{HangRate: 1}})
	p := n.startRequest(t, "/v1/chat/completions", shortChat)
	n.waitStats(t, "hang", func(s sim.Stats) bool { return s.InjectedHangs == 1 })

	// Hung means no answer, whatever the request: check once more after
	// a full round trip to the same server.
	if status, _ := n.do(t, http.MethodGet, "/health", "", nil); status != http.StatusOK {
		t.Fatalf("got /health %d, want 200", status)
	}
	select {
	case err := <-p.done:
		t.Fatalf("hung request ended with %v before its client left", err)
	default:
	}
	p.cancel()
	p.ended(t)
	if st := n.Server().Stats(); st.Running != 0 || st.Cancelled != 0 {
		t.Errorf("got %d running, %d cancelled; want 0, 0 (hangs count apart)",
			st.Running, st.Cancelled)
	}
}

// TestFaultsAreReproducible checks that a fault seed gives the same
// sequence of faults run after run.
func TestFaultsAreReproducible(t *testing.T) {
	pattern := func(seed uint64) []int {
		t.Helper()
		n := startNode(t, sim.Config{Seed: seed, Faults: sim.Faults{ErrorRate: 0.5}})
		var got []int
		for range 32 {
			status, _ := n.do(t, http.MethodPost, "/v1/completions",
				`{"prompt":"x","max_tokens":1}`, nil)
			got = append(got, status)
		}
		return got
	}
	a, b, c := pattern(1), pattern(1), pattern(2)
	errs := 0
	for i := range a {
		if a[i] != b[i] {
			t.Fatalf("seed 1 gave %v, then %v", a, b)
		}
		if a[i] == http.StatusInternalServerError {
			errs++
		}
	}
	if errs == 0 || errs == len(a) {
		t.Errorf("got %d errors in %d requests at rate 0.5", errs, len(a))
	}
	if equal := func() bool {
		for i := range a {
			if a[i] != c[i] {
				return false
			}
		}
		return true
	}(); equal {
		t.Errorf("seeds 1 and 2 gave the same faults %v", a)
	}
}

func TestSetFaults(t *testing.T) {
	n := startNode(t, sim.Config{})
	s := n.Server()
	steps := []struct {
		faults sim.Faults
		want   int
	}{
		{sim.Faults{}, http.StatusOK},
		{sim.Faults{ErrorRate: 1}, http.StatusInternalServerError},
		{sim.Faults{}, http.StatusOK},
	}
	for i, st := range steps {
		if err := s.SetFaults(st.faults); err != nil {
			t.Fatalf("step %d: SetFaults: %v", i, err)
		}
		if got := s.Faults(); got != st.faults {
			t.Errorf("step %d: got Faults %+v, want %+v", i, got, st.faults)
		}
		if status, b := n.do(t, http.MethodPost, "/v1/chat/completions", shortChat,
			nil); status != st.want {
			t.Errorf("step %d: got %d (%s), want %d", i, status, b, st.want)
		}
	}

	for _, bad := range []sim.Faults{{ErrorRate: -0.1}, {HangRate: 1.5}, {BreakAfter: -1}} {
		if err := s.SetFaults(bad); err == nil {
			t.Errorf("SetFaults(%+v) succeeded, want an error", bad)
		}
	}
}

// TestSetFaultsDuringTraffic changes faults while requests run, for the
// race detector, and checks that every request is accounted for.
func TestSetFaultsDuringTraffic(t *testing.T) {
	n := startNode(t, sim.Config{})
	var wg sync.WaitGroup
	const workers, each = 4, 25
	const body = `{"messages":[{"role":"user","content":"hi"}],"max_tokens":4,"stream":true}`
	for range workers {
		wg.Go(func() {
			for range each {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
					n.URL+"/v1/chat/completions", strings.NewReader(body))
				// Faults make some requests fail; only the accounting
				// below matters.
				if resp, err := n.client.Do(req); err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				cancel()
			}
		})
	}
	faults := []sim.Faults{{ErrorRate: 0.3}, {BreakRate: 0.5, BreakAfter: 2}, {}}
	for i := 0; i < 50; i++ {
		if err := n.Server().SetFaults(faults[i%len(faults)]); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()

	n.waitStats(t, "every request accounted for", func(s sim.Stats) bool {
		return s.Requests == workers*each &&
			s.Completed+s.InjectedErrors+s.InjectedBreaks == s.Requests
	})
}
