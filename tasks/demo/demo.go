// Package demo has the two demonstration task kinds: echo, for smoke tests and
// benchmarks, and batch:count, long work committed in small checkpointed units, which
// the fault tests kill. They are registered through the public host API, as any app's
// tasks are.
package demo

import (
	"context"
	"fmt"
	"time"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/worker"
)

// Limits of the payloads.
const (
	MaxEchoSleepMS = 3_600_000
	MaxEchoMessage = 64 << 10
	MaxBatchN      = 1_000_000
	MaxBatchStepMS = 60_000
)

// Echo is the payload of an echo task: the result repeats Message (at most 64 KiB)
// after sleeping SleepMS milliseconds (0 to 3,600,000), returning early when cancelled.
type Echo struct {
	Message string `json:"message"`
	SleepMS int64  `json:"sleep_ms"`
}

// Kind is "echo".
func (Echo) Kind() string { return "echo" }

// Validate checks the bounds of SleepMS and Message.
func (e Echo) Validate() error {
	if e.SleepMS < 0 || e.SleepMS > MaxEchoSleepMS {
		return &host.InvalidError{Field: "payload.sleep_ms", Msg: fmt.Sprintf("must be 0-%d", MaxEchoSleepMS)}
	}
	if len(e.Message) > MaxEchoMessage {
		return &host.InvalidError{Field: "payload.message", Msg: fmt.Sprintf("longer than %d bytes", MaxEchoMessage)}
	}
	return nil
}

// EchoResult is the result of an echo task.
type EchoResult struct {
	Message string `json:"message"`
}

// BatchCount is the payload of a batch:count task: count to N (1 to 1,000,000) in units
// of one, sleeping StepMS (0 to 60,000) milliseconds per unit and checkpointing after
// each.
type BatchCount struct {
	N      int64 `json:"n"`
	StepMS int64 `json:"step_ms"`
}

// Kind is "batch:count".
func (BatchCount) Kind() string { return "batch:count" }

// Validate checks the bounds of N and StepMS.
func (b BatchCount) Validate() error {
	if b.N < 1 || b.N > MaxBatchN {
		return &host.InvalidError{Field: "payload.n", Msg: fmt.Sprintf("must be 1-%d", MaxBatchN)}
	}
	if b.StepMS < 0 || b.StepMS > MaxBatchStepMS {
		return &host.InvalidError{Field: "payload.step_ms", Msg: fmt.Sprintf("must be 0-%d", MaxBatchStepMS)}
	}
	return nil
}

// BatchCountResult is the result of a batch:count task: the count reached, and how many
// units were executed in all, across every attempt (UnitsRun - Counted were redone).
type BatchCountResult struct {
	Counted  int64 `json:"counted"`
	UnitsRun int64 `json:"units_run"`
}

// Register adds echo and batch:count to h as demonstration kinds: they are served
// only when DEMO_TASKS is true (by default only in trial mode), since anyone who may
// enqueue them can keep every worker busy for an hour.
func Register(h *host.Host) {
	host.Register(h, handleEcho, host.DemoTask())
	host.Register(h, func(ctx context.Context, t *worker.Task, b BatchCount) (any, error) {
		return handleBatchCount(ctx, h, t, b)
	}, host.DemoTask())
}

// handleEcho sleeps SleepMS, returning early with ctx's error when cancelled, then
// returns the message.
func handleEcho(ctx context.Context, _ *worker.Task, e Echo) (any, error) {
	if e.SleepMS > 0 {
		timer := time.NewTimer(time.Duration(e.SleepMS) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	return EchoResult{Message: e.Message}, nil
}

// handleBatchCount counts to N in units of one, sleeping StepMS per unit and saving a
// checkpoint after each, so a task killed mid-way resumes after its last saved unit.
// Every unit executed is also counted in Redis (demo:batch:<id>:runs), which survives
// kills, so the result can say how many units were redone: at most one per
// interruption.
func handleBatchCount(ctx context.Context, h *host.Host, t *worker.Task, b BatchCount) (any, error) {
	var done int64
	if _, err := t.Checkpoint.Load(ctx, &done); err != nil {
		return nil, err
	}
	rdb := h.Redis()
	runsKey := "demo:batch:" + t.ID + ":runs"
	for done < b.N {
		timer := time.NewTimer(time.Duration(b.StepMS) * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		if err := rdb.Incr(ctx, runsKey).Err(); err != nil {
			return nil, fmt.Errorf("count unit: %w", err)
		}
		done++
		if err := t.Checkpoint.Save(ctx, done); err != nil {
			return nil, err
		}
		if err := t.Checkpoint.Progress(ctx, done, b.N); err != nil {
			return nil, err
		}
	}
	runs, err := rdb.Get(ctx, runsKey).Int64()
	if err != nil {
		return nil, fmt.Errorf("read unit count: %w", err)
	}
	rdb.Expire(ctx, runsKey, h.Config().JobRetention)
	return BatchCountResult{Counted: done, UnitsRun: runs}, nil
}
