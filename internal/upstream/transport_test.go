package upstream

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// waitLimit bounds every wait of these tests. It is generous, for -race
// on a slow machine; a passing test never comes near it.
const waitLimit = 10 * time.Second

// eventually polls cond until it holds, and fails the test when it does
// not within waitLimit.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLimit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// connTracker counts a test server's connections through
// http.Server.ConnState.
type connTracker struct {
	mu     sync.Mutex // guards the fields below
	opened int
	closed int
}

func (ct *connTracker) hook(_ net.Conn, s http.ConnState) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	switch s {
	case http.StateNew:
		ct.opened++
	case http.StateClosed, http.StateHijacked:
		ct.closed++
	}
}

// counts returns how many connections the server accepted and closed.
func (ct *connTracker) counts() (opened, closed int) {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.opened, ct.closed
}

// wantOpened fails the test unless the server accepted n connections.
func (ct *connTracker) wantOpened(t *testing.T, n int) {
	t.Helper()
	if opened, _ := ct.counts(); opened != n {
		t.Errorf("server accepted %d connections, want %d", opened, n)
	}
}

// waitClosed waits until the server has seen n connections closed.
func (ct *connTracker) waitClosed(t *testing.T, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d closed connections", n), func() bool {
		_, closed := ct.counts()
		return closed >= n
	})
}

// newServer starts an httptest server on loopback that counts its
// connections.
func newServer(t *testing.T, h http.HandlerFunc) (*httptest.Server, *connTracker) {
	t.Helper()
	ct := new(connTracker)
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = ct.hook
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, ct
}

// newTransport returns tr, closed when the test ends.
func newTransport(t *testing.T, tr *Transport) *Transport {
	t.Helper()
	t.Cleanup(func() { _ = tr.Close() })
	return tr
}

func newRequest(t *testing.T, method, target string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, target, body)
	if err != nil {
		t.Fatalf("NewRequest(%s, %s): %v", method, target, err)
	}
	return req
}

// roundTrip sends req on rt and returns the answer and its whole body.
func roundTrip(t *testing.T, rt http.RoundTripper, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := rt.RoundTrip(req)
	if err != nil {
		t.Fatalf("RoundTrip(%s %s): %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading the body of %s %s: %v", req.Method, req.URL, err)
	}
	return resp, string(b)
}

// get sends a GET for target and returns the answer's body.
func get(t *testing.T, rt http.RoundTripper, target string) string {
	t.Helper()
	_, body := roundTrip(t, rt, newRequest(t, http.MethodGet, target, nil))
	return body
}

// fakeClock is an injected clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex // guards now
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// closeRecorder is a request body that records whether it was closed.
type closeRecorder struct {
	io.Reader
	closed atomic.Bool
}

func (r *closeRecorder) Close() error {
	r.closed.Store(true)
	return nil
}

// rawServer is a TCP server on loopback for answers that net/http's
// server would never give: each connection is handed to serve with its
// number, counted from 0 in the order of acceptance.
type rawServer struct {
	ln    net.Listener
	serve func(n int, nc net.Conn)
	wg    sync.WaitGroup

	mu      sync.Mutex // guards the fields below
	remotes []string   // remote address of each accepted connection
	conns   []net.Conn
}

func newRawServer(t *testing.T, serve func(n int, nc net.Conn)) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &rawServer{ln: ln, serve: serve}
	s.wg.Go(s.acceptLoop)
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		for _, nc := range s.conns {
			_ = nc.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s
}

func (s *rawServer) acceptLoop() {
	for {
		nc, err := s.ln.Accept()
		if err != nil {
			return
		}
		s.mu.Lock()
		n := len(s.conns)
		s.remotes = append(s.remotes, nc.RemoteAddr().String())
		s.conns = append(s.conns, nc)
		s.mu.Unlock()
		s.wg.Go(func() {
			defer nc.Close()
			s.serve(n, nc)
		})
	}
}

func (s *rawServer) URL() string { return "http://" + s.ln.Addr().String() }

// accepted returns how many connections were dialled to s so far. A
// connection can be established before the server accepts it, so it
// dials one more, a sentinel, and waits until that one is accepted:
// the listener accepts in the order of arrival.
func (s *rawServer) accepted(t *testing.T) int {
	t.Helper()
	nc, err := net.Dial("tcp", s.ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sentinel := nc.LocalAddr().String()
	n := -1
	eventually(t, "the sentinel connection to be accepted", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		n = slices.Index(s.remotes, sentinel)
		return n >= 0
	})
	return n
}

// readRequest reads one request and its whole body from br.
func readRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

// writeOK writes a 200 answer carrying body, delimited by Content-Length.
func writeOK(w io.Writer, body string) error {
	_, err := fmt.Fprintf(w, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s",
		len(body), body)
	return err
}

func TestKeepAliveReuseAndRequestFidelity(t *testing.T) {
	type seen struct {
		method, uri, host string
		custom, multi     []string
		length            int64
		te                []string
		body              string
	}
	seenc := make(chan seen, 1)
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("server reading the body: %v", err)
		}
		seenc <- seen{
			method: r.Method, uri: r.RequestURI, host: r.Host,
			custom: r.Header.Values("X-Test"), multi: r.Header.Values("X-Multi"),
			length: r.ContentLength, te: r.TransferEncoding, body: string(b),
		}
		_, _ = fmt.Fprintf(w, "%s %s", r.Method, b)
	})
	tr := newTransport(t, &Transport{})
	addr := strings.TrimPrefix(srv.URL, "http://")

	tests := []struct {
		name, method, path, host, body string
		wantHost                       string
	}{
		{name: "get with query", method: http.MethodGet,
			path: "/v1/models?limit=2&after=a%20b", wantHost: addr},
		{name: "post", method: http.MethodPost, path: "/v1/chat/completions",
			body:     `{"model":"m","messages":[{"role":"user","content":"hi"}]}`,
			wantHost: addr},
		{name: "post without body", method: http.MethodPost, path: "/v1/embeddings",
			wantHost: addr},
		{name: "put", method: http.MethodPut, path: "/p", body: "x", wantHost: addr},
		{name: "delete", method: http.MethodDelete, path: "/d", wantHost: addr},
		{name: "host override", method: http.MethodGet, path: "/h",
			host: "node-7.internal:8000", wantHost: "node-7.internal:8000"},
		{name: "escaped path", method: http.MethodGet, path: "/a%2Fb/c?q=%E2%9C%93",
			wantHost: addr},
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var body io.Reader
			if tc.body != "" {
				body = strings.NewReader(tc.body)
			}
			req := newRequest(t, tc.method, srv.URL+tc.path, body)
			req.Host = tc.host
			req.Header.Set("X-Test", strconv.Itoa(i))
			req.Header.Add("X-Multi", "a")
			req.Header.Add("X-Multi", "b, c")
			resp, got := roundTrip(t, tr, req)
			if resp.StatusCode != http.StatusOK {
				t.Errorf("status %d, want 200", resp.StatusCode)
			}
			if want := tc.method + " " + tc.body; got != want {
				t.Errorf("answer %q, want %q", got, want)
			}

			s := <-seenc
			if s.method != tc.method {
				t.Errorf("server saw method %q, want %q", s.method, tc.method)
			}
			if s.uri != tc.path {
				t.Errorf("server saw request URI %q, want %q", s.uri, tc.path)
			}
			if s.host != tc.wantHost {
				t.Errorf("server saw host %q, want %q", s.host, tc.wantHost)
			}
			if want := []string{strconv.Itoa(i)}; !slices.Equal(s.custom, want) {
				t.Errorf("server saw X-Test %q, want %q", s.custom, want)
			}
			if want := []string{"a", "b, c"}; !slices.Equal(s.multi, want) {
				t.Errorf("server saw X-Multi %q, want %q", s.multi, want)
			}
			if s.length != int64(len(tc.body)) || len(s.te) != 0 {
				t.Errorf("server saw Content-Length %d, Transfer-Encoding %q; want %d, none",
					s.length, s.te, len(tc.body))
			}
			if s.body != tc.body {
				t.Errorf("server saw body %q, want %q", s.body, tc.body)
			}
		})
	}
	ct.wantOpened(t, 1)
}

func TestHTTPClient(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, r.URL.Path)
	})
	c := &http.Client{Transport: newTransport(t, &Transport{})}
	for _, p := range []string{"/a", "/b", "/c"} {
		resp, err := c.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		b, err := io.ReadAll(resp.Body)
		_ = resp.Body.Close()
		if err != nil || string(b) != p {
			t.Errorf("GET %s: body %q, %v; want %q", p, b, err, p)
		}
	}
	ct.wantOpened(t, 1)
}

func TestConcurrentRequests(t *testing.T) {
	const goroutines, perGoroutine = 32, 20
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		_, _ = fmt.Fprintf(w, "%s|%s", r.URL.Path, b)
	})
	tr := newTransport(t, &Transport{})

	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for i := range perGoroutine {
				path := fmt.Sprintf("/g%d/r%d", g, i)
				body := strings.Repeat(path, i+1)
				req, err := http.NewRequest(http.MethodPost, srv.URL+path,
					strings.NewReader(body))
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Errorf("RoundTrip %s: %v", path, err)
					return
				}
				got, err := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if want := path + "|" + body; err != nil || string(got) != want {
					t.Errorf("%s: got %q, %v; want %q", path, got, err, want)
					return
				}
			}
		})
	}
	wg.Wait()
	if opened, _ := ct.counts(); opened > goroutines || opened < 1 {
		t.Errorf("server accepted %d connections, want 1 to %d", opened, goroutines)
	}
}

func TestIdleConnectionClosedByServer(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	tr := newTransport(t, &Transport{})

	get(t, tr, srv.URL)
	srv.CloseClientConnections()
	ct.waitClosed(t, 1)
	if got := get(t, tr, srv.URL); got != "ok" {
		t.Errorf("got %q, want %q", got, "ok")
	}
	ct.wantOpened(t, 2)
}

// TestRetryWhenCloseRacesRequest has the server close an idle connection
// just as a request arrives on it: it reads the request, then closes
// without a reply. The request is sent again on a new connection.
func TestRetryWhenCloseRacesRequest(t *testing.T) {
	large := make([]byte, 100<<10)
	for i := range large {
		large[i] = byte(i % 251)
	}
	tests := []struct {
		name   string
		method string
		body   []byte
	}{
		{"no body", http.MethodGet, nil},
		{"small body", http.MethodPost, []byte(`{"prompt":"retry me"}`)},
		{"large body", http.MethodPost, large},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var mu sync.Mutex
			var bodies [][]byte // every request body the server read
			srv := newRawServer(t, func(n int, nc net.Conn) {
				br := bufio.NewReader(nc)
				for i := 0; ; i++ {
					_, body, err := readRequest(br)
					if err != nil {
						return
					}
					mu.Lock()
					bodies = append(bodies, body)
					mu.Unlock()
					if n == 0 && i == 1 {
						return // the first connection ends as its second request comes
					}
					if writeOK(nc, fmt.Sprintf("conn %d", n)) != nil {
						return
					}
				}
			})
			tr := newTransport(t, &Transport{})

			if got := get(t, tr, srv.URL()); got != "conn 0" {
				t.Fatalf("first answer %q, want %q", got, "conn 0")
			}
			var body io.Reader
			if tc.body != nil {
				body = bytes.NewReader(tc.body) // sets GetBody
			}
			req := newRequest(t, tc.method, srv.URL()+"/again", body)
			origBody := req.Body
			if _, got := roundTrip(t, tr, req); got != "conn 1" {
				t.Errorf("second answer %q, want %q", got, "conn 1")
			}
			if req.Body != origBody {
				t.Error("RoundTrip replaced the request's Body")
			}
			if n := srv.accepted(t); n != 2 {
				t.Errorf("server accepted %d connections, want 2", n)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(bodies) != 3 {
				t.Fatalf("server read %d requests, want 3", len(bodies))
			}
			if !bytes.Equal(bodies[2], tc.body) {
				t.Errorf("the retried body is %d bytes, want the %d sent",
					len(bodies[2]), len(tc.body))
			}
		})
	}
}

// TestRetryNeedsGetBody checks that a request whose body cannot be made
// again is not retried.
func TestRetryNeedsGetBody(t *testing.T) {
	var requests atomic.Int32
	srv := newRawServer(t, func(n int, nc net.Conn) {
		br := bufio.NewReader(nc)
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			requests.Add(1)
			if i == 1 || writeOK(nc, "ok") != nil {
				return
			}
		}
	})
	tr := newTransport(t, &Transport{})

	get(t, tr, srv.URL())
	req := newRequest(t, http.MethodPost, srv.URL(), strings.NewReader("once"))
	req.GetBody = nil
	roundTripFails(t, tr, req, "the body cannot be sent again")
	wantCounts(t, srv, &requests, 1, 2)
}

// TestNoRetryOnFreshConnection checks that a new connection that ends
// before a reply is an error, not a reason to dial again.
func TestNoRetryOnFreshConnection(t *testing.T) {
	var requests atomic.Int32
	srv := newRawServer(t, func(n int, nc net.Conn) {
		if _, _, err := readRequest(bufio.NewReader(nc)); err == nil {
			requests.Add(1)
		}
	})
	tr := newTransport(t, &Transport{})

	req := newRequest(t, http.MethodPost, srv.URL(), strings.NewReader("body"))
	roundTripFails(t, tr, req, "a fresh connection is not retried")
	wantCounts(t, srv, &requests, 1, 1)
}

// TestRetryOnlyOnce has every request after the first end its connection
// without a reply: the second request is sent twice, then fails.
func TestRetryOnlyOnce(t *testing.T) {
	var requests atomic.Int32
	srv := newRawServer(t, func(n int, nc net.Conn) {
		br := bufio.NewReader(nc)
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if requests.Add(1) > 1 || writeOK(nc, "ok") != nil {
				return
			}
		}
	})
	tr := newTransport(t, &Transport{})

	get(t, tr, srv.URL())
	roundTripFails(t, tr, newRequest(t, http.MethodGet, srv.URL(), nil), "retried only once")
	// One request, then one retried once.
	wantCounts(t, srv, &requests, 2, 3)
}

// roundTripFails sends req and fails the test unless RoundTrip errs.
func roundTripFails(t *testing.T, tr *Transport, req *http.Request, why string) {
	t.Helper()
	if resp, err := tr.RoundTrip(req); err == nil {
		_ = resp.Body.Close()
		t.Fatalf("RoundTrip succeeded, want an error: %s", why)
	}
}

// wantCounts checks how many connections srv accepted and how many
// requests it read.
func wantCounts(t *testing.T, srv *rawServer, requests *atomic.Int32, conns, reqs int) {
	t.Helper()
	if n := srv.accepted(t); n != conns {
		t.Errorf("server accepted %d connections, want %d", n, conns)
	}
	if n := int(requests.Load()); n != reqs {
		t.Errorf("server read %d requests, want %d", n, reqs)
	}
}

// TestRetryDialsNewConnection has two idle connections that the server
// ends as requests arrive on them. The retry goes on a new connection,
// not on the other idle one, which is as stale as the first.
func TestRetryDialsNewConnection(t *testing.T) {
	arrived := make(chan struct{}, 2)
	both := make(chan struct{})
	srv := newRawServer(t, func(n int, nc net.Conn) {
		br := bufio.NewReader(nc)
		for i := 0; ; i++ {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			if n < 2 && i == 0 {
				// Hold the first two answers until both requests are
				// here, so that the transport has two connections.
				arrived <- struct{}{}
				<-both
			}
			if n < 2 && i == 1 {
				return
			}
			if writeOK(nc, fmt.Sprintf("conn %d", n)) != nil {
				return
			}
		}
	})
	tr := newTransport(t, &Transport{})

	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL(), nil))
			if err != nil {
				t.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
		})
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(waitLimit):
			t.Fatal("the two first requests did not arrive")
		}
	}
	close(both)
	wg.Wait()
	if got := get(t, tr, srv.URL()); got != "conn 2" {
		t.Errorf("answer %q, want %q", got, "conn 2")
	}
	if n := srv.accepted(t); n != 3 {
		t.Errorf("server accepted %d connections, want 3", n)
	}
}

func TestCancelWhileWaitingForHead(t *testing.T) {
	arrived := make(chan struct{})
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-r.Context().Done() // the client goes away
	})
	tr := newTransport(t, &Transport{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newRequest(t, http.MethodGet, srv.URL, nil).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(req)
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	<-arrived
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("RoundTrip error %v, want context.Canceled", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("RoundTrip did not return after the cancel")
	}
	ct.waitClosed(t, 1)
}

// TestCancelBeforeRoundTrip checks that a request whose context is done
// already is not sent, and spoils no idle connection.
func TestCancelBeforeRoundTrip(t *testing.T) {
	var handled atomic.Int32
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
	})
	tr := newTransport(t, &Transport{})
	get(t, tr, srv.URL) // an idle connection to take

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	req := newRequest(t, http.MethodGet, srv.URL, nil).WithContext(ctx)
	if resp, err := tr.RoundTrip(req); !errors.Is(err, context.Canceled) {
		if err == nil {
			_ = resp.Body.Close()
		}
		t.Errorf("RoundTrip error %v, want context.Canceled", err)
	}
	get(t, tr, srv.URL)
	ct.wantOpened(t, 1)
	if n := handled.Load(); n != 2 {
		t.Errorf("server handled %d requests, want 2", n)
	}
}

const firstEvent = "data: {\"n\":1}\n\n"

// streamingServer answers /stream with firstEvent, flushed, then waits
// for the client to go away; other paths get "ok".
func streamingServer(t *testing.T) (*httptest.Server, *connTracker) {
	return newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			_, _ = io.WriteString(w, "ok")
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, firstEvent)
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	})
}

// readFirstEvent reads firstEvent from the body of resp.
func readFirstEvent(t *testing.T, resp *http.Response) {
	t.Helper()
	buf := make([]byte, len(firstEvent))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != firstEvent {
		t.Fatalf("first event %q, %v; want %q", buf, err, firstEvent)
	}
}

// blockedRead reads from body on a new goroutine and returns the
// channel of its error.
func blockedRead(body io.Reader) <-chan error {
	errc := make(chan error, 1)
	go func() {
		_, err := body.Read(make([]byte, 64))
		errc <- err
	}()
	return errc
}

func TestCancelWhileReadingBody(t *testing.T) {
	srv, ct := streamingServer(t)
	tr := newTransport(t, &Transport{})

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req := newRequest(t, http.MethodGet, srv.URL+"/stream", nil).WithContext(ctx)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	readFirstEvent(t, resp)

	errc := blockedRead(resp.Body)
	cancel()
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Read after the cancel returned no error")
		}
	case <-time.After(waitLimit):
		t.Fatal("Read did not return after the cancel")
	}
	_ = resp.Body.Close()
	ct.waitClosed(t, 1)
	get(t, tr, srv.URL+"/after")
	ct.wantOpened(t, 2)
}

func TestResponseHeaderTimeout(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done() // never answers
	})
	tr := newTransport(t, &Transport{ResponseHeaderTimeout: 50 * time.Millisecond})

	errc := make(chan error, 1)
	go func() {
		resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
		if err == nil {
			_ = resp.Body.Close()
		}
		errc <- err
	}()
	select {
	case err := <-errc:
		var ne net.Error
		timeout := errors.As(err, &ne) && ne.Timeout()
		if !timeout && !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("RoundTrip error %v, want a timeout", err)
		}
	case <-time.After(waitLimit):
		t.Fatal("RoundTrip did not time out")
	}
	ct.waitClosed(t, 1)
}

// TestResponseHeaderTimeoutSparesBody checks that the timeout ends with
// the head: a body slower than it is read in full, and the connection is
// reused.
func TestResponseHeaderTimeoutSparesBody(t *testing.T) {
	const timeout = 50 * time.Millisecond
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		// Deliberately slower than the timeout: the body is not bound by it.
		select {
		case <-time.After(3 * timeout):
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "late")
	})
	tr := newTransport(t, &Transport{ResponseHeaderTimeout: timeout})

	for range 2 {
		if got := get(t, tr, srv.URL); got != "late" {
			t.Errorf("got %q, want %q", got, "late")
		}
	}
	ct.wantOpened(t, 1)
}

func TestBodyClosedBeforeEnd(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			_, _ = w.Write(make([]byte, 64<<10))
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tr := newTransport(t, &Transport{})

	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL+"/big", nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(resp.Body, make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	if err := resp.Body.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if _, err := resp.Body.Read(make([]byte, 1)); err == nil {
		t.Error("Read after Close returned no error")
	}
	ct.waitClosed(t, 1)
	get(t, tr, srv.URL)
	ct.wantOpened(t, 2)
}

func TestBodyCloseUnblocksRead(t *testing.T) {
	srv, ct := streamingServer(t)
	tr := newTransport(t, &Transport{})

	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL+"/stream", nil))
	if err != nil {
		t.Fatal(err)
	}
	readFirstEvent(t, resp)
	errc := blockedRead(resp.Body)
	if err := resp.Body.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	select {
	case err := <-errc:
		if err == nil {
			t.Error("Read returned no error after Close")
		}
	case <-time.After(waitLimit):
		t.Fatal("Read did not return after Close")
	}
	ct.waitClosed(t, 1)
}

func TestConnectionCloseNotReused(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close")
		_, _ = io.WriteString(w, "bye")
	})
	tr := newTransport(t, &Transport{})

	for range 3 {
		if got := get(t, tr, srv.URL); got != "bye" {
			t.Errorf("got %q, want %q", got, "bye")
		}
	}
	ct.wantOpened(t, 3)
}

// TestBodyDelimitedByClose reads answers that have neither Content-Length
// nor chunked encoding: the body is all that comes before the close.
func TestBodyDelimitedByClose(t *testing.T) {
	want := strings.Repeat("0123456789abcdef", 10<<10) // larger than any buffer
	srv := newRawServer(t, func(n int, nc net.Conn) {
		if _, _, err := readRequest(bufio.NewReader(nc)); err != nil {
			return
		}
		_, _ = io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"+want)
	})
	tr := newTransport(t, &Transport{})

	for range 2 {
		resp, got := roundTrip(t, tr, newRequest(t, http.MethodGet, srv.URL(), nil))
		if got != want {
			t.Errorf("body is %d bytes, want %d", len(got), len(want))
		}
		if !resp.Close {
			t.Error("resp.Close is false, want true")
		}
	}
	if n := srv.accepted(t); n != 2 {
		t.Errorf("server accepted %d connections, want 2", n)
	}
}

func TestIdleTimeoutWithInjectedClock(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	clock := &fakeClock{now: time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)}
	tr := newTransport(t, &Transport{IdleTimeout: time.Minute, now: clock.Now})

	get(t, tr, srv.URL)
	clock.Advance(time.Minute) // not beyond: still usable
	get(t, tr, srv.URL)
	ct.wantOpened(t, 1)

	clock.Advance(time.Minute + time.Second)
	get(t, tr, srv.URL)
	ct.wantOpened(t, 2)
	ct.waitClosed(t, 1)
}

// TestInjectedClockOnlyForIdle checks that the injected clock, which
// may be anywhere in time, does not set the sockets' deadlines.
func TestInjectedClockOnlyForIdle(t *testing.T) {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "ok")
	})
	clock := &fakeClock{now: time.Date(2001, 2, 3, 4, 5, 6, 0, time.UTC)}
	tr := newTransport(t, &Transport{ResponseHeaderTimeout: waitLimit, now: clock.Now})

	resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
	if err != nil {
		t.Fatalf("RoundTrip: %v", err)
	}
	_ = resp.Body.Close()
}

func TestSweeperClosesIdleConnections(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t, &Transport{IdleTimeout: 30 * time.Millisecond})

	get(t, tr, srv.URL)
	ct.waitClosed(t, 1) // no request comes: the sweeper closes it
	eventually(t, "the sweeper to stop", func() bool { return !tr.sweeping.Load() })

	// A new idle connection starts the sweeper again.
	get(t, tr, srv.URL)
	ct.wantOpened(t, 2)
	ct.waitClosed(t, 2)
}

func TestChunkedStreaming(t *testing.T) {
	const second = "data: {\"n\":2}\n\n"
	ack := make(chan struct{})
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			return
		}
		_, _ = io.WriteString(w, firstEvent)
		w.(http.Flusher).Flush()
		select {
		case <-ack: // the client has the first event
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, second)
	})
	tr := newTransport(t, &Transport{})

	// Were the transport to wait for more than the first event, the
	// context would end the exchange instead of a deadlock.
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	req := newRequest(t, http.MethodGet, srv.URL+"/stream", nil).WithContext(ctx)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if !slices.Equal(resp.TransferEncoding, []string{"chunked"}) {
		t.Errorf("Transfer-Encoding %q, want chunked", resp.TransferEncoding)
	}
	readFirstEvent(t, resp)
	close(ack)
	rest, err := io.ReadAll(resp.Body)
	if err != nil || string(rest) != second {
		t.Errorf("rest of the stream %q, %v; want %q", rest, err, second)
	}

	get(t, tr, srv.URL) // the connection came back at the stream's end
	ct.wantOpened(t, 1)
}

func TestTLS(t *testing.T) {
	ct := new(connTracker)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(
		func(w http.ResponseWriter, r *http.Request) {
			_, _ = fmt.Fprintf(w, "%d.%d", r.ProtoMajor, r.ProtoMinor)
		}))
	srv.EnableHTTP2 = true
	srv.Config.ConnState = ct.hook
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	roots := x509.NewCertPool()
	roots.AddCert(srv.Certificate())

	t.Run("trusted", func(t *testing.T) {
		cfg := &tls.Config{RootCAs: roots}
		tr := newTransport(t, &Transport{TLSClientConfig: cfg})
		for range 2 {
			if got := get(t, tr, srv.URL); got != "1.1" {
				t.Errorf("server saw HTTP/%s, want HTTP/1.1", got)
			}
		}
		ct.wantOpened(t, 1)
		if cfg.ServerName != "" || cfg.NextProtos != nil {
			t.Errorf("the caller's tls.Config changed: ServerName %q, NextProtos %q",
				cfg.ServerName, cfg.NextProtos)
		}

		// The peek sees through TLS to the socket.
		srv.CloseClientConnections()
		ct.waitClosed(t, 1)
		get(t, tr, srv.URL)
		ct.wantOpened(t, 2)
	})

	t.Run("server name", func(t *testing.T) {
		// httptest's certificate names example.com besides 127.0.0.1.
		cfg := &tls.Config{RootCAs: roots, ServerName: "example.com"}
		tr := newTransport(t, &Transport{TLSClientConfig: cfg})
		get(t, tr, srv.URL)

		cfg = &tls.Config{RootCAs: roots, ServerName: "other.example"}
		tr = newTransport(t, &Transport{TLSClientConfig: cfg})
		_, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
		var hostErr x509.HostnameError
		if !errors.As(err, &hostErr) {
			t.Errorf("RoundTrip error %v, want a hostname error", err)
		}
	})

	t.Run("untrusted", func(t *testing.T) {
		tr := newTransport(t, &Transport{})
		_, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL, nil))
		var authErr x509.UnknownAuthorityError
		if !errors.As(err, &authErr) {
			t.Errorf("RoundTrip error %v, want an unknown authority error", err)
		}
	})
}

// TestHeaderInjectionRefused checks that nothing that could end a line
// of the request's head early is sent: the server receives no byte.
func TestHeaderInjectionRefused(t *testing.T) {
	var mu sync.Mutex
	received, ended := 0, 0
	srv := newRawServer(t, func(n int, nc net.Conn) {
		b, _ := io.Copy(io.Discard, nc)
		mu.Lock()
		received += int(b)
		ended++
		mu.Unlock()
	})
	tr := newTransport(t, &Transport{})

	tests := []struct {
		name  string
		setup func(*http.Request)
	}{
		{"value with CRLF", func(r *http.Request) {
			r.Header["X-Test"] = []string{"a\r\nX-Injected: 1"}
		}},
		{"value with LF", func(r *http.Request) { r.Header["X-Test"] = []string{"a\nb"} }},
		{"value with NUL", func(r *http.Request) { r.Header["X-Test"] = []string{"a\x00b"} }},
		{"name with space", func(r *http.Request) { r.Header["X Test"] = []string{"v"} }},
		{"name with colon", func(r *http.Request) { r.Header["X-Test:"] = []string{"v"} }},
		{"name with CRLF", func(r *http.Request) {
			r.Header["X-Test\r\nX-Injected"] = []string{"v"}
		}},
		{"empty name", func(r *http.Request) { r.Header[""] = []string{"v"} }},
		{"host with CRLF", func(r *http.Request) { r.Host = "h\r\nX-Injected: 1" }},
		{"method with space", func(r *http.Request) { r.Method = "GET /x" }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			req := newRequest(t, http.MethodGet, srv.URL(), nil)
			tc.setup(req)
			if resp, err := tr.RoundTrip(req); err == nil {
				_ = resp.Body.Close()
				t.Fatal("RoundTrip succeeded, want an error")
			}
		})
	}

	dialled := srv.accepted(t) + 1 // the sentinel too
	eventually(t, "every connection to end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return ended == dialled
	})
	mu.Lock()
	defer mu.Unlock()
	if received != 0 {
		t.Errorf("server received %d bytes, want none", received)
	}
}

func TestRequestBodyIntact(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			t.Errorf("server reading the body: %v", err)
		}
		_, _ = fmt.Fprintf(w, "%d %d %x", r.ContentLength, n, h.Sum(nil))
	})
	tr := newTransport(t, &Transport{})

	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range []int{1, maxInlineBody, maxInlineBody + 1, 200 << 10} {
		t.Run(strconv.Itoa(size), func(t *testing.T) {
			body := make([]byte, size)
			for i := range body {
				body[i] = byte(rng.Uint32())
			}
			sum := sha256.Sum256(body)
			want := fmt.Sprintf("%d %d %s", size, size, hex.EncodeToString(sum[:]))
			req := newRequest(t, http.MethodPost, srv.URL, bytes.NewReader(body))
			if _, got := roundTrip(t, tr, req); got != want {
				t.Errorf("server saw %q, want %q", got, want)
			}
		})
	}
	ct.wantOpened(t, 1)
}

func TestRequestBodyLengthMismatch(t *testing.T) {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err == nil {
			_, _ = w.Write(b)
		}
	})
	tr := newTransport(t, &Transport{})

	short := []struct {
		name   string
		body   io.Reader
		length int64
	}{
		{"short inline", strings.NewReader("12345"), 10},
		{"empty inline", struct{ io.Reader }{strings.NewReader("")}, 10},
		{"short streamed", bytes.NewReader(make([]byte, 50<<10)), 100 << 10},
		{"no body", nil, 5},
	}
	for _, tc := range short {
		t.Run(tc.name, func(t *testing.T) {
			// A transport that waited for the missing bytes would be
			// ended by this context; the test wants an error before.
			ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
			defer cancel()
			req := newRequest(t, http.MethodPost, srv.URL, tc.body).WithContext(ctx)
			req.ContentLength = tc.length
			resp, err := tr.RoundTrip(req)
			if err == nil {
				_ = resp.Body.Close()
				t.Fatal("RoundTrip succeeded, want an error")
			}
			if errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("RoundTrip waited for the missing body: %v", err)
			}
		})
	}

	t.Run("long", func(t *testing.T) {
		// Content-Length rules: what follows is not sent.
		req := newRequest(t, http.MethodPost, srv.URL, strings.NewReader("hello, world"))
		req.ContentLength = 5
		if _, got := roundTrip(t, tr, req); got != "hello" {
			t.Errorf("server saw %q, want %q", got, "hello")
		}
	})
}

func TestRoundTripClosesRequestBody(t *testing.T) {
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t, &Transport{})

	body := &closeRecorder{Reader: strings.NewReader("body")}
	req := newRequest(t, http.MethodPost, srv.URL, body)
	req.ContentLength = 4
	roundTrip(t, tr, req)
	if !body.closed.Load() {
		t.Error("request body not closed after a successful RoundTrip")
	}

	body = &closeRecorder{Reader: strings.NewReader("body")}
	req = newRequest(t, http.MethodPost, "ftp://"+srv.Listener.Addr().String(), body)
	req.ContentLength = 4
	if _, err := tr.RoundTrip(req); err == nil {
		t.Fatal("RoundTrip succeeded, want an error")
	}
	if !body.closed.Load() {
		t.Error("request body not closed after a failed RoundTrip")
	}
}

func TestClose(t *testing.T) {
	release := make(chan struct{})
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			_, _ = io.WriteString(w, "first ")
			w.(http.Flusher).Flush()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			_, _ = io.WriteString(w, "second")
			return
		}
		_, _ = io.WriteString(w, "ok")
	})
	tr := &Transport{}
	defer tr.Close()

	slow, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL+"/slow", nil))
	if err != nil {
		t.Fatal(err)
	}
	defer slow.Body.Close()
	get(t, tr, srv.URL) // on a second connection, left idle
	ct.wantOpened(t, 2)

	if err := tr.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	ct.waitClosed(t, 1) // the idle one

	body := &closeRecorder{Reader: strings.NewReader("x")}
	req := newRequest(t, http.MethodPost, srv.URL, body)
	if _, err := tr.RoundTrip(req); !errors.Is(err, ErrClosed) {
		t.Errorf("RoundTrip after Close: error %v, want ErrClosed", err)
	}
	if !body.closed.Load() {
		t.Error("request body not closed")
	}

	// The exchange in flight finishes; then its connection is closed.
	close(release)
	if got, err := io.ReadAll(slow.Body); err != nil || string(got) != "first second" {
		t.Errorf("body in flight %q, %v; want %q", got, err, "first second")
	}
	ct.waitClosed(t, 2)
	if err := tr.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestCloseIdleConnections(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {})
	tr := newTransport(t, &Transport{})

	get(t, tr, srv.URL)
	tr.CloseIdleConnections()
	ct.waitClosed(t, 1)
	get(t, tr, srv.URL)
	ct.wantOpened(t, 2)
}

func TestInformationalAnswers(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		wantErr bool
	}{
		{name: "103 then 200", answer: "HTTP/1.1 103 Early Hints\r\n" +
			"Link: </style.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{name: "100 and 103 then 200", answer: "HTTP/1.1 100 Continue\r\n\r\n" +
			"HTTP/1.1 103 Early Hints\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"},
		{name: "101", answer: "HTTP/1.1 101 Switching Protocols\r\n" +
			"Upgrade: websocket\r\nConnection: Upgrade\r\n\r\n", wantErr: true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			srv := newRawServer(t, func(n int, nc net.Conn) {
				if _, _, err := readRequest(bufio.NewReader(nc)); err == nil {
					_, _ = io.WriteString(nc, tc.answer)
				}
				_, _ = io.Copy(io.Discard, nc) // until the client closes
			})
			tr := newTransport(t, &Transport{})

			resp, err := tr.RoundTrip(newRequest(t, http.MethodGet, srv.URL(), nil))
			if tc.wantErr {
				if err == nil {
					_ = resp.Body.Close()
					t.Fatal("RoundTrip succeeded, want an error")
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			if resp.StatusCode != http.StatusOK || string(b) != "ok" || err != nil {
				t.Errorf("got %d %q, %v; want 200 %q", resp.StatusCode, b, err, "ok")
			}
			if link := resp.Header.Get("Link"); link != "" {
				t.Errorf("the 200 carries the 103's Link %q", link)
			}
		})
	}
}

// TestAnswerWithoutBody checks that an answer that has no body frees its
// connection at once, whether or not the caller closes the body.
func TestAnswerWithoutBody(t *testing.T) {
	srv, ct := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/empty":
			w.WriteHeader(http.StatusOK) // Content-Length: 0
		case "/no-content":
			w.WriteHeader(http.StatusNoContent)
		case "/not-modified":
			w.WriteHeader(http.StatusNotModified)
		default:
			_, _ = io.WriteString(w, "a body a HEAD does not get")
		}
	})
	tr := newTransport(t, &Transport{})

	tests := []struct{ method, path string }{
		{http.MethodGet, "/empty"},
		{http.MethodGet, "/no-content"},
		{http.MethodGet, "/not-modified"},
		{http.MethodHead, "/"},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			for _, closeBody := range []bool{false, true} {
				req := newRequest(t, tc.method, srv.URL+tc.path, nil)
				resp, err := tr.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				if closeBody {
					if err := resp.Body.Close(); err != nil {
						t.Errorf("Close: %v", err)
					}
				}
			}
		})
	}
	get(t, tr, srv.URL+"/empty")
	ct.wantOpened(t, 1)
}

// TestUnreadBytesNotReused has a server send more than its answer says:
// what is left must not be taken for the answer to the next request.
func TestUnreadBytesNotReused(t *testing.T) {
	srv := newRawServer(t, func(n int, nc net.Conn) {
		br := bufio.NewReader(nc)
		for {
			if _, _, err := readRequest(br); err != nil {
				return
			}
			// One write: the stray answer arrives with the real one.
			_, err := io.WriteString(nc, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfresh"+
				"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstale")
			if err != nil {
				return
			}
		}
	})
	tr := newTransport(t, &Transport{})

	for i := range 2 {
		if got := get(t, tr, srv.URL()); got != "fresh" {
			t.Errorf("answer %d is %q, want %q", i, got, "fresh")
		}
	}
}

func TestRequestValidation(t *testing.T) {
	var handled atomic.Int32
	srv, _ := newServer(t, func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
	})
	tr := newTransport(t, &Transport{})
	addr := srv.Listener.Addr().String()

	tests := []struct {
		name string
		req  func() *http.Request
	}{
		{"unsupported scheme", func() *http.Request {
			return newRequest(t, http.MethodGet, "ftp://"+addr+"/x", nil)
		}},
		{"no scheme", func() *http.Request {
			return &http.Request{Method: http.MethodGet, URL: &url.URL{Host: addr, Path: "/"}}
		}},
		{"no host", func() *http.Request {
			return &http.Request{Method: http.MethodGet, URL: &url.URL{Scheme: "http", Path: "/"}}
		}},
		{"no URL", func() *http.Request { return &http.Request{Method: http.MethodGet} }},
		{"body of unknown length", func() *http.Request {
			req := newRequest(t, http.MethodPost, srv.URL, strings.NewReader("data"))
			req.ContentLength = -1
			return req
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if resp, err := tr.RoundTrip(tc.req()); err == nil {
				_ = resp.Body.Close()
				t.Fatal("RoundTrip succeeded, want an error")
			}
		})
	}
	if n := handled.Load(); n != 0 {
		t.Errorf("server handled %d requests, want none", n)
	}
}

// TestHostPools checks the address each scheme and host is dialled at,
// and the name a TLS connection verifies.
func TestHostPools(t *testing.T) {
	tr := newTransport(t, &Transport{})
	tests := []struct{ scheme, host, wantAddr, wantName string }{
		{"http", "node.internal", "node.internal:80", ""},
		{"https", "node.internal", "node.internal:443", "node.internal"},
		{"http", "node.internal:8000", "node.internal:8000", ""},
		{"https", "10.0.0.7:8443", "10.0.0.7:8443", "10.0.0.7"},
		{"https", "[::1]:8443", "[::1]:8443", "::1"},
	}
	for _, tc := range tests {
		p, err := tr.pool(tc.scheme, tc.host)
		if err != nil {
			t.Fatal(err)
		}
		if p.addr != tc.wantAddr {
			t.Errorf("%s://%s dials %q, want %q", tc.scheme, tc.host, p.addr, tc.wantAddr)
		}
		if p.tls != nil && p.tls.ServerName != tc.wantName {
			t.Errorf("%s://%s verifies %q, want %q",
				tc.scheme, tc.host, p.tls.ServerName, tc.wantName)
		}
		if (p.tls != nil) != (tc.scheme == "https") {
			t.Errorf("%s://%s: TLS is %v", tc.scheme, tc.host, p.tls != nil)
		}
	}
}
