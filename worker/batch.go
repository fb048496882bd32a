package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/worker/task"
)

// handleBatchCount counts to N in units of one, sleeping StepMS per unit and saving a
// checkpoint after each, so a task killed mid-way resumes after its last saved unit.
// Every unit executed is also counted in Redis (batch:<id>:runs), which survives kills,
// so the result can say how many units were redone: at most one per interruption.
func handleBatchCount(ctx context.Context, t *Task) (any, error) {
	var p task.BatchCount
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("decode batch payload: %v: %w", err, asynq.SkipRetry)
	}
	var done int64
	if _, err := t.Checkpoint.Load(ctx, &done); err != nil {
		return nil, err
	}
	runsKey := storage.KeyPrefix + "batch:" + t.ID + ":runs"
	for done < p.N {
		timer := time.NewTimer(time.Duration(p.StepMS) * time.Millisecond)
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		if err := t.Checkpoint.rdb.Incr(ctx, runsKey).Err(); err != nil {
			return nil, fmt.Errorf("count unit: %w", err)
		}
		done++
		if err := t.Checkpoint.Save(ctx, done); err != nil {
			return nil, err
		}
		if err := t.Checkpoint.Progress(ctx, done, p.N); err != nil {
			return nil, err
		}
	}
	runs, err := t.Checkpoint.rdb.Get(ctx, runsKey).Int64()
	if err != nil {
		return nil, fmt.Errorf("read unit count: %w", err)
	}
	t.Checkpoint.rdb.Expire(ctx, runsKey, t.Checkpoint.ttl)
	return task.BatchCountResult{Counted: done, UnitsRun: runs}, nil
}
