package sim

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// Server is one simulated engine node. It is safe for concurrent use;
// create it with New.
type Server struct {
	cfg    Config // defaults applied; read-only after New
	log    *slog.Logger
	models []servedModel
	auth   []byte // the whole expected Authorization value; nil when open

	// faults is replaced whole by SetFaults and read once per request,
	// so a request sees one consistent Faults without a lock.
	faults atomic.Pointer[Faults]
	// draws numbers the inference requests that draw a fault; with
	// cfg.Seed it keys each request's random stream.
	draws atomic.Uint64

	adm     admission
	stats   counters
	metrics http.Handler

	idBase  uint64        // random high half of every request id
	idSeq   atomic.Uint64 // low half, one per request
	created int64         // Unix time of New, the models' created field
}

// servedModel is a served model name and its JSON encoding.
type servedModel struct {
	name   string
	quoted string
}

// New returns a Server for cfg, or an error if cfg is invalid.
func New(cfg Config) (*Server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "sim"),
		adm:     admission{max: cfg.MaxNumSeqs},
		idBase:  rand.Uint64(),
		created: time.Now().Unix(),
	}
	for _, m := range cfg.Models {
		q, err := json.Marshal(m)
		if err != nil {
			// Unreachable: a Go string always encodes.
			panic(err)
		}
		s.models = append(s.models, servedModel{name: m, quoted: string(q)})
	}
	if cfg.APIKey != "" {
		s.auth = []byte("Bearer " + cfg.APIKey)
	}
	f := cfg.Faults
	s.faults.Store(&f)
	s.metrics = s.newMetrics()
	return s, nil
}

// Handler returns the HTTP handler serving the simulator's endpoints.
// All handlers of one Server share its queue, faults and counters.
//
// A response the handler cannot complete (its client left, the server
// is closing, or a fault cuts it) is aborted by panicking with
// http.ErrAbortHandler, which net/http's server recovers from by
// dropping the connection; a caller invoking ServeHTTP directly, with
// an httptest.ResponseRecorder say, must expect that panic in those
// cases.
func (s *Server) Handler() http.Handler {
	return http.HandlerFunc(s.serveHTTP)
}

// SetFaults replaces the failure injection in force. It is safe to call
// during traffic: each request sees either the old or the new Faults as
// a whole. Requests already past their draw are not affected.
func (s *Server) SetFaults(f Faults) error {
	if err := f.validate(); err != nil {
		return err
	}
	s.faults.Store(&f)
	s.log.Info("faults changed",
		"error_rate", f.ErrorRate, "break_rate", f.BreakRate,
		"break_after", f.BreakAfter, "hang_rate", f.HangRate,
		"unhealthy", f.Unhealthy)
	return nil
}

// Faults returns the failure injection in force.
func (s *Server) Faults() Faults {
	return *s.faults.Load()
}

// Config returns the server's configuration with defaults applied.
func (s *Server) Config() Config {
	c := s.cfg
	c.Models = append([]string(nil), c.Models...)
	return c
}

// serveHTTP routes a request. A switch on the path is all vLLM's
// surface needs, and cheaper than a pattern mux on the hot path.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path

	// Like vllm serve --api-key: every /v1/ path needs the key, even
	// one that does not exist, and the body is vLLM's, not OpenAI's.
	if s.auth != nil && strings.HasPrefix(path, "/v1/") && !s.authorized(r) {
		if isInference(path) {
			s.stats.requests.Add(1)
			s.stats.rejected.Add(1)
		}
		writeJSON(w, http.StatusUnauthorized, []byte(`{"error":"Unauthorized"}`))
		return
	}

	switch path {
	case "/v1/chat/completions":
		s.inference(w, r, endpointChat)
	case "/v1/completions":
		s.inference(w, r, endpointCompletion)
	case "/v1/embeddings":
		s.inference(w, r, endpointEmbedding)
	case "/v1/models":
		if allowMethod(w, r, http.MethodGet) {
			s.serveModels(w)
		}
	case "/health":
		if allowMethod(w, r, http.MethodGet) {
			s.serveHealth(w)
		}
	case "/metrics":
		if allowMethod(w, r, http.MethodGet) {
			s.metrics.ServeHTTP(w, r)
		}
	default:
		writeDetail(w, http.StatusNotFound)
	}
}

// isInference reports whether path is one of the endpoints counted in
// Stats.
func isInference(path string) bool {
	switch path {
	case "/v1/chat/completions", "/v1/completions", "/v1/embeddings":
		return true
	}
	return false
}

// authorized reports whether r carries the API key. The comparison
// takes constant time so that the key cannot be guessed byte by byte.
func (s *Server) authorized(r *http.Request) bool {
	got := r.Header.Get("Authorization")
	return subtle.ConstantTimeCompare([]byte(got), s.auth) == 1
}

// allowMethod reports whether r uses method, answering 405 if not.
func allowMethod(w http.ResponseWriter, r *http.Request, method string) bool {
	if r.Method == method {
		return true
	}
	w.Header().Set("Allow", method)
	writeDetail(w, http.StatusMethodNotAllowed)
	return false
}

// serveHealth answers like vLLM's /health: 200 with no body while the
// engine lives, 503 once it has died.
func (s *Server) serveHealth(w http.ResponseWriter) {
	status := http.StatusOK
	if s.faults.Load().Unhealthy {
		status = http.StatusServiceUnavailable
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(status)
}

// modelList and modelCard are vLLM's /v1/models shapes.
type modelList struct {
	Object string      `json:"object"`
	Data   []modelCard `json:"data"`
}

type modelCard struct {
	ID          string            `json:"id"`
	Object      string            `json:"object"`
	Created     int64             `json:"created"`
	OwnedBy     string            `json:"owned_by"`
	Root        string            `json:"root"`
	Parent      *string           `json:"parent"`
	MaxModelLen int               `json:"max_model_len"`
	Permission  []modelPermission `json:"permission"`
}

type modelPermission struct {
	ID                 string  `json:"id"`
	Object             string  `json:"object"`
	Created            int64   `json:"created"`
	AllowCreateEngine  bool    `json:"allow_create_engine"`
	AllowSampling      bool    `json:"allow_sampling"`
	AllowLogprobs      bool    `json:"allow_logprobs"`
	AllowSearchIndices bool    `json:"allow_search_indices"`
	AllowView          bool    `json:"allow_view"`
	AllowFineTuning    bool    `json:"allow_fine_tuning"`
	Organization       string  `json:"organization"`
	Group              *string `json:"group"`
	IsBlocking         bool    `json:"is_blocking"`
}

// serveModels lists the served models. Every name is an alias of the
// one simulated model, so each has itself as root, as vLLM reports
// served model names.
func (s *Server) serveModels(w http.ResponseWriter) {
	list := modelList{Object: "list", Data: make([]modelCard, 0, len(s.models))}
	for i, m := range s.models {
		list.Data = append(list.Data, modelCard{
			ID:          m.name,
			Object:      "model",
			Created:     s.created,
			OwnedBy:     "vllm",
			Root:        m.name,
			MaxModelLen: s.cfg.MaxModelLen,
			Permission: []modelPermission{{
				ID:            string(appendID(nil, "modelperm-", s.idBase, uint64(i))),
				Object:        "model_permission",
				Created:       s.created,
				AllowSampling: true,
				AllowLogprobs: true,
				AllowView:     true,
				Organization:  "*",
			}},
		})
	}
	b, err := json.Marshal(list)
	if err != nil {
		// Unreachable: the list holds only strings, numbers and bools.
		panic(err)
	}
	writeJSON(w, http.StatusOK, b)
}

// model resolves a requested model name; empty means the default.
func (s *Server) model(name string) (*servedModel, *apiError) {
	if name == "" {
		return &s.models[0], nil
	}
	// A linear scan: a node serves one model under a name or two.
	for i := range s.models {
		if s.models[i].name == name {
			return &s.models[i], nil
		}
	}
	return nil, modelNotFound(name)
}

// debug reports whether per-request debug logs are wanted.
func (s *Server) debug(ctx context.Context) bool {
	return s.log.Enabled(ctx, slog.LevelDebug)
}
