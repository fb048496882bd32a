package thumbnail_test

import (
	"bytes"
	"context"
	"encoding/json"
	"image"
	"image/color"
	"image/jpeg"
	"net/http"
	"testing"
	"time"

	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
	"github.com/shoestring-go/shoestring/tasks/thumbnail"
	"github.com/shoestring-go/shoestring/web"
)

func jpegOf(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	for i := range img.Pix {
		img.Pix[i] = 200
	}
	img.Set(0, 0, color.Black)
	var buf bytes.Buffer
	if err := jpeg.Encode(&buf, img, nil); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// start runs an app with only image:thumbnail, web and worker.
func start(tb testing.TB) (*hosttest.App, *storagetest.Redis) {
	tb.Helper()
	r := storagetest.StartRedis(tb)
	a := hosttest.Start(tb, thumbnail.Register, map[string]string{"REDIS_URL": r.URL()})
	return a, r
}

func wait(tb testing.TB, jobs *storage.Jobs, id string) storage.Job {
	tb.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		j, err := jobs.Get(context.Background(), id)
		if err != nil {
			tb.Fatal(err)
		}
		if j.State == storage.StateCompleted || j.State == storage.StateFailed {
			return j
		}
		if time.Now().After(deadline) {
			tb.Fatalf("job %s still %s", id, j.State)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestThumbnailResumesFromCheckpoint: a retried thumbnail task skips the sizes its
// checkpoint says are done (their blobs are not rewritten) and makes only the rest.
func TestThumbnailResumesFromCheckpoint(t *testing.T) {
	t.Parallel()
	a, r := start(t)
	ctx := context.Background()
	bucket, rdb := a.Web.Bucket(), r.Client(t)
	const id = "resume1"
	key := thumbnail.UploadKey(id, "jpeg")
	if err := bucket.WriteAll(ctx, key, jpegOf(t, 80, 40), &blob.WriterOptions{ContentType: "image/jpeg"}); err != nil {
		t.Fatal(err)
	}
	// As if an earlier attempt made width 10 and was killed before width 20: its blob
	// and the checkpoint (worker.Checkpoint's key and JSON) are in place.
	sentinel := []byte("made by the earlier attempt")
	done := thumbnail.Thumb{Width: 10, Height: 5, URL: web.FilesPath + thumbnail.ThumbnailKey(id, 10), Bytes: int64(len(sentinel))}
	if err := bucket.WriteAll(ctx, thumbnail.ThumbnailKey(id, 10), sentinel, &blob.WriterOptions{ContentType: "image/jpeg"}); err != nil {
		t.Fatal(err)
	}
	cp, _ := json.Marshal(map[string]any{"next": 1, "thumbnails": []thumbnail.Thumb{done}})
	if err := rdb.Set(ctx, storage.CheckpointKey("default", id), cp, time.Hour).Err(); err != nil {
		t.Fatal(err)
	}

	if _, err := a.Web.Enqueue(ctx, thumbnail.Args{Key: key, Sizes: []int{20, 10}}, host.JobID(id)); err != nil {
		t.Fatal(err)
	}
	j := wait(t, storage.NewJobs(rdb, time.Hour, "default"), id)
	if j.State != storage.StateCompleted || j.Progress != (storage.Progress{Done: 2, Total: 2}) {
		t.Fatalf("job = %+v", j)
	}
	var res thumbnail.Result
	if err := json.Unmarshal(j.Result, &res); err != nil {
		t.Fatal(err)
	}
	if len(res.Thumbnails) != 2 || res.Thumbnails[0] != done || res.Thumbnails[1].Width != 20 || res.Thumbnails[1].Height != 10 {
		t.Fatalf("result = %+v", res)
	}
	got, _ := bucket.ReadAll(ctx, thumbnail.ThumbnailKey(id, 10))
	if !bytes.Equal(got, sentinel) {
		t.Errorf("width 10 was made again; the checkpoint was ignored")
	}
	resp, err := http.Get(a.URL + res.Thumbnails[1].URL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "image/jpeg" {
		t.Errorf("GET %s: %d %s", res.Thumbnails[1].URL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if n, _ := rdb.Exists(ctx, storage.CheckpointKey("default", id)).Result(); n != 0 {
		t.Errorf("checkpoint not removed after completion")
	}
}

// TestUndecodableFailsOnce: input that passes the header check but cannot be decoded
// fails after one attempt, however many retries are allowed.
func TestUndecodableFailsOnce(t *testing.T) {
	t.Parallel()
	a, r := start(t)
	ctx := context.Background()
	data := jpegOf(t, 64, 64)
	key := thumbnail.UploadKey("trunc", "jpeg")
	if err := a.Web.Bucket().WriteAll(ctx, key, data[:len(data)/2], &blob.WriterOptions{ContentType: "image/jpeg"}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Web.Enqueue(ctx, thumbnail.Args{Key: key, Sizes: []int{10}}, host.JobID("trunc"), host.MaxRetry(5)); err != nil {
		t.Fatal(err)
	}
	j := wait(t, storage.NewJobs(r.Client(t), time.Hour, "default"), "trunc")
	if j.State != storage.StateFailed || j.Attempts != 1 || j.Error == "" {
		t.Fatalf("job = %+v", j)
	}
}
