package host

import (
	"context"
	"testing"
	"time"

	"gocloud.dev/blob/fileblob"
)

// TestSweepBlobs: blobs written before the cutoff are deleted, later ones are kept,
// on a real file bucket.
func TestSweepBlobs(t *testing.T) {
	t.Parallel()
	bucket, err := fileblob.OpenBucket(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	ctx := context.Background()
	for _, k := range []string{"uploads/a.png", "thumbnails/a/160.jpg", "reports/b.csv"} {
		if err := bucket.WriteAll(ctx, k, []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	cutoff := time.Now().Add(time.Second) // everything so far is past its retention
	time.Sleep(1100 * time.Millisecond)   // file times have a second's resolution on some filesystems
	if err := bucket.WriteAll(ctx, "uploads/fresh.png", []byte("y"), nil); err != nil {
		t.Fatal(err)
	}
	n, err := sweepBlobs(ctx, bucket, cutoff)
	if err != nil || n != 3 {
		t.Fatalf("swept %d, %v; want 3", n, err)
	}
	for _, k := range []string{"uploads/a.png", "thumbnails/a/160.jpg", "reports/b.csv"} {
		if ok, _ := bucket.Exists(ctx, k); ok {
			t.Errorf("%s survived the sweep", k)
		}
	}
	if ok, _ := bucket.Exists(ctx, "uploads/fresh.png"); !ok {
		t.Errorf("a fresh blob was swept")
	}
}
