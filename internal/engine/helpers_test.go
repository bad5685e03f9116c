package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

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

// logRecorder is a slog.Handler that keeps every record, with the
// attributes of its logger, for tests to search.
type logRecorder struct {
	mu      *sync.Mutex
	records *[]logRecord
	attrs   []slog.Attr
}

type logRecord struct {
	Level slog.Level
	Msg   string
	Attrs map[string]string
}

func newLogRecorder() *logRecorder {
	return &logRecorder{mu: new(sync.Mutex), records: new([]logRecord)}
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }

func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	rec := logRecord{Level: r.Level, Msg: r.Message, Attrs: map[string]string{}}
	for _, a := range h.attrs {
		rec.Attrs[a.Key] = a.Value.String()
	}
	r.Attrs(func(a slog.Attr) bool {
		rec.Attrs[a.Key] = a.Value.String()
		return true
	})
	h.mu.Lock()
	*h.records = append(*h.records, rec)
	h.mu.Unlock()
	return nil
}

func (h *logRecorder) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := *h
	c.attrs = append(append([]slog.Attr(nil), h.attrs...), attrs...)
	return &c
}

func (h *logRecorder) WithGroup(string) slog.Handler { return h }

// find returns the first record for which match holds.
func (h *logRecorder) find(match func(logRecord) bool) (logRecord, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, r := range *h.records {
		if match(r) {
			return r, true
		}
	}
	return logRecord{}, false
}

// output returns a matcher for an engine output line on stream that
// contains substr.
func output(stream, substr string) func(logRecord) bool {
	return func(r logRecord) bool {
		return r.Msg == "engine output" && r.Attrs["component"] == "engine" &&
			r.Attrs["stream"] == stream && strings.Contains(r.Attrs["line"], substr)
	}
}

// logCount returns how many records match.
func logCount(h *logRecorder, match func(logRecord) bool) int {
	n := 0
	h.find(func(r logRecord) bool {
		if match(r) {
			n++
		}
		return false
	})
	return n
}
