package harness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/crosslogic/crosslogic/internal/openai"
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

// answer is what the client got for one request.
type answer struct {
	status int
	left   bool // the client went away as planned
	openai.Answer
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
		a.Answer, err = openai.ParseAnswer(b)
		return a, err
	}
	a.Answer, err = openai.ReadStream(body, func(s *openai.Answer) bool {
		if onText != nil {
			onText(s.ID, s.Texts)
		}
		if s.Texts == r.leaveAfter {
			a.left = true
			return false // the deferred cancel hangs up
		}
		return true
	})
	return a, err
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
		if !strings.HasPrefix(want, a.Text) {
			return mismatched, fmt.Sprintf("got beginning %q, want a beginning of %q",
				a.Text, want)
		}
		return succeeded, ""
	case err != nil:
		return failed, err.Error()
	case a.status != http.StatusOK:
		return failed, fmt.Sprintf("status %d", a.status)
	case r.stream && a.ErrEvent != "":
		return failed, fmt.Sprintf("stream ended by an error event after %d chunks", a.Texts)
	case r.stream && a.Done == 0:
		return failed, fmt.Sprintf("stream cut after %d chunks, without [DONE]", a.Texts)
	case r.stream && (a.Done != 1 || a.AfterDone != 0):
		return mismatched, fmt.Sprintf("%d [DONE] with %d events after", a.Done, a.AfterDone)
	case r.stream && a.OtherIDs != 0:
		return mismatched, fmt.Sprintf("%d chunks with an id other than %s", a.OtherIDs, a.ID)
	case a.Text != want:
		return mismatched, fmt.Sprintf("got text %q, want %q", a.Text, want)
	case a.Finish != "length":
		return mismatched, fmt.Sprintf("got finish_reason %q, want length", a.Finish)
	}
	prompt := sim.CountTokens(r.prompt)
	if u := a.Usage; u == nil || u.PromptTokens != prompt ||
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
