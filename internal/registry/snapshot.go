package registry

// Snapshot is an immutable view of the registry for the request path.
// Nothing reachable from it changes after it is published, except the
// nodes' in-flight counters, which are atomic.
type Snapshot struct {
	pools map[string]*Pool
	ready []string
}

// Pool is the set of nodes serving one model.
type Pool struct {
	// Model is the model name.
	Model string
	// Known is how many nodes serve the model, in any state.
	Known int
	// Ready are the nodes that may receive traffic, ordered by ID.
	Ready []*Node
}

func buildSnapshot(nodes []*Node) *Snapshot {
	s := &Snapshot{pools: map[string]*Pool{}}
	for _, n := range nodes {
		for _, m := range n.Models {
			p := s.pools[m]
			if p == nil {
				p = &Pool{Model: m}
				s.pools[m] = p
			}
			p.Known++
		}
	}
	return s
}

// Pool returns the pool for a model, or nil when no node serves it in any
// state. It does not allocate.
func (s *Snapshot) Pool(model []byte) *Pool {
	return s.pools[string(model)]
}

// ReadyModels returns the models with at least one ready node, sorted. The
// slice is shared: callers must not modify it.
func (s *Snapshot) ReadyModels() []string { return s.ready }
