package gateway

import (
	"context"
	"errors"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/upstream"
)

// Streams detached from net/http.
//
// While a handler runs, net/http's server holds, for its connection, the
// handler's goroutine with the server's frames beneath it, a goroutine
// reading ahead for the client going away, a 4 KiB reader, a 4 KiB
// writer and a 2 KiB chunking buffer: more than 30 KiB that an open
// stream keeps for the minutes it waits on tokens. With ten thousand
// streams open, that is most of the gateway's memory.
//
// So a stream request of an HTTP/1.1 client that keeps its connection is
// taken from the server (http.Hijacker) as soon as it is read and found
// valid, and relayed on a goroutine of its own: the handler returns,
// which frees all of the above. The relay writes the answer itself,
// chunked, an SSE stream or an error alike; until the first event, a
// small watcher reads the connection to notice a client that leaves
// while the node prepares its answer, as net/http would; after it, a
// client that leaves is noticed at the next event written, at most one
// token later. When the answer is over, the connection goes back to the
// server through the Listener the server accepts from, and the client's
// keep-alive connection carries on as if the server had kept it.

// DefaultReturnIdleTimeout is how long a connection given back after a
// stream may wait for the client's next request, when NewListener is
// given no timeout.
const DefaultReturnIdleTimeout = 120 * time.Second

// Listener is the public listener of a server whose gateway detaches
// streams: it accepts new connections and, besides, hands the server the
// connections of finished streams.
type Listener struct {
	net.Listener
	idle time.Duration

	accepted chan accepted
	back     chan net.Conn
	done     chan struct{}
	close    sync.Once

	streams sync.Map // *detachedStream → struct{}: running streams
	running atomic.Int64
	waiting sync.Map // net.Conn → struct{}: given back, awaiting a request
}

type accepted struct {
	c   net.Conn
	err error
}

// NewListener wraps l. A connection given back after a stream is closed
// when its client sends nothing for idle; zero means
// DefaultReturnIdleTimeout. The server's own IdleTimeout should be the
// same.
func NewListener(l net.Listener, idle time.Duration) *Listener {
	if idle <= 0 {
		idle = DefaultReturnIdleTimeout
	}
	dl := &Listener{Listener: l, idle: idle, accepted: make(chan accepted),
		back: make(chan net.Conn), done: make(chan struct{})}
	go dl.acceptLoop()
	return dl
}

func (l *Listener) acceptLoop() {
	for {
		c, err := l.Listener.Accept()
		select {
		case l.accepted <- accepted{c, err}:
		case <-l.done:
			if c != nil {
				_ = c.Close()
			}
			return
		}
		if errors.Is(err, net.ErrClosed) {
			return
		}
	}
}

// Accept returns the next new or given-back connection.
func (l *Listener) Accept() (net.Conn, error) {
	select {
	case a := <-l.accepted:
		return a.c, a.err
	case c := <-l.back:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

// Close stops accepting. Connections given back and waiting for their
// client's next request are closed, as a server's Shutdown closes its
// idle connections; the streams running are not affected (see Wait and
// CloseStreams).
func (l *Listener) Close() error {
	err := net.ErrClosed
	l.close.Do(func() {
		close(l.done)
		err = l.Listener.Close()
		l.waiting.Range(func(k, _ any) bool {
			_ = k.(net.Conn).SetReadDeadline(aLongTimeAgo)
			return true
		})
	})
	return err
}

// Streams returns how many detached streams are running.
func (l *Listener) Streams() int { return int(l.running.Load()) }

// Wait returns once no detached stream is running, or with ctx's error.
// The server's Shutdown does not wait for them, as it no longer knows
// their connections.
func (l *Listener) Wait(ctx context.Context) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for l.running.Load() > 0 {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-tick.C:
		}
	}
	return nil
}

// CloseStreams closes the connections of the running streams; their
// relays end at their next write.
func (l *Listener) CloseStreams() {
	l.streams.Range(func(k, _ any) bool {
		_ = k.(*detachedStream).conn.Close()
		return true
	})
}

// giveBack hands c, with the bytes of a next request already read, to
// the server. Without such bytes, it first waits for the client to send
// some, as the server would wait on a kept-alive connection.
func (l *Listener) giveBack(c net.Conn, rest []byte) {
	if len(rest) > 0 {
		l.deliver(&replayConn{Conn: c, rest: rest})
		return
	}
	go func() {
		l.waiting.Store(c, struct{}{})
		defer l.waiting.Delete(c)
		var b [1]byte
		_ = c.SetReadDeadline(time.Now().Add(l.idle))
		select {
		case <-l.done: // closed before the deadline above was set
			_ = c.Close()
			return
		default:
		}
		n, err := c.Read(b[:])
		if err != nil || n == 0 {
			_ = c.Close()
			return
		}
		_ = c.SetReadDeadline(time.Time{})
		l.deliver(&replayConn{Conn: c, rest: []byte{b[0]}})
	}()
}

func (l *Listener) deliver(c net.Conn) {
	select {
	case l.back <- c:
	case <-l.done:
		_ = c.Close()
	}
}

// replayConn is a connection whose first bytes were read already.
type replayConn struct {
	net.Conn
	rest []byte
}

func (c *replayConn) Read(p []byte) (int, error) {
	if len(c.rest) > 0 {
		n := copy(p, c.rest)
		c.rest = c.rest[n:]
		return n, nil
	}
	return c.Conn.Read(p)
}

// DetachedStreams returns how many streams run detached from the server.
func (g *Gateway) DetachedStreams() int {
	if l := g.detach.Load(); l != nil {
		return l.Streams()
	}
	return 0
}

// DetachStreams makes the gateway detach the streams of HTTP/1.1
// clients from the server that accepts from l. Call it before serving.
func (g *Gateway) DetachStreams(l *Listener) { g.detach.Store(l) }

// mayDetach reports whether a stream for r may be detached: the gateway
// serves through a Listener, and r comes from an HTTP/1.1 client that
// keeps its connection.
func (g *Gateway) mayDetach(r *http.Request) bool {
	return g.detach.Load() != nil && r.ProtoMajor == 1 && r.ProtoMinor >= 1 && !r.Close
}

// serveDetached takes x's connection from the server and relays the
// stream on a goroutine of its own. It reports false, having changed
// nothing, when the connection cannot be taken.
func (g *Gateway) serveDetached(x *exchange, start time.Time) bool {
	l := g.detach.Load()
	conn, rw, err := http.NewResponseController(x.w).Hijack()
	if err != nil {
		return false // not an HTTP/1 connection of net/http's
	}
	// net/http leaves the header map of a hijacked answer alone.
	d := &detachedStream{l: l, conn: conn, header: x.w.Header(),
		watchDone: make(chan struct{})}
	// A client may have sent its next request already; those bytes must
	// reach the server with the connection.
	if n := rw.Reader.Buffered(); n > 0 {
		b, _ := rw.Reader.Peek(n)
		d.rest = append([]byte(nil), b...)
	}
	_ = conn.SetDeadline(time.Time{})
	l.streams.Store(d, struct{}{})
	l.running.Add(1)

	// The exchange outlives the handler, whose context net/http cancels
	// on return; the watcher stands in for it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(x.r.Context()),
		x.timeouts.Total)
	x.ctx, x.w, x.detached = ctx, d, d
	// The request's body reader holds the server's connection state and
	// buffers; the relay needs none of it.
	x.r = detachedRequest(x.r)
	g.budget.request()
	d.watching.Store(true)
	go d.watch(cancel)
	go func() {
		defer cancel()
		defer func() {
			if p := recover(); p != nil {
				if p != http.ErrAbortHandler {
					g.log.Error("stream relay panicked", "request_id", x.requestID,
						"panic", p, "stack", string(debug.Stack()))
				}
				d.fail(errRelayAborted)
			}
			d.finish()
		}()
		g.logRequest(x, g.proxy(x), start)
	}()
	return true
}

// errRelayAborted ends a detached stream whose relay panicked: the
// connection is closed so the client cannot take a cut answer for whole.
var errRelayAborted = errors.New("gateway: stream relay aborted")

// detachedRequest is what a detached stream keeps of r: what a
// continuation on another node is built from.
func detachedRequest(r *http.Request) *http.Request {
	return &http.Request{Method: r.Method, URL: r.URL, Proto: r.Proto,
		ProtoMajor: r.ProtoMajor, ProtoMinor: r.ProtoMinor, Header: r.Header,
		Host: r.Host, RemoteAddr: r.RemoteAddr, RequestURI: r.RequestURI}
}

// detachedStream is the ResponseWriter of a detached answer. The head goes
// out with the first Write, and every Write at once as one chunk.
type detachedStream struct {
	l      *Listener
	conn   net.Conn
	rest   []byte      // bytes of the client's next request, read already
	header http.Header // nil once the head is out
	status int
	head   bool  // the head is out
	err    error // the first write error; the connection is then closed

	gone      atomic.Bool   // the watcher saw the client leave
	watching  atomic.Bool   // the watcher is to keep reading
	watchDone chan struct{} // closed when the watcher has returned
}

// watch reads the client's connection until the first event is written
// (stopWatch), to tell a client that leaves; cancel then ends the
// exchange. A byte that arrives meanwhile is the start of the client's
// next request, and is kept for the server.
func (d *detachedStream) watch(cancel context.CancelFunc) {
	defer close(d.watchDone)
	var b [1]byte
	n, err := d.conn.Read(b[:])
	switch {
	case n == 1:
		d.rest = append(d.rest, b[0])
	case err != nil && d.watching.Load():
		d.gone.Store(true)
		cancel()
	}
}

// stopWatch tells the watcher to stop and unblocks its read. It does not
// wait: writes may go on while the read returns; finish waits.
func (d *detachedStream) stopWatch() {
	if d.watching.Swap(false) {
		_ = d.conn.SetReadDeadline(aLongTimeAgo)
	}
}

// endWatch stops the watcher and waits for it, so that the connection's
// reads are free again.
func (d *detachedStream) endWatch() {
	d.stopWatch()
	<-d.watchDone
	_ = d.conn.SetReadDeadline(time.Time{})
}

// aLongTimeAgo is a deadline that makes a blocked read return at once.
var aLongTimeAgo = time.Unix(1, 0)

// clientGone reports whether the client of a detached stream left.
func (d *detachedStream) clientGone() bool { return d.gone.Load() || d.err != nil }

// fail records err as the stream's end: the connection is closed.
func (d *detachedStream) fail(err error) {
	if d.err == nil {
		d.err = err
	}
}

// Header returns the headers of the answer; they are sent with the head.
// Once it is out, a new map is returned, whose changes are lost.
func (d *detachedStream) Header() http.Header {
	if d.header == nil {
		return http.Header{}
	}
	return d.header
}

// WriteHeader sets the status of the head, sent with the first Write.
func (d *detachedStream) WriteHeader(status int) {
	if !d.head && d.status == 0 && status >= 200 {
		d.status = status
	}
}

// writeHead sends the status line and headers of a chunked answer.
func (d *detachedStream) writeHead() error {
	d.stopWatch()
	d.head = true
	if d.status == 0 {
		d.status = http.StatusOK
	}
	bp := chunkBufPool.Get().(*[]byte)
	defer putChunkBuf(bp)
	b := (*bp)[:0]
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(d.status), 10)
	b = append(b, ' ')
	b = append(b, http.StatusText(d.status)...)
	b = append(b, "\r\n"...)
	for k, vv := range d.header {
		if k == "Content-Length" || k == "Transfer-Encoding" || k == "Date" ||
			k == "Connection" {
			continue
		}
		for _, v := range vv {
			if !upstream.ValidHeader(k, v) {
				continue
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = append(b, v...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Date: "...)
	b = time.Now().UTC().AppendFormat(b, http.TimeFormat)
	b = append(b, "\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	*bp = b
	d.header = nil // an open stream need not keep it
	_, err := d.conn.Write(b)
	return err
}

// chunkBufPool holds the buffers heads and chunks are framed in, for as
// long as one write, so that an open stream holds none while it waits.
var chunkBufPool = sync.Pool{New: func() any { b := make([]byte, 0, 1<<10); return &b }}

func putChunkBuf(bp *[]byte) {
	if cap(*bp) <= 16<<10 {
		chunkBufPool.Put(bp)
	}
}

// Write sends p as one chunk, after the head if it is not out yet.
func (d *detachedStream) Write(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if !d.head {
		if err := d.writeHead(); err != nil {
			d.err = err
			return 0, err
		}
	}
	if len(p) == 0 {
		return 0, nil // an empty chunk would end the answer
	}
	bp := chunkBufPool.Get().(*[]byte)
	defer putChunkBuf(bp)
	b := strconv.AppendInt((*bp)[:0], int64(len(p)), 16)
	b = append(b, "\r\n"...)
	b = append(b, p...)
	b = append(b, "\r\n"...)
	*bp = b
	if _, err := d.conn.Write(b); err != nil {
		d.err = err
		return 0, err
	}
	return len(p), nil
}

// FlushError reports the write error, if any: writes are not buffered.
func (d *detachedStream) FlushError() error { return d.err }

// finish ends the chunked answer and gives the connection back, or
// closes it when the answer could not be sent whole.
func (d *detachedStream) finish() {
	defer func() {
		d.l.streams.Delete(d)
		d.l.running.Add(-1)
	}()
	if !d.head && d.err == nil && !d.gone.Load() {
		d.err = d.writeHead()
	}
	d.endWatch()
	if d.err == nil && !d.gone.Load() {
		_, d.err = d.conn.Write([]byte("0\r\n\r\n"))
	}
	if d.err != nil || d.gone.Load() {
		_ = d.conn.Close()
		return
	}
	d.l.giveBack(d.conn, d.rest)
}
