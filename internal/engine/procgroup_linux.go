package engine

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// groupAlive reports whether any process of the group pid is still
// alive. Zombies do not count: they hold no memory, GPU or port, and an
// orphan's zombie lasts as long as init takes to reap it, which in a
// container may be seconds or forever.
func groupAlive(pid int) bool {
	if syscall.Kill(-pid, 0) != nil {
		return false // nobody left, not even a zombie
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return true
	}
	want := []byte(strconv.Itoa(pid))
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue // exited meanwhile
		}
		// "pid (comm) state ppid pgrp …"; comm may hold spaces and
		// parentheses, so fields are counted from the last ')'.
		i := bytes.LastIndexByte(stat, ')')
		if i < 0 {
			continue
		}
		f := bytes.Fields(stat[i+1:])
		if len(f) >= 3 && bytes.Equal(f[2], want) && f[0][0] != 'Z' && f[0][0] != 'X' {
			return true
		}
	}
	return false
}
