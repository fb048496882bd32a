package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shoestring-go/shoestring/storage"
)

// Checkpoint is a task's durable progress, keyed by task id in Redis, so that long work
// is committed in small units: after each unit the handler calls Save, and a task that
// is killed and delivered again calls Load and resumes after its last saved unit, redoing
// at most the unit in flight. The checkpoint is removed when the task completes or fails
// for good. Delivery is at-least-once, so the unit of work itself must be idempotent.
//
// A Checkpoint belongs to one running task; it is not safe for concurrent use by
// several goroutines of that task. A nil Checkpoint (a Task built by hand, as a
// handler's unit test may) keeps nothing: Load reports false, Save only checks that v
// encodes, Progress does nothing.
type Checkpoint struct {
	rdb   redis.UniversalClient
	jobs  *storage.Jobs
	id    string
	queue string
	ttl   time.Duration
}

// Load decodes the last saved state into v (a pointer, as for json.Unmarshal). It
// reports false, leaving v alone, when nothing was saved yet.
func (c *Checkpoint) Load(ctx context.Context, v any) (bool, error) {
	if c == nil {
		return false, nil
	}
	data, err := c.rdb.Get(ctx, storage.CheckpointKey(c.queue, c.id)).Bytes()
	if err == redis.Nil {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("load checkpoint %s: %w", c.id, err)
	}
	if err := json.Unmarshal(data, v); err != nil {
		return false, fmt.Errorf("decode checkpoint %s: %w", c.id, err)
	}
	return true, nil
}

// Save durably replaces the saved state with v (JSON-encoded) in one write. Call it
// after each unit of work is itself durable (its blob written, its row committed).
func (c *Checkpoint) Save(ctx context.Context, v any) error {
	data, err := json.Marshal(v)
	switch {
	case err != nil && c == nil:
		return fmt.Errorf("encode checkpoint: %w", err)
	case err != nil:
		return fmt.Errorf("encode checkpoint %s: %w", c.id, err)
	case c == nil:
		return nil
	}
	if err := c.rdb.Set(ctx, storage.CheckpointKey(c.queue, c.id), data, c.ttl).Err(); err != nil {
		return fmt.Errorf("save checkpoint %s: %w", c.id, err)
	}
	return nil
}

// Progress records that done of total units are finished; GET /api/v1/jobs/{id}
// reports it as progress {done, total}.
func (c *Checkpoint) Progress(ctx context.Context, done, total int64) error {
	if c == nil {
		return nil
	}
	return c.jobs.SetProgress(ctx, c.queue, c.id, storage.Progress{Done: done, Total: total})
}
