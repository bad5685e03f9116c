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
	n.CreatedAt = fine
	createNodes(t, s, n)

	gotKeys, gotNodes := listKeys(t, s), listNodes(t, s)
	if len(gotKeys) != 1 || len(gotNodes) != 1 {
		t.Fatalf("got %d keys and %d nodes, want 1 and 1", len(gotKeys), len(gotNodes))
	}
	tests := []struct {
		name      string
		got, want time.Time
	}{
		{"key CreatedAt", gotKeys[0].CreatedAt, k.CreatedAt},
		{"key ExpiresAt", gotKeys[0].ExpiresAt, k.ExpiresAt},
		{"key RevokedAt", gotKeys[0].RevokedAt, k.RevokedAt},
		{"node CreatedAt", gotNodes[0].CreatedAt, n.CreatedAt},
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
		byID[c.id] = c.offset
	}

	var wantKeys []store.APIKey
	var wantNodes []store.Node
	for _, id := range wantIDs {
		wantKeys = append(wantKeys, newKey(id, byID[id]))
		wantNodes = append(wantNodes, newNode(id, byID[id]))
	}
	checkKeys(t, listKeys(t, s), wantKeys)
	checkNodes(t, listNodes(t, s), wantNodes)
}

// testCallerOwnsSlices checks that the store neither keeps the caller's
// slices nor hands out its own: changing one after the call changes
// nothing stored.
func testCallerOwnsSlices(t *testing.T, s store.Store) {
	k := newKey("k", 0)
	k.Models = []string{"m1", "m2"}
	k.Hash = append([]byte(nil), k.Hash...)
	n := newNode("n", 0)
	n.Models = []string{"m1", "m2"}

	createKeys(t, s, k)
	createNodes(t, s, n)
	want := newKey("k", 0)
	want.Models = []string{"m1", "m2"}
	wantNode := newNode("n", 0)
	wantNode.Models = []string{"m1", "m2"}

	// Change the slices that went in.
	k.Models[0] = "changed"
	k.Hash[0]++
	n.Models[0] = "changed"
	checkKeys(t, listKeys(t, s), []store.APIKey{want})
	checkNodes(t, listNodes(t, s), []store.Node{wantNode})

	// Change the slices that came out.
	keys, nodes := listKeys(t, s), listNodes(t, s)
	keys[0].Models[0] = "changed"
	keys[0].Hash[0]++
	nodes[0].Models[0] = "changed"
	checkKeys(t, listKeys(t, s), []store.APIKey{want})
	checkNodes(t, listNodes(t, s), []store.Node{wantNode})
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
	k, n := newKey("k", 0), newNode("n", 0)
	createKeys(t, s, k)
	createNodes(t, s, n)

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
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call(cancelledContext(t))
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got error %v, want one wrapping %v", err, context.Canceled)
			}
			checkKeys(t, listKeys(t, s), []store.APIKey{k})
			checkNodes(t, listNodes(t, s), []store.Node{n})
		})
	}
}
