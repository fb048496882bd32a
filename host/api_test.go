package host_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"image"
	"image/color"
	"image/png"
	"io"
	"mime/multipart"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/hibiken/asynq"
	"github.com/redis/go-redis/v9"
	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/host/hosttest"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/storage/storagetest"
	"github.com/shoestring-go/shoestring/tasks/demo"
	"github.com/shoestring-go/shoestring/tasks/thumbnail"
	"github.com/shoestring-go/shoestring/web"
)

type fixture struct {
	srv    struct{ URL string }
	rdb    redis.UniversalClient
	bucket *blob.Bucket
	redis  *storagetest.Redis
	app    *hosttest.App
}

// referenceApp registers what the reference app's main does.
func referenceApp(h *host.Host) {
	thumbnail.Register(h)
	demo.Register(h)
}

// newFixture runs the reference app's web tier alone on r (no worker: jobs stay
// queued), with a 64 KiB upload limit.
func newFixture(tb testing.TB, r *storagetest.Redis) *fixture {
	tb.Helper()
	a := hosttest.Start(tb, referenceApp, map[string]string{"REDIS_URL": r.URL(), "MAX_UPLOAD_BYTES": "64KiB",
		"API_TOKEN": testToken, "DEMO_TASKS": "true",
		"THUMBNAIL_SIZES": "100", "QUEUES": "default=3,low=1"}, hosttest.Options{WebOnly: true})
	f := &fixture{rdb: a.Web.Redis(), bucket: a.Web.Bucket(), redis: r, app: a}
	f.srv.URL = a.URL
	return f
}

// untouched fails the test when anything was written to Redis or the blob store, but
// for the client's upload rate counter: a refused upload counts against the limit too.
func (f *fixture) untouched(tb testing.TB) {
	tb.Helper()
	keys, err := f.rdb.Keys(context.Background(), "*").Result()
	if err != nil {
		tb.Fatal(err)
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return strings.HasPrefix(k, "rate:shoestring:") })
	if len(keys) != 0 {
		tb.Errorf("Redis was written: %v", keys)
	}
	it := f.bucket.List(nil)
	if obj, err := it.Next(context.Background()); err == nil {
		tb.Errorf("blob store was written: %s", obj.Key)
	}
}

func multipartBody(tb testing.TB, fields map[string][]byte) (string, *bytes.Buffer) {
	tb.Helper()
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for name, v := range fields {
		var w io.Writer
		if name == "image" {
			w, _ = mw.CreateFormFile(name, "upload")
		} else {
			w, _ = mw.CreateFormField(name)
		}
		w.Write(v)
	}
	mw.Close()
	return mw.FormDataContentType(), &buf
}

func pngBytes(tb testing.TB, w, h int) []byte {
	tb.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	img.Set(0, 0, color.RGBA{R: 255, A: 255})
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// pngBomb is a 57-byte PNG whose header claims w x h pixels.
func pngBomb(w, h uint32) []byte {
	var b bytes.Buffer
	b.WriteString("\x89PNG\r\n\x1a\n")
	ihdr := make([]byte, 13)
	binary.BigEndian.PutUint32(ihdr[0:], w)
	binary.BigEndian.PutUint32(ihdr[4:], h)
	ihdr[8], ihdr[9] = 8, 2 // 8-bit RGB
	chunk := append([]byte("IHDR"), ihdr...)
	binary.Write(&b, binary.BigEndian, uint32(len(ihdr)))
	b.Write(chunk)
	binary.Write(&b, binary.BigEndian, crc32.ChecksumIEEE(chunk))
	return b.Bytes()
}

type errorResp struct {
	Error string `json:"error"`
	Field string `json:"field"`
}

func do(tb testing.TB, req *http.Request) (int, errorResp, http.Header) {
	tb.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var e errorResp
	raw, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 400 {
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			tb.Errorf("error content type %q, want application/json", ct)
		}
		if err := json.Unmarshal(raw, &e); err != nil || e.Error == "" {
			tb.Errorf("error body %q is not {\"error\": ...}", raw)
		}
	}
	return resp.StatusCode, e, resp.Header
}

// TestBadInputChangesNothing: every kind of bad request gets its 4xx with a JSON error
// naming the field, and leaves Redis and the blob store untouched.
func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	f := newFixture(t, r)
	big := bytes.Repeat([]byte("x"), 100<<10)

	tests := []struct {
		name      string
		req       func() *http.Request
		wantCode  int
		wantField string
	}{
		{"missing image", func() *http.Request {
			ct, body := multipartBody(t, map[string][]byte{"sizes": []byte("100")})
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)
		}, 400, "image"},
		{"not multipart", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", "application/json", strings.NewReader(`{}`))
		}, 400, "image"},
		{"not an image", func() *http.Request {
			ct, body := multipartBody(t, map[string][]byte{"image": []byte("%PDF-1.7 hello")})
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)
		}, 415, "image"},
		{"body over MAX_UPLOAD_BYTES", func() *http.Request {
			ct, body := multipartBody(t, map[string][]byte{"image": big})
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)
		}, 413, ""},
		{"100000x100000 pixel bomb", func() *http.Request {
			ct, body := multipartBody(t, map[string][]byte{"image": pngBomb(100000, 100000)})
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)
		}, 422, "image"},
		{"sizes not numbers", func() *http.Request {
			ct, body := multipartBody(t, map[string][]byte{"image": pngBytes(t, 20, 10), "sizes": []byte("small,large")})
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)
		}, 400, "sizes"},
		{"sizes out of range", func() *http.Request {
			ct, body := multipartBody(t, map[string][]byte{"image": pngBytes(t, 20, 10), "sizes": []byte("0,100")})
			return mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)
		}, 400, "sizes"},
		{"malformed JSON", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo",`))
		}, 400, ""},
		{"trailing JSON", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo"} {}`))
		}, 400, ""},
		{"unknown field", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo","priority":1}`))
		}, 400, ""},
		{"missing type", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"payload":{}}`))
		}, 400, "type"},
		{"unknown task type", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"mine:bitcoin"}`))
		}, 422, "type"},
		{"bad payload field", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo","payload":{"sleep_ms":"soon"}}`))
		}, 400, "payload.sleep_ms"},
		{"payload out of range", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo","payload":{"sleep_ms":-1}}`))
		}, 400, "payload.sleep_ms"},
		{"queue not served", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo","queue":"urgent"}`))
		}, 422, "queue"},
		{"bad duration", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo","process_in":"tomorrow"}`))
		}, 400, ""},
		{"max_retry out of range", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo","max_retry":1000}`))
		}, 400, "max_retry"},
		{"thumbnail of a missing upload", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json",
				strings.NewReader(`{"type":"image:thumbnail","payload":{"key":"uploads/nope.png","sizes":[10]}}`))
		}, 422, "payload.key"},
		{"thumbnail of a key outside uploads", func() *http.Request {
			return mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json",
				strings.NewReader(`{"type":"image:thumbnail","payload":{"key":"../etc/passwd","sizes":[10]}}`))
		}, 400, "payload.key"},
		{"unknown job", func() *http.Request { return mustReq(t, "GET", f.srv.URL+"/api/v1/jobs/nosuchjob", "", nil) }, 404, ""},
		{"job id with odd characters", func() *http.Request { return mustReq(t, "GET", f.srv.URL+"/api/v1/jobs/a%20b", "", nil) }, 404, ""},
		{"missing file", func() *http.Request { return mustReq(t, "GET", f.srv.URL+"/api/v1/files/uploads/none.png", "", nil) }, 404, ""},
		{"dot-dot file key", func() *http.Request {
			return mustReq(t, "GET", f.srv.URL+"/api/v1/files/uploads/%2e%2e/secret", "", nil)
		}, 404, ""},
		{"hidden file key", func() *http.Request { return mustReq(t, "GET", f.srv.URL+"/api/v1/files/.attrs", "", nil) }, 404, ""},
		{"unknown route", func() *http.Request { return mustReq(t, "GET", f.srv.URL+"/api/v2/jobs", "", nil) }, 404, ""},
		{"wrong method", func() *http.Request { return mustReq(t, "DELETE", f.srv.URL+"/api/v1/jobs", "", nil) }, 405, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, e, _ := do(t, tc.req())
			if code != tc.wantCode || e.Field != tc.wantField {
				t.Errorf("got %d field %q (%s), want %d field %q", code, e.Field, e.Error, tc.wantCode, tc.wantField)
			}
			f.untouched(t)
		})
	}
}

func mustReq(tb testing.TB, method, url, ct string, body io.Reader) *http.Request {
	tb.Helper()
	req, err := http.NewRequest(method, url, body)
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+testToken)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	return req
}

// TestAcceptedWork: a good upload and a good job are stored, recorded and queued.
func TestAcceptedWork(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRedis(t)
	f := newFixture(t, r)
	ctx := context.Background()
	ins := asynq.NewInspectorFromRedisClient(f.rdb)

	ct, body := multipartBody(t, map[string][]byte{"image": pngBytes(t, 30, 20), "sizes": []byte("10, 20,10")})
	resp, err := http.Post(f.srv.URL+"/api/v1/images", ct, body)
	if err != nil {
		t.Fatal(err)
	}
	var acc web.Accepted
	json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if resp.StatusCode != 202 || acc.State != "pending" || acc.Type != "image:thumbnail" || resp.Header.Get("Location") != acc.StatusURL {
		t.Fatalf("upload: %d %+v", resp.StatusCode, acc)
	}
	// The request's log line names the job; no line of its own at the default level.
	named := false
	for line := range strings.SplitSeq(f.app.Output(), "\n") {
		if strings.Contains(line, `"job_id":"`+acc.ID+`"`) {
			named = named || strings.Contains(line, `"msg":"http request"`) && strings.Contains(line, `"task_type":"image:thumbnail"`)
			if strings.Contains(line, `"msg":"job enqueued"`) {
				t.Errorf("an enqueue through the API logged its own line at info: %s", line)
			}
		}
	}
	if !named {
		t.Errorf("no request log line names job %s:\n%s", acc.ID, f.app.Output())
	}
	ti, err := ins.GetTaskInfo("default", acc.ID)
	if err != nil {
		t.Fatalf("task not queued: %v", err)
	}
	if diff := cmp.Diff(`{"key":"uploads/`+acc.ID+`.png","sizes":[10,20]}`, string(ti.Payload)); diff != "" {
		t.Errorf("payload (-want +got):\n%s", diff)
	}
	stored, err := f.bucket.Attributes(ctx, "uploads/"+acc.ID+".png")
	if err != nil || stored.ContentType != "image/png" {
		t.Fatalf("upload not stored as image/png: %v %v", stored, err)
	}
	fr, err := http.Get(f.srv.URL + "/api/v1/files/uploads/" + acc.ID + ".png")
	if err != nil {
		t.Fatal(err)
	}
	fr.Body.Close()
	if fr.StatusCode != 200 || fr.Header.Get("Content-Type") != "image/png" {
		t.Errorf("file GET: %d %s", fr.StatusCode, fr.Header.Get("Content-Type"))
	}

	resp, err = apiPost(f.srv.URL+"/api/v1/jobs", `{"type":"echo","payload":{"message":"later"},"queue":"low","process_in":"1h","max_retry":2,"timeout":30,"unique_for":"10m"}`)
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&acc)
	resp.Body.Close()
	if resp.StatusCode != 202 || acc.State != "scheduled" {
		t.Fatalf("job: %d %+v", resp.StatusCode, acc)
	}
	ti, err = ins.GetTaskInfo("low", acc.ID)
	if err != nil || ti.State != asynq.TaskStateScheduled || ti.MaxRetry != 2 || ti.Timeout != 30*time.Second {
		t.Fatalf("scheduled task: %+v %v", ti, err)
	}
	var j storage.Job
	jr, _ := http.Get(f.srv.URL + acc.StatusURL)
	json.NewDecoder(jr.Body).Decode(&j)
	jr.Body.Close()
	if j.State != "scheduled" || j.Queue != "low" || j.Type != "echo" {
		t.Errorf("job record %+v", j)
	}

	// The same job again within unique_for: 409, and no second record.
	before, _ := f.rdb.Keys(ctx, "shoestring:{*}:job:*").Result()
	resp, _ = apiPost(f.srv.URL+"/api/v1/jobs", `{"type":"echo","payload":{"message":"later"},"queue":"low","unique_for":"10m"}`)
	resp.Body.Close()
	after, _ := f.rdb.Keys(ctx, "shoestring:{*}:job:*").Result()
	if resp.StatusCode != http.StatusConflict || len(after) != len(before) {
		t.Errorf("duplicate: %d, job records %d -> %d", resp.StatusCode, len(before), len(after))
	}
}

// TestEnqueueWhileRedisDown: with Redis stopped, enqueueing answers 503 quickly with a
// JSON error and stores nothing; when Redis is back, it works again.
func TestEnqueueWhileRedisDown(t *testing.T) {
	t.Parallel()
	r := storagetest.StartRealRedis(t)
	f := newFixture(t, r)
	r.Stop(t)

	start := time.Now()
	code, e, h := do(t, mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo"}`)))
	took := time.Since(start)
	if code != http.StatusServiceUnavailable || h.Get("Retry-After") == "" {
		t.Fatalf("got %d %+v, want 503 with Retry-After", code, e)
	}
	if took > 6*time.Second {
		t.Errorf("503 took %v", took)
	}
	ct, body := multipartBody(t, map[string][]byte{"image": pngBytes(t, 8, 8)})
	if code, _, _ := do(t, mustReq(t, "POST", f.srv.URL+"/api/v1/images", ct, body)); code != http.StatusServiceUnavailable {
		t.Fatalf("upload with Redis down: %d, want 503", code)
	}
	if obj, err := f.bucket.List(nil).Next(context.Background()); err == nil {
		t.Errorf("the refused upload was left in the blob store: %s", obj.Key)
	}

	r.Start(t)
	waitFor(t, 10*time.Second, func() bool {
		code, _, _ := do(t, mustReq(t, "POST", f.srv.URL+"/api/v1/jobs", "application/json", strings.NewReader(`{"type":"echo"}`)))
		return code == http.StatusAccepted
	})
}

func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
