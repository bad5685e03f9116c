package engine

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/crosslogic/crosslogic/internal/logtest"
	"github.com/crosslogic/crosslogic/internal/sim"
)

// The test binary doubles as the engine the supervisor tests run: with
// ENGINE_HELPER set, TestMain runs a helper instead of the tests.
//
//	ENGINE_HELPER=serve  serve the simulator on 127.0.0.1:$ENGINE_PORT;
//	                     with ENGINE_HELPER_CHILD=1 also start a child
//	                     (ENGINE_HELPER=child) in the same process group;
//	                     with ENGINE_HELPER_IGNORE_TERM=1 ignore SIGTERM.
//	ENGINE_HELPER=child  print a line and block until killed.
func TestMain(m *testing.M) {
	switch os.Getenv("ENGINE_HELPER") {
	case "serve":
		helperServe()
	case "child":
		fmt.Println("helper child started")
		select {}
	default:
		os.Exit(m.Run())
	}
}

// helperServe is an engine: the simulator on a fixed port.
func helperServe() {
	sigs := make(chan os.Signal, 1)
	if os.Getenv("ENGINE_HELPER_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	} else {
		signal.Notify(sigs, syscall.SIGTERM)
	}

	if os.Getenv("ENGINE_HELPER_CHILD") == "1" {
		child := exec.Command(os.Args[0])
		child.Env = append(os.Environ(), "ENGINE_HELPER=child")
		child.Stdout = os.Stdout // holds the pipe, as vLLM's workers do
		if err := child.Start(); err != nil {
			fmt.Fprintln(os.Stderr, "helper: start child:", err)
			os.Exit(2)
		}
		fmt.Printf("helper child pid %d\n", child.Process.Pid)
	}

	s, err := sim.New(sim.Config{Models: []string{"m1", "m2"}})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	r, err := s.Start("127.0.0.1:" + os.Getenv("ENGINE_PORT"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	fmt.Println("helper listening on", r.Addr)
	fmt.Fprintln(os.Stderr, "helper says hello on stderr")

	<-sigs
	fmt.Println("helper got SIGTERM")
	r.Kill()
	os.Exit(0)
}

// raceQuickExit is added to a helper's environment: a binary built with
// -race otherwise waits a second before exiting, which would pass for a
// slow engine.
const raceQuickExit = "GORACE=atexit_sleep_ms=0"

// helperCommand returns a shell command line that runs the test binary.
func helperCommand(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return "exec " + shellQuote(exe)
}

func shellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// freePort returns a loopback port nobody listens on right now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// processGone reports whether pid has exited: it no longer exists or is
// a zombie nobody has reaped yet (an orphan in a container whose init
// does not reap).
func processGone(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	// The state follows the parenthesised command name.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && (s[i+2] == 'Z' || s[i+2] == 'X')
}

// logRecorder keeps the logs of a test.
type (
	logRecorder = logtest.Recorder
	logRecord   = logtest.Record
)

// output returns a matcher for an engine output line on stream that
// contains substr.
func output(stream, substr string) func(logRecord) bool {
	return func(r logRecord) bool {
		return r.Msg == "engine output" && r.Attrs["component"] == "engine" &&
			r.Attrs["stream"] == stream && strings.Contains(r.Attrs["line"], substr)
	}
}
