package sim_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// The benchmarks measure the simulator's own overhead, with no delays:
// the handler alone (what a gateway benchmark pays per request for the
// node) and the whole loopback round trip.

// discardWriter is a reusable http.ResponseWriter that keeps nothing.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { w.n += len(b); return len(b), nil }
func (w *discardWriter) Flush()                      {}

// rewindBody is a request body that can be read again.
type rewindBody struct{ bytes.Reader }

func (*rewindBody) Close() error { return nil }

func benchHandler(b *testing.B, path, body string) {
	b.Helper()
	s, err := sim.New(sim.Config{Models: []string{"m"}})
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	rb := &rewindBody{}
	req, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		"http://sim"+path, rb)
	if err != nil {
		b.Fatal(err)
	}
	w := &discardWriter{h: http.Header{}}
	data := []byte(body)

	b.ReportAllocs()
	for b.Loop() {
		rb.Reset(data)
		w.status = 0
		h.ServeHTTP(w, req)
		if w.status != http.StatusOK {
			b.Fatalf("got status %d, want 200", w.status)
		}
	}
	b.SetBytes(int64(w.n) / int64(b.N))
}

const benchChat = `{"model":"m","messages":[` +
	`{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"Write a short poem about the sea."}],"max_tokens":16}`

func BenchmarkHandlerChat(b *testing.B) {
	benchHandler(b, "/v1/chat/completions", benchChat)
}

func BenchmarkHandlerChatStream(b *testing.B) {
	benchHandler(b, "/v1/chat/completions",
		strings.Replace(benchChat, `"max_tokens":16`,
			`"max_tokens":16,"stream":true,"stream_options":{"include_usage":true}`, 1))
}

func BenchmarkHandlerCompletion(b *testing.B) {
	benchHandler(b, "/v1/completions",
		`{"model":"m","prompt":"Write a short poem about the sea.","max_tokens":16}`)
}

func BenchmarkHandlerEmbedding(b *testing.B) {
	benchHandler(b, "/v1/embeddings", `{"model":"m","input":"Write a short poem."}`)
}

func BenchmarkLoopbackChat(b *testing.B) {
	r, err := sim.Start(sim.Config{Models: []string{"m"}})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { r.Close() })
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	b.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Post(r.URL+"/v1/chat/completions", "application/json",
				strings.NewReader(benchChat))
			if err != nil {
				b.Error(err)
				return
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Errorf("got status %d, want 200", resp.StatusCode)
				return
			}
		}
	})
}
