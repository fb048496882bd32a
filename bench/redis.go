package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Bounds of starting redis-server.
const (
	redisStartAttempts = 3
	redisReadyTimeout  = 10 * time.Second
	redisStopGrace     = 5 * time.Second
)

// errNoRedisServer is returned when redis-server is not on PATH.
var errNoRedisServer = errors.New("redis-server not found on PATH; install it (Debian/Ubuntu: apt-get install redis-server)")

// redisServer is the bench's own redis-server: 127.0.0.1 on a free port, in a dir of
// its own, keeping nothing on disk. Being the bench's, it may be flushed at will.
type redisServer struct {
	addr    string
	version string
	proc    *proc
	client  *redis.Client // the bench's own connection: flushes, prefills, inspection
}

// findRedisServer returns the path of redis-server, or errNoRedisServer.
func findRedisServer() (string, error) {
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		return "", errNoRedisServer
	}
	return bin, nil
}

// startRedis starts bin (redis-server) in dir, retrying on a new port when another
// process took the one picked, and returns once it answers PING as the process started.
func startRedis(ctx context.Context, ps *procs, bin, dir string) (*redisServer, error) {
	var lastErr error
	for range redisStartAttempts {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		r, err := launchRedis(ctx, ps, bin, dir, port)
		if err == nil {
			return r, nil
		}
		lastErr = err
	}
	return nil, fmt.Errorf("start redis-server: %w", lastErr)
}

func launchRedis(ctx context.Context, ps *procs, bin, dir string, port int) (*redisServer, error) {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--dir", dir,
		"--save", "",
		"--appendonly", "no",
		"--daemonize", "no",
	}
	p, err := ps.start("redis-server", bin, args, os.Environ(), dir, redisStopGrace)
	if err != nil {
		return nil, err
	}
	r := &redisServer{addr: "127.0.0.1:" + strconv.Itoa(port), proc: p}
	r.client = redis.NewClient(&redis.Options{Addr: r.addr, PoolSize: 64})
	if err := r.waitReady(ctx); err != nil {
		r.client.Close()
		if serr := p.Stop(); serr != nil {
			err = fmt.Errorf("%w; %v", err, serr)
		}
		return nil, err
	}
	return r, nil
}

// waitReady polls until the server answers PING and INFO shows the pid started (so
// it is ours, not another server that holds the port), the process exits, or
// redisReadyTimeout passes.
func (r *redisServer) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, redisReadyTimeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		if lastErr = r.probe(ctx); lastErr == nil {
			return nil
		}
		select {
		case <-r.proc.done:
			return fmt.Errorf("redis-server at %s exited: %v; log:\n%s", r.addr, r.proc.err, r.proc.logTail(5))
		case <-ctx.Done():
			return fmt.Errorf("redis-server at %s not ready: %w (last: %v)", r.addr, ctx.Err(), lastErr)
		case <-tick.C:
		}
	}
}

func (r *redisServer) probe(ctx context.Context) error {
	pctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
	defer cancel()
	info, err := r.client.Info(pctx, "server").Result()
	if err != nil {
		return err
	}
	fields := map[string]string{}
	for line := range strings.Lines(info) {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	if fields["process_id"] != strconv.Itoa(r.proc.pid()) {
		return fmt.Errorf("the server at %s is pid %s, not ours (%d)", r.addr, fields["process_id"], r.proc.pid())
	}
	r.version = fields["redis_version"]
	return nil
}

// URL is the server's address as a REDIS_URL.
func (r *redisServer) URL() string { return "redis://" + r.addr + "/0" }

// flush empties the server: every figure starts from nothing.
func (r *redisServer) flush(ctx context.Context) error {
	if err := r.client.FlushAll(ctx).Err(); err != nil {
		return fmt.Errorf("flush redis: %w", err)
	}
	return nil
}

// Stop closes the bench's connection and stops the server.
func (r *redisServer) Stop() error {
	r.client.Close()
	return r.proc.Stop()
}

// cmdStat is what INFO commandstats says of one command since the last reset: how
// often it was called and the microseconds Redis spent in it. A script's time includes
// the commands it calls, which are counted on their own lines too.
type cmdStat struct{ calls, usec int64 }

// resetStats zeroes the server's command statistics (CONFIG RESETSTAT).
func (r *redisServer) resetStats(ctx context.Context) error {
	return r.client.ConfigResetStat(ctx).Err()
}

// commandStats reads INFO commandstats, by lower-case command name ("evalsha",
// "hset", "config|resetstat"), and the read events (readsStat).
func (r *redisServer) commandStats(ctx context.Context) (map[string]cmdStat, error) {
	info, err := r.client.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	stats := map[string]cmdStat{}
	for line := range strings.Lines(info) {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		name, found := strings.CutPrefix(name, "cmdstat_")
		if !ok || !found {
			continue
		}
		var s cmdStat
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "calls":
				s.calls, _ = strconv.ParseInt(v, 10, 64)
			case "usec":
				s.usec, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		stats[name] = s
	}
	// Each read event is a batch of commands from one client: about one round trip.
	info, err = r.client.Info(ctx, "stats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO stats: %w", err)
	}
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "total_reads_processed:"); ok {
			n, _ := strconv.ParseInt(v, 10, 64)
			stats[readsStat] = cmdStat{calls: n}
		}
	}
	return stats, nil
}

// readsStat is commandStats's entry for the server's read events (INFO stats
// total_reads_processed): its calls are round trips, give or take.
const readsStat = "(reads)"
