package host

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
)

// sweeper deletes blobs older than JOB_RETENTION: uploads and results expire with
// their jobs, so BLOB_URL does not grow forever. It runs in every web tier; a lock in
// Redis lets one instance sweep per interval. Start it once; Stop it once or more.
type sweeper struct {
	bucket    *blob.Bucket
	rdb       redis.UniversalClient
	retention time.Duration
	logger    *slog.Logger

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const sweepLock = "shoestring:sweep:lock"

// interval is how often blobs are swept: a quarter of the retention, at most 10 min.
func (s *sweeper) interval() time.Duration { return min(s.retention/4, 10*time.Minute) }

// Start sweeps once soon after start, then every interval, in one goroutine.
func (s *sweeper) Start(ctx context.Context) error {
	ctx, s.cancel = context.WithCancel(context.WithoutCancel(ctx))
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(10 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			ok, err := s.rdb.SetNX(ctx, sweepLock, "1", s.interval()).Result()
			if err == nil && ok {
				n, err := sweepBlobs(ctx, s.bucket, time.Now().Add(-s.retention))
				if err != nil && ctx.Err() == nil {
					s.logger.WarnContext(ctx, "sweep expired blobs", "deleted", n, "err", err)
				} else if n > 0 {
					s.logger.InfoContext(ctx, "swept expired blobs", "deleted", n, "older_than", s.retention)
				}
			}
			t.Reset(s.interval())
		}
	}()
	return nil
}

// Stop stops sweeping and waits for a sweep in progress. Safe if never started.
func (s *sweeper) Stop() {
	if s.cancel != nil {
		s.cancel()
	}
	s.wg.Wait()
}

// sweepBlobs deletes every blob of bucket last written before cutoff and returns how
// many it deleted. A blob deleted meanwhile by someone else is not an error.
func sweepBlobs(ctx context.Context, bucket *blob.Bucket, cutoff time.Time) (int, error) {
	n := 0
	it := bucket.List(nil)
	for {
		obj, err := it.Next(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return n, nil
			}
			return n, fmt.Errorf("list blobs: %w", err)
		}
		if obj.IsDir || !obj.ModTime.Before(cutoff) {
			continue
		}
		if err := bucket.Delete(ctx, obj.Key); err != nil && gcerrors.Code(err) != gcerrors.NotFound {
			return n, fmt.Errorf("delete %s: %w", obj.Key, err)
		}
		n++
	}
}
