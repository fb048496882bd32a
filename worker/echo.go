package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/shoestring-go/shoestring/worker/task"
)

// handleEcho sleeps SleepMS, returning early with ctx's error when cancelled, then
// returns the message.
func handleEcho(ctx context.Context, t *Task) (any, error) {
	var p task.Echo
	if err := json.Unmarshal(t.Payload, &p); err != nil {
		return nil, fmt.Errorf("decode echo payload: %v: %w", err, asynq.SkipRetry)
	}
	if p.SleepMS > 0 {
		timer := time.NewTimer(time.Duration(p.SleepMS) * time.Millisecond)
		defer timer.Stop()
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-timer.C:
		}
	}
	return task.EchoResult{Message: p.Message}, nil
}
