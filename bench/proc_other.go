//go:build !linux

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"time"
)

// The bench reads /proc and relies on Pdeathsig: on other systems it runs, but the
// processes it starts may outlive a crash and the RSS figures are missing.

func setProcAttr(*exec.Cmd) {}

func newSpawner() func(*exec.Cmd) error { return (*exec.Cmd).Start }

func killGroup(pid int) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

func memOf(pid int) (memFigures, error) {
	return memFigures{}, fmt.Errorf("memory of pid %d: %w on %s", pid, errors.ErrUnsupported, runtime.GOOS)
}

func childPIDs(pid int) ([]int, error) {
	return nil, fmt.Errorf("children of pid %d: %w on %s", pid, errors.ErrUnsupported, runtime.GOOS)
}

func cmdline(int) string { return "" }

func cpuModel() string { return "unknown CPU (" + runtime.GOOS + ")" }

func loadAvg() string { return "unknown" }

func cpuTime(pid int) (time.Duration, error) {
	return 0, fmt.Errorf("CPU time of pid %d: %w on %s", pid, errors.ErrUnsupported, runtime.GOOS)
}

// fsType is not known here.
func fsType(string) string { return "file system unknown" }
