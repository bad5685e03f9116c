package gateway_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
	"github.com/crosslogic/crosslogic/internal/store"
)

// benchBody is a typical small chat request; the simulator answers it
// with 16 tokens and no delay, so what is measured is the HTTP path.
var benchBody = []byte(`{"model":"` + modelA + `","messages":[` +
	`{"role":"system","content":"You are a helpful assistant."},` +
	`{"role":"user","content":"Write one sentence about spot GPUs."}],"max_tokens":16}`)

// benchPaths starts a zero-delay simulator and a gateway in front of it,
// and returns a request function for each path.
func benchPaths(b *testing.B) (direct, viaGateway func() error) {
	b.Helper()
	engine, err := sim.New(sim.Config{Models: []string{modelA}})
	if err != nil {
		b.Fatal(err)
	}
	node := httptest.NewServer(engine.Handler())
	b.Cleanup(node.Close)

	reg := registry.New(nil)
	if err := reg.Add(registry.Spec{ID: "n1", Endpoint: node.URL,
		Models: []string{modelA}}); err != nil {
		b.Fatal(err)
	}
	reg.ReportHealth(reg.Nodes()[0], nil, 1)
	key, _ := apikey.Generate()
	keys := new(apikey.Keyring)
	keys.Replace([]store.APIKey{{ID: "key_bench", Hash: key.Digest[:]}})
	gw := httptest.NewServer(gateway.New(gateway.Options{Keys: keys, Registry: reg}))
	b.Cleanup(gw.Close)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	do := func(url, auth string) func() error {
		return func() error {
			req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(benchBody))
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
			return nil
		}
	}
	return do(node.URL+"/v1/chat/completions", ""),
		do(gw.URL+"/v1/chat/completions", "Bearer "+key.Secret)
}

// BenchmarkAddedLatency alternates a direct request to the engine with
// one through the gateway, so both paths see the same machine state, and
// reports the medians and the gateway's added median and p99.
func BenchmarkAddedLatency(b *testing.B) {
	direct, viaGateway := benchPaths(b)
	for range 200 { // warm connection pools on both paths
		_ = direct()
		_ = viaGateway()
	}
	var d, g []time.Duration
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		if err := direct(); err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		if err := viaGateway(); err != nil {
			b.Fatal(err)
		}
		t2 := time.Now()
		d, g = append(d, t1.Sub(t0)), append(g, t2.Sub(t1))
	}
	b.StopTimer()
	pd, pg := percentile(d, 50), percentile(g, 50)
	b.ReportMetric(us(pd), "direct-p50-µs")
	b.ReportMetric(us(pg), "gateway-p50-µs")
	b.ReportMetric(us(pg-pd), "added-p50-µs")
	b.ReportMetric(us(percentile(g, 99)-percentile(d, 99)), "added-p99-µs")
}

// BenchmarkRequest measures each path alone, with allocations: the
// gateway's own allocations per request are the difference.
func BenchmarkRequest(b *testing.B) {
	direct, viaGateway := benchPaths(b)
	for _, bm := range []struct {
		name string
		do   func() error
	}{{"direct", direct}, {"gateway", viaGateway}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := bm.do(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func percentile(d []time.Duration, p int) time.Duration {
	if len(d) == 0 {
		return 0
	}
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}

func us(d time.Duration) float64 { return float64(d) / float64(time.Microsecond) }
