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
	"sync/atomic"
	"time"

	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob"
	"github.com/Azure/azure-sdk-for-go/sdk/storage/azblob/container"
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"
	"gocloud.dev/blob/azureblob"
	"gocloud.dev/blob/fileblob"
	"gocloud.dev/blob/memblob"
	"gocloud.dev/blob/s3blob"
)

// KeyPrefix starts every Redis key shoestring writes itself (asynq's start "asynq:").
const KeyPrefix = "shoestring:"

// resp is the protocol version spoken: RESP2. go-redis defaults to RESP3, and then
// peeks at every connection for push notifications before each command, a syscall per
// command that nothing here needs (no client-side caching; asynq's pub/sub has its own
// connection): 11% of a worker's CPU draining short tasks (BenchmarkDrain's profile).
const resp = 2

// Connection buffers. go-redis gives each connection 32 KiB read and write buffers,
// and each connection of its pipeline pool 128 KiB of each, sized for bulk pipelines
// of large values. shoestring's commands and pipelines are a few KiB (a record is
// capped at MaxStoredPayload and written in one write either way: bufio passes a
// write larger than its buffer straight through), so its buffers are smaller: a
// process holds a dozen connections or more, and idle RSS is counted in MiB.
const (
	readBufferSize     = 8 << 10
	writeBufferSize    = 8 << 10
	pipelineBufferSize = 16 << 10
)

// Redis timeouts: short enough that a Redis outage turns into a clear error, not a hang.
const (
	redisDialTimeout = 2 * time.Second
	redisIOTimeout   = 3 * time.Second
)

// OpenRedis returns a client for rawURL: redis://[user:pass@]host:port/db, rediss://
// (TLS; tlsSkipVerify accepts a certificate that does not verify, as Heroku's
// self-signed ones need), unix:///path.sock,
// redis-sentinel://[[user]:pass@]host:port[,host:port...]/master[/db] (a go-redis
// failover client: it asks the sentinels for the master and follows a failover; the
// password is the master's and its replicas', the sentinels are reached without one), or
// redis-cluster://[[user]:pass@]host:port[,host:port...] (a *redis.ClusterClient; see
// ParseClusterURL; rediss-cluster:// for TLS, with tlsSkipVerify as for rediss://).
// It does not connect: the first command does. Each new connection loads the job
// scripts (see loadScripts) before its first command. The client is safe for
// concurrent use; close it when done.
func OpenRedis(rawURL string, tlsSkipVerify bool) (redis.UniversalClient, error) {
	if strings.HasPrefix(rawURL, "redis-cluster://") || strings.HasPrefix(rawURL, "rediss-cluster://") {
		opts, err := ParseClusterURL(rawURL)
		if err != nil {
			return nil, err
		}
		if opts.TLSConfig != nil && tlsSkipVerify {
			opts.TLSConfig.InsecureSkipVerify = true //nolint:gosec // opted in by REDIS_TLS_SKIP_VERIFY
		}
		opts.DialTimeout = redisDialTimeout
		opts.ReadTimeout = redisIOTimeout
		opts.WriteTimeout = redisIOTimeout
		opts.MaxRetries = 1
		opts.Protocol = resp
		opts.ReadBufferSize, opts.WriteBufferSize = readBufferSize, writeBufferSize
		opts.PipelineReadBufferSize, opts.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
		opts.OnConnect = loadScripts
		return redis.NewClusterClient(opts), nil
	}
	if strings.HasPrefix(rawURL, "redis-sentinel://") {
		opts, err := ParseSentinelURL(rawURL)
		if err != nil {
			return nil, err
		}
		opts.DialTimeout = redisDialTimeout
		opts.ReadTimeout = redisIOTimeout
		opts.WriteTimeout = redisIOTimeout
		opts.MaxRetries = 1
		opts.Protocol = resp
		opts.ReadBufferSize, opts.WriteBufferSize = readBufferSize, writeBufferSize
		opts.PipelineReadBufferSize, opts.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
		opts.OnConnect = loadScripts
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
	opts.Protocol = resp
	opts.ReadBufferSize, opts.WriteBufferSize = readBufferSize, writeBufferSize
	opts.PipelineReadBufferSize, opts.PipelineWriteBufferSize = pipelineBufferSize, pipelineBufferSize
	opts.OnConnect = loadScripts
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

// ParseClusterURL parses redis-cluster://[[user]:pass@]host:port[,host:port...] into
// go-redis cluster options: the nodes are seeds, from which the client learns every
// master and replica and which slots each serves (CLUSTER SLOTS), and follows MOVED and
// ASK redirections. The path may be empty or "/" (a cluster has database 0 only); no
// query or fragment. rediss-cluster:// is the same over TLS (1.2 or later), each node's
// certificate verified against the host name the client dials it by. Host names and
// IPv4 addresses only: an IPv6 literal in a list of nodes is not a valid URL. Errors
// never quote the password.
func ParseClusterURL(rawURL string) (*redis.ClusterOptions, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "redis-cluster" && u.Scheme != "rediss-cluster") {
		return nil, errors.New("parse REDIS_URL: not a redis-cluster:// or rediss-cluster:// URL")
	}
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" {
		return nil, errors.New("parse REDIS_URL: a redis-cluster URL takes no query or fragment")
	}
	if u.Path != "" && u.Path != "/" {
		return nil, errors.New("parse REDIS_URL: a redis-cluster URL takes no path (a cluster has database 0 only)")
	}
	if u.Host == "" {
		return nil, errors.New("parse REDIS_URL: a redis-cluster URL needs at least one node, as in redis-cluster://host:6379[,host:port...]")
	}
	opts := &redis.ClusterOptions{}
	if u.User != nil {
		opts.Username = u.User.Username()
		opts.Password, _ = u.User.Password()
	}
	for addr := range strings.SplitSeq(u.Host, ",") {
		host, port, err := net.SplitHostPort(addr)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n < 1 || n > 65535 {
			return nil, fmt.Errorf("parse REDIS_URL: cluster node address %q is not host:port", addr)
		}
		opts.Addrs = append(opts.Addrs, addr)
	}
	if u.Scheme == "rediss-cluster" {
		// No ServerName: crypto/tls takes it from each node's address, as it must, for
		// the client dials nodes it learns from CLUSTER SLOTS, not only the seeds.
		opts.TLSConfig = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	return opts, nil
}

// PingRedis checks that rdb answers PING. On a cluster client it pings every master
// the client knows of, at once: a master that is down fails the commands for its slots,
// yet a PING through the cluster client reaches one node picked at random. The error
// names the node that failed; a cluster with no master serving slots is an error too.
// Safe for concurrent use.
func PingRedis(ctx context.Context, rdb redis.UniversalClient) error {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return rdb.Ping(ctx).Err()
	}
	var masters atomic.Int32
	err := cc.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		masters.Add(1)
		if err := node.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("cluster node %s: %w", node.Options().Addr, err)
		}
		return nil
	})
	if err == nil && masters.Load() == 0 {
		return errors.New("the cluster has no master serving slots")
	}
	return err
}

func redactURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(REDIS_URL)"
	}
	return u.Redacted()
}

// BlobCredentials are the secrets a cloud blob store needs. host.Run reads them from
// the environment (AWS_ACCESS_KEY_ID, AZURE_STORAGE_KEY, ...; see package config), so
// that nothing below it does: the cloud SDKs' own environment and file lookups are
// not used.
type BlobCredentials struct {
	// AWSAccessKeyID and AWSSecretAccessKey sign s3:// requests; AWSSessionToken is
	// for temporary credentials.
	AWSAccessKeyID, AWSSecretAccessKey, AWSSessionToken string
	// AzureAccount and AzureKey are an azblob:// shared key; AzureConnectionString,
	// when set, is used instead of both and of the URL's endpoint options.
	AzureAccount, AzureKey, AzureConnectionString string
}

// OpenBucket opens the blob store at rawURL: file:///abs/dir, file://./relative/dir
// (relative to the working directory; created when missing), mem://,
// s3://bucket?region=R[&endpoint=URL][&use_path_style=true] (AWS S3, or any
// S3-compatible store: R2, B2, MinIO) or azblob://container[?protocol=http&domain=
// host:port] (Azure Blob Storage, or Azurite), with creds for the last two. The
// bucket or container must exist; OpenBucket does not contact the store (the storage
// health check does). Close it when done. Blobs are written with their content type,
// so readers can serve them as is.
func OpenBucket(ctx context.Context, rawURL string, creds BlobCredentials) (*blob.Bucket, error) {
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
	case "s3":
		b, err := openS3(ctx, u, creds)
		if err != nil {
			return nil, fmt.Errorf("open s3 bucket %s: %w", u.Host, err)
		}
		return b, nil
	case "azblob":
		b, err := openAzure(ctx, u, creds)
		if err != nil {
			return nil, fmt.Errorf("open azblob container %s: %w", u.Host, err)
		}
		return b, nil
	default:
		return nil, fmt.Errorf("open blob store: scheme %q is not one of file, mem, s3, azblob", u.Scheme)
	}
}

// openS3 builds the S3 client from the URL and creds alone, not from the AWS SDK's
// default chain (which reads AWS_* variables and ~/.aws itself).
func openS3(ctx context.Context, u *url.URL, creds BlobCredentials) (*blob.Bucket, error) {
	q := u.Query()
	if u.Host == "" || q.Get("region") == "" {
		return nil, errors.New("needs s3://bucket?region=...")
	}
	if creds.AWSAccessKeyID == "" || creds.AWSSecretAccessKey == "" {
		return nil, errors.New("needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY")
	}
	pathStyle := false
	if v := q.Get("use_path_style"); v != "" {
		var err error
		if pathStyle, err = strconv.ParseBool(v); err != nil {
			return nil, fmt.Errorf("use_path_style: %w", err)
		}
	}
	cfg := aws.Config{
		Region:      q.Get("region"),
		Credentials: aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider(creds.AWSAccessKeyID, creds.AWSSecretAccessKey, creds.AWSSessionToken)),
		// No client-side retry quota: after an outage long enough to drain it, every
		// failed call would otherwise be refused its retry (gocloud.dev/aws does the same).
		Retryer: func() aws.Retryer {
			return retry.NewStandard(func(o *retry.StandardOptions) { o.RateLimiter = ratelimit.None })
		},
	}
	client := s3.NewFromConfig(cfg, func(o *s3.Options) {
		if ep := q.Get("endpoint"); ep != "" {
			o.BaseEndpoint = aws.String(ep)
		}
		o.UsePathStyle = pathStyle
		// S3-compatible stores (R2, B2, MinIO, older releases) reject or ignore the
		// SDK's default request checksums; send them only where S3 requires them.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
	})
	return s3blob.OpenBucket(ctx, client, u.Host, &s3blob.Options{RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired})
}

// openAzure builds the container client from creds: a connection string, or an account
// and shared key with the service URL the URL's protocol, domain and localemu options
// give (gocloud.dev/blob/azureblob.NewServiceURL: http://127.0.0.1:10000/account for
// Azurite, https://account.blob.core.windows.net by default).
func openAzure(ctx context.Context, u *url.URL, creds BlobCredentials) (*blob.Bucket, error) {
	if u.Host == "" {
		return nil, errors.New("needs azblob://container")
	}
	q := u.Query()
	var client *container.Client
	var err error
	switch {
	case creds.AzureConnectionString != "":
		client, err = container.NewClientFromConnectionString(creds.AzureConnectionString, u.Host, nil)
		if err != nil {
			return nil, errors.New("AZURE_STORAGE_CONNECTION_STRING is malformed") // its error may quote the key
		}
	case creds.AzureAccount != "" && creds.AzureKey != "":
		opts := azureblob.ServiceURLOptions{AccountName: creds.AzureAccount, StorageDomain: q.Get("domain"), Protocol: q.Get("protocol")}
		if v := q.Get("localemu"); v != "" {
			if opts.IsLocalEmulator, err = strconv.ParseBool(v); err != nil {
				return nil, fmt.Errorf("localemu: %w", err)
			}
		}
		svc, err := azureblob.NewServiceURL(&opts)
		if err != nil {
			return nil, err
		}
		containerURL, err := url.JoinPath(string(svc), u.Host)
		if err != nil {
			return nil, err
		}
		cred, err := azblob.NewSharedKeyCredential(creds.AzureAccount, creds.AzureKey)
		if err != nil {
			return nil, errors.New("AZURE_STORAGE_KEY is not a base64 account key")
		}
		if client, err = container.NewClientWithSharedKeyCredential(containerURL, cred, nil); err != nil {
			return nil, err
		}
	default:
		return nil, errors.New("needs AZURE_STORAGE_CONNECTION_STRING, or AZURE_STORAGE_ACCOUNT and AZURE_STORAGE_KEY")
	}
	return azureblob.OpenBucket(ctx, client, nil)
}

// RedisLogger routes go-redis's own log lines (connection pool dial failures, mostly,
// which repeat for as long as Redis is down) to slog at debug level; the redis health
// check is where an outage shows. A nil L drops the lines.
type RedisLogger struct{ L *slog.Logger }

// Printf logs one go-redis line.
func (r RedisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.L != nil {
		r.L.DebugContext(ctx, fmt.Sprintf(format, v...))
	}
}
