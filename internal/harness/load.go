package harness

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// Endpoints the load generator uses.
const (
	pathChat        = "/v1/chat/completions"
	pathCompletions = "/v1/completions"
)

// maxAnswer bounds what the client reads of one answer, so that a
// runaway stream cannot make the harness unbounded.
const maxAnswer = 1 << 20

// request is one request of a scenario. The simulator's answer to it is
// known in advance: want.
type request struct {
	path      string // pathChat or pathCompletions
	prompt    string
	seed      int
	maxTokens int // always set: a continued stream needs it to end right
	stream    bool
	// leaveAfter, when positive, makes the client of a stream go away
	// after that many chunks carrying text.
	leaveAfter int
	// leaves marks a request that is not a stream whose client the
	// scenario makes go away, through the context load.leave gives it.
	leaves bool
}

// body returns the request's JSON body. Streams ask for usage, so that
// the tokens of a continued stream can be checked to add up.
func (r request) body() []byte {
	req := map[string]any{"model": model, "max_tokens": r.maxTokens, "seed": r.seed}
	if r.path == pathChat {
		req["messages"] = []map[string]string{{"role": "user", "content": r.prompt}}
	} else {
		req["prompt"] = r.prompt
	}
	if r.stream {
		req["stream"] = true
		req["stream_options"] = map[string]bool{"include_usage": true}
	}
	b, _ := json.Marshal(req)
	return b
}

// want returns the text one healthy node produces for r.
func (r request) want() string {
	return sim.Continue(int64(r.seed), r.maxTokens, r.prompt)
}

// mixed returns n requests alternating chat and completions, streamed and
// not, each with its own prompt and seed, so that a stream spliced from
// the wrong place cannot match by chance.
func mixed(n int) []request {
	reqs := make([]request, n)
	for i := range reqs {
		reqs[i] = request{path: pathChat, seed: i, maxTokens: 16 + i%9, stream: i%2 == 0,
			prompt: fmt.Sprintf("request %d: tell me about spot instances", i)}
		if i%4 >= 2 {
			reqs[i].path = pathCompletions
		}
	}
	return reqs
}

// usage is OpenAI's token usage.
type usage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

// chunk is a whole answer or one stream event, chat or completion.
type chunk struct {
	ID      string `json:"id"`
	Choices []struct {
		Text         string  `json:"text"`
		FinishReason *string `json:"finish_reason"`
		Delta        struct {
			Content string `json:"content"`
		} `json:"delta"`
		Message struct {
			Content string `json:"content"`
		} `json:"message"`
	} `json:"choices"`
	Usage *usage          `json:"usage"`
	Error json.RawMessage `json:"error"`
}

// answer is what the client got for one request.
type answer struct {
	status    int
	text      string
	texts     int    // stream chunks that carried text
	id        string // of the answer, or of a stream's first chunk
	otherIDs  int    // stream chunks with another id
	usage     *usage
	finish    string
	done      int  // [DONE] events
	afterDone int  // events after the first [DONE]
	errEvent  bool // the stream ended with an error event
	left      bool // the client went away as planned
}

// client sends requests to the gateway.
type client struct {
	url  string
	key  string
	http *http.Client
}

// do sends r and reads the whole answer, or for a client that leaves,
// its planned beginning. onText, when not nil, is called after each
// stream chunk that carries text.
func (c *client) do(ctx context.Context, r request,
	onText func(id string, texts int)) (answer, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url+r.path,
		bytes.NewReader(r.body()))
	if err != nil {
		return answer{}, err
	}
	req.Header.Set("Authorization", "Bearer "+c.key)
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(req)
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode}
	body := io.LimitReader(resp.Body, maxAnswer)

	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
		b, err := io.ReadAll(body)
		if err != nil || resp.StatusCode != http.StatusOK {
			return a, err
		}
		var ch chunk
		if err := json.Unmarshal(b, &ch); err != nil || len(ch.Choices) == 0 {
			return a, fmt.Errorf("answer %.80q: not a completion", b)
		}
		a.id, a.usage = ch.ID, ch.Usage
		a.text = ch.Choices[0].Message.Content + ch.Choices[0].Text
		if fr := ch.Choices[0].FinishReason; fr != nil {
			a.finish = *fr
		}
		return a, nil
	}

	br := bufio.NewReader(body)
	for {
		line, err := br.ReadString('\n')
		if errors.Is(err, io.EOF) && line == "" {
			return a, nil
		}
		if err != nil {
			return a, err
		}
		data, ok := strings.CutPrefix(strings.TrimRight(line, "\r\n"), "data: ")
		if !ok {
			continue
		}
		if a.done > 0 {
			a.afterDone++
		}
		if data == "[DONE]" {
			a.done++
			continue
		}
		var ch chunk
		if err := json.Unmarshal([]byte(data), &ch); err != nil {
			return a, fmt.Errorf("event %.80q: %w", data, err)
		}
		if ch.Error != nil {
			a.errEvent = true
			continue
		}
		switch {
		case a.id == "":
			a.id = ch.ID
		case ch.ID != a.id:
			a.otherIDs++
		}
		if ch.Usage != nil {
			a.usage = ch.Usage
		}
		if len(ch.Choices) == 0 {
			continue
		}
		if fr := ch.Choices[0].FinishReason; fr != nil {
			a.finish = *fr
		}
		t := ch.Choices[0].Delta.Content + ch.Choices[0].Text
		if t == "" {
			continue
		}
		a.text += t
		a.texts++
		if onText != nil {
			onText(a.id, a.texts)
		}
		if a.texts == r.leaveAfter {
			a.left = true
			return a, nil // the deferred cancel hangs up
		}
	}
}

// verdict is how one request ended, from the scenario's point of view.
type verdict int

const (
	succeeded verdict = iota
	failed
	mismatched
)

// judge decides how r ended given what the client got, with a reason for
// anything but success.
func judge(r request, a answer, err error) (verdict, string) {
	want := r.want()
	switch {
	case (r.leaveAfter > 0 || r.leaves) && a.left:
		if !strings.HasPrefix(want, a.text) {
			return mismatched, fmt.Sprintf("got beginning %q, want a beginning of %q",
				a.text, want)
		}
		return succeeded, ""
	case err != nil:
		return failed, err.Error()
	case a.status != http.StatusOK:
		return failed, fmt.Sprintf("status %d", a.status)
	case r.stream && a.errEvent:
		return failed, fmt.Sprintf("stream ended by an error event after %d chunks", a.texts)
	case r.stream && a.done == 0:
		return failed, fmt.Sprintf("stream cut after %d chunks, without [DONE]", a.texts)
	case r.stream && (a.done != 1 || a.afterDone != 0):
		return mismatched, fmt.Sprintf("%d [DONE] with %d events after", a.done, a.afterDone)
	case r.stream && a.otherIDs != 0:
		return mismatched, fmt.Sprintf("%d chunks with an id other than %s", a.otherIDs, a.id)
	case a.text != want:
		return mismatched, fmt.Sprintf("got text %q, want %q", a.text, want)
	case a.finish != "length":
		return mismatched, fmt.Sprintf("got finish_reason %q, want length", a.finish)
	}
	prompt := sim.CountTokens(r.prompt)
	if u := a.usage; u == nil || u.PromptTokens != prompt ||
		u.CompletionTokens != r.maxTokens || u.TotalTokens != prompt+r.maxTokens {
		return mismatched, fmt.Sprintf("got usage %+v, want %d prompt and %d completion tokens",
			u, prompt, r.maxTokens)
	}
	return succeeded, ""
}

// load is one run of the load generator.
type load struct {
	requests    []request
	concurrency int
	// onText, when not nil, is called for request i after each stream
	// chunk that carries text, in the goroutine sending i.
	onText func(i int, id string, texts int)
	// onDone, when not nil, is called when request i has ended, in the
	// goroutine that sent it.
	onDone func(i int)
	// leave, when not nil, returns the context of request i; a scenario
	// cancels it to make a client leave a request that is not a stream.
	leave func(ctx context.Context, i int) (context.Context, context.CancelFunc)
}

// tally counts how a load's requests ended.
type tally struct {
	sent, succeeded, failed, mismatched int
	// examples holds the reasons of the first few requests that did not
	// succeed.
	examples []string
}

// maxExamples bounds tally.examples.
const maxExamples = 3

func (t *tally) add(o tally) {
	t.sent += o.sent
	t.succeeded += o.succeeded
	t.failed += o.failed
	t.mismatched += o.mismatched
	for _, e := range o.examples {
		if len(t.examples) < maxExamples {
			t.examples = append(t.examples, e)
		}
	}
}

// run sends l's requests with l.concurrency clients until all are sent
// or ctx ends, and tallies how they ended.
func (c *client) run(ctx context.Context, l load) tally {
	var (
		mu  sync.Mutex
		t   tally
		wg  sync.WaitGroup
		ids = make(chan int)
	)
	for range max(l.concurrency, 1) {
		wg.Go(func() {
			for i := range ids {
				r := l.requests[i]
				rctx, cancel := ctx, context.CancelFunc(func() {})
				if l.leave != nil {
					rctx, cancel = l.leave(ctx, i)
				}
				var onText func(string, int)
				if l.onText != nil {
					onText = func(id string, n int) { l.onText(i, id, n) }
				}
				a, err := c.do(rctx, r, onText)
				if l.leave != nil && rctx.Err() != nil && ctx.Err() == nil {
					a.left, err = true, nil // left as the scenario planned
				}
				cancel()
				v, why := judge(r, a, err)
				if l.onDone != nil {
					l.onDone(i)
				}

				mu.Lock()
				t.sent++
				switch v {
				case succeeded:
					t.succeeded++
				case failed:
					t.failed++
				case mismatched:
					t.mismatched++
				}
				if v != succeeded && len(t.examples) < maxExamples {
					t.examples = append(t.examples, fmt.Sprintf("request %d (%s, stream %v): %s",
						i, r.path, r.stream, why))
				}
				mu.Unlock()
			}
		})
	}
feed:
	for i := range l.requests {
		select {
		case ids <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(ids)
	wg.Wait()
	return t
}
