package balancer_test

import (
	"fmt"
	"sync"
	"testing"

	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/registry"
)

// model is the one model every test node serves.
const model = "m"

// readyNodes returns n ready nodes, ordered by ID, as a snapshot's pool
// holds them. Nodes are only made by a registry, so the helper declares
// them in one and reports each healthy. Nothing ever dials the endpoint.
//
// Every change republishes the registry's snapshot, so building n nodes
// costs O(n² log n): the nodes of each size are built once and shared.
// Tests leave them as they found them, with nothing in flight.
func readyNodes(tb testing.TB, n int) []*registry.Node {
	tb.Helper()
	builtMu.Lock()
	defer builtMu.Unlock()
	if nodes, ok := built[n]; ok {
		return nodes
	}
	nodes := buildReadyNodes(tb, n)
	built[n] = nodes
	return nodes
}

var (
	builtMu sync.Mutex
	built   = map[int][]*registry.Node{} // by size; guarded by builtMu
)

func buildReadyNodes(tb testing.TB, n int) []*registry.Node {
	tb.Helper()
	r := registry.New(nil)
	for i := range n {
		if err := r.Add(registry.Spec{ID: fmt.Sprintf("node-%04d", i),
			Endpoint: "http://127.0.0.1:1", Models: []string{model}}); err != nil {
			tb.Fatal(err)
		}
	}
	for _, node := range r.Nodes() {
		r.ReportHealth(node, nil, 1)
	}
	p := r.Snapshot().Pool([]byte(model))
	if p == nil || len(p.Ready) != n {
		tb.Fatalf("got pool %+v, want %d ready nodes", p, n)
	}
	return p.Ready
}

// load makes node i carry loads[i] requests in flight, and releases them
// when the test ends.
func load(tb testing.TB, nodes []*registry.Node, loads []int) {
	tb.Helper()
	for i, l := range loads {
		for range l {
			nodes[i].Acquire()
		}
	}
	tb.Cleanup(func() {
		for i, l := range loads {
			for range l {
				nodes[i].Release()
			}
		}
	})
}

// counts picks k times and returns how often each node index was chosen.
func counts(tb testing.TB, p interface {
	Pick([]*registry.Node, *balancer.Request) *registry.Node
}, nodes []*registry.Node, k int) []int {
	tb.Helper()
	index := make(map[*registry.Node]int, len(nodes))
	for i, n := range nodes {
		index[n] = i
	}
	out := make([]int, len(nodes))
	for range k {
		i, ok := index[p.Pick(nodes, nil)]
		if !ok {
			tb.Fatal("Pick returned a node not in the slice")
		}
		out[i]++
	}
	return out
}
