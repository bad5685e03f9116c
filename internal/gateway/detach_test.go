package gateway_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// detachFixture is the gateway fixture served the way production serves
// it: through a gateway.Listener, streams detached from net/http.
func detachFixture(t *testing.T, engine sim.Config, idle time.Duration) (*fixture,
	*gateway.Listener) {
	t.Helper()
	f := newFixture(t, fixtureOptions{engine: engine})
	srv := httptest.NewUnstartedServer(f.gateway)
	ln := gateway.NewListener(srv.Listener, idle)
	srv.Listener = ln
	f.gateway.DetachStreams(ln)
	srv.Start()
	t.Cleanup(func() {
		ln.CloseStreams()
		srv.CloseClientConnections()
		srv.Close()
	})
	f.gw = srv
	return f, ln
}

const streamBody = `{"model":"` + modelB + `","stream":true,"max_tokens":12,` +
	`"messages":[{"role":"user","content":"detach me"}]}`

// readStream reads an SSE answer to its end and returns its data lines.
func readStream(t *testing.T, r io.Reader) []string {
	t.Helper()
	var data []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if d, ok := strings.CutPrefix(sc.Text(), "data: "); ok {
			data = append(data, d)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("reading the stream: %v", err)
	}
	if len(data) == 0 || data[len(data)-1] != "[DONE]" {
		t.Fatalf("stream did not end with [DONE]: %q", data)
	}
	return data
}

// TestDetachedStreamKeepsTheConnection: a detached stream is relayed
// whole, and the client's connection carries its next requests.
func TestDetachedStreamKeepsTheConnection(t *testing.T) {
	f, ln := detachFixture(t, sim.Config{TimeBetweenTokens: time.Millisecond}, time.Minute)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	t.Cleanup(client.CloseIdleConnections)

	var reused []bool
	do := func(body string) *http.Response {
		trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
			reused = append(reused, i.Reused)
		}}
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(),
			trace), http.MethodPost, f.gw.URL+"/v1/chat/completions", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+f.key)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}

	for i := range 2 {
		resp := do(streamBody)
		if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Request-Id") == "" ||
			!strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			t.Fatalf("stream %d: status %d, headers %v", i, resp.StatusCode, resp.Header)
		}
		if data := readStream(t, resp.Body); len(data) < 12 {
			t.Fatalf("stream %d: %d events, want at least 12", i, len(data))
		}
		resp.Body.Close()
		resp = do(`{"model":"` + modelB + `","max_tokens":3,` +
			`"messages":[{"role":"user","content":"hi"}]}`)
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "chat.completion") {
			t.Fatalf("request after stream %d: %d %s", i, resp.StatusCode, b)
		}
	}
	if fmt.Sprint(reused) != "[false true true true]" {
		t.Fatalf("connection reused per request = %v, want one connection for all", reused)
	}
	waitFor(t, func() bool { return ln.Streams() == 0 }, "no detached stream left")
}

// TestDetachedStreamPipelined: a request the client sent behind a stream,
// before the stream's answer, reaches the server when the stream ends.
func TestDetachedStreamPipelined(t *testing.T) {
	f, _ := detachFixture(t, sim.Config{TimeBetweenTokens: time.Millisecond}, time.Minute)
	conn := dialGateway(t, f)
	second := `{"model":"` + modelB + `","max_tokens":3,"messages":[{"role":"user",` +
		`"content":"second"}]}`
	_, err := fmt.Fprintf(conn, "%s%s", rawRequest(f, streamBody, ""), rawRequest(f, second, ""))
	if err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	readStream(t, resp.Body)
	resp, err = http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("the pipelined request got no answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(b), "chat.completion") {
		t.Fatalf("pipelined request: %d %s", resp.StatusCode, b)
	}
}

// TestDetachedStreamClientGone: a client that leaves a detached stream
// cancels the engine's request, and the stream is let go.
func TestDetachedStreamClientGone(t *testing.T) {
	f, ln := detachFixture(t, sim.Config{TimeBetweenTokens: 20 * time.Millisecond},
		time.Minute)
	conn, resp := startLongStream(t, f)
	if _, err := bufio.NewReader(resp.Body).ReadString('\n'); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return ln.Streams() == 1 }, "the stream to be detached")
	conn.Close()

	engine := f.engines["node-b1"]
	waitFor(t, func() bool { return engine.Stats().Cancelled == 1 && ln.Streams() == 0 },
		"the engine's request cancelled and the stream let go")
}

// TestDetachedConnectionIdle: a connection given back after a stream is
// closed when its client stays silent for the idle timeout.
func TestDetachedConnectionIdle(t *testing.T) {
	f, _ := detachFixture(t, sim.Config{TimeBetweenTokens: time.Millisecond},
		50*time.Millisecond)
	conn := dialGateway(t, f)
	br := bufio.NewReader(conn)
	resp := exchangeRaw(t, conn, br, rawRequest(f, streamBody, ""))
	readStream(t, resp.Body)
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection after a stream: read err = %v, want EOF", err)
	}
}

// TestNotDetached: a client that asks to close, or speaks HTTP/1.0, is
// served by net/http as before.
func TestNotDetached(t *testing.T) {
	f, ln := detachFixture(t, sim.Config{TimeBetweenTokens: time.Millisecond}, time.Minute)
	for _, tc := range []struct{ name, proto, extra string }{
		{"connection close", "HTTP/1.1", "Connection: close\r\n"},
		{"HTTP/1.0", "HTTP/1.0", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn := dialGateway(t, f)
			req := strings.Replace(rawRequest(f, streamBody, tc.extra), "HTTP/1.1", tc.proto, 1)
			resp := exchangeRaw(t, conn, bufio.NewReader(conn), req)
			readStream(t, resp.Body)
			if !resp.Close {
				t.Errorf("answer keeps the connection open, want it closed by net/http")
			}
			if ln.Streams() != 0 {
				t.Errorf("%d streams detached, want none", ln.Streams())
			}
		})
	}
}

// TestDetachedStreamsDrain: Wait waits for detached streams, which the
// server's Shutdown does not see, and CloseStreams ends them.
func TestDetachedStreamsDrain(t *testing.T) {
	f, ln := detachFixture(t, sim.Config{TimeBetweenTokens: 20 * time.Millisecond},
		time.Minute)
	_, resp := startLongStream(t, f)
	waitFor(t, func() bool { return ln.Streams() == 1 }, "the stream to be detached")

	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := ln.Wait(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait with a stream running = %v, want DeadlineExceeded", err)
	}
	ln.CloseStreams()
	if _, err := io.Copy(io.Discard, resp.Body); err == nil {
		t.Fatal("stream closed by CloseStreams read to a clean end, want it cut")
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := ln.Wait(ctx); err != nil {
		t.Fatalf("Wait after CloseStreams: %v", err)
	}
}

// dialGateway opens a raw connection to the fixture's gateway.
func dialGateway(t *testing.T, f *fixture) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(f.gw.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// rawRequest is an HTTP/1.1 chat completion request for body, with extra
// header lines.
func rawRequest(f *fixture, body, extra string) string {
	return fmt.Sprintf("POST /v1/chat/completions HTTP/1.1\r\nHost: gateway\r\n"+
		"Authorization: Bearer %s\r\nContent-Type: application/json\r\n%s"+
		"Content-Length: %d\r\n\r\n%s", f.key, extra, len(body), body)
}

// TestDetachedClientGoneBeforeFirstToken: a client that leaves while the
// node has not answered yet cancels the engine's request at once, not at
// the first token.
func TestDetachedClientGoneBeforeFirstToken(t *testing.T) {
	f, ln := detachFixture(t, sim.Config{TimeToFirstToken: time.Minute}, time.Minute)
	conn := dialGateway(t, f)
	if _, err := io.WriteString(conn, rawRequest(f, streamBody, "")); err != nil {
		t.Fatal(err)
	}
	engine := f.engines["node-b1"]
	waitFor(t, func() bool { return engine.Stats().Running == 1 && ln.Streams() == 1 },
		"the stream to reach the engine")
	conn.Close()
	waitFor(t, func() bool { return engine.Stats().Cancelled == 1 && ln.Streams() == 0 },
		"the engine's request cancelled before its first token")
}

// TestDetachedErrorAnswer: a detached stream that no node can serve is
// answered with OpenAI's error shape and its status, and the connection
// carries the client's next request.
func TestDetachedErrorAnswer(t *testing.T) {
	f, _ := detachFixture(t, sim.Config{TimeBetweenTokens: time.Millisecond}, time.Minute)
	f.addReadyNode(t, registry.Spec{ID: "node-dead", Endpoint: "http://127.0.0.1:1",
		Models: []string{"model-dead"}})
	conn := dialGateway(t, f)
	body := `{"model":"model-dead","stream":true,"messages":[{"role":"user","content":"x"}]}`
	br := bufio.NewReader(conn)
	resp := exchangeRaw(t, conn, br, rawRequest(f, body, ""))
	if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("X-Request-Id") == "" {
		t.Fatalf("status %d, headers %v; want 502 with X-Request-Id", resp.StatusCode,
			resp.Header)
	}
	if code := decodeError(t, resp); code == "" {
		t.Error("error answer without a code")
	}
	// The same connection serves the next request.
	readStream(t, exchangeRaw(t, conn, br, rawRequest(f, streamBody, "")).Body)
}

// startLongStream sends a stream of 5,000 tokens on a raw connection
// and reads the head of its answer.
func startLongStream(t *testing.T, f *fixture) (net.Conn, *http.Response) {
	t.Helper()
	conn := dialGateway(t, f)
	long := strings.Replace(streamBody, `"max_tokens":12`, `"max_tokens":5000`, 1)
	return conn, exchangeRaw(t, conn, bufio.NewReader(conn), rawRequest(f, long, ""))
}

// TestListenerCloseEndsIdleConnections: closing the listener, as the
// server's Shutdown does, closes connections given back after a stream
// that wait for their client's next request.
func TestListenerCloseEndsIdleConnections(t *testing.T) {
	f, ln := detachFixture(t, sim.Config{TimeBetweenTokens: time.Millisecond}, time.Hour)
	conn := dialGateway(t, f)
	br := bufio.NewReader(conn)
	resp := exchangeRaw(t, conn, br, rawRequest(f, streamBody, ""))
	readStream(t, resp.Body)
	waitFor(t, func() bool { return ln.Streams() == 0 }, "the stream to end")
	ln.Close()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := br.ReadByte(); !errors.Is(err, io.EOF) {
		t.Fatalf("idle connection after Close: read err = %v, want EOF", err)
	}
}

// exchangeRaw writes the raw request req on conn and reads the head of
// the answer from br, conn's reader.
func exchangeRaw(t *testing.T, conn net.Conn, br *bufio.Reader, req string) *http.Response {
	t.Helper()
	if _, err := io.WriteString(conn, req); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}
