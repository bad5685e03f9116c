// Package balancer chooses which node serves a request, among the ready
// nodes of the requested model.
//
// A Policy is consulted on every request, so its contract is strict: it
// must be safe for concurrent use, lock-free, and must not allocate.
package balancer

import (
	"fmt"
	"sync/atomic"

	"github.com/crosslogic/crosslogic/internal/registry"
)

// Policy picks a node for a request.
type Policy interface {
	// Pick returns one of nodes, which is never empty. It may read the
	// nodes' in-flight counters but must not retain the slice, block or
	// allocate.
	Pick(nodes []*registry.Node) *registry.Node
}

// Names of the built-in policies, as written in the config.
const (
	NameRoundRobin       = "round_robin"
	NameLeastOutstanding = "least_outstanding"
)

// New returns the policy with the given name; "" means least_outstanding.
func New(name string) (Policy, error) {
	switch name {
	case NameRoundRobin:
		return new(RoundRobin), nil
	case "", NameLeastOutstanding:
		return new(LeastOutstanding), nil
	default:
		return nil, fmt.Errorf("balancer: unknown policy %q (want %s or %s)",
			name, NameRoundRobin, NameLeastOutstanding)
	}
}

var (
	_ Policy = (*RoundRobin)(nil)
	_ Policy = (*LeastOutstanding)(nil)
)

// RoundRobin takes the nodes in turn. One counter is shared by all models:
// each model still sees an even spread, since consecutive picks for it
// land on consecutive counter values modulo interleaving.
type RoundRobin struct {
	next atomic.Uint64
}

// Pick implements Policy.
func (p *RoundRobin) Pick(nodes []*registry.Node) *registry.Node {
	i := p.next.Add(1) - 1
	return nodes[i%uint64(len(nodes))]
}

// LeastOutstanding picks the node with the fewest requests open from this
// gateway. It scans from a rotating start so that ties, common when the
// fleet is idle, are spread instead of all landing on the first node.
type LeastOutstanding struct {
	next atomic.Uint64
}

// Pick implements Policy.
func (p *LeastOutstanding) Pick(nodes []*registry.Node) *registry.Node {
	n := uint64(len(nodes))
	start := (p.next.Add(1) - 1) % n
	best := nodes[start]
	bestLoad := best.Inflight()
	for i := uint64(1); i < n && bestLoad > 0; i++ {
		c := nodes[(start+i)%n]
		if l := c.Inflight(); l < bestLoad {
			best, bestLoad = c, l
		}
	}
	return best
}
