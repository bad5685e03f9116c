package apikey

import (
	"crypto/subtle"
	"errors"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// Reasons a key is refused. All of them are answered 401; the reason is
// for the log and the message.
var (
	ErrMissing = errors.New("apikey: no key presented")
	ErrUnknown = errors.New("apikey: unknown key")
	ErrRevoked = errors.New("apikey: key revoked")
	ErrExpired = errors.New("apikey: key expired")
)

// Key is an authenticated key as the request path sees it. It is
// immutable once published in a Keyring.
type Key struct {
	// ID is the key's identifier, logged as key_id.
	ID string
	// Name is the key's human label.
	Name string
	// Models are the models the key may use; empty means all.
	Models []string

	digest    Digest
	expiresAt time.Time
	revokedAt time.Time
}

// Allows reports whether the key may use model. It does not allocate.
func (k *Key) Allows(model []byte) bool {
	if len(k.Models) == 0 {
		return true
	}
	for _, m := range k.Models {
		if m == string(model) {
			return true
		}
	}
	return false
}

// AllowsName is Allows for a string.
func (k *Key) AllowsName(model string) bool {
	return k.Allows([]byte(model))
}

// Keyring holds every key in memory for the request path. Authenticate is
// lock-free; Replace publishes a new immutable set. The zero Keyring holds
// no keys and refuses everything.
type Keyring struct {
	byDigest atomic.Pointer[map[Digest]*Key]
}

// Replace publishes keys as the complete set, replacing what was there. It
// is called at start and whenever a key is created or revoked, so that a
// revocation takes effect on the next request.
func (r *Keyring) Replace(keys []store.APIKey) {
	m := make(map[Digest]*Key, len(keys))
	for _, k := range keys {
		var d Digest
		if len(k.Hash) != len(d) {
			continue // not a digest we made; it can never match
		}
		copy(d[:], k.Hash)
		m[d] = &Key{
			ID:        k.ID,
			Name:      k.Name,
			Models:    append([]string(nil), k.Models...),
			digest:    d,
			expiresAt: k.ExpiresAt,
			revokedAt: k.RevokedAt,
		}
	}
	r.byDigest.Store(&m)
}

// Len returns how many keys are loaded, revoked and expired ones included.
func (r *Keyring) Len() int {
	if m := r.byDigest.Load(); m != nil {
		return len(*m)
	}
	return 0
}

// Authenticate returns the key whose secret is presented, if it is valid
// at now. The lookup is by digest; the digest found is then compared with
// the presented one in constant time, so that nothing about a stored key
// can be learnt from how long a refusal takes.
func (r *Keyring) Authenticate(presented string, now time.Time) (*Key, error) {
	if presented == "" {
		return nil, ErrMissing
	}
	m := r.byDigest.Load()
	if m == nil {
		return nil, ErrUnknown
	}
	d := Sum(presented)
	k, ok := (*m)[d]
	if !ok || subtle.ConstantTimeCompare(k.digest[:], d[:]) != 1 {
		return nil, ErrUnknown
	}
	if !k.revokedAt.IsZero() && !now.Before(k.revokedAt) {
		return k, ErrRevoked
	}
	if !k.expiresAt.IsZero() && !now.Before(k.expiresAt) {
		return k, ErrExpired
	}
	return k, nil
}
