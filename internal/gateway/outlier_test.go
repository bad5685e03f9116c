package gateway_test

import (
	"context"
	"fmt"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// fakeClock is the gateway's clock in tests of ejection cooldowns, so
// that no test waits for one to pass.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := new(fakeClock)
	c.ns.Store(time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// TestErrorBurstEjectsNode follows a node answering 500 to everything
// through ejection, a cooldown without traffic, a second ejection with a
// doubled cooldown, and re-admission once it recovers.
func TestErrorBurstEjectsNode(t *testing.T) {
	const base = 100 * time.Millisecond
	clock := newFakeClock()
	f := newFleet(t, fleetOptions{now: clock.Now, config: gateway.Config{
		Outlier: registry.Outlier{Consecutive: 3, BaseEjection: base, MaxEjection: time.Second}}})
	bad := f.addSim(t, "node-a", sim.Config{Faults: sim.Faults{ErrorRate: 1}}).Server()
	f.addSim(t, "node-b", sim.Config{})
	f.addSim(t, "node-c", sim.Config{})
	node := f.node(t, "node-a")
	c := call{path: pathChat, prompt: "who is failing", seed: 9, maxTokens: 4}

	// send makes one request and returns its status; an answer that is
	// not the engine's 500 must be right.
	send := func() int {
		t.Helper()
		res, err := f.send(context.Background(), c, nil)
		if err != nil {
			t.Fatal(err)
		}
		if res.status != http.StatusInternalServerError {
			if err := check(c, res); err != nil {
				t.Fatal(err)
			}
		}
		return res.status
	}
	// untilBadServes sends requests until node-a has served one more.
	untilBadServes := func() int {
		t.Helper()
		before := bad.Stats().Requests
		for range 200 {
			status := send()
			if bad.Stats().Requests > before {
				return status
			}
		}
		t.Fatal("node-a got no request in 200")
		return 0
	}

	// The burst: every 500 reaches the client unretried, and the third in
	// a row ejects the node.
	errors500 := 0
	for i := 0; f.count(t, metricEjections, "node", "node-a") == 0; i++ {
		if i == 200 {
			t.Fatal("node-a not ejected after 200 requests")
		}
		if send() == http.StatusInternalServerError {
			errors500++
		}
	}
	if errors500 != 3 || bad.Stats().InjectedErrors != 3 {
		t.Errorf("got %d errors at clients and %d injected, want 3 each", errors500,
			bad.Stats().InjectedErrors)
	}
	if got := f.count(t, metricRetries); got != 0 {
		t.Errorf("got %v retries, want 0: a 500 is not retried", got)
	}
	if !node.Ejected(clock.Now()) {
		t.Fatal("node-a not ejected")
	}

	// The cooldown: no request reaches the node.
	before := bad.Stats().Requests
	for range 30 {
		if got := send(); got != http.StatusOK {
			t.Fatalf("during the cooldown: got status %d, want 200", got)
		}
	}
	if got := bad.Stats().Requests; got != before {
		t.Errorf("during the cooldown: node-a got %d requests, want 0", got-before)
	}

	// The cooldown ends; the node still fails, and its first failure
	// ejects it again, for twice as long.
	clock.Advance(base)
	if node.Ejected(clock.Now()) {
		t.Fatal("node-a still ejected after its cooldown")
	}
	if got := untilBadServes(); got != http.StatusInternalServerError {
		t.Fatalf("after the cooldown: got status %d, want node-a's 500", got)
	}
	if got := f.count(t, metricEjections, "node", "node-a"); got != 2 {
		t.Fatalf("got %v ejections, want 2", got)
	}
	now := clock.Now()
	if !node.Ejected(now.Add(2*base-1)) || node.Ejected(now.Add(2*base)) {
		t.Errorf("second cooldown: want ejected for exactly %v", 2*base)
	}

	// The node recovers: its first success after the cooldown re-admits
	// it, and one failure no longer ejects it.
	clock.Advance(2 * base)
	if err := bad.SetFaults(sim.Faults{}); err != nil {
		t.Fatal(err)
	}
	if got := untilBadServes(); got != http.StatusOK {
		t.Fatalf("after recovery: got status %d, want 200", got)
	}
	if got := f.count(t, metricReadmissions, "node", "node-a"); got != 1 {
		t.Errorf("got %v re-admissions, want 1", got)
	}
	if err := bad.SetFaults(sim.Faults{ErrorRate: 1}); err != nil {
		t.Fatal(err)
	}
	if got := untilBadServes(); got != http.StatusInternalServerError {
		t.Fatalf("got status %d, want node-a's 500", got)
	}
	if got := f.count(t, metricEjections, "node", "node-a"); got != 2 {
		t.Errorf("one failure after re-admission: got %v ejections, want still 2", got)
	}
}

// TestClientDisconnectNotPenalised checks that clients going away cancel
// the engine's work at once and never count against the node: ten in a
// row, with two failures enough to eject, leave it in rotation.
func TestClientDisconnectNotPenalised(t *testing.T) {
	const disconnects = 10
	for _, stream := range []bool{true, false} {
		t.Run(fmt.Sprintf("stream=%v", stream), func(t *testing.T) {
			f := newFleet(t, fleetOptions{config: gateway.Config{
				Outlier: registry.Outlier{Consecutive: 2, BaseEjection: time.Minute}}})
			// One node, so that every disconnect is on it, in a row.
			engine := f.addSim(t, "node-a", sim.Config{
				TimeBetweenTokens: 10 * time.Millisecond}).Server()
			c := call{path: pathChat, prompt: "never mind", maxTokens: 500, stream: stream}

			for i := range disconnects {
				ctx, cancel := context.WithCancel(context.Background())
				stop := make(chan struct{})
				if stream {
					// Leave after the first token.
					go func() {
						defer close(stop)
						_, _ = f.send(ctx, c, func(string, int) { cancel() })
					}()
				} else {
					// Leave once the engine is generating.
					go func() {
						defer close(stop)
						_, _ = f.send(ctx, c, nil)
					}()
					poll(t, "the engine to start generating", func() bool {
						return engine.Stats().Running == 1
					})
					cancel()
				}
				<-stop
				cancel()
				poll(t, fmt.Sprintf("cancellation %d to reach the engine", i+1), func() bool {
					s := engine.Stats()
					return s.Cancelled == int64(i+1) && s.Running == 0
				})
			}

			if got := engine.Stats().GenerationTokens; got >= int64(disconnects*c.maxTokens/2) {
				t.Errorf("engine generated %d tokens for %d abandoned requests, want few",
					got, disconnects)
			}
			for _, m := range []string{metricEjections, metricRetries, metricFailovers,
				metricRefusals} {
				if got := f.count(t, m); got != 0 {
					t.Errorf("got %v for %s, want 0", got, m)
				}
			}
			if f.node(t, "node-a").Ejected(time.Now()) {
				t.Error("node-a ejected for its clients' disconnects")
			}

			// One real failure now must not eject the node: had a single
			// disconnect been counted against it, this would be the
			// second failure in a row.
			if err := engine.SetFaults(sim.Faults{ErrorRate: 1}); err != nil {
				t.Fatal(err)
			}
			c.maxTokens = 5
			if res, err := f.send(context.Background(), c, nil); err != nil ||
				res.status != http.StatusInternalServerError {
				t.Fatalf("got status %d, error %v, want the engine's 500", res.status, err)
			}
			if got := f.count(t, metricEjections); got != 0 {
				t.Errorf("got %v ejections after one failure, want 0: a disconnect was "+
					"counted as a failure", got)
			}
			if err := engine.SetFaults(sim.Faults{}); err != nil {
				t.Fatal(err)
			}
			res, err := f.send(context.Background(), c, nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := check(c, res); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestFailedNodeEjected checks that a node that dies is ejected after
// Outlier.Consecutive failed requests, and then skipped without costing
// retries.
func TestFailedNodeEjected(t *testing.T) {
	f := newFleet(t, fleetOptions{config: gateway.Config{
		Outlier: registry.Outlier{Consecutive: 2, BaseEjection: time.Minute}}})
	dead := f.addSim(t, "node-a", sim.Config{})
	f.addSim(t, "node-b", sim.Config{})
	dead.Kill()

	c := call{path: pathCompletions, prompt: "is it dead", maxTokens: 3}
	for i := 0; f.count(t, metricEjections, "node", "node-a") == 0; i++ {
		if i == 100 {
			t.Fatal("dead node not ejected after 100 requests")
		}
		res, err := f.send(context.Background(), c, nil)
		if err == nil {
			err = check(c, res)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count(t, metricRetries, "node", "node-a"); got != 2 {
		t.Errorf("got %v retries off the dead node, want 2 (then ejected)", got)
	}
	retries := f.count(t, metricRetries)
	for range 20 {
		res, err := f.send(context.Background(), c, nil)
		if err == nil {
			err = check(c, res)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if got := f.count(t, metricRetries) - retries; got != 0 {
		t.Errorf("got %v retries after the ejection, want 0", got)
	}
}
