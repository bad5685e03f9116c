package sim

import (
	"context"
	"errors"
	"testing"
	"time"
)

// waitUntil polls cond until it holds or a deadline passes.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		<-tick.C
	}
}

func TestAdmissionFIFO(t *testing.T) {
	a := &admission{max: 1}
	if err := a.acquire(context.Background()); err != nil {
		t.Fatalf("first acquire: %v", err)
	}

	// Queue three waiters in a known order; the middle one gives up.
	got := make(chan string, 3)
	ctxs := map[string]context.CancelFunc{}
	for i, name := range []string{"b", "c", "d"} {
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		ctxs[name] = cancel
		go func() {
			if err := a.acquire(ctx); err != nil {
				got <- name + " gave up"
				return
			}
			got <- name
		}()
		waitUntil(t, name+" queued", func() bool { return a.waiting.Load() == int64(i+1) })
	}
	ctxs["c"]()
	if g := <-got; g != "c gave up" {
		t.Fatalf("got %q, want c to give up", g)
	}

	for _, want := range []string{"b", "d"} {
		a.release()
		if g := <-got; g != want {
			t.Fatalf("slot went to %q, want %q", g, want)
		}
	}
	a.release()
	if r, w, taken := a.running.Load(), a.waiting.Load(), a.taken; r != 0 || w != 0 || taken != 0 {
		t.Errorf("got running %d, waiting %d, taken %d; want all 0", r, w, taken)
	}
}

// TestAdmissionCancelRacesGrant ends a waiter's context just as the
// slot is handed to it. Whichever the waiter sees first, the slot must
// end up somewhere: held by the waiter, or passed on and freed; never
// lost. Many rounds make both interleavings happen.
func TestAdmissionCancelRacesGrant(t *testing.T) {
	for round := range 200 {
		a := &admission{max: 1}
		if err := a.acquire(context.Background()); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() { errc <- a.acquire(ctx) }()
		waitUntil(t, "waiter queued", func() bool { return a.waiting.Load() == 1 })

		cancel()
		a.release()
		if err := <-errc; err == nil {
			a.release() // the waiter won the slot; give it back
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("round %d: got %v, want nil or context.Canceled", round, err)
		}

		a.mu.Lock()
		taken, queued := a.taken, len(a.queue)
		a.mu.Unlock()
		if r, w := a.running.Load(), a.waiting.Load(); taken != 0 || queued != 0 ||
			r != 0 || w != 0 {
			t.Fatalf("round %d: got taken %d, queued %d, running %d, waiting %d; "+
				"want all 0", round, taken, queued, r, w)
		}
	}
}
