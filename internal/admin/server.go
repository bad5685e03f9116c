package admin

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/crosslogic/crosslogic/internal/apikey"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/pki"
	"github.com/crosslogic/crosslogic/internal/registry"
	"github.com/crosslogic/crosslogic/internal/store"
)

// maxRequestBytes bounds an admin request body.
const maxRequestBytes = 1 << 20

// Server serves the admin API. Create one with NewServer.
type Server struct {
	store    store.Store
	keys     *apikey.Keyring
	registry *registry.Registry
	token    [sha256.Size]byte
	enabled  bool
	log      *slog.Logger
	now      func() time.Time
	mux      *http.ServeMux
	ca       *pki.CA
}

// Options are what a Server is built from.
type Options struct {
	Store    store.Store
	Keys     *apikey.Keyring
	Registry *registry.Registry
	// Token is the admin token. Empty disables the admin API: every call
	// is refused.
	Token string
	// Logger receives audit logs of every change; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// CA is the internal CA, shown by GET /admin/ca; nil answers 404.
	CA *pki.CA
}

// NewServer returns the admin API handler.
func NewServer(o Options) *Server {
	s := &Server{store: o.Store, keys: o.Keys, registry: o.Registry, log: o.Logger, ca: o.CA,
		now: o.Now, enabled: o.Token != "", token: sha256.Sum256([]byte(o.Token))}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.log = s.log.With("component", "admin")
	if s.now == nil {
		s.now = time.Now
	}
	s.mux = http.NewServeMux()
	s.mux.HandleFunc("GET /admin/keys", s.listKeys)
	s.mux.HandleFunc("POST /admin/keys", s.createKey)
	s.mux.HandleFunc("DELETE /admin/keys/{id}", s.revokeKey)
	s.mux.HandleFunc("GET /admin/nodes", s.listNodes)
	s.mux.HandleFunc("POST /admin/nodes", s.addNode)
	s.mux.HandleFunc("GET /admin/nodes/{id}", s.getNode)
	s.mux.HandleFunc("DELETE /admin/nodes/{id}", s.removeNode)
	s.mux.HandleFunc("POST /admin/nodes/{id}/drain", s.drainNode)
	s.mux.HandleFunc("GET /admin/tokens", s.listTokens)
	s.mux.HandleFunc("POST /admin/tokens", s.createToken)
	s.mux.HandleFunc("DELETE /admin/tokens/{id}", s.revokeToken)
	s.mux.HandleFunc("GET /admin/ca", s.showCA)
	return s
}

// ServeHTTP checks the admin token, then routes.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.enabled {
		writeError(w, &openai.Error{Status: http.StatusForbidden, Type: openai.TypePermission,
			Code: "admin_disabled", Message: "The admin API is disabled: no admin token is configured."})
		return
	}
	if !s.authorized(r.Header.Get("Authorization")) {
		s.log.Info("admin token refused", "remote", r.RemoteAddr, "path", r.URL.Path)
		writeError(w, &openai.Error{Status: http.StatusUnauthorized, Type: openai.TypeAuthentication,
			Code: "invalid_admin_token", Message: "A valid admin token is required."})
		return
	}
	s.mux.ServeHTTP(w, r)
}

// authorized compares digests in constant time, so neither the token's
// length nor its content shows in the timing.
func (s *Server) authorized(header string) bool {
	tok, ok := strings.CutPrefix(header, "Bearer ")
	if !ok {
		return false
	}
	d := sha256.Sum256([]byte(tok))
	return subtle.ConstantTimeCompare(d[:], s.token[:]) == 1
}

// ReloadKeys publishes the store's keys to the keyring. The server calls it
// after every change; the process calls it at start and on an interval,
// which is how a change made through another replica arrives.
func (s *Server) ReloadKeys(ctx context.Context) error {
	return ReloadKeys(ctx, s.store, s.keys)
}

// ReloadKeys publishes the store's keys to a keyring.
func ReloadKeys(ctx context.Context, st store.Store, keys *apikey.Keyring) error {
	recs, err := st.ListKeys(ctx)
	if err != nil {
		return fmt.Errorf("admin: load keys: %w", err)
	}
	keys.Replace(recs)
	return nil
}

func (s *Server) listKeys(w http.ResponseWriter, r *http.Request) {
	recs, err := s.store.ListKeys(r.Context())
	if err != nil {
		s.internal(w, "list keys", err)
		return
	}
	now := s.now()
	out := make([]Key, 0, len(recs))
	for _, k := range recs {
		out = append(out, keyView(k, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createKey(w http.ResponseWriter, r *http.Request) {
	var req CreateKeyRequest
	if !decode(w, r, &req) {
		return
	}
	k, err := s.CreateKey(r.Context(), req)
	if err != nil {
		var apiErr *openai.Error
		if errors.As(err, &apiErr) {
			writeError(w, apiErr)
			return
		}
		s.internal(w, "create key", err)
		return
	}
	writeJSON(w, http.StatusCreated, k)
}

// CreateKey makes (or, with req.Secret, imports) a key, stores it and
// publishes it to the keyring. A refusal is an *openai.Error; ErrConflict
// from the store comes back as a 409 one.
func (s *Server) CreateKey(ctx context.Context, req CreateKeyRequest) (CreatedKey, error) {
	req.Name = strings.TrimSpace(req.Name)
	if req.Name == "" || len(req.Name) > 200 {
		return CreatedKey{}, openai.InvalidRequest("name",
			"A key needs a name of 1-200 characters.")
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	if req.ExpiresAt != nil && !req.ExpiresAt.After(now) {
		return CreatedKey{}, openai.InvalidRequest("expires_at",
			"expires_at must be in the future.")
	}
	for _, m := range req.Models {
		if m == "" {
			return CreatedKey{}, openai.InvalidRequest("models",
				"Model names must not be empty.")
		}
	}

	secret, digest, hint := req.Secret, apikey.Sum(req.Secret), apikey.Hint(req.Secret)
	if secret == "" {
		k, err := apikey.Generate()
		if err != nil {
			return CreatedKey{}, err
		}
		secret, digest, hint = k.Secret, k.Digest, k.Hint
	}
	id, err := apikey.NewID()
	if err != nil {
		return CreatedKey{}, err
	}
	rec := store.APIKey{ID: id, Name: req.Name, Hash: digest[:], Hint: hint,
		Models: req.Models, CreatedAt: now}
	if req.ExpiresAt != nil {
		rec.ExpiresAt = req.ExpiresAt.UTC()
	}
	if err := s.store.CreateKey(ctx, rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			return CreatedKey{}, &openai.Error{Status: http.StatusConflict,
				Type: openai.TypeInvalidRequest, Code: "key_exists",
				Message: "This key already exists."}
		}
		return CreatedKey{}, fmt.Errorf("admin: store key: %w", err)
	}
	if err := s.ReloadKeys(ctx); err != nil {
		return CreatedKey{}, err
	}
	s.log.Info("key created", "key_id", id, "name", req.Name, "models", req.Models)
	return CreatedKey{Key: keyView(rec, now), Secret: secret}, nil
}

func (s *Server) revokeKey(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.store.RevokeKey(r.Context(), id, s.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, notFound("key", id))
			return
		}
		s.internal(w, "revoke key", err)
		return
	}
	if err := s.ReloadKeys(r.Context()); err != nil {
		s.internal(w, "publish keys", err)
		return
	}
	s.log.Info("key revoked", "key_id", id)
	recs, err := s.store.ListKeys(r.Context())
	if err != nil {
		s.internal(w, "list keys", err)
		return
	}
	for _, k := range recs {
		if k.ID == id {
			writeJSON(w, http.StatusOK, keyView(k, s.now()))
			return
		}
	}
	writeError(w, notFound("key", id))
}

func keyView(k store.APIKey, now time.Time) Key {
	v := Key{ID: k.ID, Name: k.Name, Hint: k.Hint, Models: k.Models, State: KeyActive,
		CreatedAt: k.CreatedAt}
	if v.Models == nil {
		v.Models = []string{}
	}
	if !k.ExpiresAt.IsZero() {
		t := k.ExpiresAt
		v.ExpiresAt = &t
		if !now.Before(t) {
			v.State = KeyExpired
		}
	}
	if !k.RevokedAt.IsZero() {
		t := k.RevokedAt
		v.RevokedAt = &t
		v.State = KeyRevoked
	}
	return v
}

func (s *Server) listNodes(w http.ResponseWriter, r *http.Request) {
	st := s.registry.List()
	out := make([]Node, 0, len(st))
	for _, n := range st {
		out = append(out, nodeView(n))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getNode(w http.ResponseWriter, r *http.Request) {
	n, ok := s.registry.Get(r.PathValue("id"))
	if !ok {
		writeError(w, notFound("node", r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, nodeView(n))
}

func (s *Server) addNode(w http.ResponseWriter, r *http.Request) {
	var req AddNodeRequest
	if !decode(w, r, &req) {
		return
	}
	if req.Provider == "" {
		req.Provider = "manual"
	}
	spec := registry.Spec{ID: req.ID, Endpoint: req.Endpoint, Models: req.Models,
		Provider: req.Provider, Region: req.Region, UpstreamKey: req.UpstreamKey,
		Source: registry.SourceAdmin}
	if err := spec.Validate(); err != nil {
		writeError(w, openai.InvalidRequest("", strings.TrimPrefix(err.Error(), "registry: ")))
		return
	}
	if _, ok := s.registry.Get(req.ID); ok {
		writeError(w, conflict("node", req.ID))
		return
	}
	rec := store.Node{ID: req.ID, Endpoint: req.Endpoint, Models: req.Models,
		Provider: req.Provider, Region: req.Region, UpstreamKey: req.UpstreamKey,
		CreatedAt: s.now().UTC()}
	if err := s.store.CreateNode(r.Context(), rec); err != nil {
		if errors.Is(err, store.ErrConflict) {
			writeError(w, conflict("node", req.ID))
			return
		}
		s.internal(w, "store node", err)
		return
	}
	if err := s.registry.Add(spec); err != nil {
		// Lost a race with another add of the same ID: the stored row is
		// the other request's, so leave it.
		writeError(w, conflict("node", req.ID))
		return
	}
	n, _ := s.registry.Get(req.ID)
	writeJSON(w, http.StatusCreated, nodeView(n))
}

func (s *Server) removeNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	n, ok := s.registry.Get(id)
	if !ok {
		writeError(w, notFound("node", id))
		return
	}
	if n.Source == registry.SourceConfig {
		writeError(w, &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest,
			Code: "node_in_config", Message: "Node " + id +
				" is declared in the config file; remove it there and restart."})
		return
	}
	if err := s.store.DeleteNode(r.Context(), id); err != nil && !errors.Is(err, store.ErrNotFound) {
		s.internal(w, "delete node", err)
		return
	}
	_ = s.registry.Remove(id)
	writeJSON(w, http.StatusOK, nodeView(n))
}

func nodeView(n registry.Status) Node {
	v := Node{ID: n.ID, Endpoint: n.Endpoint, Models: n.Models, Provider: n.Provider,
		Region: n.Region, Source: string(n.Source), State: string(n.State),
		StateAt: n.Since, LastError: n.LastError, Inflight: n.Inflight,
		Drained: n.Drained, Facts: n.Facts, Load: n.Load}
	if !n.LastHeartbeat.IsZero() {
		t := n.LastHeartbeat
		v.LastHeartbeat = &t
	}
	if !n.CertNotAfter.IsZero() {
		t := n.CertNotAfter
		v.CertNotAfter = &t
	}
	return v
}

// decode reads a JSON body into v, answering 400 or 413 when it cannot.
func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequestBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			writeError(w, openai.BodyTooLarge(maxRequestBytes))
			return false
		}
		// Decoder messages name fields and types, never values, so they
		// are safe and useful to show.
		writeError(w, openai.InvalidRequest("", "Invalid JSON body: "+err.Error()))
		return false
	}
	return true
}

func (s *Server) internal(w http.ResponseWriter, op string, err error) {
	s.log.Error("admin operation failed", "op", op, "error", err)
	writeError(w, &openai.Error{Status: http.StatusInternalServerError, Type: openai.TypeServer,
		Message: "The operation failed: " + op + ". See the server log."})
}

func notFound(kind, id string) *openai.Error {
	return &openai.Error{Status: http.StatusNotFound, Type: openai.TypeNotFound,
		Code: kind + "_not_found", Message: "No " + kind + " has id " + id + "."}
}

func conflict(kind, id string) *openai.Error {
	return &openai.Error{Status: http.StatusConflict, Type: openai.TypeInvalidRequest,
		Code: kind + "_exists", Message: "A " + kind + " with id " + id + " already exists."}
}

func writeError(w http.ResponseWriter, e *openai.Error) { e.Write(w) }

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}
