package storage

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ListScanMax bounds the index entries one List call reads: a page of a filter that
// matches few jobs may come back short (with a cursor to go on) rather than read
// thousands of records.
const ListScanMax = 500

// Filter selects jobs for List; an empty field matches every job.
type Filter struct {
	State, Type, Queue string
}

func (f Filter) match(j Job) bool {
	return (f.State == "" || f.State == j.State) && (f.Type == "" || f.Type == j.Type) &&
		(f.Queue == "" || f.Queue == j.Queue)
}

// Page is one page of List: the jobs, newest first, without payload or timeline;
// Next is the cursor of the following page ("" at the end); Scanned is how many index
// entries were read.
type Page struct {
	Jobs    []Job
	Next    string
	Scanned int
}

var listFields = []string{"type", "queue", "state", "attempts", "interrupted", "done", "total", "error",
	"created_at", "completed_at"}

// List returns up to limit jobs matching f, newest first, starting after cursor (""
// for the newest). It reads at most ListScanMax index entries, in batches, each batch
// one pipelined round trip of HMGETs: a job's state changes, so filters read the
// record, never a copy in the index. Records past their retention are skipped.
func (s *Jobs) List(ctx context.Context, f Filter, cursor string, limit int) (Page, error) {
	maxScore, afterID := "+inf", ""
	if cursor != "" {
		sc, id, ok := strings.Cut(cursor, "-")
		if _, err := strconv.ParseInt(sc, 10, 64); !ok || err != nil {
			return Page{}, fmt.Errorf("list jobs: bad cursor %q", cursor)
		}
		maxScore, afterID = sc, id
	}
	var page Page
	for page.Scanned < ListScanMax && len(page.Jobs) < limit {
		batch := int64(min(100, ListScanMax-page.Scanned))
		zs, err := s.rdb.ZRevRangeByScoreWithScores(ctx, indexKey, &redis.ZRangeBy{Max: maxScore, Min: "-inf", Count: batch + 50}).Result()
		if err != nil {
			return Page{}, fmt.Errorf("list jobs: %w", err)
		}
		// Skip what the cursor has passed: ties in score come in reverse id order.
		top, _ := strconv.ParseFloat(maxScore, 64)
		for len(zs) > 0 && afterID != "" && zs[0].Score == top && zs[0].Member.(string) >= afterID {
			zs = zs[1:]
		}
		if int64(len(zs)) > batch {
			zs = zs[:batch]
		}
		if len(zs) == 0 {
			page.Next = ""
			return page, nil
		}
		cmds := make([]*redis.SliceCmd, len(zs))
		_, err = s.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for i, z := range zs {
				queue, id, _ := strings.Cut(z.Member.(string), ":")
				cmds[i] = p.HMGet(ctx, jobKey(queue, id), listFields...)
			}
			return nil
		})
		if err != nil && err != redis.Nil {
			return Page{}, fmt.Errorf("list jobs: %w", err)
		}
		for i, z := range zs {
			member := z.Member.(string)
			_, id, _ := strings.Cut(member, ":")
			page.Scanned++
			maxScore, afterID = strconv.FormatInt(int64(z.Score), 10), member
			page.Next = maxScore + "-" + member
			vals := cmds[i].Val()
			if len(vals) == 0 || vals[0] == nil {
				continue // expired
			}
			m := make(map[string]string, len(listFields))
			for k, v := range vals {
				if s, ok := v.(string); ok {
					m[listFields[k]] = s
				}
			}
			if j := parseJob(id, m); f.match(j) {
				page.Jobs = append(page.Jobs, j)
				if len(page.Jobs) == limit {
					break
				}
			}
		}
	}
	return page, nil
}

// completedKey counts the completions of queue in one minute (the unix time / 60);
// the counters live completedTTL.
func completedKey(queue string, minute int64) string {
	return KeyPrefix + "{" + queue + "}:completed:" + strconv.FormatInt(minute, 10)
}

const completedTTL = 2 * time.Hour

// completionCounter counts a worker's completions in memory, by queue and minute,
// until flush adds them to Redis: a worker completing thousands of tasks a second then
// pays one INCRBY per queue and minute each flush, not a command per task, as Sidekiq
// counts processed jobs between heartbeats. A process that dies loses the counts it
// had not flushed (a pulse's worth). Safe for concurrent use.
type completionCounter struct {
	mu sync.Mutex
	n  map[completionMinute]int64
}

type completionMinute struct {
	queue  string
	minute int64
}

// add counts one completion of queue at t.
func (c *completionCounter) add(queue string, t time.Time) {
	c.mu.Lock()
	c.addLocked(completionMinute{queue, t.Unix() / 60}, 1)
	c.mu.Unlock()
}

// addLocked counts k completions of m, with c.mu held.
func (c *completionCounter) addLocked(m completionMinute, k int64) {
	if c.n == nil {
		c.n = map[completionMinute]int64{}
	}
	c.n[m] += k
}

// flush adds the counts to Redis in one pipeline (one round trip per node). A count
// whose INCRBY failed is kept for the next flush; one whose reply was lost may be
// counted twice, never dropped.
func (c *completionCounter) flush(ctx context.Context, rdb redis.UniversalClient) error {
	c.mu.Lock()
	n := c.n
	c.n = nil
	c.mu.Unlock()
	if len(n) == 0 {
		return nil
	}
	incrs := make(map[completionMinute]*redis.IntCmd, len(n))
	_, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for m, count := range n {
			key := completedKey(m.queue, m.minute)
			incrs[m] = p.IncrBy(ctx, key, count)
			p.Expire(ctx, key, completedTTL)
		}
		return nil
	})
	if err == nil {
		return nil
	}
	c.mu.Lock()
	for m, incr := range incrs {
		if incr.Err() != nil {
			c.addLocked(m, n[m])
		}
	}
	c.mu.Unlock()
	return fmt.Errorf("count completions: %w", err)
}

// Completions returns how many tasks of queue completed in each of the n minutes up to
// and including now's, oldest first, in one round trip (one MGET: the keys share the
// queue's slot). The counters live two hours. Workers add their counts with each
// pulse (InFlight.FlushCompletions), so the last half second may be missing.
func (s *Jobs) Completions(ctx context.Context, queue string, n int, now time.Time) ([]int64, error) {
	last := now.Unix() / 60
	keys := make([]string, n)
	for i := range keys {
		keys[i] = completedKey(queue, last-int64(n-1-i))
	}
	vals, err := s.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return nil, fmt.Errorf("completions of %s: %w", queue, err)
	}
	out := make([]int64, n)
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i], _ = strconv.ParseInt(s, 10, 64)
		}
	}
	return out, nil
}

// MarkRetried puts a failed job's record (id in queue) back to pending after an
// operator ran its task again: the error and completion time are cleared, the
// timeline says so.
func (s *Jobs) MarkRetried(ctx context.Context, queue, id string, now time.Time) error {
	return s.mark(ctx, queue, id, "retried", now, "state", StatePending, "error", "", "completed_at", "")
}

// MarkCancelled records that an operator deleted a pending or scheduled job's task: the
// record stays, failed with the error "cancelled", for the rest of its retention.
func (s *Jobs) MarkCancelled(ctx context.Context, queue, id string, now time.Time) error {
	return s.mark(ctx, queue, id, "cancelled", now, "state", StateFailed, "error", "cancelled",
		"completed_at", now.UTC().Format(time.RFC3339Nano))
}

func (s *Jobs) mark(ctx context.Context, queue, id, event string, now time.Time, fields ...any) error {
	keys := []string{jobKey(queue, id), CheckpointKey(queue, id), inflightKey(queue, "")}
	args := append([]any{0, int64(s.retention / time.Second), event + " " + now.UTC().Format(time.RFC3339Nano) + " by an operator", "", id}, fields...)
	if err := finishScript.Run(ctx, s.rdb, keys, args...).Err(); err != nil {
		return fmt.Errorf("update job %s: %w", id, err)
	}
	return nil
}
