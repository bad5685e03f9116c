package harness

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// scenario is one failure the harness reproduces.
type scenario struct {
	name string
	run  func(ctx context.Context, o Options, log *slog.Logger) (Result, error)
}

var scenarios = []scenario{
	{"kill", runKill},
	{"hang", runHang},
	{"errors", runErrors},
	{"disconnect", runDisconnect},
}

func lookup(name string) (scenario, bool) {
	for _, s := range scenarios {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// pace is the simulators' speed: fast enough to keep a run short, slow
// enough that a stream of 16 to 24 tokens is in flight for tens of
// milliseconds, long enough for failures to land midway.
var pace = sim.Config{TimeToFirstToken: 2 * time.Millisecond,
	TimeBetweenTokens: 3 * time.Millisecond}

// examples adds the tally's examples of wrong answers to r's problems.
func (r *Result) examples(t tally) {
	for _, e := range t.examples {
		r.Problems = append(r.Problems, "e.g. "+e)
	}
}

// runKill kills one of three nodes while it serves. It waits until a
// quarter of the requests are done and a stream on the victim is
// halfway, so that the kill breaks streams as well as answers.
func runKill(ctx context.Context, o Options, log *slog.Logger) (Result, error) {
	const nodes, victim = 3, 1
	f, err := newFleet(gateway.Config{}, o.Concurrency, log)
	if err != nil {
		return Result{}, err
	}
	defer f.close()
	owner := idOwner{}
	for i := range nodes {
		r, err := f.addSim(fmt.Sprintf("node-%d", i), pace)
		if err != nil {
			return Result{}, err
		}
		if err := owner.learn(ctx, r.URL, i); err != nil {
			return Result{}, err
		}
	}

	reqs := mixed(o.Requests)
	var (
		finished atomic.Int64
		midway   [nodes]atomic.Int64 // streams past their second token, by first node
		on       = make([]int, len(reqs))
	)
	for i := range on {
		on[i] = -1
	}
	l := load{requests: reqs, concurrency: o.Concurrency,
		onText: func(i int, id string, texts int) {
			if n, ok := owner.of(id); ok && texts == 2 {
				midway[n].Add(1)
				on[i] = n
			}
		},
		onDone: func(i int) {
			if on[i] >= 0 {
				midway[on[i]].Add(-1)
			}
			finished.Add(1)
		}}

	// The killer: at the planned moment, or, if the victim never has a
	// stream halfway, at three quarters of the run anyway.
	var killedMidway, killed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		t := time.NewTicker(500 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			n := int(finished.Load())
			if n >= len(reqs)/4 && midway[victim].Load() > 0 {
				killedMidway.Store(true)
			} else if n < len(reqs)*3/4 {
				continue
			}
			f.sims[victim].Kill()
			killed.Store(true)
			log.Info("node killed", "node_id", fmt.Sprintf("node-%d", victim),
				"finished", n, "midway", killedMidway.Load())
			return
		}
	})
	t := f.client.run(ctx, l)
	close(stop)
	wg.Wait()

	res := f.result(t, f.simServers()...)
	res.expect(killed.Load(), "the node was never killed")
	res.expect(t.failed == 0, "%d requests failed, want none", t.failed)
	res.expect(t.mismatched == 0, "%d answers differ from a healthy node's, want none",
		t.mismatched)
	res.expect(!killedMidway.Load() || res.FailedOver > 0,
		"a stream was halfway on the killed node but none was continued")
	res.examples(t)
	return res, nil
}

// runHang makes one of three nodes hang: its streams stall after three
// events and its answers never come. Outlier detection is set lenient so
// that the hung node keeps getting requests, and both timeouts show.
func runHang(ctx context.Context, o Options, log *slog.Logger) (Result, error) {
	cfg := gateway.Config{
		// FirstByte must cover a whole answer that is not a stream (24
		// tokens at 3ms), Idle a gap between two tokens, both with room
		// for a loaded machine running the race detector.
		ModelTimeouts: map[string]gateway.Timeouts{model: {
			FirstByte: time.Second, Idle: 400 * time.Millisecond}},
		Outlier: registry.Outlier{Consecutive: 20},
	}
	f, err := newFleet(cfg, o.Concurrency, log)
	if err != nil {
		return Result{}, err
	}
	defer f.close()
	hcfg := pace
	hcfg.Models, hcfg.Logger = []string{model}, log.With("node_id", "node-0")
	hung, err := sim.New(hcfg)
	if err != nil {
		return Result{}, err
	}
	if err := f.addHandler("node-0", stall(hung.Handler(), 3)); err != nil {
		return Result{}, err
	}
	for i := 1; i < 3; i++ {
		if _, err := f.addSim(fmt.Sprintf("node-%d", i), pace); err != nil {
			return Result{}, err
		}
	}

	t := f.client.run(ctx, load{requests: mixed(o.Requests), concurrency: o.Concurrency})
	// The gateway hangs up on every stalled request, which frees it.
	settled := waitFor(ctx, func() bool {
		s := hung.Stats()
		return s.Running+s.Waiting == 0 && s.Cancelled == s.Requests-s.Completed
	})

	res := f.result(t, append(f.simServers(), hung)...)
	res.expect(t.failed == 0, "%d requests failed, want none", t.failed)
	res.expect(t.mismatched == 0, "%d answers differ from a healthy node's, want none",
		t.mismatched)
	res.expect(res.Retried > 0, "no answer retried after the first-byte timeout")
	res.expect(res.FailedOver > 0, "no stream continued after the idle timeout")
	res.expect(settled, "the hung node still holds requests the gateway gave up on")
	res.examples(t)
	return res, nil
}

// runErrors makes one of three nodes answer 500 to everything for the
// first half of the run, then recover.
func runErrors(ctx context.Context, o Options, log *slog.Logger) (Result, error) {
	outlier := registry.Outlier{Consecutive: 3, BaseEjection: 200 * time.Millisecond,
		MaxEjection: 400 * time.Millisecond}
	f, err := newFleet(gateway.Config{Outlier: outlier}, o.Concurrency, log)
	if err != nil {
		return Result{}, err
	}
	defer f.close()
	bad, err := f.addSim("node-0", pace)
	if err != nil {
		return Result{}, err
	}
	for i := 1; i < 3; i++ {
		if _, err := f.addSim(fmt.Sprintf("node-%d", i), pace); err != nil {
			return Result{}, err
		}
	}

	// The burst.
	if err := bad.Server().SetFaults(sim.Faults{ErrorRate: 1}); err != nil {
		return Result{}, err
	}
	reqs := mixed(o.Requests)
	half := len(reqs) / 2
	var t tally
	t.add(f.client.run(ctx, load{requests: reqs[:half], concurrency: o.Concurrency}))
	ejected := f.count(metricEjections) > 0
	injected := int(bad.Server().Stats().InjectedErrors)

	// The recovery: once its cooldown is over, the node takes requests
	// again and its first success re-admits it.
	if err := bad.Server().SetFaults(sim.Faults{}); err != nil {
		return Result{}, err
	}
	node := f.node("node-0")
	cooled := waitFor(ctx, func() bool { return !node.Ejected(time.Now()) })
	t.add(f.client.run(ctx, load{requests: reqs[half:], concurrency: o.Concurrency}))

	res := f.result(t, f.simServers()...)
	res.expect(ejected, "the failing node was not ejected during its burst of 500s")
	res.expect(cooled, "the failing node's cooldown never ended")
	res.expect(res.Readmissions > 0, "the recovered node was not re-admitted")
	res.expect(t.failed == injected,
		"%d requests failed and the node answered %d 500s, want one failure per 500",
		t.failed, injected)
	res.expect(res.Retried == 0, "%d retries, want none: a 500 is passed on", res.Retried)
	res.expect(t.mismatched == 0, "%d answers differ from a healthy node's, want none",
		t.mismatched)
	if t.failed != injected || t.mismatched != 0 {
		res.examples(t)
	}
	return res, nil
}

// runDisconnect sends streams whose clients leave after a few tokens and
// answers whose clients give up after 30ms, among requests that finish.
func runDisconnect(ctx context.Context, o Options, log *slog.Logger) (Result, error) {
	// Two failures would eject a node, so a client's leaving counted
	// against it would show at once.
	f, err := newFleet(gateway.Config{Outlier: registry.Outlier{Consecutive: 2}},
		o.Concurrency, log)
	if err != nil {
		return Result{}, err
	}
	defer f.close()
	slow := sim.Config{TimeToFirstToken: 2 * time.Millisecond,
		TimeBetweenTokens: 5 * time.Millisecond}
	for i := range 3 {
		if _, err := f.addSim(fmt.Sprintf("node-%d", i), slow); err != nil {
			return Result{}, err
		}
	}

	// Three in four requests are abandoned: a long stream left after one
	// to five tokens, or a long answer given up on.
	reqs := make([]request, o.Requests)
	for i := range reqs {
		reqs[i] = request{path: pathChat, seed: i, maxTokens: 400, stream: true,
			prompt: fmt.Sprintf("request %d: never mind", i)}
		switch i % 4 {
		case 0, 1:
			reqs[i].leaveAfter = 1 + i%5
		case 2:
			reqs[i].stream, reqs[i].leaves = false, true
		case 3:
			reqs[i].maxTokens = 8
		}
	}
	l := load{requests: reqs, concurrency: o.Concurrency,
		leave: func(ctx context.Context, i int) (context.Context, context.CancelFunc) {
			if reqs[i].leaves {
				return context.WithTimeout(ctx, 30*time.Millisecond)
			}
			return context.WithCancel(ctx)
		}}
	t := f.client.run(ctx, l)

	// Every request a node saw and did not finish must end cancelled.
	servers := f.simServers()
	settled := waitFor(ctx, func() bool {
		var open int64
		for _, s := range servers {
			st := s.Stats()
			open += st.Running + st.Waiting + st.Requests - st.Completed - st.Cancelled
		}
		return open == 0
	})

	res := f.result(t, servers...)
	res.expect(settled, "the nodes still run requests whose clients left")
	res.expect(res.Ejections == 0, "%d nodes ejected for their clients' leaving, want none",
		res.Ejections)
	res.expect(res.Retried == 0 && res.FailedOver == 0,
		"%d retries and %d failovers, want none: a client's leaving is not a failure",
		res.Retried, res.FailedOver)
	res.expect(t.failed == 0, "%d requests failed, want none", t.failed)
	res.expect(t.mismatched == 0, "%d answers differ from a healthy node's, want none",
		t.mismatched)
	res.examples(t)
	return res, nil
}

// stall serves h but hangs like an engine whose GPU stopped: a stream
// stalls after the given number of events, an answer that is not a
// stream never comes. Its writes then block until the client goes away.
func stall(h http.Handler, events int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.ServeHTTP(&stallWriter{ResponseWriter: w, done: r.Context().Done(), left: events}, r)
	})
}

// errStalled is what a stalled node's writes return once its client has
// gone.
var errStalled = errors.New("harness: node stalled")

type stallWriter struct {
	http.ResponseWriter
	done <-chan struct{}
	left int // events still to pass
}

func (s *stallWriter) Write(p []byte) (int, error) {
	if !strings.HasPrefix(s.Header().Get("Content-Type"), "text/event-stream") {
		s.left = 0
	}
	if s.left <= 0 {
		<-s.done
		return 0, errStalled
	}
	// The simulator writes one whole event per call.
	s.left -= bytes.Count(p, []byte("\n\n"))
	return s.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the real writer's Flush.
func (s *stallWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }

// idOwner maps the id of a simulator's answer to the simulator: each id
// carries its simulator's random 64-bit base after the family's prefix.
// The gateway keeps the first node's id across a failover, so a stream's
// id names the node it started on.
type idOwner map[string]int

// learn asks the simulator at url for one token to learn its base.
func (o idOwner) learn(ctx context.Context, url string, index int) error {
	c := client{url: url, http: http.DefaultClient}
	a, err := c.do(ctx, request{path: pathCompletions, prompt: "hello", maxTokens: 1}, nil)
	if err != nil {
		return fmt.Errorf("asking node %d for its id: %w", index, err)
	}
	base, ok := strings.CutPrefix(a.ID, "cmpl-")
	if !ok || len(base) != 32 {
		return fmt.Errorf("node %d answered id %q, want cmpl- and 32 hex digits", index, a.ID)
	}
	o[base[:16]] = index
	return nil
}

// of returns the simulator that made the answer or chunk id.
func (o idOwner) of(id string) (int, bool) {
	_, rest, ok := strings.Cut(id, "-")
	if !ok || len(rest) < 16 {
		return 0, false
	}
	i, ok := o[rest[:16]]
	return i, ok
}
