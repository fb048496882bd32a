package storagetest

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestCluster: StartCluster's cluster is a real one. Keys in slots of three different
// masters are stored on those masters, each of which the others redirect to (MOVED);
// a script over two keys with the same hash tag runs, and one over two slots is refused
// with CROSSSLOT.
func TestCluster(t *testing.T) {
	t.Parallel()
	ctx := ctxFor(t)
	began := time.Now()
	c := StartCluster(t)
	t.Logf("StartCluster took %v", time.Since(began).Round(time.Millisecond))

	addrs := c.Addrs()
	if len(addrs) != 3 || addrs[0] == addrs[1] || addrs[1] == addrs[2] || addrs[0] == addrs[2] {
		t.Fatalf("Addrs() = %v, want three different addresses", addrs)
	}
	if want := "redis-cluster://" + strings.Join(addrs, ","); c.URL() != want {
		t.Errorf("URL() = %q, want %q", c.URL(), want)
	}
	rdb := c.Client(t)

	// The owner of every slot, as the cluster tells it.
	owner := make(map[int64]string)
	slots, err := rdb.ClusterSlots(ctx).Result()
	if err != nil {
		t.Fatalf("CLUSTER SLOTS: %v", err)
	}
	for _, r := range slots {
		for s := r.Start; s <= r.End; s++ {
			owner[int64(s)] = r.Nodes[0].Addr
		}
	}
	if len(owner) != 16384 {
		t.Fatalf("CLUSTER SLOTS covers %d slots, want 16384", len(owner))
	}
	// One key per master: the first of key-0, key-1, ... whose slot it serves.
	keyOn := make(map[string]string) // master address -> key
	var keys []string
	for i := 0; len(keyOn) < 3 && i < 1000; i++ {
		key := fmt.Sprintf("key-%d", i)
		slot, err := rdb.ClusterKeySlot(ctx, key).Result()
		if err != nil {
			t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
		}
		if _, ok := keyOn[owner[slot]]; !ok {
			keyOn[owner[slot]] = key
			keys = append(keys, key)
		}
	}
	if len(keyOn) != 3 {
		t.Fatalf("keys found on %d masters, want 3: %v", len(keyOn), keyOn)
	}
	for _, key := range keys {
		if err := rdb.Set(ctx, key, "v", 0).Err(); err != nil {
			t.Fatalf("SET %s through the cluster client: %v", key, err)
		}
	}
	// Each node asked directly: it has its own key, and redirects for the others'.
	for _, n := range c.Nodes {
		node := n.Client(t)
		for master, key := range keyOn {
			got, err := node.Exists(ctx, key).Result()
			switch {
			case master == n.Addr() && (err != nil || got != 1):
				t.Errorf("EXISTS %s on its master %s = %d, %v; want 1", key, n.Addr(), got, err)
			case master != n.Addr() && (err == nil || !strings.HasPrefix(err.Error(), "MOVED ") || !strings.HasSuffix(err.Error(), " "+master)):
				t.Errorf("EXISTS %s on %s = %d, %v; want MOVED to %s", key, n.Addr(), got, err, master)
			}
		}
	}

	const setBoth = "redis.call('SET', KEYS[1], ARGV[1]); redis.call('SET', KEYS[2], ARGV[1]); return 'OK'"
	tagged := []string{"{job:1}:record", "{job:1}:progress"}
	if err := rdb.Eval(ctx, setBoth, tagged, "same slot").Err(); err != nil {
		t.Fatalf("script over %v: %v", tagged, err)
	}
	got, err := rdb.MGet(ctx, tagged...).Result()
	if err != nil {
		t.Fatalf("MGET %v: %v", tagged, err)
	}
	if diff := cmp.Diff([]any{"same slot", "same slot"}, got); diff != "" {
		t.Errorf("after the script (-want +got):\n%s", diff)
	}
	err = rdb.Eval(ctx, setBoth, keys[:2], "two slots").Err()
	if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
		t.Errorf("script over %v (two masters' slots) = %v, want a CROSSSLOT error", keys[:2], err)
	}
	for _, key := range keys[:2] {
		if v, err := rdb.Get(ctx, key).Result(); err != nil || v != "v" {
			t.Errorf("GET %s after the refused script = %q, %v; want the old value", key, v, err)
		}
	}
}

// TestClusterInfoReady: the readiness StartCluster waits for needs every field.
func TestClusterInfoReady(t *testing.T) {
	t.Parallel()
	ok := "cluster_state:ok\r\ncluster_slots_assigned:16384\r\ncluster_slots_ok:16384\r\ncluster_known_nodes:3\r\ncluster_size:3\r\n"
	for _, tc := range []struct {
		name, info string
		want       bool
	}{
		{"ready", ok, true},
		{"state fail", strings.Replace(ok, "cluster_state:ok", "cluster_state:fail", 1), false},
		{"slots missing", strings.Replace(ok, "assigned:16384", "assigned:10923", 1), false},
		{"slots failing", strings.Replace(ok, "slots_ok:16384", "slots_ok:0", 1), false},
		{"a node unknown", strings.Replace(ok, "known_nodes:3", "known_nodes:2", 1), false},
		{"empty", "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := clusterInfoReady(tc.info); got != tc.want {
				t.Errorf("clusterInfoReady = %v, want %v", got, tc.want)
			}
		})
	}
}

// TestClusterMissingBinaries: without redis-server or redis-cli, StartCluster skips,
// or fails when EnvRequireRedisServer is "1", naming what is missing.
func TestClusterMissingBinaries(t *testing.T) {
	t.Parallel()
	// Any executable passes for redis-server: a missing redis-cli ends the start before
	// a server is run.
	someServer, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name                string
		noServer, require   bool
		wantFatal, wantSkip string
	}{
		{name: "no redis-cli", wantSkip: "needs redis-cli (apt-get install redis-tools)"},
		{name: "no redis-cli, required", require: true, wantFatal: "redis-cli not found; install the Debian package redis-tools"},
		{name: "nothing", noServer: true, wantSkip: "needs redis-server (apt-get install redis-server)"},
		{name: "nothing, required", noServer: true, require: true, wantFatal: "redis-server not found; install the Debian package redis-server"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			server := someServer
			if tc.noServer {
				server = missingRedisServer(t)
			}
			var c *Cluster
			f := runRecording(t, func(tb testing.TB) {
				c = startCluster(tb, server, missingRedisServer(t), tc.require)
			})
			if !strings.Contains(f.fatal, tc.wantFatal) || (tc.wantFatal == "") != (f.fatal == "") {
				t.Errorf("Fatal message %q, want one containing %q", f.fatal, tc.wantFatal)
			}
			if !strings.Contains(f.skip, tc.wantSkip) || (tc.wantSkip == "") != (f.skip == "") {
				t.Errorf("Skip message %q, want one containing %q", f.skip, tc.wantSkip)
			}
			if c != nil {
				t.Errorf("got cluster %v, want none", c)
			}
		})
	}
}
