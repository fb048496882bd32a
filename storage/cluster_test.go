package storage

import (
	"context"
	"crypto/tls"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"

	"github.com/shoestring-go/shoestring/storage/storagetest"
)

// TestParseClusterURL: the nodes, credentials and TLS of a redis-cluster URL reach
// go-redis's cluster options, and a malformed one is refused without echoing the
// password.
func TestParseClusterURL(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url  string
		want *redis.ClusterOptions
	}{
		{"redis-cluster://10.0.0.1:7000", &redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000"}}},
		{"redis-cluster://:pw@10.0.0.1:7000,node-2.internal:7001,10.0.0.3:7002/",
			&redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000", "node-2.internal:7001", "10.0.0.3:7002"}, Password: "pw"}},
		{"redis-cluster://app:p%40ss@10.0.0.1:7000", &redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000"}, Username: "app", Password: "p@ss"}},
		{"rediss-cluster://:pw@10.0.0.1:7000,10.0.0.2:7001", &redis.ClusterOptions{Addrs: []string{"10.0.0.1:7000", "10.0.0.2:7001"}, Password: "pw",
			TLSConfig: &tls.Config{MinVersion: tls.VersionTLS12}}},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			got, err := ParseClusterURL(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got, cmpopts.IgnoreUnexported(tls.Config{})); diff != "" {
				t.Errorf("options (-want +got):\n%s", diff)
			}
		})
	}
	for _, tc := range []struct{ url, problem string }{
		{"redis-cluster://:pw@", "needs at least one node"},
		{"redis-cluster://:pw@/", "needs at least one node"},
		{"redis-cluster://:pw@h", `"h" is not host:port`},
		{"redis-cluster://:pw@h:0", `"h:0" is not host:port`},
		{"redis-cluster://:pw@h:65536", `"h:65536" is not host:port`},
		{"redis-cluster://:pw@h:1,:2", `":2" is not host:port`},
		{"redis-cluster://:pw@h:x", "not a redis-cluster:// or rediss-cluster:// URL"},
		{"redis-cluster://:pw@h:1/0", "takes no path"},
		{"redis-cluster://:pw@h:1?read_only=true", "takes no query"},
		{"redis-cluster://:pw@h:1?", "takes no query"},
		{"redis-cluster://:pw@h:1#f", "takes no query or fragment"},
		{"redis://:pw@h:1", "not a redis-cluster:// or rediss-cluster:// URL"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			t.Parallel()
			_, err := ParseClusterURL(tc.url)
			if err == nil || !strings.Contains(err.Error(), tc.problem) || strings.Contains(err.Error(), "pw") {
				t.Errorf("ParseClusterURL = %v, want an error saying %q without the password", err, tc.problem)
			}
			if !strings.HasPrefix(tc.url, "redis-cluster:") {
				return
			}
			if _, oerr := OpenRedis(tc.url, false); oerr == nil || strings.Contains(oerr.Error(), "pw") {
				t.Errorf("OpenRedis = %v, want an error without the password", oerr)
			}
		})
	}
}

// TestOpenRedisCluster: OpenRedis gives a redis-cluster URL a cluster client with the
// timeouts and retries of every other client, which reads and writes keys of every
// master; PingRedis pings every master, so it fails, naming the node, when one master
// is down, though most keys still work.
// openCluster starts a Redis Cluster and opens it with OpenRedis.
func openCluster(t *testing.T) (*storagetest.Cluster, redis.UniversalClient) {
	t.Helper()
	c := storagetest.StartCluster(t)
	rdb, err := OpenRedis(c.URL(), false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return c, rdb
}

func TestOpenRedisCluster(t *testing.T) {
	t.Parallel()
	c, rdb := openCluster(t)
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		t.Fatalf("OpenRedis(%s) = %T, want *redis.ClusterClient", c.URL(), rdb)
	}
	o := cc.Options()
	if diff := cmp.Diff([]any{c.Addrs(), redisDialTimeout, redisIOTimeout, redisIOTimeout, 1},
		[]any{o.Addrs, o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.MaxRetries}); diff != "" {
		t.Errorf("Addrs, DialTimeout, ReadTimeout, WriteTimeout, MaxRetries (-want +got):\n%s", diff)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := PingRedis(ctx, rdb); err != nil {
		t.Fatalf("PingRedis: %v", err)
	}
	// 16 keys land on every master of three, unless the hash is far from uniform.
	for i := range 16 {
		key := "k" + string(rune('a'+i))
		if err := rdb.Set(ctx, key, i, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if got, err := rdb.Get(ctx, key).Int(); err != nil || got != i {
			t.Fatalf("GET %s = %d, %v; want %d", key, got, err, i)
		}
	}

	down := c.Nodes[1]
	down.Kill(t)
	for range 3 { // a PING through the cluster client reaches the dead master 1 time in 3
		err := PingRedis(ctx, rdb)
		if err == nil || !strings.Contains(err.Error(), "cluster node "+down.Addr()+": ") {
			t.Fatalf("PingRedis with %s down = %v, want an error naming it", down.Addr(), err)
		}
	}
}

// TestPingRedisOneServer: PingRedis on a plain client is its PING.
func TestPingRedisOneServer(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := PingRedis(ctx, r.Client(t)); err != nil {
		t.Errorf("PingRedis: %v", err)
	}
	gone := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1})
	defer gone.Close()
	if err := PingRedis(ctx, gone); err == nil {
		t.Error("PingRedis of no server = nil, want an error")
	}
}

// TestOpenRedisClusterTLS: a rediss-cluster URL reaches a cluster over TLS, accepting a
// self-signed certificate only with tlsSkipVerify (REDIS_TLS_SKIP_VERIFY). The cluster
// is one node that serves every slot.
func TestOpenRedisClusterTLS(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	cert, key := selfSigned(t, dir)
	port, bus := strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	addr := "127.0.0.1:" + port
	redisServer(t, dials("tcp", addr), "--port", "0", "--tls-port", port, "--tls-cert-file", cert, "--tls-key-file", key,
		"--tls-ca-cert-file", cert, "--tls-auth-clients", "no", "--tls-cluster", "yes", "--cluster-enabled", "yes", "--cluster-port", bus,
		"--cluster-config-file", filepath.Join(dir, "nodes.conf"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	node := redis.NewClient(&redis.Options{Addr: addr, TLSConfig: &tls.Config{InsecureSkipVerify: true}}) //nolint:gosec // a test's self-signed certificate
	defer node.Close()
	if err := node.ClusterAddSlotsRange(ctx, 0, 16383).Err(); err != nil {
		t.Fatalf("CLUSTER ADDSLOTSRANGE: %v", err)
	}
	for {
		info, err := node.ClusterInfo(ctx).Result()
		if err == nil && strings.Contains(info, "cluster_state:ok") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("cluster not ok: %q, %v", info, err)
		}
		time.Sleep(20 * time.Millisecond)
	}

	url := "rediss-cluster://" + addr
	rdb, err := OpenRedis(url, true)
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	if err := rdb.Set(ctx, "k", "over TLS", 0).Err(); err != nil {
		t.Fatalf("SET with REDIS_TLS_SKIP_VERIFY=true: %v", err)
	}
	if err := PingRedis(ctx, rdb); err != nil {
		t.Errorf("PingRedis with REDIS_TLS_SKIP_VERIFY=true: %v", err)
	}
	strict, err := OpenRedis(url, false)
	if err != nil {
		t.Fatal(err)
	}
	defer strict.Close()
	if err := strict.Get(ctx, "k").Err(); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("GET without skip-verify = %v, want a certificate error", err)
	}
}

// TestRecordHookCluster: on a Redis Cluster each enqueue keeps a pipeline of its own
// (a group's pipeline would wait for every node it touches), and its record still goes
// in front of its task.
func TestRecordHookCluster(t *testing.T) {
	t.Parallel()
	_, rdb := openCluster(t)
	hook := RecordHook(rdb).(recordHook)
	if hook.b != nil {
		t.Fatal("RecordHook on a cluster client groups enqueues")
	}
	rdb.AddHook(hook)
	jobs := NewJobs(rdb, time.Hour, "default")
	client := asynq.NewClientFromRedisClient(rdb)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 3 { // the first may find the script missing from a node's cache
		id := fmt.Sprint("c", i)
		rec, err := enqueueEcho(ctx, jobs, client, id)
		if err != nil {
			t.Fatalf("enqueue %s: %v", id, err)
		}
		if i > 0 && rec.Err() != nil {
			t.Errorf("enqueue %s: record %v", id, rec.Err())
		}
	}
	if j, err := jobs.Get(ctx, "c2"); err != nil || j.State != StatePending || string(j.Payload) != `{"n":1}` {
		t.Errorf("record: %+v, %v", j, err)
	}
	if n, err := rdb.Exists(ctx, asynqTaskKey("default", "c2")).Result(); err != nil || n != 1 {
		t.Errorf("task: %d, %v", n, err)
	}
}
