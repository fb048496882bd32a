package storagetest

import (
	"context"
	"testing"
	"time"
)

// TestSentinelFailover: killing the master of StartSentinel's deployment promotes the
// replica within seconds.
func TestSentinelFailover(t *testing.T) {
	t.Parallel()
	s := StartSentinel(t)
	ctx := context.Background()
	if a, err := s.MasterAddr(ctx); err != nil || a != s.Master.Addr() {
		t.Fatalf("master = %q, %v; want %s", a, err, s.Master.Addr())
	}
	s.Master.Kill(t)
	start := time.Now()
	waitUntil(t, 20*time.Second, "the replica promoted", func(ctx context.Context) bool {
		a, err := s.MasterAddr(ctx)
		return err == nil && a == s.Replica.Addr()
	})
	t.Logf("sentinel failover took %v", time.Since(start).Round(time.Millisecond))
}
