// Command proxybench measures what a proxy in front of an inference
// engine costs: CrossLogic's gateway side by side with nginx, HAProxy,
// Caddy and the Portkey gateway, and the direct path as the floor, all
// on loopback in one run.
//
// It starts two simulator engines (`crosslogic sim`): one answering at
// once, for non-streaming requests, and one pacing tokens, for streams.
// Each contender runs as its own processes, one instance in front of
// each simulator, so that its CPU time and resident memory can be read
// from /proc. Then, one contender after another within each step (the
// non-streaming steps in rounds that visit every contender in turn):
//
//   - open-loop latency: requests at fixed rates, each timed from its
//     scheduled send time, so that a proxy's queueing is not hidden by
//     the load generator waiting for it;
//   - throughput: a fixed number of workers sending back to back;
//   - streaming: N concurrent SSE streams of T tokens at a fixed time
//     between tokens, timing every token event against its schedule.
//
// Results go to results.json, two PNG plots (drawn with gnuplot) and a
// Markdown section spliced into docs/benchmarks.md between markers.
// bench/run.sh installs the proxies and runs it; see docs/benchmarks.md.
//
// Every load loop is bounded in requests and in time, and the load
// generator dials nothing but loopback addresses.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// benchModel is the model name both simulators serve.
const benchModel = "bench-model"

// options are the command-line flags.
type options struct {
	crosslogic  string // the crosslogic binary: simulator, admin CLI, gateway
	pprofServer string // runs as the gateway instead, serving pprof
	node        string // node binary, for Portkey
	portkeyDir  string // holds node_modules/@portkey-ai/gateway
	workDir     string // scratch: configs, logs and data of every process
	outDir      string // results.json, plots, report.md, profiles
	doc         string // Markdown file the report is spliced into
	command     string // shown in the report
	only        []string
	reportOnly  string
	serverEnv   []string // extra environment of the CrossLogic gateway

	rates        []int
	rounds       int
	step, warmup time.Duration
	concurrency  int
	throughput   time.Duration
	answerTokens int

	streams      []int
	streamTokens int
	itl          time.Duration
	ramp         time.Duration
}

func parseFlags(args []string) (options, error) {
	var o options
	fs := flag.NewFlagSet("proxybench", flag.ContinueOnError)
	fs.StringVar(&o.crosslogic, "crosslogic", "", "crosslogic `binary` (required)")
	fs.StringVar(&o.pprofServer, "pprof-server", "", "run this `binary` (bench/cmd/gatewayprof) "+
		"as the gateway and save its CPU and heap profiles")
	fs.StringVar(&o.node, "node", "node", "node `binary` for Portkey")
	fs.StringVar(&o.portkeyDir, "portkey", "", "`directory` holding node_modules/@portkey-ai/gateway")
	fs.StringVar(&o.workDir, "work", "bench/.cache/run", "scratch `directory`, emptied first")
	fs.StringVar(&o.outDir, "out", "bench/results", "`directory` for results.json, plots and profiles")
	fs.StringVar(&o.doc, "doc", "docs/benchmarks.md",
		"Markdown `file` to splice the report into (empty: none)")
	fs.StringVar(&o.command, "command", "", "the command to show in the report (default: this one)")
	only := fs.String("only", "", "comma-separated contenders to run (default: all)")
	fs.Func("crosslogic-env", "`KEY=VALUE` added to the gateway's environment, such as "+
		"GOGC=200 (repeatable; for experiments)", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		o.serverEnv = append(o.serverEnv, v)
		return nil
	})
	fs.StringVar(&o.reportOnly, "report-only", "",
		"rewrite the report from this results.json `file` and exit")
	rates := fs.String("rates", "500,1000,2000", "open-loop request `rates` per second")
	fs.DurationVar(&o.step, "step", 10*time.Second, "duration of each open-loop step")
	fs.IntVar(&o.rounds, "rounds", 5, "rounds each non-streaming step is cut into, "+
		"visiting every contender in turn")
	fs.DurationVar(&o.warmup, "warmup", time.Second, "unmeasured load before each step")
	fs.IntVar(&o.concurrency, "concurrency", 64, "workers of the throughput step")
	fs.DurationVar(&o.throughput, "throughput-duration", 10*time.Second,
		"duration of the throughput step")
	fs.IntVar(&o.answerTokens, "answer-tokens", 128,
		"max_tokens of non-streaming requests (128 ≈ 1 KB answer)")
	streams := fs.String("streams", "1000,5000,10000",
		"concurrent SSE `streams` of each streaming step")
	fs.IntVar(&o.streamTokens, "stream-tokens", 16, "token events per stream")
	fs.DurationVar(&o.itl, "itl", 500*time.Millisecond,
		"time between tokens of the streaming simulator")
	fs.DurationVar(&o.ramp, "ramp", 2*time.Second, "stream starts are spread over this")
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	if o.reportOnly != "" {
		return o, nil
	}
	if o.crosslogic == "" {
		return o, errors.New("-crosslogic is required")
	}
	// Children run in their own directories: relative paths would break.
	for _, p := range []*string{&o.crosslogic, &o.pprofServer, &o.portkeyDir, &o.workDir} {
		if *p != "" {
			abs, err := filepath.Abs(*p)
			if err != nil {
				return o, err
			}
			*p = abs
		}
	}
	if *only != "" {
		o.only = strings.Split(*only, ",")
	}
	if o.command == "" {
		o.command = "proxybench " + strings.Join(args, " ")
	}
	var err1, err2 error
	o.rates, err1 = parseInts(*rates)
	o.streams, err2 = parseInts(*streams)
	if err := errors.Join(err1, err2); err != nil {
		return o, err
	}
	if o.rounds < 1 {
		return o, errors.New("-rounds must be at least 1")
	}
	if o.ramp >= time.Duration(o.streamTokens)*o.itl {
		return o, errors.New("-ramp must be shorter than a stream, or streams would not overlap")
	}
	return o, nil
}

// fileMargin is what a process holds besides its streams' sockets:
// listeners, logs, idle pooled connections and the runtime's own
// descriptors.
const fileMargin = 200

// fileLimit is this process's open-file limit (RLIMIT_NOFILE), which
// every child inherits; 0 when it cannot be read.
func fileLimit() uint64 {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0
	}
	return rl.Cur
}

// streamCap is the most concurrent streams a process can carry under
// the open-file limit when it holds perStream sockets for each stream
// and extra descriptors beyond fileMargin: (limit − fileMargin − extra)
// ÷ perStream. A limit of 0 (unknown) caps nothing.
func streamCap(limit uint64, perStream, extra int) int {
	if limit == 0 || perStream <= 0 {
		return math.MaxInt
	}
	fixed := uint64(fileMargin + max(extra, 0))
	if limit <= fixed {
		return 0
	}
	return int((limit - fixed) / uint64(perStream))
}

func parseInts(s string) ([]int, error) {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("bad number %q in %q", f, s)
		}
		out = append(out, n)
	}
	return out, nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(ctx, log, os.Args[1:]); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "proxybench:", err)
		}
		os.Exit(1)
	}
}

func run(ctx context.Context, log *slog.Logger, args []string) error {
	o, err := parseFlags(args)
	if err != nil {
		return err
	}
	if o.reportOnly != "" {
		b, err := os.ReadFile(o.reportOnly)
		if err != nil {
			return err
		}
		var res results
		if err := json.Unmarshal(b, &res); err != nil {
			return fmt.Errorf("%s: %w", o.reportOnly, err)
		}
		res.upgrade()
		return writeReport(log, &res, filepath.Dir(o.reportOnly), o.doc)
	}

	if err := os.MkdirAll(o.outDir, 0o755); err != nil {
		return err
	}
	res, err := bench(ctx, log, o)
	if err != nil {
		return err
	}
	b, err := json.MarshalIndent(res, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(o.outDir, "results.json"), b, 0o644); err != nil {
		return err
	}
	return writeReport(log, res, o.outDir, o.doc)
}

// running is a contender with its two instances.
type running struct {
	col           *column
	fast, streams *instance
	maxStreams    int // the most streams it can carry (contender.maxStreams)
}

// bench starts the simulators and the contenders and runs every step.
func bench(ctx context.Context, log *slog.Logger, o options) (*results, error) {
	if err := os.RemoveAll(o.workDir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(o.workDir, 0o755); err != nil {
		return nil, err
	}
	e := &env{crosslogic: o.crosslogic, server: o.crosslogic, serverEnv: o.serverEnv,
		node: o.node, portkeyDir: o.portkeyDir}
	if o.pprofServer != "" {
		e.server, e.pprof = o.pprofServer, true
	}
	res := &results{Command: o.command, Started: time.Now().UTC(), Machine: readMachine(),
		Params: params{Rates: o.rates, Rounds: o.rounds, StepSeconds: o.step.Seconds(),
			WarmupSeconds: o.warmup.Seconds(), Concurrency: o.concurrency,
			ThroughputSeconds: o.throughput.Seconds(), AnswerTokens: o.answerTokens,
			Streams: o.streams, StreamTokens: o.streamTokens,
			ITLMillis: float64(o.itl) / float64(time.Millisecond), RampSeconds: o.ramp.Seconds()}}
	// Streams beyond what the open-file limit allows a contender would
	// measure the limit, not the contender: each streaming step runs
	// every contender at no more than its own cap (see streamCap), and
	// the report says which ones were capped.
	limit := fileLimit()
	res.Params.FileLimit = limit

	res.Versions = append(res.Versions,
		version{"go (proxybench)", goVersion()},
		version{"crosslogic (the simulator backends)", firstLine(o.crosslogic, "version")})
	if len(o.serverEnv) > 0 {
		res.Versions = append(res.Versions,
			version{"CrossLogic gateway environment", strings.Join(o.serverEnv, " ")})
	}

	// The backends: one simulator answers at once, one paces its tokens.
	fast, err := startSim(ctx, o, "sim-fast")
	if err != nil {
		return nil, err
	}
	defer fast.stop()
	paced, err := startSim(ctx, o, "sim-paced", "--time-between-tokens", o.itl.String())
	if err != nil {
		return nil, err
	}
	defer paced.stop()

	var all []*running
	defer func() {
		for _, r := range all {
			r.fast.stop()
			r.streams.stop()
		}
	}()
	for _, c := range contenders {
		if len(o.only) > 0 && !slices.Contains(o.only, c.name) {
			continue
		}
		r, err := startContender(ctx, e, o.workDir, c, fast.addr, paced.addr)
		r.maxStreams = c.maxStreams(limit)
		r.col.Upstream, r.col.SocketsPerStream = c.upstream, c.perStream
		res.Columns = append(res.Columns, r.col)
		if err != nil {
			r.col.NotRun = err.Error()
			log.Warn("contender not run", "contender", c.name, "error", err)
			continue
		}
		if v := c.version(e); v != "" {
			res.Versions = append(res.Versions, version{c.label, v})
		}
		all = append(all, r)
	}
	if len(all) == 0 {
		return nil, errors.New("no contender started")
	}

	body := chatBody(o.answerTokens, false)
	for _, r := range all {
		n, err := r.fast.do(ctx, &http.Client{Transport: newTransport()}, body)
		if err != nil {
			return nil, fmt.Errorf("%s: first request: %w", r.col.Name, err)
		}
		r.col.AnswerBytes = n
	}
	for _, rate := range o.rates {
		latencySteps(ctx, log, o, all, body, rate)
	}
	throughputSteps(ctx, log, o, all, body)
	streamBody := chatBody(o.streamTokens, true)
	for _, n := range o.streams {
		for _, r := range all {
			run := min(n, r.maxStreams)
			if run < n {
				log.Warn("too few file descriptors: streams capped", "contender", r.col.Name,
					"streams", n, "capped_to", run, "nofile", limit)
			}
			st := streamStepRun(ctx, o, r, streamBody, run)
			st.Requested, st.Capped = n, run < n
			settle(ctx, r.streams.proc)
			r.col.Streams = append(r.col.Streams, st)
			log.Info("streams", "contender", r.col.Name, "streams", run,
				"completed", st.Completed, "peak_open", st.PeakOpen,
				"ttft_p99_us", st.TTFT.P99, "peak_rss_mb", st.PeakRSS>>20)
		}
	}
	for _, r := range all {
		if r.fast.proc != nil {
			r.col.PeakRSSAll = r.fast.proc.usage().hwm + r.streams.proc.usage().hwm
		}
	}
	res.Finished = time.Now().UTC()
	res.Machine.LoadAfter = loadAverage()
	return res, ctx.Err()
}

// backend is a running simulator.
type backend struct {
	*proc
	addr string
}

func startSim(ctx context.Context, o options, name string, extra ...string) (*backend, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	argv := append([]string{o.crosslogic, "sim", "--addr", addr, "--served-model-name", benchModel},
		extra...)
	p, err := startProc(o.workDir, name, nil, argv...)
	if err != nil {
		return nil, err
	}
	if err := waitPort(ctx, p, addr); err != nil {
		p.stop()
		return nil, fmt.Errorf("%w: %s", err, p.logTail(o.workDir))
	}
	return &backend{proc: p, addr: addr}, nil
}

// startContender starts c's two instances and waits until both serve.
// The returned running always holds the column, also on error.
func startContender(ctx context.Context, e *env, workDir string, c contender,
	fast, paced string) (*running, error) {
	r := &running{col: &column{Name: c.name, Label: c.label}}
	for _, side := range []struct {
		dir      string
		upstream string
		in       **instance
	}{{"fast", fast, &r.fast}, {"paced", paced, &r.streams}} {
		dir := filepath.Join(workDir, c.name+"-"+side.dir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return r, err
		}
		in, err := c.start(ctx, e, dir, side.upstream)
		if err == nil {
			*side.in = in
			err = waitServing(ctx, in)
		}
		if err != nil {
			r.fast.stop()
			r.streams.stop()
			return r, err
		}
	}
	return r, nil
}

// chatBody is the request every step sends: a short chat prompt asking
// for exactly tokens tokens.
func chatBody(tokens int, stream bool) []byte {
	return fmt.Appendf(nil, `{"model":%q,"messages":[{"role":"user",`+
		`"content":"Explain what a reverse proxy does."}],"max_tokens":%d,"stream":%t}`,
		benchModel, tokens, stream)
}
