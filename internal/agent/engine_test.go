package agent

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/crosslogic/crosslogic/internal/sim"
)

// TestMain lets the test binary double as an engine for the agent to
// supervise: with AGENT_TEST_ENGINE=1 it serves the simulator on
// 127.0.0.1:$AGENT_TEST_ENGINE_PORT until SIGTERM.
func TestMain(m *testing.M) {
	if os.Getenv("AGENT_TEST_ENGINE") == "1" {
		os.Exit(serveTestEngine())
	}
	os.Exit(m.Run())
}

func serveTestEngine() int {
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM)
	s, err := sim.New(sim.Config{Models: []string{model}})
	var r *sim.Running
	if err == nil {
		r, err = s.Start("127.0.0.1:" + os.Getenv("AGENT_TEST_ENGINE_PORT"))
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "test engine:", err)
		return 2
	}
	fmt.Println("test engine listening on", r.Addr)
	fmt.Println("test engine sees the join token:", os.Getenv("TEST_JOIN_TOKEN") != "")
	<-sigs
	fmt.Println("test engine stopping")
	r.Kill()
	return 0
}

func TestSupervisedEngine(t *testing.T) {
	e := newEnv(t, sim.Config{})
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()

	t.Setenv("TEST_JOIN_TOKEN", e.cp.token) // as CROSSLOGIC_JOIN_TOKEN would be
	cfg := e.config(t)
	cfg.EngineURL = ""
	cfg.EnginePort = port
	// GORACE: a -race binary otherwise lingers a second at exit.
	cfg.EngineCmd = "AGENT_TEST_ENGINE=1 AGENT_TEST_ENGINE_PORT=" + strconv.Itoa(port) +
		" GORACE=atexit_sleep_ms=0 exec '" + strings.ReplaceAll(exe, "'", `'\''`) + "'"
	ra := start(t, cfg).waitReady(t)

	waitFor(t, "the engine's word on the join token", func() bool {
		return e.logs.HasAttr("engine output", "line", "test engine sees the join token")
	})
	if e.logs.HasAttr("engine output", "line", "test engine sees the join token: true") {
		t.Error("the join token reached the engine's environment")
	}

	pid := ra.supervisor.Status().PID
	if pid == 0 {
		t.Fatal("no engine process")
	}
	waitFor(t, "the engine's output in the log", func() bool {
		return e.logs.HasAttr("engine output", "line", "test engine listening on")
	})

	if err := ra.stop(t); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("engine %d still exists after Run returned (kill: %v)", pid, err)
	}
	if !e.logs.Has("engine stopped") {
		t.Error("no log record of the engine stopping")
	}
}
