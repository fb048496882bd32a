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
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
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
// self-signed ones need), unix:///path.sock, or
// redis-sentinel://[[user]:pass@]host:port[,host:port...]/master[/db] (a go-redis
// failover client: it asks the sentinels for the master and follows a failover; the
// password is the master's and its replicas', the sentinels are reached without one).
// It does not connect: the first command does. The client is safe for concurrent use;
// close it when done.
func OpenRedis(rawURL string, tlsSkipVerify bool) (redis.UniversalClient, error) {
	if strings.HasPrefix(rawURL, "redis-sentinel://") {
		opts, err := ParseSentinelURL(rawURL)
		if err != nil {
			return nil, err
		}
		opts.DialTimeout = redisDialTimeout
		opts.ReadTimeout = redisIOTimeout
		opts.WriteTimeout = redisIOTimeout
		opts.MaxRetries = 1
		return redis.NewFailoverClient(opts), nil
	}
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

// ParseSentinelURL parses redis-sentinel://[[user]:pass@]host:port[,host:port...]/master[/db]
// into go-redis failover options (the form Sidekiq, Celery and Bull users know; go-redis's
// own ParseFailoverURL takes redis://host?addr=...&master_name=... instead). Errors
// never quote the password.
func ParseSentinelURL(rawURL string) (*redis.FailoverOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil || u.Scheme != "redis-sentinel" {
		return nil, errors.New("parse REDIS_URL: not a redis-sentinel:// URL")
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, errors.New("parse REDIS_URL: a redis-sentinel URL takes no query or fragment")
	}
	opts := &redis.FailoverOptions{}
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	for addr := range strings.SplitSeq(u.Host, ",") {
		host, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("parse REDIS_URL: sentinel address %q is not host:port", addr)
		}
		opts.SentinelAddrs = append(opts.SentinelAddrs, addr)
	}
	parts := strings.Split(strings.Trim(u.Path, "/"), "/")
	if parts[0] == "" || len(parts) > 2 {
		return nil, errors.New("parse REDIS_URL: a redis-sentinel URL needs the master name, as in redis-sentinel://host:26379/mymaster[/db]")
	}
	opts.MasterName = parts[0]
	if len(parts) == 2 {
		if opts.DB, err = strconv.Atoi(parts[1]); err != nil || opts.DB < 0 {
			return nil, fmt.Errorf("parse REDIS_URL: database %q is not a number", parts[1])
		}
	}
	return opts, nil
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
