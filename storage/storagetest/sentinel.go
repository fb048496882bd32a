package storagetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// SentinelMaster is the master name StartSentinel's sentinels monitor.
const SentinelMaster = "mymaster"

// Sentinel is a Redis Sentinel deployment owned by one test: a master, one replica of
// it and three sentinels (quorum 2, down-after-milliseconds 1000, failover-timeout
// 5000), every one a redis-server process on a free port with its own dir.
type Sentinel struct {
	Master    *Redis
	Replica   *Redis
	Sentinels []*Redis
}

// StartSentinel starts the deployment and returns once the replica is in sync and
// every sentinel knows the replica and the two other sentinels, so a failover can run
// at once. Everything is stopped in tb.Cleanup. When redis-server is not installed it
// calls tb.Skip, or tb.Fatalf when EnvRequireRedisServer is "1". Safe to call from
// parallel tests.
func StartSentinel(tb testing.TB) *Sentinel {
	tb.Helper()
	bin, require := findRedisServer(), os.Getenv(EnvRequireRedisServer) == "1"
	s := &Sentinel{Master: start(tb, bin, require, true)}
	masterPort := strconv.Itoa(s.Master.port)
	s.Replica = startArgs(tb, bin, require, true, func(*Redis) []string {
		return []string{"--replicaof", "127.0.0.1", masterPort, "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "no"}
	})
	waitUntil(tb, 10*time.Second, "replica in sync", func(ctx context.Context) bool {
		info, err := s.Replica.Client(tb).Info(ctx, "replication").Result()
		return err == nil && strings.Contains(info, "master_link_status:up")
	})
	for range 3 {
		s.Sentinels = append(s.Sentinels, startArgs(tb, bin, require, true, func(r *Redis) []string {
			conf := filepath.Join(r.dir, "sentinel.conf")
			if _, err := os.Stat(conf); err != nil { // a restart keeps what the sentinel learnt
				text := fmt.Sprintf("sentinel monitor %s 127.0.0.1 %s 2\nsentinel down-after-milliseconds %[1]s 1000\nsentinel failover-timeout %[1]s 5000\n",
					SentinelMaster, masterPort)
				if err := os.WriteFile(conf, []byte(text), 0o644); err != nil {
					tb.Errorf("storagetest: write %s: %v", conf, err)
				}
			}
			return []string{conf, "--sentinel", "--daemonize", "no"}
		}))
	}
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		waitUntil(tb, 15*time.Second, "sentinel "+sn.Addr()+" to know the replica and its peers", func(ctx context.Context) bool {
			reps, err1 := c.Replicas(ctx, SentinelMaster).Result()
			peers, err2 := c.Sentinels(ctx, SentinelMaster).Result()
			return err1 == nil && err2 == nil && len(reps) == 1 && len(peers) == 2
		})
		c.Close()
	}
	return s
}

// URL returns the deployment as a REDIS_URL:
// redis-sentinel://host:port,host:port,host:port/mymaster/0.
func (s *Sentinel) URL() string {
	addrs := make([]string, len(s.Sentinels))
	for i, sn := range s.Sentinels {
		addrs[i] = sn.Addr()
	}
	return "redis-sentinel://" + strings.Join(addrs, ",") + "/" + SentinelMaster + "/0"
}

// MasterAddr asks the first sentinel that answers for the current master's address.
func (s *Sentinel) MasterAddr(ctx context.Context) (string, error) {
	var err error
	for _, sn := range s.Sentinels {
		c := redis.NewSentinelClient(&redis.Options{Addr: sn.Addr()})
		var a []string
		a, err = c.GetMasterAddrByName(ctx, SentinelMaster).Result()
		c.Close()
		if err == nil && len(a) == 2 {
			return a[0] + ":" + a[1], nil
		}
	}
	return "", fmt.Errorf("no sentinel answered: %v", err)
}

// waitUntil polls cond (each call bounded by a second) until it holds or d passes,
// then calls tb.Fatalf.
func waitUntil(tb testing.TB, d time.Duration, what string, cond func(ctx context.Context) bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ok := cond(ctx)
		cancel()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("storagetest: timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
