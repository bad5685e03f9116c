package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/pki"
)

// maxRenewBackoff caps the wait between failed renewals. The last third
// of a 24-hour certificate leaves eight hours of retries; five minutes
// keeps an outage from costing more than that after it ends.
const maxRenewBackoff = 5 * time.Minute

// renewLoop renews the certificate until ctx ends. It waits until
// pki.RenewAt, two thirds of the way through the certificate's lifetime
// with jitter, by the agent's clock; then renews, retrying with backoff
// until the certificate expires. An expired certificate or a node_gone
// answer ends the loop with an error on fatal.
func (a *Agent) renewLoop(ctx context.Context, fatal chan<- error) {
	for {
		// A swap signalled before this point is reflected in leaf.
		select {
		case <-a.certSwaps:
		default:
		}
		leaf := a.cert.Load().Leaf
		at := pki.RenewAt(leaf.NotBefore, leaf.NotAfter, a.rand())
		a.log.Debug("certificate renewal scheduled", "renew_at", at, "not_after", leaf.NotAfter)
		if a.waitUntil(ctx, at) != nil {
			return
		}
		if a.cert.Load().Leaf != leaf {
			continue // renewed meanwhile, by RenewNow: schedule anew
		}

		b := backoff{min: time.Second, max: maxRenewBackoff}
		for {
			err := a.renew(ctx)
			if err == nil || ctx.Err() != nil || a.cert.Load().Leaf != leaf {
				break
			}
			if errors.Is(err, ErrNodeGone) {
				fatal <- err
				return
			}
			left := leaf.NotAfter.Sub(a.clock.Now())
			if left <= 0 {
				fatal <- fmt.Errorf("%w: renewal failed until it expired at %s: %w",
					ErrCertificateExpired, leaf.NotAfter.UTC().Format(time.RFC3339), err)
				return
			}
			wait := min(b.next(a.rand()), left)
			a.log.Warn("certificate renewal failed", "error", err,
				"retry_in_ms", wait.Milliseconds(), "not_after", leaf.NotAfter)
			if sleep(ctx, a.clock, wait, a.certSwaps) != nil {
				return
			}
		}
	}
}

// waitUntil waits until t by the agent's clock, or until the certificate
// is swapped or ctx ends; it returns ctx's error in the last case.
func (a *Agent) waitUntil(ctx context.Context, t time.Time) error {
	return sleep(ctx, a.clock, t.Sub(a.clock.Now()), a.certSwaps)
}

// RenewNow renews the node's certificate at once, whatever the schedule,
// and reschedules the next renewal from the new certificate. It is for
// tests and operators; the agent renews on its own.
func (a *Agent) RenewNow(ctx context.Context) error {
	if a.self.Load() == nil {
		return errors.New("agent: cannot renew before the node has an identity")
	}
	if err := a.renew(ctx); err != nil {
		return err
	}
	select {
	case a.certSwaps <- struct{}{}:
	default: // a reschedule is pending already
	}
	return nil
}

// renew asks the control plane for a new certificate for the node's key
// and swaps it in: the listener presents it from the next handshake on,
// connections already open carry on with the old one, and calls to the
// control plane use it from their next connection.
func (a *Agent) renew(ctx context.Context) error {
	a.renewMu.Lock()
	defer a.renewMu.Unlock()

	// The key stays: a new one would have to replace key.pem and cert.pem
	// together, and no pair of renames is atomic.
	me := a.self.Load()
	csr, err := pki.NewCSR(me.key, a.dnsNames, a.ips)
	if err != nil {
		return fmt.Errorf("agent: renew: make CSR: %w", err)
	}
	var resp agentapi.RenewResponse
	err = a.call(ctx, a.cpClient, "renew", agentapi.PathRenew, "",
		agentapi.RenewRequest{CSR: string(csr)}, &resp)
	if err != nil {
		return err
	}
	cert, bundle, err := acceptCertificate(me.key, me.record.NodeID,
		[]byte(resp.Certificate), []byte(resp.Bundle))
	if err != nil {
		return fmt.Errorf("agent: renew: unusable certificate from the control plane: %w", err)
	}

	// Stored before it is used, so that once a peer has seen the new
	// certificate a restart cannot come back with the old one. A failure
	// to store is logged, not returned: the certificate is good, and the
	// next renewal stores again; until then a restart comes back with the
	// old certificate, valid for a third of its life yet.
	if err := saveCertificate(a.cfg.StateDir, cert, bundle); err != nil {
		a.log.Error("renewed certificate not saved", "error", err)
	}

	// Bundle first: a peer with a certificate from a new root must find
	// the root trusted by the time the new certificate is presented.
	a.bundle.Store(bundle)
	a.cert.Store(cert)
	if resp.HeartbeatIntervalMS > 0 {
		a.interval.Store(resp.HeartbeatIntervalMS)
	}
	a.cpClient.CloseIdleConnections()
	a.log.Info("certificate renewed", "serial", cert.Leaf.SerialNumber.String(),
		"not_after", cert.Leaf.NotAfter)
	return nil
}
