package storetest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"maps"
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

// newToken returns a join token with the given ID, for one use, created at
// t0 plus offset and expiring an hour later, with a hash derived from the
// ID so that distinct IDs never collide.
func newToken(id string, offset time.Duration) store.JoinToken {
	return store.JoinToken{
		ID:        id,
		Hash:      tokenHash(id),
		MaxUses:   1,
		CreatedAt: t0.Add(offset),
		ExpiresAt: t0.Add(offset + time.Hour),
	}
}

// tokenHash returns the hash of the secret of the token newToken(id, ...).
func tokenHash(id string) []byte {
	h := sha256.Sum256([]byte("secret of " + id))
	return h[:]
}

// newRoot returns a CA root with the given ID, created at t0 plus offset.
func newRoot(id string, offset time.Duration) store.CARoot {
	return store.CARoot{
		ID:        id,
		CertPEM:   []byte("-----BEGIN CERTIFICATE-----\n" + id + "\n-----END CERTIFICATE-----\n"),
		SealedKey: []byte("sealed " + id),
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

func createTokens(t *testing.T, s store.Store, tokens ...store.JoinToken) {
	t.Helper()
	for _, tok := range tokens {
		if err := s.CreateJoinToken(t.Context(), tok); err != nil {
			t.Fatalf("CreateJoinToken(%q): %v", tok.ID, err)
		}
	}
}

func createRoots(t *testing.T, s store.Store, roots ...store.CARoot) {
	t.Helper()
	for _, r := range roots {
		if err := s.CreateCARoot(t.Context(), r); err != nil {
			t.Fatalf("CreateCARoot(%q): %v", r.ID, err)
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

func listTokens(t *testing.T, s store.Store) []store.JoinToken {
	t.Helper()
	tokens, err := s.ListJoinTokens(t.Context())
	if err != nil {
		t.Fatalf("ListJoinTokens: %v", err)
	}
	return tokens
}

func listRoots(t *testing.T, s store.Store) []store.CARoot {
	t.Helper()
	roots, err := s.ListCARoots(t.Context())
	if err != nil {
		t.Fatalf("ListCARoots: %v", err)
	}
	return roots
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

		wantKind := w.Kind
		if wantKind == "" {
			wantKind = store.NodeKindStatic
		}
		checkField(t, where, "Kind", g.Kind, wantKind)
		checkField(t, where, "Zone", g.Zone, w.Zone)
		checkField(t, where, "InstanceType", g.InstanceType, w.InstanceType)
		checkField(t, where, "GPU", g.GPU, w.GPU)
		checkField(t, where, "Engine", g.Engine, w.Engine)
		if g.Spot != w.Spot {
			t.Errorf("%s: Spot: got %t, want %t", where, g.Spot, w.Spot)
		}
		checkLabels(t, where, g.Labels, w.Labels)
		checkTime(t, where+": CertNotAfter", g.CertNotAfter, w.CertNotAfter)
		checkField(t, where, "JoinTokenID", g.JoinTokenID, w.JoinTokenID)
	}
}

// checkTokens is checkKeys for join tokens.
func checkTokens(t *testing.T, got, want []store.JoinToken) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d join tokens %v, want %d %v",
			len(got), tokenIDs(got), len(want), tokenIDs(want))
	}
	for i := range want {
		checkToken(t, fmt.Sprintf("join token %d (%q)", i, want[i].ID), got[i], want[i])
	}
}

// checkToken reports every difference between got and want, prefixed by
// where.
func checkToken(t *testing.T, where string, got, want store.JoinToken) {
	t.Helper()
	checkField(t, where, "ID", got.ID, want.ID)
	if !bytes.Equal(got.Hash, want.Hash) {
		t.Errorf("%s: Hash: got %x, want %x", where, got.Hash, want.Hash)
	}
	checkModels(t, where, got.Models, want.Models)
	checkLabels(t, where, got.Labels, want.Labels)
	if got.MaxUses != want.MaxUses || got.Uses != want.Uses {
		t.Errorf("%s: got %d of %d uses, want %d of %d",
			where, got.Uses, got.MaxUses, want.Uses, want.MaxUses)
	}
	checkTime(t, where+": CreatedAt", got.CreatedAt, want.CreatedAt)
	checkTime(t, where+": ExpiresAt", got.ExpiresAt, want.ExpiresAt)
	checkTime(t, where+": RevokedAt", got.RevokedAt, want.RevokedAt)
}

// checkRoots is checkKeys for CA roots.
func checkRoots(t *testing.T, got, want []store.CARoot) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d CA roots %v, want %d %v",
			len(got), rootIDs(got), len(want), rootIDs(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		where := fmt.Sprintf("CA root %d (%q)", i, w.ID)
		checkField(t, where, "ID", g.ID, w.ID)
		if !bytes.Equal(g.CertPEM, w.CertPEM) {
			t.Errorf("%s: CertPEM: got %q, want %q", where, g.CertPEM, w.CertPEM)
		}
		if !bytes.Equal(g.SealedKey, w.SealedKey) {
			t.Errorf("%s: SealedKey: got %x, want %x", where, g.SealedKey, w.SealedKey)
		}
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

// checkLabels requires got to hold exactly want's pairs, and to be nil when
// want has none: an empty map need not round-trip.
func checkLabels(t *testing.T, where string, got, want map[string]string) {
	t.Helper()
	if (len(want) == 0 && got != nil) || !maps.Equal(got, want) {
		t.Errorf("%s: Labels: got %#v, want %#v", where, got, want)
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

func tokenIDs(tokens []store.JoinToken) []string {
	ids := make([]string, len(tokens))
	for i, tok := range tokens {
		ids[i] = tok.ID
	}
	return ids
}

func rootIDs(roots []store.CARoot) []string {
	ids := make([]string, len(roots))
	for i, r := range roots {
		ids[i] = r.ID
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
