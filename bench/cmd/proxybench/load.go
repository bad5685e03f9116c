package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// requestTimeout bounds one non-streaming request. The answers come
// back in about a millisecond, so a request that takes this long has
// failed.
const requestTimeout = 5 * time.Second

// maxClosedLoopRequests bounds one closed-loop step by count as well as
// by time.
const maxClosedLoopRequests = 2_000_000

// target is where load goes: one contender instance on loopback.
type target struct {
	base   string      // "http://127.0.0.1:PORT"
	header http.Header // sent with every request: API keys, Portkey's routing
}

// newTransport returns the load generator's HTTP transport: keep-alive,
// no connection limit, no compression, and dials to loopback only.
func newTransport() *http.Transport {
	d := &net.Dialer{Timeout: 5 * time.Second}
	return &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			if err := checkLoopback(addr); err != nil {
				return nil, err
			}
			return d.DialContext(ctx, network, addr)
		},
		// One idle connection per concurrent stream, so that the biggest
		// streaming step does not churn connections.
		MaxIdleConnsPerHost: 20_000,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
}

// checkLoopback refuses any address but a loopback IP: the harness
// sends traffic to this machine only.
func checkLoopback(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return err
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("refusing to send traffic to %s: not a loopback address", hostport)
	}
	return nil
}

// newRequest builds a POST of body to the target's path.
func (t *target) newRequest(ctx context.Context, path string, body []byte) *http.Request {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, t.base+path,
		bytes.NewReader(body))
	if err != nil {
		panic(err) // the URL is built by the harness; unreachable
	}
	for k, v := range t.header {
		req.Header[k] = v
	}
	req.Header.Set("Content-Type", "application/json")
	return req
}

// do sends one non-streaming request and reads the whole answer. It
// returns the answer's size in bytes.
func (t *target) do(ctx context.Context, c *http.Client, body []byte) (int64, error) {
	resp, err := c.Do(t.newRequest(ctx, "/v1/chat/completions", body))
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	n, err := io.Copy(io.Discard, resp.Body)
	if err != nil {
		return n, err
	}
	if resp.StatusCode != http.StatusOK {
		return n, fmt.Errorf("status %d", resp.StatusCode)
	}
	return n, nil
}

// errorLog keeps a count of failures and the first one's message.
type errorLog struct {
	n     atomic.Int64
	once  sync.Once
	first string
}

func (e *errorLog) add(err error) {
	e.n.Add(1)
	e.once.Do(func() { e.first = err.Error() })
}

// merge adds the failures of o, which no one is adding to any more.
func (e *errorLog) merge(o *errorLog) {
	if n := o.n.Load(); n > 0 {
		e.n.Add(n)
		e.once.Do(func() { e.first = o.first })
	}
}

// openLoop sends rate requests per second for dur, each at its
// scheduled time whether or not earlier ones have been answered, and
// measures each latency from the scheduled time. A load generator that
// waited for answers, or measured from the moment it got round to
// sending, would hide a slow proxy's queueing (coordinated omission).
// It returns the latencies, with failed for each failed request.
func openLoop(ctx context.Context, t *target, c *http.Client, body []byte,
	rate int, dur time.Duration) (dist, *errorLog) {
	n := int(float64(rate) * dur.Seconds())
	interval := time.Second / time.Duration(rate)
	lat := make([]time.Duration, n)
	errs := new(errorLog)

	var wg sync.WaitGroup
	start := time.Now()
	for i := range n {
		due := start.Add(time.Duration(i) * interval)
		if d := time.Until(due); d > 0 {
			time.Sleep(d) // an oversleep makes the next sends late, and counted so
		}
		if ctx.Err() != nil {
			lat[i] = failed
			continue
		}
		wg.Go(func() {
			rctx, cancel := context.WithTimeout(ctx, requestTimeout)
			defer cancel()
			if _, err := t.do(rctx, c, body); err != nil {
				lat[i] = failed
				errs.add(err)
				return
			}
			lat[i] = time.Since(due)
		})
	}
	wg.Wait()
	return newDist(lat), errs
}

// closedLoop runs conc workers, each sending its next request as soon
// as the last is answered, for dur or maxClosedLoopRequests requests in
// all. It returns the successful requests, how long the step took and
// their latencies.
func closedLoop(ctx context.Context, t *target, c *http.Client, body []byte,
	conc int, dur time.Duration) (ok int64, elapsed time.Duration, d dist, errs *errorLog) {
	errs = new(errorLog)
	var (
		mu   sync.Mutex
		lat  []time.Duration
		sent atomic.Int64
		done atomic.Int64
		wg   sync.WaitGroup
	)
	start := time.Now()
	deadline := start.Add(dur)
	for range conc {
		wg.Go(func() {
			mine := make([]time.Duration, 0, 4096)
			for time.Now().Before(deadline) && ctx.Err() == nil &&
				sent.Add(1) <= maxClosedLoopRequests {
				t0 := time.Now()
				rctx, cancel := context.WithTimeout(ctx, requestTimeout)
				_, err := t.do(rctx, c, body)
				cancel()
				if err != nil {
					errs.add(err)
					mine = append(mine, failed)
					continue
				}
				done.Add(1)
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	return done.Load(), time.Since(start), newDist(lat), errs
}
