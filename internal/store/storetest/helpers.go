package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

// t0 is the suite's reference time. It has whole milliseconds, so every
// implementation must return it unchanged.
var t0 = time.Date(2025, time.March, 14, 15, 9, 26, 535_000_000, time.UTC)

// elsewhere is a zone other than UTC, to check that times come back in UTC.
var elsewhere = time.FixedZone("UTC+5:30", 5*3600+30*60)

// newKey returns a key with the given ID, created at t0 plus offset, with a
// hash derived from the ID so that distinct IDs never collide.
func newKey(id string, offset time.Duration) store.APIKey {
	h := sha256.Sum256([]byte(id))
	return store.APIKey{
		ID:        id,
		Name:      "key " + id,
		Hash:      h[:],
		Hint:      "sk-cl-" + id,
		CreatedAt: t0.Add(offset),
	}
}

// newNode returns a node with the given ID, created at t0 plus offset.
func newNode(id string, offset time.Duration) store.Node {
	return store.Node{
		ID:        id,
		Endpoint:  "https://" + id + ".example:8443",
		Models:    []string{"m1"},
		Provider:  "manual",
		CreatedAt: t0.Add(offset),
	}
}

func createKeys(t *testing.T, s store.Store, keys ...store.APIKey) {
	t.Helper()
	for _, k := range keys {
		if err := s.CreateKey(t.Context(), k); err != nil {
			t.Fatalf("CreateKey(%q): %v", k.ID, err)
		}
	}
}

func createNodes(t *testing.T, s store.Store, nodes ...store.Node) {
	t.Helper()
	for _, n := range nodes {
		if err := s.CreateNode(t.Context(), n); err != nil {
			t.Fatalf("CreateNode(%q): %v", n.ID, err)
		}
	}
}

func listKeys(t *testing.T, s store.Store) []store.APIKey {
	t.Helper()
	keys, err := s.ListKeys(t.Context())
	if err != nil {
		t.Fatalf("ListKeys: %v", err)
	}
	return keys
}

func listNodes(t *testing.T, s store.Store) []store.Node {
	t.Helper()
	nodes, err := s.ListNodes(t.Context())
	if err != nil {
		t.Fatalf("ListNodes: %v", err)
	}
	return nodes
}

// checkKeys reports every difference between got and want. Times in want
// are compared as instants; times in got must also be in UTC.
func checkKeys(t *testing.T, got, want []store.APIKey) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d keys %v, want %d %v", len(got), keyIDs(got), len(want), keyIDs(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		where := fmt.Sprintf("key %d (%q)", i, w.ID)
		checkField(t, where, "ID", g.ID, w.ID)
		checkField(t, where, "Name", g.Name, w.Name)
		checkField(t, where, "Hint", g.Hint, w.Hint)
		if !bytes.Equal(g.Hash, w.Hash) {
			t.Errorf("%s: Hash: got %x, want %x", where, g.Hash, w.Hash)
		}
		checkModels(t, where, g.Models, w.Models)
		checkTime(t, where+": CreatedAt", g.CreatedAt, w.CreatedAt)
		checkTime(t, where+": ExpiresAt", g.ExpiresAt, w.ExpiresAt)
		checkTime(t, where+": RevokedAt", g.RevokedAt, w.RevokedAt)
	}
}

// checkNodes is checkKeys for nodes.
func checkNodes(t *testing.T, got, want []store.Node) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d nodes %v, want %d %v",
			len(got), nodeIDs(got), len(want), nodeIDs(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		where := fmt.Sprintf("node %d (%q)", i, w.ID)
		checkField(t, where, "ID", g.ID, w.ID)
		checkField(t, where, "Endpoint", g.Endpoint, w.Endpoint)
		checkModels(t, where, g.Models, w.Models)
		checkField(t, where, "Provider", g.Provider, w.Provider)
		checkField(t, where, "Region", g.Region, w.Region)
		checkField(t, where, "UpstreamKey", g.UpstreamKey, w.UpstreamKey)
		checkTime(t, where+": CreatedAt", g.CreatedAt, w.CreatedAt)
	}
}

func checkField(t *testing.T, where, field, got, want string) {
	t.Helper()
	if got != want {
		t.Errorf("%s: %s: got %q, want %q", where, field, got, want)
	}
}

// checkModels distinguishes nil from empty: the suite requires both to
// round-trip as given.
func checkModels(t *testing.T, where string, got, want []string) {
	t.Helper()
	if (got == nil) != (want == nil) || !slices.Equal(got, want) {
		t.Errorf("%s: Models: got %#v, want %#v", where, got, want)
	}
}

// checkTime requires got to be the instant want, in UTC; a zero want
// requires a zero got.
func checkTime(t *testing.T, what string, got, want time.Time) {
	t.Helper()
	if want.IsZero() {
		if !got.IsZero() {
			t.Errorf("%s: got %v, want the zero time", what, got)
		}
		return
	}
	if !got.Equal(want) {
		t.Errorf("%s: got %v, want %v", what, got, want.UTC())
	}
	if got.Location() != time.UTC {
		t.Errorf("%s: got location %v, want UTC", what, got.Location())
	}
}

func keyIDs(keys []store.APIKey) []string {
	ids := make([]string, len(keys))
	for i, k := range keys {
		ids[i] = k.ID
	}
	return ids
}

func nodeIDs(nodes []store.Node) []string {
	ids := make([]string, len(nodes))
	for i, n := range nodes {
		ids[i] = n.ID
	}
	return ids
}

// cancelledContext returns a context that is already cancelled.
func cancelledContext(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	return ctx
}

// errorsIs reports whether err matches want, treating a nil want as "no
// error".
func errorsIs(err, want error) bool {
	if want == nil {
		return err == nil
	}
	return errors.Is(err, want)
}

// concurrently calls f from n goroutines at once and waits for them all.
func concurrently(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { f(i) })
	}
	wg.Wait()
}
