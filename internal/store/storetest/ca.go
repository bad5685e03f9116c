package storetest

import (
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

func testCARootRoundTrip(t *testing.T, s store.Store) {
	// Sealed keys are binary: zero bytes anywhere must survive.
	sealed := make([]byte, 64)
	for i := range sealed {
		sealed[i] = byte(i * 53)
	}
	sealed[len(sealed)-1] = 0

	if got := listRoots(t, s); len(got) != 0 {
		t.Fatalf("ListCARoots on an empty store: got %v, want none", rootIDs(got))
	}

	// The rotation's new root is created after the old one; a tie on
	// CreatedAt falls back to the ID.
	old := store.CARoot{
		ID:        "root-2025",
		CertPEM:   newRoot("root-2025", 0).CertPEM,
		SealedKey: sealed,
		CreatedAt: t0.In(elsewhere),
	}
	next := newRoot("root-2026", 24*time.Hour)
	tie := newRoot("root-2024", 0)
	createRoots(t, s, next, old, tie)
	checkRoots(t, listRoots(t, s), []store.CARoot{tie, old, next})
}

func testCARootConflict(t *testing.T, s store.Store) {
	orig := newRoot("root", 0)
	createRoots(t, s, orig)
	createKeys(t, s, newKey("k1", 0))

	dup := newRoot("root", time.Second)
	dup.SealedKey = []byte("another key")
	err := s.CreateCARoot(t.Context(), dup)
	if !errorsIs(err, store.ErrConflict) {
		t.Fatalf("CreateCARoot(%q): got error %v, want %v", dup.ID, err, store.ErrConflict)
	}
	checkRoots(t, listRoots(t, s), []store.CARoot{orig})

	// Only the ID is unique: the same certificate under a new ID is the
	// caller's business.
	same := newRoot("other", time.Second)
	same.CertPEM = orig.CertPEM
	createRoots(t, s, same, newRoot("k1", 2*time.Second))
	checkRoots(t, listRoots(t, s), []store.CARoot{orig, same, newRoot("k1", 2*time.Second)})
}
