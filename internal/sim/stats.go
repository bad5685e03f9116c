package sim

import (
	"context"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// Stats is a snapshot of a Server's counters, for tests and the failure
// harness. Every request to an inference endpoint (chat, completions,
// embeddings) counts once in Requests and, once it has ended, once in
// exactly one of Completed, Cancelled, Rejected, InjectedErrors,
// InjectedBreaks and InjectedHangs.
type Stats struct {
	// Requests counts inference requests received.
	Requests int64
	// Running is how many requests hold a MaxNumSeqs slot now.
	Running int64
	// Waiting is how many requests wait in the queue for a slot now.
	Waiting int64
	// Completed counts requests answered in full.
	Completed int64
	// Cancelled counts requests whose client went away, or whose server
	// closed, before the answer was complete.
	Cancelled int64
	// Rejected counts requests answered 4xx: invalid, unknown model,
	// missing API key, wrong method.
	Rejected int64
	// InjectedErrors counts requests answered 500 by Faults.ErrorRate.
	InjectedErrors int64
	// InjectedBreaks counts requests cut by Faults.BreakRate.
	InjectedBreaks int64
	// InjectedHangs counts requests hung by Faults.HangRate, from the
	// moment they start hanging, so that a test can see one in progress.
	InjectedHangs int64
	// PromptTokens counts prompt tokens of requests that started
	// running.
	PromptTokens int64
	// GenerationTokens counts tokens generated, including those of
	// requests cancelled or broken midway.
	GenerationTokens int64
}

// counters are a Server's live counters. Running and Waiting live in
// the admission queue.
type counters struct {
	requests, completed, cancelled, rejected      atomic.Int64
	injectedErrors, injectedBreaks, injectedHangs atomic.Int64
	promptTokens, generationTokens                atomic.Int64
	finishedStop, finishedLength                  atomic.Int64 // by finish reason
}

// Stats returns a snapshot of the server's counters. Each counter is
// read atomically, the set of them is not: under traffic a request may
// appear in Running and, a moment later, in Completed.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Requests:         c.requests.Load(),
		Running:          s.adm.running.Load(),
		Waiting:          s.adm.waiting.Load(),
		Completed:        c.completed.Load(),
		Cancelled:        c.cancelled.Load(),
		Rejected:         c.rejected.Load(),
		InjectedErrors:   c.injectedErrors.Load(),
		InjectedBreaks:   c.injectedBreaks.Load(),
		InjectedHangs:    c.injectedHangs.Load(),
		PromptTokens:     c.promptTokens.Load(),
		GenerationTokens: c.generationTokens.Load(),
	}
}

// endpoint names an inference endpoint in logs.
type endpoint string

const (
	endpointChat       endpoint = "chat_completions"
	endpointCompletion endpoint = "completions"
	endpointEmbedding  endpoint = "embeddings"
)

// outcome is how an inference request ended.
type outcome uint8

const (
	outcomeCompleted outcome = iota
	outcomeRejected
	outcomeCancelled
	outcomeError
	outcomeBreak
	outcomeHang
)

var outcomeNames = [...]string{
	outcomeCompleted: "completed",
	outcomeRejected:  "rejected",
	outcomeCancelled: "cancelled",
	outcomeError:     "injected_error",
	outcomeBreak:     "injected_break",
	outcomeHang:      "injected_hang",
}

// result is what an inference request did, filled in as it goes and
// accounted for once, when it ends (even by a panic, as a break does).
type result struct {
	endpoint   endpoint
	outcome    outcome
	status     int    // HTTP status, for logs; 0 when none was sent
	model      string // empty until resolved
	prompt     int    // prompt tokens
	completion int    // tokens generated
	finish     string // finish reason of a completed generation
	start      time.Time
}

// inference serves one request to an inference endpoint.
func (s *Server) inference(w http.ResponseWriter, r *http.Request, ep endpoint) {
	s.stats.requests.Add(1)
	res := result{endpoint: ep}
	ctx := r.Context()
	debug := s.debug(ctx)
	if debug {
		res.start = time.Now()
	}
	defer s.account(ctx, &res, debug)

	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeDetail(w, http.StatusMethodNotAllowed)
		res.outcome, res.status = outcomeRejected, http.StatusMethodNotAllowed
		return
	}
	switch ep {
	case endpointChat:
		s.serveChat(w, r, &res)
	case endpointCompletion:
		s.serveCompletion(w, r, &res)
	case endpointEmbedding:
		s.serveEmbedding(w, r, &res)
	}

	switch res.outcome {
	case outcomeBreak, outcomeCancelled, outcomeHang:
		// Abort the handler: net/http then drops the connection without
		// ending the response, so the client sees an unexpected EOF, or
		// no answer at all, never a clean end. Returning instead would
		// end a stream as if complete, or send an empty 200 for a request
		// the server itself cancelled (Running.Close). The deferred
		// account runs on the way out.
		panic(http.ErrAbortHandler)
	}
}

// account adds a finished request to the counters, and logs it.
func (s *Server) account(ctx context.Context, res *result, debug bool) {
	c := &s.stats
	switch res.outcome {
	case outcomeCompleted:
		c.completed.Add(1)
		switch res.finish {
		case finishStop:
			c.finishedStop.Add(1)
		case finishLength:
			c.finishedLength.Add(1)
		}
	case outcomeRejected:
		c.rejected.Add(1)
	case outcomeCancelled:
		c.cancelled.Add(1)
	case outcomeError:
		c.injectedErrors.Add(1)
	case outcomeBreak:
		c.injectedBreaks.Add(1)
	case outcomeHang:
		// Counted when the hang began.
	}
	if res.completion > 0 {
		c.generationTokens.Add(int64(res.completion))
	}
	if !debug {
		return
	}
	s.log.LogAttrs(ctx, slog.LevelDebug, "request finished",
		slog.String("endpoint", string(res.endpoint)),
		slog.String("model", res.model),
		slog.String("outcome", outcomeNames[res.outcome]),
		slog.Int("status", res.status),
		slog.Int("prompt_tokens", res.prompt),
		slog.Int("completion_tokens", res.completion),
		slog.Int64("duration_ms", time.Since(res.start).Milliseconds()))
}
