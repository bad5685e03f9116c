package balancer_test

import (
	"fmt"
	"slices"
	"sync"
	"testing"

	"github.com/crosslogic/crosslogic/internal/balancer"
	"github.com/crosslogic/crosslogic/internal/registry"
)

func TestNew(t *testing.T) {
	tests := []struct {
		name    string
		want    string // the policy's type; "" for an error
		wantErr bool
	}{
		{"", "*balancer.PowerOfTwo", false},
		{balancer.NameLeastOutstanding, "*balancer.LeastOutstanding", false},
		{balancer.NameRoundRobin, "*balancer.RoundRobin", false},
		{"random", "", true},
		{"Round_Robin", "", true},
		{" round_robin", "", true},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("name=%q", tt.name), func(t *testing.T) {
			p, err := balancer.New(tt.name)
			if tt.wantErr {
				if err == nil {
					t.Fatalf("got %T, want an error", p)
				}
				if p != nil {
					t.Errorf("got policy %T with the error, want nil", p)
				}
				return
			}
			if err != nil {
				t.Fatalf("got error %v, want %s", err, tt.want)
			}
			if got := fmt.Sprintf("%T", p); got != tt.want {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	for _, n := range []int{1, 2, 5, 7} {
		t.Run(fmt.Sprintf("nodes=%d", n), func(t *testing.T) {
			nodes := readyNodes(t, n)
			var p balancer.RoundRobin

			// Consecutive picks take the nodes in turn.
			for i := range 2 * n {
				if got, want := p.Pick(nodes, nil), nodes[i%n]; got != want {
					t.Fatalf("pick %d: got %s, want %s", i, got.ID, want.ID)
				}
			}

			// Load does not matter to it: the spread stays exact.
			load(t, nodes, []int{5})
			got := counts(t, &p, nodes, 100*n)
			want := slices.Repeat([]int{100}, n)
			if !slices.Equal(got, want) {
				t.Errorf("picks per node: got %v, want %v", got, want)
			}
		})
	}
}

func TestLeastOutstanding(t *testing.T) {
	tests := []struct {
		name  string
		loads []int
		picks int
		want  []int // picks per node
	}{
		{"one node", []int{3}, 10, []int{10}},
		{"single least loaded", []int{3, 1, 2}, 30, []int{0, 30, 0}},
		{"idle node among busy ones", []int{4, 4, 0, 4}, 40, []int{0, 0, 40, 0}},
		{"idle ties spread evenly", []int{0, 0, 0, 0}, 400, []int{100, 100, 100, 100}},
		{"busy ties spread evenly", []int{2, 2, 2}, 300, []int{100, 100, 100}},
		{"ties among the least loaded spread", []int{2, 0, 2, 0}, 100,
			[]int{0, 50, 0, 50}},
		// A busy start node hands its turn to the first tie after it, so
		// uneven gaps between ties give uneven shares (here 120, 120, 60):
		// only the choice of the least loaded is checked.
		{"uneven ties all get picks", []int{3, 1, 5, 1, 1}, 300, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			nodes := readyNodes(t, len(tt.loads))
			load(t, nodes, tt.loads)
			got := counts(t, new(balancer.LeastOutstanding), nodes, tt.picks)
			if tt.want != nil {
				if !slices.Equal(got, tt.want) {
					t.Errorf("picks per node: got %v, want %v", got, tt.want)
				}
				return
			}
			least := slices.Min(tt.loads)
			for i, c := range got {
				if least := tt.loads[i] == least; least != (c > 0) {
					t.Errorf("node %d (load %d): got %d picks, want some only if least loaded",
						i, tt.loads[i], c)
				}
			}
		})
	}
}

// TestLeastOutstandingFollowsLoad holds every picked request open, as the
// gateway does while it proxies: the picks fill the nodes level by level.
func TestLeastOutstandingFollowsLoad(t *testing.T) {
	nodes := readyNodes(t, 4)
	load(t, nodes, []int{3, 0, 1, 2})
	var p balancer.LeastOutstanding

	var picked []*registry.Node
	t.Cleanup(func() {
		for _, n := range picked {
			n.Release()
		}
	})
	for range 10 {
		n := p.Pick(nodes, nil)
		n.Acquire()
		picked = append(picked, n)
	}
	// 6 in flight + 10 picked = 16 over 4 nodes: 4 each.
	for _, n := range nodes {
		if got := n.Inflight(); got != 4 {
			t.Errorf("node %s: got %d in flight, want 4", n.ID, got)
		}
	}
}

func TestPickDoesNotAllocate(t *testing.T) {
	for _, name := range []string{balancer.NameRoundRobin, balancer.NameLeastOutstanding} {
		for _, n := range []int{1, 10, 1000} {
			t.Run(fmt.Sprintf("%s/nodes=%d", name, n), func(t *testing.T) {
				p, err := balancer.New(name)
				if err != nil {
					t.Fatal(err)
				}
				nodes := readyNodes(t, n)
				// Every node busy, so least outstanding scans them all.
				load(t, nodes, slices.Repeat([]int{1}, n))
				if got := testing.AllocsPerRun(100, func() { p.Pick(nodes, nil) }); got != 0 {
					t.Errorf("got %v allocations per Pick, want 0", got)
				}
			})
		}
	}
}

// TestConcurrentPicks picks from many goroutines at once; run it with
// -race. Round robin's shared counter hands out every value once, so the
// spread stays exact.
func TestConcurrentPicks(t *testing.T) {
	const (
		goroutines = 8
		perG       = 500
		nodeCount  = 10
	)
	nodes := readyNodes(t, nodeCount)
	index := map[*registry.Node]int{}
	for i, n := range nodes {
		index[n] = i
	}

	for _, name := range []string{balancer.NameRoundRobin, balancer.NameLeastOutstanding} {
		t.Run(name, func(t *testing.T) {
			p, err := balancer.New(name)
			if err != nil {
				t.Fatal(err)
			}
			var mu sync.Mutex
			total := make([]int, nodeCount)
			var wg sync.WaitGroup
			for range goroutines {
				wg.Go(func() {
					local := make([]int, nodeCount)
					for range perG {
						n := p.Pick(nodes, nil)
						n.Acquire()
						local[index[n]]++
						n.Release()
					}
					mu.Lock()
					for i, c := range local {
						total[i] += c
					}
					mu.Unlock()
				})
			}
			wg.Wait()

			sum := 0
			for _, c := range total {
				sum += c
			}
			if sum != goroutines*perG {
				t.Errorf("got %d picks, want %d", sum, goroutines*perG)
			}
			if name == balancer.NameRoundRobin {
				want := slices.Repeat([]int{goroutines * perG / nodeCount}, nodeCount)
				if !slices.Equal(total, want) {
					t.Errorf("picks per node: got %v, want %v", total, want)
				}
			}
			for _, n := range nodes {
				if got := n.Inflight(); got != 0 {
					t.Errorf("node %s: %d in flight after every release", n.ID, got)
				}
			}
		})
	}
}
