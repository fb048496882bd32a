//go:build unix && !linux

package worker

import "syscall"

// childProcAttr puts the child in its own process group. Without Pdeathsig the child
// relies on WatchParent to notice its parent's death.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
