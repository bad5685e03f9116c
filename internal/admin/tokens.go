package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/crosslogic/crosslogic/internal/enrollment"
	"github.com/crosslogic/crosslogic/internal/openai"
	"github.com/crosslogic/crosslogic/internal/store"
)

// maxTokenTTL bounds a join token's lifetime: a token is an invitation to
// join the fleet, and a week-old invitation is more likely leaked than
// needed.
const maxTokenTTL = 7 * 24 * time.Hour

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req CreateJoinTokenRequest
	if !decode(w, r, &req) {
		return
	}
	t, err := s.CreateJoinToken(r.Context(), req)
	var apiErr *openai.Error
	switch {
	case errors.As(err, &apiErr):
		writeError(w, apiErr)
	case err != nil:
		s.internal(w, "create join token", err)
	default:
		writeJSON(w, http.StatusCreated, t)
	}
}

// CreateJoinToken makes a join token and stores its digest. A refusal is
// an *openai.Error.
func (s *Server) CreateJoinToken(ctx context.Context,
	req CreateJoinTokenRequest) (CreatedJoinToken, error) {
	ttl := time.Duration(req.TTLSeconds) * time.Second
	if ttl == 0 {
		ttl = time.Hour
	}
	if req.MaxUses == 0 {
		req.MaxUses = 1
	}
	switch {
	case ttl < 0 || ttl > maxTokenTTL:
		return CreatedJoinToken{}, openai.InvalidRequest("ttl_seconds",
			"ttl_seconds must be between 1 and 604800 (7 days).")
	case req.MaxUses < 1 || req.MaxUses > 10000:
		return CreatedJoinToken{}, openai.InvalidRequest("max_uses",
			"max_uses must be between 1 and 10000.")
	case slices.Contains(req.Models, ""):
		return CreatedJoinToken{}, openai.InvalidRequest("models",
			"Model names must not be empty.")
	}
	secret, id, digest, err := enrollment.NewToken()
	if err != nil {
		return CreatedJoinToken{}, err
	}
	now := s.now().UTC().Truncate(time.Millisecond)
	rec := store.JoinToken{ID: id, Hash: digest[:], Models: req.Models, Labels: req.Labels,
		MaxUses: req.MaxUses, CreatedAt: now, ExpiresAt: now.Add(ttl)}
	if err := s.store.CreateJoinToken(ctx, rec); err != nil {
		return CreatedJoinToken{}, fmt.Errorf("admin: store join token: %w", err)
	}
	s.log.Info("join token created", "token_id", id, "max_uses", req.MaxUses,
		"expires_at", rec.ExpiresAt, "models", req.Models)
	return CreatedJoinToken{JoinToken: tokenView(rec, now), Secret: secret}, nil
}

func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	recs, err := s.store.ListJoinTokens(r.Context())
	if err != nil {
		s.internal(w, "list join tokens", err)
		return
	}
	now := s.now()
	out := make([]JoinToken, 0, len(recs))
	for _, t := range recs {
		out = append(out, tokenView(t, now))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.store.RevokeJoinToken(r.Context(), id, s.now()); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			writeError(w, notFound("join token", id))
			return
		}
		s.internal(w, "revoke join token", err)
		return
	}
	t, err := s.store.GetJoinToken(r.Context(), id)
	if err != nil {
		s.internal(w, "read join token", err)
		return
	}
	s.log.Info("join token revoked", "token_id", id)
	writeJSON(w, http.StatusOK, tokenView(t, s.now()))
}

func tokenView(t store.JoinToken, now time.Time) JoinToken {
	v := JoinToken{ID: t.ID, Models: t.Models, Labels: t.Labels, MaxUses: t.MaxUses,
		Uses: t.Uses, State: KeyActive, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt}
	if v.Models == nil {
		v.Models = []string{}
	}
	switch {
	case !t.RevokedAt.IsZero():
		rt := t.RevokedAt
		v.RevokedAt, v.State = &rt, KeyRevoked
	case t.Uses >= t.MaxUses:
		v.State = TokenUsed
	case !now.Before(t.ExpiresAt):
		v.State = KeyExpired
	}
	return v
}

func (s *Server) drainNode(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.registry.Drain(id); err != nil {
		writeError(w, notFound("node", id))
		return
	}
	s.log.Info("node drained by operator", "node_id", id)
	n, _ := s.registry.Get(id)
	writeJSON(w, http.StatusOK, nodeView(n))
}

func (s *Server) showCA(w http.ResponseWriter, r *http.Request) {
	if s.ca == nil {
		writeError(w, notFound("CA", "default"))
		return
	}
	writeJSON(w, http.StatusOK, CA{Fingerprint: s.ca.Fingerprint(),
		Bundle: string(s.ca.Bundle().PEM())})
}
