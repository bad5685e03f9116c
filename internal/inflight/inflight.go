// Package inflight counts the requests a server is handling, so that a
// drain or a close can wait for them to finish.
package inflight

import (
	"context"
	"sync"
)

// Counter counts requests in flight. The zero value is ready to use.
//
// A sync.WaitGroup would not do: its Add must not race with Wait, and
// requests keep arriving while a drain waits.
type Counter struct {
	mu sync.Mutex
	// n and idle are guarded by mu.
	n    int
	idle chan struct{} // closed when n drops to zero; nil if nobody waits
}

// Add counts a request as started.
func (c *Counter) Add() {
	c.mu.Lock()
	c.n++
	c.mu.Unlock()
}

// Done counts a request started with Add as finished.
func (c *Counter) Done() {
	c.mu.Lock()
	c.n--
	if c.n == 0 && c.idle != nil {
		close(c.idle)
		c.idle = nil
	}
	c.mu.Unlock()
}

// Count returns the requests in flight.
func (c *Counter) Count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Wait returns nil once no request is in flight, or ctx's error.
func (c *Counter) Wait(ctx context.Context) error {
	c.mu.Lock()
	if c.n == 0 {
		c.mu.Unlock()
		return nil
	}
	if c.idle == nil {
		c.idle = make(chan struct{})
	}
	idle := c.idle
	c.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
