// Package admin is the control plane's admin API: JSON over HTTP under
// /admin/, protected by an admin token that is never a customer key. The
// `crosslogic keys` and `crosslogic nodes` commands speak it through
// Client.
//
// Every change is written to the store first and then published to the
// in-memory state the request path reads (the keyring, the registry), so
// a change that was acknowledged survives a restart.
package admin

import (
	"time"

	"github.com/crosslogic/crosslogic/internal/registry"
)

// Key is an API key as the admin API shows it. The secret is never shown,
// except once, in CreatedKey.
type Key struct {
	ID        string     `json:"id"`
	Name      string     `json:"name"`
	Hint      string     `json:"hint"`
	Models    []string   `json:"models"`
	State     string     `json:"state"` // active, expired or revoked
	CreatedAt time.Time  `json:"created_at"`
	ExpiresAt *time.Time `json:"expires_at"`
	RevokedAt *time.Time `json:"revoked_at"`
}

// Key states.
const (
	KeyActive  = "active"
	KeyExpired = "expired"
	KeyRevoked = "revoked"
)

// CreateKeyRequest is the body of POST /admin/keys.
type CreateKeyRequest struct {
	// Name labels the key; required.
	Name string `json:"name"`
	// Models limits the key to these models; empty allows all.
	Models []string `json:"models,omitempty"`
	// ExpiresAt is when the key stops working; nil means never.
	ExpiresAt *time.Time `json:"expires_at,omitempty"`
	// Secret imports an existing key instead of generating one. Only the
	// demo uses it, so a documented key can be reused across runs.
	Secret string `json:"secret,omitempty"`
}

// CreatedKey is the answer to POST /admin/keys: the key and, this one
// time, its secret.
type CreatedKey struct {
	Key
	Secret string `json:"key"`
}

// Node is a node as the admin API shows it.
type Node struct {
	ID        string    `json:"id"`
	Endpoint  string    `json:"endpoint"`
	Models    []string  `json:"models"`
	Provider  string    `json:"provider"`
	Region    string    `json:"region"`
	Source    string    `json:"source"`
	State     string    `json:"state"`
	StateAt   time.Time `json:"state_since"`
	LastError string    `json:"last_error,omitempty"`
	Inflight  int64     `json:"inflight"`
	// Drained reports whether an operator drained the node.
	Drained bool `json:"drained"`
	// Facts are what an agent node reported about its machine.
	Facts registry.Facts `json:"facts"`
	// Load is what an agent node last reported.
	Load registry.Load `json:"load"`
	// LastHeartbeat is when an agent node last reported; null otherwise.
	LastHeartbeat *time.Time `json:"last_heartbeat"`
	// CertNotAfter is when an agent node's certificate expires; null for
	// other nodes.
	CertNotAfter *time.Time `json:"cert_not_after"`
}

// AddNodeRequest is the body of POST /admin/nodes.
type AddNodeRequest struct {
	ID       string   `json:"id"`
	Endpoint string   `json:"endpoint"`
	Models   []string `json:"models"`
	Provider string   `json:"provider,omitempty"`
	Region   string   `json:"region,omitempty"`
	// UpstreamKey is the bearer token the node's engine expects. It is
	// write-only: no answer ever includes it.
	UpstreamKey string `json:"upstream_key,omitempty"`
}

// JoinToken is a join token as the admin API shows it. The secret is
// never shown, except once, in CreatedJoinToken.
type JoinToken struct {
	ID        string            `json:"id"`
	Models    []string          `json:"models"`
	Labels    map[string]string `json:"labels"`
	MaxUses   int               `json:"max_uses"`
	Uses      int               `json:"uses"`
	State     string            `json:"state"` // active, used, expired or revoked
	CreatedAt time.Time         `json:"created_at"`
	ExpiresAt time.Time         `json:"expires_at"`
	RevokedAt *time.Time        `json:"revoked_at"`
}

// Join token states, besides KeyActive, KeyExpired and KeyRevoked.
const TokenUsed = "used"

// CreateJoinTokenRequest is the body of POST /admin/tokens.
type CreateJoinTokenRequest struct {
	// TTLSeconds is the token's lifetime; zero means one hour.
	TTLSeconds int64 `json:"ttl_seconds,omitempty"`
	// MaxUses is how many nodes may join with it; zero means one.
	MaxUses int `json:"max_uses,omitempty"`
	// Models, when set, limits joining nodes to these models.
	Models []string `json:"models,omitempty"`
	// Labels are copied to every node that joins with the token.
	Labels map[string]string `json:"labels,omitempty"`
}

// CreatedJoinToken is the answer to POST /admin/tokens: the token and,
// this one time, its secret.
type CreatedJoinToken struct {
	JoinToken
	Secret string `json:"token"`
}

// CA is the answer to GET /admin/ca.
type CA struct {
	// Fingerprint is what agents pin: "sha256:" and the hex SHA-256 of the
	// signing root's DER.
	Fingerprint string `json:"fingerprint"`
	// Bundle is the PEM trust bundle (one or two roots).
	Bundle string `json:"bundle"`
}
