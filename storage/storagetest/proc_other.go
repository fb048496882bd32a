//go:build !linux

package storagetest

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
)

var sigterm = syscall.SIGTERM

// setProcAttr does nothing outside Linux; see proc_linux.go.
func setProcAttr(*exec.Cmd) {}

// startCmd starts cmd.
func startCmd(cmd *exec.Cmd) error { return cmd.Start() }

// killGroup sends SIGKILL to cmd's process only: without Setpgid it leads no group.
func killGroup(cmd *exec.Cmd) error {
	err := cmd.Process.Kill()
	if errors.Is(err, os.ErrProcessDone) {
		return nil
	}
	return err
}
