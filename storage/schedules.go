package storage

import (
	"context"
	_ "embed"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// ScheduleState is what Redis remembers of one schedule, shared by every instance.
type ScheduleState struct {
	// FirstSeen is when any instance first ran the schedule: ticks before it are
	// never caught up or reported missing.
	FirstSeen time.Time
	// LastTick is the latest tick enqueued (or skipped) by any instance; zero if none.
	LastTick time.Time
	// LastJobID is the job of LastTick; "" when it was skipped.
	LastJobID string
	// SkippedTick and SkipReason are the latest tick skipped with skip_if_running.
	SkippedTick time.Time
	SkipReason  string
}

// Schedules stores schedule state in Redis, one hash per schedule at
// shoestring:schedule:{name}. Safe for concurrent use by any number of instances.
type Schedules struct {
	rdb redis.UniversalClient
}

// NewSchedules returns the schedule store on rdb.
func NewSchedules(rdb redis.UniversalClient) *Schedules { return &Schedules{rdb: rdb} }

func scheduleKey(name string) string { return KeyPrefix + "schedule:{" + name + "}" }

// Seen records now as the schedule's first-seen time unless one is recorded.
func (s *Schedules) Seen(ctx context.Context, name string, now time.Time) error {
	if err := s.rdb.HSetNX(ctx, scheduleKey(name), "first_seen", now.Unix()).Err(); err != nil {
		return fmt.Errorf("schedule %s: %w", name, err)
	}
	return nil
}

//go:embed tick.lua
var tickLua string

var tickScript = redis.NewScript(tickLua)

// RecordTick records tick as enqueued with jobID ("" with reason: skipped), unless a
// later tick is recorded already: the last tick only moves forward, whatever order
// instances report in.
func (s *Schedules) RecordTick(ctx context.Context, name string, tick time.Time, jobID, skipReason string) error {
	if err := tickScript.Run(ctx, s.rdb, []string{scheduleKey(name)}, tick.Unix(), jobID, skipReason).Err(); err != nil {
		return fmt.Errorf("schedule %s: record tick: %w", name, err)
	}
	return nil
}

// Get returns the state of the schedule name (the zero state if none is recorded).
func (s *Schedules) Get(ctx context.Context, name string) (ScheduleState, error) {
	m, err := s.rdb.HGetAll(ctx, scheduleKey(name)).Result()
	if err != nil {
		return ScheduleState{}, fmt.Errorf("schedule %s: %w", name, err)
	}
	unix := func(k string) time.Time {
		n, err := strconv.ParseInt(m[k], 10, 64)
		if err != nil || n == 0 {
			return time.Time{}
		}
		return time.Unix(n, 0).UTC()
	}
	return ScheduleState{FirstSeen: unix("first_seen"), LastTick: unix("last_tick"), LastJobID: m["last_job_id"],
		SkippedTick: unix("skipped_tick"), SkipReason: m["skip_reason"]}, nil
}
