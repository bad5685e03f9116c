package sim

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// eventStreamType is the Content-Type of streams, shared like jsonType.
// Starlette, under vLLM, adds the charset.
var eventStreamType = []string{"text/event-stream; charset=utf-8"}

// Finish reasons, as vLLM reports them.
const (
	finishStop   = "stop"
	finishLength = "length"
)

// job is one validated generation request.
type job struct {
	wire   *wire
	model  *servedModel
	gen    generator // primed with the prompt
	prompt int       // prompt tokens
	tokens int       // tokens to generate
	finish string    // finish reason once all tokens are out
	stream bool
	usage  bool // stream_options.include_usage
	id     uint64
	time   int64 // the created field, Unix seconds
}

// length decides how many tokens a request with prompt tokens and the
// given max_tokens generates, and its finish reason, checking both
// against the context length with vLLM's messages.
func (s *Server) length(prompt int, maxTokens *int) (int, string, *apiError) {
	limit := s.cfg.MaxModelLen
	if prompt >= limit {
		return 0, "", badRequest("input_tokens",
			"This model's maximum context length is %d tokens. However, your "+
				"request has %d input tokens. Please reduce the length of the "+
				"input messages.", limit, prompt)
	}
	if maxTokens == nil {
		// Without max_tokens the simulated model stops by itself, unless
		// the context runs out first.
		if n := limit - prompt; n < s.cfg.OutputTokens {
			return n, finishLength, nil
		}
		return s.cfg.OutputTokens, finishStop, nil
	}
	n := *maxTokens
	switch {
	case n < 1:
		return 0, "", badRequest("max_tokens", "max_tokens must be at least 1, got %d.", n)
	case prompt+n > limit:
		return 0, "", badRequest("max_tokens",
			"'max_tokens' or 'max_completion_tokens' is too large: %d. This "+
				"model's maximum context length is %d tokens and your request "+
				"has %d input tokens (%d > %d - %d).",
			n, limit, prompt, n, limit, prompt)
	}
	return n, finishLength, nil
}

// checkN rejects n other than 1: the simulator makes one choice.
func checkN(n *int) *apiError {
	switch {
	case n == nil || *n == 1:
		return nil
	case *n < 1:
		return badRequest("n", "n must be at least 1, got %d.", *n)
	default:
		return badRequest("n", "n > 1 is not supported by the simulator, got %d.", *n)
	}
}

// checkStream validates stream and stream_options like vLLM, and
// reports whether the stream ends with a usage event. vLLM, unlike
// OpenAI, defaults include_usage to true once stream_options is given.
func checkStream(stream bool, opts *streamOptions) (bool, *apiError) {
	if opts == nil {
		return false, nil
	}
	if !stream {
		return false, badRequest("stream_options",
			"Stream options can only be defined when `stream=True`.")
	}
	return opts.IncludeUsage == nil || *opts.IncludeUsage, nil
}

// generate runs a validated job: draw a fault, wait for a slot, produce
// the tokens at the configured pace, answer whole or streamed.
func (s *Server) generate(w http.ResponseWriter, r *http.Request, j *job, res *result) {
	ctx := r.Context()
	res.model, res.prompt = j.model.name, j.prompt
	kind, breakAt := s.drawFault(j.tokens)
	switch kind {
	case faultError:
		writeError(w, errInjected)
		res.outcome, res.status = outcomeError, errInjected.status
		return
	case faultHang:
		s.hang(ctx, res)
		return
	case faultNone:
		breakAt = -1
	}
	j.id, j.time = s.idSeq.Add(1), time.Now().Unix()

	if j.stream {
		// vLLM's streaming response sends its status line and headers as
		// soon as the request is accepted, before it is scheduled; only
		// the events wait for tokens.
		w.Header()["Content-Type"] = eventStreamType
		w.WriteHeader(http.StatusOK)
		res.status = http.StatusOK
		_ = http.NewResponseController(w).Flush()
	}

	if err := s.adm.acquire(ctx); err != nil {
		res.outcome = outcomeCancelled
		return
	}
	defer s.adm.release()
	s.stats.promptTokens.Add(int64(j.prompt))

	p := newPacer(ctx, &s.cfg, j.stream)
	defer p.stop()
	if j.stream {
		res.outcome = s.stream(w, j, &p, breakAt, res)
	} else {
		res.outcome = s.answer(w, j, &p, breakAt, res)
	}
}

// appendHead appends the fields every answer and event opens with, up
// to and including the opening bracket of choices.
func appendHead(b []byte, base uint64, j *job, object string) []byte {
	b = append(b, `{"id":"`...)
	b = appendID(b, j.wire.idPrefix, base, j.id)
	b = append(b, `","object":"`...)
	b = append(b, object...)
	b = append(b, `","created":`...)
	b = strconv.AppendInt(b, j.time, 10)
	b = append(b, `,"model":`...)
	b = append(b, j.model.quoted...)
	return append(b, `,"choices":[`...)
}

// answer generates a non-streamed answer and writes it whole.
func (s *Server) answer(w http.ResponseWriter, j *job, p *pacer, breakAt int,
	res *result) outcome {
	bp := getBuf()
	defer putBuf(bp)
	b := appendHead((*bp)[:0], s.idBase, j, j.wire.object)
	b = append(b, j.wire.answerOpen...)
	for i := 0; ; i++ {
		if i == breakAt {
			return outcomeBreak
		}
		if i == j.tokens {
			break
		}
		if !p.wait(i) {
			return outcomeCancelled
		}
		b = append(b, j.gen.next()...)
		res.completion++
	}
	b = append(b, j.wire.answerFinish...)
	b = append(b, j.finish...)
	b = append(b, j.wire.answerClose...)
	b = append(b, `,"usage":`...)
	b = appendUsage(b, j.prompt, j.tokens)
	b = append(b, '}')
	*bp = b

	h := w.Header()
	h["Content-Type"] = jsonType
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(http.StatusOK)
	res.status = http.StatusOK
	if _, err := w.Write(b); err != nil {
		return outcomeCancelled
	}
	res.finish = j.finish
	return outcomeCompleted
}

// stream generates a streamed answer, one SSE event per token, flushed
// as it is made. The status and headers are already sent.
func (s *Server) stream(w http.ResponseWriter, j *job, p *pacer, breakAt int,
	res *result) outcome {
	bp := getBuf()
	e := events{w: w, rc: http.NewResponseController(w)}
	defer func() {
		*bp = e.b // keep a grown buffer
		putBuf(bp)
	}()
	e.b = append((*bp)[:0], eventOpen...)
	e.b = appendHead(e.b, s.idBase, j, j.wire.chunkObject)
	e.head = len(e.b)

	for i := 0; ; i++ {
		if i == breakAt {
			return outcomeBreak
		}
		if i == j.tokens {
			break
		}
		if !p.wait(i) {
			return outcomeCancelled
		}
		// Like vLLM, the role event goes out with the first token, once
		// the prefill is done, not when the request is accepted.
		if i == 0 && j.wire.roleEvent != "" {
			if e.send(j.wire.roleEvent, "", "") != nil {
				return outcomeCancelled
			}
		}
		if e.send(j.wire.tokenOpen, j.gen.next(), j.wire.tokenClose) != nil {
			return outcomeCancelled
		}
		res.completion++
	}

	if e.send(j.wire.finishOpen, j.finish, j.wire.finishClose) != nil {
		return outcomeCancelled
	}
	if j.usage {
		// The usage event has an empty choices array; the head already
		// opened it.
		e.b = e.b[:e.head]
		e.b = append(e.b, `],"usage":`...)
		e.b = appendUsage(e.b, j.prompt, j.tokens)
		e.b = append(e.b, "}\n\n"...)
		if e.flush() != nil {
			return outcomeCancelled
		}
	}
	e.b = append(e.b[:0], eventDone...)
	if e.flush() != nil {
		return outcomeCancelled
	}
	res.finish = j.finish
	return outcomeCompleted
}

// events writes one stream's SSE events. b starts with the event
// prefix, "data: " and the head, which every event shares; head is its
// length.
type events struct {
	w    http.ResponseWriter
	rc   *http.ResponseController
	b    []byte
	head int
}

// send writes an event whose single choice is open+text+close, and
// flushes it.
func (e *events) send(open, text, close string) error {
	e.b = append(e.b[:e.head], open...)
	e.b = append(e.b, text...)
	e.b = append(e.b, close...)
	e.b = append(e.b, eventClose...)
	return e.flush()
}

// flush writes the buffer and pushes it to the client at once: an SSE
// client must see each event when it is made, not when a buffer fills.
// A writer that cannot flush (a wrapper hiding net/http's) still gets
// the stream, only later.
func (e *events) flush() error {
	if _, err := e.w.Write(e.b); err != nil {
		return err
	}
	if err := e.rc.Flush(); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	return nil
}

// pacer spaces a request's tokens: the time to first token before the
// first, the time between tokens before each other.
type pacer struct {
	first, between time.Duration
	// done is the client's context's Done channel; nil when nothing
	// needs to watch it (no waits and no stream to stop early).
	done  <-chan struct{}
	timer *time.Timer // made on the first real wait, then reused
}

// newPacer returns the pacer of one request. With no delays and no
// stream it does nothing at all, keeping the overhead path lean.
func newPacer(ctx context.Context, cfg *Config, stream bool) pacer {
	p := pacer{first: cfg.TimeToFirstToken, between: cfg.TimeBetweenTokens}
	if stream || p.first > 0 || p.between > 0 {
		p.done = ctx.Done()
	}
	return p
}

// wait blocks until token i is due, and reports whether the client is
// still there.
func (p *pacer) wait(i int) bool {
	d := p.between
	if i == 0 {
		d = p.first
	}
	if d <= 0 {
		if p.done == nil {
			return true
		}
		select {
		case <-p.done:
			return false
		default:
			return true
		}
	}
	if p.timer == nil {
		p.timer = time.NewTimer(d)
	} else {
		// Since Go 1.23 Reset needs no drain: a stopped or fired timer's
		// channel holds no stale tick.
		p.timer.Reset(d)
	}
	select {
	case <-p.timer.C:
		return true
	case <-p.done:
		return false
	}
}

// stop releases the timer, if any.
func (p *pacer) stop() {
	if p.timer != nil {
		p.timer.Stop()
	}
}
