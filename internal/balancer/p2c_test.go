package balancer_test

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/registry"
)

// freshPool returns the registry and the ready nodes of a new pool of n,
// ordered by ID, for tests that change a node's load or outlier state
// and so cannot share readyNodes' pools.
func freshPool(t *testing.T, n int) (*registry.Registry, []*registry.Node) {
	t.Helper()
	r := registry.New(nil)
	for i := range n {
		if err := r.Add(registry.Spec{ID: fmt.Sprintf("node-%04d", i),
			Endpoint: "http://127.0.0.1:1", Models: []string{model}}); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range r.Nodes() {
		r.ReportHealth(node, nil, 1)
	}
	p := r.Snapshot().Pool([]byte(model))
	if p == nil || len(p.Ready) != n {
		t.Fatalf("got pool %+v, want %d ready nodes", p, n)
	}
	return r, p.Ready
}

// nodeLoad is what one node carries in a test: requests this gateway has
// open to it, and what its agent last reported.
type nodeLoad struct {
	inflight int
	reported registry.Load
}

// setLoads applies loads to nodes and undoes the in-flight part when the
// test ends.
func setLoads(t *testing.T, r *registry.Registry, nodes []*registry.Node, loads []nodeLoad) {
	t.Helper()
	for i, l := range loads {
		for range l.inflight {
			nodes[i].Acquire()
		}
		if err := r.Heartbeat(nodes[i].ID, "ready", "", l.reported); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() {
		for i, l := range loads {
			for range l.inflight {
				nodes[i].Release()
			}
		}
	})
}

// ejectNodes ejects nodes at now until the test ends.
func ejectNodes(t *testing.T, now time.Time, nodes ...*registry.Node) {
	t.Helper()
	for _, n := range nodes {
		if _, ok := n.Failed(now, registry.Outlier{Consecutive: 1, BaseEjection: time.Hour}); !ok {
			t.Fatalf("node %s: not ejected", n.ID)
		}
	}
	t.Cleanup(func() {
		for _, n := range nodes {
			n.Succeeded()
		}
	})
}

func TestScore(t *testing.T) {
	tests := []struct {
		name string
		load nodeLoad
		want float64
	}{
		{"idle", nodeLoad{}, 0},
		{"in flight only", nodeLoad{inflight: 3}, 3},
		{"engine's running count when larger", nodeLoad{inflight: 1,
			reported: registry.Load{Running: 5}}, 5},
		{"own in-flight count when larger", nodeLoad{inflight: 7,
			reported: registry.Load{Running: 5}}, 7},
		{"queued requests weigh twice", nodeLoad{reported: registry.Load{Waiting: 3}}, 6},
		{"a full KV cache weighs four", nodeLoad{reported: registry.Load{KVCacheUsage: 1}}, 4},
		{"everything", nodeLoad{inflight: 2, reported: registry.Load{Running: 1, Waiting: 1,
			KVCacheUsage: 0.5}}, 6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, nodes := freshPool(t, 1)
			setLoads(t, r, nodes, []nodeLoad{tt.load})
			if got := balancer.Score(nodes[0]); got != tt.want {
				t.Errorf("got score %v, want %v", got, tt.want)
			}
		})
	}
}

// TestPowerOfTwoPrefersLessLoaded checks that of two nodes the less
// loaded one is always taken, whether the load is this gateway's own or
// reported by the node's agent. With two nodes both are always sampled.
func TestPowerOfTwoPrefersLessLoaded(t *testing.T) {
	tests := []struct {
		name  string
		loads []nodeLoad
		want  int // index of the node every pick must return
	}{
		{"fewer in flight", []nodeLoad{{inflight: 5}, {inflight: 0}}, 1},
		{"fewer in flight, other order", []nodeLoad{{inflight: 1}, {inflight: 4}}, 0},
		{"reported running", []nodeLoad{{reported: registry.Load{Running: 8}}, {}}, 1},
		{"reported queue outweighs running",
			[]nodeLoad{{reported: registry.Load{Running: 5}},
				{reported: registry.Load{Waiting: 3}}}, 0},
		{"full KV cache outweighs three requests",
			[]nodeLoad{{inflight: 3}, {reported: registry.Load{KVCacheUsage: 1}}}, 0},
		{"own in-flight count beats a stale report",
			[]nodeLoad{{inflight: 6, reported: registry.Load{Running: 1}},
				{reported: registry.Load{Running: 4}}}, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, nodes := freshPool(t, len(tt.loads))
			setLoads(t, r, nodes, tt.loads)
			p := &balancer.PowerOfTwo{}
			want := make([]int, len(nodes))
			want[tt.want] = 500
			if got := counts(t, p, nodes, 500); !slices.Equal(got, want) {
				t.Errorf("picks per node: got %v, want %v", got, want)
			}
		})
	}
}

// TestPowerOfTwoSpreadsLoad checks that, among many nodes, picks avoid the
// busiest ones: a node is picked only when it is the less loaded of the
// two sampled, so the most loaded node is never picked.
func TestPowerOfTwoSpreadsLoad(t *testing.T) {
	r, nodes := freshPool(t, 5)
	setLoads(t, r, nodes, []nodeLoad{{inflight: 0}, {inflight: 1}, {inflight: 2},
		{inflight: 3}, {inflight: 9}})
	got := counts(t, &balancer.PowerOfTwo{}, nodes, 2000)
	if got[4] != 0 {
		t.Errorf("busiest node picked %d times, want 0 (picks %v)", got[4], got)
	}
	for i := 1; i < len(got); i++ {
		if got[i] > got[i-1] {
			t.Errorf("picks per node %v: want fewer picks for busier nodes", got)
		}
	}
}

// TestPickHonoursExclusionAndEjection runs every policy over pools where
// some nodes are excluded or ejected.
func TestPickHonoursExclusionAndEjection(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	tests := []struct {
		name     string
		n        int
		exclude  []int
		ejected  []int
		loads    []int // in flight; ejected or excluded nodes get the lowest
		wantNil  bool
		wantOnly []int // every pick is one of these
	}{
		{name: "excluded never returned", n: 5, exclude: []int{0, 2},
			loads: []int{0, 3, 0, 3, 3}, wantOnly: []int{1, 3, 4}},
		{name: "all excluded gives nil", n: 3, exclude: []int{0, 1, 2}, wantNil: true},
		{name: "one node, excluded", n: 1, exclude: []int{0}, wantNil: true},
		{name: "ejected avoided though idle", n: 4, ejected: []int{0, 1},
			loads: []int{0, 0, 5, 5}, wantOnly: []int{2, 3}},
		{name: "all ejected: one of them anyway", n: 3, ejected: []int{0, 1, 2},
			wantOnly: []int{0, 1, 2}},
		{name: "ejected rather than excluded", n: 3, exclude: []int{0, 1}, ejected: []int{2},
			wantOnly: []int{2}},
		{name: "only one node left", n: 6, exclude: []int{0, 1, 2}, ejected: []int{4, 5},
			wantOnly: []int{3}},
	}
	policies := []string{balancer.NamePowerOfTwo, balancer.NameRoundRobin,
		balancer.NameLeastOutstanding}
	for _, tt := range tests {
		for _, name := range policies {
			t.Run(tt.name+"/"+name, func(t *testing.T) {
				_, nodes := freshPool(t, tt.n)
				load(t, nodes, tt.loads)
				var ej []*registry.Node
				for _, i := range tt.ejected {
					ej = append(ej, nodes[i])
				}
				ejectNodes(t, now, ej...)
				req := &balancer.Request{Now: now, Affinity: 42}
				for _, i := range tt.exclude {
					req.Exclude = append(req.Exclude, nodes[i])
				}

				p, err := balancer.New(name)
				if err != nil {
					t.Fatal(err)
				}
				for range 300 {
					got := p.Pick(nodes, req)
					switch {
					case tt.wantNil && got != nil:
						t.Fatalf("got %s, want nil", got.ID)
					case tt.wantNil:
						continue
					case got == nil:
						t.Fatal("got nil, want a node")
					case !slices.Contains(tt.wantOnly, slices.Index(nodes, got)):
						t.Fatalf("got %s, want one of nodes %v", got.ID, tt.wantOnly)
					}
				}
			})
		}
	}
}

// TestPowerOfTwoAffinity checks that requests with the same affinity hash
// go to the same node while its load stays within AffinitySlack of the
// alternative, and leave it when it is much busier.
func TestPowerOfTwoAffinity(t *testing.T) {
	const slack = 4
	tests := []struct {
		name         string
		prefLoad     int  // in flight on the affine node
		wantAffinity bool // every pick goes to the affine node
	}{
		{"idle", 0, true},
		{"busier within the slack", slack, true},
		{"busier beyond the slack", slack + 1, false},
		{"much busier", 20, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, nodes := freshPool(t, 5)
			p := &balancer.PowerOfTwo{AffinitySlack: slack}
			req := &balancer.Request{Affinity: 0x9e3779b97f4a7c15}
			pref := p.Pick(nodes, req)
			pi := slices.Index(nodes, pref)
			loads := make([]int, len(nodes))
			loads[pi] = tt.prefLoad
			load(t, nodes, loads)

			got := 0
			for range 500 {
				if p.Pick(nodes, req) == pref {
					got++
				}
			}
			if want := 500; tt.wantAffinity && got != want {
				t.Errorf("got %d of %d picks on the affine node, want all", got, want)
			}
			if !tt.wantAffinity && got != 0 {
				t.Errorf("got %d picks on the affine node (load %d), want none", got, tt.prefLoad)
			}
		})
	}

	t.Run("no affinity when slack is zero", func(t *testing.T) {
		_, nodes := freshPool(t, 5)
		req := &balancer.Request{Affinity: 0x9e3779b97f4a7c15}
		seen := map[*registry.Node]bool{}
		p := &balancer.PowerOfTwo{}
		for range 500 {
			seen[p.Pick(nodes, req)] = true
		}
		if len(seen) < 2 {
			t.Errorf("got picks on %d node, want a spread", len(seen))
		}
	})

	t.Run("an ejected affine node is left", func(t *testing.T) {
		now := time.Unix(1_700_000_000, 0)
		_, nodes := freshPool(t, 5)
		p := &balancer.PowerOfTwo{AffinitySlack: slack}
		req := &balancer.Request{Affinity: 0x9e3779b97f4a7c15, Now: now}
		pref := p.Pick(nodes, req)
		ejectNodes(t, now, pref)
		for range 500 {
			if got := p.Pick(nodes, req); got == pref {
				t.Fatalf("got the ejected affine node %s, want another", got.ID)
			}
		}
	})
}

// TestAffinitySpreadsKeys checks that distinct affinity hashes land on
// every node, about evenly.
func TestAffinitySpreadsKeys(t *testing.T) {
	const n, keys = 5, 5000
	_, nodes := freshPool(t, n)
	p := &balancer.PowerOfTwo{AffinitySlack: balancer.DefaultAffinitySlack}
	per := make([]int, n)
	for k := range keys {
		got := p.Pick(nodes, &balancer.Request{Affinity: affinityKey(k)})
		per[slices.Index(nodes, got)]++
	}
	for i, c := range per {
		if c < keys/n/2 || c > keys/n*2 {
			t.Errorf("node %d: got %d keys of %d, want about %d (all: %v)", i, c, keys,
				keys/n, per)
		}
	}
}

// TestAffinityMovesFewKeys checks the consistent hash behind affinity:
// when a node joins, only about 1/(n+1) of the keys move, all of them to
// the new node.
func TestAffinityMovesFewKeys(t *testing.T) {
	const keys = 4000
	for _, n := range []int{1, 2, 4, 9, 31} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			// IDs sort in creation order, so the new node comes last, as a
			// node with a later ID would.
			_, all := freshPool(t, n+1)
			before, after := all[:n], all
			p := &balancer.PowerOfTwo{AffinitySlack: balancer.DefaultAffinitySlack}

			moved := 0
			for k := range keys {
				req := &balancer.Request{Affinity: affinityKey(k)}
				a, b := p.Pick(before, req), p.Pick(after, req)
				if a == b {
					continue
				}
				moved++
				if b != all[n] {
					t.Fatalf("key %d moved from %s to %s, want to the new node %s",
						k, a.ID, b.ID, all[n].ID)
				}
			}
			// Expected keys/(n+1); allow twice that and a little.
			if limit := 2*keys/(n+1) + keys/50; moved > limit {
				t.Errorf("got %d of %d keys moved, want at most %d (about %d)", moved, keys,
					limit, keys/(n+1))
			}
			if moved == 0 {
				t.Error("got no key moved to the new node, want about 1/(n+1)")
			}
		})
	}
}

// affinityKey is the k-th test affinity hash: well mixed and never zero,
// like the gateway's.
func affinityKey(k int) uint64 {
	x := uint64(k+1) * 0x9e3779b97f4a7c15
	x ^= x >> 31
	return x | 1
}

// TestPickWithExcludeDoesNotAllocate extends the allocation check to the
// retry path: a request with nodes excluded, an affinity hash and a clock.
func TestPickWithExcludeDoesNotAllocate(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	for _, name := range []string{balancer.NamePowerOfTwo, balancer.NameRoundRobin,
		balancer.NameLeastOutstanding} {
		for _, n := range []int{1, 3, 100} {
			t.Run(fmt.Sprintf("%s/nodes=%d", name, n), func(t *testing.T) {
				p, err := balancer.New(name)
				if err != nil {
					t.Fatal(err)
				}
				nodes := readyNodes(t, n)
				load(t, nodes, slices.Repeat([]int{1}, n))
				req := &balancer.Request{Affinity: 7, Now: now,
					Exclude: nodes[:min(2, n)]}
				if got := testing.AllocsPerRun(200, func() { sink = p.Pick(nodes, req) }); got != 0 {
					t.Errorf("got %v allocations per Pick, want 0", got)
				}
			})
		}
	}
}
