//go:build unix

package engine

import (
	"errors"
	"os/exec"
	"syscall"
)

// setGroup makes cmd the leader of a new process group, so that a signal
// to the group reaches everything the engine spawns: vLLM runs its engine
// core and GPU workers as separate processes.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// terminateGroup sends SIGTERM to the process group led by pid.
func terminateGroup(pid int) error { return signalGroup(pid, syscall.SIGTERM) }

// killGroup sends SIGKILL to the process group led by pid.
func killGroup(pid int) error { return signalGroup(pid, syscall.SIGKILL) }

// signalGroup sends sig to the process group pid. A group that no longer
// exists is not an error.
//
// The group ID cannot be reused while any member lives, so the signal
// reaches our processes or nobody, except in the unlikely case that the
// group emptied and a new group leader got the same ID in between.
func signalGroup(pid int, sig syscall.Signal) error {
	err := syscall.Kill(-pid, sig)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
