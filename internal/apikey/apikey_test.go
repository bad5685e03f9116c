package apikey

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

func TestGenerate(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		k, err := Generate()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k.Secret, Prefix) {
			t.Fatalf("key %q lacks prefix %q", k.Hint, Prefix)
		}
		if got, want := len(k.Secret), len(Prefix)+48; got != want {
			t.Fatalf("key length = %d, want %d", got, want)
		}
		if k.Digest != Sum(k.Secret) {
			t.Fatal("digest does not match secret")
		}
		if !strings.HasPrefix(k.Secret, strings.TrimSuffix(k.Hint, "…")) ||
			len(k.Hint) > len(Prefix)+4+len("…") {
			t.Fatalf("hint %q reveals too much or is not a prefix", k.Hint)
		}
		if seen[k.Secret] {
			t.Fatal("duplicate key")
		}
		seen[k.Secret] = true
	}
}

func TestHintShortKeys(t *testing.T) {
	for _, key := range []string{"", "k", "demo", "sk-cl-", "sk-cl-abc", "a-very-long-demo-key"} {
		h := strings.TrimSuffix(Hint(key), "…")
		if !strings.HasPrefix(key, h) {
			t.Errorf("Hint(%q) = %q, not a prefix", key, h)
		}
		secret := strings.TrimPrefix(key, Prefix)
		shown := strings.TrimPrefix(h, Prefix)
		if len(secret) > 0 && len(shown) > len(secret)/4 {
			t.Errorf("Hint(%q) = %q shows more than a quarter", key, h)
		}
	}
}

func TestKeyringAuthenticate(t *testing.T) {
	now := time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)
	valid, _ := Generate()
	revoked, _ := Generate()
	expired, _ := Generate()
	future, _ := Generate()
	var r Keyring
	r.Replace([]store.APIKey{
		{ID: "key_valid", Hash: valid.Digest[:], Models: []string{"m1"}},
		{ID: "key_revoked", Hash: revoked.Digest[:], RevokedAt: now.Add(-time.Second)},
		{ID: "key_expired", Hash: expired.Digest[:], ExpiresAt: now},
		{ID: "key_future", Hash: future.Digest[:], ExpiresAt: now.Add(time.Hour)},
		{ID: "key_bad_hash", Hash: []byte("short")},
	})
	tests := []struct {
		name    string
		key     string
		wantID  string
		wantErr error
	}{
		{"valid", valid.Secret, "key_valid", nil},
		{"not yet expired", future.Secret, "key_future", nil},
		{"missing", "", "", ErrMissing},
		{"unknown", "sk-cl-nope", "", ErrUnknown},
		{"one char off", valid.Secret[:len(valid.Secret)-1] + "x", "", ErrUnknown},
		{"revoked", revoked.Secret, "key_revoked", ErrRevoked},
		{"expired at the instant", expired.Secret, "key_expired", ErrExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := r.Authenticate(tt.key, now)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantID != "" && (k == nil || k.ID != tt.wantID) {
				t.Fatalf("key = %+v, want ID %q", k, tt.wantID)
			}
		})
	}
	if got := r.Len(); got != 4 {
		t.Errorf("Len = %d, want 4 (the malformed hash is skipped)", got)
	}
}

func TestKeyringReplaceRevokes(t *testing.T) {
	k, _ := Generate()
	rec := store.APIKey{ID: "key_1", Hash: k.Digest[:]}
	var r Keyring
	if _, err := r.Authenticate(k.Secret, time.Now()); !errors.Is(err, ErrUnknown) {
		t.Fatalf("empty keyring: err = %v, want ErrUnknown", err)
	}
	r.Replace([]store.APIKey{rec})
	if _, err := r.Authenticate(k.Secret, time.Now()); err != nil {
		t.Fatalf("after load: %v", err)
	}
	rec.RevokedAt = time.Now().Add(-time.Millisecond)
	r.Replace([]store.APIKey{rec})
	if _, err := r.Authenticate(k.Secret, time.Now()); !errors.Is(err, ErrRevoked) {
		t.Fatalf("after revoke: err = %v, want ErrRevoked", err)
	}
}

func TestAllows(t *testing.T) {
	all := &Key{}
	some := &Key{Models: []string{"a", "b"}}
	for _, tt := range []struct {
		k     *Key
		model string
		want  bool
	}{{all, "x", true}, {some, "a", true}, {some, "b", true}, {some, "c", false}} {
		if got := tt.k.AllowsName(tt.model); got != tt.want {
			t.Errorf("Allows(%q) with %v = %v, want %v", tt.model, tt.k.Models, got, tt.want)
		}
	}
}

func BenchmarkAuthenticate(b *testing.B) {
	var recs []store.APIKey
	var secret string
	for i := range 10000 {
		k, _ := Generate()
		recs = append(recs, store.APIKey{ID: "k", Hash: k.Digest[:]})
		if i == 5000 {
			secret = k.Secret
		}
	}
	var r Keyring
	r.Replace(recs)
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Authenticate(secret, now); err != nil {
			b.Fatal(err)
		}
	}
}
