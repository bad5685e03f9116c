package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// testTimePrecision checks times that carry nanoseconds: the store may keep
// them or drop what is below a millisecond, by truncating or rounding, but
// nothing more.
func testTimePrecision(t *testing.T, s store.Store) {
	fine := time.Date(2025, time.March, 14, 15, 9, 26, 987_654_321, elsewhere)

	k := newKey("k", 0)
	k.CreatedAt, k.ExpiresAt, k.RevokedAt = fine, fine.Add(time.Hour), fine.Add(time.Minute)
	createKeys(t, s, k)
	n := newNode("n", 0)
	n.CreatedAt, n.CertNotAfter = fine, fine.Add(8*time.Hour)
	createNodes(t, s, n)
	tok := newToken("jt", 0)
	tok.CreatedAt, tok.ExpiresAt, tok.RevokedAt = fine, fine.Add(time.Hour), fine.Add(time.Minute)
	createTokens(t, s, tok)
	r := newRoot("r", 0)
	r.CreatedAt = fine
	createRoots(t, s, r)

	gotKeys, gotNodes := listKeys(t, s), listNodes(t, s)
	gotTokens, gotRoots := listTokens(t, s), listRoots(t, s)
	if len(gotKeys) != 1 || len(gotNodes) != 1 || len(gotTokens) != 1 || len(gotRoots) != 1 {
		t.Fatalf("got %d keys, %d nodes, %d join tokens and %d CA roots, want 1 of each",
			len(gotKeys), len(gotNodes), len(gotTokens), len(gotRoots))
	}
	tests := []struct {
		name      string
		got, want time.Time
	}{
		{"key CreatedAt", gotKeys[0].CreatedAt, k.CreatedAt},
		{"key ExpiresAt", gotKeys[0].ExpiresAt, k.ExpiresAt},
		{"key RevokedAt", gotKeys[0].RevokedAt, k.RevokedAt},
		{"node CreatedAt", gotNodes[0].CreatedAt, n.CreatedAt},
		{"node CertNotAfter", gotNodes[0].CertNotAfter, n.CertNotAfter},
		{"join token CreatedAt", gotTokens[0].CreatedAt, tok.CreatedAt},
		{"join token ExpiresAt", gotTokens[0].ExpiresAt, tok.ExpiresAt},
		{"join token RevokedAt", gotTokens[0].RevokedAt, tok.RevokedAt},
		{"CA root CreatedAt", gotRoots[0].CreatedAt, r.CreatedAt},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := tt.got.Sub(tt.want).Abs(); d >= time.Millisecond {
				t.Errorf("got %v, want %v within 1ms (off by %v)", tt.got, tt.want.UTC(), d)
			}
			if tt.got.Location() != time.UTC {
				t.Errorf("got location %v, want UTC", tt.got.Location())
			}
		})
	}
}

// testOrdering creates records out of order, with ties on CreatedAt, and
// checks that lists come back by CreatedAt, then ID. IDs are lowercase ASCII
// so that any collation orders them the same way.
func testOrdering(t *testing.T, s store.Store) {
	created := []struct {
		id     string
		offset time.Duration
	}{
		{"c", 2 * time.Second},
		{"b", 0},
		{"a", 2 * time.Second},
		{"d", -time.Second},
		{"e", 0},
		{"aa", 0},
	}
	wantIDs := []string{"d", "aa", "b", "e", "a", "c"}

	byID := make(map[string]time.Duration)
	for _, c := range created {
		createKeys(t, s, newKey(c.id, c.offset))
		createNodes(t, s, newNode(c.id, c.offset))
		createTokens(t, s, newToken(c.id, c.offset))
		createRoots(t, s, newRoot(c.id, c.offset))
		byID[c.id] = c.offset
	}

	var (
		wantKeys   []store.APIKey
		wantNodes  []store.Node
		wantTokens []store.JoinToken
		wantRoots  []store.CARoot
	)
	for _, id := range wantIDs {
		wantKeys = append(wantKeys, newKey(id, byID[id]))
		wantNodes = append(wantNodes, newNode(id, byID[id]))
		wantTokens = append(wantTokens, newToken(id, byID[id]))
		wantRoots = append(wantRoots, newRoot(id, byID[id]))
	}
	checkKeys(t, listKeys(t, s), wantKeys)
	checkNodes(t, listNodes(t, s), wantNodes)
	checkTokens(t, listTokens(t, s), wantTokens)
	checkRoots(t, listRoots(t, s), wantRoots)
}

// testCallerOwnsSlices checks that the store neither keeps the caller's
// slices and maps nor hands out its own: changing one after the call
// changes nothing stored.
func testCallerOwnsSlices(t *testing.T, s store.Store) {
	// want* build fresh values, so that the records passed in and the
	// values compared against share nothing.
	wantKey := func() store.APIKey {
		k := newKey("k", 0)
		k.Models = []string{"m1", "m2"}
		return k
	}
	wantNode := func() store.Node {
		n := agentNode("n", 0)
		n.Models = []string{"m1", "m2"}
		return n
	}
	wantToken := func() store.JoinToken {
		tok := newToken("jt", 0)
		tok.Models = []string{"m1", "m2"}
		tok.Labels = map[string]string{"a": "b"}
		tok.MaxUses = 2
		return tok
	}
	k, n, tok, r := wantKey(), wantNode(), wantToken(), newRoot("r", 0)
	createKeys(t, s, k)
	createNodes(t, s, n)
	createTokens(t, s, tok)
	createRoots(t, s, r)

	check := func(t *testing.T) {
		t.Helper()
		checkKeys(t, listKeys(t, s), []store.APIKey{wantKey()})
		checkNodes(t, listNodes(t, s), []store.Node{wantNode()})
		checkTokens(t, listTokens(t, s), []store.JoinToken{wantToken()})
		checkRoots(t, listRoots(t, s), []store.CARoot{newRoot("r", 0)})
	}

	t.Run("given", func(t *testing.T) {
		k.Models[0] = "changed"
		k.Hash[0]++
		n.Models[0] = "changed"
		n.Labels["team"] = "changed"
		tok.Models[0] = "changed"
		tok.Labels["a"] = "changed"
		tok.Hash[0]++
		r.CertPEM[0]++
		r.SealedKey[0]++
		check(t)
	})

	t.Run("returned", func(t *testing.T) {
		keys, nodes := listKeys(t, s), listNodes(t, s)
		tokens, roots := listTokens(t, s), listRoots(t, s)
		keys[0].Models[0] = "changed"
		keys[0].Hash[0]++
		nodes[0].Models[0] = "changed"
		nodes[0].Labels["team"] = "changed"
		tokens[0].Models[0] = "changed"
		tokens[0].Labels["a"] = "changed"
		tokens[0].Hash[0]++
		roots[0].CertPEM[0]++
		roots[0].SealedKey[0]++

		got, err := s.GetJoinToken(t.Context(), "jt")
		if err != nil {
			t.Fatalf("GetJoinToken: %v", err)
		}
		got.Models[0] = "changed"
		got.Labels["a"] = "changed"
		got.Hash[0]++
		check(t)
	})
}

// testConcurrent uses one store from several goroutines at once. Run it
// with the race detector: that, more than the final counts, is the check.
func testConcurrent(t *testing.T, s store.Store) {
	const workers, rounds = 8, 5

	concurrently(workers, func(w int) {
		for r := range rounds {
			id := fmt.Sprintf("w%d-r%d", w, r)
			offset := time.Duration(w*rounds+r) * time.Millisecond
			if err := s.CreateKey(t.Context(), newKey(id, offset)); err != nil {
				t.Errorf("CreateKey(%q): %v", id, err)
			}
			if err := s.CreateNode(t.Context(), newNode(id, offset)); err != nil {
				t.Errorf("CreateNode(%q): %v", id, err)
			}
			if _, err := s.ListKeys(t.Context()); err != nil {
				t.Errorf("ListKeys: %v", err)
			}
			if _, err := s.ListNodes(t.Context()); err != nil {
				t.Errorf("ListNodes: %v", err)
			}
			if err := s.RevokeKey(t.Context(), id, t0.Add(time.Hour)); err != nil {
				t.Errorf("RevokeKey(%q): %v", id, err)
			}
			if r%2 == 1 {
				if err := s.DeleteNode(t.Context(), id); err != nil {
					t.Errorf("DeleteNode(%q): %v", id, err)
				}
			}
		}
	})
	if t.Failed() {
		return
	}

	keys := listKeys(t, s)
	if len(keys) != workers*rounds {
		t.Errorf("got %d keys, want %d", len(keys), workers*rounds)
	}
	for _, k := range keys {
		if k.RevokedAt.IsZero() {
			t.Errorf("key %q: got not revoked, want revoked", k.ID)
		}
	}
	// Rounds 0, 2 and 4 keep their node.
	if got, want := len(listNodes(t, s)), workers*(rounds+1)/2; got != want {
		t.Errorf("got %d nodes, want %d", got, want)
	}
}

// testCancelledContext calls every method with a cancelled context. Each
// must fail with an error wrapping context.Canceled and change nothing.
func testCancelledContext(t *testing.T, s store.Store) {
	k, n, tok, r := newKey("k", 0), newNode("n", 0), newToken("jt", 0), newRoot("r", 0)
	createKeys(t, s, k)
	createNodes(t, s, n)
	createTokens(t, s, tok)
	createRoots(t, s, r)

	tests := []struct {
		name string
		call func(ctx context.Context) error
	}{
		{"CreateKey", func(ctx context.Context) error {
			return s.CreateKey(ctx, newKey("new", time.Second))
		}},
		{"ListKeys", func(ctx context.Context) error {
			_, err := s.ListKeys(ctx)
			return err
		}},
		{"RevokeKey", func(ctx context.Context) error {
			return s.RevokeKey(ctx, "k", t0.Add(time.Hour))
		}},
		{"CreateNode", func(ctx context.Context) error {
			return s.CreateNode(ctx, newNode("new", time.Second))
		}},
		{"ListNodes", func(ctx context.Context) error {
			_, err := s.ListNodes(ctx)
			return err
		}},
		{"DeleteNode", func(ctx context.Context) error {
			return s.DeleteNode(ctx, "n")
		}},
		{"UpdateNodeCert", func(ctx context.Context) error {
			return s.UpdateNodeCert(ctx, "n", t0.Add(time.Hour))
		}},
		{"CreateJoinToken", func(ctx context.Context) error {
			return s.CreateJoinToken(ctx, newToken("new", time.Second))
		}},
		{"ListJoinTokens", func(ctx context.Context) error {
			_, err := s.ListJoinTokens(ctx)
			return err
		}},
		{"GetJoinToken", func(ctx context.Context) error {
			_, err := s.GetJoinToken(ctx, "jt")
			return err
		}},
		{"RevokeJoinToken", func(ctx context.Context) error {
			return s.RevokeJoinToken(ctx, "jt", t0.Add(time.Minute))
		}},
		{"JoinNode", func(ctx context.Context) error {
			_, err := s.JoinNode(ctx, "jt", tokenHash("jt"), joinTime, agentNode("new", 0))
			return err
		}},
		{"CreateCARoot", func(ctx context.Context) error {
			return s.CreateCARoot(ctx, newRoot("new", time.Second))
		}},
		{"ListCARoots", func(ctx context.Context) error {
			_, err := s.ListCARoots(ctx)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(cancelledContext(t))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got error %v, want one wrapping %v", err, context.Canceled)
			}
			checkKeys(t, listKeys(t, s), []store.APIKey{k})
			checkNodes(t, listNodes(t, s), []store.Node{n})
			checkTokens(t, listTokens(t, s), []store.JoinToken{tok})
			checkRoots(t, listRoots(t, s), []store.CARoot{r})
		})
	}
}
