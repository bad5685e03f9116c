package sim_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// openStream posts a streaming request and checks the response head.
func (n *node) openStream(ctx context.Context, t *testing.T, path, body string) *http.Response {
	t.Helper()
	resp, err := n.send(ctx, t, http.MethodPost, path, body, nil)
	if err != nil {
		t.Fatalf("POST %s: %v", path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST %s: got status %d, want 200", path, resp.StatusCode)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		t.Fatalf("got Content-Type %q, want text/event-stream", ct)
	}
	return resp
}

func TestChatStream(t *testing.T) {
	n := startNode(t, sim.Config{})
	messages := []any{
		map[string]any{"role": "system", "content": "You are a poet."},
		map[string]any{"role": "user", "content": "Write about the sea"},
	}
	tests := []struct {
		name      string
		extra     map[string]any
		tokens    int
		finish    string
		wantUsage bool
	}{
		{"max_tokens without usage", map[string]any{"max_tokens": 7}, 7, "length", false},
		{"include_usage", map[string]any{"max_tokens": 7,
			"stream_options": map[string]any{"include_usage": true}}, 7, "length", true},
		{"include_usage off", map[string]any{"max_tokens": 7,
			"stream_options": map[string]any{"include_usage": false}}, 7, "length", false},
		// vLLM, unlike OpenAI, defaults include_usage to true.
		{"empty stream_options", map[string]any{
			"stream_options": map[string]any{}}, 16, "stop", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := map[string]any{"model": "m", "messages": messages}
			for k, v := range tt.extra {
				if k != "stream_options" {
					req[k] = v
				}
			}
			var whole chatResponse
			n.post(t, "/v1/chat/completions", mustJSON(t, req), &whole)

			req["stream"] = true
			if o, ok := tt.extra["stream_options"]; ok {
				req["stream_options"] = o
			}
			resp := n.openStream(context.Background(), t, "/v1/chat/completions",
				mustJSON(t, req))
			events, err := newSSEReader(resp.Body).all()
			if err != nil {
				t.Fatalf("read stream: %v", err)
			}
			// Role event, one event per token, finish, usage, [DONE].
			wantEvents := 1 + tt.tokens + 1 + 1
			if tt.wantUsage {
				wantEvents++
			}
			if len(events) != wantEvents {
				t.Fatalf("got %d events, want %d: %q", len(events), wantEvents, events)
			}
			text, finish, u := chatStreamText(t, events)
			if want := whole.Choices[0].Message.Content; text != want {
				t.Errorf("got streamed text %q, want the non-streamed %q", text, want)
			}
			if finish != tt.finish {
				t.Errorf("got finish_reason %q, want %q", finish, tt.finish)
			}
			switch {
			case tt.wantUsage && u == nil:
				t.Errorf("got no usage event, want one")
			case tt.wantUsage && *u != whole.Usage:
				t.Errorf("got usage %+v, want %+v", *u, whole.Usage)
			case !tt.wantUsage && u != nil:
				t.Errorf("got usage event %+v, want none", *u)
			}
		})
	}
}

func TestCompletionStream(t *testing.T) {
	n := startNode(t, sim.Config{})
	req := map[string]any{"model": "m", "prompt": "The sea is", "max_tokens": 5}
	var whole completionResponse
	n.post(t, "/v1/completions", mustJSON(t, req), &whole)

	req["stream"] = true
	req["stream_options"] = map[string]any{"include_usage": true}
	resp := n.openStream(context.Background(), t, "/v1/completions", mustJSON(t, req))
	events, err := newSSEReader(resp.Body).all()
	if err != nil {
		t.Fatalf("read stream: %v", err)
	}
	// Five tokens, finish, usage, [DONE]: completions have no role event.
	if len(events) != 8 || events[7] != "[DONE]" {
		t.Fatalf("got events %q, want 5 tokens, finish, usage and [DONE]", events)
	}
	var text string
	for i, e := range events[:7] {
		var c chunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("event %d %q: %v", i, e, err)
		}
		if c.Object != "text_completion" || !strings.HasPrefix(c.ID, "cmpl-") {
			t.Errorf("event %d: got object %q id %q, want text_completion, cmpl-…",
				i, c.Object, c.ID)
		}
		switch {
		case i < 5:
			if len(c.Choices) != 1 || c.Choices[0].Text == nil ||
				c.Choices[0].FinishReason != nil {
				t.Fatalf("event %d %q: want one token", i, e)
			}
			text += *c.Choices[0].Text
		case i == 5:
			if len(c.Choices) != 1 || c.Choices[0].FinishReason == nil ||
				*c.Choices[0].FinishReason != "length" {
				t.Fatalf("event %d %q: want the finish with length", i, e)
			}
		case i == 6:
			if c.Usage == nil || *c.Usage != whole.Usage || len(c.Choices) != 0 {
				t.Fatalf("event %d %q: want usage %+v and no choices", i, e, whole.Usage)
			}
		}
	}
	if want := whole.Choices[0].Text; text != want {
		t.Errorf("got streamed text %q, want the non-streamed %q", text, want)
	}
}
