package agent

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/pki"
)

// obtainIdentity returns the identity stored in StateDir, or joins the
// fleet to get one.
func (a *Agent) obtainIdentity(ctx context.Context) (*identity, error) {
	id, err := loadIdentity(a.cfg.StateDir, a.clock.Now())
	if err != nil {
		return nil, err
	}
	if id == nil {
		return a.join(ctx)
	}

	a.log.Info("node identity loaded", "node_id", id.record.NodeID,
		"not_after", id.cert.Leaf.NotAfter)
	if id.record.ControlPlane != a.cfg.ControlPlane {
		// The certificate is what counts, and it is checked at every
		// handshake; a new URL for the same control plane is fine.
		a.log.Warn("control plane URL differs from the one joined",
			"joined", id.record.ControlPlane, "now", a.cfg.ControlPlane)
	}
	return id, nil
}

// join registers the node with the control plane and stores the identity
// it gets. Network failures and server errors are retried with backoff
// until ctx ends; a refusal is returned at once.
func (a *Agent) join(ctx context.Context) (*identity, error) {
	if a.cfg.JoinToken == "" {
		return nil, fmt.Errorf("agent: no identity in %s and no join token to join with",
			a.cfg.StateDir)
	}
	if a.cfg.CAFingerprint == "" {
		return nil, errors.New("agent: no CA fingerprint to pin for joining")
	}
	// Find out now, before the single-use token is spent, whether the
	// identity can be stored.
	if err := prepareStateDir(a.cfg.StateDir); err != nil {
		return nil, err
	}

	key, err := pki.NewKey()
	if err != nil {
		return nil, fmt.Errorf("agent: make key: %w", err)
	}
	csr, err := pki.NewCSR(key, a.dnsNames, a.ips)
	if err != nil {
		return nil, fmt.Errorf("agent: make CSR: %w", err)
	}
	req := agentapi.RegisterRequest{
		CSR:      string(csr),
		Endpoint: a.cfg.AdvertiseURL,
		Name:     a.cfg.Name,
		Facts:    a.cfg.Facts,
	}
	hc := newAPIClient(pki.PinnedConfig(a.cfg.CAFingerprint, a.clock.Now))
	defer hc.CloseIdleConnections()

	a.log.Info("node joining", "control_plane", a.cfg.ControlPlane, "name", a.cfg.Name)
	var resp agentapi.RegisterResponse
	b := backoff{min: time.Second, max: time.Minute}
	for {
		err := a.call(ctx, hc, "register", agentapi.PathRegister, a.cfg.JoinToken, req, &resp)
		if err == nil {
			break
		}
		if _, ok := errors.AsType[*pki.PeerError](err); ok {
			return nil, fmt.Errorf("agent: join: the control plane's certificate was "+
				"refused; check the CA fingerprint: %w", err)
		}
		if !retryable(err) {
			return nil, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		wait := b.next(a.rand())
		a.log.Warn("join failed; retrying", "error", err, "retry_in_ms", wait.Milliseconds())
		if err := sleep(ctx, a.clock, wait, nil); err != nil {
			return nil, err
		}
	}

	cert, bundle, err := acceptCertificate(key, resp.NodeID,
		[]byte(resp.Certificate), []byte(resp.Bundle))
	if err != nil {
		return nil, fmt.Errorf("agent: join: unusable certificate from the control plane: %w", err)
	}
	id := &identity{
		record: nodeRecord{
			NodeID:              resp.NodeID,
			ControlPlane:        a.cfg.ControlPlane,
			Endpoint:            a.cfg.AdvertiseURL,
			JoinedAt:            a.clock.Now().UTC(),
			HeartbeatIntervalMS: resp.HeartbeatIntervalMS,
		},
		key:    key,
		cert:   cert,
		bundle: bundle,
	}
	if err := saveIdentity(a.cfg.StateDir, id); err != nil {
		return nil, err
	}
	a.log.Info("node joined", "node_id", id.record.NodeID, "not_after", cert.Leaf.NotAfter)
	return id, nil
}

// prepareStateDir creates dir (0700) and checks that files can be written
// in it.
func prepareStateDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("agent: make state directory: %w", err)
	}
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("agent: state directory %s is not writable: %w", dir, err)
	}
	f.Close()
	return os.Remove(f.Name())
}
