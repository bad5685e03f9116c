package sim_test

import (
	"context"
	"strings"
	"testing"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// splitTokens cuts generated text into its tokens, each with its
// leading space.
func splitTokens(t *testing.T, text string) []string {
	t.Helper()
	words := strings.Fields(text)
	if strings.Join(words, " ") != strings.TrimPrefix(text, " ") || !strings.HasPrefix(text, " ") {
		t.Fatalf("text %q is not space-led single-spaced words", text)
	}
	toks := make([]string, len(words))
	for i, w := range words {
		toks[i] = " " + w
	}
	return toks
}

// TestCompletionContinuation proves the property a gateway relies on to
// move a broken stream to another node: prompt P plus the first k
// tokens of P's answer yields exactly the rest of that answer.
func TestCompletionContinuation(t *testing.T) {
	n := startNode(t, sim.Config{})
	const total = 12
	for _, seed := range []any{nil, 99} {
		prompt := "The history of the world, told briefly:"
		req := map[string]any{"prompt": prompt, "max_tokens": total}
		if seed != nil {
			req["seed"] = seed
		}
		var full completionResponse
		n.post(t, "/v1/completions", mustJSON(t, req), &full)
		toks := splitTokens(t, full.Choices[0].Text)
		if len(toks) != total {
			t.Fatalf("got %d tokens, want %d", len(toks), total)
		}

		for _, k := range []int{1, 5, total - 1} {
			req["prompt"] = prompt + strings.Join(toks[:k], "")
			req["max_tokens"] = total - k
			var rest completionResponse
			n.post(t, "/v1/completions", mustJSON(t, req), &rest)
			if got, want := rest.Choices[0].Text, strings.Join(toks[k:], ""); got != want {
				t.Errorf("seed %v, after %d tokens: got %q, want %q", seed, k, got, want)
			}
			if got, want := rest.Usage.PromptTokens, full.Usage.PromptTokens+k; got != want {
				t.Errorf("seed %v, after %d tokens: got %d prompt tokens, want %d",
					seed, k, got, want)
			}
		}
	}
}

// TestChatContinuation proves the same for chat: the partial assistant
// message sent with continue_final_message is continued exactly, and
// the answer holds only the new text, streamed or not.
func TestChatContinuation(t *testing.T) {
	n := startNode(t, sim.Config{})
	const total = 10
	messages := []any{
		map[string]any{"role": "system", "content": "You are helpful."},
		map[string]any{"role": "user", "content": "Name some things."},
	}
	var full chatResponse
	n.post(t, "/v1/chat/completions", mustJSON(t, map[string]any{
		"messages": messages, "max_tokens": total, "seed": 3}), &full)
	toks := splitTokens(t, full.Choices[0].Message.Content)

	tests := []struct {
		name    string
		k       int
		partial func(toks []string) string // the assistant message sent
		stream  bool
	}{
		{"one token", 1, func(p []string) string { return strings.Join(p, "") }, false},
		{"most tokens", total - 1, func(p []string) string { return strings.Join(p, "") }, false},
		// A client may trim the leading space; words are what count.
		{"trimmed", 4, func(p []string) string {
			return strings.TrimSpace(strings.Join(p, ""))
		}, false},
		{"streamed", 6, func(p []string) string { return strings.Join(p, "") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := map[string]any{
				"messages": append(append([]any(nil), messages...), map[string]any{
					"role": "assistant", "content": tt.partial(toks[:tt.k])}),
				"max_tokens":             total - tt.k,
				"seed":                   3,
				"continue_final_message": true,
				"add_generation_prompt":  false,
				"stream":                 tt.stream,
			}
			want := strings.Join(toks[tt.k:], "")
			if !tt.stream {
				var rest chatResponse
				n.post(t, "/v1/chat/completions", mustJSON(t, req), &rest)
				if got := rest.Choices[0].Message.Content; got != want {
					t.Errorf("got %q, want %q", got, want)
				}
				if got, w := rest.Usage.PromptTokens, full.Usage.PromptTokens+tt.k; got != w {
					t.Errorf("got %d prompt tokens, want %d", got, w)
				}
				return
			}
			resp := n.openStream(context.Background(), t, "/v1/chat/completions",
				mustJSON(t, req))
			events, err := newSSEReader(resp.Body).all()
			if err != nil {
				t.Fatalf("read stream: %v", err)
			}
			if got, _, _ := chatStreamText(t, events); got != want {
				t.Errorf("got %q, want %q", got, want)
			}
		})
	}
}
