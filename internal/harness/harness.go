// Package harness runs failure scenarios against a real gateway as a
// bounded load test, so that anyone can reproduce how CrossLogic behaves
// when nodes die, hang, fail or lose their clients.
//
// Every scenario runs in-process on 127.0.0.1: simulator nodes (package
// sim), a real gateway with its registry and keyring served over HTTP,
// and a load generator with a fixed concurrency, a bounded number of
// requests and a deadline. Each answer is checked against the text the
// simulator is known to produce for it (sim.Continue), so a stream
// spliced from two nodes must be exactly what one healthy node would
// have sent. The gateway's own counters give the retries and failovers.
//
// The scenarios:
//
//   - kill: one of three nodes is killed while it serves streams and
//     answers. No client may see a failure or a wrong answer.
//   - hang: one of three nodes stops answering: streams stall midway,
//     answers never come. The per-model Idle and FirstByte timeouts move
//     them to other nodes; no client may see a failure.
//   - errors: one of three nodes answers 500 to everything. Those 500s
//     reach their clients (an engine's 500 is not retried), the node is
//     ejected, and once it recovers it is re-admitted.
//   - disconnect: clients go away midway. The engines must see every
//     abandoned request cancelled, and no node may be ejected for it.
//
// Run the harness with `crosslogic harness`.
package harness

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"
)

// Options bound a harness run. The zero value runs every scenario with
// the defaults.
type Options struct {
	// Scenarios names the scenarios to run, in order; empty means all of
	// them (see Names).
	Scenarios []string
	// Requests is how many requests each scenario sends. Zero means 300.
	Requests int
	// Concurrency is how many clients send at once. Zero means 16. The
	// gateway's retry budget (20 retries of burst, then 20% of requests)
	// is what saves the requests in flight on a killed node, so a
	// concurrency far above 40 may see failures in kill by design.
	Concurrency int
	// Timeout bounds each scenario. Zero means one minute.
	Timeout time.Duration
	// Logger receives the gateway's and the simulators' logs; nil
	// discards them.
	Logger *slog.Logger
}

func (o Options) withDefaults() Options {
	if len(o.Scenarios) == 0 {
		o.Scenarios = Names()
	}
	if o.Requests <= 0 {
		o.Requests = 300
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	if o.Timeout <= 0 {
		o.Timeout = time.Minute
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Report is the outcome of a harness run.
type Report struct {
	Scenarios []Result `json:"scenarios"`
}

// OK reports whether every scenario met its expectations.
func (r Report) OK() bool {
	for _, s := range r.Scenarios {
		if !s.OK() {
			return false
		}
	}
	return true
}

// Result is what one scenario's clients saw, and what the gateway and the
// nodes counted. Every request sent is exactly one of succeeded, failed
// or mismatched.
type Result struct {
	// Scenario is the scenario's name.
	Scenario string `json:"scenario"`
	// Sent counts requests sent.
	Sent int `json:"sent"`
	// Succeeded counts requests that got what the scenario expects: the
	// exact answer, or for a client that leaves, the exact beginning.
	Succeeded int `json:"succeeded"`
	// Failed counts requests that got an error status, a connection
	// error, a stream ended by an error event, or a stream cut short.
	Failed int `json:"failed"`
	// Mismatches counts answers that completed but differ from what one
	// healthy node would have sent: text, usage, chunk ids or [DONE].
	Mismatches int `json:"mismatches"`
	// Retried is the gateway's count of requests sent again to another
	// node after a failure before the first byte.
	Retried int `json:"retried"`
	// FailedOver is the gateway's count of streams continued on another
	// node after breaking midway.
	FailedOver int `json:"failed_over"`
	// Ejections and Readmissions are the gateway's outlier detection
	// counts.
	Ejections    int `json:"ejections"`
	Readmissions int `json:"readmissions"`
	// UpstreamCancelled counts requests the nodes saw cancelled before
	// they finished: by a client leaving, a timeout or a kill.
	UpstreamCancelled int `json:"upstream_cancelled"`
	// Duration is how long the scenario ran; duration_ms in JSON.
	Duration time.Duration `json:"-"`
	// Problems lists the scenario's expectations that were not met, and
	// examples of wrong answers; empty when the scenario passed.
	Problems []string `json:"problems,omitempty"`
}

// OK reports whether the scenario met its expectations.
func (r Result) OK() bool { return len(r.Problems) == 0 }

// MarshalJSON adds duration_ms and ok to the fields.
func (r Result) MarshalJSON() ([]byte, error) {
	type fields Result // without this method
	return json.Marshal(struct {
		fields
		DurationMS int64 `json:"duration_ms"`
		OK         bool  `json:"ok"`
	}{fields(r), r.Duration.Milliseconds(), r.OK()})
}

// expect records a problem unless ok holds.
func (r *Result) expect(ok bool, format string, args ...any) {
	if !ok {
		r.Problems = append(r.Problems, fmt.Sprintf(format, args...))
	}
}

// Names returns the scenarios' names, in the order Run runs them by
// default.
func Names() []string {
	names := make([]string, len(scenarios))
	for i, s := range scenarios {
		names[i] = s.name
	}
	return names
}

// Run runs the scenarios o names, one after the other, and reports what
// each saw. It returns an error when a scenario is unknown or could not
// be set up; a scenario whose expectations fail is reported in its
// Result, not as an error.
func Run(ctx context.Context, o Options) (Report, error) {
	o = o.withDefaults()
	var todo []scenario
	for _, name := range o.Scenarios {
		s, ok := lookup(name)
		if !ok {
			return Report{}, fmt.Errorf("harness: unknown scenario %q (want one of %s)",
				name, strings.Join(Names(), ", "))
		}
		todo = append(todo, s)
	}

	var rep Report
	for _, s := range todo {
		sctx, cancel := context.WithTimeout(ctx, o.Timeout)
		start := time.Now()
		log := o.Logger.With("scenario", s.name)
		res, err := s.run(sctx, o, log)
		timedOut := errors.Is(sctx.Err(), context.DeadlineExceeded) && ctx.Err() == nil
		cancel()
		if err != nil {
			return rep, fmt.Errorf("harness: scenario %s: %w", s.name, err)
		}
		res.Scenario, res.Duration = s.name, time.Since(start)
		res.expect(!timedOut, "did not finish within %v", o.Timeout)
		rep.Scenarios = append(rep.Scenarios, res)
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	return rep, nil
}

// WriteTable writes the report as a table, one row per scenario, followed
// by the problems of the scenarios that failed.
func (r Report) WriteTable(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tsent\tsucceeded\tfailed\tmismatches\tretried\tfailed_over\t"+
		"ejections\treadmissions\tupstream_cancelled\ttime\tresult\t")
	for _, s := range r.Scenarios {
		verdict := "ok"
		if !s.OK() {
			verdict = "FAIL"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%s\t%s\t\n", s.Scenario,
			s.Sent, s.Succeeded, s.Failed, s.Mismatches, s.Retried, s.FailedOver,
			s.Ejections, s.Readmissions, s.UpstreamCancelled,
			s.Duration.Round(10*time.Millisecond), verdict)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, s := range r.Scenarios {
		for _, p := range s.Problems {
			if _, err := fmt.Fprintf(w, "%s: %s\n", s.Scenario, p); err != nil {
				return err
			}
		}
	}
	return nil
}

// WriteJSON writes the report as indented JSON.
func (r Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
