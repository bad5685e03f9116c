//go:build unix

package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/logtest"
)

// childPID returns the PID the helper printed for the child started by
// its run number n (1-based), waiting for the line to be logged.
func childPID(t *testing.T, logs *logRecorder, n int) int {
	t.Helper()
	var pids []int
	waitFor(t, fmt.Sprintf("child %d's pid in the log", n), func() bool {
		pids = pids[:0]
		logs.Find(func(r logRecord) bool {
			if rest, ok := strings.CutPrefix(r.Attrs["line"], "helper child pid "); ok {
				if pid, err := strconv.Atoi(rest); err == nil && !slices.Contains(pids, pid) {
					pids = append(pids, pid)
				}
			}
			return false
		})
		return len(pids) >= n
	})
	return pids[n-1]
}

// runSupervisor runs s in the background and returns a function that
// stops it and waits for Run to return.
func runSupervisor(t *testing.T, s *Supervisor) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	var runErr error
	go func() {
		runErr = s.Run(ctx)
		close(done)
	}()
	stop = func() {
		t.Helper()
		cancel()
		select {
		case <-done:
			if runErr != nil {
				t.Errorf("Run: %v", runErr)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("Run did not return after its context ended")
		}
	}
	t.Cleanup(func() {
		cancel()
		<-done
	})
	return stop
}

func TestSupervisorRestartsAndStopsTheGroup(t *testing.T) {
	port := freePort(t)
	logs := logtest.New(t)
	s, err := NewSupervisor(SupervisorConfig{
		Command: helperCommand(t),
		Env: []string{"ENGINE_HELPER=serve", "ENGINE_PORT=" + port,
			"ENGINE_HELPER_CHILD=1", raceQuickExit},
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 50 * time.Millisecond,
		Logger:     slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{URL: "http://127.0.0.1:" + port, Models: []string{"m1", "m2"}}
	ready := func() bool { return c.Ready(context.Background()) == nil }

	stop := runSupervisor(t, s)
	waitFor(t, "the engine to be ready", ready)
	first := s.Status()
	if !first.Running || first.PID == 0 || first.Starts != 1 {
		t.Fatalf("status after start: got %+v, want running, a PID and 1 start", first)
	}
	child1 := childPID(t, logs, 1)
	waitFor(t, "the first child to start", func() bool {
		return logs.Count(output("stdout", "helper child started")) == 1
	})

	// A crash: the supervisor restarts the engine and kills what the
	// dead one left behind.
	if err := syscall.Kill(first.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a second start", func() bool { return s.Status().Starts == 2 })
	waitFor(t, "the restarted engine to be ready", ready)
	second := s.Status()
	if second.PID == first.PID || !second.Running {
		t.Fatalf("status after restart: got %+v, want running with a new PID", second)
	}
	if second.LastExit == nil || !strings.Contains(second.LastExit.Error(), "killed") {
		t.Errorf("LastExit after SIGKILL: got %v, want it to say killed", second.LastExit)
	}
	waitFor(t, "the first engine's child to be gone", func() bool { return processGone(child1) })
	child2 := childPID(t, logs, 2)
	waitFor(t, "the second child to start", func() bool {
		return logs.Count(output("stdout", "helper child started")) == 2
	})

	// A graceful stop reaches the whole group.
	stop()
	for _, pid := range []int{second.PID, child2} {
		if !processGone(pid) {
			t.Errorf("process %d still alive after Run returned", pid)
		}
	}
	if st := s.Status(); st.Running || st.PID != 0 {
		t.Errorf("status after stop: got %+v, want not running", st)
	}

	for _, want := range []struct{ stream, line string }{
		{"stdout", "helper listening on 127.0.0.1:" + port},
		{"stderr", "helper says hello on stderr"},
		{"stdout", "helper got SIGTERM"},
	} {
		if _, ok := logs.Find(output(want.stream, want.line)); !ok {
			t.Errorf("no %s line %q in the log", want.stream, want.line)
		}
	}
	if _, ok := logs.Find(func(r logRecord) bool {
		return r.Msg == "engine did not stop in time; killing it"
	}); ok {
		t.Error("engine was killed; want it to stop on SIGTERM")
	}
}

func TestSupervisorKillsAnEngineThatIgnoresSIGTERM(t *testing.T) {
	port := freePort(t)
	logs := logtest.New(t)
	s, err := NewSupervisor(SupervisorConfig{
		Command: helperCommand(t),
		Env: []string{"ENGINE_HELPER=serve", "ENGINE_PORT=" + port,
			"ENGINE_HELPER_IGNORE_TERM=1", raceQuickExit},
		StopTimeout: 200 * time.Millisecond,
		Logger:      slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	c := &Client{URL: "http://127.0.0.1:" + port}

	stop := runSupervisor(t, s)
	ready := func() bool { return c.Ready(context.Background()) == nil }
	waitFor(t, "the engine to be ready", ready)
	pid := s.Status().PID

	stop()
	if !processGone(pid) {
		t.Errorf("engine %d still alive after Run returned", pid)
	}
	if _, ok := logs.Find(func(r logRecord) bool {
		return r.Msg == "engine did not stop in time; killing it"
	}); !ok {
		t.Error("no log record of the engine being killed")
	}
}

func TestSupervisorBacksOffAnEngineThatKeepsExiting(t *testing.T) {
	logs := logtest.New(t)
	s, err := NewSupervisor(SupervisorConfig{
		Command:    "echo starting; exit 3",
		MinBackoff: time.Millisecond,
		MaxBackoff: 4 * time.Millisecond,
		Logger:     slog.New(logs),
	})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSupervisor(t, s)
	defer stop()
	waitFor(t, "three starts", func() bool { return s.Status().Starts >= 3 })

	// Read before stopping: the engine Run stops may end by SIGTERM.
	st := s.Status()
	if st.LastExit == nil || !strings.Contains(st.LastExit.Error(), "exit status 3") {
		t.Errorf("LastExit: got %v, want exit status 3", st.LastExit)
	}
	if _, ok := logs.Find(output("stdout", "starting")); !ok {
		t.Error("the engine's output is not in the log")
	}
}

func TestNextBackoff(t *testing.T) {
	cfg := &SupervisorConfig{MinBackoff: time.Second, MaxBackoff: time.Minute,
		ResetAfter: 10 * time.Minute}
	tests := []struct {
		name   string
		prev   time.Duration
		uptime time.Duration
		want   time.Duration
	}{
		{"first crash", 0, time.Second, time.Second},
		{"crash in a row doubles", time.Second, 3 * time.Second, 2 * time.Second},
		{"doubling again", 8 * time.Second, 0, 16 * time.Second},
		{"capped", 40 * time.Second, 0, time.Minute},
		{"stays capped", time.Minute, time.Minute, time.Minute},
		{"long uptime resets", time.Minute, 10 * time.Minute, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := nextBackoff(tt.prev, tt.uptime, cfg); got != tt.want {
				t.Errorf("nextBackoff(%v, %v): got %v, want %v", tt.prev, tt.uptime, got, tt.want)
			}
		})
	}
}

func TestNewSupervisorRejectsBadConfig(t *testing.T) {
	for _, cfg := range []SupervisorConfig{
		{},
		{Command: "true", StopTimeout: -time.Second},
	} {
		if _, err := NewSupervisor(cfg); err == nil {
			t.Errorf("NewSupervisor(%+v): got no error", cfg)
		}
	}
}

func TestSupervisorRunTwice(t *testing.T) {
	s, err := NewSupervisor(SupervisorConfig{Command: "sleep 60"})
	if err != nil {
		t.Fatal(err)
	}
	stop := runSupervisor(t, s)
	waitFor(t, "a start", func() bool { return s.Status().Running })
	if err := s.Run(context.Background()); err == nil {
		t.Error("second Run: got no error")
	}
	stop()
}
