package agent

import (
	"context"
	"time"
)

// Clock is the agent's source of time for what it schedules: heartbeats,
// certificate renewal and the backoff between retries, and the time
// certificates are checked at. Tests substitute a fake one to run hours
// of schedule in milliseconds. Implementations must be safe for
// concurrent use.
type Clock interface {
	// Now returns the current time.
	Now() time.Time
	// NewTimer returns a timer that fires once, d from now; a d of zero
	// or less fires at once.
	NewTimer(d time.Duration) Timer
}

// Timer is a one-shot timer made by a Clock.
type Timer interface {
	// C returns the channel on which the timer sends the time when it
	// fires.
	C() <-chan time.Time
	// Stop prevents the timer from firing. It reports whether it did so,
	// false meaning the timer had already fired or been stopped.
	Stop() bool
}

// realClock is the wall clock.
type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (t realTimer) C() <-chan time.Time { return t.t.C }
func (t realTimer) Stop() bool          { return t.t.Stop() }

// sleep waits for d on c, or until ctx ends or wake receives; it returns
// ctx's error in the first case.
func sleep(ctx context.Context, c Clock, d time.Duration, wake <-chan struct{}) error {
	t := c.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C():
	case <-wake:
	}
	return nil
}

// backoff is an exponential backoff with jitter: each wait doubles from
// min up to max (no cap if zero), and is then spread by ±20% so that a fleet that lost the
// control plane together does not come back together.
type backoff struct {
	min, max time.Duration
	cur      time.Duration // the last wait before jitter; zero after reset
}

// next returns the next wait, given r uniform in [0, 1).
func (b *backoff) next(r float64) time.Duration {
	if b.cur == 0 {
		b.cur = b.min
	} else {
		b.cur *= 2
	}
	if b.max > 0 {
		b.cur = min(b.cur, b.max)
	}
	return time.Duration(float64(b.cur) * (0.8 + 0.4*r))
}

// reset makes the next wait min again.
func (b *backoff) reset() { b.cur = 0 }
