package sim_test

import (
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"math"
	"net/http"
	"reflect"
	"strings"
	"testing"

	"github.com/crosslogic/crosslogic/internal/sim"
)

func TestChatCompletion(t *testing.T) {
	n := startNode(t, sim.Config{})
	tests := []struct {
		name       string
		req        map[string]any
		wantModel  string
		wantText   string
		wantFinish string
		wantUsage  usage
	}{{
		name: "string content and max_tokens",
		req: map[string]any{"model": "m", "max_tokens": 5,
			"messages": []any{map[string]any{"role": "user", "content": "hello there"}}},
		wantModel:  "m",
		wantText:   sim.Continue(0, 5, "hello there"),
		wantFinish: "length",
		wantUsage:  usage{PromptTokens: 2, CompletionTokens: 5, TotalTokens: 7},
	}, {
		name: "content parts and default length",
		req: map[string]any{"model": "alias", "messages": []any{
			map[string]any{"role": "system", "content": "be brief"},
			map[string]any{"role": "user", "content": []any{
				map[string]any{"type": "text", "text": "hi"},
				map[string]any{"type": "text", "text": "you"},
			}},
		}},
		wantModel:  "alias",
		wantText:   sim.Continue(0, sim.DefaultOutputTokens, "be brief", "hi", "you"),
		wantFinish: "stop",
		wantUsage:  usage{PromptTokens: 4, CompletionTokens: 16, TotalTokens: 20},
	}, {
		name: "max_completion_tokens wins, seed, default model",
		req: map[string]any{"max_tokens": 9, "max_completion_tokens": 3, "seed": 42,
			"temperature": 0.7, "n": 1,
			"messages": []any{map[string]any{"role": "user", "content": "a b c"}}},
		wantModel:  "m",
		wantText:   sim.Continue(42, 3, "a b c"),
		wantFinish: "length",
		wantUsage:  usage{PromptTokens: 3, CompletionTokens: 3, TotalTokens: 6},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got chatResponse
			n.post(t, "/v1/chat/completions", mustJSON(t, tt.req), &got)
			if !strings.HasPrefix(got.ID, "chatcmpl-") || got.Object != "chat.completion" ||
				got.Created == 0 || got.Model != tt.wantModel {
				t.Errorf("got id %q object %q created %d model %q; want chatcmpl-…, "+
					"chat.completion, a time, %q",
					got.ID, got.Object, got.Created, got.Model, tt.wantModel)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("got %d choices, want 1", len(got.Choices))
			}
			c := got.Choices[0]
			if c.Index != 0 || c.Message.Role != "assistant" {
				t.Errorf("got index %d role %q, want 0 assistant", c.Index, c.Message.Role)
			}
			if c.Message.Content != tt.wantText {
				t.Errorf("got content %q, want %q", c.Message.Content, tt.wantText)
			}
			if c.FinishReason != tt.wantFinish {
				t.Errorf("got finish_reason %q, want %q", c.FinishReason, tt.wantFinish)
			}
			if got.Usage != tt.wantUsage {
				t.Errorf("got usage %+v, want %+v", got.Usage, tt.wantUsage)
			}
		})
	}
}

func TestCompletion(t *testing.T) {
	n := startNode(t, sim.Config{OutputTokens: 4})
	tests := []struct {
		name       string
		req        map[string]any
		wantText   string
		wantFinish string
		wantUsage  usage
	}{{
		name:       "string prompt",
		req:        map[string]any{"model": "m", "prompt": "Once upon a time", "max_tokens": 6},
		wantText:   sim.Continue(0, 6, "Once upon a time"),
		wantFinish: "length",
		wantUsage:  usage{PromptTokens: 4, CompletionTokens: 6, TotalTokens: 10},
	}, {
		name:       "array of one prompt, configured default length",
		req:        map[string]any{"model": "m", "prompt": []string{"Once upon a time"}},
		wantText:   sim.Continue(0, 4, "Once upon a time"),
		wantFinish: "stop",
		wantUsage:  usage{PromptTokens: 4, CompletionTokens: 4, TotalTokens: 8},
	}, {
		name:       "seed and empty prompt",
		req:        map[string]any{"model": "m", "prompt": "", "seed": -5, "max_tokens": 2},
		wantText:   sim.Continue(-5, 2),
		wantFinish: "length",
		wantUsage:  usage{PromptTokens: 0, CompletionTokens: 2, TotalTokens: 2},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got completionResponse
			n.post(t, "/v1/completions", mustJSON(t, tt.req), &got)
			if !strings.HasPrefix(got.ID, "cmpl-") || got.Object != "text_completion" ||
				got.Model != "m" {
				t.Errorf("got id %q object %q model %q; want cmpl-…, text_completion, m",
					got.ID, got.Object, got.Model)
			}
			if len(got.Choices) != 1 {
				t.Fatalf("got %d choices, want 1", len(got.Choices))
			}
			c := got.Choices[0]
			if c.Text != tt.wantText || c.FinishReason != tt.wantFinish || c.Logprobs != nil {
				t.Errorf("got text %q finish %q logprobs %v; want %q, %q, null",
					c.Text, c.FinishReason, c.Logprobs, tt.wantText, tt.wantFinish)
			}
			if got.Usage != tt.wantUsage {
				t.Errorf("got usage %+v, want %+v", got.Usage, tt.wantUsage)
			}
		})
	}
}

type embeddingResponse struct {
	ID     string `json:"id"`
	Object string `json:"object"`
	Model  string `json:"model"`
	Data   []struct {
		Index     int             `json:"index"`
		Object    string          `json:"object"`
		Embedding json.RawMessage `json:"embedding"`
	} `json:"data"`
	Usage usage `json:"usage"`
}

// vectors decodes the embeddings of r, in float or base64 format.
func (r embeddingResponse) vectors(t *testing.T) [][]float32 {
	t.Helper()
	var out [][]float32
	for i, d := range r.Data {
		if d.Index != i || d.Object != "embedding" {
			t.Fatalf("data %d: got index %d object %q", i, d.Index, d.Object)
		}
		var v []float32
		var s string
		if err := json.Unmarshal(d.Embedding, &v); err != nil {
			if err := json.Unmarshal(d.Embedding, &s); err != nil {
				t.Fatalf("data %d: embedding %s is neither floats nor a string", i, d.Embedding)
			}
			raw, err := base64.StdEncoding.DecodeString(s)
			if err != nil || len(raw)%4 != 0 {
				t.Fatalf("data %d: bad base64 %q: %v", i, s, err)
			}
			for j := 0; j < len(raw); j += 4 {
				v = append(v, math.Float32frombits(binary.LittleEndian.Uint32(raw[j:])))
			}
		}
		out = append(out, v)
	}
	return out
}

func TestEmbeddings(t *testing.T) {
	n := startNode(t, sim.Config{EmbeddingDims: 32})
	inputs := []string{"the quick brown fox", "jumps", "the quick brown fox"}

	var plain, packed embeddingResponse
	n.post(t, "/v1/embeddings", mustJSON(t, map[string]any{"model": "m", "input": inputs}), &plain)
	n.post(t, "/v1/embeddings", mustJSON(t, map[string]any{
		"model": "m", "input": inputs, "encoding_format": "base64"}), &packed)

	if !strings.HasPrefix(plain.ID, "embd-") || plain.Object != "list" || plain.Model != "m" {
		t.Errorf("got id %q object %q model %q; want embd-…, list, m",
			plain.ID, plain.Object, plain.Model)
	}
	if want := (usage{PromptTokens: 9, TotalTokens: 9}); plain.Usage != want {
		t.Errorf("got usage %+v, want %+v", plain.Usage, want)
	}
	vs, bs := plain.vectors(t), packed.vectors(t)
	if len(vs) != len(inputs) {
		t.Fatalf("got %d embeddings, want %d", len(vs), len(inputs))
	}
	for i, v := range vs {
		if len(v) != 32 {
			t.Errorf("embedding %d: got %d dims, want 32", i, len(v))
		}
		var sum float64
		for _, x := range v {
			sum += float64(x) * float64(x)
		}
		if math.Abs(math.Sqrt(sum)-1) > 1e-5 {
			t.Errorf("embedding %d: got norm %v, want 1", i, math.Sqrt(sum))
		}
		if !reflect.DeepEqual(v, bs[i]) {
			t.Errorf("embedding %d: base64 gives %v, float gives %v", i, bs[i], v)
		}
	}
	if !reflect.DeepEqual(vs[0], vs[2]) {
		t.Errorf("same input, different embeddings: %v and %v", vs[0], vs[2])
	}
	if reflect.DeepEqual(vs[0], vs[1]) {
		t.Errorf("different inputs, same embedding %v", vs[0])
	}

	var single embeddingResponse
	n.post(t, "/v1/embeddings", mustJSON(t, map[string]any{"input": "jumps"}), &single)
	if got := single.vectors(t); len(got) != 1 || !reflect.DeepEqual(got[0], vs[1]) {
		t.Errorf("single input: got %v, want %v", got, vs[1:2])
	}
}

func TestModels(t *testing.T) {
	n := startNode(t, sim.Config{Models: []string{"llama", "llama-alias"}, MaxModelLen: 4096})
	var got struct {
		Object string `json:"object"`
		Data   []struct {
			ID          string `json:"id"`
			Object      string `json:"object"`
			Created     int64  `json:"created"`
			OwnedBy     string `json:"owned_by"`
			Root        string `json:"root"`
			MaxModelLen int    `json:"max_model_len"`
		} `json:"data"`
	}
	status, b := n.do(t, http.MethodGet, "/v1/models", "", nil)
	if status != http.StatusOK {
		t.Fatalf("got status %d, want 200", status)
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("decode %s: %v", b, err)
	}
	if got.Object != "list" || len(got.Data) != 2 {
		t.Fatalf("got object %q with %d models, want list of 2", got.Object, len(got.Data))
	}
	for i, want := range []string{"llama", "llama-alias"} {
		m := got.Data[i]
		if m.ID != want || m.Object != "model" || m.OwnedBy != "vllm" || m.Root != want ||
			m.MaxModelLen != 4096 || m.Created == 0 {
			t.Errorf("model %d: got %+v, want id and root %q, model, vllm, 4096", i, m, want)
		}
	}
}

func TestHealth(t *testing.T) {
	n := startNode(t, sim.Config{})
	tests := []struct {
		name   string
		faults sim.Faults
		want   int
	}{
		{"healthy", sim.Faults{}, http.StatusOK},
		{"unhealthy", sim.Faults{Unhealthy: true}, http.StatusServiceUnavailable},
		{"injection leaves health alone", sim.Faults{ErrorRate: 1, HangRate: 1}, http.StatusOK},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := n.Server().SetFaults(tt.faults); err != nil {
				t.Fatalf("SetFaults: %v", err)
			}
			status, b := n.do(t, http.MethodGet, "/health", "", nil)
			if status != tt.want || len(b) != 0 {
				t.Errorf("got %d %q, want %d with no body", status, b, tt.want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	n := startNode(t, sim.Config{MaxModelLen: 100})
	chat := func(extra string) string {
		return `{"model":"m","messages":[{"role":"user","content":"hi"}]` + extra + `}`
	}
	tests := []struct {
		name      string
		method    string
		path      string
		body      string
		status    int
		errType   string // vLLM's error type; empty for a FastAPI detail body
		param     string // empty for null
		message   string // a substring of the message
		inference bool   // counted in Stats
	}{
		{"n > 1", "POST", "/v1/chat/completions", chat(`,"n":2`),
			400, "BadRequestError", "n", "n > 1", true},
		{"n > 1 completions", "POST", "/v1/completions", `{"prompt":"x","n":3}`,
			400, "BadRequestError", "n", "n > 1", true},
		{"unknown model", "POST", "/v1/chat/completions",
			`{"model":"nope","messages":[{"role":"user","content":"hi"}]}`,
			404, "NotFoundError", "model", "The model `nope` does not exist.", true},
		{"unknown model embeddings", "POST", "/v1/embeddings", `{"model":"x","input":"a"}`,
			404, "NotFoundError", "model", "The model `x` does not exist.", true},
		{"malformed JSON", "POST", "/v1/chat/completions", `{"model":`,
			400, "BadRequestError", "", "Invalid JSON", true},
		{"not an object", "POST", "/v1/completions", `[1,2]`,
			400, "BadRequestError", "", "JSON object", true},
		{"wrong field type", "POST", "/v1/chat/completions", chat(`,"max_tokens":"many"`),
			400, "BadRequestError", "max_tokens", "must be an integer", true},
		{"no messages", "POST", "/v1/chat/completions", `{"model":"m"}`,
			400, "BadRequestError", "messages", "messages", true},
		{"no role", "POST", "/v1/chat/completions", `{"messages":[{"content":"hi"}]}`,
			400, "BadRequestError", "messages", "no role", true},
		{"image part", "POST", "/v1/chat/completions",
			`{"messages":[{"role":"user","content":[{"type":"image_url"}]}]}`,
			400, "BadRequestError", "messages", "image_url", true},
		{"continue with generation prompt", "POST", "/v1/chat/completions",
			`{"messages":[{"role":"assistant","content":"a"}],"continue_final_message":true}`,
			400, "BadRequestError", "", "add_generation_prompt", true},
		{"continue a user message", "POST", "/v1/chat/completions",
			chat(`,"continue_final_message":true,"add_generation_prompt":false`),
			400, "BadRequestError", "messages", "assistant", true},
		{"stream options without stream", "POST", "/v1/chat/completions",
			chat(`,"stream_options":{"include_usage":true}`),
			400, "BadRequestError", "stream_options", "stream=True", true},
		{"zero max_tokens", "POST", "/v1/completions", `{"prompt":"x","max_tokens":0}`,
			400, "BadRequestError", "max_tokens", "at least 1", true},
		{"max_tokens beyond the context", "POST", "/v1/chat/completions",
			chat(`,"max_tokens":100`),
			400, "BadRequestError", "max_tokens", "maximum context length is 100", true},
		{"prompt beyond the context", "POST", "/v1/completions",
			mustJSON(t, map[string]any{"prompt": strings.Repeat("w ", 100)}),
			400, "BadRequestError", "input_tokens", "100 input tokens", true},
		{"no prompt", "POST", "/v1/completions", `{"model":"m"}`,
			400, "BadRequestError", "prompt", "required", true},
		{"two prompts", "POST", "/v1/completions", `{"prompt":["a","b"]}`,
			400, "BadRequestError", "prompt", "exactly one", true},
		{"token id prompt", "POST", "/v1/completions", `{"prompt":[1,2,3]}`,
			400, "BadRequestError", "prompt", "Token id", true},
		{"token id input", "POST", "/v1/embeddings", `{"input":[[1,2]]}`,
			400, "BadRequestError", "input", "Token id", true},
		{"bad encoding format", "POST", "/v1/embeddings",
			`{"input":"a","encoding_format":"int8"}`,
			400, "BadRequestError", "encoding_format", "int8", true},
		{"wrong method", "GET", "/v1/chat/completions", "", 405, "", "", "", true},
		{"wrong method models", "POST", "/v1/models", "{}", 405, "", "", "", false},
		{"unknown path", "GET", "/v1/nothing", "", 404, "", "", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, b := n.do(t, tt.method, tt.path, tt.body, nil)
			if status != tt.status {
				t.Fatalf("got status %d (%s), want %d", status, b, tt.status)
			}
			if tt.errType == "" {
				want := `{"detail":"` + http.StatusText(tt.status) + `"}`
				if string(b) != want {
					t.Errorf("got body %s, want %s", b, want)
				}
				return
			}
			// The body must be exactly vLLM's ErrorResponse: one "error"
			// object with message, type, param and code, nothing else.
			var body map[string]map[string]any
			if err := json.Unmarshal(b, &body); err != nil || len(body) != 1 {
				t.Fatalf("got body %s, want {\"error\": {…}}", b)
			}
			e := body["error"]
			var param any
			if tt.param != "" {
				param = tt.param
			}
			if len(e) != 4 || e["type"] != tt.errType || e["param"] != param ||
				e["code"] != float64(tt.status) {
				t.Errorf("got error %v, want type %s, param %v, code %d",
					e, tt.errType, param, tt.status)
			}
			if msg, _ := e["message"].(string); !strings.Contains(msg, tt.message) {
				t.Errorf("got message %q, want it to contain %q", msg, tt.message)
			}
		})
	}

	want := int64(0)
	for _, tt := range tests {
		if tt.inference {
			want++
		}
	}
	st := n.Server().Stats()
	if st.Requests != want || st.Rejected != want || st.Running != 0 {
		t.Errorf("got %d requests, %d rejected, %d running; want %d, %d, 0",
			st.Requests, st.Rejected, st.Running, want, want)
	}
}

func TestAPIKey(t *testing.T) {
	n := startNode(t, sim.Config{APIKey: "sekret"})
	chat := `{"messages":[{"role":"user","content":"hi"}],"max_tokens":1}`
	tests := []struct {
		name   string
		method string
		path   string
		body   string
		auth   string
		want   int
	}{
		{"no key", "POST", "/v1/chat/completions", chat, "", 401},
		{"wrong key", "POST", "/v1/chat/completions", chat, "Bearer nope", 401},
		{"key without Bearer", "POST", "/v1/chat/completions", chat, "sekret", 401},
		{"right key", "POST", "/v1/chat/completions", chat, "Bearer sekret", 200},
		{"models need the key", "GET", "/v1/models", "", "", 401},
		{"models with the key", "GET", "/v1/models", "", "Bearer sekret", 200},
		{"unknown /v1 path needs the key", "GET", "/v1/nothing", "", "", 401},
		{"health is open", "GET", "/health", "", "", 200},
		{"metrics are open", "GET", "/metrics", "", "", 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := http.Header{}
			if tt.auth != "" {
				h.Set("Authorization", tt.auth)
			}
			status, b := n.do(t, tt.method, tt.path, tt.body, h)
			if status != tt.want {
				t.Fatalf("got status %d (%s), want %d", status, b, tt.want)
			}
			if status == http.StatusUnauthorized && string(b) != `{"error":"Unauthorized"}` {
				t.Errorf("got body %s, want vLLM's {\"error\":\"Unauthorized\"}", b)
			}
		})
	}
}
