package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// streamShape is what every stream of a step looks like.
type streamShape struct {
	tokens int           // token events per stream (max_tokens)
	itl    time.Duration // the simulator's time between tokens
	ramp   time.Duration // stream starts are spread evenly over this
}

// streamRun is what one streaming step measured.
type streamRun struct {
	completed int
	errs      *errorLog
	peakOpen  int64 // most streams open at once, as the client saw it
	ttft      dist  // from the scheduled start to the first token event
	delay     dist  // every token event's delay beyond its schedule
}

// streams opens n SSE streams, starting them evenly over the ramp, and
// times every token event.
//
// The simulator sends token k (k ≥ 0) k·ITL after its first, which it
// sends as soon as it accepts the request. The delay of token k is how
// much later than k·ITL after the stream's scheduled start it arrived:
// for k = 0 that is the time to first token; a proxy that is slow to
// connect, buffers, or falls behind shows it in every later token too.
// The simulator's own timer drift, which the direct path measures too,
// cancels out in "added".
func streams(ctx context.Context, t *target, c *http.Client, body []byte, n int,
	shape streamShape) streamRun {
	var (
		mu        sync.Mutex
		ttft      = make([]time.Duration, 0, n)
		delay     = make([]time.Duration, 0, n*shape.tokens)
		completed atomic.Int64
		open      gauge
		errs      = new(errorLog)
		wg        sync.WaitGroup
	)
	timeout := shape.ramp + time.Duration(shape.tokens)*shape.itl + 30*time.Second
	start := time.Now()
	for i := range n {
		due := start.Add(shape.ramp * time.Duration(i) / time.Duration(n))
		if d := time.Until(due); d > 0 {
			time.Sleep(d)
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, timeout)
			defer cancel()
			first, delays, err := oneStream(rctx, t, c, body, shape, due, &open)
			if err != nil {
				errs.add(err)
				mu.Lock()
				ttft = append(ttft, failed)
				mu.Unlock()
				return
			}
			completed.Add(1)
			mu.Lock()
			ttft = append(ttft, first)
			delay = append(delay, delays...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return streamRun{completed: int(completed.Load()), errs: errs, peakOpen: open.peak.Load(),
		ttft: newDist(ttft), delay: newDist(delay)}
}

var (
	dataPrefix  = []byte("data: ")
	donePayload = []byte("[DONE]")
	roleMarker  = []byte(`"role":"assistant"`)
	tokenMarker = []byte(`"finish_reason":null`)
)

// gauge counts streams open now and the most ever open at once.
type gauge struct{ cur, peak atomic.Int64 }

func (g *gauge) inc() {
	c := g.cur.Add(1)
	for {
		p := g.peak.Load()
		if c <= p || g.peak.CompareAndSwap(p, c) {
			return
		}
	}
}

func (g *gauge) dec() { g.cur.Add(-1) }

// oneStream runs one stream to its end, counted in open while its
// status line is in. It returns the time to the first token event and
// the delay of every token event.
func oneStream(ctx context.Context, t *target, c *http.Client, body []byte,
	shape streamShape, due time.Time, open *gauge) (time.Duration, []time.Duration, error) {
	resp, err := c.Do(t.newRequest(ctx, "/v1/chat/completions", body))
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, nil, fmt.Errorf("status %d", resp.StatusCode)
	}
	open.inc()
	defer open.dec()

	// Token events are the chunks whose finish_reason is still null; the
	// role event (which the simulator sends with the first token) and
	// the final event are not timed.
	br := bufio.NewReaderSize(resp.Body, 4096)
	var (
		ttft   time.Duration
		delays = make([]time.Duration, 0, shape.tokens)
		k      int
	)
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			if errors.Is(err, bufio.ErrBufferFull) {
				err = errors.New("SSE line longer than 4 KiB")
			}
			return 0, nil, fmt.Errorf("after %d token events: %w", k, err)
		}
		payload, ok := bytes.CutPrefix(line, dataPrefix)
		if !ok {
			continue
		}
		if bytes.HasPrefix(payload, donePayload) {
			break
		}
		if bytes.Contains(payload, roleMarker) || !bytes.Contains(payload, tokenMarker) {
			continue
		}
		d := time.Since(due) - time.Duration(k)*shape.itl
		if k == 0 {
			ttft = d
		}
		delays = append(delays, d)
		k++
	}
	if k != shape.tokens {
		return 0, nil, fmt.Errorf("got %d token events, want %d", k, shape.tokens)
	}
	return ttft, delays, nil
}
