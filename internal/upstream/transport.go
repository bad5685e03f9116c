// Package upstream is the gateway's HTTP/1.1 client for nodes.
//
// It runs each exchange on the goroutine that asks for it. net/http's
// Transport hands every request to a connection's write goroutine and
// every answer back from its read goroutine: two handoffs per request,
// two goroutines and two buffers per connection for as long as the
// connection lives. Here the caller writes the request, reads the
// status line and, through the returned body, the answer itself; a
// pooled connection is a socket and a 4 KiB read buffer, nothing more.
//
// It speaks the HTTP/1.1 that engines speak: requests with a body of
// known length, answers delimited by Content-Length, chunked encoding or
// the end of the connection, keep-alive. It does not follow redirects,
// send Expect: 100-continue, compress, or speak HTTP/2.
//
// A connection taken from the pool has been idle, and its peer may have
// closed it meanwhile: engines close idle connections after a few
// seconds (uvicorn, which serves vLLM and SGLang, after 5). Such a
// connection is noticed before use by a non-blocking peek, and when the
// close races with the request, the request is sent once more on a new
// connection, which is safe because the peer closed without reading it.
package upstream

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Defaults for the zero values of Transport's fields.
const (
	DefaultDialTimeout    = 5 * time.Second
	DefaultIdleTimeout    = 90 * time.Second
	DefaultMaxIdlePerHost = 256
)

// readBufferSize is each connection's read buffer: a status line and
// headers fit, and so does a typical answer.
const readBufferSize = 4 << 10

// maxInlineBody is the largest request body sent in the same write as
// the request's head.
const maxInlineBody = 64 << 10

// Transport is an http.RoundTripper for http and https URLs that keeps
// idle connections per host. Its zero value is ready to use; fields must
// not change once it has been used. It is safe for concurrent use.
type Transport struct {
	// TLSClientConfig is used for https URLs; nil means the defaults.
	// ServerName defaults to the URL's host. Only HTTP/1.1 is offered.
	TLSClientConfig *tls.Config
	// DialTimeout bounds connecting, the TLS handshake included. Zero
	// means DefaultDialTimeout.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the status line once
	// the request is written. Zero means none: the request's context
	// bounds it.
	ResponseHeaderTimeout time.Duration
	// IdleTimeout is how long a connection may wait in the pool. Zero
	// means DefaultIdleTimeout.
	IdleTimeout time.Duration
	// MaxIdlePerHost is how many idle connections are kept per host.
	// Zero means DefaultMaxIdlePerHost.
	MaxIdlePerHost int

	// now is the clock of idle deadlines; nil means time.Now.
	now func() time.Time

	plain, secure sync.Map // host → *hostPool
	sweeping      atomic.Bool
	closed        atomic.Bool
}

// hostPool is the idle connections to one host. The channel is a FIFO
// pool that needs no lock of ours.
type hostPool struct {
	addr string // host:port to dial
	tls  *tls.Config
	idle chan *conn
}

// conn is one connection to a host.
type conn struct {
	nc     net.Conn
	br     *bufio.Reader
	pool   *hostPool
	idleAt time.Time // when it was last put in the pool
	reused bool      // it has carried a request before
	read   int64     // bytes read from nc, to tell whether a reply began
}

// Read counts what the buffered reader takes from the socket.
func (c *conn) Read(p []byte) (int, error) {
	n, err := c.nc.Read(p)
	c.read += int64(n)
	return n, err
}

// aLongTimeAgo is a deadline that makes any blocked read or write of a
// connection return at once.
var aLongTimeAgo = time.Unix(1, 0)

// interrupt unblocks whatever the connection is doing; it is not reused.
func (c *conn) interrupt() { _ = c.nc.SetDeadline(aLongTimeAgo) }

func (t *Transport) clock() time.Time {
	if t.now != nil {
		return t.now()
	}
	return time.Now()
}

func (t *Transport) idleTimeout() time.Duration {
	if t.IdleTimeout > 0 {
		return t.IdleTimeout
	}
	return DefaultIdleTimeout
}

// ErrClosed is returned by RoundTrip once Close has been called.
var ErrClosed = errors.New("upstream: transport closed")

// RoundTrip sends req and returns the answer with its head read. The
// body is read from the connection as the caller reads it; closing it
// before the end closes the connection. req's context bounds the whole
// exchange, the body's reading included.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.roundTrip(req)
	// The request has been written or given up: RoundTripper's contract
	// wants its body closed either way.
	if req.Body != nil {
		_ = req.Body.Close()
	}
	return resp, err
}

func (t *Transport) roundTrip(req *http.Request) (*http.Response, error) {
	if t.closed.Load() {
		return nil, ErrClosed
	}
	if req.URL == nil || req.URL.Host == "" {
		return nil, errors.New("upstream: request has no host")
	}
	hasBody := req.Body != nil && req.Body != http.NoBody
	if hasBody && req.ContentLength < 0 {
		return nil, errors.New("upstream: request body of unknown length")
	}
	if !hasBody && req.ContentLength > 0 {
		return nil, fmt.Errorf("upstream: request has Content-Length %d but no body",
			req.ContentLength)
	}
	p, err := t.pool(req.URL.Scheme, req.URL.Host)
	if err != nil {
		return nil, err
	}
	ctx := req.Context()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for attempt := 0; ; attempt++ {
		var c *conn
		if attempt == 0 {
			// The retry dials: the other idle connections went idle
			// with the one that failed and may be as stale.
			c = t.getIdle(p)
		}
		if c == nil {
			if c, err = t.dial(ctx, p); err != nil {
				return nil, err
			}
		}
		resp, err := t.exchange(c, req)
		if err == nil {
			return resp, nil
		}
		// A reused connection that ends before the first byte of a reply
		// was closed by the peer while idle; the request was not read.
		if !c.reused || attempt > 0 || !peerClosed(err) || ctx.Err() != nil {
			return nil, err
		}
		if hasBody {
			if req.GetBody == nil {
				return nil, err
			}
			body, err := req.GetBody()
			if err != nil {
				return nil, err
			}
			defer body.Close()
			retry := *req // a RoundTripper must not change the caller's request
			retry.Body = body
			req = &retry
		}
	}
}

// errBeforeReply marks an exchange that failed before any byte of the
// reply arrived.
type errBeforeReply struct{ err error }

func (e *errBeforeReply) Error() string { return e.err.Error() }
func (e *errBeforeReply) Unwrap() error { return e.err }

// Timeout reports whether the wrapped error is a timeout, so that
// url.Error and net.Error checks see through the wrapper.
func (e *errBeforeReply) Timeout() bool {
	var ne net.Error
	return errors.As(e.err, &ne) && ne.Timeout()
}

// peerClosed reports whether err says the peer closed the connection
// before replying. http.ReadResponse reports a clean close before the
// status line as io.ErrUnexpectedEOF.
func peerClosed(err error) bool {
	var before *errBeforeReply
	if !errors.As(err, &before) {
		return false
	}
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// pool returns the idle pool of scheme://host, creating it.
func (t *Transport) pool(scheme, host string) (*hostPool, error) {
	var m *sync.Map
	var port string
	switch scheme {
	case "http":
		m, port = &t.plain, "80"
	case "https":
		m, port = &t.secure, "443"
	default:
		return nil, fmt.Errorf("upstream: unsupported scheme %q", scheme)
	}
	if p, ok := m.Load(host); ok {
		return p.(*hostPool), nil
	}
	p := &hostPool{addr: host, idle: make(chan *conn, t.maxIdle())}
	name, _, err := net.SplitHostPort(host)
	if err != nil {
		name = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
		p.addr = net.JoinHostPort(name, port)
	}
	if scheme == "https" {
		cfg := &tls.Config{}
		if t.TLSClientConfig != nil {
			cfg = t.TLSClientConfig.Clone()
		}
		if cfg.ServerName == "" {
			cfg.ServerName = name
		}
		cfg.NextProtos = []string{"http/1.1"}
		p.tls = cfg
	}
	actual, _ := m.LoadOrStore(host, p)
	return actual.(*hostPool), nil
}

func (t *Transport) maxIdle() int {
	if t.MaxIdlePerHost > 0 {
		return t.MaxIdlePerHost
	}
	return DefaultMaxIdlePerHost
}

// dial opens a new connection to p's host within DialTimeout.
func (t *Transport) dial(ctx context.Context, p *hostPool) (*conn, error) {
	timeout := t.DialTimeout
	if timeout <= 0 {
		timeout = DefaultDialTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if p.tls != nil {
		tc := tls.Client(nc, p.tls)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = nc.Close()
			return nil, err
		}
		nc = tc
	}
	c := &conn{nc: nc, pool: p}
	c.br = bufio.NewReaderSize(c, readBufferSize)
	return c, nil
}

// peekAfter is how long a connection must have been idle before it is
// peeked on its way out of the pool. A connection back for less has not
// given its peer the time to decide to close it, short of a race that
// the retry in roundTrip covers; a busy gateway is spared a system call
// per request.
const peekAfter = 500 * time.Millisecond

// getIdle takes the oldest usable idle connection of p, closing the ones
// that waited too long or that the peer closed; nil when there is none.
func (t *Transport) getIdle(p *hostPool) *conn {
	for {
		select {
		case c := <-p.idle:
			idle := t.clock().Sub(c.idleAt)
			if idle > t.idleTimeout() || (idle > peekAfter && !alive(c.nc)) {
				_ = c.nc.Close()
				continue
			}
			return c
		default:
			return nil
		}
	}
}

// putIdle returns c to its pool, or closes it when the pool is full or
// the transport closed.
func (t *Transport) putIdle(c *conn) {
	if t.closed.Load() {
		_ = c.nc.Close()
		return
	}
	c.reused = true
	c.idleAt = t.clock()
	select {
	case c.pool.idle <- c:
	default:
		_ = c.nc.Close()
		return
	}
	if t.closed.Load() {
		t.CloseIdleConnections() // Close ran while c went in
		return
	}
	t.startSweep()
}

// startSweep starts the sweeper unless it runs.
func (t *Transport) startSweep() {
	if !t.sweeping.Load() && t.sweeping.CompareAndSwap(false, true) {
		go t.sweep()
	}
}

// sweep closes connections that stayed idle too long, so that their
// sockets do not outlive IdleTimeout by much when no request comes to
// take them. It ends when no idle connection is left.
func (t *Transport) sweep() {
	tick := time.NewTicker(max(t.idleTimeout()/2, time.Millisecond))
	defer tick.Stop()
	for range tick.C {
		if t.closed.Load() {
			t.sweeping.Store(false)
			return
		}
		left := 0
		each := func(_, v any) bool {
			p := v.(*hostPool)
			for range len(p.idle) {
				c := t.getIdle(p)
				if c == nil {
					break
				}
				select {
				case p.idle <- c:
					left++
				default:
					_ = c.nc.Close()
				}
			}
			return true
		}
		t.plain.Range(each)
		t.secure.Range(each)
		if left == 0 {
			t.sweeping.Store(false)
			// A connection put back since the count found no sweeper
			// running; this one sweeps again for it.
			if t.idleCount() == 0 || !t.sweeping.CompareAndSwap(false, true) {
				return
			}
		}
	}
}

// idleCount is how many connections wait in the pools.
func (t *Transport) idleCount() int {
	n := 0
	each := func(_, v any) bool { n += len(v.(*hostPool).idle); return true }
	t.plain.Range(each)
	t.secure.Range(each)
	return n
}

// CloseIdleConnections closes every idle connection. Connections in use
// are closed when their exchange ends.
func (t *Transport) CloseIdleConnections() {
	each := func(_, v any) bool {
		p := v.(*hostPool)
		for {
			select {
			case c := <-p.idle:
				_ = c.nc.Close()
			default:
				return true
			}
		}
	}
	t.plain.Range(each)
	t.secure.Range(each)
}

// Close closes the idle connections and makes every later RoundTrip
// fail. Exchanges in flight finish.
func (t *Transport) Close() error {
	t.closed.Store(true)
	t.CloseIdleConnections()
	return nil
}

// exchange writes req on c and reads the head of the answer.
func (t *Transport) exchange(c *conn, req *http.Request) (*http.Response, error) {
	ctx := req.Context()
	// A cancelled request unblocks the connection at once, whatever it
	// is doing; the connection is then closed.
	stop := context.AfterFunc(ctx, c.interrupt)
	fail := func(err error) (*http.Response, error) {
		stop()
		_ = c.nc.Close()
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, ctxErr
		}
		return nil, err
	}

	before := c.read
	if err := writeRequest(c.nc, req); err != nil {
		return fail(&errBeforeReply{err})
	}
	if t.ResponseHeaderTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Now().Add(t.ResponseHeaderTimeout))
		if ctx.Err() != nil {
			c.interrupt() // the cancel landed before the deadline above
		}
	}
	var resp *http.Response
	for {
		var err error
		resp, err = http.ReadResponse(c.br, req)
		if err != nil {
			if c.read == before {
				err = &errBeforeReply{err}
			}
			return fail(err)
		}
		// 1xx answers (103 Early Hints) come before the real one.
		if resp.StatusCode >= 200 || resp.StatusCode == http.StatusSwitchingProtocols {
			break
		}
	}
	if t.ResponseHeaderTimeout > 0 {
		_ = c.nc.SetReadDeadline(time.Time{})
		if ctx.Err() != nil {
			c.interrupt() // the cancel landed before the reset above
		}
	}
	if resp.StatusCode == http.StatusSwitchingProtocols {
		return fail(errors.New("upstream: unexpected 101 Switching Protocols"))
	}
	b := &body{rc: resp.Body, t: t, c: c, ctx: ctx, stop: stop, reuse: !resp.Close}
	if resp.Body == http.NoBody {
		b.release() // nothing to read: the connection is free now
		return resp, nil
	}
	resp.Body = b
	return resp, nil
}

// body is an answer's body. At its end the connection goes back to the
// pool; closed before its end, the connection is closed.
type body struct {
	rc    io.ReadCloser
	t     *Transport
	c     *conn
	ctx   context.Context
	stop  func() bool
	reuse bool
	state atomic.Int32 // bodyReading, bodyDone or bodyClosed
}

const (
	bodyReading int32 = iota
	bodyDone          // read to its end; the connection is released
	bodyClosed        // closed by the caller
)

// errBodyClosed is returned by a Read after Close.
var errBodyClosed = errors.New("upstream: read on closed body")

func (b *body) Read(p []byte) (int, error) {
	switch b.state.Load() {
	case bodyDone:
		return 0, io.EOF
	case bodyClosed:
		return 0, errBodyClosed
	}
	n, err := b.rc.Read(p)
	if err == io.EOF && b.state.CompareAndSwap(bodyReading, bodyDone) {
		b.release()
	} else if err != nil && b.state.Load() == bodyClosed {
		err = errBodyClosed
	} else if err != nil && err != io.EOF && b.ctx.Err() != nil {
		err = b.ctx.Err() // the interrupt's deadline is not the reason
	}
	return n, err
}

// release gives the connection back after the body's end, unless the
// exchange was cancelled meanwhile, the peer asked to close, or the peer
// sent more than its answer: those bytes would be taken for the answer
// to the next request, and the peek sees only the socket.
func (b *body) release() {
	if b.stop() && b.reuse && b.c.br.Buffered() == 0 {
		b.t.putIdle(b.c)
		return
	}
	_ = b.c.nc.Close()
}

// Close ends the exchange. It may be called while a Read is blocked, on
// another goroutine: that Read returns at once.
func (b *body) Close() error {
	if b.state.Swap(bodyClosed) != bodyReading {
		return nil
	}
	b.stop()
	return b.c.nc.Close()
}
