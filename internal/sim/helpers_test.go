package sim_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// node is a simulator on loopback with a client of its own.
type node struct {
	*sim.Running
	client *http.Client
}

// startNode starts a simulator for cfg, closed when the test ends.
func startNode(t *testing.T, cfg sim.Config) *node {
	t.Helper()
	if cfg.Models == nil {
		cfg.Models = []string{"m", "alias"}
	}
	r, err := sim.Start(cfg)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	tr := &http.Transport{}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		tr.CloseIdleConnections()
	})
	return &node{Running: r, client: &http.Client{Transport: tr}}
}

// send makes a request with ctx; body is JSON text, empty for none.
func (n *node) send(ctx context.Context, t *testing.T, method, path, body string,
	header http.Header) (*http.Response, error) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, n.URL+path, rd)
	if err != nil {
		t.Fatalf("new request: %v", err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header[k] = v
	}
	return n.client.Do(req)
}

// do makes a request that must get a whole answer, and returns its
// status and body.
func (n *node) do(t *testing.T, method, path, body string, header http.Header) (int, []byte) {
	t.Helper()
	resp, err := n.send(context.Background(), t, method, path, body, header)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp.StatusCode, b
}

// post makes a POST that must succeed, and decodes its answer into v.
func (n *node) post(t *testing.T, path, body string, v any) {
	t.Helper()
	status, b := n.do(t, http.MethodPost, path, body, nil)
	if status != http.StatusOK {
		t.Fatalf("POST %s: got status %d (%s), want 200", path, status, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("POST %s: decode %s: %v", path, b, err)
	}
}

// waitFor polls cond until it holds, failing the test after a
// deadline. Tests wait for the simulator's state this way, never by
// sleeping.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

// waitStats polls the node's Stats until cond holds.
func (n *node) waitStats(t *testing.T, what string, cond func(sim.Stats) bool) {
	t.Helper()
	waitFor(t, what, func() bool { return cond(n.Server().Stats()) })
}

// sseReader reads a server-sent event stream one data payload at a
// time.
type sseReader struct {
	r *bufio.Reader
}

func newSSEReader(body io.Reader) *sseReader {
	return &sseReader{r: bufio.NewReader(body)}
}

// next returns the next event's data. It returns io.EOF at a clean end
// of the stream, and the read error when the stream breaks.
func (s *sseReader) next() (string, error) {
	var data []string
	for {
		line, err := s.r.ReadString('\n')
		if err != nil {
			if errors.Is(err, io.EOF) && line == "" && len(data) == 0 {
				return "", io.EOF
			}
			if errors.Is(err, io.EOF) {
				err = io.ErrUnexpectedEOF
			}
			return "", err
		}
		line = strings.TrimSuffix(line, "\n")
		switch {
		case line == "":
			if len(data) > 0 {
				return strings.Join(data, "\n"), nil
			}
		case strings.HasPrefix(line, "data: "):
			data = append(data, strings.TrimPrefix(line, "data: "))
		default:
			return "", errors.New("unexpected stream line " + line)
		}
	}
}

// all reads every remaining event; err is nil at a clean end.
func (s *sseReader) all() ([]string, error) {
	var events []string
	for {
		e, err := s.next()
		if errors.Is(err, io.EOF) {
			return events, nil
		}
		if err != nil {
			return events, err
		}
		events = append(events, e)
	}
}

// Response shapes, as a client decodes them.
type (
	usage struct {
		PromptTokens     int `json:"prompt_tokens"`
		CompletionTokens int `json:"completion_tokens"`
		TotalTokens      int `json:"total_tokens"`
	}
	chatResponse struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Index   int `json:"index"`
			Message struct {
				Role    string `json:"role"`
				Content string `json:"content"`
			} `json:"message"`
			FinishReason string `json:"finish_reason"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	completionResponse struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Index        int     `json:"index"`
			Text         string  `json:"text"`
			FinishReason string  `json:"finish_reason"`
			Logprobs     *string `json:"logprobs"`
		} `json:"choices"`
		Usage usage `json:"usage"`
	}
	// chunk is a stream event of either endpoint.
	chunk struct {
		ID      string `json:"id"`
		Object  string `json:"object"`
		Created int64  `json:"created"`
		Model   string `json:"model"`
		Choices []struct {
			Index int `json:"index"`
			Delta *struct {
				Role    *string `json:"role"`
				Content *string `json:"content"`
			} `json:"delta"`
			Text         *string `json:"text"`
			FinishReason *string `json:"finish_reason"`
		} `json:"choices"`
		Usage *usage `json:"usage"`
	}
)

// mustJSON encodes v, for building request bodies.
func mustJSON(t *testing.T, v any) string {
	t.Helper()
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		t.Fatalf("encode %v: %v", v, err)
	}
	return b.String()
}

// chatStreamText reads a whole chat stream and returns its text, the
// finish reason and the usage event, if any, checking the framing.
func chatStreamText(t *testing.T, events []string) (text, finish string, u *usage) {
	t.Helper()
	if len(events) < 3 {
		t.Fatalf("got %d events, want at least 3: %q", len(events), events)
	}
	if last := events[len(events)-1]; last != "[DONE]" {
		t.Fatalf("got last event %q, want [DONE]", last)
	}
	var id string
	for i, e := range events[:len(events)-1] {
		var c chunk
		if err := json.Unmarshal([]byte(e), &c); err != nil {
			t.Fatalf("event %d %q: %v", i, e, err)
		}
		if id == "" {
			id = c.ID
		}
		if c.ID != id || c.Object != "chat.completion.chunk" || c.Created == 0 {
			t.Fatalf("event %d: got id %q object %q created %d, want id %q, "+
				"object chat.completion.chunk", i, c.ID, c.Object, c.Created, id)
		}
		if c.Usage != nil {
			if len(c.Choices) != 0 || i != len(events)-2 {
				t.Fatalf("usage event %d has %d choices; want the last before [DONE], with none",
					i, len(c.Choices))
			}
			u = c.Usage
			continue
		}
		if len(c.Choices) != 1 || c.Choices[0].Delta == nil {
			t.Fatalf("event %d: got %q, want one choice with a delta", i, e)
		}
		d := c.Choices[0].Delta
		switch {
		case i == 0:
			if d.Role == nil || *d.Role != "assistant" || d.Content == nil || *d.Content != "" {
				t.Fatalf("first event %q, want role assistant and empty content", e)
			}
		case c.Choices[0].FinishReason != nil:
			if finish != "" || d.Content != nil {
				t.Fatalf("event %d %q: a second or non-empty finish event", i, e)
			}
			finish = *c.Choices[0].FinishReason
		default:
			if d.Content == nil || d.Role != nil || finish != "" {
				t.Fatalf("event %d %q: want a content delta before the finish", i, e)
			}
			text += *d.Content
		}
	}
	return text, finish, u
}
