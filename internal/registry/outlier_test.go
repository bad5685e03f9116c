package registry_test

import (
	"sync"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/registry"
)

// outlierStep is one outcome reported to a node, and what must follow.
type outlierStep struct {
	at      time.Duration // since the test's epoch
	succeed bool          // Succeeded instead of Failed
	// For Failed: whether this failure ejects, and for how long.
	wantEjected  bool
	wantCooldown time.Duration
	// For Succeeded: whether it re-admits.
	wantReadmitted bool
	// Whether the node is ejected at `at` after the step.
	wantOut bool
}

// failStep is a failure at `at` that does not eject; out is whether the
// node is ejected after it, by an earlier ejection.
func failStep(at time.Duration, out bool) outlierStep {
	return outlierStep{at: at, wantOut: out}
}

// ejectStep is a failure at `at` that ejects the node for cooldown.
func ejectStep(at, cooldown time.Duration) outlierStep {
	return outlierStep{at: at, wantEjected: true, wantCooldown: cooldown, wantOut: true}
}

// succeedStep is a success at `at`; readmitted is whether it re-admits.
func succeedStep(at time.Duration, readmitted bool) outlierStep {
	return outlierStep{at: at, succeed: true, wantReadmitted: readmitted}
}

func TestOutlier(t *testing.T) {
	const s = time.Second
	tests := []struct {
		name    string
		outlier registry.Outlier
		steps   []outlierStep
	}{
		{
			name:    "consecutive failures eject",
			outlier: registry.Outlier{Consecutive: 3, BaseEjection: s, MaxEjection: 10 * s},
			steps:   []outlierStep{failStep(0, false), failStep(0, false), ejectStep(0, s)},
		},
		{
			name:    "a success in between resets the count",
			outlier: registry.Outlier{Consecutive: 3, BaseEjection: s, MaxEjection: 10 * s},
			steps: []outlierStep{failStep(0, false), failStep(0, false), succeedStep(0, false),
				failStep(0, false), failStep(0, false), ejectStep(0, s)},
		},
		{
			name:    "failures during the cooldown do not extend it",
			outlier: registry.Outlier{Consecutive: 2, BaseEjection: s, MaxEjection: 10 * s},
			steps: []outlierStep{failStep(0, false), ejectStep(0, s),
				failStep(s/2, true), failStep(s-1, true), ejectStep(s, 2*s)},
		},
		{
			name:    "the cooldown doubles per ejection in a row, up to the cap",
			outlier: registry.Outlier{Consecutive: 2, BaseEjection: s, MaxEjection: 5 * s},
			steps: []outlierStep{failStep(0, false), ejectStep(0, s),
				// Once the cooldown ends, the first failure ejects again.
				ejectStep(s, 2*s), ejectStep(3*s, 4*s), ejectStep(7*s, 5*s), ejectStep(12*s, 5*s)},
		},
		{
			name:    "a success re-admits and the next ejection starts over",
			outlier: registry.Outlier{Consecutive: 2, BaseEjection: s, MaxEjection: 10 * s},
			steps: []outlierStep{failStep(0, false), ejectStep(0, s), ejectStep(s, 2*s),
				succeedStep(3*s, true), succeedStep(3*s, false),
				failStep(4*s, false), ejectStep(4*s, s)},
		},
		{
			// A request sent before the ejection may still succeed during it.
			name:    "a success during the cooldown re-admits at once",
			outlier: registry.Outlier{Consecutive: 1, BaseEjection: s, MaxEjection: 10 * s},
			steps:   []outlierStep{ejectStep(0, s), succeedStep(s/2, true), ejectStep(s/2, s)},
		},
		{
			name:    "zero means 5 failures, 5s, capped at 2m",
			outlier: registry.Outlier{},
			steps: []outlierStep{failStep(0, false), failStep(0, false), failStep(0, false),
				failStep(0, false), ejectStep(0, 5*s), ejectStep(5*s, 10*s), ejectStep(15*s, 20*s),
				ejectStep(35*s, 40*s), ejectStep(75*s, 80*s), ejectStep(155*s, 2*time.Minute)},
		},
		{
			name:    "a base above the cap is capped",
			outlier: registry.Outlier{Consecutive: 1, BaseEjection: time.Hour, MaxEjection: s},
			steps:   []outlierStep{ejectStep(0, s)},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := outlierNode(t)
			epoch := time.Unix(1_700_000_000, 0)
			for i, st := range tt.steps {
				now := epoch.Add(st.at)
				if st.succeed {
					if got := n.Succeeded(); got != st.wantReadmitted {
						t.Fatalf("step %d: Succeeded() = %v, want %v", i, got, st.wantReadmitted)
					}
				} else {
					until, ejected := n.Failed(now, tt.outlier)
					if ejected != st.wantEjected {
						t.Fatalf("step %d at %v: Failed ejected = %v, want %v",
							i, st.at, ejected, st.wantEjected)
					}
					if ejected {
						if got := until.Sub(now); got != st.wantCooldown {
							t.Fatalf("step %d at %v: got cooldown %v, want %v",
								i, st.at, got, st.wantCooldown)
						}
					}
				}
				if got := n.Ejected(now); got != st.wantOut {
					t.Fatalf("step %d at %v: Ejected = %v, want %v", i, st.at, got, st.wantOut)
				}
			}
		})
	}
}

// TestOutlierLongEjectionStreak checks the cooldown of a node ejected
// many times in a row stays at the cap: the doubling must not overflow
// into a negative cooldown that leaves a failing node in rotation.
func TestOutlierLongEjectionStreak(t *testing.T) {
	for _, base := range []time.Duration{time.Second, 20 * time.Second, time.Minute} {
		t.Run(base.String(), func(t *testing.T) {
			o := registry.Outlier{Consecutive: 1, BaseEjection: base, MaxEjection: 2 * time.Minute}
			n := outlierNode(t)
			now := time.Unix(1_700_000_000, 0)
			for k := 1; k <= 70; k++ {
				until, ejected := n.Failed(now, o)
				if !ejected {
					t.Fatalf("ejection %d: not ejected, want ejected", k)
				}
				if got := until.Sub(now); got <= 0 || got > o.MaxEjection {
					t.Fatalf("ejection %d: got cooldown %v, want within (0, %v]",
						k, got, o.MaxEjection)
				}
				now = until
			}
		})
	}
}

// TestOutlierConcurrentFailures checks that a burst of failures reported
// at once, as when a node dies under load, ejects the node once, with
// the first cooldown.
func TestOutlierConcurrentFailures(t *testing.T) {
	const goroutines = 16
	o := registry.Outlier{Consecutive: 1, BaseEjection: time.Second, MaxEjection: time.Minute}
	now := time.Unix(1_700_000_000, 0)
	for round := range 200 {
		n := outlierNode(t)
		var (
			wg      sync.WaitGroup
			mu      sync.Mutex
			ejected int
			until   time.Time
		)
		start := make(chan struct{})
		for range goroutines {
			wg.Go(func() {
				<-start
				u, ok := n.Failed(now, o)
				if ok {
					mu.Lock()
					ejected++
					until = u
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if ejected != 1 {
			t.Fatalf("round %d: got %d ejections from one burst, want 1", round, ejected)
		}
		if got := until.Sub(now); got != o.BaseEjection {
			t.Fatalf("round %d: got cooldown %v, want %v", round, got, o.BaseEjection)
		}
	}
}

// outlierNode returns a fresh node, as the registry publishes it.
func outlierNode(t *testing.T) *registry.Node {
	t.Helper()
	r := registry.New(nil)
	add(t, r, spec("n", "m"))
	return node(t, r, "n")
}
