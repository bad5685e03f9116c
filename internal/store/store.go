// Package store defines how CrossLogic persists its state: API keys and
// nodes today, more as the control plane grows. The request path never
// reads the store; it reads in-memory snapshots built from it.
//
// The interface is deliberately narrow and its SQL portable, so that the
// embedded SQLite implementation (package store/sqlite) and a PostgreSQL
// implementation can share one conformance suite (package store/storetest).
package store

import (
	"context"
	"errors"
	"time"
)

// ErrNotFound is returned when the record named by an ID does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a record with the same ID or unique field
// already exists.
var ErrConflict = errors.New("store: already exists")

// APIKey is a customer API key as stored. The secret itself is never
// stored: only its SHA-256 hash.
type APIKey struct {
	// ID identifies the key in the admin API and in logs (key_id). It is
	// not secret and is not derived from the secret.
	ID string
	// Name is a human label, such as the customer or application.
	Name string
	// Hash is the SHA-256 digest of the full key string.
	Hash []byte
	// Hint is the key's recognisable beginning (e.g. "sk-cl-Ab3x"), shown
	// in lists so people can tell keys apart. It holds few enough
	// characters that the remaining secret keeps at least 256 bits.
	Hint string
	// Models lists the models the key may use; empty means all models.
	Models []string
	// CreatedAt is when the key was made.
	CreatedAt time.Time
	// ExpiresAt is when the key stops working; zero means never.
	ExpiresAt time.Time
	// RevokedAt is when the key was revoked; zero means it is not revoked.
	RevokedAt time.Time
}

// Node is a node as declared to the control plane: one engine endpoint
// serving one or more model names.
type Node struct {
	// ID identifies the node; unique.
	ID string
	// Endpoint is the base URL of the node's OpenAI-compatible API, without
	// the /v1 suffix (e.g. "https://10.0.0.5:8443").
	Endpoint string
	// Models lists the model names the node serves.
	Models []string
	// Provider names how the machine was obtained ("manual", "local",
	// "skypilot", ...).
	Provider string
	// Region is the provider's region, free-form; empty when unknown.
	Region string
	// UpstreamKey is the bearer token the gateway presents to the node's
	// engine; empty when the engine needs none.
	//
	// TODO: encrypt at rest with the control plane's data key once the
	// internal CA introduces one; today it is stored as given.
	UpstreamKey string
	// CreatedAt is when the node was first stored.
	CreatedAt time.Time
}

// Store is the control plane's persistent state.
//
// Implementations are safe for concurrent use. Times are stored with at
// least millisecond precision and returned in UTC. Slices returned are
// owned by the caller. Lists are ordered by CreatedAt, then ID.
type Store interface {
	// CreateKey stores a new API key. It returns ErrConflict when a key
	// with the same ID or hash exists.
	CreateKey(ctx context.Context, k APIKey) error
	// ListKeys returns every key, revoked and expired ones included.
	ListKeys(ctx context.Context) ([]APIKey, error)
	// RevokeKey marks the key revoked at the given time. Revoking a key
	// that is already revoked keeps the first time and succeeds. It
	// returns ErrNotFound when no key has that ID.
	RevokeKey(ctx context.Context, id string, at time.Time) error

	// CreateNode stores a new node. It returns ErrConflict when a node
	// with the same ID exists.
	CreateNode(ctx context.Context, n Node) error
	// ListNodes returns every stored node.
	ListNodes(ctx context.Context) ([]Node, error)
	// DeleteNode removes a node. It returns ErrNotFound when no node has
	// that ID.
	DeleteNode(ctx context.Context, id string) error

	// Close releases the store's resources.
	Close() error
}
