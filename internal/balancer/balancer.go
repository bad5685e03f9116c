// Package balancer chooses which node serves a request, among the ready
// nodes of the requested model.
//
// A Policy is consulted on every request, so its contract is strict: it
// must be safe for concurrent use, lock-free, and must not allocate.
package balancer

import (
	"fmt"
	"math/rand/v2"
	"sync/atomic"
	"time"

	"github.com/crosslogic/crosslogic/internal/registry"
)

// Request is what a policy knows of the request it places.
type Request struct {
	// Affinity is a hash of what the request shares with others (a
	// session ID, a prompt prefix); zero means none. Policies that honour
	// it send equal hashes to the same node while its load allows, so the
	// engine's prefix cache is reused.
	Affinity uint64
	// Exclude lists nodes already tried for this request; a policy never
	// returns one of them. It is short (the retries so far).
	Exclude []*registry.Node
	// Now is the time ejections are checked against.
	Now time.Time
}

// Policy picks a node for a request.
type Policy interface {
	// Pick returns one of nodes. It never returns an excluded node, and
	// prefers nodes that are not ejected; when every remaining node is
	// ejected it returns one of them anyway, since trying a node that
	// failed recently beats refusing the request. It returns nil only
	// when every node is excluded. It may read the nodes' counters and
	// load but must not retain the slice, block or allocate.
	Pick(nodes []*registry.Node, req *Request) *registry.Node
}

// Names of the built-in policies, as written in the config.
const (
	NamePowerOfTwo       = "power_of_two"
	NameRoundRobin       = "round_robin"
	NameLeastOutstanding = "least_outstanding"
)

// New returns the policy with the given name; "" means power_of_two.
func New(name string) (Policy, error) {
	switch name {
	case "", NamePowerOfTwo:
		return &PowerOfTwo{AffinitySlack: DefaultAffinitySlack}, nil
	case NameRoundRobin:
		return new(RoundRobin), nil
	case NameLeastOutstanding:
		return new(LeastOutstanding), nil
	default:
		return nil, fmt.Errorf("balancer: unknown policy %q (want %s, %s or %s)",
			name, NamePowerOfTwo, NameRoundRobin, NameLeastOutstanding)
	}
}

var (
	_ Policy = (*PowerOfTwo)(nil)
	_ Policy = (*RoundRobin)(nil)
	_ Policy = (*LeastOutstanding)(nil)
)

// usable reports whether n may be picked at all, and whether it is ejected.
func usable(n *registry.Node, req *Request) (ok, ejected bool) {
	if req != nil {
		for _, x := range req.Exclude {
			if x == n {
				return false, false
			}
		}
		return true, n.Ejected(req.Now)
	}
	return true, false
}

// scanFrom returns the first node from start on (wrapping) that is usable
// and not ejected, else the first usable one, else nil.
func scanFrom(nodes []*registry.Node, start int, req *Request) *registry.Node {
	var fallback *registry.Node
	for i, k := 0, start; i < len(nodes); i++ {
		n := nodes[k]
		if ok, ejected := usable(n, req); ok {
			if !ejected {
				return n
			}
			if fallback == nil {
				fallback = n
			}
		}
		if k++; k == len(nodes) {
			k = 0
		}
	}
	return fallback
}

// RoundRobin takes the nodes in turn. One counter is shared by all models,
// so each model still sees an even spread.
type RoundRobin struct {
	next atomic.Uint64
}

// Pick implements Policy.
func (p *RoundRobin) Pick(nodes []*registry.Node, req *Request) *registry.Node {
	if len(nodes) == 0 {
		return nil
	}
	return scanFrom(nodes, int((p.next.Add(1)-1)%uint64(len(nodes))), req)
}

// LeastOutstanding picks the node with the fewest requests open from this
// gateway. It scans from a rotating start so that ties, common when the
// fleet is idle, are spread instead of all landing on the first node. It
// costs a scan of every node; PowerOfTwo does not.
type LeastOutstanding struct {
	next atomic.Uint64
}

// Pick implements Policy.
func (p *LeastOutstanding) Pick(nodes []*registry.Node, req *Request) *registry.Node {
	if len(nodes) == 0 {
		return nil
	}
	var best, fallback *registry.Node
	var bestLoad int64
	for i, k := 0, int((p.next.Add(1)-1)%uint64(len(nodes))); i < len(nodes); i++ {
		n := nodes[k]
		if k++; k == len(nodes) {
			k = 0
		}
		ok, ejected := usable(n, req)
		switch {
		case !ok:
			continue
		case ejected:
			if fallback == nil {
				fallback = n
			}
			continue
		}
		if l := n.Inflight(); best == nil || l < bestLoad {
			best, bestLoad = n, l
			if l == 0 {
				break // nothing beats an idle node
			}
		}
	}
	if best == nil {
		return fallback
	}
	return best
}

// DefaultAffinitySlack is how much busier, in score units (about one
// request each), an affine node may be than the alternative before
// affinity gives way to load.
const DefaultAffinitySlack = 4

// PowerOfTwo samples two nodes at random and takes the less loaded one
// ("the power of two choices"): nearly the balance of a full
// least-loaded scan, at constant cost, and without every gateway herding
// onto the same idle node. A request with an affinity hash goes to the
// node the hash names while that node's score is within AffinitySlack of
// the sampled choice.
//
// A node's score combines what this gateway knows now with what the node
// last reported (see Score).
type PowerOfTwo struct {
	// AffinitySlack bounds how much busier the affine node may be; zero
	// disables affinity.
	AffinitySlack float64
}

// Score is a node's load as PowerOfTwo ranks it; lower is better. It is
// the larger of this gateway's open requests and the engine's running
// count (the engine's includes other gateways' requests, this gateway's is
// fresher), plus twice the engine's queue, since a queued request waits
// for a whole generation, plus four times the KV-cache use, since an
// engine near a full cache preempts and recomputes.
func Score(n *registry.Node) float64 {
	l := n.Load()
	return max(float64(n.Inflight()), l.Running) + 2*l.Waiting + 4*l.KVCacheUsage
}

// samples bounds the random draws before falling back to a scan, so a pool
// where most nodes are excluded or ejected still costs little.
const samples = 4

// Pick implements Policy.
func (p *PowerOfTwo) Pick(nodes []*registry.Node, req *Request) *registry.Node {
	n := len(nodes)
	switch n {
	case 0:
		return nil
	case 1:
		return scanFrom(nodes, 0, req)
	}

	var a, b *registry.Node
	ai := 0 // a's index
	for range samples {
		// The second choice is drawn among the other nodes, never the
		// first again: in a pool of two, both are always compared.
		var i int
		if a == nil {
			i = rand.IntN(n)
		} else if i = rand.IntN(n - 1); i >= ai {
			i++
		}
		c := nodes[i]
		if ok, ejected := usable(c, req); !ok || ejected {
			continue
		}
		if a == nil {
			a, ai = c, i
			continue
		}
		b = c
		break
	}
	switch {
	case a == nil:
		return scanFrom(nodes, rand.IntN(n), req)
	case b != nil && Score(b) < Score(a):
		a = b
	}

	if req != nil && req.Affinity != 0 && p.AffinitySlack > 0 {
		if pref := nodes[jumpHash(req.Affinity, n)]; pref != a {
			if ok, ejected := usable(pref, req); ok && !ejected &&
				Score(pref) <= Score(a)+p.AffinitySlack {
				return pref
			}
		}
	}
	return a
}

// jumpHash maps key to one of n buckets such that when n grows by one,
// only 1/n of the keys move (Lamping and Veach, "A Fast, Minimal Memory,
// Consistent Hash Algorithm", 2014). Nodes are in ID order, so a node
// joining or leaving moves few affinities.
func jumpHash(key uint64, n int) int {
	var b, j int64 = -1, 0
	for j < int64(n) {
		b = j
		key = key*2862933555777941757 + 1
		j = int64(float64(b+1) * (float64(int64(1)<<31) / float64((key>>33)+1)))
	}
	return int(b)
}
