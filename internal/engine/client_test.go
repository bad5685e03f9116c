package engine

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// startSim serves a simulator for cfg on loopback.
func startSim(t *testing.T, cfg sim.Config) (*sim.Server, *httptest.Server) {
	t.Helper()
	s, err := sim.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return s, ts
}

func TestClientReady(t *testing.T) {
	s, ts := startSim(t, sim.Config{Models: []string{"m1", "m2"}})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	tests := []struct {
		name      string
		url       string
		models    []string
		unhealthy bool
		wantErr   string // substring; empty means ready
	}{
		{name: "every model listed", url: ts.URL, models: []string{"m2", "m1"}},
		{name: "no model expected", url: ts.URL},
		{name: "model missing", url: ts.URL, models: []string{"m1", "m3"},
			wantErr: `model "m3" not listed`},
		{name: "unhealthy", url: ts.URL, models: []string{"m1"}, unhealthy: true,
			wantErr: "GET /health answered 503"},
		{name: "unreachable", url: closed.URL, wantErr: "GET /health"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := s.SetFaults(sim.Faults{Unhealthy: tt.unhealthy}); err != nil {
				t.Fatal(err)
			}
			c := &Client{URL: tt.url, Models: tt.models}
			err := c.Ready(context.Background())
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Ready: got %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Ready: got %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestClientLoadFromSimulator(t *testing.T) {
	// One sequence slot and a long first token: the first request runs,
	// the next two wait, and the cache counts as full.
	_, ts := startSim(t, sim.Config{Models: []string{"m"}, MaxNumSeqs: 1,
		TimeToFirstToken: time.Hour})
	c := &Client{URL: ts.URL}

	if got, err := c.Load(context.Background()); err != nil || got != (agentapi.Load{}) {
		t.Fatalf("idle Load: got %+v, %v; want zero load", got, err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	for range 3 {
		wg.Go(func() {
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost,
				ts.URL+"/v1/completions", strings.NewReader(`{"model":"m","prompt":"hi"}`))
			req.Header.Set("Content-Type", "application/json")
			if resp, err := http.DefaultClient.Do(req); err == nil {
				resp.Body.Close()
			}
		})
	}

	want := agentapi.Load{Running: 1, Waiting: 2, KVCacheUsage: 1}
	var got agentapi.Load
	waitFor(t, "the load of three requests", func() bool {
		var err error
		got, err = c.Load(context.Background())
		if err != nil {
			t.Fatalf("Load: %v", err)
		}
		return got == want
	})
}

func TestClientLoadWithoutMetrics(t *testing.T) {
	ts := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(ts.Close)
	c := &Client{URL: ts.URL}
	if _, err := c.Load(context.Background()); err == nil ||
		!strings.Contains(err.Error(), "answered 404") {
		t.Errorf("Load: got %v, want an error saying 404", err)
	}
}

func TestParseLoad(t *testing.T) {
	tests := []struct {
		name    string
		page    string
		want    agentapi.Load
		wantErr error // nil: no error; errAny: some error
	}{
		{
			name: "vllm with two data-parallel engines",
			page: `# HELP vllm:num_requests_running Number of requests in model execution batches.
# TYPE vllm:num_requests_running gauge
vllm:num_requests_running{engine="0",model_name="qwen"} 3.0
vllm:num_requests_running{engine="1",model_name="qwen"} 4.0
# TYPE vllm:num_requests_waiting gauge
vllm:num_requests_waiting{engine="0",model_name="qwen"} 1.0
vllm:num_requests_waiting{engine="1",model_name="qwen"} 0.0
# TYPE vllm:kv_cache_usage_perc gauge
vllm:kv_cache_usage_perc{engine="0",model_name="qwen"} 0.25
vllm:kv_cache_usage_perc{engine="1",model_name="qwen"} 0.75
# The old name as well: it must not count twice.
vllm:gpu_cache_usage_perc{engine="0",model_name="qwen"} 0.9
vllm:gpu_cache_usage_perc{engine="1",model_name="qwen"} 0.9
vllm:request_success_total{engine="0",finished_reason="stop",model_name="qwen"} 12.0
`,
			want: agentapi.Load{Running: 7, Waiting: 1, KVCacheUsage: 0.5},
		},
		{
			name: "older vllm",
			page: `vllm:num_requests_running{model_name="m"} 2
vllm:num_requests_waiting{model_name="m"} 5
vllm:gpu_cache_usage_perc{model_name="m"} 0.4
`,
			want: agentapi.Load{Running: 2, Waiting: 5, KVCacheUsage: 0.4},
		},
		{
			name: "sglang",
			page: `# HELP sglang:num_running_reqs The number of running requests.
# TYPE sglang:num_running_reqs gauge
sglang:num_running_reqs{engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 6.0
# HELP sglang:num_queue_reqs The number of requests in the waiting queue.
# TYPE sglang:num_queue_reqs gauge
sglang:num_queue_reqs{engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 2.0
# HELP sglang:token_usage The token usage.
# TYPE sglang:token_usage gauge
sglang:token_usage{engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 0.28
# HELP sglang:cache_hit_rate The prefix cache hit rate.
# TYPE sglang:cache_hit_rate gauge
sglang:cache_hit_rate{engine_type="unified",model_name="llama",pp_rank="0",tp_rank="0"} 0.0075
# HELP sglang:time_to_first_token_seconds Histogram of time to first token in seconds.
# TYPE sglang:time_to_first_token_seconds histogram
sglang:time_to_first_token_seconds_bucket{le="0.001",model_name="llama"} 0.0
sglang:time_to_first_token_seconds_sum{model_name="llama"} 2.35e+06
`,
			want: agentapi.Load{Running: 6, Waiting: 2, KVCacheUsage: 0.28},
		},
		{
			name: "quoted braces, escapes, timestamps, NaN and OpenMetrics EOF",
			page: `sglang:num_running_reqs{model_name="a}\"b",x="\\"} 1 1700000000000
sglang:num_running_reqs{model_name="c"} NaN
sglang:num_queue_reqs 3
sglang:token_usage{model_name="a"} +Inf
# EOF
`,
			want: agentapi.Load{Running: 1, Waiting: 3},
		},
		{
			name: "usage clamped to 1",
			page: "vllm:kv_cache_usage_perc 1.2\n",
			want: agentapi.Load{KVCacheUsage: 1},
		},
		{
			name:    "no known metric",
			page:    "# TYPE process_cpu_seconds_total counter\nprocess_cpu_seconds_total 12\n",
			wantErr: ErrNoLoadMetrics,
		},
		{name: "empty page", page: "", wantErr: ErrNoLoadMetrics},
		{name: "unterminated labels", page: "vllm:num_requests_running{a=\"b 1\n",
			wantErr: errAny},
		{name: "no value", page: "vllm:num_requests_running{}\n", wantErr: errAny},
		{name: "bad value", page: "vllm:num_requests_running one\n", wantErr: errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseLoad(strings.NewReader(tt.page))
			switch {
			case tt.wantErr == nil && err != nil:
				t.Fatalf("ParseLoad: got error %v", err)
			case tt.wantErr == errAny && err == nil:
				t.Fatalf("ParseLoad: got %+v, want an error", got)
			case tt.wantErr != nil && tt.wantErr != errAny && !errors.Is(err, tt.wantErr):
				t.Fatalf("ParseLoad: got error %v, want %v", err, tt.wantErr)
			}
			if got != tt.want {
				t.Errorf("ParseLoad: got %+v, want %+v", got, tt.want)
			}
		})
	}
}

// errAny stands for any error in a table.
var errAny = errors.New("any error")
