package sim_test

import (
	"flag"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/sim"
)

func TestNewRejectsBadConfig(t *testing.T) {
	ok := []string{"m"}
	tests := []struct {
		name string
		cfg  sim.Config
		want string // a substring of the error
	}{
		{"no models", sim.Config{}, "no model"},
		{"empty model", sim.Config{Models: []string{"m", " "}}, "empty model"},
		{"duplicate model", sim.Config{Models: []string{"m", "m"}}, "duplicate"},
		{"negative ttft", sim.Config{Models: ok, TimeToFirstToken: -1}, "time to first"},
		{"negative tbt", sim.Config{Models: ok, TimeBetweenTokens: -1}, "between"},
		{"negative output", sim.Config{Models: ok, OutputTokens: -1}, "output"},
		{"negative seqs", sim.Config{Models: ok, MaxNumSeqs: -1}, "seqs"},
		{"negative len", sim.Config{Models: ok, MaxModelLen: -1}, "model len"},
		{"negative dims", sim.Config{Models: ok, EmbeddingDims: -1}, "dims"},
		{"rate above 1", sim.Config{Models: ok, Faults: sim.Faults{BreakRate: 2}}, "break rate"},
		{"NaN rate", sim.Config{Models: ok, Faults: sim.Faults{HangRate: math.NaN()}},
			"hang rate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := sim.New(tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("got error %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	s, err := sim.New(sim.Config{Models: []string{"m"}})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config()
	if c.OutputTokens != sim.DefaultOutputTokens || c.EmbeddingDims != sim.DefaultEmbeddingDims ||
		c.MaxModelLen != sim.DefaultMaxModelLen || c.Logger == nil {
		t.Errorf("got %+v, want the defaults filled in", c)
	}
}

func TestRegisterFlags(t *testing.T) {
	tests := []struct {
		name string
		base sim.Config
		args []string
		want sim.Config
	}{{
		name: "defaults kept",
		base: sim.Config{Models: []string{"default"}, OutputTokens: 8},
		want: sim.Config{Models: []string{"default"}, OutputTokens: 8},
	}, {
		name: "everything set",
		base: sim.Config{Models: []string{"default"}},
		args: []string{
			"-served-model-name", "a, b", "--served-model-name=c",
			"-api-key", "k", "-time-to-first-token", "50ms", "-time-between-tokens", "5ms",
			"-output-tokens", "32", "-max-num-seqs", "4", "-max-model-len", "2048",
			"-embedding-dims", "8", "-fault-seed", "7", "-error-rate", "0.1",
			"-break-rate", "0.2", "-break-after", "3", "-hang-rate", "0.3", "-unhealthy",
		},
		want: sim.Config{
			Models: []string{"a", "b", "c"}, APIKey: "k",
			TimeToFirstToken: 50 * time.Millisecond, TimeBetweenTokens: 5 * time.Millisecond,
			OutputTokens: 32, MaxNumSeqs: 4, MaxModelLen: 2048, EmbeddingDims: 8, Seed: 7,
			Faults: sim.Faults{ErrorRate: 0.1, BreakRate: 0.2, BreakAfter: 3, HangRate: 0.3,
				Unhealthy: true},
		},
	}}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := flag.NewFlagSet("sim", flag.ContinueOnError)
			got := tt.base
			got.RegisterFlags(fs)
			if err := fs.Parse(tt.args); err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}
