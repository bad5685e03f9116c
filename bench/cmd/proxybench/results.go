package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
)

// results is everything one run measured, as written to results.json.
type results struct {
	Command  string    `json:"command"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Machine  machine   `json:"machine"`
	Versions []version `json:"versions"`
	Params   params    `json:"params"`
	Columns  []*column `json:"columns"`
}

type version struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

// machine describes where the run happened.
type machine struct {
	CPUs       int     `json:"cpus"`
	CPUModel   string  `json:"cpu_model"`
	MemoryGiB  float64 `json:"memory_gib"`
	Kernel     string  `json:"kernel"`
	LoadBefore string  `json:"load_before"` // /proc/loadavg: others' work shows here
	LoadAfter  string  `json:"load_after"`
}

// params are the run's settings.
type params struct {
	Rates             []int   `json:"rates"`
	Rounds            int     `json:"rounds"`
	StepSeconds       float64 `json:"step_seconds"`
	WarmupSeconds     float64 `json:"warmup_seconds"`
	Concurrency       int     `json:"concurrency"`
	ThroughputSeconds float64 `json:"throughput_seconds"`
	AnswerTokens      int     `json:"answer_tokens"`
	// Streams are the stream counts of the streaming steps as asked for;
	// a contender's step may have run fewer (streamStep.Capped).
	Streams      []int   `json:"streams"`
	StreamTokens int     `json:"stream_tokens"`
	ITLMillis    float64 `json:"itl_ms"`
	RampSeconds  float64 `json:"ramp_seconds"`
	// FileLimit is RLIMIT_NOFILE of the run, which caps the streams.
	FileLimit uint64 `json:"file_limit"`
	// StreamsCapped is written by runs older than per-contender caps
	// only, and read by upgrade: those capped every contender alike,
	// wrote the capped counts to Streams and the counts asked for here.
	StreamsCapped []int `json:"streams_capped,omitempty"`
}

// column is one contender's figures.
type column struct {
	Name        string          `json:"name"`
	Label       string          `json:"label"`
	NotRun      string          `json:"not_run,omitempty"`
	AnswerBytes int64           `json:"answer_bytes"`
	Latency     []latencyStep   `json:"latency"`
	Throughput  *throughputStep `json:"throughput"`
	Streams     []streamStep    `json:"streams"`
	// PeakRSSAll is the VmHWM of both instances at the end of the run.
	PeakRSSAll int64 `json:"peak_rss_all_bytes"`
	// Upstream says how the contender reaches the simulator; "" for the
	// direct path, and for every contender in runs older than the field
	// (all of which reached it with HTTP/1.1 keep-alive).
	Upstream string `json:"upstream,omitempty"`
	// SocketsPerStream is how many sockets the contender's busiest
	// process holds per stream, from which its cap follows; 0 in runs
	// older than the field, which assumed 2 for every contender.
	SocketsPerStream int `json:"sockets_per_stream,omitempty"`
}

// latencyStep is one open-loop rate.
type latencyStep struct {
	Rate       int          `json:"rate"`
	Sent       int          `json:"sent"`
	Failed     int          `json:"failed"`
	FirstError string       `json:"first_error,omitempty"`
	Latency    summary      `json:"latency"`
	Spectrum   [][2]float64 `json:"spectrum"` // [percentile, µs]
	CPUSeconds float64      `json:"cpu_seconds"`
	CPUPer10k  float64      `json:"cpu_seconds_per_10k"`
	PeakRSS    int64        `json:"peak_rss_bytes"`
}

// throughputStep is the closed-loop step.
type throughputStep struct {
	Concurrency int     `json:"concurrency"`
	Seconds     float64 `json:"seconds"`
	Requests    int64   `json:"requests"`
	Failed      int     `json:"failed"`
	FirstError  string  `json:"first_error,omitempty"`
	RPS         float64 `json:"rps"`
	Latency     summary `json:"latency"`
	CPUSeconds  float64 `json:"cpu_seconds"`
	CPUPer10k   float64 `json:"cpu_seconds_per_10k"`
	PeakRSS     int64   `json:"peak_rss_bytes"`
}

// streamStep is one streaming step.
type streamStep struct {
	// Requested is the step's stream count as asked for (the report's
	// row), and Streams how many ran: fewer when Capped, because the
	// contender could not hold Requested streams' sockets under the
	// open-file limit.
	Requested  int     `json:"requested"`
	Capped     bool    `json:"capped"`
	Streams    int     `json:"streams"`
	Completed  int     `json:"completed"`
	Failed     int     `json:"failed"`
	FirstError string  `json:"first_error,omitempty"`
	PeakOpen   int64   `json:"peak_open"`
	TTFT       summary `json:"ttft"`
	Delay      summary `json:"event_delay"`
	PeakRSS    int64   `json:"peak_rss_bytes"`
	CPUSeconds float64 `json:"cpu_seconds"`
}

// upgrade fills in what a results.json written before per-contender
// stream caps lacks, so that the report reads it like a new one: the
// count asked for of every streaming step, and whether it was capped.
// Those runs capped every contender alike, at one count (the largest
// of Params.Streams), and listed the counts asked for, in order, in
// Params.StreamsCapped.
func (res *results) upgrade() {
	p := &res.Params
	asked := slices.Clone(p.Streams)
	if len(p.StreamsCapped) > 0 && len(p.Streams) > 0 {
		most, j := slices.Max(p.Streams), 0
		for i, n := range asked {
			if n == most && j < len(p.StreamsCapped) {
				asked[i] = p.StreamsCapped[j]
				j++
			}
		}
	}
	for _, c := range res.Columns {
		for i := range c.Streams {
			st := &c.Streams[i]
			if st.Requested != 0 {
				continue
			}
			st.Requested = st.Streams
			// Steps ran in the order of Params.Streams.
			if i < len(asked) && st.Streams == p.Streams[i] {
				st.Requested = asked[i]
			}
			st.Capped = st.Streams < st.Requested
		}
	}
	if len(p.StreamsCapped) > 0 {
		p.Streams, p.StreamsCapped = asked, nil
	}
}

func readMachine() machine {
	m := machine{CPUs: runtime.NumCPU(), LoadBefore: loadAverage()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int64
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryGiB = float64(kb) / (1 << 20)
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	return m
}

func loadAverage() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func goVersion() string { return runtime.Version() }

// profile saves a pprof profile of a CrossLogic instance that serves
// one (see bench/cmd/gatewayprof): a CPU profile over d when name
// starts with "cpu", else a heap profile after d. It returns a function
// that waits for the profile to be saved. Other contenders, and runs
// without -pprof, get a no-op.
func profile(ctx context.Context, o options, in *instance, name string,
	d time.Duration) func() {
	if in.pprofAddr == "" {
		return func() {}
	}
	url := "http://" + in.pprofAddr + "/debug/pprof/heap"
	if strings.HasPrefix(name, "cpu") {
		url = fmt.Sprintf("http://%s/debug/pprof/profile?seconds=%d", in.pprofAddr,
			max(1, int(d.Seconds())))
		d = 0
	}
	var wg sync.WaitGroup
	wg.Go(func() {
		select {
		case <-time.After(d):
		case <-ctx.Done():
			return
		}
		files := map[string]string{url: "crosslogic-" + name + ".pprof"}
		if d > 0 {
			// With the heap profile, its text form (which ends with the
			// runtime's memory statistics: stacks, heap, released) and
			// the goroutines, grouped by stack.
			base := "http://" + in.pprofAddr + "/debug/pprof/"
			files[base+"heap?debug=1"] = "crosslogic-" + name + ".txt"
			files[base+"goroutine?debug=1"] = "crosslogic-" +
				strings.Replace(name, "heap", "goroutine", 1) + ".txt"
		}
		for u, f := range files {
			if err := saveURL(ctx, u, filepath.Join(o.outDir, "profiles", f)); err != nil {
				fmt.Fprintln(os.Stderr, "proxybench: profile:", err)
			}
		}
	})
	return wg.Wait
}

func saveURL(ctx context.Context, url, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	c := &http.Client{Transport: newTransport()}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: status %d", url, resp.StatusCode)
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
