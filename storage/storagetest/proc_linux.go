package storagetest

import (
	"errors"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

var sigterm = syscall.SIGTERM

// setProcAttr puts redis-server in its own process group, so a Ctrl-C meant for the test
// binary does not reach it (Cleanup owns its shutdown) and killGroup also ends any
// AOF-rewrite child it forked. Pdeathsig kills it if the test binary dies without running
// Cleanup (a panic, or go test's -timeout).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// Pdeathsig fires when the forking OS thread exits, not the process (golang/go#27505),
// and Go ends a thread whenever a goroutine exits while locked to it, as the worker
// supervisor's goroutines do in the same test binary. So every redis-server is forked
// from one goroutine locked, for the life of the test binary, to a thread of its own,
// which no other goroutine can run on and which therefore never exits early.
var (
	spawnOnce sync.Once
	spawnReqs chan spawnReq
)

type spawnReq struct {
	cmd  *exec.Cmd
	errc chan error
}

// startCmd starts cmd from the spawner thread.
func startCmd(cmd *exec.Cmd) error {
	spawnOnce.Do(func() {
		spawnReqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: this thread lives as long as the binary
			for r := range spawnReqs {
				r.errc <- r.cmd.Start()
			}
		}()
	})
	errc := make(chan error, 1)
	spawnReqs <- spawnReq{cmd: cmd, errc: errc}
	return <-errc
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
