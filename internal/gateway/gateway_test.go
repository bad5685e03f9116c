package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
	"github.com/crosslogic/crosslogic/internal/store"
)

const (
	modelA = "meta-llama/Llama-3.1-8B-Instruct"
	modelB = "mistralai/Mistral-7B-Instruct-v0.3"
	// modelDown is served only by a node that never became ready.
	modelDown = "Qwen/Qwen2.5-7B-Instruct"
)

// fixture is a gateway on loopback in front of simulator engines.
type fixture struct {
	gw       *httptest.Server
	gateway  *gateway.Gateway
	registry *registry.Registry
	engines  map[string]*sim.Server // by node ID
	urls     map[string]string      // engine base URL by node ID
	key      string                 // valid for every model
	keyA     string                 // valid for modelA only
	revoked  string
	expired  string
	logs     *syncBuffer
}

type fixtureOptions struct {
	engine sim.Config // Models is set per node
	config gateway.Config
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newFixture(t *testing.T, o fixtureOptions) *fixture {
	t.Helper()
	f := &fixture{engines: map[string]*sim.Server{}, urls: map[string]string{},
		logs: new(syncBuffer)}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.registry = registry.New(log)

	for _, n := range []struct{ id, model string }{
		{"node-a1", modelA}, {"node-a2", modelA}, {"node-b1", modelB},
	} {
		cfg := o.engine
		cfg.Models = []string{n.model}
		e, err := sim.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(e.Handler())
		t.Cleanup(srv.Close)
		f.engines[n.id], f.urls[n.id] = e, srv.URL
		f.addReadyNode(t, registry.Spec{ID: n.id, Endpoint: srv.URL,
			Models: []string{n.model}, UpstreamKey: cfg.APIKey})
	}
	// A node that is declared but never checked healthy.
	if err := f.registry.Add(registry.Spec{ID: "node-down", Endpoint: "http://127.0.0.1:1",
		Models: []string{modelDown}}); err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	var recs []store.APIKey
	mk := func(id string, models []string, revoked, expires time.Time) string {
		k, err := apikey.Generate()
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, store.APIKey{ID: id, Hash: k.Digest[:], Models: models,
			RevokedAt: revoked, ExpiresAt: expires})
		return k.Secret
	}
	f.key = mk("key_all", nil, time.Time{}, time.Time{})
	f.keyA = mk("key_a", []string{modelA}, time.Time{}, now.Add(time.Hour))
	f.revoked = mk("key_revoked", nil, now.Add(-time.Minute), time.Time{})
	f.expired = mk("key_expired", nil, time.Time{}, now.Add(-time.Minute))
	keys := new(apikey.Keyring)
	keys.Replace(recs)

	f.gateway = gateway.New(gateway.Options{Config: o.config, Keys: keys,
		Registry: f.registry, Logger: log})
	f.gw = httptest.NewServer(f.gateway)
	t.Cleanup(f.gw.Close)
	return f
}

func (f *fixture) addReadyNode(t *testing.T, s registry.Spec) {
	t.Helper()
	if err := f.registry.Add(s); err != nil {
		t.Fatal(err)
	}
	for _, n := range f.registry.Nodes() {
		if n.ID == s.ID {
			f.registry.ReportHealth(n, nil, 1)
		}
	}
}

// post sends a JSON body to the gateway with the given key.
func (f *fixture) post(t *testing.T, path, key, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, f.gw.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// apiError is OpenAI's error shape, with param and code kept as raw JSON
// so that a test can tell null from "".
type apiError struct {
	Error struct {
		Message *string         `json:"message"`
		Type    *string         `json:"type"`
		Param   json.RawMessage `json:"param"`
		Code    json.RawMessage `json:"code"`
	} `json:"error"`
}

// decodeError checks that resp carries OpenAI's error shape and returns
// its code ("" for null).
func decodeError(t *testing.T, resp *http.Response) string {
	t.Helper()
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	body, _ := io.ReadAll(resp.Body)
	var e apiError
	if err := json.Unmarshal(body, &e); err != nil {
		t.Fatalf("error body %q: %v", body, err)
	}
	if e.Error.Message == nil || *e.Error.Message == "" || e.Error.Type == nil ||
		e.Error.Param == nil || e.Error.Code == nil {
		t.Fatalf("error body %s lacks message, type, param or code", body)
	}
	if strings.Contains(*e.Error.Message, "dial tcp") || strings.Contains(*e.Error.Message, "EOF") {
		t.Errorf("error message leaks a Go error: %q", *e.Error.Message)
	}
	var code string
	_ = json.Unmarshal(e.Error.Code, &code)
	return code
}

const chatBody = `{"model":"` + modelA + `","messages":[{"role":"user",` +
	`"content":"Say something about spot instances"}],"max_tokens":12}`

func TestErrors(t *testing.T) {
	f := newFixture(t, fixtureOptions{config: gateway.Config{MaxBodyBytes: 1 << 10}})
	tests := []struct {
		name       string
		method     string
		path       string
		key        string
		body       string
		wantStatus int
		wantCode   string
	}{
		{"no key", "POST", "/v1/chat/completions", "", chatBody, 401, "invalid_api_key"},
		{"wrong key", "POST", "/v1/chat/completions", "sk-cl-wrong", chatBody, 401, "invalid_api_key"},
		{"revoked key", "POST", "/v1/chat/completions", f.revoked, chatBody, 401, "invalid_api_key"},
		{"expired key", "POST", "/v1/chat/completions", f.expired, chatBody, 401, "invalid_api_key"},
		{"models with wrong key", "GET", "/v1/models", "sk-cl-wrong", "", 401, "invalid_api_key"},
		{"key not allowed the model", "POST", "/v1/chat/completions", f.keyA,
			`{"model":"` + modelB + `","messages":[]}`, 404, "model_not_found"},
		{"unknown model", "POST", "/v1/chat/completions", f.key,
			`{"model":"gpt-17","messages":[]}`, 404, "model_not_found"},
		{"no ready node", "POST", "/v1/completions", f.key,
			`{"model":"` + modelDown + `","prompt":"hi"}`, 503, "no_ready_node"},
		{"malformed JSON", "POST", "/v1/chat/completions", f.key, `{"model":`, 400, ""},
		{"not an object", "POST", "/v1/chat/completions", f.key, `["model"]`, 400, ""},
		{"missing model", "POST", "/v1/embeddings", f.key, `{"input":"x"}`, 400, ""},
		{"model not a string", "POST", "/v1/embeddings", f.key, `{"model":7}`, 400, ""},
		{"body over the limit", "POST", "/v1/completions", f.key,
			`{"model":"` + modelA + `","prompt":"` + strings.Repeat("x", 2000) + `"}`, 413,
			"request_too_large"},
		{"wrong method", "GET", "/v1/chat/completions", f.key, "", 405, "method_not_allowed"},
		{"unknown path", "POST", "/v1/fine_tuning/jobs", f.key, "{}", 404, "unknown_url"},
		{"unknown model by id", "GET", "/v1/models/gpt-17", f.key, "", 404, "model_not_found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, f.gw.URL+tt.path, strings.NewReader(tt.body))
			if tt.key != "" {
				req.Header.Set("Authorization", "Bearer "+tt.key)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if code := decodeError(t, resp); code != tt.wantCode {
				t.Errorf("code = %q, want %q", code, tt.wantCode)
			}
			if tt.wantStatus == 503 && resp.Header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if resp.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id on an error")
			}
		})
	}
}

func TestChatCompletion(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	resp := f.post(t, "/v1/chat/completions", f.key, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200", resp.StatusCode)
	}
	var got struct {
		Object  string `json:"object"`
		Model   string `json:"model"`
		Choices []struct {
			Message struct {
				Role, Content string
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage struct {
			PromptTokens     int `json:"prompt_tokens"`
			CompletionTokens int `json:"completion_tokens"`
			TotalTokens      int `json:"total_tokens"`
		} `json:"usage"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
		t.Fatal(err)
	}
	if got.Object != "chat.completion" || got.Model != modelA || len(got.Choices) != 1 {
		t.Fatalf("answer = %+v, want one chat.completion choice from %s", got, modelA)
	}
	if got.Usage.CompletionTokens != 12 ||
		got.Usage.TotalTokens != got.Usage.PromptTokens+12 {
		t.Errorf("usage = %+v, want 12 completion tokens adding up", got.Usage)
	}

	// The gateway forwards the body untouched: the answer is exactly the
	// engine's own for the same request.
	direct, err := http.Post(f.urls["node-a1"]+"/v1/chat/completions", "application/json",
		strings.NewReader(chatBody))
	if err != nil {
		t.Fatal(err)
	}
	defer direct.Body.Close()
	var want struct {
		Choices []struct {
			Message struct{ Content string } `json:"message"`
		} `json:"choices"`
	}
	_ = json.NewDecoder(direct.Body).Decode(&want)
	if got.Choices[0].Message.Content != want.Choices[0].Message.Content {
		t.Errorf("content = %q, want the engine's %q", got.Choices[0].Message.Content,
			want.Choices[0].Message.Content)
	}
}

func TestEndpoints(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name, path, body, wantObject string
	}{
		{"completions", "/v1/completions",
			`{"model":"` + modelB + `","prompt":"Once upon a time","max_tokens":5}`, "text_completion"},
		{"embeddings", "/v1/embeddings", `{"model":"` + modelA + `","input":["a","b"]}`, "list"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.post(t, tt.path, f.key, tt.body)
			if resp.StatusCode != 200 {
				b, _ := io.ReadAll(resp.Body)
				t.Fatalf("status = %d (%s), want 200", resp.StatusCode, b)
			}
			var got struct{ Object string }
			_ = json.NewDecoder(resp.Body).Decode(&got)
			if got.Object != tt.wantObject {
				t.Errorf("object = %q, want %q", got.Object, tt.wantObject)
			}
		})
	}
}

func TestModels(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	list := func(key string) []string {
		req, _ := http.NewRequest("GET", f.gw.URL+"/v1/models", nil)
		req.Header.Set("Authorization", "Bearer "+key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var got struct {
			Object string
			Data   []struct{ ID, Object, OwnedBy string }
		}
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || got.Object != "list" {
			t.Fatalf("models answer: object %q, error %v", got.Object, err)
		}
		var ids []string
		for _, m := range got.Data {
			if m.Object != "model" {
				t.Errorf("model %s has object %q, want model", m.ID, m.Object)
			}
			ids = append(ids, m.ID)
		}
		return ids
	}
	// modelDown has a node, but not a ready one: it is not listed.
	if got, want := strings.Join(list(f.key), ","), modelA+","+modelB; got != want {
		t.Errorf("models = %s, want %s", got, want)
	}
	if got := strings.Join(list(f.keyA), ","); got != modelA {
		t.Errorf("models for a key limited to %s = %s", modelA, got)
	}

	req, _ := http.NewRequest("GET", f.gw.URL+"/v1/models/"+modelA, nil)
	req.Header.Set("Authorization", "Bearer "+f.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /v1/models/%s = %d, want 200", modelA, resp.StatusCode)
	}
}

// readEvent reads one server-sent event's data line.
func readEvent(t *testing.T, r *bufio.Reader) string {
	t.Helper()
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			t.Fatalf("reading event: %v", err)
		}
		if data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: "); ok {
			return data
		}
	}
}

// TestStreamingIsNotBuffered reads a stream event by event and checks the
// first event reaches the client while the engine is still generating.
func TestStreamingIsNotBuffered(t *testing.T) {
	f := newFixture(t, fixtureOptions{engine: sim.Config{
		TimeBetweenTokens: 20 * time.Millisecond}})
	const tokens = 25
	resp := f.post(t, "/v1/chat/completions", f.key, `{"model":"`+modelB+
		`","stream":true,"stream_options":{"include_usage":true},"max_tokens":25,`+
		`"messages":[{"role":"user","content":"stream please"}]}`)
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("Content-Type = %q, want text/event-stream", ct)
	}
	r := bufio.NewReader(resp.Body)
	first := readEvent(t, r)
	if st := f.engines["node-b1"].Stats(); st.Completed != 0 {
		t.Fatalf("first event arrived after the engine finished (stats %+v): buffered", st)
	}
	if !strings.Contains(first, "chat.completion.chunk") {
		t.Fatalf("first event = %s, want a chunk", first)
	}

	var text strings.Builder
	var events, usage int
	for {
		data := readEvent(t, r)
		if data == "[DONE]" {
			break
		}
		events++
		var c struct {
			Choices []struct {
				Delta struct{ Content string } `json:"delta"`
			} `json:"choices"`
			Usage *struct {
				CompletionTokens int `json:"completion_tokens"`
			} `json:"usage"`
		}
		if err := json.Unmarshal([]byte(data), &c); err != nil {
			t.Fatalf("event %q: %v", data, err)
		}
		if len(c.Choices) > 0 {
			text.WriteString(c.Choices[0].Delta.Content)
		}
		if c.Usage != nil {
			usage = c.Usage.CompletionTokens
		}
	}
	if events < tokens {
		t.Errorf("events = %d, want at least %d", events, tokens)
	}
	if usage != tokens {
		t.Errorf("usage completion_tokens = %d, want %d", usage, tokens)
	}
	if n := len(strings.Fields(text.String())); n != tokens {
		t.Errorf("streamed %d words, want %d", n, tokens)
	}
}

func TestUpstreamFailures(t *testing.T) {
	tests := []struct {
		name       string
		faults     sim.Faults
		endpoint   string // replaces the node's endpoint when set
		config     gateway.Config
		wantStatus int
		wantCode   string
	}{
		{name: "connection refused", endpoint: "http://127.0.0.1:1",
			wantStatus: 502, wantCode: "upstream_error"},
		{name: "engine hangs", faults: sim.Faults{HangRate: 1},
			config:     gateway.Config{ResponseHeaderTimeout: 100 * time.Millisecond},
			wantStatus: 504, wantCode: "upstream_timeout"},
		{name: "engine error passes through", faults: sim.Faults{ErrorRate: 1},
			wantStatus: 500, wantCode: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t, fixtureOptions{config: tt.config})
			for _, e := range f.engines {
				if err := e.SetFaults(tt.faults); err != nil {
					t.Fatal(err)
				}
			}
			if tt.endpoint != "" {
				_ = f.registry.Remove("node-b1")
				f.addReadyNode(t, registry.Spec{ID: "node-b1", Endpoint: tt.endpoint,
					Models: []string{modelB}})
			}
			resp := f.post(t, "/v1/chat/completions", f.key,
				`{"model":"`+modelB+`","messages":[{"role":"user","content":"x"}]}`)
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status = %d, want %d", resp.StatusCode, tt.wantStatus)
			}
			if tt.wantCode != "" {
				if code := decodeError(t, resp); code != tt.wantCode {
					t.Errorf("code = %q, want %q", code, tt.wantCode)
				}
			}
		})
	}
}

// TestStreamBrokenByNode checks that a stream the node cuts ends with an
// error event, not silently.
func TestStreamBrokenByNode(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	if err := f.engines["node-b1"].SetFaults(sim.Faults{BreakRate: 1, BreakAfter: 3}); err != nil {
		t.Fatal(err)
	}
	resp := f.post(t, "/v1/chat/completions", f.key, `{"model":"`+modelB+
		`","stream":true,"max_tokens":10,"messages":[{"role":"user","content":"x"}]}`)
	body, _ := io.ReadAll(resp.Body)
	if !bytes.Contains(body, []byte(`"upstream_error"`)) || bytes.Contains(body, []byte("[DONE]")) {
		t.Fatalf("broken stream = %s, want an error event and no [DONE]", body)
	}
}

// TestClientDisconnectCancelsEngine checks that a client going away stops
// the engine's generation at once.
func TestClientDisconnectCancelsEngine(t *testing.T) {
	f := newFixture(t, fixtureOptions{engine: sim.Config{TimeBetweenTokens: 50 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	req, _ := http.NewRequestWithContext(ctx, "POST", f.gw.URL+"/v1/chat/completions",
		strings.NewReader(`{"model":"`+modelB+`","stream":true,"max_tokens":1000,`+
			`"messages":[{"role":"user","content":"long"}]}`))
	req.Header.Set("Authorization", "Bearer "+f.key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readEvent(t, bufio.NewReader(resp.Body))
	cancel()
	resp.Body.Close()

	e := f.engines["node-b1"]
	waitFor(t, func() bool { return e.Stats().Cancelled == 1 }, "engine to see the cancel")
	if st := e.Stats(); st.GenerationTokens > 100 {
		t.Errorf("engine generated %d tokens after the client left", st.GenerationTokens)
	}
}

func TestRequestID(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	tests := []struct {
		name, sent string
		keep       bool
	}{
		{"client's own is kept", "abc-123_DEF", true},
		{"none sent", "", false},
		{"unusable one replaced", "has space", false},
		{"too long replaced", strings.Repeat("x", 200), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest("POST", f.gw.URL+"/v1/chat/completions",
				strings.NewReader(chatBody))
			req.Header.Set("Authorization", "Bearer "+f.key)
			if tt.sent != "" {
				req.Header.Set("X-Request-Id", tt.sent)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got := resp.Header.Get("X-Request-Id")
			if tt.keep && got != tt.sent {
				t.Errorf("X-Request-Id = %q, want %q", got, tt.sent)
			}
			if !tt.keep && (got == tt.sent || !strings.HasPrefix(got, "req_")) {
				t.Errorf("X-Request-Id = %q, want a new req_ ID", got)
			}
			if !strings.Contains(f.logs.String(), `"request_id":"`+got+`"`) {
				t.Errorf("request ID %q not in the logs", got)
			}
		})
	}
}

// TestUpstreamKey checks the node receives its own key, never the
// customer's.
func TestUpstreamKey(t *testing.T) {
	f := newFixture(t, fixtureOptions{engine: sim.Config{APIKey: "node-secret"}})
	resp := f.post(t, "/v1/chat/completions", f.key, chatBody)
	if resp.StatusCode != 200 {
		t.Fatalf("status = %d, want 200 (node key not sent?)", resp.StatusCode)
	}
}

// TestNoSecretsInLogs checks that neither keys nor prompt text are logged,
// with logging at debug.
func TestNoSecretsInLogs(t *testing.T) {
	f := newFixture(t, fixtureOptions{engine: sim.Config{APIKey: "node-secret-value"}})
	const prompt = "my-confidential-prompt-text"
	f.post(t, "/v1/chat/completions", f.key, `{"model":"`+modelA+
		`","messages":[{"role":"user","content":"`+prompt+`"}]}`)
	f.post(t, "/v1/chat/completions", f.revoked, chatBody)
	f.post(t, "/v1/chat/completions", "sk-cl-wrong-key-value", chatBody)
	logs := f.logs.String()
	for _, secret := range []string{f.key, f.revoked, "sk-cl-wrong-key-value", prompt,
		"node-secret-value"} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, `"key_id":"key_all"`) {
		t.Error("logs lack key_id of the served request")
	}
}

// TestDrain checks /readyz turns 503 on Drain while requests still work.
func TestDrain(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	get := func(path string) int {
		resp, err := http.Get(f.gw.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if get("/readyz") != 200 || get("/healthz") != 200 {
		t.Fatal("not ready before drain")
	}
	f.gateway.Drain()
	if got := get("/readyz"); got != 503 {
		t.Errorf("/readyz while draining = %d, want 503", got)
	}
	if got := get("/healthz"); got != 200 {
		t.Errorf("/healthz while draining = %d, want 200", got)
	}
}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestStreamsOverHTTP2 sends a node's streams over its stream transport,
// cleartext HTTP/2 here, multiplexed on one connection, while its other
// requests keep to HTTP/1.1.
func TestStreamsOverHTTP2(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	e, err := sim.New(sim.Config{Models: []string{"model-h2"},
		TimeBetweenTokens: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	protos := map[string][]int{} // "stream"/"other" → ProtoMajor of each request
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			kind := "other"
			if r.ProtoMajor == 2 {
				kind = "stream"
			}
			mu.Lock()
			protos[kind] = append(protos[kind], r.ProtoMajor)
			mu.Unlock()
			e.Handler().ServeHTTP(w, r)
		}))
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv.Config.Protocols = &p
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	f.addReadyNode(t, registry.Spec{ID: "node-h2", Endpoint: srv.URL,
		Models:          []string{"model-h2"},
		StreamTransport: gateway.NewStreamTransport(gateway.Config{}, nil)})

	resp := f.post(t, "/v1/chat/completions", f.key, `{"model":"model-h2","max_tokens":4,`+
		`"messages":[{"role":"user","content":"hi"}]}`)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("non-streaming: status %d", resp.StatusCode)
	}
	_, _ = io.Copy(io.Discard, resp.Body)

	// Streams all at once, from a cold start, share one connection.
	stream := func() error {
		req, _ := http.NewRequest(http.MethodPost, f.gw.URL+"/v1/chat/completions",
			strings.NewReader(`{"model":"model-h2","stream":true,"max_tokens":8,`+
				`"messages":[{"role":"user","content":"hi"}]}`))
		req.Header.Set("Authorization", "Bearer "+f.key)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err == nil && !bytes.HasSuffix(bytes.TrimSpace(b), []byte("data: [DONE]")) {
			err = fmt.Errorf("stream did not end with [DONE]: %q", b)
		}
		return err
	}
	const streams = 20
	var wg sync.WaitGroup
	errs := make(chan error, streams)
	for range streams {
		wg.Go(func() {
			if err := stream(); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	mu.Lock()
	defer mu.Unlock()
	if got := protos["other"]; len(got) != 1 || got[0] != 1 {
		t.Errorf("non-streaming request went over HTTP/%v, want HTTP/1", got)
	}
	if got := protos["stream"]; len(got) != streams {
		t.Errorf("node saw %d streams over HTTP/2, want %d (%v)", len(got), streams, protos)
	}
	// One connection for the non-streaming request, one for the streams.
	if n := conns.Load(); n > 2 {
		t.Errorf("node saw %d connections for %d streams, want them multiplexed", n, streams)
	}
}

// TestStreamEventsLargerThanTheBuffer relays events bigger than a
// stream's read buffer, and events cut across writes at every kind of
// place, byte for byte.
func TestStreamEventsLargerThanTheBuffer(t *testing.T) {
	f := newFixture(t, fixtureOptions{})
	big := strings.Repeat("x", 5000)
	events := []string{
		`data: {"id":"c1","object":"chat.completion.chunk","created":1,"choices":[{"index":0,` +
			`"delta":{"role":"assistant","content":""}}]}` + "\n\n",
		`data: {"id":"c1","object":"chat.completion.chunk","created":1,"choices":[{"index":0,` +
			`"delta":{"content":"` + big + `"}}]}` + "\n\n",
		": a comment\r\n\r\n",
		`data: {"id":"c1","object":"chat.completion.chunk","created":1,"choices":[{"index":0,` +
			`"delta":{},"finish_reason":"stop"}]}` + "\n\n",
		"data: [DONE]\n\n",
	}
	want := strings.Join(events, "")
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		rc := http.NewResponseController(w)
		// Cut the stream into pieces of odd sizes, flushing each.
		for i, n := 0, 1; i < len(want); i, n = i+n, n*3+1 {
			end := min(len(want), i+n)
			_, _ = io.WriteString(w, want[i:end])
			_ = rc.Flush()
		}
	}))
	t.Cleanup(srv.Close)
	f.addReadyNode(t, registry.Spec{ID: "node-big", Endpoint: srv.URL,
		Models: []string{"model-big"}})

	resp := f.post(t, "/v1/chat/completions", f.key, `{"model":"model-big","stream":true,`+
		`"messages":[{"role":"user","content":"hi"}]}`)
	got, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("relayed stream differs from the node's:\n got %d bytes: %.200q\nwant %d bytes",
			len(got), got, len(want))
	}
}
