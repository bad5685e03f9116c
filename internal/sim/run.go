package sim

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/crosslogic/crosslogic/internal/inflight"
)

// errClosed is the cause of the request contexts a closing server
// cancels.
var errClosed = errors.New("sim: server closed")

// Running is a Server listening on a real TCP address, made by Start or
// Server.Start. Its methods are safe for concurrent use.
type Running struct {
	// URL is the base URL, "http://host:port", without a trailing
	// slash: clients append /v1/chat/completions and so on.
	URL string
	// Addr is the address listened on, host:port.
	Addr string

	s      *Server
	srv    *http.Server
	cancel context.CancelCauseFunc // cancels every request's context
	active inflight.Counter        // running handlers, so that Close can wait for them
	served chan struct{}           // closed when Serve has returned
	err    error                   // Serve's error; read only after served closes
}

// Start listens on 127.0.0.1 at a free port and serves a new Server for
// cfg in the background. It is the one-liner for tests:
//
//	r, err := sim.Start(sim.Config{Models: []string{"m"}})
//	...
//	t.Cleanup(func() { r.Close() })
func Start(cfg Config) (*Running, error) {
	s, err := New(cfg)
	if err != nil {
		return nil, err
	}
	return s.Start("127.0.0.1:0")
}

// Start listens on addr ("host:port"; port 0 picks a free one) and
// serves s in the background until the Running is closed or killed. A
// Server may be started again after a Kill, on the same address, to
// simulate a node coming back with its counters intact.
func (s *Server) Start(addr string) (*Running, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("sim: listen on %s: %w", addr, err)
	}
	base, cancel := context.WithCancelCause(context.Background())
	r := &Running{
		URL:    "http://" + ln.Addr().String(),
		Addr:   ln.Addr().String(),
		s:      s,
		cancel: cancel,
		served: make(chan struct{}),
	}
	h := s.Handler()
	r.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			r.active.Add()
			defer r.active.Done()
			h.ServeHTTP(w, req)
		}),
		BaseContext:       func(net.Listener) context.Context { return base },
		Protocols:         Protocols(),
		ReadHeaderTimeout: 30 * time.Second,
		// net/http logs here what an operator should see: accept errors
		// and handler panics other than http.ErrAbortHandler.
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	go func() {
		defer close(r.served)
		if err := r.srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			r.err = err
			s.log.Error("simulator stopped serving", "addr", r.Addr, "error", err)
		}
	}()
	s.log.Debug("simulator started", "addr", r.Addr)
	return r, nil
}

// Server returns the served Server, for SetFaults and Stats.
func (r *Running) Server() *Server { return r.s }

// Kill drops the node at once, as if its machine died: it closes the
// listener and every connection, mid-answer or not, without waiting.
// Clients see connection errors or unexpected EOFs; requests in flight
// stop and count as cancelled. Close, called afterwards, waits for
// their handlers to return.
func (r *Running) Kill() {
	// Connections first: cancelled handlers abort their responses anyway,
	// but a dead machine does not get to finish what it was writing.
	_ = r.srv.Close()
	r.cancel(errClosed)
	r.s.log.Debug("simulator killed", "addr", r.Addr)
}

// Close stops the node and waits until every handler has returned.
// Unlike Shutdown it does not let requests finish: they are aborted,
// their clients see connection errors, and they count as cancelled. It
// returns Serve's error, if Serve failed. Close may be called more than
// once, and after Kill or Shutdown.
func (r *Running) Close() error {
	_ = r.srv.Close() // also closes what a timed-out Shutdown left open
	r.cancel(errClosed)
	<-r.served
	_ = r.active.Wait(context.Background())
	return r.err
}

// Shutdown stops the node gracefully: it stops accepting connections
// and waits for requests in flight to complete. If ctx ends first, it
// closes what remains like Close and returns ctx's error.
func (r *Running) Shutdown(ctx context.Context) error {
	err := r.srv.Shutdown(ctx)
	if cerr := r.Close(); err == nil {
		err = cerr
	}
	return err
}

// ListenAndServe serves s on addr until ctx ends, then closes it like
// Running.Close: the simulator has no work worth draining. It is what
// the `crosslogic sim` command runs.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	r, err := s.Start(addr)
	if err != nil {
		return err
	}
	s.log.Info("simulator listening", "addr", r.Addr, "models", s.cfg.Models)
	select {
	case <-ctx.Done():
	case <-r.served:
	}
	err = r.Close()
	s.log.Info("simulator stopped", "addr", r.Addr)
	return err
}

// Protocols are what the simulator serves: HTTP/1.1 and cleartext HTTP/2
// with prior knowledge on the same port, so that a gateway may reach it
// either way.
func Protocols() *http.Protocols {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &p
}
