// Package storage owns everything durable that the web tier and the worker share:
// the Redis client (go-redis v9, also handed to asynq), the embedded Redis used when
// no REDIS_URL is set, the blob store (gocloud.dev/blob) and the job records that let
// the web tier answer for any job.
package storage

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
)

// KeyPrefix starts every Redis key shoestring writes itself (asynq's start "asynq:").
const KeyPrefix = "shoestring:"

// Redis timeouts: short enough that a Redis outage turns into a clear error, not a hang.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 3 * time.Second
)

// OpenRedis returns a client for rawURL: redis://[user:pass@]host:port/db, rediss://
// (TLS; tlsSkipVerify accepts a certificate that does not verify, as Heroku's
// self-signed ones need) or unix:///path.sock. It does not connect: the first command
// does. The client is safe for concurrent use; close it when done.
func OpenRedis(rawURL string, tlsSkipVerify bool) (*redis.Client, error) {
	opts, err := redis.ParseURL(rawURL)
	if err != nil {
		// go-redis errors may quote the URL; never echo the password.
		return nil, fmt.Errorf("parse REDIS_URL: %w", errors.New(strings.ReplaceAll(err.Error(), rawURL, redactURL(rawURL))))
	}
	if opts.TLSConfig != nil && tlsSkipVerify {
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: true, ServerName: opts.TLSConfig.ServerName} //nolint:gosec // opted in by REDIS_TLS_SKIP_VERIFY
	}
	opts.DialTimeout = redisDialTimeout
	opts.ReadTimeout = redisIOTimeout
	opts.WriteTimeout = redisIOTimeout
	opts.MaxRetries = 1
	return redis.NewClient(opts), nil
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(REDIS_URL)"
	}
	return u.Redacted()
}

// OpenBucket opens the blob store at rawURL: file:///abs/dir, file://./relative/dir
// (relative to the working directory; created when missing) or mem://. Close it when
// done. Blobs are written with their content type, so readers can serve them as is.
func OpenBucket(ctx context.Context, rawURL string) (*blob.Bucket, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("parse BLOB_URL: %w", err)
	}
	switch u.Scheme {
	case "mem":
		return memblob.OpenBucket(nil), nil
	case "file":
		dir := u.Path
		if u.Host == "." || u.Host == ".." {
			dir = filepath.Join(u.Host, u.Path)
		}
		if dir, err = filepath.Abs(dir); err != nil {
			return nil, fmt.Errorf("blob dir: %w", err)
		}
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("create blob dir: %w", err)
		}
		// NoTempDir: the temp file sits beside its target, so the final rename never
		// crosses a mount point (a PaaS volume is often one).
		b, err := fileblob.OpenBucket(dir, &fileblob.Options{NoTempDir: true})
		if err != nil {
			return nil, fmt.Errorf("open blob dir %s: %w", dir, err)
		}
		return b, nil
	default:
		b, err := blob.OpenBucket(ctx, rawURL)
		if err != nil {
			return nil, fmt.Errorf("open blob store %s: %w", u.Scheme, err)
		}
		return b, nil
	}
}

// RedisLogger routes go-redis's own log lines (connection pool dial failures, mostly,
// which repeat for as long as Redis is down) to slog at debug level; the redis health
// check is where an outage shows.
type RedisLogger struct{ L *slog.Logger }

// Printf logs one go-redis line.
func (r RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	r.L.DebugContext(ctx, fmt.Sprintf(format, v...))
}
