package sim

import (
	"context"
	"slices"
	"sync"
	"sync/atomic"
)

// admission limits how many requests run at once, like vLLM's
// --max-num-seqs: a request that finds every slot taken waits in a FIFO
// queue until one frees, or until its client goes away.
//
// Slots are handed over, not released and re-taken: when a running
// request ends and someone waits, the slot passes straight to the head
// of the queue, so a newcomer can never overtake a waiter.
type admission struct {
	max int // slots; 0 means no limit, and then mu is never taken

	// running and waiting mirror the state for Stats and /metrics,
	// readable without mu.
	running atomic.Int64
	waiting atomic.Int64

	mu sync.Mutex
	// taken and queue are guarded by mu.
	taken int       // slots held, including those handed to a waiter
	queue []*waiter // waiters, oldest first
}

// waiter is one queued request.
type waiter struct {
	ready chan struct{} // closed when a slot is handed to the waiter
	// granted is guarded by admission.mu; it tells a waiter whose
	// context ended at the same time whether it holds a slot to pass on.
	granted bool
}

// acquire takes a slot, waiting for one in FIFO order. It returns the
// context's error, holding no slot, if ctx ends first.
func (a *admission) acquire(ctx context.Context) error {
	if a.max == 0 {
		a.running.Add(1)
		return nil
	}

	a.mu.Lock()
	if a.taken < a.max && len(a.queue) == 0 {
		a.taken++
		a.mu.Unlock()
		a.running.Add(1)
		return nil
	}
	w := &waiter{ready: make(chan struct{})}
	a.queue = append(a.queue, w)
	a.waiting.Add(1)
	a.mu.Unlock()

	select {
	case <-w.ready:
		a.running.Add(1)
		return nil
	case <-ctx.Done():
	}

	// The slot may have been handed over while ctx ended; if so it is
	// ours, and must go to the next waiter rather than be lost.
	a.mu.Lock()
	defer a.mu.Unlock()
	if w.granted {
		a.passLocked()
	} else {
		a.removeLocked(w)
	}
	return ctx.Err()
}

// release frees the slot taken by a successful acquire.
func (a *admission) release() {
	a.running.Add(-1)
	if a.max == 0 {
		return
	}
	a.mu.Lock()
	a.passLocked()
	a.mu.Unlock()
}

// passLocked gives a held slot to the oldest waiter, or frees it when
// nobody waits.
func (a *admission) passLocked() {
	if len(a.queue) == 0 {
		a.taken--
		return
	}
	w := a.queue[0]
	a.queue[0] = nil
	a.queue = a.queue[1:]
	a.waiting.Add(-1)
	w.granted = true
	close(w.ready)
}

// removeLocked takes w, which holds no slot, out of the queue. The
// linear scan is fine: a queue longer than a few thousand requests
// means the test or the harness has a bug of its own.
func (a *admission) removeLocked(w *waiter) {
	for i, q := range a.queue {
		if q == w {
			a.queue = slices.Delete(a.queue, i, i+1)
			a.waiting.Add(-1)
			return
		}
	}
}
