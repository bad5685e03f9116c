package storetest

import (
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/store"
)

func testNodeRoundTrip(t *testing.T, s store.Store) {
	tests := []struct {
		name string
		node store.Node
	}{
		{"all fields", store.Node{
			ID:          "full",
			Endpoint:    "https://10.0.0.5:8443",
			Models:      []string{"meta-llama/Llama-3.1-8B-Instruct", "llama-8b"},
			Provider:    "skypilot",
			Region:      "us-east-1",
			UpstreamKey: "upstream-bearer-token",
			CreatedAt:   t0.In(elsewhere),
		}},
		{"agent, all fields", agentNode("agent", 3*time.Second)},
		{"static kind given", func() store.Node {
			n := newNode("static", 4*time.Second)
			n.Kind = store.NodeKindStatic
			return n
		}()},
		{"empty labels read back as nil", func() store.Node {
			n := newNode("empty-labels", 5*time.Second)
			n.Labels = map[string]string{}
			return n
		}()},
		{"nil models, no region, no upstream key", func() store.Node {
			n := newNode("minimal", time.Second)
			n.Models = nil
			return n
		}()},
		{"empty models", func() store.Node {
			n := newNode("empty-models", 2*time.Second)
			n.Models = []string{}
			return n
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			createNodes(t, s, tt.node)
			got, ok := findNode(listNodes(t, s), tt.node.ID)
			if !ok {
				t.Fatalf("ListNodes: node %q missing after CreateNode", tt.node.ID)
			}
			checkNodes(t, []store.Node{got}, []store.Node{tt.node})
		})
	}
}

func testNodeConflict(t *testing.T, s store.Store) {
	orig := newNode("n1", 0)
	createNodes(t, s, orig)
	createKeys(t, s, newKey("k1", 0))
	want := []store.Node{orig}

	tests := []struct {
		name    string
		node    store.Node
		wantErr error
	}{
		{"same ID", func() store.Node {
			n := newNode("n1", time.Second)
			n.Endpoint = "https://elsewhere.example"
			return n
		}(), store.ErrConflict},
		{"ID of a key", newNode("k1", time.Second), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateNode(t.Context(), tt.node)
			if !errorsIs(err, tt.wantErr) {
				t.Fatalf("CreateNode(%q): got error %v, want %v",
					tt.node.ID, err, tt.wantErr)
			}
			if err == nil {
				want = append(want, tt.node)
			}
			checkNodes(t, listNodes(t, s), want)
		})
	}
}

func testDeleteNode(t *testing.T, s store.Store) {
	a, b, c := newNode("a", 0), newNode("b", time.Second), newNode("c", 2*time.Second)
	createNodes(t, s, a, b, c)

	if err := s.DeleteNode(t.Context(), "b"); err != nil {
		t.Fatalf("DeleteNode: %v", err)
	}
	checkNodes(t, listNodes(t, s), []store.Node{a, c})

	err := s.DeleteNode(t.Context(), "b")
	if !errorsIs(err, store.ErrNotFound) {
		t.Fatalf("DeleteNode again: got error %v, want %v", err, store.ErrNotFound)
	}

	// The ID is free again once the node is gone.
	createNodes(t, s, b)
	checkNodes(t, listNodes(t, s), []store.Node{a, b, c})
}

func testDeleteNodeNotFound(t *testing.T, s store.Store) {
	n := newNode("n1", 0)
	createNodes(t, s, n)
	createKeys(t, s, newKey("k1", 0))

	tests := []struct {
		name string
		id   string
	}{
		{"unknown ID", "nope"},
		{"empty ID", ""},
		{"ID of a key", "k1"},
		{"ID differing in case", "N1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.DeleteNode(t.Context(), tt.id)
			if !errorsIs(err, store.ErrNotFound) {
				t.Fatalf("DeleteNode(%q): got error %v, want %v", tt.id, err, store.ErrNotFound)
			}
			checkNodes(t, listNodes(t, s), []store.Node{n})
		})
	}
}

func testUpdateNodeCert(t *testing.T, s store.Store) {
	a, b := agentNode("a", 0), agentNode("b", time.Second)
	createNodes(t, s, a, b)

	steps := []struct {
		name     string
		notAfter time.Time
	}{
		{"first certificate", t0.Add(8 * time.Hour).In(elsewhere)},
		{"renewed", t0.Add(13 * time.Hour)},
		{"cleared", time.Time{}},
	}
	for _, step := range steps {
		t.Run(step.name, func(t *testing.T) {
			if err := s.UpdateNodeCert(t.Context(), "a", step.notAfter); err != nil {
				t.Fatalf("UpdateNodeCert: %v", err)
			}
			a.CertNotAfter = step.notAfter
			checkNodes(t, listNodes(t, s), []store.Node{a, b})
		})
	}
}

func testUpdateNodeCertNotFound(t *testing.T, s store.Store) {
	n := newNode("n1", 0)
	createNodes(t, s, n)
	createKeys(t, s, newKey("k1", 0))
	createTokens(t, s, newToken("jt1", 0))

	tests := []struct {
		name string
		id   string
	}{
		{"unknown ID", "nope"},
		{"empty ID", ""},
		{"ID of a key", "k1"},
		{"ID of a join token", "jt1"},
		{"ID differing in case", "N1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.UpdateNodeCert(t.Context(), tt.id, t0.Add(time.Hour))
			if !errorsIs(err, store.ErrNotFound) {
				t.Fatalf("UpdateNodeCert(%q): got error %v, want %v",
					tt.id, err, store.ErrNotFound)
			}
			checkNodes(t, listNodes(t, s), []store.Node{n})
		})
	}
}

// agentNode returns a node as an agent joins it: with every field set.
func agentNode(id string, offset time.Duration) store.Node {
	return store.Node{
		ID:           id,
		Endpoint:     "https://203.0.113.7:8443",
		Models:       []string{"meta-llama/Llama-3.1-8B-Instruct"},
		Provider:     "aws",
		Region:       "us-east-1",
		UpstreamKey:  "",
		CreatedAt:    t0.Add(offset).In(elsewhere),
		Kind:         store.NodeKindAgent,
		Zone:         "us-east-1a",
		InstanceType: "g5.xlarge",
		GPU:          "1x A10G",
		Engine:       "vllm",
		Spot:         true,
		Labels:       map[string]string{"team": "search", "tier": "bulk", "ünïcode": "✓"},
		CertNotAfter: t0.Add(offset + 8*time.Hour),
		JoinTokenID:  "jt_" + id,
	}
}

func findNode(nodes []store.Node, id string) (store.Node, bool) {
	for _, n := range nodes {
		if n.ID == id {
			return n, true
		}
	}
	return store.Node{}, false
}
