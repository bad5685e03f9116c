// Package store defines how CrossLogic persists its state: API keys, nodes,
// the join tokens that let nodes join and the roots of the internal CA. The
// request path never reads the store; it reads in-memory snapshots built
// from it.
//
// The interface is deliberately narrow and its SQL portable, so that the
// embedded SQLite implementation (package store/sqlite) and a PostgreSQL
// implementation can share one conformance suite (package store/storetest).
package store

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"time"
)

// ErrNotFound is returned when the record named by an ID does not exist.
var ErrNotFound = errors.New("store: not found")

// ErrConflict is returned when a record with the same ID or unique field
// already exists.
var ErrConflict = errors.New("store: already exists")

// ErrTokenUnusable is returned by JoinNode when the join token is unknown,
// the secret presented does not match it, or it is revoked, expired or used
// up. The error returned wraps it and says which.
var ErrTokenUnusable = errors.New("store: join token unusable")

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

// Kinds of node, for Node.Kind.
const (
	// NodeKindStatic is a node declared by its URL through the admin API:
	// an engine endpoint that runs no agent of ours.
	NodeKindStatic = "static"
	// NodeKindAgent is a node whose agent joined with a join token and
	// holds a certificate from the internal CA.
	NodeKindAgent = "agent"
)

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

	// Kind says how the node came to be: NodeKindStatic or NodeKindAgent.
	// Empty means NodeKindStatic and is read back as such, as are nodes
	// stored before kinds existed.
	Kind string
	// Zone is the provider's availability zone (e.g. "us-east-1a"); empty
	// when unknown.
	Zone string
	// InstanceType is the provider's machine type (e.g. "g5.xlarge");
	// empty when unknown.
	InstanceType string
	// GPU describes the machine's accelerators (e.g. "1x A10G"); empty
	// when unknown.
	GPU string
	// Engine names the inference engine ("vllm", "sglang", ...); empty
	// when unknown.
	Engine string
	// Spot reports whether the provider may reclaim the machine at short
	// notice.
	Spot bool
	// Labels are free-form key/value pairs, copied from the join token for
	// agent nodes. An empty map is read back as nil.
	Labels map[string]string
	// CertNotAfter is when the agent's current certificate expires; zero
	// for static nodes and for agents not yet given one.
	CertNotAfter time.Time
	// JoinTokenID is the ID of the join token the node joined with; empty
	// for static nodes.
	JoinTokenID string
}

// JoinToken is an invitation for a node to join: used once, or up to
// MaxUses times, before ExpiresAt. The secret itself is never stored: only
// its SHA-256 hash.
type JoinToken struct {
	// ID identifies the token in the admin API and in logs; it is not
	// secret (e.g. "jt_1f2e3d4c"). The agent presents it beside the
	// secret, so the store finds the token without searching by hash.
	ID string
	// Hash is the SHA-256 digest of the secret. Never empty.
	Hash []byte
	// Models, when not empty, are the only models a node joining with the
	// token may serve. Empty allows any.
	Models []string
	// Labels are copied to every node that joins with the token. An empty
	// map is read back as nil.
	Labels map[string]string
	// MaxUses is how many nodes may join with the token; at least 1.
	MaxUses int
	// Uses is how many have joined with it so far; at most MaxUses.
	Uses int
	// CreatedAt is when the token was made.
	CreatedAt time.Time
	// ExpiresAt is when the token stops working. Required: a token that
	// never expires is a standing key to the fleet.
	ExpiresAt time.Time
	// RevokedAt is when the token was revoked; zero means it is not
	// revoked.
	RevokedAt time.Time
}

// Check returns nil when a node presenting a secret whose SHA-256 hash is
// secretHash may join with t at now. Otherwise it returns an error wrapping
// ErrTokenUnusable that says why. The hashes are compared in constant time.
//
// Check only reads t; JoinNode runs it on the stored token and consumes a
// use atomically. Callers may run it first to refuse early.
func (t JoinToken) Check(secretHash []byte, now time.Time) error {
	// An empty stored hash would match an empty presented one.
	if len(t.Hash) == 0 || subtle.ConstantTimeCompare(t.Hash, secretHash) != 1 {
		return fmt.Errorf("%w: join token %q: secret does not match", ErrTokenUnusable, t.ID)
	}
	if !t.RevokedAt.IsZero() {
		return fmt.Errorf("%w: join token %q revoked at %s",
			ErrTokenUnusable, t.ID, t.RevokedAt.UTC().Format(time.RFC3339))
	}
	if !now.Before(t.ExpiresAt) {
		return fmt.Errorf("%w: join token %q expired at %s",
			ErrTokenUnusable, t.ID, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	if t.Uses >= t.MaxUses {
		return fmt.Errorf("%w: join token %q used up (%d of %d uses)",
			ErrTokenUnusable, t.ID, t.Uses, t.MaxUses)
	}
	return nil
}

// CARoot is one root certificate of the internal CA, as stored. The CA
// signs with one root at a time; two are trusted while it rotates.
type CARoot struct {
	// ID identifies the root; unique.
	ID string
	// CertPEM is the root's self-signed certificate, PEM-encoded.
	CertPEM []byte
	// SealedKey is the root's private key, sealed (encrypted) by the
	// caller before it reaches the store. The store never sees the key in
	// the clear and treats these bytes as opaque.
	SealedKey []byte
	// CreatedAt is when the root was made.
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
	// UpdateNodeCert records notAfter as the expiry of the node's current
	// certificate; zero clears it. It returns ErrNotFound when no node has
	// that ID.
	UpdateNodeCert(ctx context.Context, id string, notAfter time.Time) error

	// CreateJoinToken stores a new join token. It returns ErrConflict when
	// a token with the same ID or hash exists, and another error, storing
	// nothing, when the token has an empty Hash, a zero ExpiresAt, a
	// MaxUses below 1, or Uses outside 0 to MaxUses.
	CreateJoinToken(ctx context.Context, t JoinToken) error
	// ListJoinTokens returns every join token, revoked, expired and used
	// up ones included.
	ListJoinTokens(ctx context.Context) ([]JoinToken, error)
	// GetJoinToken returns the join token with that ID. It returns
	// ErrNotFound when there is none.
	GetJoinToken(ctx context.Context, id string) (JoinToken, error)
	// RevokeJoinToken marks the token revoked at the given time, which
	// must not be zero. Revoking a token that is already revoked keeps the
	// first time and succeeds. It returns ErrNotFound when no token has
	// that ID.
	RevokeJoinToken(ctx context.Context, id string, at time.Time) error
	// JoinNode consumes one use of the join token tokenID and stores n, as
	// one atomic step. It refuses, with an error wrapping ErrTokenUnusable
	// that says why, unless the token exists and JoinToken.Check passes
	// for tokenHash (the SHA-256 of the secret the node presented) at now.
	// It returns ErrConflict when a node with n's ID exists. Whenever it
	// fails, it stores nothing and the use is not consumed.
	//
	// Two calls racing for a token's last use cannot both succeed, however
	// many processes share the store. n is stored with JoinTokenID set to
	// tokenID, whatever it held. JoinNode neither checks n.Models against
	// the token's Models nor copies its Labels: the caller reads the token
	// (GetJoinToken) and builds n first. On success it returns the token
	// as it is after the use, Uses included.
	JoinNode(ctx context.Context, tokenID string, tokenHash []byte, now time.Time,
		n Node) (JoinToken, error)

	// CreateCARoot stores a new root of the internal CA. It returns
	// ErrConflict when a root with the same ID exists.
	CreateCARoot(ctx context.Context, r CARoot) error
	// ListCARoots returns every stored root, oldest first.
	ListCARoots(ctx context.Context) ([]CARoot, error)

	// Close releases the store's resources.
	Close() error
}
