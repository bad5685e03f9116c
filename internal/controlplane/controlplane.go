// Package controlplane assembles one CrossLogic server process: the store,
// the keyring, the node registry and its health prober, the admin API and
// the gateway, on one listener. `crosslogic server` and `crosslogic demo`
// both run it.
package controlplane

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/crosslogic/crosslogic/internal/admin"
	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/config"
	"github.com/crosslogic/crosslogic/internal/enrollment"
	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/store"
	"github.com/crosslogic/crosslogic/internal/store/sqlite"
)

// Server is a running control plane and gateway. Create one with New, run
// it with Serve, and it closes its store when Serve returns.
type Server struct {
	cfg      config.Config
	log      *slog.Logger
	store    store.Store
	keys     *apikey.Keyring
	registry *registry.Registry
	prober   *registry.Prober
	gateway  *gateway.Gateway
	admin    *admin.Server
	handler  http.Handler

	authority  *authority
	enrollment *enrollment.Server
	// nodeTransport builds the mTLS transport to an agent node.
	nodeTransport func(nodeID string) http.RoundTripper
	// nodeStreamTransport builds the HTTP/2 mTLS transport for an agent
	// node's streams.
	nodeStreamTransport func(nodeID string) http.RoundTripper
	// gatewayConfig is the gateway's configuration, for node transports.
	gatewayConfig gateway.Config
	// metrics holds every Prometheus collector of the process.
	metrics *prometheus.Registry

	// OnDrained, when set, is called during shutdown after the public API
	// has drained and before the agent API closes. The demo stops its
	// agents there.
	OnDrained func()
}

func gatewayTimeouts(t config.Timeouts) gateway.Timeouts {
	return gateway.Timeouts{FirstByte: t.FirstByte, Idle: t.Idle, Total: t.Total}
}

// MetricsHandler serves the process's Prometheus metrics.
func (s *Server) MetricsHandler() http.Handler {
	return promhttp.HandlerFor(s.metrics, promhttp.HandlerOpts{})
}

// New opens the store, loads keys and nodes, and builds the handlers. It
// does not listen yet. A nil logger discards.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	st, err := sqlite.Open(ctx, cfg.DataDir, sqlite.WithLogger(log))
	if err != nil {
		return nil, fmt.Errorf("controlplane: open store: %w", err)
	}
	s, err := newWithStore(ctx, cfg, log, st)
	if err != nil {
		st.Close()
		return nil, err
	}
	return s, nil
}

func newWithStore(ctx context.Context, cfg config.Config, log *slog.Logger,
	st store.Store) (*Server, error) {
	s := &Server{cfg: cfg, log: log, store: st, keys: new(apikey.Keyring),
		registry: registry.New(log)}
	gcfg := gateway.Config{
		MaxBodyBytes:          cfg.Gateway.MaxBodyBytes,
		ConnectTimeout:        cfg.Gateway.ConnectTimeout,
		ResponseHeaderTimeout: cfg.Gateway.ResponseHeaderTimeout,
		RetryAfter:            cfg.Gateway.RetryAfter,
		Timeouts:              gatewayTimeouts(cfg.Gateway.Timeouts),
		MaxRetries:            cfg.Gateway.MaxRetries,
		RetryBudget:           cfg.Gateway.RetryBudget,
		RetryBurst:            cfg.Gateway.RetryBurst,
		DisableFailover:       cfg.Gateway.DisableFailover,
		PrefixAffinity:        cfg.Gateway.PrefixAffinity,
		Outlier: registry.Outlier{Consecutive: cfg.Gateway.Outlier.Consecutive,
			BaseEjection: cfg.Gateway.Outlier.BaseEjection,
			MaxEjection:  cfg.Gateway.Outlier.MaxEjection},
	}
	if len(cfg.Gateway.ModelTimeouts) > 0 {
		gcfg.ModelTimeouts = map[string]gateway.Timeouts{}
		for m, t := range cfg.Gateway.ModelTimeouts {
			gcfg.ModelTimeouts[m] = gatewayTimeouts(t)
		}
	}
	s.metrics = prometheus.NewRegistry()
	s.metrics.MustRegister(collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		registry.NewCollector(s.registry))

	auth, err := openAuthority(ctx, cfg, st, log)
	if err != nil {
		return nil, err
	}
	s.authority = auth
	s.gatewayConfig = gcfg
	s.nodeTransport = auth.nodeTransport(gcfg)
	s.nodeStreamTransport = auth.nodeStreamTransport(gcfg)
	if err := admin.ReloadKeys(ctx, st, s.keys); err != nil {
		return nil, err
	}
	if err := s.loadNodes(ctx); err != nil {
		return nil, err
	}

	policy, err := balancer.New(cfg.Gateway.Balancer)
	if err != nil {
		return nil, err
	}
	transport := gateway.NewTransport(gcfg)
	s.gateway = gateway.New(gateway.Options{Config: gcfg, Keys: s.keys,
		Registry: s.registry, Policy: policy, Transport: transport, Logger: log,
		Metrics: gateway.NewMetrics(s.metrics)})
	// Detached streams are no connections of the server's any more; this
	// is where an operator sees how many are open.
	s.metrics.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "crosslogic_gateway_detached_streams",
		Help: "Streams of HTTP/1.1 clients being relayed, detached from the HTTP server.",
	}, func() float64 { return float64(s.gateway.DetachedStreams()) }))
	s.admin = admin.NewServer(admin.Options{Store: st, Keys: s.keys,
		Registry: s.registry, Token: cfg.AdminToken, Logger: log, CA: auth.ca})
	s.prober = &registry.Prober{Registry: s.registry,
		Client:   &http.Client{Transport: transport},
		Interval: cfg.Health.Interval, Timeout: cfg.Health.Timeout,
		FailureThreshold: cfg.Health.FailureThreshold, HeartbeatTTL: cfg.Heartbeat.TTL}
	s.enrollment = &enrollment.Server{Store: st, Registry: s.registry, CA: auth.ca,
		NodeTransport: s.nodeTransport, NodeStreamTransport: s.nodeStreamTransport,
		HeartbeatInterval: cfg.Heartbeat.Interval,
		CertLifetime:      cfg.PKI.CertLifetime, Logger: log}

	mux := http.NewServeMux()
	mux.Handle("/admin/", s.admin)
	mux.Handle("/", s.gateway)
	s.handler = mux
	return s, nil
}

// loadNodes puts the config file's nodes and the stored ones in the
// registry. A stored node whose ID the config file also declares is
// skipped with a warning: the file wins.
func (s *Server) loadNodes(ctx context.Context) error {
	for _, n := range s.cfg.Nodes {
		spec := registry.Spec{ID: n.ID, Endpoint: n.Endpoint, Models: n.Models,
			Provider: n.Provider, Region: n.Region, Source: registry.SourceConfig}
		if spec.Provider == "" {
			spec.Provider = "manual"
		}
		if n.HTTP2 {
			spec.StreamTransport = gateway.NewStreamTransport(s.gatewayConfig, nil)
		}
		if n.UpstreamKeyEnv != "" {
			spec.UpstreamKey = os.Getenv(n.UpstreamKeyEnv)
			if spec.UpstreamKey == "" {
				return fmt.Errorf("controlplane: node %s: environment variable %s is empty",
					n.ID, n.UpstreamKeyEnv)
			}
		}
		if err := s.registry.Add(spec); err != nil {
			return fmt.Errorf("controlplane: config: %w", err)
		}
	}
	stored, err := s.store.ListNodes(ctx)
	if err != nil {
		return fmt.Errorf("controlplane: load nodes: %w", err)
	}
	for _, n := range stored {
		spec := registry.Spec{ID: n.ID, Endpoint: n.Endpoint,
			Models: n.Models, Provider: n.Provider, Region: n.Region,
			UpstreamKey: n.UpstreamKey, Source: registry.SourceAdmin}
		if n.Kind == "agent" {
			// Back as joining: it is ready again at its next heartbeat.
			spec.Source, spec.CertNotAfter = registry.SourceAgent, n.CertNotAfter
			spec.Transport = s.nodeTransport(n.ID)
			spec.StreamTransport = s.nodeStreamTransport(n.ID)
			spec.Facts = registry.Facts{Zone: n.Zone, InstanceType: n.InstanceType,
				Spot: n.Spot, GPU: n.GPU, Engine: n.Engine, Labels: n.Labels}
		}
		err := s.registry.Add(spec)
		if errors.Is(err, registry.ErrExists) {
			s.log.Warn("stored node shadowed by the config file", "node_id", n.ID)
			continue
		}
		if err != nil {
			return fmt.Errorf("controlplane: stored node: %w", err)
		}
	}
	return nil
}

// Handler returns the process's HTTP handler: /admin/ and the public API.
func (s *Server) Handler() http.Handler { return s.handler }

// NodeTransport returns the mTLS transport the gateway uses for the agent
// node nodeID: it presents the gateway certificate and accepts only a
// certificate naming that node.
func (s *Server) NodeTransport(nodeID string) http.RoundTripper {
	return s.nodeTransport(nodeID)
}

// NodeStreamTransport returns the HTTP/2 transport, with the same mutual
// TLS as NodeTransport, that carries the agent node nodeID's streams.
func (s *Server) NodeStreamTransport(nodeID string) http.RoundTripper {
	return s.nodeStreamTransport(nodeID)
}

// RemoveNode removes a node from the registry and the store.
func (s *Server) RemoveNode(ctx context.Context, id string) error {
	if err := s.store.DeleteNode(ctx, id); err != nil && !errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("controlplane: remove node: %w", err)
	}
	_ = s.registry.Remove(id)
	return nil
}

// Registry returns the node registry.
func (s *Server) Registry() *registry.Registry { return s.registry }

// Admin returns the admin API server.
func (s *Server) Admin() *admin.Server { return s.admin }

// Fingerprint returns the CA's fingerprint, which agents pin on their
// first contact.
func (s *Server) Fingerprint() string { return s.authority.ca.Fingerprint() }

// Serve serves the public and admin API on public and, when agents is not
// nil, the agent API over TLS on agents, until ctx is done. Then it drains:
// /readyz turns 503, the listeners close, and requests in flight get up to
// the configured drain timeout to finish. It closes the store before
// returning.
func (s *Server) Serve(ctx context.Context, public, agents net.Listener) error {
	defer s.store.Close()

	bg, stopBackground := context.WithCancel(context.Background())
	defer stopBackground()
	go s.prober.Run(bg)
	go s.reloadKeys(bg)
	go s.authority.renew(bg)

	if agents != nil {
		asrv := &http.Server{
			Handler:           s.enrollment.Handler(),
			TLSConfig:         pki.ServerConfigOptionalClient(s.authority.serverSource()),
			ReadHeaderTimeout: 10 * time.Second,
			ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
		}
		go func() { _ = asrv.Serve(tls.NewListener(agents, asrv.TLSConfig)) }()
		defer asrv.Close()
		s.log.Info("agent API serving", "addr", agents.Addr().String(),
			"ca_fingerprint", s.Fingerprint())
	}

	const idle = 120 * time.Second
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       idle,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	// Streams leave the server while they run (see gateway.Listener) and
	// come back through this listener when they end.
	ln := gateway.NewListener(public, idle)
	s.gateway.DetachStreams(ln)
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	s.log.Info("serving", "addr", public.Addr().String(), "nodes", len(s.registry.Nodes()),
		"admin_api", s.cfg.AdminToken != "")

	select {
	case err := <-errc:
		return fmt.Errorf("controlplane: serve: %w", err)
	case <-ctx.Done():
	}

	s.log.Info("draining", "timeout", s.cfg.DrainTimeout.String())
	s.gateway.Drain()
	drainCtx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	err := srv.Shutdown(drainCtx)
	if err == nil {
		err = ln.Wait(drainCtx) // streams the server no longer tracks
	}
	if err != nil {
		s.log.Warn("drain timed out; closing connections", "error", err,
			"streams", ln.Streams())
		srv.Close()
		ln.CloseStreams()
	}
	if s.OnDrained != nil {
		// The agent API is still open, so agents stopping now can still
		// report draining and deregister.
		s.OnDrained()
	}
	s.log.Info("stopped")
	return nil
}

// reloadKeys picks up key changes made by other replicas.
func (s *Server) reloadKeys(ctx context.Context) {
	interval := s.cfg.KeyReloadInterval
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			if err := s.admin.ReloadKeys(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("key reload failed; serving the last keys loaded", "error", err)
			}
		}
	}
}

// WaitReady polls the registry until every node serving each of models has
// been checked and at least one is ready, or ctx ends.
func (s *Server) WaitReady(ctx context.Context, models ...string) error {
	for {
		snap := s.registry.Snapshot()
		missing := []string{}
		for _, m := range models {
			if p := snap.Pool([]byte(m)); p == nil || len(p.Ready) == 0 {
				missing = append(missing, m)
			}
		}
		if len(missing) == 0 {
			return nil
		}
		s.prober.Round(ctx)
		select {
		case <-ctx.Done():
			return fmt.Errorf("controlplane: no ready node for %s: %w",
				strings.Join(missing, ", "), ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
