package registry_test

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/crosslogic/crosslogic/internal/registry"
)

// errCheck is a failed health check.
var errCheck = errors.New("health check: status 500")

// spec returns a valid spec for a node serving models.
func spec(id string, models ...string) registry.Spec {
	return registry.Spec{ID: id, Endpoint: "http://10.0.0.1:8000", Models: models,
		Provider: "manual", Source: registry.SourceAdmin}
}

// add adds specs to r, failing the test on error.
func add(t testing.TB, r *registry.Registry, specs ...registry.Spec) {
	t.Helper()
	for _, s := range specs {
		if err := r.Add(s); err != nil {
			t.Fatalf("Add(%s): %v", s.ID, err)
		}
	}
}

// node returns the registry's current *Node for id.
func node(t testing.TB, r *registry.Registry, id string) *registry.Node {
	t.Helper()
	for _, n := range r.Nodes() {
		if n.ID == id {
			return n
		}
	}
	t.Fatalf("node %s not in the registry", id)
	return nil
}

// state returns id's state, failing the test when it is not known.
func state(t testing.TB, r *registry.Registry, id string) registry.State {
	t.Helper()
	st, ok := r.Get(id)
	if !ok {
		t.Fatalf("Get(%s): not found", id)
	}
	return st.State
}

// ids returns the IDs of nodes, in order.
func ids(nodes []*registry.Node) []string {
	out := make([]string, 0, len(nodes))
	for _, n := range nodes {
		out = append(out, n.ID)
	}
	return out
}

// readyIDs returns the IDs of the ready nodes for model in the current
// snapshot, or nil when no node serves it.
func readyIDs(r *registry.Registry, model string) []string {
	p := r.Snapshot().Pool([]byte(model))
	if p == nil {
		return nil
	}
	return ids(p.Ready)
}

func TestSpecValidate(t *testing.T) {
	tests := []struct {
		name    string
		mutate  func(*registry.Spec)
		wantErr string // "" for valid
	}{
		{"valid http", func(*registry.Spec) {}, ""},
		{"valid https with path", func(s *registry.Spec) {
			s.Endpoint = "https://engine.example.com/tenant-a/"
		}, ""},
		{"id of 128 characters", func(s *registry.Spec) { s.ID = strings.Repeat("a", 128) }, ""},
		{"several models", func(s *registry.Spec) { s.Models = []string{"a", "b"} }, ""},
		{"empty id", func(s *registry.Spec) { s.ID = "" }, "node id"},
		{"id of 129 characters", func(s *registry.Spec) { s.ID = strings.Repeat("a", 129) },
			"node id"},
		{"id with space", func(s *registry.Spec) { s.ID = "a b" }, "node id"},
		{"id with tab", func(s *registry.Spec) { s.ID = "a\tb" }, "node id"},
		{"id with newline", func(s *registry.Spec) { s.ID = "a\nb" }, "node id"},
		{"id with slash", func(s *registry.Spec) { s.ID = "a/b" }, "node id"},
		{"empty endpoint", func(s *registry.Spec) { s.Endpoint = "" }, "http or https URL"},
		{"endpoint without scheme", func(s *registry.Spec) { s.Endpoint = "10.0.0.1:8000" },
			"http or https URL"},
		{"endpoint ftp", func(s *registry.Spec) { s.Endpoint = "ftp://10.0.0.1" },
			"http or https URL"},
		{"endpoint without host", func(s *registry.Spec) { s.Endpoint = "http://" },
			"http or https URL"},
		{"endpoint unparsable", func(s *registry.Spec) { s.Endpoint = "http://[::1" },
			"http or https URL"},
		{"endpoint with query", func(s *registry.Spec) { s.Endpoint = "http://h/?a=1" },
			"query, fragment or user"},
		{"endpoint with fragment", func(s *registry.Spec) { s.Endpoint = "http://h/#x" },
			"query, fragment or user"},
		{"endpoint with user", func(s *registry.Spec) { s.Endpoint = "http://u:p@h" },
			"query, fragment or user"},
		{"no models", func(s *registry.Spec) { s.Models = nil }, "serves no model"},
		{"empty model name", func(s *registry.Spec) { s.Models = []string{"m", ""} },
			"empty model name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec("node-1", "m")
			tt.mutate(&s)
			err := s.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("got error %v, want nil", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("got error %v, want one mentioning %q", err, tt.wantErr)
			}
			// Add refuses exactly what Validate refuses.
			addErr := registry.New(nil).Add(s)
			if (addErr == nil) != (err == nil) {
				t.Errorf("Add: got error %v, want %v", addErr, err)
			}
		})
	}
}

func TestAddGetListRemove(t *testing.T) {
	r := registry.New(nil)
	add(t, r, registry.Spec{ID: "b", Endpoint: "https://10.0.0.2:8443/", Models: []string{"m"},
		Provider: "skypilot", Region: "us-east-1", UpstreamKey: "k2",
		Source: registry.SourceConfig})
	add(t, r, spec("a", "m", "n"), spec("c", "n"))

	if err := r.Add(spec("a", "other")); !errors.Is(err, registry.ErrExists) {
		t.Errorf("Add(duplicate): got %v, want %v", err, registry.ErrExists)
	}

	st, ok := r.Get("b")
	if !ok {
		t.Fatal("Get(b): not found")
	}
	want := registry.Status{ID: "b", Endpoint: "https://10.0.0.2:8443/", Models: []string{"m"},
		Provider: "skypilot", Region: "us-east-1", Source: registry.SourceConfig,
		State: registry.StateJoining, Since: st.Since}
	if !statusEqual(st, want) {
		t.Errorf("Get(b):\ngot  %+v\nwant %+v", st, want)
	}
	if st.Since.IsZero() {
		t.Error("Get(b): state_since is zero")
	}
	if _, ok := r.Get("zzz"); ok {
		t.Error("Get(unknown): found")
	}

	// The node as the request path sees it.
	n := node(t, r, "b")
	if n.BaseURL != "https://10.0.0.2:8443" || n.URL.Host != "10.0.0.2:8443" {
		t.Errorf("node b: got BaseURL %q host %q, want the endpoint without its slash",
			n.BaseURL, n.URL.Host)
	}
	if got := n.Authorization(); got != "Bearer k2" {
		t.Errorf("node b Authorization: got %q, want %q", got, "Bearer k2")
	}
	if got := node(t, r, "a").Authorization(); got != "" {
		t.Errorf("node a Authorization: got %q, want none", got)
	}

	var listed []string
	for _, s := range r.List() {
		listed = append(listed, s.ID)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(listed, want) {
		t.Errorf("List: got %v, want %v (ordered by ID)", listed, want)
	}
	if got := len(r.Nodes()); got != 3 {
		t.Errorf("Nodes: got %d, want 3", got)
	}

	if err := r.Remove("a"); err != nil {
		t.Fatalf("Remove(a): %v", err)
	}
	if _, ok := r.Get("a"); ok {
		t.Error("Get(a) after Remove: found")
	}
	if err := r.Remove("a"); !errors.Is(err, registry.ErrUnknownNode) {
		t.Errorf("Remove(a) again: got %v, want %v", err, registry.ErrUnknownNode)
	}
	if p := r.Snapshot().Pool([]byte("m")); p == nil || p.Known != 1 {
		t.Errorf("pool m after Remove(a): got %+v, want 1 node known", p)
	}

	// The ID is free again.
	add(t, r, spec("a", "m"))
}

func statusEqual(a, b registry.Status) bool {
	return a.ID == b.ID && a.Endpoint == b.Endpoint && slices.Equal(a.Models, b.Models) &&
		a.Provider == b.Provider && a.Region == b.Region && a.Source == b.Source &&
		a.State == b.State && a.Since.Equal(b.Since) && a.LastError == b.LastError &&
		a.Inflight == b.Inflight
}

func TestStatusIsACopy(t *testing.T) {
	r := registry.New(nil)
	add(t, r, spec("a", "m"))
	st, _ := r.Get("a")
	st.Models[0] = "changed"
	if got, _ := r.Get("a"); got.Models[0] != "m" {
		t.Errorf("models after changing a Status: got %v, want [m]", got.Models)
	}
}

func TestReportHealth(t *testing.T) {
	const (
		joining   = registry.StateJoining
		ready     = registry.StateReady
		unhealthy = registry.StateUnhealthy
	)
	type step struct {
		ok   bool           // outcome of the check
		want registry.State // state after it
	}
	okThen := func(w registry.State) step { return step{true, w} }
	failThen := func(w registry.State) step { return step{false, w} }

	tests := []struct {
		name      string
		threshold int
		steps     []step
	}{
		{"first success makes ready", 2, []step{okThen(ready)}},
		{"success keeps ready", 2, []step{okThen(ready), okThen(ready)}},
		{"joining failures count too", 2, []step{failThen(joining), failThen(unhealthy)}},
		{"ready survives fewer than threshold failures", 3,
			[]step{okThen(ready), failThen(ready), failThen(ready), failThen(unhealthy)}},
		{"threshold of one", 1, []step{okThen(ready), failThen(unhealthy)}},
		{"success resets the failure count", 2, []step{okThen(ready), failThen(ready),
			okThen(ready), failThen(ready), failThen(unhealthy)}},
		{"unhealthy back to ready on one success", 2, []step{okThen(ready), failThen(ready),
			failThen(unhealthy), failThen(unhealthy), okThen(ready)}},
		{"recovered node needs threshold failures again", 2, []step{failThen(joining),
			failThen(unhealthy), okThen(ready), failThen(ready), failThen(unhealthy)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := registry.New(nil)
			add(t, r, spec("n", "m"))
			n := node(t, r, "n")
			for i, s := range tt.steps {
				var err error
				if !s.ok {
					err = errCheck
				}
				r.ReportHealth(n, err, tt.threshold)

				st, _ := r.Get("n")
				if st.State != s.want {
					t.Fatalf("step %d (ok=%v): got state %s, want %s", i, s.ok, st.State, s.want)
				}
				wantErr := ""
				if !s.ok {
					wantErr = errCheck.Error()
				}
				if st.LastError != wantErr {
					t.Errorf("step %d: got last error %q, want %q", i, st.LastError, wantErr)
				}
				// The snapshot routes to the node exactly when it is ready.
				wantReady := []string{}
				if s.want == ready {
					wantReady = []string{"n"}
				}
				if got := readyIDs(r, "m"); !slices.Equal(got, wantReady) {
					t.Errorf("step %d: got ready %v, want %v", i, got, wantReady)
				}
			}
		})
	}
}

func TestReportHealthSinceChangesOnTransitionOnly(t *testing.T) {
	r := registry.New(nil)
	add(t, r, spec("n", "m"))
	n := node(t, r, "n")

	r.ReportHealth(n, nil, 2)
	first, _ := r.Get("n")
	snap := r.Snapshot()
	r.ReportHealth(n, nil, 2)
	r.ReportHealth(n, errCheck, 2) // one failure: still ready
	again, _ := r.Get("n")
	if !again.Since.Equal(first.Since) {
		t.Errorf("state_since: got %v, want %v (no transition)", again.Since, first.Since)
	}
	if r.Snapshot() != snap {
		t.Error("a report that changed no state published a new snapshot")
	}
}

func TestReportHealthIgnoresStaleNodes(t *testing.T) {
	t.Run("removed", func(t *testing.T) {
		r := registry.New(nil)
		add(t, r, spec("n", "m"))
		old := node(t, r, "n")
		if err := r.Remove("n"); err != nil {
			t.Fatal(err)
		}
		snap := r.Snapshot()
		r.ReportHealth(old, nil, 1)
		if _, ok := r.Get("n"); ok {
			t.Error("a report brought a removed node back")
		}
		if r.Snapshot() != snap {
			t.Error("a report about a removed node published a snapshot")
		}
		if p := r.Snapshot().Pool([]byte("m")); p != nil {
			t.Errorf("pool m: got %+v, want nil", p)
		}
	})
	t.Run("replaced", func(t *testing.T) {
		r := registry.New(nil)
		add(t, r, spec("n", "m"))
		old := node(t, r, "n")
		r.ReportHealth(old, nil, 1)
		if err := r.Remove("n"); err != nil {
			t.Fatal(err)
		}
		add(t, r, spec("n", "m"))

		r.ReportHealth(old, nil, 1)
		if got := state(t, r, "n"); got != registry.StateJoining {
			t.Errorf("replacement after a report about the old node: got %s, want %s",
				got, registry.StateJoining)
		}
		r.ReportHealth(old, errCheck, 1)
		if st, _ := r.Get("n"); st.State != registry.StateJoining || st.LastError != "" {
			t.Errorf("replacement after a failure of the old node: got %s %q, want joining",
				st.State, st.LastError)
		}

		r.ReportHealth(node(t, r, "n"), nil, 1)
		if got := state(t, r, "n"); got != registry.StateReady {
			t.Errorf("replacement after its own report: got %s, want %s", got,
				registry.StateReady)
		}
	})
}

func TestSnapshot(t *testing.T) {
	r := registry.New(nil)
	if got := r.Snapshot().ReadyModels(); len(got) != 0 {
		t.Errorf("empty registry ReadyModels: got %v, want none", got)
	}
	add(t, r,
		spec("c", "zeta", "alpha"),
		spec("a", "alpha"),
		spec("b", "alpha", "mid"),
		spec("d", "cold"), // never ready
		spec("e", "mid"),  // fails
	)
	for _, id := range []string{"c", "a", "b"} {
		r.ReportHealth(node(t, r, id), nil, 1)
	}
	r.ReportHealth(node(t, r, "e"), errCheck, 1)

	s := r.Snapshot()
	tests := []struct {
		model     string
		wantNil   bool
		wantKnown int
		wantReady []string
	}{
		{"alpha", false, 3, []string{"a", "b", "c"}},
		{"mid", false, 2, []string{"b"}},
		{"zeta", false, 1, []string{"c"}},
		{"cold", false, 1, []string{}},
		{"unknown", true, 0, nil},
		{"", true, 0, nil},
	}
	for _, tt := range tests {
		t.Run("model="+tt.model, func(t *testing.T) {
			p := s.Pool([]byte(tt.model))
			if tt.wantNil {
				if p != nil {
					t.Errorf("got %+v, want nil", p)
				}
				return
			}
			if p == nil {
				t.Fatal("got nil pool")
			}
			if p.Model != tt.model || p.Known != tt.wantKnown {
				t.Errorf("got model %q known %d, want %q known %d", p.Model, p.Known,
					tt.model, tt.wantKnown)
			}
			if got := ids(p.Ready); !slices.Equal(got, tt.wantReady) {
				t.Errorf("ready: got %v, want %v (ordered by ID)", got, tt.wantReady)
			}
		})
	}
	wantModels := []string{"alpha", "mid", "zeta"}
	if got := s.ReadyModels(); !slices.Equal(got, wantModels) {
		t.Errorf("ReadyModels: got %v, want %v", got, wantModels)
	}
}

func TestSnapshotPoolDoesNotAllocate(t *testing.T) {
	r := registry.New(nil)
	add(t, r, spec("a", "meta-llama/Llama-3.1-8B-Instruct"))
	s := r.Snapshot()
	model := []byte("meta-llama/Llama-3.1-8B-Instruct")
	if n := testing.AllocsPerRun(100, func() { _ = s.Pool(model) }); n != 0 {
		t.Errorf("Pool: got %v allocations, want 0", n)
	}
}

func TestSnapshotIsImmutable(t *testing.T) {
	r := registry.New(nil)
	add(t, r, spec("a", "m"), spec("b", "m", "n"))
	r.ReportHealth(node(t, r, "a"), nil, 1)
	r.ReportHealth(node(t, r, "b"), nil, 1)

	old := r.Snapshot()
	oldPool := old.Pool([]byte("m"))
	oldReady := slices.Clone(oldPool.Ready)
	wantModels := []string{"m", "n"}

	// Every kind of change after the snapshot was taken.
	r.ReportHealth(node(t, r, "a"), errCheck, 1)
	if err := r.Remove("b"); err != nil {
		t.Fatal(err)
	}
	add(t, r, spec("c", "m", "o"))
	r.ReportHealth(node(t, r, "c"), nil, 1)

	if old.Pool([]byte("m")) != oldPool {
		t.Error("old snapshot's pool m was replaced")
	}
	if oldPool.Known != 2 || !slices.Equal(oldPool.Ready, oldReady) {
		t.Errorf("old pool m: got known %d ready %v, want 2 and %v", oldPool.Known,
			ids(oldPool.Ready), ids(oldReady))
	}
	if p := old.Pool([]byte("o")); p != nil {
		t.Errorf("old snapshot gained pool o: %+v", p)
	}
	if got := old.ReadyModels(); !slices.Equal(got, wantModels) {
		t.Errorf("old ReadyModels: got %v, want %v", got, wantModels)
	}

	// The new snapshot has the changes.
	cur := r.Snapshot()
	if got := ids(cur.Pool([]byte("m")).Ready); !slices.Equal(got, []string{"c"}) {
		t.Errorf("new pool m: got ready %v, want [c]", got)
	}
	if got := cur.ReadyModels(); !slices.Equal(got, []string{"m", "o"}) {
		t.Errorf("new ReadyModels: got %v, want [m o]", got)
	}
}

func TestInflight(t *testing.T) {
	r := registry.New(nil)
	add(t, r, spec("a", "m"))
	n := node(t, r, "a")
	n.Acquire()
	n.Acquire()
	n.Release()
	if got := n.Inflight(); got != 1 {
		t.Errorf("Inflight: got %d, want 1", got)
	}
	if st, _ := r.Get("a"); st.Inflight != 1 {
		t.Errorf("Status.Inflight: got %d, want 1", st.Inflight)
	}
}

// TestConcurrentReadersAndWriters runs the request path's reads beside
// every kind of write; run it with -race. Readers check the snapshot's
// invariants, which a half-published change would break.
func TestConcurrentReadersAndWriters(t *testing.T) {
	r := registry.New(nil)
	const (
		writers    = 4
		readers    = 4
		iterations = 300
	)
	models := []string{"m0", "m1", "m2"}

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range iterations {
				id := fmt.Sprintf("w%d-n%d", w, i%5)
				s := spec(id, models[i%len(models)], models[(i+1)%len(models)])
				if err := r.Add(s); err != nil && !errors.Is(err, registry.ErrExists) {
					t.Errorf("Add: %v", err)
					return
				}
				for _, n := range r.Nodes() {
					var err error
					if i%3 == 0 {
						err = errCheck
					}
					r.ReportHealth(n, err, 2)
				}
				if i%4 == 3 {
					err := r.Remove(id)
					if err != nil && !errors.Is(err, registry.ErrUnknownNode) {
						t.Errorf("Remove: %v", err)
						return
					}
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for range iterations {
				s := r.Snapshot()
				for _, m := range models {
					p := s.Pool([]byte(m))
					if p == nil {
						continue
					}
					if len(p.Ready) > p.Known {
						t.Errorf("pool %s: %d ready of %d known", m, len(p.Ready), p.Known)
					}
					for i, n := range p.Ready {
						if !slices.Contains(n.Models, m) {
							t.Errorf("pool %s holds node %s serving %v", m, n.ID, n.Models)
						}
						if i > 0 && p.Ready[i-1].ID >= n.ID {
							t.Errorf("pool %s not ordered by ID: %v", m, ids(p.Ready))
						}
						n.Acquire()
						n.Release()
					}
				}
				if rm := s.ReadyModels(); !slices.IsSorted(rm) {
					t.Errorf("ReadyModels not sorted: %v", rm)
				}
				for _, st := range r.List() {
					_, _ = r.Get(st.ID)
				}
			}
		})
	}
	wg.Wait()

	// Every node left ends in a state its last report explains.
	for _, st := range r.List() {
		switch st.State {
		case registry.StateJoining, registry.StateReady, registry.StateUnhealthy:
		default:
			t.Errorf("node %s: unexpected state %q", st.ID, st.State)
		}
		if st.Inflight != 0 {
			t.Errorf("node %s: inflight %d after every Acquire was released", st.ID,
				st.Inflight)
		}
	}
}
