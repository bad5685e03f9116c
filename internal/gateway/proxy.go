package gateway

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"sync"
	"time"

	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/registry"
)

// copyBufPool holds buffers for copying answers to clients. 32 KiB holds
// a whole non-streaming answer of typical size in one read.
var copyBufPool = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// exchange is one client request on its way through one or more nodes.
type exchange struct {
	w         http.ResponseWriter
	r         *http.Request
	ctx       context.Context // the client's, bounded by Timeouts.Total
	body      []byte
	fields    openai.Fields
	model     string
	pool      *registry.Pool
	key       *apikey.Key
	requestID string
	timeouts  Timeouts
	affinity  uint64
	failover  bool // a broken stream may be continued elsewhere

	tried     [4]*registry.Node
	exclude   []*registry.Node // nodes tried, backed by tried
	node      *registry.Node   // the node of the current attempt
	retries   int
	failovers int
	// detached is the writer of a stream detached from net/http (see
	// detach.go), which w then is too.
	detached *detachedStream
}

// clientGone reports whether the client went away, which is never the
// node's fault: its context says so until the stream is detached, its
// connection after.
func (x *exchange) clientGone() bool {
	if x.detached != nil {
		return x.detached.clientGone()
	}
	return x.r.Context().Err() == context.Canceled
}

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

	// The current snapshot says who serves the model. A key not allowed
	// the model gets the same answer as a model that does not exist.
	pool := g.registry.Snapshot().Pool(fields.Model)
	if pool == nil || !key.Allows(fields.Model) {
		openai.ModelNotFound(string(fields.Model)).Write(w)
		return
	}
	if len(pool.Ready) == 0 {
		openai.NoCapacity(pool.Model, g.cfg.RetryAfter).Write(w)
		return
	}

	x := &exchange{w: w, r: r, body: body, fields: fields, model: pool.Model, pool: pool,
		key: key, requestID: requestID, timeouts: g.cfg.timeouts(pool.Model),
		failover: !g.cfg.DisableFailover && r.Header.Get("X-CrossLogic-Failover") != "off"}
	x.exclude = x.tried[:0]
	x.affinity = g.affinity(r, body)
	if fields.Stream && g.mayDetach(r) && g.serveDetached(x, start) {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), x.timeouts.Total)
	defer cancel()
	x.ctx = ctx
	g.budget.request()
	g.logRequest(x, g.proxy(x), start)
}

// logRequest logs a finished request at Debug.
func (g *Gateway) logRequest(x *exchange, status int, start time.Time) {
	ctx := context.Background() // the client's may be over
	if !g.log.Enabled(ctx, slog.LevelDebug) {
		return
	}
	nodeID := ""
	if x.node != nil {
		nodeID = x.node.ID
	}
	g.log.LogAttrs(ctx, slog.LevelDebug, "request",
		slog.String("request_id", x.requestID),
		slog.String("key_id", x.key.ID),
		slog.String("model", x.pool.Model),
		slog.String("node_id", nodeID),
		slog.String("path", x.r.URL.Path),
		slog.Bool("stream", x.fields.Stream),
		slog.Int("status", status),
		slog.Int("retries", x.retries),
		slog.Int("failovers", x.failovers),
		slog.Float64("duration_ms", float64(time.Since(start).Microseconds())/1e3))
}

// affinitySeed keys the affinity hash; fixed per process, which is all
// affinity needs.
var affinitySeed = maphash.MakeSeed()

// affinityPrefix is how much of the prompt decides prefix affinity: about
// a system prompt's worth.
const affinityPrefix = 512

// affinity returns the request's affinity hash: its X-Session-Id when it
// has one, else, with PrefixAffinity, the first bytes of its messages or
// prompt; zero for none.
func (g *Gateway) affinity(r *http.Request, body []byte) uint64 {
	if sid := r.Header.Get("X-Session-Id"); sid != "" {
		return maphash.String(affinitySeed, sid) | 1
	}
	if !g.cfg.PrefixAffinity {
		return 0
	}
	i := bytes.Index(body, []byte(`"messages"`))
	if i < 0 {
		if i = bytes.Index(body, []byte(`"prompt"`)); i < 0 {
			return 0
		}
	}
	end := min(len(body), i+affinityPrefix)
	return maphash.Bytes(affinitySeed, body[i:end]) | 1
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

// errBeforeFirstByte wraps a failure that happened before any byte of the
// answer reached the client, which makes the request safe to retry.
type errBeforeFirstByte struct{ err error }

func (e *errBeforeFirstByte) Error() string { return e.err.Error() }
func (e *errBeforeFirstByte) Unwrap() error { return e.err }

// errIdle reports a node that stayed silent longer than Timeouts.Idle.
var errIdle = errors.New("gateway: node idle too long")

// errFirstByte reports a node that did not answer within
// Timeouts.FirstByte.
var errFirstByte = errors.New("gateway: no answer from node in time")

// proxy sends the request to nodes until one answers, retrying on another
// node a failure that happened before any byte reached the client. It
// returns the status for the log.
func (g *Gateway) proxy(x *exchange) int {
	var last error
	for {
		node := g.policy.Pick(x.pool.Ready, &balancer.Request{Affinity: x.affinity,
			Exclude: x.exclude, Now: g.now()})
		if node == nil {
			break
		}
		x.node = node
		x.exclude = append(x.exclude, node)

		node.Acquire()
		status, err := g.attempt(x, node)
		node.Release()
		if err == nil {
			return status
		}
		if x.clientGone() {
			return statusClientClosed
		}
		var before *errBeforeFirstByte
		if !errors.As(err, &before) {
			return status // the answer had begun; attempt ended it
		}
		last = before.err
		if !g.mayRetry(x) {
			break
		}
		x.retries++
		g.metrics.Retries.WithLabelValues(x.model, node.ID).Inc()
		g.metrics.Failovers.WithLabelValues(x.model, node.ID, "before_first_byte").Inc()
		g.log.Info("retrying on another node", "request_id", x.requestID,
			"model", x.model, "node_id", node.ID, "attempt", x.retries+1, "error", last)
	}

	e := openai.NoCapacity(x.model, g.cfg.RetryAfter)
	switch {
	case last == nil:
	case isTimeout(last):
		e = openai.GatewayTimeout()
	default:
		e = openai.BadGateway()
	}
	e.Write(x.w)
	return e.Status
}

// mayRetry reports whether the request may go to another node, taking a
// token from the retry budget when it may.
func (g *Gateway) mayRetry(x *exchange) bool {
	return x.retries+x.failovers < g.cfg.MaxRetries &&
		len(x.exclude) < len(x.pool.Ready) &&
		x.ctx.Err() == nil &&
		g.budget.withdraw()
}

// attempt sends the request to one node and relays its answer. It returns
// an *errBeforeFirstByte when it failed before writing anything to the
// client, so the caller may try another node.
func (g *Gateway) attempt(x *exchange, node *registry.Node) (int, error) {
	resp, cancel, err := g.send(x, node, x.body)
	if err != nil {
		g.nodeFailed(x, node, err)
		return 0, &errBeforeFirstByte{err}
	}
	defer cancel()
	defer resp.Body.Close()

	// An engine that answers 502 or 503 is overloaded or shutting down;
	// another node may well succeed. A 4xx is the request's fault and is
	// never retried; a 500 may be too, so it is passed on.
	if (resp.StatusCode == http.StatusBadGateway ||
		resp.StatusCode == http.StatusServiceUnavailable) &&
		len(x.exclude) < len(x.pool.Ready) {
		err := fmt.Errorf("gateway: node answered %d", resp.StatusCode)
		g.nodeFailed(x, node, err)
		return 0, &errBeforeFirstByte{err}
	}

	if isEventStream(resp.Header.Get("Content-Type")) && resp.StatusCode == http.StatusOK {
		return g.relayStream(x, node, resp, cancel)
	}
	return g.relay(x, node, resp, cancel)
}

// send makes one request to node with body. The request is bounded by the
// exchange's context and by Timeouts.FirstByte until the status line
// arrives; the returned cancel ends it.
func (g *Gateway) send(x *exchange, node *registry.Node,
	body []byte) (*http.Response, context.CancelFunc, error) {
	// Engines send a stream's status line as soon as they accept it, so
	// silence before it is silence before the first event, which Idle
	// bounds; FirstByte, sized for a whole answer, would let a wedged
	// node hold a stream for minutes.
	wait := x.timeouts.FirstByte
	if x.fields.Stream {
		wait = min(wait, x.timeouts.Idle)
	}
	// The transport bounds every request by ResponseHeaderTimeout
	// already; a timer of our own is needed only for a shorter wait. The
	// attempt needs a context of its own only for such a timer or for a
	// stream's idle timer; otherwise the exchange's will do, and the
	// request path is spared a context, a cancel and their registration.
	ownTimer := wait < g.cfg.ResponseHeaderTimeout
	ctx, cancel := x.ctx, context.CancelCauseFunc(noCancel)
	end := func() {} // what the caller calls when done with the answer
	if ownTimer || x.fields.Stream {
		ctx, cancel = context.WithCancelCause(x.ctx)
		end = func() { cancel(nil) }
	}
	out := nodeRequest(ctx, node, x.r.URL.Path, body)
	copyRequestHeader(out.Header, x.r.Header)
	out.Header.Set("X-Request-Id", x.requestID)
	if a := node.Authorization(); a != "" {
		out.Header.Set("Authorization", a)
	}

	rt := g.transport
	if t := node.Transport(); t != nil {
		rt = t // an agent node: mTLS that checks the node's identity
	}
	if x.fields.Stream {
		if t := node.StreamTransport(); t != nil {
			rt = t
		}
	}
	var timer *time.Timer
	if ownTimer {
		timer = time.AfterFunc(wait, func() { cancel(errFirstByte) })
	}
	resp, err := rt.RoundTrip(out)
	if timer != nil {
		timer.Stop()
	}
	if err != nil {
		if cause := context.Cause(ctx); errors.Is(cause, errFirstByte) {
			err = cause
		}
		cancel(nil)
		return nil, nil, err
	}
	return resp, end, nil
}

// noCancel stands for the cancel of an attempt that has no context of its
// own.
func noCancel(error) {}

// nodeRequest returns a POST of body to path on node. It is built from
// the node's parsed URL rather than by parsing one per attempt.
func nodeRequest(ctx context.Context, node *registry.Node, path string,
	body []byte) *http.Request {
	u := new(url.URL)
	*u = *node.URL
	u.Path, u.RawPath = node.URL.Path+path, ""
	r := &http.Request{Method: http.MethodPost, URL: u, Host: u.Host,
		Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: make(http.Header, 8), ContentLength: int64(len(body)),
		Body: requestBody{bytes.NewReader(body)},
		GetBody: func() (io.ReadCloser, error) {
			return requestBody{bytes.NewReader(body)}, nil
		}}
	return r.WithContext(ctx)
}

// requestBody is a request body held in memory.
type requestBody struct{ *bytes.Reader }

func (requestBody) Close() error { return nil }

// relay copies a non-streaming answer. The status line is written only
// once the first bytes of the body have arrived, so a node that dies
// between its status line and its body is still retried.
func (g *Gateway) relay(x *exchange, node *registry.Node, resp *http.Response,
	cancel context.CancelFunc) (int, error) {
	bufp := copyBufPool.Get().(*[]byte)
	defer copyBufPool.Put(bufp)
	buf := *bufp

	n, err := io.ReadAtLeast(resp.Body, buf, 1)
	if err != nil && !errors.Is(err, io.EOF) {
		if x.clientGone() {
			return statusClientClosed, nil
		}
		g.nodeFailed(x, node, err)
		return 0, &errBeforeFirstByte{err}
	}
	g.nodeAnswered(x, node, resp.StatusCode)

	copyResponseHeader(x.w.Header(), resp.Header)
	x.w.WriteHeader(resp.StatusCode)
	if n > 0 {
		if _, werr := x.w.Write(buf[:n]); werr != nil {
			return statusClientClosed, nil
		}
	}
	if errors.Is(err, io.EOF) {
		return resp.StatusCode, nil
	}
	if _, err := io.CopyBuffer(writerOnly{x.w}, resp.Body, buf); err != nil {
		if x.clientGone() {
			return statusClientClosed, nil
		}
		// The status line is out: the only honest signal left is to
		// break the connection so the client cannot take a truncated
		// body for a whole one.
		g.log.Warn("node failed mid-answer", "request_id", x.requestID,
			"node_id", node.ID, "error", err)
		g.nodeFailed(x, node, err)
		panic(http.ErrAbortHandler)
	}
	return resp.StatusCode, nil
}

// nodeAnswered records an answer's status for outlier detection: a 5xx
// counts against the node, anything else for it.
func (g *Gateway) nodeAnswered(x *exchange, node *registry.Node, status int) {
	if status >= 500 {
		g.nodeFailed(x, node, fmt.Errorf("gateway: node answered %d", status))
		return
	}
	if node.Succeeded() {
		g.metrics.Readmissions.WithLabelValues(x.model, node.ID).Inc()
		g.log.Info("node re-admitted", "node_id", node.ID, "model", x.model)
	}
}

// nodeFailed records a failure of node for outlier detection. A failure
// caused by the client going away is not the node's and is not counted.
func (g *Gateway) nodeFailed(x *exchange, node *registry.Node, err error) {
	if x.clientGone() {
		return
	}
	if until, ejected := node.Failed(g.now(), g.cfg.Outlier); ejected {
		g.metrics.Ejections.WithLabelValues(x.model, node.ID).Inc()
		g.log.Info("node ejected", "node_id", node.ID, "model", x.model,
			"until", until, "error", err)
	}
}

// isTimeout reports whether err is a timeout of any kind: dialing, the
// TLS handshake, the wait for the status line or between events.
func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) ||
		errors.Is(err, errFirstByte) || errors.Is(err, errIdle) {
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
