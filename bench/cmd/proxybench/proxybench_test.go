package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDistAt(t *testing.T) {
	ms := func(n ...int) []time.Duration {
		var d []time.Duration
		for _, v := range n {
			d = append(d, time.Duration(v)*time.Millisecond)
		}
		return d
	}
	tests := []struct {
		name    string
		samples []time.Duration
		p       float64
		want    time.Duration
	}{
		{"median of odd count", ms(5, 1, 3), 50, 3 * time.Millisecond},
		// Nearest rank: the smallest sample with at least p% at or below.
		{"p50 of even count", ms(4, 1, 3, 2), 50, 2 * time.Millisecond},
		{"p99 of 100 is the 99th", ms(seq(100)...), 99, 99 * time.Millisecond},
		{"max", ms(7, 9, 8), 100, 9 * time.Millisecond},
		{"failure ranks last", append(ms(1, 2, 3), failed), 100, failed},
		{"empty", nil, 50, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := newDist(tt.samples).at(tt.p); got != tt.want {
				t.Errorf("at(%v) = %v, want %v", tt.p, got, tt.want)
			}
		})
	}
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i + 1
	}
	return s
}

func TestCheckLoopback(t *testing.T) {
	for addr, ok := range map[string]bool{
		"127.0.0.1:80": true, "127.0.0.2:80": true, "[::1]:80": true,
		"10.0.0.1:80": false, "192.168.1.1:80": false, "example.com:80": false,
		"localhost:80": false, // names are not resolved: only literal IPs pass
	} {
		if err := checkLoopback(addr); (err == nil) != ok {
			t.Errorf("checkLoopback(%q) = %v, want allowed %v", addr, err, ok)
		}
	}
}

func TestThousands(t *testing.T) {
	for n, want := range map[int]string{0: "0", 999: "999", 1000: "1,000",
		9900: "9,900", 1234567: "1,234,567", -2000: "-2,000"} {
		if got := thousands(n); got != want {
			t.Errorf("thousands(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestSplice(t *testing.T) {
	tests := []struct {
		name, doc, want string
	}{
		{"no file yet", "", beginMarker + "\n\nnew\n" + endMarker + "\n"},
		{"appended after the prose", "# Doc\n",
			"# Doc\n\n" + beginMarker + "\n\nnew\n" + endMarker + "\n"},
		{"replaced between markers, the rest kept",
			"# Doc\n" + beginMarker + "\nold\n" + endMarker + "\ntail\n",
			"# Doc\n" + beginMarker + "\n\nnew\n" + endMarker + "\ntail\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "doc.md")
			if tt.doc != "" {
				if err := os.WriteFile(path, []byte(tt.doc), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if err := splice(path, "new"); err != nil {
				t.Fatal(err)
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStreamCap(t *testing.T) {
	tests := []struct {
		name             string
		limit            uint64
		perStream, extra int
		want             int
	}{
		{"two sockets per stream", 20_000, 2, 0, 9_900},
		{"one socket per stream", 20_000, 1, 0, 19_800},
		{"one, with multiplexed upstreams", 20_000, 1, h2cConns, 19_700},
		{"limit below the margin", 150, 2, 0, 0},
		{"limit unknown", 0, 2, 0, math.MaxInt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := streamCap(tt.limit, tt.perStream, tt.extra); got != tt.want {
				t.Errorf("streamCap(%d, %d, %d) = %d, want %d",
					tt.limit, tt.perStream, tt.extra, got, tt.want)
			}
		})
	}

	// Under this machine's limit of 20,000, CrossLogic and the direct
	// path carry the largest step and the other proxies do not.
	for _, c := range contenders {
		got := c.maxStreams(20_000)
		if wantAll := c.perStream == 1; (got >= 10_000) != wantAll {
			t.Errorf("%s: maxStreams(20,000) = %d; want ≥ 10,000: %t", c.name, got, wantAll)
		}
	}
}

// cappedResults is a run under a limit of 20,000 in which the step of
// 10,000 streams ran in full for direct and CrossLogic and capped to
// 9,900 for nginx and Caddy.
func cappedResults() *results {
	step := func(asked, ran, completed int, rssMB int64) streamStep {
		return streamStep{Requested: asked, Capped: ran < asked, Streams: ran,
			Completed: completed, PeakOpen: int64(completed), PeakRSS: rssMB << 20,
			TTFT: summary{P50: 1000, P99: 2000}, Delay: summary{P50: 500, P99: 900}}
	}
	col := func(c contender, small, big streamStep) *column {
		return &column{Name: c.name, Label: c.label, Upstream: c.upstream,
			SocketsPerStream: c.perStream, Streams: []streamStep{small, big}}
	}
	byName := map[string]contender{}
	for _, c := range contenders {
		byName[c.name] = c
	}
	return &results{
		Params: params{Rates: []int{1000}, Streams: []int{1000, 10_000}, FileLimit: 20_000},
		Columns: []*column{
			col(byName["direct"], step(1000, 1000, 1000, 0), step(10_000, 10_000, 10_000, 0)),
			col(byName["crosslogic"], step(1000, 1000, 1000, 40),
				step(10_000, 10_000, 10_000, 250)),
			col(byName["nginx"], step(1000, 1000, 1000, 20), step(10_000, 9_900, 9_900, 200)),
			col(byName["caddy"], step(1000, 1000, 1000, 90), step(10_000, 9_900, 9_850, 900)),
		},
	}
}

func TestMarkdownCapped(t *testing.T) {
	md := markdown(cappedResults(), "", nil)
	for _, want := range []string{
		// Rows keep the count asked for; capped cells say what ran.
		"| 10,000: completed | 10,000 | 10,000 | 9,900 of 9,900 (capped) | " +
			"9,850 of 9,900 (capped) |",
		"**Capped.** nginx and Caddy ran the step of 10,000 streams with 9,900:",
		"open-file limit of this run was 20,000",
		"nginx and Caddy hold two sockets per stream",
		"CrossLogic holds one, as its streams to the simulator share",
		"CrossLogic reaches the simulator with " + h2cUpstream +
			"; nginx and Caddy with HTTP/1.1 keep-alive.",
		"| ≥ 10,000 concurrent streams, peak RSS < 300 MB | 10,000 of 10,000 completed, " +
			"10,000 open at once, 250 MB | yes |",
		// Caddy ran fewer: per-stream figures compared, RSS not.
		"| ahead of Caddy on every figure | ahead on all; not compared: " +
			"10,000 streams RSS (10,000 vs 9,900 streams ran) | yes |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q; got:\n%s", want, md)
		}
	}
}

func TestBehindOnCapped(t *testing.T) {
	res := cappedResults()
	cl, caddy := res.column("crosslogic"), res.column("caddy")

	// CrossLogic capped below its rival: the step is not compared.
	cl.Streams[1].Streams, cl.Streams[1].Capped, cl.Streams[1].Completed = 9_000, true, 9_000
	caddy.Streams[1].Streams, caddy.Streams[1].Capped = 10_000, false
	behind, skipped := behindOn(res, cl, caddy)
	if len(behind) != 0 || len(skipped) != 1 ||
		!strings.HasPrefix(skipped[0], "10,000 streams every figure") {
		t.Errorf("behindOn = %q, %q; want nothing behind, the 10,000 step skipped",
			behind, skipped)
	}

	// Same counts: every figure, RSS too; CrossLogic's 9,000 completed
	// are now behind Caddy's 9,850.
	cl.Streams[1].Streams, cl.Streams[1].Capped = 10_000, false
	behind, skipped = behindOn(res, cl, caddy)
	if len(skipped) != 0 || !slices.Contains(behind, "10,000 streams completed") {
		t.Errorf("behindOn = %q, %q; want behind on completed, nothing skipped",
			behind, skipped)
	}
}

func TestUpgradeLegacy(t *testing.T) {
	// As written before per-contender caps: every contender capped to
	// 9,900, the counts asked for in streams_capped.
	legacy := `{"params": {"rates": [1000], "streams": [1000, 9900],
		"streams_capped": [10000], "file_limit": 20000},
	  "columns": [{"name": "crosslogic", "label": "CrossLogic", "streams": [
		{"streams": 1000, "completed": 1000, "peak_open": 1000},
		{"streams": 9900, "completed": 9900, "peak_open": 9900}]}]}`
	var res results
	if err := json.Unmarshal([]byte(legacy), &res); err != nil {
		t.Fatal(err)
	}
	res.upgrade()
	if got, want := res.Params.Streams, []int{1000, 10_000}; !slices.Equal(got, want) {
		t.Errorf("params.streams = %v, want %v", got, want)
	}
	got := res.Columns[0].Streams
	if got[0].Requested != 1000 || got[0].Capped {
		t.Errorf("step 0: requested %d capped %t, want 1000 false", got[0].Requested,
			got[0].Capped)
	}
	if got[1].Requested != 10_000 || !got[1].Capped || got[1].Streams != 9_900 {
		t.Errorf("step 1: requested %d capped %t streams %d, want 10000 true 9900",
			got[1].Requested, got[1].Capped, got[1].Streams)
	}

	md := markdown(&res, "", nil)
	for _, want := range []string{
		"| 10,000: completed | 9,900 of 9,900 (capped) |",
		"Every contender ran the step of 10,000 streams with 9,900",
		"older than per-contender caps",
		"CrossLogic reaches the simulator with HTTP/1.1 keep-alive.",
		"not measured; yes at 9,900",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q; got:\n%s", want, md)
		}
	}

	// A new file is left as it is.
	fresh := cappedResults()
	fresh.upgrade()
	if st := fresh.column("nginx").Streams[1]; st.Requested != 10_000 || !st.Capped {
		t.Errorf("new file changed: %+v", st)
	}
}
