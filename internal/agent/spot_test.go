package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
)

// newMetadataServer serves h as a cloud's metadata service and returns
// its URL.
func newMetadataServer(t *testing.T, h http.HandlerFunc) string {
	t.Helper()
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return ts.URL
}

func TestSpotWatcherAWS(t *testing.T) {
	const token = "imds-token"
	var noticed atomic.Bool
	var tokens atomic.Int32
	url := newMetadataServer(t, func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPut && r.URL.Path == "/latest/api/token":
			if r.Header.Get("X-aws-ec2-metadata-token-ttl-seconds") == "" {
				http.Error(w, "no ttl", http.StatusBadRequest)
				return
			}
			tokens.Add(1)
			io.WriteString(w, token)
		case r.Header.Get("X-aws-ec2-metadata-token") != token:
			// IMDSv2 required.
			http.Error(w, "", http.StatusUnauthorized)
		case r.URL.Path != "/latest/meta-data/spot/instance-action":
			http.NotFound(w, r)
		case noticed.Load():
			io.WriteString(w, `{"action": "terminate", "time": "2026-03-02T10:32:00Z"}`)
		default:
			http.NotFound(w, r)
		}
	})
	w := &SpotWatcher{Provider: SpotAWS, BaseURL: url}
	ctx := context.Background()

	if n, err := w.Check(ctx); n != "" || err != nil {
		t.Fatalf("Check before a notice: got %q, %v; want none", n, err)
	}
	noticed.Store(true)
	n, err := w.Check(ctx)
	if want := "spot interruption: terminate at 2026-03-02T10:32:00Z"; n != want || err != nil {
		t.Errorf("Check after a notice: got %q, %v; want %q", n, err, want)
	}
	if got := tokens.Load(); got != 1 {
		t.Errorf("tokens fetched: got %d, want 1 (reused)", got)
	}
}

func TestSpotWatcherAWSWithoutIMDSv2(t *testing.T) {
	url := newMetadataServer(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPut {
			http.Error(w, "", http.StatusForbidden) // token endpoint disabled
			return
		}
		io.WriteString(w, `{"action": "stop", "time": "soon"}`)
	})
	w := &SpotWatcher{Provider: SpotAWS, BaseURL: url}
	n, err := w.Check(context.Background())
	if n != "spot interruption: stop at soon" || err != nil {
		t.Errorf("Check: got %q, %v", n, err)
	}
}

func TestSpotWatcherGCP(t *testing.T) {
	tests := []struct {
		name    string
		answer  string
		status  int
		want    string
		wantErr bool
	}{
		{name: "not preempted", answer: "FALSE", status: http.StatusOK},
		{name: "preempted", answer: "TRUE", status: http.StatusOK,
			want: "spot interruption: preempted"},
		{name: "metadata error", status: http.StatusInternalServerError, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url := newMetadataServer(t, func(w http.ResponseWriter, r *http.Request) {
				if r.Header.Get("Metadata-Flavor") != "Google" ||
					r.URL.Path != "/computeMetadata/v1/instance/preempted" {
					http.Error(w, "", http.StatusForbidden)
					return
				}
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.answer)
			})
			w := &SpotWatcher{Provider: SpotGCP, BaseURL: url}
			n, err := w.Check(context.Background())
			if n != tt.want || (err != nil) != tt.wantErr {
				t.Errorf("Check: got %q, %v; want %q, error %v", n, err, tt.want, tt.wantErr)
			}
		})
	}
}
