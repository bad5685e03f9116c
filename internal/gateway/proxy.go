package gateway

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/registry"
)

// copyBufPool holds buffers for copying answers to clients. 32 KiB holds
// a whole non-streaming answer of typical size in one read.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// serveInference handles the three POST endpoints that run a model.
func (g *Gateway) serveInference(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	requestID := setRequestID(w, r)
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		openai.MethodNotAllowed(r.Method, r.URL.Path).Write(w)
		return
	}
	key, ok := g.authenticate(w, r, requestID)
	if !ok {
		return
	}

	// Read the body once; Scan finds the model in the same bytes that are
	// forwarded.
	body, apiErr := g.readBody(w, r)
	if apiErr != nil {
		apiErr.Write(w)
		return
	}
	fields, err := openai.Scan(body)
	switch {
	case errors.Is(err, openai.ErrNotObject):
		openai.InvalidRequest("", "The request body must be a JSON object.").Write(w)
		return
	case err != nil:
		openai.InvalidRequest("", "We could not parse the JSON body of your request. "+
			"The OpenAI API expects a JSON payload.").Write(w)
		return
	case !fields.HasModel:
		openai.InvalidRequest("model", "You must provide a model parameter.").Write(w)
		return
	case fields.Model == nil:
		openai.InvalidRequest("model", "The model parameter must be a string.").Write(w)
		return
	}

	// Choose a node from the current snapshot. A key not allowed the
	// model gets the same answer as a model that does not exist.
	pool := g.registry.Snapshot().Pool(fields.Model)
	if pool == nil || !key.Allows(fields.Model) {
		openai.ModelNotFound(string(fields.Model)).Write(w)
		return
	}
	if len(pool.Ready) == 0 {
		openai.NoCapacity(pool.Model, g.cfg.RetryAfter).Write(w)
		return
	}
	node := g.policy.Pick(pool.Ready)

	node.Acquire()
	status := g.forward(w, r, node, body, requestID)
	node.Release()

	if g.log.Enabled(r.Context(), slog.LevelDebug) {
		g.log.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("request_id", requestID),
			slog.String("key_id", key.ID),
			slog.String("model", pool.Model),
			slog.String("node_id", node.ID),
			slog.String("path", r.URL.Path),
			slog.Bool("stream", fields.Stream),
			slog.Int("status", status),
			slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1e3))
	}
}

// readBody reads the whole request body within the configured limit.
func (g *Gateway) readBody(w http.ResponseWriter, r *http.Request) ([]byte, *openai.Error) {
	limit := g.cfg.MaxBodyBytes
	if r.ContentLength > limit {
		return nil, openai.BodyTooLarge(limit)
	}
	size := r.ContentLength
	if size < 0 {
		size = 4 << 10
	}
	// One spare byte lets the read see EOF without growing the slice.
	buf := bytes.NewBuffer(make([]byte, 0, size+1))
	_, err := buf.ReadFrom(http.MaxBytesReader(w, r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		return nil, openai.BodyTooLarge(limit)
	case err != nil:
		return nil, openai.InvalidRequest("", "The request body could not be read.")
	}
	return buf.Bytes(), nil
}

// statusClientClosed is logged when the client went away before the
// answer was complete, after nginx's convention; it is never sent.
const statusClientClosed = 499

// forward sends the request to node and copies the answer back. It returns
// the status for the log.
func (g *Gateway) forward(w http.ResponseWriter, r *http.Request, node *registry.Node,
	body []byte, requestID string) int {
	// The client's context: a client that goes away cancels the request to
	// the node at once, so the engine stops generating.
	ctx := r.Context()
	out, err := http.NewRequestWithContext(ctx, http.MethodPost,
		node.BaseURL+r.URL.Path, bytes.NewReader(body))
	if err != nil {
		openai.BadGateway().Write(w)
		return http.StatusBadGateway
	}
	copyRequestHeader(out.Header, r.Header)
	out.Header.Set("X-Request-Id", requestID)
	if a := node.Authorization(); a != "" {
		out.Header.Set("Authorization", a)
	}

	rt := g.transport
	if t := node.Transport(); t != nil {
		rt = t // an agent node: mTLS that checks the node's identity
	}
	resp, err := rt.RoundTrip(out)
	if err != nil {
		return g.upstreamFailed(w, r, node, requestID, err)
	}
	defer resp.Body.Close()

	h := w.Header()
	copyResponseHeader(h, resp.Header)
	w.WriteHeader(resp.StatusCode)

	if isEventStream(resp.Header.Get("Content-Type")) {
		return g.copyStream(w, r, resp, node, requestID)
	}
	bufp := copyBufPool.Get().(*[]byte)
	_, err = io.CopyBuffer(writerOnly{w}, resp.Body, *bufp)
	copyBufPool.Put(bufp)
	if err != nil {
		if clientGone(r) {
			return statusClientClosed
		}
		// The status line is out: the only honest signal left is to
		// break the connection so the client cannot take a truncated
		// body for a whole one.
		g.log.Warn("node failed mid-answer", "request_id", requestID,
			"node_id", node.ID, "error", err)
		panic(http.ErrAbortHandler)
	}
	return resp.StatusCode
}

// copyStream copies a server-sent event stream, flushing after every read
// so each event reaches the client as soon as the node sent it.
func (g *Gateway) copyStream(w http.ResponseWriter, r *http.Request, resp *http.Response,
	node *registry.Node, requestID string) int {
	rc := http.NewResponseController(w)
	_ = rc.Flush() // the status line and headers go out now
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	buf := *bufp
	for {
		n, err := resp.Body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return statusClientClosed
			}
			if ferr := rc.Flush(); ferr != nil {
				return statusClientClosed
			}
		}
		switch {
		case err == nil:
			continue
		case err == io.EOF:
			return resp.StatusCode
		case clientGone(r):
			return statusClientClosed
		}

		// The node broke the stream. The client gets an error event in
		// place of the rest, so no client mistakes a cut stream for a
		// finished one.
		g.log.Warn("node broke stream", "request_id", requestID,
			"node_id", node.ID, "error", err)
		e := openai.BadGateway()
		e.Message = "The node serving this stream failed before it finished."
		_, _ = w.Write(e.StreamEvent())
		_ = rc.Flush()
		return http.StatusBadGateway
	}
}

// upstreamFailed answers a request whose node could not be reached or did
// not answer, and returns the status for the log.
func (g *Gateway) upstreamFailed(w http.ResponseWriter, r *http.Request,
	node *registry.Node, requestID string, err error) int {
	if clientGone(r) {
		return statusClientClosed
	}
	e := openai.BadGateway()
	if isTimeout(err) {
		e = openai.GatewayTimeout()
	}
	g.log.Warn("node request failed", "request_id", requestID, "node_id", node.ID,
		"status", e.Status, "error", err)
	e.Write(w)
	return e.Status
}

// isTimeout reports whether err is a timeout of any kind: dialing, the
// TLS handshake or the wait for the status line.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writerOnly hides every method of the ResponseWriter but Write, so that
// io.CopyBuffer uses the buffer given to it instead of ReadFrom's own.
type writerOnly struct{ io.Writer }

func isEventStream(contentType string) bool {
	const sse = "text/event-stream"
	return len(contentType) >= len(sse) && contentType[:len(sse)] == sse
}
