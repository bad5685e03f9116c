package agent

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httputil"
	"net/url"
	"time"

	"github.com/crosslogic/crosslogic/internal/agentapi"
	"github.com/crosslogic/crosslogic/internal/engine"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/pki"
)

// newServer returns the HTTP server of the agent's public listener. Its
// TLS configuration reads the certificate and bundle from the agent's
// atomic pointers at every handshake, so a renewal takes effect on the
// next connection while open ones carry on.
func (a *Agent) newServer() *http.Server {
	src := pki.Source{Certificate: a.cert.Load, Bundle: a.bundle.Load, Now: a.clock.Now}
	return &http.Server{
		Handler:   a.handler(),
		TLSConfig: pki.ServerConfig(src, pki.Allow(pki.GatewayIdentity, pki.ControlPlaneIdentity)),
		// Streams run for minutes, so there is no write timeout; a
		// client that sends its headers slowly is not the gateway.
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       5 * time.Minute,
		// Refused handshakes are logged here. The listener is public, so
		// they are Debug: a scanner must not flood the log.
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}
}

// handler routes the agent's public endpoints.
func (a *Agent) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /health", a.serveHealth)
	mux.Handle("/v1/", a.proxy())
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		openai.NotFound(r.URL.Path).Write(w)
	})
	return mux
}

// serveHealth answers 200 while the engine is ready and the node is not
// draining, 503 otherwise, with the state the heartbeat would report.
func (a *Agent) serveHealth(w http.ResponseWriter, _ *http.Request) {
	state, reason := a.state()
	status := http.StatusOK
	if state != agentapi.StateReady {
		status = http.StatusServiceUnavailable
	}
	body, _ := json.Marshal(struct {
		State  agentapi.NodeState `json:"state"`
		Reason string             `json:"reason,omitempty"`
	}{state, reason})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// proxy returns the handler forwarding /v1/ to the engine and counting
// the requests in flight.
func (a *Agent) proxy() http.Handler {
	target, _ := url.Parse(a.cfg.EngineURL) // checked by New
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
		},
		Transport: engine.NewTransport(),
		// Flush every write at once: each server-sent event must reach the
		// gateway, and the customer, as the engine makes it.
		FlushInterval: -1,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if r.Context().Err() != nil {
				return // the gateway went away; nobody to answer
			}
			a.log.Warn("engine request failed", "request_id", r.Header.Get("X-Request-Id"),
				"path", r.URL.Path, "error", err)
			openai.BadGateway().Write(w)
		},
		ErrorLog: slog.NewLogLogger(a.log.Handler(), slog.LevelDebug),
	}

	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.inflight.Add()
		defer a.inflight.Done()
		start := time.Now()
		// The request's context ends when the gateway goes away, and
		// ReverseProxy then cancels the engine's request: GPU time is not
		// spent on an answer nobody reads.
		rp.ServeHTTP(w, r)
		a.log.Debug("request proxied", "request_id", r.Header.Get("X-Request-Id"),
			"path", r.URL.Path, "duration_ms", time.Since(start).Milliseconds())
	})
}
