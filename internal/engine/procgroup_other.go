//go:build !unix

package engine

import (
	"os"
	"os/exec"
)

// setGroup does nothing where process groups do not exist: only the
// engine's own process is stopped.
func setGroup(cmd *exec.Cmd) {}

// terminateGroup kills the process pid: there is no SIGTERM here.
func terminateGroup(pid int) error { return killGroup(pid) }

// killGroup kills the process pid.
func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return nil
	}
	if err := p.Kill(); err != nil && err != os.ErrProcessDone {
		return err
	}
	return nil
}

// groupAlive reports false: without process groups there is nothing
// left to wait for once the engine's own process has been reaped.
func groupAlive(pid int) bool { return false }
