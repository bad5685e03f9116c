package registry

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// Prober checks every node's health on an interval and reports the
// outcome to the registry. A check is a GET of the engine's /health, which
// vLLM and SGLang both answer cheaply: it never runs a billed completion.
type Prober struct {
	// Registry is the registry probed and reported to.
	Registry *Registry
	// Client makes the checks. Its transport should be the one the
	// gateway uses, so a check exercises the same TLS and dialing.
	Client *http.Client
	// Interval is the time between rounds; zero means 5s.
	Interval time.Duration
	// Timeout bounds one check; zero means 2s.
	Timeout time.Duration
	// FailureThreshold is how many consecutive failures make a node
	// unhealthy; zero means 2, so one lost packet does not eject a node.
	FailureThreshold int
	// HeartbeatTTL is how long an agent node may go without a heartbeat
	// before it is marked unhealthy; zero disables the check.
	HeartbeatTTL time.Duration
}

// Run probes until ctx is done. The first round starts at once.
func (p *Prober) Run(ctx context.Context) {
	interval := p.Interval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		p.Round(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Round checks every node once, concurrently, and returns when all checks
// have been reported.
func (p *Prober) Round(ctx context.Context) {
	threshold := p.FailureThreshold
	if threshold <= 0 {
		threshold = 2
	}
	if p.HeartbeatTTL > 0 {
		p.Registry.ExpireHeartbeats(p.HeartbeatTTL)
	}
	var wg sync.WaitGroup
	for _, n := range p.Registry.Nodes() {
		wg.Go(func() {
			err := p.Check(ctx, n)
			if ctx.Err() != nil {
				return // shutting down; the failure says nothing of the node
			}
			p.Registry.ReportHealth(n, err, threshold)
		})
	}
	wg.Wait()
}

// Check performs one health check of n.
func (p *Prober) Check(ctx context.Context, n *Node) error {
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.BaseURL+"/health", nil)
	if err != nil {
		return fmt.Errorf("health check: %w", err)
	}
	if a := n.Authorization(); a != "" {
		req.Header.Set("Authorization", a)
	}
	client := p.Client
	if client == nil {
		client = http.DefaultClient
	}
	if t := n.Transport(); t != nil {
		// An agent node: the check goes over the same mutual TLS, with
		// the same identity check, as the gateway's requests.
		client = &http.Client{Transport: t, Timeout: client.Timeout}
	}
	resp, err := client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("health check: no answer within %s", timeout)
		}
		return fmt.Errorf("health check: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health check: status %d", resp.StatusCode)
	}
	return nil
}
