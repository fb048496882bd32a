package storagetest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

const (
	// clusterNodes is how many masters StartCluster starts.
	clusterNodes = 3
	// clusterCreateTimeout bounds redis-cli --cluster create, which polls until every
	// node has joined.
	clusterCreateTimeout = 30 * time.Second
	// clusterReadyTimeout bounds the wait, after the create, for every node to see the
	// whole cluster.
	clusterReadyTimeout = 15 * time.Second
)

// Cluster is a Redis Cluster owned by one test: three masters and no replicas, each a
// redis-server process (--cluster-enabled yes, --save "", --appendonly no) on a free
// port with its own dir and its nodes-<port>.conf there, the 16384 hash slots split
// among them by redis-cli --cluster create. A node that is stopped and started again
// rejoins with its slots but without its keys. cluster-node-timeout is Redis's default,
// 15 s: a node killed is not judged failed before then, and with no replicas nothing
// takes over its slots.
type Cluster struct {
	// Nodes are the masters, in the order they were started.
	Nodes []*Redis
}

// StartCluster starts the cluster and returns once every node reports cluster_state:ok,
// knows the three nodes and sees all 16384 slots assigned (CLUSTER INFO). Every node is
// stopped in tb.Cleanup. When redis-server or redis-cli is not installed it calls
// tb.Skip, or tb.Fatalf when EnvRequireRedisServer is "1". Safe to call from parallel
// tests: every call gets its own ports and dirs.
func StartCluster(tb testing.TB) *Cluster {
	tb.Helper()
	return startCluster(tb, findRedisServer(), findBinary("redis-cli"), os.Getenv(EnvRequireRedisServer) == "1")
}

// findBinary returns the path of the program name (on PATH, or in redisServerDirs),
// or "" when it is not installed.
func findBinary(name string) string {
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	for _, dir := range redisServerDirs {
		if p, err := exec.LookPath(filepath.Join(dir, name)); err == nil {
			return p
		}
	}
	return ""
}

// startCluster is StartCluster with the paths of redis-server and redis-cli and the
// EnvRequireRedisServer setting as parameters, so that tests can take the paths for a
// missing binary. A path that is "" or not an executable file counts as "not installed".
func startCluster(tb testing.TB, server, cli string, requireReal bool) *Cluster {
	tb.Helper()
	// A missing redis-server is startArgs's to report, in its words.
	if _, err := exec.LookPath(server); err == nil {
		if _, err := exec.LookPath(cli); err != nil {
			if requireReal {
				tb.Fatalf("storagetest: redis-cli not found; install the Debian package redis-tools (%s=1)", EnvRequireRedisServer)
			}
			tb.Skip("storagetest: needs redis-cli (apt-get install redis-tools)")
		}
	}
	c := &Cluster{}
	for range clusterNodes {
		c.Nodes = append(c.Nodes, startArgs(tb, server, requireReal, true, clusterNodeArgs(tb)))
	}

	ctx, cancel := context.WithTimeout(context.Background(), clusterCreateTimeout)
	defer cancel()
	args := append(append([]string{"--cluster", "create"}, c.Addrs()...), "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		tb.Fatalf("storagetest: redis-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}

	for _, n := range c.Nodes {
		waitClusterNode(tb, n.Addr())
	}
	return c
}

// waitClusterNode waits until the node at addr sees the whole cluster (clusterInfoReady)
// and calls tb.Fatalf, after logging the node's last CLUSTER INFO, when it has not
// within clusterReadyTimeout.
func waitClusterNode(tb testing.TB, addr string) {
	tb.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	last, ready := "(no answer)", false
	defer func() { // runs on tb.Fatalf too
		if !ready {
			tb.Logf("storagetest: last CLUSTER INFO of %s:\n%s", addr, last)
		}
	}()
	waitUntil(tb, clusterReadyTimeout, "cluster node "+addr+" to see the whole cluster", func(ctx context.Context) bool {
		info, err := rdb.ClusterInfo(ctx).Result()
		if err != nil {
			last = err.Error()
			return false
		}
		last = info
		return clusterInfoReady(info)
	})
	ready = true
}

// clusterNodeArgs returns the command line of one cluster node (see Redis.args). Its
// cluster bus gets a free port of its own: Redis's default, the node's port plus 10000,
// is past 65535 for a node on an ephemeral port above 55535. A restart keeps it, as the
// other nodes know the node by both.
func clusterNodeArgs(tb testing.TB) func(r *Redis) []string {
	busPort, forPort := 0, 0 // only args' caller, which holds r.mu, touches them
	return func(r *Redis) []string {
		if forPort != r.port {
			p, err := freePort()
			if err != nil {
				tb.Errorf("storagetest: %v", err)
			}
			busPort, forPort = p, r.port
		}
		return []string{
			"--cluster-enabled", "yes",
			"--cluster-config-file", filepath.Join(r.dir, "nodes-"+strconv.Itoa(r.port)+".conf"),
			"--cluster-port", strconv.Itoa(busPort),
			"--save", "", "--appendonly", "no", "--daemonize", "no",
		}
	}
}

// clusterInfoReady reports whether a CLUSTER INFO reply shows the whole cluster: state
// ok, every slot assigned and served, all the nodes known.
func clusterInfoReady(info string) bool {
	fields := make(map[string]string)
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			fields[k] = v
		}
	}
	return fields["cluster_state"] == "ok" && fields["cluster_slots_assigned"] == "16384" &&
		fields["cluster_slots_ok"] == "16384" && fields["cluster_known_nodes"] == strconv.Itoa(clusterNodes)
}

// Addrs returns the nodes' addresses, "127.0.0.1:PORT", in the order of Nodes.
func (c *Cluster) Addrs() []string {
	addrs := make([]string, len(c.Nodes))
	for i, n := range c.Nodes {
		addrs[i] = n.Addr()
	}
	return addrs
}

// URL returns the cluster as a REDIS_URL: redis-cluster://host:port,host:port,host:port.
func (c *Cluster) URL() string {
	return "redis-cluster://" + strings.Join(c.Addrs(), ",")
}

// Client returns a new go-redis cluster client seeded with every node, closed in
// tb.Cleanup (before the nodes are stopped).
func (c *Cluster) Client(tb testing.TB) *redis.ClusterClient {
	tb.Helper()
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	tb.Cleanup(func() {
		if err := rdb.Close(); err != nil && !errors.Is(err, redis.ErrClosed) {
			tb.Errorf("storagetest: close redis cluster client: %v", err)
		}
	})
	return rdb
}
