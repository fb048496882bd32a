package host

import (
	"context"
	"fmt"
	"io"
	"testing"
	"time"

	"gocloud.dev/blob/fileblob"

	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
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

// TestSweepBlobsS3: the sweeper lists and deletes through an s3:// bucket (an in-process
// S3 server over HTTP) by the ModTime S3 reports: a cutoff in the past keeps every blob,
// one in the future deletes them all, across more than one listing page.
func TestSweepBlobsS3(t *testing.T) {
	t.Parallel()
	s := storagetest.StartS3(t)
	env := s.Env()
	ctx := context.Background()
	bucket, err := storage.OpenBucket(ctx, s.URL(), storage.BlobCredentials{AWSAccessKeyID: env["AWS_ACCESS_KEY_ID"], AWSSecretAccessKey: env["AWS_SECRET_ACCESS_KEY"]})
	if err != nil {
		t.Fatal(err)
	}
	defer bucket.Close()
	const blobs = 1005 // s3blob lists 1000 keys a page
	for i := range blobs {
		if err := bucket.WriteAll(ctx, fmt.Sprintf("thumbnails/j%04d/160.jpg", i), []byte("x"), nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := sweepBlobs(ctx, bucket, time.Now().Add(-time.Hour)); err != nil || n != 0 {
		t.Fatalf("cutoff an hour ago: swept %d, %v; want 0", n, err)
	}
	if n, err := sweepBlobs(ctx, bucket, time.Now().Add(time.Minute)); err != nil || n != blobs {
		t.Fatalf("cutoff in a minute: swept %d, %v; want %d", n, err, blobs)
	}
	if obj, err := bucket.List(nil).Next(ctx); err != io.EOF {
		t.Errorf("left after the sweep: %+v %v", obj, err)
	}
}
