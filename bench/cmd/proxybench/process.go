package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat.
// It is 100 on every Linux architecture Go runs on; reading it would
// take sysconf(3), which the standard library does not offer.
const clockTicks = 100

// proc is a child process: a proxy or a simulator. It runs in its own
// process group so that stopping it also stops the workers it forked.
type proc struct {
	name string
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // Wait's result; read after done is closed
}

// startProc starts argv with its output in dir/name.log.
func startProc(dir, name string, env []string, argv ...string) (*proc, error) {
	logf, err := os.Create(filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		logf.Close()
		close(p.done)
	}()
	return p, nil
}

// pid returns the process ID of the process started.
func (p *proc) pid() int { return p.cmd.Process.Pid }

// exited reports whether the process has exited.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM to the process group, and SIGKILL after five
// seconds if anything is left.
func (p *proc) stop() {
	if p.exited() {
		return
	}
	pgid := -p.pid()
	_ = syscall.Kill(pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(pgid, syscall.SIGKILL)
		<-p.done
	}
}

// logTail returns the end of the process's log, for error messages.
func (p *proc) logTail(dir string) string {
	b, _ := os.ReadFile(filepath.Join(dir, p.name+".log"))
	if len(b) > 800 {
		b = b[len(b)-800:]
	}
	return strings.TrimSpace(string(b))
}

// usage is what a process tree has consumed so far.
type usage struct {
	cpu time.Duration // user + system time of every live process
	rss int64         // resident set, bytes, summed over the tree
	hwm int64         // peak resident set (VmHWM), bytes, summed
}

// usage reads /proc for the process and all its descendants: nginx's
// workers are children of its master. Summing RSS over processes
// counts pages they share more than once, so for a multi-process proxy
// it is an upper bound.
func (p *proc) usage() usage {
	var u usage
	for _, pid := range descendants(p.pid()) {
		if st, err := readStat(pid); err == nil {
			u.cpu += st
		}
		rss, hwm := readMemory(pid)
		u.rss += rss
		u.hwm += hwm
	}
	return u
}

// descendants returns root and every process below it.
func descendants(root int) []int {
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if ppid, err := readPPID(pid); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// statFields returns the fields of /proc/PID/stat after the command
// name, which may itself hold spaces and parentheses: fields[0] is the
// state (field 3 in proc(5)).
func statFields(pid int) ([]string, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return nil, err
	}
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return nil, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		return nil, errors.New("short stat")
	}
	return f, nil
}

func readPPID(pid int) (int, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// readStat returns the user and system CPU time of pid (proc(5) fields
// 14 and 15).
func readStat(pid int) (time.Duration, error) {
	f, err := statFields(pid)
	if err != nil {
		return 0, err
	}
	ut, err1 := strconv.ParseInt(f[11], 10, 64)
	st, err2 := strconv.ParseInt(f[12], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		return 0, err
	}
	return time.Duration(ut+st) * time.Second / clockTicks, nil
}

// readMemory returns VmRSS and VmHWM of pid in bytes.
func readMemory(pid int) (rss, hwm int64) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, 0
	}
	for line := range strings.Lines(string(b)) {
		k, v, ok := strings.Cut(line, ":")
		if !ok || (k != "VmRSS" && k != "VmHWM") {
			continue
		}
		kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
		if k == "VmRSS" {
			rss = kb << 10
		} else {
			hwm = kb << 10
		}
	}
	return rss, hwm
}

// rssSampler records the largest resident set of a process tree while
// a step runs. VmHWM alone cannot give a per-step peak: it only grows.
type rssSampler struct {
	stopc chan struct{}
	wg    sync.WaitGroup
	peak  int64 // written by the sampling goroutine, read after stop
}

// sampleRSS starts sampling p every 100 ms; a nil p samples nothing.
func sampleRSS(p *proc) *rssSampler {
	s := &rssSampler{stopc: make(chan struct{})}
	if p == nil {
		return s
	}
	s.wg.Go(func() {
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for {
			s.peak = max(s.peak, p.usage().rss)
			select {
			case <-s.stopc:
				return
			case <-t.C:
			}
		}
	})
	return s
}

// stop ends sampling and returns the peak in bytes.
func (s *rssSampler) stop() int64 {
	close(s.stopc)
	s.wg.Wait()
	return s.peak
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// waitPort waits until something accepts connections on addr, p exits,
// or ctx ends.
func waitPort(ctx context.Context, p *proc, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return nil
		}
		if p != nil && p.exited() {
			return fmt.Errorf("%s exited: %v", p.name, p.err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", addr, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
