// Package agent is the daemon on every node: it joins the fleet, serves
// the node's engine to the gateway over mutual TLS, reports to the control
// plane and leaves cleanly.
//
// # Life of an agent
//
//  1. Join. On first start the agent makes a private key, which never
//     leaves the machine, and registers with the control plane over HTTPS,
//     trusting only the CA root pinned by fingerprint and presenting a
//     one-time join token. It stores the key, the certificate it gets, the
//     trust bundle and its node ID in the state directory, so that a
//     restart (after a crash, or a drain with StayRegistered) needs no new
//     token.
//  2. Serve. It listens with mutual TLS, accepting only the gateway's and
//     the control plane's certificates, and proxies /v1/ to the engine on
//     loopback, flushing every server-sent event as it comes. GET /health
//     answers 200 only while the engine is ready and the node is not
//     draining. With an engine command it also runs the engine (see
//     package engine); otherwise it attaches to one already running.
//  3. Report. It sends a heartbeat with its state and the engine's load
//     at the interval the control plane asks for, and at once when the
//     state changes.
//  4. Renew. At about two thirds of its certificate's lifetime it asks for
//     a new one with a new CSR for the same key, and swaps it in: new
//     connections present it, open ones carry on.
//  5. Drain. When Run's context ends (SIGTERM) or the cloud announces a
//     spot interruption, it reports draining, lets requests in flight
//     finish (up to DrainTimeout), closes the listener, stops the engine
//     and deregisters. The control plane then removes the node, so the
//     agent deletes the identity it stored; with StayRegistered it skips
//     both, for a node that comes back as itself.
//
// The control plane can end this early: a heartbeat or renewal answered
// node_gone means the node was removed, and the agent stops serving at
// once, deletes its identity and returns ErrNodeGone.
//
// # Time
//
// Heartbeats, renewals, retries and certificate checks follow
// [Config.Clock], so tests drive hours of schedule with a fake clock.
// Readiness polling, the drain timeout and HTTP timeouts use the wall
// clock: they bound waits rather than schedule work.
package agent

import (
	"context"
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/engine"
	"github.com/crosslogic/crosslogic/internal/inflight"
	"github.com/crosslogic/crosslogic/internal/pki"
)

// Defaults for the zero values of Config.
const (
	// DefaultDrainTimeout bounds how long a drain waits for requests in
	// flight. A long generation runs a minute or two; 30s is what a spot
	// interruption notice leaves after the rest of the drain (AWS gives
	// two minutes, GCP thirty seconds).
	DefaultDrainTimeout = 30 * time.Second
	// DefaultEnginePort is vLLM's and the simulator's default port.
	DefaultEnginePort = 8000
	// DefaultEngineCheckInterval is how often the engine's readiness is
	// checked.
	DefaultEngineCheckInterval = 2 * time.Second
	// DefaultHeartbeatInterval is used until the control plane names one.
	DefaultHeartbeatInterval = 10 * time.Second
)

// Config configures an agent.
type Config struct {
	// ControlPlane is the base URL of the control plane's agent API, e.g.
	// "https://cp.example.com:8444". Required.
	ControlPlane string

	// JoinToken is the one-time token the node joins with, sent as a
	// bearer token to register and never logged. Needed only while
	// StateDir holds no identity.
	JoinToken string

	// CAFingerprint is the fingerprint of the control plane's CA root,
	// "sha256:<hex>", pinned on first contact. Needed only to join.
	CAFingerprint string

	// StateDir is the directory holding the node's identity: key.pem
	// (0600), cert.pem, bundle.pem and node.json. It is created 0700.
	// Required.
	StateDir string

	// ListenAddr is the address of the mTLS listener serving the engine
	// to the gateway, e.g. "0.0.0.0:8443". Required unless Listener is
	// set.
	ListenAddr string

	// Listener, when not nil, is used instead of listening on ListenAddr,
	// for tests and socket activation. The agent closes it.
	Listener net.Listener

	// AdvertiseURL is the https:// base URL the gateway dials to reach
	// this agent, e.g. "https://203.0.113.7:8443". Its host, an IP
	// address or a DNS name, goes into the certificate. Required.
	AdvertiseURL string

	// Name is a hint for the node ID; the control plane makes it unique.
	// Empty means the host name.
	Name string

	// Facts describe the machine. Facts.Models is required: the engine
	// is ready only once it lists every one of them.
	Facts agentapi.Facts

	// EngineURL is the engine's base URL on loopback, e.g.
	// "http://127.0.0.1:8000". Required without EngineCmd; with it,
	// empty means http://127.0.0.1:EnginePort.
	EngineURL string

	// EngineCmd is the command line that starts the engine, run with
	// /bin/sh -c in a process group of its own, e.g. "vllm serve
	// Qwen/Qwen3-8B --port 8000". Empty means attach mode: the engine at
	// EngineURL is already running and the agent leaves it alone.
	EngineCmd string

	// EnginePort is the port EngineCmd's engine listens on, when
	// EngineURL is empty. Zero means DefaultEnginePort.
	EnginePort int

	// EngineStopTimeout is how long a stopping engine has between SIGTERM
	// and SIGKILL. Zero means engine.DefaultStopTimeout.
	EngineStopTimeout time.Duration

	// EngineCheckInterval is how often the engine's readiness is checked,
	// in wall-clock time. Zero means DefaultEngineCheckInterval.
	EngineCheckInterval time.Duration

	// DrainTimeout bounds how long a drain waits, in wall-clock time, for
	// requests in flight before it cuts them. Zero means
	// DefaultDrainTimeout.
	DrainTimeout time.Duration

	// StayRegistered makes a drain skip deregistering, for a node that
	// is coming back as itself (an agent upgrade, a reboot): the control
	// plane sees it draining, then silent, and the identity in StateDir
	// stays usable. False means a drain deregisters, the control plane
	// removes the node, and the agent deletes the identity, which can no
	// longer serve: the next start needs a new join token.
	StayRegistered bool

	// Spot names the cloud whose spot interruption notice to watch:
	// "aws", "gcp", or empty for none.
	Spot string

	// SpotMetadataURL is the base URL of the cloud's metadata service.
	// Empty means the cloud's own (see SpotWatcher); tests set it.
	SpotMetadataURL string

	// SpotCheckInterval is how often the metadata service is polled.
	// Zero means DefaultSpotCheckInterval.
	SpotCheckInterval time.Duration

	// Clock schedules heartbeats, renewals and retries and is the time
	// certificates are checked at. Nil means the wall clock.
	Clock Clock

	// Rand returns uniform random numbers in [0, 1), for jitter. Nil means
	// math/rand/v2's Float64.
	Rand func() float64

	// Logger receives the agent's logs and, with component=engine, the
	// engine's output. Nil discards them.
	Logger *slog.Logger
}

// Agent is a node's agent. Create one with New and run it with Run, once.
// Its other methods are safe for concurrent use with Run.
type Agent struct {
	cfg        Config // defaults applied; read-only
	log        *slog.Logger
	clock      Clock
	rand       func() float64
	engine     *engine.Client
	supervisor *engine.Supervisor // nil in attach mode
	dnsNames   []string           // SANs asked for, from AdvertiseURL
	ips        []net.IP

	running atomic.Bool // whether Run has been called

	// self is stored once the node has an identity, after cpClient and
	// the fields below it are set; readers that find it set may use them.
	self     atomic.Pointer[self]
	cpClient *http.Client // mTLS to the control plane
	cert     atomic.Pointer[tls.Certificate]
	bundle   atomic.Pointer[pki.Bundle]
	interval atomic.Int64 // heartbeat interval asked for, ms; 0 means the default

	health   atomic.Pointer[engineHealth] // last readiness check; written by monitor only
	draining atomic.Pointer[string]       // the drain's reason; nil while serving
	inflight inflight.Counter
	addr     atomic.Pointer[net.Addr] // where the listener listens

	ready     chan struct{} // closed when the engine is first ready while serving
	readyOnce sync.Once

	// hbMu serializes heartbeats, so that one whose state was computed
	// before the drain began cannot reach the control plane after the
	// drain's own heartbeat and report the node ready again.
	hbMu   sync.Mutex
	wakeHB chan struct{} // asks for a heartbeat now; capacity 1

	// renewMu makes renewals one at a time.
	renewMu   sync.Mutex
	certSwaps chan struct{} // tells the renewal loop to reschedule; capacity 1
}

// self is the node's fixed identity: what never changes after the join.
type self struct {
	record nodeRecord
	key    crypto.Signer
}

// New checks cfg and returns an Agent for it. It reads no file and makes
// no connection: Run does.
func New(cfg Config) (*Agent, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	dnsNames, ips, err := sans(cfg.AdvertiseURL)
	if err != nil {
		return nil, err
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	a := &Agent{
		cfg:       cfg,
		log:       log.With("component", "agent"),
		clock:     cfg.Clock,
		rand:      cfg.Rand,
		engine:    &engine.Client{URL: cfg.EngineURL, Models: cfg.Facts.Models},
		dnsNames:  dnsNames,
		ips:       ips,
		ready:     make(chan struct{}),
		wakeHB:    make(chan struct{}, 1),
		certSwaps: make(chan struct{}, 1),
	}
	if cfg.EngineCmd != "" {
		a.supervisor, err = engine.NewSupervisor(engine.SupervisorConfig{
			Command:     cfg.EngineCmd,
			BaseEnv:     engineEnv(os.Environ(), cfg.JoinToken),
			StopTimeout: cfg.EngineStopTimeout,
			Logger:      log,
		})
		if err != nil {
			return nil, err
		}
	}
	return a, nil
}

// engineEnv returns environ without the variables that hold the join
// token, whatever their names: the engine has no use for it, and its
// environment is readable by more than the agent (/proc, crash reports).
func engineEnv(environ []string, token string) []string {
	if token == "" {
		return environ
	}
	return slices.DeleteFunc(slices.Clone(environ), func(kv string) bool {
		_, v, _ := strings.Cut(kv, "=")
		return v == token
	})
}

// setDefaults checks c and fills in the defaults of its zero values.
func (c *Config) setDefaults() error {
	switch {
	case c.ControlPlane == "":
		return errors.New("agent: no control plane URL")
	case c.StateDir == "":
		return errors.New("agent: no state directory")
	case c.ListenAddr == "" && c.Listener == nil:
		return errors.New("agent: no listen address")
	case len(c.Facts.Models) == 0:
		return errors.New("agent: no model names in facts")
	case c.EngineURL == "" && c.EngineCmd == "":
		return errors.New("agent: neither an engine URL nor an engine command")
	case c.DrainTimeout < 0 || c.EngineCheckInterval < 0 || c.SpotCheckInterval < 0:
		return errors.New("agent: negative duration in config")
	}
	if u, err := url.Parse(c.ControlPlane); err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("agent: control plane URL %q is not an https:// URL", c.ControlPlane)
	}
	switch c.Spot {
	case "", SpotAWS, SpotGCP:
	default:
		return fmt.Errorf("agent: unknown spot provider %q (want aws or gcp)", c.Spot)
	}

	if c.EngineURL == "" {
		port := c.EnginePort
		if port == 0 {
			port = DefaultEnginePort
		}
		c.EngineURL = "http://127.0.0.1:" + strconv.Itoa(port)
	}
	if u, err := url.Parse(c.EngineURL); err != nil || u.Scheme != "http" || u.Host == "" {
		return fmt.Errorf("agent: engine URL %q is not an http:// URL", c.EngineURL)
	}
	if c.Name == "" {
		c.Name, _ = os.Hostname()
	}
	if c.DrainTimeout == 0 {
		c.DrainTimeout = DefaultDrainTimeout
	}
	if c.EngineCheckInterval == 0 {
		c.EngineCheckInterval = DefaultEngineCheckInterval
	}
	if c.SpotCheckInterval == 0 {
		c.SpotCheckInterval = DefaultSpotCheckInterval
	}
	if c.Clock == nil {
		c.Clock = realClock{}
	}
	if c.Rand == nil {
		c.Rand = rand.Float64
	}
	c.Facts.Models = append([]string(nil), c.Facts.Models...)
	return nil
}

// sans returns the DNS names and IP addresses the certificate must carry
// for the gateway to dial advertise.
func sans(advertise string) ([]string, []net.IP, error) {
	u, err := url.Parse(advertise)
	if err != nil || u.Scheme != "https" || u.Hostname() == "" {
		return nil, nil, fmt.Errorf("agent: advertise URL %q is not an https:// URL", advertise)
	}
	host := u.Hostname()
	ip := net.ParseIP(host)
	switch {
	case ip == nil:
		return []string{host}, nil, nil
	case ip.IsUnspecified():
		return nil, nil, fmt.Errorf("agent: advertise URL %q names no address the gateway "+
			"can dial", advertise)
	}
	return nil, []net.IP{ip}, nil
}

// Run runs the agent until ctx ends or the node is removed. It joins (or
// loads the identity in StateDir), serves, reports and renews; when ctx
// ends it drains and returns nil. It returns an error if joining is
// refused, the identity is unusable, the listener fails, or the control
// plane says the node is gone (ErrNodeGone) or its certificate expired
// (ErrCertificateExpired). Run may be called once.
func (a *Agent) Run(ctx context.Context) error {
	if !a.running.CompareAndSwap(false, true) {
		return errors.New("agent: Run called twice")
	}

	id, err := a.obtainIdentity(ctx)
	if err != nil {
		if a.cfg.Listener != nil {
			a.cfg.Listener.Close()
		}
		if ctx.Err() != nil && errors.Is(err, ctx.Err()) {
			a.log.Info("agent stopped before joining")
			return nil
		}
		return err
	}
	a.adopt(id)

	ln := a.cfg.Listener
	if ln == nil {
		if ln, err = net.Listen("tcp", a.cfg.ListenAddr); err != nil {
			return fmt.Errorf("agent: listen: %w", err)
		}
	}
	addr := ln.Addr()
	a.addr.Store(&addr)

	// The background work outlives ctx: it must go on through the drain.
	bg, stopBG := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBG()
	fatal := make(chan error, 4)
	stopEngine := a.startEngine(bg)

	srv := a.newServer()
	go func() {
		if err := srv.ServeTLS(ln, "", ""); !errors.Is(err, http.ErrServerClosed) {
			fatal <- fmt.Errorf("agent: serve: %w", err)
		}
	}()
	var loops sync.WaitGroup
	loops.Go(func() { a.monitor(bg) })
	loops.Go(func() { a.heartbeatLoop(bg, fatal) })
	loops.Go(func() { a.renewLoop(bg, fatal) })
	notice := a.watchSpot(bg)
	stopLoops := func() {
		stopBG()
		loops.Wait()
	}
	a.log.Info("agent serving", "addr", addr.String(), "endpoint", a.cfg.AdvertiseURL,
		"engine_url", a.cfg.EngineURL, "supervised", a.supervisor != nil)

	var reason string
	select {
	case <-ctx.Done():
		reason = "agent shutting down"
	case reason = <-notice:
	case err := <-fatal:
		// Nothing to drain for: the node cannot be reached or trusted.
		a.log.Error("agent stopping", "error", err)
		_ = srv.Close()
		stopEngine()
		stopLoops()
		if errors.Is(err, ErrNodeGone) {
			a.forgetIdentity()
		}
		return err
	}
	a.drain(reason, srv, stopEngine, stopLoops)
	return nil
}

// adopt makes id the agent's identity.
func (a *Agent) adopt(id *identity) {
	a.cert.Store(id.cert)
	a.bundle.Store(id.bundle)
	a.interval.Store(id.record.HeartbeatIntervalMS)
	src := pki.Source{Certificate: a.cert.Load, Bundle: a.bundle.Load, Now: a.clock.Now}
	a.cpClient = newAPIClient(pki.ClientConfig(src, pki.ControlPlaneIdentity))
	a.log = a.log.With("node_id", id.record.NodeID)
	a.self.Store(&self{record: id.record, key: id.key})
}

// drain takes the node out of service: report draining, wait for the
// requests in flight, close the listener, stop the engine and the
// background loops, deregister.
func (a *Agent) drain(reason string, srv *http.Server, stopEngine, stopLoops func()) {
	start := time.Now()
	a.draining.Store(&reason)
	a.log.Info("node draining", "reason", reason, "in_flight", a.inflight.Count())

	// The gateway stops sending requests here only once the control plane
	// knows, so the heartbeat goes first and is not left to the loop.
	hbCtx, cancel := context.WithTimeout(context.Background(), callTimeout)
	if _, err := a.heartbeat(hbCtx); err != nil {
		a.log.Warn("draining heartbeat failed", "error", err)
	}
	cancel()

	// Requests that still arrive are served: the gateway may not have
	// heard yet. The listener closes when nothing is in flight or the
	// drain timeout has passed, whichever comes first.
	ctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout)
	defer cancel()
	if err := a.inflight.Wait(ctx); err != nil {
		a.log.Warn("drain timeout; cutting requests in flight",
			"in_flight", a.inflight.Count(), "timeout_ms", a.cfg.DrainTimeout.Milliseconds())
	}
	if err := srv.Shutdown(ctx); err != nil {
		_ = srv.Close()
	}

	stopEngine()
	stopLoops()

	if !a.cfg.StayRegistered {
		a.deregister(reason)
	}
	a.log.Info("node drained", "duration_ms", time.Since(start).Milliseconds())
}

// deregister tells the control plane the node leaves for good and, once
// it has heard, deletes the node's identity. If the call fails the
// identity is kept: the control plane still knows the node, and a
// restart may as well carry on as it.
func (a *Agent) deregister(reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	err := a.call(ctx, a.cpClient, "deregister", agentapi.PathDeregister, "",
		agentapi.DeregisterRequest{Reason: reason}, nil)
	if err != nil {
		a.log.Warn("deregister failed", "error", err)
		return
	}
	a.log.Info("node deregistered")
	a.forgetIdentity()
}

// forgetIdentity deletes the identity of a node the control plane has
// removed, so that the next start joins afresh instead of failing with a
// certificate nobody accepts.
func (a *Agent) forgetIdentity() {
	if err := removeIdentity(a.cfg.StateDir); err != nil {
		a.log.Warn("node identity not deleted", "error", err)
		return
	}
	a.log.Info("node identity deleted", "state_dir", a.cfg.StateDir)
}

// startEngine runs the supervisor, if any, until the returned func is
// called; that func stops the engine and waits until it has exited.
func (a *Agent) startEngine(ctx context.Context) (stop func()) {
	if a.supervisor == nil {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = a.supervisor.Run(ctx) // fails only if run twice
	}()
	return func() {
		cancel()
		<-done
	}
}

// Ready returns a channel that is closed once the agent serves and its
// engine has been ready, the first time. It stays closed if the engine
// later fails.
func (a *Agent) Ready() <-chan struct{} { return a.ready }

// NodeID returns the node's ID, or "" before the node has an identity.
func (a *Agent) NodeID() string {
	if s := a.self.Load(); s != nil {
		return s.record.NodeID
	}
	return ""
}

// Certificate returns the node's current certificate, or nil before the
// node has an identity.
func (a *Agent) Certificate() *x509.Certificate {
	if c := a.cert.Load(); c != nil {
		return c.Leaf
	}
	return nil
}

// Addr returns the address the agent listens on, or nil before it
// listens.
func (a *Agent) Addr() net.Addr {
	if p := a.addr.Load(); p != nil {
		return *p
	}
	return nil
}

// Draining reports whether the agent has begun draining.
func (a *Agent) Draining() bool { return a.draining.Load() != nil }

// InFlight returns the number of requests being proxied to the engine.
func (a *Agent) InFlight() int { return a.inflight.Count() }

// Run is a shorthand for New followed by Agent.Run.
func Run(ctx context.Context, cfg Config) error {
	a, err := New(cfg)
	if err != nil {
		return err
	}
	return a.Run(ctx)
}

// wake asks the heartbeat loop for a heartbeat now.
func (a *Agent) wake() {
	select {
	case a.wakeHB <- struct{}{}:
	default: // one is pending already
	}
}
