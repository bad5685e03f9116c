package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// The non-streaming steps are cut into rounds, and each round visits
// every contender in turn, starting one further along each time. A
// burst of other work on the machine then spreads over all contenders
// instead of landing on whichever one was running; on a shared machine
// that is most of the noise.

// order returns the contenders in the order of the given round.
func order(all []*running, round int) []*running {
	out := make([]*running, 0, len(all))
	for i := range all {
		out = append(out, all[(i+round)%len(all)])
	}
	return out
}

// latencySteps runs the open-loop step at rate for every contender.
func latencySteps(ctx context.Context, log *slog.Logger, o options, all []*running,
	body []byte, rate int) {
	type acc struct {
		c       *http.Client
		samples []time.Duration
		errs    *errorLog
		cpu     time.Duration
		rss     int64
	}
	accs := map[*running]*acc{}
	for _, r := range all {
		a := &acc{c: &http.Client{Transport: newTransport()}, errs: new(errorLog)}
		accs[r] = a
		openLoop(ctx, &r.fast.target, a.c, body, rate, o.warmup) // fill the pools
	}
	part := o.step / time.Duration(o.rounds)
	for round := range o.rounds {
		for _, r := range order(all, round) {
			a := accs[r]
			stopProfile := func() {}
			if round == 0 {
				stopProfile = profile(ctx, o, r.fast, fmt.Sprintf("cpu-%d-rps", rate), part)
			}
			var d dist
			var errs *errorLog
			cpu, rss := measure(r.fast.proc, func() {
				d, errs = openLoop(ctx, &r.fast.target, a.c, body, rate, part)
			})
			stopProfile()
			a.samples = append(a.samples, d...)
			a.errs.merge(errs)
			a.cpu += cpu
			a.rss = max(a.rss, rss)
			settle(ctx, r.fast.proc)
		}
	}
	for _, r := range all {
		a := accs[r]
		a.c.CloseIdleConnections()
		d := newDist(a.samples)
		st := latencyStep{Rate: rate, Sent: len(d), Failed: int(a.errs.n.Load()),
			FirstError: a.errs.first, Latency: d.summary(), Spectrum: d.spectrum(),
			PeakRSS: a.rss}
		if r.fast.proc != nil && len(d) > 0 {
			st.CPUSeconds = a.cpu.Seconds()
			st.CPUPer10k = a.cpu.Seconds() / float64(len(d)) * 10_000
		}
		r.col.Latency = append(r.col.Latency, st)
		log.Info("latency", "contender", r.col.Name, "rate", rate, "p50_us", st.Latency.P50,
			"p99_us", st.Latency.P99, "failed", st.Failed)
	}
}

// throughputSteps runs the closed-loop step for every contender.
func throughputSteps(ctx context.Context, log *slog.Logger, o options, all []*running,
	body []byte) {
	type acc struct {
		c       *http.Client
		ok      int64
		elapsed time.Duration
		samples []time.Duration
		errs    *errorLog
		cpu     time.Duration
		rss     int64
	}
	accs := map[*running]*acc{}
	for _, r := range all {
		a := &acc{c: &http.Client{Transport: newTransport()}, errs: new(errorLog)}
		accs[r] = a
		closedLoop(ctx, &r.fast.target, a.c, body, o.concurrency, o.warmup)
	}
	part := o.throughput / time.Duration(o.rounds)
	for round := range o.rounds {
		for _, r := range order(all, round) {
			a := accs[r]
			stopProfile := func() {}
			if round == 0 {
				stopProfile = profile(ctx, o, r.fast, "cpu-throughput", part)
			}
			var (
				ok      int64
				elapsed time.Duration
				d       dist
				errs    *errorLog
			)
			cpu, rss := measure(r.fast.proc, func() {
				ok, elapsed, d, errs = closedLoop(ctx, &r.fast.target, a.c, body,
					o.concurrency, part)
			})
			stopProfile()
			a.ok += ok
			a.elapsed += elapsed
			a.samples = append(a.samples, d...)
			a.errs.merge(errs)
			a.cpu += cpu
			a.rss = max(a.rss, rss)
			settle(ctx, r.fast.proc)
		}
	}
	for _, r := range all {
		a := accs[r]
		a.c.CloseIdleConnections()
		st := &throughputStep{Concurrency: o.concurrency, Seconds: a.elapsed.Seconds(),
			Requests: a.ok, Failed: int(a.errs.n.Load()), FirstError: a.errs.first,
			RPS: float64(a.ok) / a.elapsed.Seconds(), Latency: newDist(a.samples).summary(),
			PeakRSS: a.rss}
		if r.fast.proc != nil && a.ok > 0 {
			st.CPUSeconds = a.cpu.Seconds()
			st.CPUPer10k = a.cpu.Seconds() / float64(a.ok) * 10_000
		}
		r.col.Throughput = st
		log.Info("throughput", "contender", r.col.Name, "rps", int(st.RPS), "failed", st.Failed)
	}
}

// streamStepRun runs one streaming step for one contender. Streaming
// steps are not cut into rounds: all N streams must be open at once.
func streamStepRun(ctx context.Context, o options, r *running, body []byte,
	n int) streamStep {
	c := &http.Client{Transport: newTransport()}
	defer c.CloseIdleConnections()
	shape := streamShape{tokens: o.streamTokens, itl: o.itl, ramp: o.ramp}

	// The heap profile is taken when every stream is open; the CPU
	// profile covers the ramp and the streams.
	heapAt := o.ramp + time.Duration(o.streamTokens)*o.itl/2
	stopHeap := profile(ctx, o, r.streams, fmt.Sprintf("heap-%d-streams", n), heapAt)
	stopCPU := profile(ctx, o, r.streams, fmt.Sprintf("cpu-%d-streams", n),
		o.ramp+time.Duration(o.streamTokens)*o.itl)
	var sr streamRun
	cpu, rss := measure(r.streams.proc, func() {
		sr = streams(ctx, &r.streams.target, c, body, n, shape)
	})
	stopHeap()
	stopCPU()
	// Let the proxies close what the finished streams left behind before
	// the next contender starts.
	c.CloseIdleConnections()
	time.Sleep(time.Second)
	return streamStep{Streams: n, Completed: sr.completed, Failed: int(sr.errs.n.Load()),
		FirstError: sr.errs.first, PeakOpen: sr.peakOpen, TTFT: sr.ttft.summary(),
		Delay: sr.delay.summary(), PeakRSS: rss, CPUSeconds: cpu.Seconds()}
}

// measure runs fn while reading the CPU time and sampling the resident
// memory of p, which may be nil (the direct path).
func measure(p *proc, fn func()) (cpu time.Duration, peakRSS int64) {
	var before usage
	if p != nil {
		before = p.usage()
	}
	s := sampleRSS(p)
	fn()
	peakRSS = s.stop()
	if p != nil {
		cpu = p.usage().cpu - before.cpu
	}
	return cpu, peakRSS
}

// settle waits, for at most 15 seconds, until p is idle: a proxy that
// is still working off a backlog when its step ends (requests the load
// generator gave up on) would otherwise steal the CPU from the next
// contender's step.
func settle(ctx context.Context, p *proc) {
	if p == nil {
		return
	}
	const window, idle = 500 * time.Millisecond, 25 * time.Millisecond // 5% of a core
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		before := p.usage().cpu
		time.Sleep(window)
		if p.usage().cpu-before < idle {
			return
		}
	}
}
