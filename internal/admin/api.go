// Package admin is the control plane's admin API: JSON over HTTP under
// /admin/, protected by an admin token that is never a customer key. The
// `crosslogic keys` and `crosslogic nodes` commands speak it through
// Client.
//
// Every change is written to the store first and then published to the
// in-memory state the request path reads (the keyring, the registry), so
// a change that was acknowledged survives a restart.
package admin

import "time"

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
