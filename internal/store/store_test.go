package store

import (
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestJoinTokenCheck(t *testing.T) {
	now := time.Date(2025, time.March, 14, 15, 9, 26, 0, time.UTC)
	secret := sha256.Sum256([]byte("secret"))
	other := sha256.Sum256([]byte("other"))

	// usable returns a token that Check lets through for secret at now.
	usable := func() JoinToken {
		return JoinToken{ID: "jt", Hash: secret[:], MaxUses: 2, Uses: 1,
			CreatedAt: now.Add(-time.Hour), ExpiresAt: now.Add(time.Hour)}
	}
	tests := []struct {
		name       string
		change     func(t *JoinToken)
		hash       []byte
		wantReason string // empty: no error
	}{
		{"usable, last use", func(*JoinToken) {}, secret[:], ""},
		{"expires a nanosecond from now", func(t *JoinToken) {
			t.ExpiresAt = now.Add(time.Nanosecond)
		}, secret[:], ""},
		{"revoked in the future still counts", func(t *JoinToken) {
			t.RevokedAt = now.Add(time.Hour)
		}, secret[:], "revoked"},
		{"wrong secret", func(*JoinToken) {}, other[:], "does not match"},
		{"secret cut short", func(*JoinToken) {}, secret[:31], "does not match"},
		{"no secret", func(*JoinToken) {}, nil, "does not match"},
		{"no hash stored, no secret given", func(t *JoinToken) { t.Hash = nil }, nil,
			"does not match"},
		{"revoked", func(t *JoinToken) { t.RevokedAt = now.Add(-time.Minute) }, secret[:],
			"revoked"},
		{"expires now", func(t *JoinToken) { t.ExpiresAt = now }, secret[:], "expired"},
		{"expired", func(t *JoinToken) { t.ExpiresAt = now.Add(-time.Hour) }, secret[:],
			"expired"},
		{"no expiry", func(t *JoinToken) { t.ExpiresAt = time.Time{} }, secret[:], "expired"},
		{"used up", func(t *JoinToken) { t.Uses = 2 }, secret[:], "used up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := usable()
			tt.change(&tok)
			err := tok.Check(tt.hash, now)
			if tt.wantReason == "" {
				if err != nil {
					t.Fatalf("got error %v, want none", err)
				}
				return
			}
			if !errors.Is(err, ErrTokenUnusable) {
				t.Fatalf("got error %v, want %v", err, ErrTokenUnusable)
			}
			if !strings.Contains(err.Error(), tt.wantReason) {
				t.Errorf("got error %q, want it to say %q", err, tt.wantReason)
			}
		})
	}
}
