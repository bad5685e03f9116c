package balancer_test

import (
	"fmt"
	"slices"
	"testing"

	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/registry"
)

// sink keeps the compiler from discarding picks.
var sink *registry.Node

// BenchmarkPick measures one pick among a model's ready nodes. Every node
// carries one request in flight, so least outstanding scans the whole
// slice: its worst case. An idle fleet stops at the first node.
func BenchmarkPick(b *testing.B) {
	for _, name := range []string{balancer.NamePowerOfTwo, balancer.NameRoundRobin,
		balancer.NameLeastOutstanding} {
		for _, n := range []int{10, 1000} {
			b.Run(fmt.Sprintf("%s/nodes=%d", name, n), func(b *testing.B) {
				p, err := balancer.New(name)
				if err != nil {
					b.Fatal(err)
				}
				nodes := readyNodes(b, n)
				load(b, nodes, slices.Repeat([]int{1}, n))
				b.ReportAllocs()
				for b.Loop() {
					sink = p.Pick(nodes, nil)
				}
			})
		}
	}
}
