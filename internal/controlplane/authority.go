package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/store"
)

// authority is the control plane's CA and the two certificates the
// process holds itself: the gateway's client certificate, presented to
// agents, and the control plane's server certificate, presented to agents
// calling the agent API. Both are issued in-process, so their keys never
// leave it, and renewed at about two thirds of their lifetime.
type authority struct {
	ca       *pki.CA
	lifetime time.Duration
	now      func() time.Time
	log      *slog.Logger

	gateway atomic.Pointer[tls.Certificate]
	server  atomic.Pointer[tls.Certificate]
}

// openAuthority loads the CA from the store, making it on first start.
func openAuthority(ctx context.Context, cfg config.Config, st store.Store,
	log *slog.Logger) (*authority, error) {
	dataKey, err := loadDataKey(cfg, log)
	if err != nil {
		return nil, err
	}
	roots, err := st.ListCARoots(ctx)
	if err != nil {
		return nil, fmt.Errorf("controlplane: load CA: %w", err)
	}
	if len(roots) == 0 {
		if roots, err = createRoot(ctx, st, dataKey); err != nil {
			return nil, err
		}
	}
	// The bundle holds at most two roots: the newest signs, the one
	// before it is still trusted while leaves it signed expire.
	if len(roots) > 2 {
		roots = roots[len(roots)-2:]
	}
	material := make([]pki.RootMaterial, len(roots))
	for i, r := range roots {
		material[i] = pki.RootMaterial{CertPEM: r.CertPEM, SealedKey: r.SealedKey}
	}
	ca, err := pki.LoadCA(material, dataKey, pki.Options{})
	if err != nil {
		return nil, fmt.Errorf("controlplane: open CA: %w", err)
	}
	a := &authority{ca: ca, lifetime: cfg.PKI.CertLifetime, now: time.Now,
		log: log.With("component", "authority")}
	if err := a.issue(); err != nil {
		return nil, err
	}
	a.log.Info("CA loaded", "fingerprint", ca.Fingerprint(), "roots", len(roots))
	return a, nil
}

// createRoot makes the CA's first root. When another replica made one at
// the same moment, its root wins and is returned.
func createRoot(ctx context.Context, st store.Store, dataKey []byte) ([]store.CARoot, error) {
	m, err := pki.NewRoot(dataKey, time.Now())
	if err != nil {
		return nil, fmt.Errorf("controlplane: make CA: %w", err)
	}
	cert, err := pki.ParseCertPEM(m.CertPEM)
	if err != nil {
		return nil, err
	}
	rec := store.CARoot{ID: pki.Fingerprint(cert), CertPEM: m.CertPEM, SealedKey: m.SealedKey,
		CreatedAt: time.Now().UTC()}
	if err := st.CreateCARoot(ctx, rec); err != nil && !errors.Is(err, store.ErrConflict) {
		return nil, fmt.Errorf("controlplane: store CA: %w", err)
	}
	return st.ListCARoots(ctx)
}

// loadDataKey finds the key that seals the CA's private key: the
// CROSSLOGIC_DATA_KEY variable, the configured file, or data_dir/data.key,
// made on first start.
func loadDataKey(cfg config.Config, log *slog.Logger) ([]byte, error) {
	env := os.Getenv("CROSSLOGIC_DATA_KEY")
	if env != "" || cfg.PKI.DataKeyFile != "" {
		k, err := pki.LoadDataKey(env, cfg.PKI.DataKeyFile)
		if err != nil {
			return nil, fmt.Errorf("controlplane: data key: %w", err)
		}
		return k, nil
	}
	path := filepath.Join(cfg.DataDir, "data.key")
	if _, err := os.Stat(path); err == nil {
		return pki.LoadDataKey("", path)
	}
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("controlplane: data dir: %w", err)
	}
	k, err := pki.GenerateDataKeyFile(path)
	if err != nil {
		return nil, fmt.Errorf("controlplane: make data key: %w", err)
	}
	log.Warn("made a data key next to the store; set CROSSLOGIC_DATA_KEY or "+
		"pki.data_key_file to keep it elsewhere", "path", path)
	return k, nil
}

// issue makes fresh gateway and control plane certificates.
func (a *authority) issue() error {
	gw, err := a.ca.Issue(pki.GatewayIdentity, nil, nil, a.lifetime)
	if err != nil {
		return fmt.Errorf("controlplane: issue gateway certificate: %w", err)
	}
	// Agents verify the control plane by identity, not by name, so the
	// server certificate needs no DNS or IP SANs.
	srv, err := a.ca.Issue(pki.ControlPlaneIdentity, nil, nil, a.lifetime)
	if err != nil {
		return fmt.Errorf("controlplane: issue control plane certificate: %w", err)
	}
	a.gateway.Store(gw)
	a.server.Store(srv)
	return nil
}

// renew reissues both certificates at about two thirds of their lifetime
// (pki.RenewAt: between 62% and 72%, jittered), until ctx ends. A failed
// renewal is retried after a tenth of the time left, so it is retried
// several times before the old certificate expires.
func (a *authority) renew(ctx context.Context) {
	for {
		leaf := a.gateway.Load().Leaf
		wait := pki.RenewAt(leaf.NotBefore, leaf.NotAfter, rand.Float64()).Sub(a.now())
		// Never less than 100ms: a clock far off could otherwise spin.
		t := time.NewTimer(max(wait, 100*time.Millisecond))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := a.issue(); err != nil {
			a.log.Error("renewing own certificates failed", "error", err)
			retry := time.NewTimer(max(leaf.NotAfter.Sub(a.now())/10, time.Second))
			select {
			case <-ctx.Done():
				retry.Stop()
				return
			case <-retry.C:
			}
			continue
		}
		a.log.Info("own certificates renewed", "cert_not_after", a.gateway.Load().Leaf.NotAfter)
	}
}

// serverSource is what the agent API's TLS listener presents and trusts.
func (a *authority) serverSource() pki.Source {
	return pki.Source{Certificate: a.server.Load, Bundle: a.ca.Bundle}
}

// nodeTransport returns the gateway's transport to an agent node: mutual
// TLS presenting the gateway certificate and requiring the node's own
// identity, checked on every new connection.
func (a *authority) nodeTransport(cfg gateway.Config) func(nodeID string) http.RoundTripper {
	return func(nodeID string) http.RoundTripper {
		t := gateway.NewTransport(cfg)
		t.TLSClientConfig = a.nodeTLS(nodeID)
		return t
	}
}

// nodeStreamTransport returns what builds the HTTP/2 transport for an
// agent node's streams, with the same mutual TLS as nodeTransport.
func (a *authority) nodeStreamTransport(cfg gateway.Config) func(string) http.RoundTripper {
	return func(nodeID string) http.RoundTripper {
		return gateway.NewStreamTransport(cfg, a.nodeTLS(nodeID))
	}
}

// nodeTLS presents the gateway certificate and accepts only a
// certificate naming nodeID.
func (a *authority) nodeTLS(nodeID string) *tls.Config {
	return pki.ClientConfig(pki.Source{Certificate: a.gateway.Load, Bundle: a.ca.Bundle},
		pki.NodeIdentity(nodeID))
}
