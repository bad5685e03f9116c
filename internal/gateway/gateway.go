// Package gateway is CrossLogic's public, OpenAI-compatible front door: it
// authenticates a customer's API key, picks a ready node for the requested
// model and proxies the request to it, streaming server-sent events
// through as they arrive.
//
// The request path reads only in-memory state: the keyring and the
// registry's current snapshot, both behind atomic pointers. It never
// queries the store and takes no lock shared between requests.
//
// What the gateway changes on the way through, and nothing else:
//
//   - The customer's Authorization header is removed; the node's own bearer
//     key, if it has one, is sent instead.
//   - Hop-by-hop headers, Cookie and Accept-Encoding are not forwarded (the
//     last so that engines answer uncompressed and every SSE event can be
//     flushed as it arrives).
//   - X-Request-Id is set on the request to the node and on the answer:
//     the client's own when it sent a usable one, else a new one.
//   - Request and response bodies are forwarded byte for byte.
package gateway

import (
	"crypto/tls"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/upstream"
)

// DefaultMaxBodyBytes is the request body limit when none is configured.
const DefaultMaxBodyBytes = 16 << 20

// Config tunes the gateway. The zero value of each field means its
// documented default.
type Config struct {
	// MaxBodyBytes limits a request body; larger bodies get 413. Zero
	// means DefaultMaxBodyBytes (16 MiB).
	MaxBodyBytes int64
	// ConnectTimeout bounds dialing a node, TLS included. Zero means 5s.
	ConnectTimeout time.Duration
	// ResponseHeaderTimeout is the transport's bound on the wait for a
	// node's status line; Timeouts.FirstByte is the per-model one. Zero
	// means 10 minutes.
	ResponseHeaderTimeout time.Duration
	// RetryAfter is the Retry-After, in seconds, sent with a 503 when a
	// model has no ready node. Zero means 5.
	RetryAfter int
	// Timeouts apply to every model without its own entry in
	// ModelTimeouts.
	Timeouts Timeouts
	// ModelTimeouts override Timeouts per model; a zero field of an entry
	// means the value from Timeouts.
	ModelTimeouts map[string]Timeouts
	// MaxRetries is how many other nodes a request is tried on after the
	// first fails before any byte reached the client, and how many times
	// a broken stream is continued. Zero means 2; negative disables both.
	MaxRetries int
	// RetryBudget is the share of requests that retries and failovers
	// may add, so that a sick fleet is not stampeded: 0.2 allows 20%
	// extra load. Zero means 0.2.
	RetryBudget float64
	// RetryBurst is how many retries the budget holds at most, and at
	// start: what a node dying with requests in flight can draw at once.
	// Zero means DefaultRetryBurst (100).
	RetryBurst int
	// DisableFailover turns continuing broken streams off for every
	// request; a client turns it off for one with the header
	// "X-CrossLogic-Failover: off".
	DisableFailover bool
	// Outlier configures passive outlier detection.
	Outlier registry.Outlier
	// PrefixAffinity sends requests sharing a prompt prefix to the same
	// node while its load allows. A request with an X-Session-Id header
	// always gets affinity by that ID.
	PrefixAffinity bool
}

// Timeouts bound the phases of a request to a node.
type Timeouts struct {
	// FirstByte bounds the wait for the node's status line. For a
	// non-streaming request engines send it only with the whole answer,
	// so it must cover the longest generation. Zero means 10 minutes.
	FirstByte time.Duration
	// Idle bounds the wait between two events of a stream, and before
	// the first one. A node that stays silent longer is taken for hung
	// and the stream is continued elsewhere. Zero means 60s.
	Idle time.Duration
	// Total bounds the whole request, retries and failovers included.
	// Zero means 30 minutes.
	Total time.Duration
}

func (t Timeouts) or(d Timeouts) Timeouts {
	if t.FirstByte <= 0 {
		t.FirstByte = d.FirstByte
	}
	if t.Idle <= 0 {
		t.Idle = d.Idle
	}
	if t.Total <= 0 {
		t.Total = d.Total
	}
	return t
}

func (c Config) withDefaults() Config {
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = 5 * time.Second
	}
	if c.ResponseHeaderTimeout <= 0 {
		c.ResponseHeaderTimeout = 10 * time.Minute
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = 5
	}
	c.Timeouts = c.Timeouts.or(Timeouts{FirstByte: 10 * time.Minute, Idle: time.Minute,
		Total: 30 * time.Minute})
	switch {
	case c.MaxRetries == 0:
		c.MaxRetries = 2
	case c.MaxRetries < 0:
		c.MaxRetries = 0
	}
	if c.RetryBudget <= 0 {
		c.RetryBudget = 0.2
	}
	if c.RetryBurst <= 0 {
		c.RetryBurst = DefaultRetryBurst
	}
	return c
}

// timeouts returns the timeouts for model.
func (c *Config) timeouts(model string) Timeouts {
	if t, ok := c.ModelTimeouts[model]; ok {
		return t.or(c.Timeouts)
	}
	return c.Timeouts
}

// Gateway serves the public API. Create one with New.
type Gateway struct {
	cfg       Config
	keys      *apikey.Keyring
	registry  *registry.Registry
	policy    balancer.Policy
	transport http.RoundTripper
	log       *slog.Logger
	now       func() time.Time
	started   time.Time

	draining atomic.Bool
	detach   atomic.Pointer[Listener] // see DetachStreams
	budget   retryBudget
	metrics  *Metrics
}

// Options are what a Gateway is built from.
type Options struct {
	Config   Config
	Keys     *apikey.Keyring
	Registry *registry.Registry
	// Policy picks among a model's ready nodes; nil means least
	// outstanding.
	Policy balancer.Policy
	// Transport reaches the nodes; nil means NewTransport(Config).
	Transport http.RoundTripper
	// Logger receives request and error logs; nil discards.
	Logger *slog.Logger
	// Now is the clock used for key expiry; nil means time.Now.
	Now func() time.Time
	// Metrics receives the gateway's counters; nil means a private,
	// unexported set.
	Metrics *Metrics
}

// New returns a gateway.
func New(o Options) *Gateway {
	g := &Gateway{
		cfg:       o.Config.withDefaults(),
		keys:      o.Keys,
		registry:  o.Registry,
		policy:    o.Policy,
		transport: o.Transport,
		log:       o.Logger,
		now:       o.Now,
		metrics:   o.Metrics,
	}
	if g.metrics == nil {
		g.metrics = NewMetrics(nil)
	}
	g.budget.init(g.cfg.RetryBudget, g.cfg.RetryBurst)
	if g.policy == nil {
		g.policy = new(balancer.LeastOutstanding)
	}
	if g.transport == nil {
		g.transport = NewTransport(g.cfg)
	}
	if g.log == nil {
		g.log = slog.New(slog.DiscardHandler)
	}
	g.log = g.log.With("component", "gateway")
	if g.now == nil {
		g.now = time.Now
	}
	g.started = g.now()
	return g
}

// NewTransport returns the transport the gateway uses to reach nodes:
// HTTP/1.1 with keep-alive, each exchange run on the requesting
// goroutine (see package upstream), enough idle connections per node
// for a busy gateway, and no compression, so that engines answer every
// event of a stream as it comes.
func NewTransport(cfg Config) *upstream.Transport {
	cfg = cfg.withDefaults()
	return &upstream.Transport{
		DialTimeout:           cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		MaxIdlePerHost:        1024,
		IdleTimeout:           90 * time.Second,
	}
}

// NewStreamTransport returns the transport for a node's streams: HTTP/2
// only, over TLS with tlsConfig or, when it is nil, in cleartext with
// prior knowledge (h2c). A stream lasts as long as its answer, minutes
// for a long one; multiplexed, ten thousand of them take a few dozen
// connections rather than ten thousand, and a new stream to a node far
// away needs no new handshake. Pings find a connection whose node died
// without closing it.
func NewStreamTransport(cfg Config, tlsConfig *tls.Config) *http.Transport {
	cfg = cfg.withDefaults()
	var p http.Protocols
	if tlsConfig != nil {
		p.SetHTTP2(true)
	} else {
		p.SetUnencryptedHTTP2(true)
	}
	d := &net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Protocols:             &p,
		DialContext:           d.DialContext,
		TLSClientConfig:       tlsConfig,
		TLSHandshakeTimeout:   cfg.ConnectTimeout,
		ResponseHeaderTimeout: cfg.ResponseHeaderTimeout,
		IdleConnTimeout:       90 * time.Second,
		DisableCompression:    true,
		// For HTTP/2 this bounds the connections being dialled at once,
		// not the total: without it, every stream that finds no free
		// connection dials its own, and a burst of streams opens, and
		// then closes, thousands.
		MaxConnsPerHost: 1,
		HTTP2: &http.HTTP2Config{
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
}

// Drain makes /readyz fail so load balancers stop sending new requests,
// while requests in flight continue.
func (g *Gateway) Drain() { g.draining.Store(true) }

// ServeHTTP routes a request to its handler.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
		g.serveInference(w, r)
	case "/v1/models":
		g.serveModels(w, r)
	case "/healthz":
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	case "/readyz":
		g.serveReady(w)
	default:
		if len(r.URL.Path) > len("/v1/models/") && r.URL.Path[:len("/v1/models/")] == "/v1/models/" {
			g.serveModel(w, r, r.URL.Path[len("/v1/models/"):])
			return
		}
		setRequestID(w, r)
		openai.NotFound(r.URL.Path).Write(w)
	}
}

func (g *Gateway) serveReady(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	if g.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = w.Write([]byte("draining\n"))
		return
	}
	_, _ = w.Write([]byte("ready\n"))
}

// authenticate checks the request's key and writes the refusal when it is
// not valid.
func (g *Gateway) authenticate(w http.ResponseWriter, r *http.Request,
	requestID string) (*apikey.Key, bool) {
	presented, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		openai.InvalidAPIKey("You didn't provide an API key. Provide it in the " +
			"Authorization header as 'Bearer YOUR_KEY'.").Write(w)
		return nil, false
	}
	k, err := g.keys.Authenticate(presented, g.now())
	if err != nil {
		msg := "Incorrect API key provided."
		switch err {
		case apikey.ErrRevoked:
			msg = "This API key has been revoked."
		case apikey.ErrExpired:
			msg = "This API key has expired."
		}
		attrs := []any{"request_id", requestID, "reason", err.Error(), "remote", r.RemoteAddr}
		if k != nil {
			attrs = append(attrs, "key_id", k.ID)
		}
		g.log.Info("key refused", attrs...)
		openai.InvalidAPIKey(msg).Write(w)
		return nil, false
	}
	return k, true
}

// bearer extracts the token from an Authorization header value. The scheme
// is case-insensitive, as RFC 9110 says.
func bearer(h string) (string, bool) {
	const scheme = "bearer "
	if len(h) <= len(scheme) {
		return "", false
	}
	for i := range len(scheme) {
		c := h[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != scheme[i] {
			return "", false
		}
	}
	tok := h[len(scheme):]
	for len(tok) > 0 && tok[0] == ' ' {
		tok = tok[1:]
	}
	return tok, tok != ""
}
