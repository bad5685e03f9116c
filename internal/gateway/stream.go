package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/registry"
)

// eventBufPool holds the read buffers of streams. A stream holds its
// buffer while it waits for the next event, so ten thousand open streams
// hold ten thousand buffers: they are small, as a chat chunk is a few
// hundred bytes, where a non-streaming answer gets copyBufPool's 32 KiB.
// 512 bytes hold one in a single read.
// A larger event is gathered over several reads.
var eventBufPool = sync.Pool{New: func() any { b := make([]byte, 512); return &b }}

// streamState is what the gateway knows of a stream it is relaying:
// enough to continue it on another node if its node dies.
type streamState struct {
	id, created []byte // of the first chunk, which every later chunk reuses
	text        []byte // the generated text so far
	tokens      int    // chunks that carried text: tokens, for engines that send one each
	unsafe      string // why the stream cannot be continued, if it cannot
	finished    bool   // a finish_reason was seen
	done        bool   // data: [DONE] was seen
	headersSent bool   // the status line went out

	// While continuing on another node:
	splicing     bool
	tokensBefore int // tokens produced before the current node took over
}

// pumpResult is how relaying one node's stream ended.
type pumpResult int

const (
	pumpComplete   pumpResult = iota // the stream ended normally
	pumpBroken                       // the node failed; the error says how
	pumpClientGone                   // the client went away
)

// relayStream copies a server-sent event stream to the client, event by
// event, flushing each as soon as it is complete, and continues the
// stream on another node if this one breaks.
func (g *Gateway) relayStream(x *exchange, node *registry.Node, resp *http.Response,
	cancel context.CancelFunc) (int, error) {
	st := &streamState{}
	res, err := g.pump(x, st, resp, cancel)
	switch {
	case res == pumpComplete:
		g.nodeAnswered(x, node, http.StatusOK)
		return http.StatusOK, nil
	case res == pumpClientGone:
		return statusClientClosed, nil
	case !st.headersSent:
		// Nothing reached the client: an ordinary retry.
		g.nodeFailed(x, node, err)
		return 0, &errBeforeFirstByte{err}
	}
	g.nodeFailed(x, node, err)
	g.log.Warn("node broke stream", "request_id", x.requestID, "model", x.model,
		"node_id", node.ID, "tokens", st.tokens, "error", err)
	return g.continueStream(x, st, node)
}

// pump relays one node's events. It writes the status line before the
// first event, and never writes part of an event, so a stream cut at any
// point can be continued without the client seeing a seam.
func (g *Gateway) pump(x *exchange, st *streamState, resp *http.Response,
	cancel context.CancelFunc) (pumpResult, error) {
	rc := http.NewResponseController(x.w)
	bufp := eventBufPool.Get().(*[]byte)
	defer eventBufPool.Put(bufp)
	buf := *bufp

	// A node silent for longer than Timeouts.Idle is taken for hung: the
	// timer cancels the request, which ends the read below.
	var idled atomic.Bool
	idle := time.AfterFunc(x.timeouts.Idle, func() { idled.Store(true); cancel() })
	defer idle.Stop()

	// Events are handled where they were read; only an event split
	// across reads is copied, into carry.
	var carry []byte
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			idle.Reset(x.timeouts.Idle)
			data := buf[:n]
			if len(carry) > 0 {
				carry = append(carry, data...)
				data = carry
			}
			wrote := false
			for {
				end := eventEnd(data)
				if end < 0 {
					break
				}
				if out := st.observe(data[:end]); out != nil {
					if !st.headersSent {
						copyResponseHeader(x.w.Header(), resp.Header)
						x.w.WriteHeader(resp.StatusCode)
						st.headersSent = true
					}
					if _, werr := x.w.Write(out); werr != nil {
						return pumpClientGone, werr
					}
					wrote = true
				}
				data = data[end:]
			}
			if wrote {
				if ferr := rc.Flush(); ferr != nil {
					return pumpClientGone, ferr
				}
			}
			carry = append(carry[:0], data...) // overlapping copy is safe
		}
		switch {
		case err == nil:
			continue
		case x.clientGone():
			return pumpClientGone, err
		case idled.Load():
			return pumpBroken, errIdle
		case errors.Is(err, io.EOF) && (st.done || st.finished) && len(carry) == 0:
			return pumpComplete, nil
		case errors.Is(err, io.EOF):
			return pumpBroken, io.ErrUnexpectedEOF
		default:
			return pumpBroken, err
		}
	}
}

// eventEnd returns the length of the first complete event in b, blank
// line included, or -1. Engines end events with "\n\n"; "\r\n\r\n" is
// accepted too.
func eventEnd(b []byte) int {
	i := bytes.Index(b, []byte("\n\n"))
	j := bytes.Index(b, []byte("\r\n\r\n"))
	switch {
	case i < 0 && j < 0:
		return -1
	case j < 0 || (i >= 0 && i < j):
		return i + 2
	default:
		return j + 4
	}
}

var (
	dataPrefix = []byte("data: ")
	doneData   = []byte("[DONE]")
)

// observe records what an event says and returns the bytes to send to the
// client for it: the event itself, a rewritten one while splicing, or nil
// to drop it.
func (st *streamState) observe(ev []byte) []byte {
	payload, ok := bytes.CutPrefix(ev, dataPrefix)
	if !ok {
		return ev // a comment or another field: pass it on
	}
	payload = bytes.TrimRight(payload, "\r\n")
	if bytes.Equal(payload, doneData) {
		st.done = true
		return ev
	}
	c, err := openai.ScanChunk(payload)
	if err != nil {
		st.unsafe = "unparsable chunk"
		return ev
	}
	switch {
	case c.ToolCalls:
		st.unsafe = "tool call"
	case c.OtherChoice:
		st.unsafe = "n > 1"
	case c.Error:
		st.unsafe = "engine error"
	}
	if st.id == nil && c.IDEnd > c.IDStart {
		st.id = bytes.Clone(payload[c.IDStart:c.IDEnd])
		st.created = bytes.Clone(payload[c.CreatedStart:c.CreatedEnd])
	}
	if len(c.Text) > 0 {
		st.text = append(st.text, c.Text...)
		st.tokens++
	}
	if c.Finished {
		st.finished = true
	}
	if !st.splicing {
		return ev
	}

	// The continuation: the client already has the role, and must see
	// the first node's id and creation time, and usage that counts the
	// whole answer.
	if c.HasRole && len(c.Text) == 0 && !c.Finished && c.UsageEnd == 0 {
		return nil
	}
	return st.rewrite(payload, c)
}

// rewrite returns a continuation chunk as an event of the original
// stream.
func (st *streamState) rewrite(payload []byte, c openai.Chunk) []byte {
	var edits [3]edit
	e := edits[:0]
	if c.IDEnd > c.IDStart && st.id != nil {
		e = append(e, edit{c.IDStart, c.IDEnd, st.id})
	}
	if c.CreatedEnd > c.CreatedStart && st.created != nil {
		e = append(e, edit{c.CreatedStart, c.CreatedEnd, st.created})
	}
	if c.UsageEnd > c.UsageStart {
		if u, err := openai.ParseUsage(payload[c.UsageStart:c.UsageEnd]); err == nil {
			// The continuation's prompt held the text produced before it.
			u.PromptTokens = max(u.PromptTokens-st.tokensBefore, 0)
			u.CompletionTokens += st.tokensBefore
			u.TotalTokens = u.PromptTokens + u.CompletionTokens
			b := fmt.Appendf(nil, `{"prompt_tokens":%d,"total_tokens":%d,"completion_tokens":%d}`,
				u.PromptTokens, u.TotalTokens, u.CompletionTokens)
			e = append(e, edit{c.UsageStart, c.UsageEnd, b})
		}
	}
	out := make([]byte, 0, len(payload)+64)
	out = append(out, dataPrefix...)
	at := 0
	for _, ed := range sortEdits(e) {
		out = append(out, payload[at:ed.start]...)
		out = append(out, ed.with...)
		at = ed.end
	}
	out = append(out, payload[at:]...)
	return append(out, "\n\n"...)
}

// edit replaces payload[start:end] with "with".
type edit struct {
	start, end int
	with       []byte
}

// sortEdits orders a few edits by position.
func sortEdits(e []edit) []edit {
	for i := 1; i < len(e); i++ {
		for j := i; j > 0 && e[j].start < e[j-1].start; j-- {
			e[j], e[j-1] = e[j-1], e[j]
		}
	}
	return e
}

// continueStream continues a broken stream on other nodes until one
// finishes it, the retries or the budget run out, or continuing is not
// safe. It always ends the client's stream: normally, or with an error
// event.
func (g *Gateway) continueStream(x *exchange, st *streamState,
	broken *registry.Node) (int, error) {
	for {
		reason := g.refuseFailover(x, st)
		if reason != "" {
			return g.endStream(x, st, reason), nil
		}
		body, err := continuation(x.r.URL.Path, x.body, st)
		if err != nil {
			return g.endStream(x, st, err.Error()), nil
		}
		node := g.policy.Pick(x.pool.Ready, &balancer.Request{Affinity: x.affinity,
			Exclude: x.exclude, Now: g.now()})
		if node == nil {
			return g.endStream(x, st, "no other node"), nil
		}
		x.failovers++
		x.exclude = append(x.exclude, node)
		x.node = node
		g.metrics.Failovers.WithLabelValues(x.model, broken.ID, "mid_stream").Inc()
		g.log.Info("continuing stream on another node", "request_id", x.requestID,
			"model", x.model, "from_node_id", broken.ID, "node_id", node.ID,
			"tokens", st.tokens)

		node.Acquire()
		res, err := g.continueOn(x, st, node, body)
		node.Release()
		switch res {
		case pumpComplete:
			g.nodeAnswered(x, node, http.StatusOK)
			return http.StatusOK, nil
		case pumpClientGone:
			return statusClientClosed, nil
		}
		g.nodeFailed(x, node, err)
		g.log.Warn("node broke stream", "request_id", x.requestID, "model", x.model,
			"node_id", node.ID, "tokens", st.tokens, "error", err)
		broken = node
	}
}

// continueOn sends a continuation to node and relays its stream.
func (g *Gateway) continueOn(x *exchange, st *streamState, node *registry.Node,
	body []byte) (pumpResult, error) {
	resp, cancel, err := g.send(x, node, body)
	if err != nil {
		if x.clientGone() {
			return pumpClientGone, err
		}
		return pumpBroken, err
	}
	defer cancel()
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !isEventStream(resp.Header.Get("Content-Type")) {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		return pumpBroken, fmt.Errorf("gateway: continuation answered %d", resp.StatusCode)
	}
	st.splicing, st.tokensBefore = true, st.tokens
	return g.pump(x, st, resp, cancel)
}

// refuseFailover says why a broken stream cannot be continued, or "".
func (g *Gateway) refuseFailover(x *exchange, st *streamState) string {
	switch {
	case !x.failover:
		return "failover off"
	case st.unsafe != "":
		return st.unsafe
	case st.finished:
		return "finished before [DONE]"
	case x.retries+x.failovers >= g.cfg.MaxRetries:
		return "retries exhausted"
	case len(x.exclude) >= len(x.pool.Ready):
		return "no other node"
	case x.ctx.Err() != nil:
		return "request timed out"
	case !g.budget.withdraw():
		return "retry budget exhausted"
	}
	return ""
}

// endStream ends a stream that could not be finished with an error event
// in OpenAI's shape, so no client takes a cut stream for a whole one.
func (g *Gateway) endStream(x *exchange, st *streamState, reason string) int {
	g.metrics.FailoverRefusals.WithLabelValues(x.model, reason).Inc()
	g.log.Warn("stream not continued", "request_id", x.requestID, "model", x.model,
		"reason", reason, "tokens", st.tokens)
	e := openai.BadGateway()
	e.Message = "The node serving this stream failed before it finished."
	_, _ = x.w.Write(e.StreamEvent())
	_ = http.NewResponseController(x.w).Flush()
	return http.StatusBadGateway
}
