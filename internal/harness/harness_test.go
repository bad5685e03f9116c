package harness_test

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"strings"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/harness"
)

// small is a run small enough for a test, large enough for every
// scenario's failure to land.
var small = harness.Options{Requests: 60, Concurrency: 8, Timeout: 20 * time.Second}

// TestScenarios runs each scenario small and checks its report, beyond
// its own expectations, against what the scenario is meant to show.
func TestScenarios(t *testing.T) {
	tests := []struct {
		scenario string
		check    func(t *testing.T, r harness.Result)
	}{
		{"kill", func(t *testing.T, r harness.Result) {
			if r.Failed != 0 || r.Mismatches != 0 || r.Succeeded != r.Sent {
				t.Errorf("got %d failed and %d mismatches, want none", r.Failed, r.Mismatches)
			}
			if r.FailedOver+r.Retried == 0 {
				t.Error("got no retry and no failover, want the kill to cost some")
			}
		}},
		{"hang", func(t *testing.T, r harness.Result) {
			if r.Failed != 0 || r.Mismatches != 0 {
				t.Errorf("got %d failed and %d mismatches, want none", r.Failed, r.Mismatches)
			}
			if r.Retried == 0 || r.FailedOver == 0 {
				t.Errorf("got %d retries and %d failovers, want some of each", r.Retried,
					r.FailedOver)
			}
		}},
		{"errors", func(t *testing.T, r harness.Result) {
			if r.Failed == 0 || r.Ejections == 0 || r.Readmissions == 0 {
				t.Errorf("got %d failed, %d ejections, %d re-admissions, want some of each",
					r.Failed, r.Ejections, r.Readmissions)
			}
			if r.Succeeded+r.Failed != r.Sent || r.Mismatches != 0 {
				t.Errorf("got %d succeeded, %d failed and %d mismatches of %d, want no mismatch",
					r.Succeeded, r.Failed, r.Mismatches, r.Sent)
			}
		}},
		{"disconnect", func(t *testing.T, r harness.Result) {
			if r.UpstreamCancelled == 0 {
				t.Error("got no request cancelled at the nodes, want the abandoned ones")
			}
			if r.Ejections != 0 || r.Retried != 0 || r.FailedOver != 0 {
				t.Errorf("got %d ejections, %d retries, %d failovers, want none",
					r.Ejections, r.Retried, r.FailedOver)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			o := small
			o.Scenarios = []string{tt.scenario}
			rep, err := harness.Run(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Scenarios) != 1 {
				t.Fatalf("got %d results, want 1", len(rep.Scenarios))
			}
			r := rep.Scenarios[0]
			if r.Scenario != tt.scenario || r.Sent != small.Requests {
				t.Errorf("got scenario %q with %d sent, want %q with %d", r.Scenario, r.Sent,
					tt.scenario, small.Requests)
			}
			if !r.OK() || !rep.OK() {
				t.Errorf("got problems %q, want none", r.Problems)
			}
			tt.check(t, r)
			if t.Failed() {
				var b bytes.Buffer
				_ = rep.WriteTable(&b)
				t.Logf("report:\n%s", b.String())
			}
		})
	}
}

func TestRunUnknownScenario(t *testing.T) {
	_, err := harness.Run(context.Background(), harness.Options{Scenarios: []string{"flood"}})
	if err == nil || !strings.Contains(err.Error(), `"flood"`) {
		t.Errorf("got error %v, want one naming the unknown scenario", err)
	}
}

func TestCommand(t *testing.T) {
	tests := []struct {
		name     string
		args     []string
		wantErr  bool
		wantFlag bool   // the error is a flag error
		want     string // in the output
	}{
		{name: "table", args: []string{"-scenario", "disconnect", "-requests", "8",
			"-concurrency", "4"}, want: "disconnect"},
		{name: "json", args: []string{"-scenario", "disconnect", "-requests", "8",
			"-o", "json"}, want: `"upstream_cancelled"`},
		{name: "unknown scenario", args: []string{"-scenario", "flood"}, wantErr: true},
		{name: "unknown format", args: []string{"-o", "yaml"}, wantErr: true},
		{name: "unknown flag", args: []string{"-nodes", "3"}, wantErr: true, wantFlag: true},
		{name: "help", args: []string{"-h"}, wantErr: true, wantFlag: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := harness.Command(context.Background(), tt.args, &stdout, &stderr)
			if (err != nil) != tt.wantErr {
				t.Fatalf("got error %v, want error %v (stderr %s)", err, tt.wantErr, &stderr)
			}
			if tt.wantFlag && !strings.Contains(stderr.String(), "-scenario") {
				t.Errorf("got stderr %q, want the flags' usage", &stderr)
			}
			if !strings.Contains(stdout.String(), tt.want) {
				t.Errorf("got output %q, want it to contain %q", &stdout, tt.want)
			}
			if tt.name == "json" {
				var rep harness.Report
				if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil || !rep.OK() {
					t.Errorf("got report %+v (error %v), want a passing one", rep, err)
				}
			}
			if tt.name == "help" && err != flag.ErrHelp {
				t.Errorf("got error %v, want flag.ErrHelp", err)
			}
		})
	}
}
