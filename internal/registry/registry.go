// Package registry keeps the set of nodes the gateway may route to, and
// their state, and publishes it to the request path as immutable
// snapshots.
//
// Writers (the admin API, the config loader, the health prober) take the
// registry's mutex, change the node table and publish a new Snapshot. The
// request path only loads the current Snapshot through an atomic pointer:
// it never waits for a writer and never sees a half-made change.
package registry

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// State is where a node is in its life, as the gateway routes on it.
type State string

// Node states. Only StateReady nodes receive traffic.
const (
	// StateJoining is a node known but not yet seen healthy.
	StateJoining State = "joining"
	// StateReady is a node that passed its last health check.
	StateReady State = "ready"
	// StateUnhealthy is a node that failed its recent health checks, or
	// whose agent missed its heartbeats or reported its engine down.
	StateUnhealthy State = "unhealthy"
	// StateDraining is a node going away: its agent reported a shutdown
	// or spot interruption, or an operator drained it. It finishes the
	// requests it has and gets no new ones.
	StateDraining State = "draining"
)

// Source says where a node's declaration came from.
type Source string

// Node sources.
const (
	// SourceConfig nodes are declared in the config file; they are
	// changed by editing it, not through the admin API.
	SourceConfig Source = "config"
	// SourceAdmin nodes were added through the admin API and are stored.
	SourceAdmin Source = "admin"
	// SourceAgent nodes joined with a join token and run CrossLogic's
	// agent, which heartbeats; they are stored.
	SourceAgent Source = "agent"
)

// Spec declares a node: what it serves and how to reach it.
type Spec struct {
	ID       string
	Endpoint string
	Models   []string
	Provider string
	Region   string
	// UpstreamKey is the bearer token the engine expects; empty for none.
	UpstreamKey string
	Source      Source
	// Facts are what an agent reported about its machine; zero for other
	// nodes.
	Facts Facts
	// CertNotAfter is when an agent node's certificate expires.
	CertNotAfter time.Time
	// Transport reaches the node; nil means the gateway's shared one. Agent
	// nodes get their own, which verifies the node's certificate identity.
	Transport http.RoundTripper
	// StreamTransport, when not nil, carries the node's streaming
	// requests: HTTP/2, so that streams, which last minutes, share a few
	// connections instead of holding one each.
	StreamTransport http.RoundTripper
}

// Facts describe an agent node's machine.
type Facts struct {
	Zone         string            `json:"zone,omitempty"`
	InstanceType string            `json:"instance_type,omitempty"`
	Spot         bool              `json:"spot,omitempty"`
	GPU          string            `json:"gpu,omitempty"`
	Engine       string            `json:"engine,omitempty"`
	Labels       map[string]string `json:"labels,omitempty"`
}

// Validate reports what is wrong with the spec, if anything.
func (s Spec) Validate() error {
	if s.ID == "" || len(s.ID) > 128 || strings.ContainsAny(s.ID, " \t\r\n/") {
		return fmt.Errorf("registry: node id %q must be 1-128 characters without spaces or '/'", s.ID)
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("registry: node %s: endpoint %q must be an http or https URL",
			s.ID, s.Endpoint)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("registry: node %s: endpoint must not carry a query, fragment or user",
			s.ID)
	}
	if len(s.Models) == 0 {
		return fmt.Errorf("registry: node %s serves no model", s.ID)
	}
	for _, m := range s.Models {
		if m == "" {
			return fmt.Errorf("registry: node %s: empty model name", s.ID)
		}
	}
	return nil
}

// Node is a node as the request path uses it. Its identity and address
// never change once published; a changed declaration makes a new Node.
type Node struct {
	// ID identifies the node, logged as node_id.
	ID string
	// BaseURL is the endpoint with any trailing slash removed; request
	// paths such as "/v1/chat/completions" are appended to it.
	BaseURL string
	// URL is BaseURL parsed.
	URL *url.URL
	// Models are the model names the node serves.
	Models []string
	// Provider and Region describe where the node runs.
	Provider, Region string
	// Source says where the declaration came from.
	Source Source

	authorization string
	transport     http.RoundTripper
	streams       http.RoundTripper
	inflight      atomic.Int64
	load          atomic.Pointer[Load]

	// Passive outlier detection (see Node.Failed): the gateway writes
	// these on the request path, so they are atomics, not registry state.
	failures     atomic.Int32 // consecutive failures
	ejections    atomic.Int32 // consecutive ejections, for the growing cooldown
	ejectedUntil atomic.Int64 // unix nanoseconds; zero when not ejected
}

// Ejected reports whether the node is ejected at now.
func (n *Node) Ejected(now time.Time) bool {
	u := n.ejectedUntil.Load()
	return u != 0 && now.UnixNano() < u
}

// Load is a node's load as its agent last reported it.
type Load struct {
	// Running and Waiting are the engine's requests being generated and
	// queued.
	Running, Waiting float64
	// KVCacheUsage is the engine's KV-cache use, 0 to 1.
	KVCacheUsage float64
}

// Transport returns the round tripper for the node, or nil for the
// gateway's shared one.
func (n *Node) Transport() http.RoundTripper { return n.transport }

// StreamTransport returns the round tripper for the node's streaming
// requests, or nil when they go the way of the others.
func (n *Node) StreamTransport() http.RoundTripper { return n.streams }

// Load returns the node's last reported load; zero when none was.
func (n *Node) Load() Load {
	if l := n.load.Load(); l != nil {
		return *l
	}
	return Load{}
}

// Authorization returns the Authorization header value to send to the
// node's engine, or "" when it needs none.
func (n *Node) Authorization() string { return n.authorization }

// Inflight returns the number of requests this gateway has open to the node.
func (n *Node) Inflight() int64 { return n.inflight.Load() }

// Acquire counts a request as open to the node; Release ends it.
func (n *Node) Acquire() { n.inflight.Add(1) }

// Release ends a request counted by Acquire.
func (n *Node) Release() { n.inflight.Add(-1) }

func newNode(s Spec) *Node {
	base := strings.TrimRight(s.Endpoint, "/")
	u, _ := url.Parse(base) // validated by Spec.Validate
	n := &Node{ID: s.ID, BaseURL: base, URL: u, Models: slices.Clone(s.Models),
		Provider: s.Provider, Region: s.Region, Source: s.Source, transport: s.Transport,
		streams: s.StreamTransport}
	if s.UpstreamKey != "" {
		n.authorization = "Bearer " + s.UpstreamKey
	}
	return n
}

// Status is a node's declaration and state, for the admin API.
type Status struct {
	ID        string    `json:"id"`
	Endpoint  string    `json:"endpoint"`
	Models    []string  `json:"models"`
	Provider  string    `json:"provider"`
	Region    string    `json:"region"`
	Source    Source    `json:"source"`
	State     State     `json:"state"`
	Since     time.Time `json:"state_since"`
	LastError string    `json:"last_error,omitempty"`
	Inflight  int64     `json:"inflight"`
	Facts     Facts     `json:"facts"`
	// Load is the last load an agent reported.
	Load Load `json:"load"`
	// LastHeartbeat is when the node's agent last reported; zero for
	// nodes without an agent.
	LastHeartbeat time.Time `json:"last_heartbeat"`
	// CertNotAfter is when an agent node's certificate expires.
	CertNotAfter time.Time `json:"cert_not_after"`
	// Drained reports whether an operator drained the node.
	Drained bool `json:"drained"`
}

// entry is a node and its state in the registry's table. Its state is
// derived from the inputs below by entry.derive.
type entry struct {
	spec      Spec
	node      *Node
	state     State
	since     time.Time
	failures  int    // consecutive failed health checks
	probed    bool   // at least one health check succeeded
	probeDown bool   // failures reached the threshold; cleared by a success
	lastError string // of the last failed check or non-ready report

	// Agent nodes only.
	heartbeatAt time.Time // last heartbeat; zero before the first
	reported    string    // state the agent last reported
	stale       bool      // heartbeat older than the TTL
	drained     bool      // an operator drained the node
	certExpiry  time.Time // current certificate's NotAfter
}

// Registry is the table of nodes. The zero value is not usable; call New.
type Registry struct {
	log *slog.Logger
	now func() time.Time

	// mu guards nodes and serialises publishing snapshots.
	mu    sync.Mutex
	nodes map[string]*entry

	snap atomic.Pointer[Snapshot]
}

// New returns an empty registry. A nil logger discards.
func New(log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := &Registry{log: log.With("component", "registry"), now: time.Now,
		nodes: map[string]*entry{}}
	r.snap.Store(buildSnapshot(nil))
	return r
}

// Snapshot returns the current immutable view for routing.
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// ErrExists reports a node ID already in the registry.
var ErrExists = fmt.Errorf("registry: node already exists")

// ErrUnknownNode reports a node ID not in the registry.
var ErrUnknownNode = fmt.Errorf("registry: unknown node")

// Add inserts a node in state joining. It returns ErrExists when the ID is
// taken.
func (r *Registry) Add(s Spec) error {
	if err := s.Validate(); err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.nodes[s.ID]; ok {
		return fmt.Errorf("%w: %s", ErrExists, s.ID)
	}
	r.nodes[s.ID] = &entry{spec: s, node: newNode(s), state: StateJoining, since: r.now(),
		certExpiry: s.CertNotAfter}
	r.publishLocked()
	r.log.Info("node added", "node_id", s.ID, "endpoint", s.Endpoint,
		"models", s.Models, "source", s.Source)
	return nil
}

// Remove deletes a node. Requests already sent to it finish; no new ones
// are routed to it.
func (r *Registry) Remove(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.nodes[id]; !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	delete(r.nodes, id)
	r.publishLocked()
	r.log.Info("node removed", "node_id", id)
	return nil
}

// Get returns a node's status.
func (r *Registry) Get(id string) (Status, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.nodes[id]
	if !ok {
		return Status{}, false
	}
	return e.status(), true
}

// List returns every node's status, ordered by ID.
func (r *Registry) List() []Status {
	r.mu.Lock()
	out := make([]Status, 0, len(r.nodes))
	for _, e := range r.nodes {
		out = append(out, e.status())
	}
	r.mu.Unlock()

	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return out
}

// Nodes returns the nodes the registry holds, for the health prober.
func (r *Registry) Nodes() []*Node {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Node, 0, len(r.nodes))
	for _, e := range r.nodes {
		out = append(out, e.node)
	}
	return out
}

func (e *entry) status() Status {
	return Status{ID: e.spec.ID, Endpoint: e.spec.Endpoint, Models: slices.Clone(e.spec.Models),
		Provider: e.spec.Provider, Region: e.spec.Region, Source: e.spec.Source,
		State: e.state, Since: e.since, LastError: e.lastError,
		Inflight: e.node.Inflight(), Facts: e.spec.Facts, Load: e.node.Load(),
		LastHeartbeat: e.heartbeatAt, CertNotAfter: e.certExpiry, Drained: e.drained}
}

// derive computes the entry's state from its inputs. The order is the
// order of precedence: a draining node stays draining whatever else is
// true, and an agent node is ready only when its agent says so, its
// heartbeat is fresh and the control plane's own checks pass.
func (e *entry) derive() State {
	switch {
	case e.drained || e.reported == "draining":
		return StateDraining
	case e.spec.Source == SourceAgent && e.heartbeatAt.IsZero():
		return StateJoining
	case e.stale:
		return StateUnhealthy
	case e.spec.Source == SourceAgent && e.reported == "starting":
		return StateJoining
	case e.spec.Source == SourceAgent && e.reported != "ready":
		return StateUnhealthy
	case e.probeDown:
		return StateUnhealthy
	case !e.probed:
		return StateJoining
	default:
		return StateReady
	}
}

// ReportHealth records the outcome of a health check of node n. A node
// becomes ready on its first success and unhealthy after threshold
// consecutive failures. Reports about a node that was removed or replaced
// since the check began are ignored.
func (r *Registry) ReportHealth(n *Node, err error, threshold int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.nodes[n.ID]
	if !ok || e.node != n {
		return
	}
	if err == nil {
		e.failures, e.probed, e.probeDown = 0, true, false
		if e.reported == "" || e.reported == "ready" {
			e.lastError = ""
		}
	} else {
		e.failures++
		e.lastError = err.Error()
		e.probeDown = e.failures >= threshold
	}
	r.updateLocked(e, "health check")
}

// Heartbeat records an agent's report about its node. It returns
// ErrUnknownNode when the node was removed, so the agent can be told to
// stop.
func (r *Registry) Heartbeat(id, state, reason string, load Load) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.nodes[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	e.heartbeatAt, e.reported, e.stale = r.now(), state, false
	e.node.load.Store(&load)
	if state != "ready" {
		e.lastError = reason
	} else if e.failures == 0 {
		e.lastError = ""
	}
	r.updateLocked(e, "heartbeat")
	return nil
}

// ExpireHeartbeats marks unhealthy every agent node whose last heartbeat
// is older than ttl. The prober calls it every round.
func (r *Registry) ExpireHeartbeats(ttl time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	now := r.now()
	for _, e := range r.nodes {
		if e.spec.Source != SourceAgent || e.heartbeatAt.IsZero() || e.stale {
			continue
		}
		if now.Sub(e.heartbeatAt) > ttl {
			e.stale = true
			e.lastError = "no heartbeat for " + now.Sub(e.heartbeatAt).Round(time.Second).String()
			r.updateLocked(e, "heartbeat missed")
		}
	}
}

// Drain stops routing new requests to a node until it is removed.
func (r *Registry) Drain(id string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.nodes[id]
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownNode, id)
	}
	e.drained = true
	r.updateLocked(e, "drained by operator")
	return nil
}

// SetCertExpiry records an agent node's renewed certificate.
func (r *Registry) SetCertExpiry(id string, notAfter time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if e, ok := r.nodes[id]; ok {
		e.certExpiry = notAfter
	}
}

// updateLocked re-derives e's state and publishes a snapshot if it
// changed. r.mu must be held.
func (r *Registry) updateLocked(e *entry, cause string) {
	e.transitionLocked(r, e.derive(), cause)
}

// transitionLocked moves e to state and publishes. r.mu must be held.
func (e *entry) transitionLocked(r *Registry, state State, cause string) {
	if state == e.state {
		return
	}
	prev := e.state
	e.state, e.since = state, r.now()
	r.publishLocked()
	attrs := []any{"node_id", e.spec.ID, "previous", prev, "cause", cause}
	switch state {
	case StateReady:
		r.log.Info("node ready", attrs...)
	case StateDraining:
		r.log.Info("node draining", attrs...)
	case StateUnhealthy:
		r.log.Warn("node unhealthy", append(attrs, "error", e.lastError)...)
	default:
		r.log.Info("node "+string(state), attrs...)
	}
}

// publishLocked builds and stores a new snapshot. r.mu must be held.
func (r *Registry) publishLocked() {
	ready := make([]*Node, 0, len(r.nodes))
	all := make([]*Node, 0, len(r.nodes))
	for _, e := range r.nodes {
		all = append(all, e.node)
		if e.state == StateReady {
			ready = append(ready, e.node)
		}
	}
	s := buildSnapshot(all)
	for _, n := range ready {
		for _, m := range n.Models {
			p := s.pools[m]
			p.Ready = append(p.Ready, n)
		}
	}
	for name, p := range s.pools {
		sort.Slice(p.Ready, func(i, j int) bool { return p.Ready[i].ID < p.Ready[j].ID })
		if len(p.Ready) > 0 {
			s.ready = append(s.ready, name)
		}
	}
	sort.Strings(s.ready)
	r.snap.Store(s)
}
