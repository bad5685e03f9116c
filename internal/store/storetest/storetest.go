// Package storetest is the conformance suite for implementations of
// store.Store. Every implementation runs the same suite from its own tests:
//
//	func TestConformance(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store {
//			s, err := sqlite.Open(t.Context(), t.TempDir())
//			if err != nil {
//				t.Fatal(err)
//			}
//			return s
//		})
//	}
//
// Beyond what the store.Store documentation says, the suite holds
// implementations to these readings of it:
//
//   - A record comes back exactly as it went in, except that times are in
//     UTC and may lose precision below a millisecond. In particular a nil
//     Models stays nil and an empty one stays empty, and Hash, CertPEM and
//     SealedKey keep every byte. Two exceptions: empty Labels come back
//     nil, and a node's empty Kind comes back as store.NodeKindStatic.
//   - A call that fails with ErrConflict, ErrNotFound or ErrTokenUnusable
//     changes nothing.
//   - A call made with a cancelled context fails with an error that wraps
//     context.Canceled, and changes nothing.
package storetest

import (
	"testing"

	"github.com/crosslogic/crosslogic/internal/store"
)

// Run runs the conformance suite against the stores made by open, one
// subtest at a time. open is called once per subtest and must return a new,
// empty store; Run closes it when the subtest ends, so open's own cleanup
// (registered with t.Cleanup, such as dropping a database) runs after Close.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	t.Helper()

	tests := []struct {
		name string
		run  func(t *testing.T, s store.Store)
	}{
		{"KeyRoundTrip", testKeyRoundTrip},
		{"KeyConflict", testKeyConflict},
		{"RevokeKey", testRevokeKey},
		{"RevokeKeyNotFound", testRevokeKeyNotFound},
		{"NodeRoundTrip", testNodeRoundTrip},
		{"NodeConflict", testNodeConflict},
		{"DeleteNode", testDeleteNode},
		{"DeleteNodeNotFound", testDeleteNodeNotFound},
		{"UpdateNodeCert", testUpdateNodeCert},
		{"UpdateNodeCertNotFound", testUpdateNodeCertNotFound},
		{"TokenRoundTrip", testTokenRoundTrip},
		{"TokenConflict", testTokenConflict},
		{"TokenInvalid", testTokenInvalid},
		{"GetJoinTokenNotFound", testGetJoinTokenNotFound},
		{"RevokeJoinToken", testRevokeJoinToken},
		{"RevokeJoinTokenNotFound", testRevokeJoinTokenNotFound},
		{"JoinNode", testJoinNode},
		{"JoinNodeRefused", testJoinNodeRefused},
		{"JoinNodeConflict", testJoinNodeConflict},
		{"JoinNodeConcurrent", testJoinNodeConcurrent},
		{"CARootRoundTrip", testCARootRoundTrip},
		{"CARootConflict", testCARootConflict},
		{"TimePrecision", testTimePrecision},
		{"Ordering", testOrdering},
		{"CallerOwnsSlices", testCallerOwnsSlices},
		{"Concurrent", testConcurrent},
		{"CancelledContext", testCancelledContext},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := open(t)
			t.Cleanup(func() {
				if err := s.Close(); err != nil {
					t.Errorf("Close: %v", err)
				}
			})
			tt.run(t, s)
		})
	}
}
