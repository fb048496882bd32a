//go:build unix

package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/shoestring-go/shoestring/worker"
)

// A Supervisor runs the child (in shoestring, the binary itself with "worker") and
// reports how it ended on Exited; Stop ends it with SIGTERM, then SIGKILL after
// StopTimeout.
func ExampleSupervisor() {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	crash := &worker.Supervisor{Path: "/bin/sh", Args: []string{"-c", "exit 3"}, Stdout: io.Discard, Stderr: io.Discard,
		StopTimeout: time.Second, Logger: quiet}
	if err := crash.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	e := <-crash.Exited()
	fmt.Println("exit code:", e.Code, "success:", e.Success())

	long := &worker.Supervisor{Path: "/bin/sh", Args: []string{"-c", "sleep 60"}, Stdout: io.Discard, Stderr: io.Discard,
		StopTimeout: time.Second, Logger: quiet}
	if err := long.Start(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	e = long.Stop()
	fmt.Println("stopped by:", e.Signal)
	// Output:
	// exit code: 3 success: false
	// stopped by: terminated
}
