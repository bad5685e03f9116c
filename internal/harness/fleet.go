package harness

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/gateway"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/sim"
	"github.com/crosslogic/crosslogic/internal/store"
)

// model is the one model every scenario's nodes serve.
const model = "crosslogic/harness"

// Names of the gateway's counters, as it registers them.
const (
	metricRetries      = "crosslogic_gateway_retries_total"
	metricFailovers    = "crosslogic_gateway_failovers_total"
	metricEjections    = "crosslogic_gateway_node_ejections_total"
	metricReadmissions = "crosslogic_gateway_node_readmissions_total"
)

// fleet is one scenario's world: a gateway on 127.0.0.1 with its own
// registry, keyring and counters, the nodes behind it, and a client.
type fleet struct {
	registry *registry.Registry
	metrics  *prometheus.Registry
	client   *client
	log      *slog.Logger

	servers []*http.Server // the gateway and handler nodes
	// detached are the gateway's listeners, whose streams the servers'
	// Close does not see.
	detached []*gateway.Listener
	sims     []*sim.Running
}

// newFleet starts a gateway configured with cfg. The balancer is power
// of two choices, the production default.
func newFleet(cfg gateway.Config, concurrency int, log *slog.Logger) (*fleet, error) {
	f := &fleet{registry: registry.New(log), metrics: prometheus.NewRegistry(), log: log}

	k, err := apikey.Generate()
	if err != nil {
		return nil, err
	}
	keys := new(apikey.Keyring)
	keys.Replace([]store.APIKey{{ID: "key_harness", Hash: k.Digest[:]}})
	policy, err := balancer.New(balancer.NamePowerOfTwo)
	if err != nil {
		return nil, err
	}
	gw := gateway.New(gateway.Options{Config: cfg, Keys: keys, Registry: f.registry,
		Policy: policy, Logger: log, Metrics: gateway.NewMetrics(f.metrics)})

	// The gateway detaches its streams from the server, as in production.
	url, err := f.serveDetached(gw)
	if err != nil {
		return nil, err
	}
	tr := &http.Transport{MaxIdleConnsPerHost: concurrency, IdleConnTimeout: 30 * time.Second}
	f.client = &client{url: url, key: k.Secret, http: &http.Client{Transport: tr}}
	return f, nil
}

// serve serves h on a free loopback port and returns its base URL.
func (f *fleet) serve(h http.Handler) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	return f.serveOn(ln, h), nil
}

// serveDetached serves gw as controlplane.Serve does: through a
// gateway.Listener, so that streams are detached from the server.
func (f *fleet) serveDetached(gw *gateway.Gateway) (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("listen: %w", err)
	}
	dl := gateway.NewListener(ln, time.Minute)
	gw.DetachStreams(dl)
	f.detached = append(f.detached, dl)
	return f.serveOn(dl, gw), nil
}

func (f *fleet) serveOn(ln net.Listener, h http.Handler) string {
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ErrorLog: slog.NewLogLogger(f.log.Handler(), slog.LevelDebug)}
	go func() { _ = srv.Serve(ln) }()
	f.servers = append(f.servers, srv)
	return "http://" + ln.Addr().String()
}

// addNode registers a ready node at url.
func (f *fleet) addNode(id, url string) (*registry.Node, error) {
	if err := f.registry.Add(registry.Spec{ID: id, Endpoint: url, Models: []string{model},
		Source: registry.SourceConfig}); err != nil {
		return nil, err
	}
	n := f.node(id)
	f.registry.ReportHealth(n, nil, 1)
	return n, nil
}

// node returns the registry's node id, or nil.
func (f *fleet) node(id string) *registry.Node {
	for _, n := range f.registry.Nodes() {
		if n.ID == id {
			return n
		}
	}
	return nil
}

// addSim starts a simulator for cfg and registers it as node id.
func (f *fleet) addSim(id string, cfg sim.Config) (*sim.Running, error) {
	cfg.Models = []string{model}
	cfg.Logger = f.log.With("node_id", id)
	r, err := sim.Start(cfg)
	if err != nil {
		return nil, err
	}
	f.sims = append(f.sims, r)
	if _, err := f.addNode(id, r.URL); err != nil {
		return nil, err
	}
	return r, nil
}

// addHandler serves h as node id.
func (f *fleet) addHandler(id string, h http.Handler) error {
	url, err := f.serve(h)
	if err != nil {
		return err
	}
	_, err = f.addNode(id, url)
	return err
}

// close stops everything the fleet started. Requests still open are cut.
func (f *fleet) close() {
	if f.client != nil {
		f.client.http.CloseIdleConnections()
	}
	for _, s := range f.servers {
		_ = s.Close()
	}
	for _, l := range f.detached {
		l.CloseStreams()
	}
	for _, r := range f.sims {
		_ = r.Close()
	}
}

// count sums the series of a gateway counter whose labels include the
// given name, value pairs; -1 when the metrics cannot be read.
func (f *fleet) count(name string, labels ...string) int {
	sum, err := gateway.CounterSum(f.metrics, name, labels...)
	if err != nil {
		return -1
	}
	return int(sum)
}

// result fills a Result from the clients' tally, the gateway's counters
// and the nodes' statistics.
func (f *fleet) result(t tally, nodes ...*sim.Server) Result {
	r := Result{Sent: t.sent, Succeeded: t.succeeded, Failed: t.failed,
		Mismatches: t.mismatched,
		Retried:    f.count(metricRetries),
		FailedOver: f.count(metricFailovers, "phase", "mid_stream"),
		Ejections:  f.count(metricEjections), Readmissions: f.count(metricReadmissions)}
	for _, s := range nodes {
		r.UpstreamCancelled += int(s.Stats().Cancelled)
	}
	return r
}

// simServers returns the simulators' servers, for their statistics.
func (f *fleet) simServers() []*sim.Server {
	out := make([]*sim.Server, len(f.sims))
	for i, r := range f.sims {
		out[i] = r.Server()
	}
	return out
}

// waitFor polls cond until it holds or ctx ends, and reports whether it
// held.
func waitFor(ctx context.Context, cond func() bool) bool {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return cond()
		case <-t.C:
		}
	}
	return true
}
