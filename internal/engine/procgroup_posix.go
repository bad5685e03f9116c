//go:build unix && !linux

package engine

import "syscall"

// groupAlive reports whether any process of the group pid remains,
// zombies included.
func groupAlive(pid int) bool {
	return syscall.Kill(-pid, 0) == nil
}
