package engine

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for the zero values of SupervisorConfig.
const (
	// DefaultStopTimeout is how long a stopping engine has between SIGTERM
	// and SIGKILL. vLLM needs a few seconds to free its workers and GPU
	// memory; 30s covers a large tensor-parallel engine.
	DefaultStopTimeout = 30 * time.Second
	// DefaultMinBackoff is the wait before the first restart.
	DefaultMinBackoff = time.Second
	// DefaultMaxBackoff caps the wait between restarts.
	DefaultMaxBackoff = time.Minute
	// DefaultResetAfter is how long an engine must stay up for its next
	// crash to count as a first one. It is longer than loading a large
	// model takes, so an engine that dies while loading backs off.
	DefaultResetAfter = 10 * time.Minute
)

// reapGrace is how long, once its process group has been killed, the
// supervisor waits for the engine's last output before it stops reading
// (a process that left the group may hold the pipes open forever), and
// then for the group's processes to be gone (a zombie that nobody reaps
// stays a member forever).
const reapGrace = time.Second

// SupervisorConfig describes how to run an engine.
type SupervisorConfig struct {
	// Command is the engine's command line, run with /bin/sh -c, e.g.
	// "vllm serve Qwen/Qwen3-8B --port 8000". Required.
	Command string

	// BaseEnv is the environment the engine starts from, "KEY=value".
	// Nil means the agent's own.
	BaseEnv []string

	// Env holds extra environment variables for the engine, "KEY=value",
	// added to BaseEnv.
	Env []string

	// Dir is the engine's working directory. Empty means the agent's.
	Dir string

	// StopTimeout is how long the engine has to exit after SIGTERM before
	// its process group gets SIGKILL. Zero means DefaultStopTimeout.
	StopTimeout time.Duration

	// MinBackoff is the wait before restarting an engine that died; it
	// doubles at each crash in a row up to MaxBackoff. Zero means
	// DefaultMinBackoff.
	MinBackoff time.Duration

	// MaxBackoff caps the wait between restarts. Zero means
	// DefaultMaxBackoff.
	MaxBackoff time.Duration

	// ResetAfter is how long an engine must stay up for the wait before
	// its next restart to start over at MinBackoff. Zero means
	// DefaultResetAfter.
	ResetAfter time.Duration

	// Logger receives the supervisor's logs and the engine's output, one
	// record per line. Nil discards them.
	Logger *slog.Logger
}

// Status is a snapshot of a supervised engine.
type Status struct {
	// Running reports whether an engine process is alive.
	Running bool
	// PID is the running engine's process ID, which is also its process
	// group ID; 0 when none runs.
	PID int
	// Starts counts the processes started so far, restarts included.
	Starts int
	// LastExit says how the last process ended; nil before any ended.
	LastExit error
	// LastExitAt is when the last process ended.
	LastExitAt time.Time
	// NextStart is when a restart is due, while the supervisor waits out
	// its backoff; zero otherwise.
	NextStart time.Time
}

// Supervisor runs an engine process and keeps it running: it restarts
// the engine when it dies, with exponential backoff, and stops it, with
// everything it spawned, when Run's context ends. Create one with
// NewSupervisor. Its methods are safe for concurrent use.
type Supervisor struct {
	cfg     SupervisorConfig // defaults applied; read-only
	log     *slog.Logger
	running atomic.Bool // whether Run is in progress

	mu sync.Mutex
	// status is guarded by mu.
	status Status
}

// NewSupervisor returns a Supervisor for cfg, or an error if cfg is
// invalid. It starts nothing: call Run.
func NewSupervisor(cfg SupervisorConfig) (*Supervisor, error) {
	if cfg.Command == "" {
		return nil, errors.New("engine: no command to run")
	}
	if cfg.StopTimeout < 0 || cfg.MinBackoff < 0 || cfg.MaxBackoff < 0 || cfg.ResetAfter < 0 {
		return nil, errors.New("engine: negative duration in supervisor config")
	}
	if cfg.StopTimeout == 0 {
		cfg.StopTimeout = DefaultStopTimeout
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	cfg.MaxBackoff = max(cfg.MaxBackoff, cfg.MinBackoff)
	if cfg.ResetAfter == 0 {
		cfg.ResetAfter = DefaultResetAfter
	}
	if cfg.BaseEnv == nil {
		cfg.BaseEnv = os.Environ()
	}
	cfg.BaseEnv = append([]string(nil), cfg.BaseEnv...)
	cfg.Env = append([]string(nil), cfg.Env...)
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Supervisor{cfg: cfg, log: log.With("component", "engine")}, nil
}

// Status returns a snapshot of the engine's state.
func (s *Supervisor) Status() Status {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.status
}

// Run starts the engine and keeps it running until ctx ends; then it
// stops the engine gracefully (SIGTERM to its process group, SIGKILL
// after StopTimeout), waits until it has exited, and returns nil. An
// engine that exits on its own, whatever its status, is restarted after
// a backoff. Run returns an error only if it is already running.
func (s *Supervisor) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("engine: supervisor already running")
	}
	defer s.running.Store(false)

	var wait time.Duration
	for {
		uptime, stopped := s.runOnce(ctx)
		if stopped {
			return nil
		}
		wait = nextBackoff(wait, uptime, &s.cfg)
		s.log.Info("engine restarting", "backoff_ms", wait.Milliseconds())
		s.setNextStart(time.Now().Add(wait))
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
	}
}

// runOnce starts the engine and waits until it exits or ctx ends, when
// it stops it. It returns how long the engine stayed up, and reports
// whether ctx ended.
func (s *Supervisor) runOnce(ctx context.Context) (uptime time.Duration, stopped bool) {
	if ctx.Err() != nil {
		return 0, true
	}
	p, err := s.start()
	if err != nil {
		s.log.Error("engine start failed", "error", err)
		s.setExited(err)
		return 0, false
	}
	select {
	case <-ctx.Done():
		s.stop(p)
		return time.Since(p.started), true
	case <-p.exited:
	}

	uptime = time.Since(p.started)
	exit := p.exitError()
	s.log.Warn("engine exited", "pid", p.pid, "error", exit, "uptime_ms", uptime.Milliseconds())
	// What the dead leader spawned (vLLM's engine core and GPU workers)
	// would keep the GPU memory and the port that the next engine needs.
	_ = killGroup(p.pid)
	p.reap(reapGrace)
	s.setExited(exit)
	return uptime, false
}

// nextBackoff returns the wait before the next start, given the previous
// wait (zero before any) and how long the engine that just ended stayed
// up: MinBackoff for a first crash, or one after ResetAfter of uptime,
// then doubling at each crash in a row up to MaxBackoff.
func nextBackoff(prev, uptime time.Duration, cfg *SupervisorConfig) time.Duration {
	if prev <= 0 || uptime >= cfg.ResetAfter {
		return cfg.MinBackoff
	}
	return min(2*prev, cfg.MaxBackoff)
}

// process is one run of the engine.
type process struct {
	cmd     *exec.Cmd
	pid     int
	started time.Time

	exited  chan struct{} // closed once the leader has exited and been reaped
	waitErr error         // cmd.Wait's error; read only after exited is closed

	pipes   []*os.File    // read ends of stdout and stderr
	drained chan struct{} // closed once both pipes reached EOF or were closed
}

// start starts the engine in a new process group and begins copying its
// output to the log.
func (s *Supervisor) start() (*process, error) {
	outR, outW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("engine: make stdout pipe: %w", err)
	}
	errR, errW, err := os.Pipe()
	if err != nil {
		outR.Close()
		outW.Close()
		return nil, fmt.Errorf("engine: make stderr pipe: %w", err)
	}

	// Pipes of our own rather than cmd.StdoutPipe: Wait then returns when
	// the leader exits, not when every process it forked has closed its
	// copy of the pipe, and the readers see EOF exactly when the whole
	// group has gone.
	cmd := exec.Command("/bin/sh", "-c", s.cfg.Command)
	cmd.Env = append(slices.Clip(s.cfg.BaseEnv), s.cfg.Env...)
	cmd.Dir = s.cfg.Dir
	cmd.Stdout, cmd.Stderr = outW, errW
	setGroup(cmd)
	err = cmd.Start()
	outW.Close()
	errW.Close()
	if err != nil {
		outR.Close()
		errR.Close()
		return nil, fmt.Errorf("engine: start %q: %w", s.cfg.Command, err)
	}

	p := &process{
		cmd:     cmd,
		pid:     cmd.Process.Pid,
		started: time.Now(),
		exited:  make(chan struct{}),
		pipes:   []*os.File{outR, errR},
		drained: make(chan struct{}),
	}
	var copying sync.WaitGroup
	copying.Go(func() { s.copyLines(outR, "stdout", p.pid) })
	copying.Go(func() { s.copyLines(errR, "stderr", p.pid) })
	go func() {
		copying.Wait()
		close(p.drained)
	}()
	go func() {
		p.waitErr = cmd.Wait()
		close(p.exited)
	}()

	s.mu.Lock()
	s.status.Running = true
	s.status.PID = p.pid
	s.status.Starts++
	s.status.NextStart = time.Time{}
	starts := s.status.Starts
	s.mu.Unlock()
	s.log.Info("engine started", "pid", p.pid, "starts", starts)
	return p, nil
}

// stop stops p gracefully: SIGTERM to its group, then SIGKILL to what
// is left of it once the leader has exited and the rest has had the
// remainder of StopTimeout to follow, or once StopTimeout has passed.
func (s *Supervisor) stop(p *process) {
	s.log.Info("engine stopping", "pid", p.pid)
	if err := terminateGroup(p.pid); err != nil {
		s.log.Warn("engine terminate failed", "pid", p.pid, "error", err)
	}
	deadline := time.NewTimer(s.cfg.StopTimeout)
	defer deadline.Stop()

	select {
	case <-p.exited:
		// The leader has gone; its children still hold the output pipes
		// until they exit too.
		select {
		case <-p.drained:
		case <-deadline.C:
			s.log.Warn("engine children did not stop in time; killing them",
				"pid", p.pid, "timeout_ms", s.cfg.StopTimeout.Milliseconds())
		}
	case <-deadline.C:
		s.log.Warn("engine did not stop in time; killing it",
			"pid", p.pid, "timeout_ms", s.cfg.StopTimeout.Milliseconds())
	}
	if err := killGroup(p.pid); err != nil {
		s.log.Warn("engine kill failed", "pid", p.pid, "error", err)
	}
	<-p.exited
	p.reap(reapGrace)
	s.setExited(p.exitError())
	s.log.Info("engine stopped", "pid", p.pid, "uptime_ms", time.Since(p.started).Milliseconds())
}

// exitError describes how p ended. It is never nil: an engine has no
// business exiting on its own, even with status 0.
func (p *process) exitError() error {
	if p.waitErr == nil {
		return errors.New("engine: process exited with status 0")
	}
	return fmt.Errorf("engine: process ended: %w", p.waitErr)
}

// reap finishes off p once its group has been sent SIGKILL: it waits up
// to grace for the output pipes to reach EOF and then closes them, so
// that their readers return, and waits up to grace again for the last
// processes of the group to be gone, so that the GPU memory and the port
// are free for the next engine when it returns.
func (p *process) reap(grace time.Duration) {
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-p.drained:
	case <-t.C:
	}
	for _, f := range p.pipes {
		_ = f.Close() // unblocks a pending Read; a second Close is harmless
	}
	<-p.drained

	// A killed process has closed its files before it has finished
	// exiting; poll, as there is nothing to wait on for another
	// process's children.
	deadline := time.Now().Add(grace)
	for groupAlive(p.pid) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
}

// copyLines logs every line read from f, until EOF or f is closed.
func (s *Supervisor) copyLines(f *os.File, stream string, pid int) {
	defer f.Close()
	log := s.log.With("stream", stream, "pid", pid)
	br := bufio.NewReaderSize(f, 64<<10)
	for {
		// ReadLine rather than a Scanner: a line longer than the buffer
		// comes out in pieces instead of stopping the copy, which would
		// leave the engine blocked on a full pipe.
		line, _, err := br.ReadLine()
		if len(line) > 0 {
			log.Info("engine output", "line", string(line))
		}
		if err != nil {
			return
		}
	}
}

func (s *Supervisor) setExited(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.Running = false
	s.status.PID = 0
	s.status.LastExit = err
	s.status.LastExitAt = time.Now()
}

func (s *Supervisor) setNextStart(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.status.NextStart = t
}
