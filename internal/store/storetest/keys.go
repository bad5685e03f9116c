package storetest

import (
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

func testKeyRoundTrip(t *testing.T, s store.Store) {
	// Leading and trailing zero bytes catch an implementation that stores
	// the hash as a C string or trims it.
	hash := make([]byte, 32)
	for i := range hash {
		hash[i] = byte(i * 37)
	}
	hash[len(hash)-1] = 0

	tests := []struct {
		name string
		key  store.APIKey
	}{
		{"all fields", store.APIKey{
			ID:        "full",
			Name:      "Zoë's “chat” app",
			Hash:      hash,
			Hint:      "sk-cl-Ab3x",
			Models:    []string{"meta-llama/Llama-3.1-8B-Instruct", "qwen2.5-7b"},
			CreatedAt: t0.In(elsewhere),
			ExpiresAt: t0.Add(30 * 24 * time.Hour).In(elsewhere),
			RevokedAt: t0.Add(time.Hour),
		}},
		{"nil models and zero times", newKey("minimal", time.Second)},
		{"empty models", func() store.APIKey {
			k := newKey("empty-models", 2*time.Second)
			k.Models = []string{}
			return k
		}()},
		{"expired, not revoked", func() store.APIKey {
			k := newKey("expired", 3*time.Second)
			k.ExpiresAt = t0.Add(-time.Hour)
			return k
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			createKeys(t, s, tt.key)
			got, ok := findKey(listKeys(t, s), tt.key.ID)
			if !ok {
				t.Fatalf("ListKeys: key %q missing after CreateKey", tt.key.ID)
			}
			checkKeys(t, []store.APIKey{got}, []store.APIKey{tt.key})
		})
	}
}

func testKeyConflict(t *testing.T, s store.Store) {
	orig := newKey("a", 0)
	createKeys(t, s, orig)
	createNodes(t, s, newNode("n1", 0))
	want := []store.APIKey{orig}

	tests := []struct {
		name    string
		key     store.APIKey
		wantErr error
	}{
		{"same ID, other hash", func() store.APIKey {
			k := newKey("a", time.Second)
			k.Hash = newKey("other", 0).Hash
			return k
		}(), store.ErrConflict},
		{"same hash, other ID", func() store.APIKey {
			k := newKey("b", time.Second)
			k.Hash = orig.Hash
			return k
		}(), store.ErrConflict},
		{"ID of a node", newKey("n1", time.Second), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateKey(t.Context(), tt.key)
			if !errorsIs(err, tt.wantErr) {
				t.Fatalf("CreateKey(%q): got error %v, want %v", tt.key.ID, err, tt.wantErr)
			}
			if err == nil {
				want = append(want, tt.key)
			}
			checkKeys(t, listKeys(t, s), want)
		})
	}
}

func testRevokeKey(t *testing.T, s store.Store) {
	a, b := newKey("a", 0), newKey("b", time.Second)
	createKeys(t, s, a, b)

	first := t0.Add(time.Hour).In(elsewhere)
	if err := s.RevokeKey(t.Context(), "a", first); err != nil {
		t.Fatalf("RevokeKey: %v", err)
	}
	a.RevokedAt = first
	checkKeys(t, listKeys(t, s), []store.APIKey{a, b})

	// A second revocation succeeds and keeps the first time, so that the
	// record says when the key really stopped working.
	if err := s.RevokeKey(t.Context(), "a", first.Add(time.Hour)); err != nil {
		t.Fatalf("RevokeKey again: %v", err)
	}
	checkKeys(t, listKeys(t, s), []store.APIKey{a, b})
}

func testRevokeKeyNotFound(t *testing.T, s store.Store) {
	k := newKey("a", 0)
	createKeys(t, s, k)
	createNodes(t, s, newNode("n1", 0))

	tests := []struct {
		name string
		id   string
	}{
		{"unknown ID", "nope"},
		{"empty ID", ""},
		{"ID of a node", "n1"},
		{"ID differing in case", "A"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.RevokeKey(t.Context(), tt.id, t0.Add(time.Hour))
			if !errorsIs(err, store.ErrNotFound) {
				t.Fatalf("RevokeKey(%q): got error %v, want %v", tt.id, err, store.ErrNotFound)
			}
			checkKeys(t, listKeys(t, s), []store.APIKey{k})
		})
	}
}

func findKey(keys []store.APIKey, id string) (store.APIKey, bool) {
	for _, k := range keys {
		if k.ID == id {
			return k, true
		}
	}
	return store.APIKey{}, false
}
