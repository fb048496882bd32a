package worker

import "syscall"

// childProcAttr puts the child in its own process group and has the kernel SIGKILL it
// when the parent's starting thread dies.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
