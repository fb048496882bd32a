package storagetest

import (
	"errors"
	"os/exec"
	"syscall"
)

var sigterm = syscall.SIGTERM

// setProcAttr puts redis-server in its own process group, so a Ctrl-C meant for the test
// binary does not reach it (Cleanup owns its shutdown) and killGroup also ends any
// AOF-rewrite child it forked. Pdeathsig kills it if the test binary dies without running
// Cleanup (a panic, or go test's -timeout). Pdeathsig fires when the forking OS thread
// exits, which Go only does for a goroutine that exits while locked to its thread
// (golang/go#27505); nothing here locks threads.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// killGroup sends SIGKILL to the process group led by cmd's process. Call it only while the
// process is not known to be reaped (process.kill checks done first): until it is reaped,
// its pid, and so the group id, cannot be reused.
func killGroup(cmd *exec.Cmd) error {
	err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	if errors.Is(err, syscall.ESRCH) {
		return nil
	}
	return err
}
