package storetest

import (
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// joinTime is when the join tests join: within the hour newToken(id, 0)
// lasts.
var joinTime = t0.Add(time.Minute)

func testTokenRoundTrip(t *testing.T, s store.Store) {
	// Leading and trailing zero bytes, as in testKeyRoundTrip.
	hash := make([]byte, 32)
	for i := range hash {
		hash[i] = byte(i * 41)
	}
	hash[len(hash)-1] = 0

	tests := []struct {
		name  string
		token store.JoinToken
	}{
		{"all fields", store.JoinToken{
			ID:        "jt_full",
			Hash:      hash,
			Models:    []string{"meta-llama/Llama-3.1-8B-Instruct", "qwen2.5-7b"},
			Labels:    map[string]string{"team": "search", "ünïcode": "“quoted”"},
			MaxUses:   5,
			Uses:      2,
			CreatedAt: t0.In(elsewhere),
			ExpiresAt: t0.Add(24 * time.Hour).In(elsewhere),
			RevokedAt: t0.Add(time.Hour),
		}},
		{"nil models and labels", newToken("jt_minimal", time.Second)},
		{"empty models", func() store.JoinToken {
			tok := newToken("jt_empty-models", 2*time.Second)
			tok.Models = []string{}
			return tok
		}()},
		{"empty labels read back as nil", func() store.JoinToken {
			tok := newToken("jt_empty-labels", 3*time.Second)
			tok.Labels = map[string]string{}
			return tok
		}()},
		{"used up and expired", func() store.JoinToken {
			tok := newToken("jt_spent", 4*time.Second)
			tok.MaxUses, tok.Uses = 3, 3
			tok.ExpiresAt = t0.Add(-time.Hour)
			return tok
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			createTokens(t, s, tt.token)
			got, ok := findToken(listTokens(t, s), tt.token.ID)
			if !ok {
				t.Fatalf("ListJoinTokens: token %q missing after CreateJoinToken", tt.token.ID)
			}
			checkToken(t, "ListJoinTokens", got, tt.token)

			got, err := s.GetJoinToken(t.Context(), tt.token.ID)
			if err != nil {
				t.Fatalf("GetJoinToken: %v", err)
			}
			checkToken(t, "GetJoinToken", got, tt.token)
		})
	}
}

func testTokenConflict(t *testing.T, s store.Store) {
	orig := newToken("a", 0)
	createTokens(t, s, orig)
	createKeys(t, s, newKey("k1", 0))
	createNodes(t, s, newNode("n1", 0))
	want := []store.JoinToken{orig}

	tests := []struct {
		name    string
		token   store.JoinToken
		wantErr error
	}{
		{"same ID, other hash", func() store.JoinToken {
			tok := newToken("a", time.Second)
			tok.Hash = tokenHash("other")
			return tok
		}(), store.ErrConflict},
		{"same hash, other ID", func() store.JoinToken {
			tok := newToken("b", time.Second)
			tok.Hash = orig.Hash
			return tok
		}(), store.ErrConflict},
		{"ID of a key", newToken("k1", time.Second), nil},
		{"ID of a node", newToken("n1", 2*time.Second), nil},
		{"hash of a key", func() store.JoinToken {
			tok := newToken("c", 3*time.Second)
			tok.Hash = newKey("k1", 0).Hash
			return tok
		}(), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateJoinToken(t.Context(), tt.token)
			if !errorsIs(err, tt.wantErr) {
				t.Fatalf("CreateJoinToken(%q): got error %v, want %v",
					tt.token.ID, err, tt.wantErr)
			}
			if err == nil {
				want = append(want, tt.token)
			}
			checkTokens(t, listTokens(t, s), want)
		})
	}
}

// testTokenInvalid checks that a token no node could use correctly, or one
// counting more uses than it allows, is refused and not stored.
func testTokenInvalid(t *testing.T, s store.Store) {
	tests := []struct {
		name   string
		change func(tok *store.JoinToken)
	}{
		{"nil hash", func(tok *store.JoinToken) { tok.Hash = nil }},
		{"empty hash", func(tok *store.JoinToken) { tok.Hash = []byte{} }},
		{"no expiry", func(tok *store.JoinToken) { tok.ExpiresAt = time.Time{} }},
		{"zero max uses", func(tok *store.JoinToken) { tok.MaxUses = 0 }},
		{"negative max uses", func(tok *store.JoinToken) { tok.MaxUses = -1 }},
		{"negative uses", func(tok *store.JoinToken) { tok.Uses = -1 }},
		{"uses past max uses", func(tok *store.JoinToken) { tok.MaxUses, tok.Uses = 2, 3 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tok := newToken("jt", 0)
			tt.change(&tok)
			if err := s.CreateJoinToken(t.Context(), tok); err == nil {
				t.Fatalf("CreateJoinToken: got no error, want one")
			}
			checkTokens(t, listTokens(t, s), nil)
		})
	}
}

func testGetJoinTokenNotFound(t *testing.T, s store.Store) {
	createTokens(t, s, newToken("jt1", 0))
	createKeys(t, s, newKey("k1", 0))
	createNodes(t, s, newNode("n1", 0))

	for _, id := range []string{"nope", "", "k1", "n1", "JT1"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			_, err := s.GetJoinToken(t.Context(), id)
			if !errorsIs(err, store.ErrNotFound) {
				t.Fatalf("GetJoinToken(%q): got error %v, want %v", id, err, store.ErrNotFound)
			}
		})
	}
}

func testRevokeJoinToken(t *testing.T, s store.Store) {
	a, b := newToken("a", 0), newToken("b", time.Second)
	createTokens(t, s, a, b)

	first := t0.Add(time.Minute).In(elsewhere)
	if err := s.RevokeJoinToken(t.Context(), "a", first); err != nil {
		t.Fatalf("RevokeJoinToken: %v", err)
	}
	a.RevokedAt = first
	checkTokens(t, listTokens(t, s), []store.JoinToken{a, b})

	// A second revocation succeeds and keeps the first time.
	if err := s.RevokeJoinToken(t.Context(), "a", first.Add(time.Minute)); err != nil {
		t.Fatalf("RevokeJoinToken again: %v", err)
	}
	checkTokens(t, listTokens(t, s), []store.JoinToken{a, b})

	// The zero time would be stored as "not revoked".
	if err := s.RevokeJoinToken(t.Context(), "b", time.Time{}); err == nil {
		t.Errorf("RevokeJoinToken at the zero time: got no error, want one")
	}
	checkTokens(t, listTokens(t, s), []store.JoinToken{a, b})
}

func testRevokeJoinTokenNotFound(t *testing.T, s store.Store) {
	tok := newToken("jt1", 0)
	createTokens(t, s, tok)
	createKeys(t, s, newKey("k1", 0))
	createNodes(t, s, newNode("n1", 0))

	for _, id := range []string{"nope", "", "k1", "n1", "JT1"} {
		t.Run(fmt.Sprintf("%q", id), func(t *testing.T) {
			err := s.RevokeJoinToken(t.Context(), id, t0.Add(time.Minute))
			if !errorsIs(err, store.ErrNotFound) {
				t.Fatalf("RevokeJoinToken(%q): got error %v, want %v",
					id, err, store.ErrNotFound)
			}
			checkTokens(t, listTokens(t, s), []store.JoinToken{tok})
		})
	}
}

func testJoinNode(t *testing.T, s store.Store) {
	tok := newToken("jt", 0)
	tok.MaxUses = 2
	tok.Models = []string{"meta-llama/Llama-3.1-8B-Instruct"}
	tok.Labels = map[string]string{"team": "search"}
	createTokens(t, s, tok)

	// The store records the token the node joined with, whatever the
	// node said.
	n1, n2 := agentNode("n1", 0), agentNode("n2", time.Second)
	n1.JoinTokenID, n2.JoinTokenID = "", "some other token"

	var nodes []store.Node
	for i, n := range []store.Node{n1, n2} {
		got, err := s.JoinNode(t.Context(), "jt", tokenHash("jt"), joinTime, n)
		if err != nil {
			t.Fatalf("JoinNode(%q): %v", n.ID, err)
		}
		tok.Uses = i + 1
		checkToken(t, fmt.Sprintf("JoinNode(%q)", n.ID), got, tok)

		n.JoinTokenID = "jt"
		nodes = append(nodes, n)
		checkNodes(t, listNodes(t, s), nodes)
		checkTokens(t, listTokens(t, s), []store.JoinToken{tok})
	}

	// Both uses are spent: a third node is refused.
	_, err := s.JoinNode(t.Context(), "jt", tokenHash("jt"), joinTime, agentNode("n3", 0))
	if !errors.Is(err, store.ErrTokenUnusable) {
		t.Fatalf("JoinNode after the last use: got error %v, want %v", err, store.ErrTokenUnusable)
	}
	checkNodes(t, listNodes(t, s), nodes)
	checkTokens(t, listTokens(t, s), []store.JoinToken{tok})
}

// testJoinNodeRefused presents tokens that must not let a node join, and
// checks that each refusal stores nothing.
func testJoinNodeRefused(t *testing.T, s store.Store) {
	ok := newToken("ok", 0)
	ok.MaxUses = 2
	revoked := newToken("revoked", time.Second)
	revoked.RevokedAt = t0
	spent := newToken("spent", 2*time.Second)
	spent.MaxUses, spent.Uses = 2, 2
	tokens := []store.JoinToken{ok, revoked, spent}
	createTokens(t, s, tokens...)
	createKeys(t, s, newKey("k1", 0))
	createNodes(t, s, newNode("static", 0))
	nodes := listNodes(t, s)

	tests := []struct {
		name    string
		tokenID string
		hash    []byte
		now     time.Time
	}{
		{"unknown ID", "nope", tokenHash("nope"), joinTime},
		{"empty ID", "", tokenHash(""), joinTime},
		{"ID differing in case", "OK", tokenHash("ok"), joinTime},
		{"ID of a key", "k1", newKey("k1", 0).Hash, joinTime},
		{"wrong hash", "ok", tokenHash("wrong"), joinTime},
		{"hash of another token", "ok", tokenHash("revoked"), joinTime},
		{"hash cut short", "ok", tokenHash("ok")[:16], joinTime},
		{"nil hash", "ok", nil, joinTime},
		{"revoked", "revoked", tokenHash("revoked"), joinTime},
		{"expired: now is ExpiresAt", "ok", tokenHash("ok"), ok.ExpiresAt},
		{"expired: now is after ExpiresAt", "ok", tokenHash("ok"),
			ok.ExpiresAt.Add(time.Millisecond)},
		{"used up", "spent", tokenHash("spent"), joinTime},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.JoinNode(t.Context(), tt.tokenID, tt.hash, tt.now, agentNode("new", 0))
			if !errors.Is(err, store.ErrTokenUnusable) {
				t.Fatalf("JoinNode: got error %v, want %v", err, store.ErrTokenUnusable)
			}
			checkNodes(t, listNodes(t, s), nodes)
			checkTokens(t, listTokens(t, s), tokens)
		})
	}

	// None of the refusals consumed a use: both are still there.
	for _, id := range []string{"new1", "new2"} {
		if _, err := s.JoinNode(t.Context(), "ok", tokenHash("ok"), joinTime,
			agentNode(id, 0)); err != nil {
			t.Fatalf("JoinNode(%q) after the refusals: %v", id, err)
		}
	}
}

// testJoinNodeConflict joins a node whose ID is taken: the join fails and
// gives the token's use back.
func testJoinNodeConflict(t *testing.T, s store.Store) {
	tok := newToken("jt", 0)
	createTokens(t, s, tok)
	taken := newNode("n1", 0)
	createNodes(t, s, taken)

	_, err := s.JoinNode(t.Context(), "jt", tokenHash("jt"), joinTime, agentNode("n1", 0))
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("JoinNode: got error %v, want %v", err, store.ErrConflict)
	}
	checkNodes(t, listNodes(t, s), []store.Node{taken})
	checkTokens(t, listTokens(t, s), []store.JoinToken{tok})

	// The one use is still there.
	n2 := agentNode("n2", time.Second)
	if _, err := s.JoinNode(t.Context(), "jt", tokenHash("jt"), joinTime, n2); err != nil {
		t.Fatalf("JoinNode(%q): %v", n2.ID, err)
	}
	n2.JoinTokenID = "jt"
	tok.Uses = 1
	checkNodes(t, listNodes(t, s), []store.Node{taken, n2})
	checkTokens(t, listTokens(t, s), []store.JoinToken{tok})
}

// testJoinNodeConcurrent has more nodes join at once than the token
// allows. Exactly MaxUses may win, whatever the interleaving; a store that
// checks the uses and then increments them in two unguarded steps lets
// more through.
func testJoinNodeConcurrent(t *testing.T, s store.Store) {
	const maxUses, nodes = 3, 10
	tok := newToken("jt", 0)
	tok.MaxUses = maxUses
	createTokens(t, s, tok)

	var joined atomic.Int32
	concurrently(nodes, func(i int) {
		n := agentNode(fmt.Sprintf("n%02d", i), time.Duration(i)*time.Millisecond)
		_, err := s.JoinNode(t.Context(), "jt", tokenHash("jt"), joinTime, n)
		switch {
		case err == nil:
			joined.Add(1)
		case !errors.Is(err, store.ErrTokenUnusable):
			t.Errorf("JoinNode(%q): got error %v, want nil or %v",
				n.ID, err, store.ErrTokenUnusable)
		}
	})

	if got := joined.Load(); got != maxUses {
		t.Errorf("got %d nodes joined, want %d", got, maxUses)
	}
	if got := len(listNodes(t, s)); got != maxUses {
		t.Errorf("got %d nodes stored, want %d", got, maxUses)
	}
	tok.Uses = maxUses
	checkTokens(t, listTokens(t, s), []store.JoinToken{tok})
}

func findToken(tokens []store.JoinToken, id string) (store.JoinToken, bool) {
	for _, tok := range tokens {
		if tok.ID == id {
			return tok, true
		}
	}
	return store.JoinToken{}, false
}
