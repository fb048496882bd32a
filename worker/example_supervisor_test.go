//go:build unix

package worker_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
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

// WatchParent is the child's side: it calls onGone once the process's parent is no
// longer ppid (the parent died and the child was re-parented). Here the pid watched is
// not this process's parent, so onGone is called at the first poll.
func ExampleWatchParent() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	gone := make(chan struct{})
	go worker.WatchParent(ctx, os.Getppid()+1, 10*time.Millisecond, func() { close(gone) })
	select {
	case <-gone:
		fmt.Println("parent gone: stop the work and exit")
	case <-ctx.Done():
		fmt.Println("parent still there")
	}
	// Output:
	// parent gone: stop the work and exit
}
