package upstream

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchmarkRoundTrip sends GETs in parallel through rt to a server that
// answers 1 KiB, reading each answer to its end.
func benchmarkRoundTrip(b *testing.B, rt http.RoundTripper) {
	answer := strings.Repeat("x", 1<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, answer)
	}))
	defer srv.Close()
	target := srv.URL + "/v1/models"

	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			req, err := http.NewRequest(http.MethodGet, target, nil)
			if err != nil {
				b.Error(err)
				return
			}
			resp, err := rt.RoundTrip(req)
			if err != nil {
				b.Error(err)
				return
			}
			n, err := io.Copy(io.Discard, resp.Body)
			_ = resp.Body.Close()
			if err != nil || n != int64(len(answer)) {
				b.Errorf("read %d bytes, %v; want %d", n, err, len(answer))
				return
			}
		}
	})
}

func BenchmarkRoundTrip(b *testing.B) {
	tr := &Transport{}
	defer tr.Close()
	benchmarkRoundTrip(b, tr)
}

// BenchmarkRoundTripNetHTTP is BenchmarkRoundTrip with net/http's
// Transport, for comparison.
func BenchmarkRoundTripNetHTTP(b *testing.B) {
	tr := &http.Transport{MaxIdleConnsPerHost: 256}
	defer tr.CloseIdleConnections()
	benchmarkRoundTrip(b, tr)
}
