package storage

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// WorkerBeat is what a worker process says about itself every heartbeat.
type WorkerBeat struct {
	ID          string    `json:"id"` // host:pid
	Host        string    `json:"host"`
	PID         int       `json:"pid"`
	StartedAt   time.Time `json:"started_at"`
	BeatAt      time.Time `json:"beat_at"`
	Concurrency int       `json:"concurrency"`
	Active      int64     `json:"active"`
	Processed   int64     `json:"processed"`
	Failed      int64     `json:"failed"`
	LastSuccess time.Time `json:"last_success,omitzero"`
	// What the worker's watchdog sees (see worker.Watchdog).
	Hung          []string  `json:"hung,omitempty"`          // tasks running past deadline + HANG_GRACE
	Degraded      bool      `json:"degraded,omitempty"`      // throughput collapsed with work waiting
	DegradedSince time.Time `json:"degraded_since,omitzero"` //
	Rate          float64   `json:"rate_per_window"`         // completions in the last window
	Baseline      float64   `json:"baseline_per_window"`     // mean completions per window before it
	RSS           int64     `json:"rss_bytes,omitempty"`     // resident memory
	Recycle       string    `json:"recycle,omitempty"`       // why the worker is recycling itself
	// Pulse says the worker also pulses (Heartbeats.Pulse), so a lapsed pulse means it
	// is dead; a worker of an older version, which does not, is not taken for dead while
	// its heartbeat record lives.
	Pulse bool `json:"pulse,omitempty"`
}

// Heartbeats records and reads worker heartbeats: a sorted set of worker ids scored by
// their last beat (unix ms) and one expiring JSON record per worker, so the web tier,
// in this process or on another machine, can tell whether any worker is alive. Safe for
// concurrent use.
type Heartbeats struct {
	rdb redis.UniversalClient
}

// NewHeartbeats returns the heartbeat store on rdb.
func NewHeartbeats(rdb redis.UniversalClient) *Heartbeats { return &Heartbeats{rdb: rdb} }

const workersKey = KeyPrefix + "workers"

// workerKey is worker id's heartbeat record. A worker's own keys (record, pulse,
// claim, recycle) share the hash tag {id}, so claim.lua reads them in one slot.
func workerKey(id string) string { return KeyPrefix + "worker:{" + id + "}" }

// NewWorkerID returns a fresh id for a worker process on host: host:pid:random. The
// random part keeps ids unique where hosts and pids repeat (containers restart with the
// same hostname and small pids), so a new worker is never taken for a dead one.
func NewWorkerID(host string, pid int) string {
	return host + ":" + strconv.Itoa(pid) + ":" + strings.ToLower(rand.Text()[:8])
}

// Beat records b; the record lives ttl, so a dead worker's disappears by itself.
func (h *Heartbeats) Beat(ctx context.Context, b WorkerBeat, ttl time.Duration) error {
	data, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("encode heartbeat: %w", err)
	}
	_, err = h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, workerKey(b.ID), data, ttl)
		p.ZAdd(ctx, workersKey, redis.Z{Score: float64(b.BeatAt.UnixMilli()), Member: b.ID})
		// Forget workers silent for 10 ttls, so the set stays small.
		p.ZRemRangeByScore(ctx, workersKey, "-inf", strconv.FormatInt(b.BeatAt.Add(-10*ttl).UnixMilli(), 10))
		return nil
	})
	if err != nil {
		return fmt.Errorf("heartbeat: %w", err)
	}
	return nil
}

func aliveKey(id string) string { return workerKey(id) + ":alive" }

// Pulse records that worker id is alive for the next ttl, measured by Redis's clock
// (so hosts' clocks may disagree), and lists it among the workers whose in-flight
// index reapers read, in one round trip (one per node on a cluster). A worker pulses
// more often than it beats, and before it takes its first task: a dead worker's pulse
// lapses within seconds, and every process's reaper then requeues its tasks
// (InFlight.ClaimDead). Listing it here rather than in every InFlight.Begin saves a
// command per task; a worker a reaper took for dead and unlisted lists itself again
// at its next pulse, and a task indexed in between is still found, by the reapers'
// sweep for active tasks in no listed index.
func (h *Heartbeats) Pulse(ctx context.Context, id string, ttl time.Duration) error {
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Set(ctx, aliveKey(id), "1", ttl)
		p.SAdd(ctx, inflightWorkers, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("pulse: %w", err)
	}
	return nil
}

// Remove deletes a worker's heartbeat and pulse, as a worker does when it stops
// cleanly.
func (h *Heartbeats) Remove(ctx context.Context, id string) error {
	_, err := h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, workerKey(id))
		p.Del(ctx, aliveKey(id))
		p.ZRem(ctx, workersKey, id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("remove heartbeat: %w", err)
	}
	return nil
}

func recycledKey(id string) string { return workerKey(id) + ":recycled" }

// MarkRecycled records that worker id is recycling itself for reason (a short word
// such as "rss"), for its supervisor to read once it has exited, when its heartbeat is
// gone. The record lives ttl.
func (h *Heartbeats) MarkRecycled(ctx context.Context, id, reason string, ttl time.Duration) error {
	if err := h.rdb.Set(ctx, recycledKey(id), reason, ttl).Err(); err != nil {
		return fmt.Errorf("record recycle of %s: %w", id, err)
	}
	return nil
}

// TakeRecycled returns the reason worker id recorded with MarkRecycled and deletes it;
// "" when there is none.
func (h *Heartbeats) TakeRecycled(ctx context.Context, id string) (string, error) {
	reason, err := h.rdb.GetDel(ctx, recycledKey(id)).Result()
	if err == redis.Nil {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read recycle of %s: %w", id, err)
	}
	return reason, nil
}

// Get returns the live heartbeat of worker id, and false when there is none.
func (h *Heartbeats) Get(ctx context.Context, id string) (WorkerBeat, bool, error) {
	data, err := h.rdb.Get(ctx, workerKey(id)).Bytes()
	if err == redis.Nil {
		return WorkerBeat{}, false, nil
	}
	if err != nil {
		return WorkerBeat{}, false, fmt.Errorf("read heartbeat %s: %w", id, err)
	}
	var b WorkerBeat
	if err := json.Unmarshal(data, &b); err != nil {
		return WorkerBeat{}, false, fmt.Errorf("decode heartbeat %s: %w", id, err)
	}
	return b, true, nil
}

// Live returns the heartbeats of workers that beat after since, in two round trips
// (the second a pipeline of GETs: the records are in as many slots as workers).
func (h *Heartbeats) Live(ctx context.Context, since time.Time) ([]WorkerBeat, error) {
	ids, err := h.rdb.ZRangeByScore(ctx, workersKey, &redis.ZRangeBy{
		Min: strconv.FormatInt(since.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("list workers: %w", err)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	cmds := make([]*redis.StringCmd, len(ids))
	_, err = h.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, id := range ids {
			cmds[i] = p.Get(ctx, workerKey(id))
		}
		return nil
	})
	if err != nil && err != redis.Nil {
		return nil, fmt.Errorf("read workers: %w", err)
	}
	beats := make([]WorkerBeat, 0, len(cmds))
	for _, c := range cmds {
		data, err := c.Bytes()
		if err != nil {
			continue // expired between the two reads
		}
		var b WorkerBeat
		if json.Unmarshal(data, &b) == nil {
			beats = append(beats, b)
		}
	}
	return beats, nil
}
