package thumbnail

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"regexp"
	"slices"
	"sync"
	"time"

	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"
	"golang.org/x/sync/semaphore"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/host"
	"github.com/shoestring-go/shoestring/storage"
	"github.com/shoestring-go/shoestring/web"
	"github.com/shoestring-go/shoestring/worker"
)

// Limits of an image:thumbnail payload.
const (
	MaxSizes = config.MaxSizes
	MaxWidth = config.MaxWidth
)

// Args is the payload of an image:thumbnail task: the upload at Key (under uploads/,
// as the upload route stores it) made into one JPEG per width in Sizes (1-16 widths of
// 1-10000 pixels).
type Args struct {
	Key   string `json:"key"`
	Sizes []int  `json:"sizes"`
}

// Kind is "image:thumbnail".
func (Args) Kind() string { return "image:thumbnail" }

var uploadKeyRe = regexp.MustCompile(`^uploads/[a-z0-9]{1,64}\.(jpg|png|gif)$`)

// Validate checks that Key names an upload and Sizes are in range, and sorts Sizes
// and drops duplicates, so that equal requests have equal payloads (for UniqueFor).
func (a *Args) Validate() error {
	if !uploadKeyRe.MatchString(a.Key) {
		return &host.InvalidError{Field: "payload.key", Msg: "must name an upload, as uploads/<id>.jpg|png|gif"}
	}
	if len(a.Sizes) == 0 || len(a.Sizes) > MaxSizes {
		return &host.InvalidError{Field: "payload.sizes", Msg: fmt.Sprintf("must list 1-%d widths", MaxSizes)}
	}
	for _, w := range a.Sizes {
		if w < 1 || w > MaxWidth {
			return &host.InvalidError{Field: "payload.sizes", Msg: fmt.Sprintf("width %d is not 1-%d", w, MaxWidth)}
		}
	}
	a.Sizes = slices.Compact(slices.Sorted(slices.Values(a.Sizes)))
	return nil
}

// Result is the result of an image:thumbnail task, one entry per width made.
type Result struct {
	Thumbnails []Thumb `json:"thumbnails"`
}

// Thumb is one thumbnail: its pixel dimensions, the URL it is served from and its size
// in bytes.
type Thumb struct {
	Width  int    `json:"width"`
	Height int    `json:"height"`
	URL    string `json:"url"`
	Bytes  int64  `json:"bytes"`
}

// UploadKey is the blob key an upload with job id and image format ("jpeg", "png",
// "gif") is stored under.
func UploadKey(id, format string) string {
	ext := format
	if format == "jpeg" {
		ext = "jpg"
	}
	return "uploads/" + id + "." + ext
}

// ThumbnailKey is the blob key of job id's thumbnail of the given width.
func ThumbnailKey(id string, width int) string {
	return fmt.Sprintf("thumbnails/%s/%d.jpg", id, width)
}

// Register adds image:thumbnail and its upload route, POST /api/v1/images, to h.
// Enqueueing one through POST /api/v1/jobs checks that its upload exists (422 if not).
// Decodes share IMAGE_MEMORY_BUDGET per worker process.
func Register(h *host.Host) {
	b := &budget{}
	host.Register(h, func(ctx context.Context, t *worker.Task, a Args) (any, error) {
		res, err := makeThumbnails(ctx, h, b, t, a)
		// The original goes once its thumbnails exist, or when the job fails for good.
		// Not when a shutdown interrupted it: the task runs again.
		final := err == nil || (ctx.Err() == nil && (errors.Is(err, worker.SkipRetry) || t.Retried >= t.MaxRetry))
		if final && !h.Config().KeepOriginals {
			if derr := h.Bucket().Delete(context.WithoutCancel(ctx), a.Key); derr != nil && gcerrors.Code(derr) != gcerrors.NotFound {
				h.Logger().WarnContext(ctx, "delete original", "key", a.Key, "err", derr)
			}
		}
		return res, err
	}, host.BeforeEnqueue(func(ctx context.Context, a Args) error {
		ok, err := h.Bucket().Exists(ctx, a.Key)
		if err != nil {
			return fmt.Errorf("check upload %s: %w", a.Key, err)
		}
		if !ok {
			return &host.InvalidError{Field: "payload.key", Msg: "no such upload", Unprocessable: true}
		}
		return nil
	}))
	h.Router().Handle("/api/v1/images", h.RateLimit(uploadRoute(h))).Methods(http.MethodPost)
}

// checkpoint is the checkpoint of an image:thumbnail task: how many of its sizes are
// done, and what they made.
type checkpoint struct {
	Next       int     `json:"next"`
	Thumbnails []Thumb `json:"thumbnails"`
}

// makeThumbnails makes one JPEG per requested width, writing each and checkpointing it
// as soon as it is made, so a retried task skips the sizes already done. Input that
// cannot be decoded fails at once (worker.SkipRetry): retrying cannot fix it.
func makeThumbnails(ctx context.Context, h *host.Host, b *budget, t *worker.Task, a Args) (any, error) {
	sizes := a.Sizes // sorted and unique: Validate ran
	bucket := h.Bucket()
	var st checkpoint
	if _, err := t.Checkpoint.Load(ctx, &st); err != nil {
		return nil, err
	}
	total := int64(len(sizes))
	if st.Next >= len(sizes) {
		return Result{Thumbnails: st.Thumbnails}, nil
	}
	data, err := bucket.ReadAll(ctx, a.Key)
	if gcerrors.Code(err) == gcerrors.NotFound {
		return nil, fmt.Errorf("upload %s not found: %w", a.Key, worker.SkipRetry)
	}
	if err != nil {
		return nil, fmt.Errorf("read upload %s: %w", a.Key, err)
	}
	info, err := Inspect(data)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, worker.SkipRetry)
	}
	// Wait for this image's share of the budget before decoding anything.
	release, err := b.acquire(ctx, h.Config().ImageMemoryBudget, Cost(info, sizes[st.Next:])+int64(len(data)))
	if err != nil {
		return nil, err
	}
	defer release()
	img, info, err := Decode(data, h.Config().MaxImagePixels)
	if err != nil {
		return nil, fmt.Errorf("%v: %w", err, worker.SkipRetry)
	}
	data = nil // the decoded image is all that is needed now
	for ; st.Next < len(sizes); st.Next++ {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		w, _ := Size(info, sizes[st.Next])
		// A width past the image's own is clamped; two such sizes make one thumbnail.
		if !slices.ContainsFunc(st.Thumbnails, func(th Thumb) bool { return th.Width == w }) {
			jpg, w, h, err := Render(img, info, sizes[st.Next])
			if err != nil {
				return nil, fmt.Errorf("render width %d: %w", sizes[st.Next], err)
			}
			key := ThumbnailKey(t.ID, w)
			if err := bucket.WriteAll(ctx, key, jpg, &blob.WriterOptions{ContentType: "image/jpeg"}); err != nil {
				return nil, fmt.Errorf("write %s: %w", key, err)
			}
			st.Thumbnails = append(st.Thumbnails, Thumb{Width: w, Height: h, URL: web.FilesPath + key, Bytes: int64(len(jpg))})
		}
		next := st
		next.Next++
		if err := t.Checkpoint.Save(ctx, next); err != nil {
			return nil, err
		}
		if err := t.Checkpoint.Progress(ctx, int64(next.Next), total); err != nil {
			return nil, err
		}
	}
	return Result{Thumbnails: st.Thumbnails}, nil
}

// budget is IMAGE_MEMORY_BUDGET as a weighted semaphore (golang.org/x/sync/semaphore)
// on the bytes decodes hold, made on first use, when the configuration is known. Safe
// for concurrent use.
type budget struct {
	once sync.Once
	sem  *semaphore.Weighted
	size int64
}

// acquire waits until need bytes of the budget of size are free, and returns their
// release. An image that needs more than the whole budget fails at once: waiting
// cannot help, and no retry can.
func (b *budget) acquire(ctx context.Context, size, need int64) (func(), error) {
	b.once.Do(func() { b.sem, b.size = semaphore.NewWeighted(size), size })
	if need > b.size {
		return nil, fmt.Errorf("this image needs about %d MiB to decode and resize, more than IMAGE_MEMORY_BUDGET (%d MiB): %w",
			need>>20, b.size>>20, worker.SkipRetry)
	}
	if err := b.sem.Acquire(ctx, need); err != nil {
		return nil, err
	}
	return func() { b.sem.Release(need) }, nil
}

// maxSizesField bounds the `sizes` form field, in bytes.
const maxSizesField = 1 << 10

// Uploads are read into memory (at most MAX_UPLOAD_BYTES each): at most
// maxConcurrentUploads are read at once, so many clients cannot pin unbounded memory. A
// request waits at most slotWait for a slot (then 503), and must keep sending: every
// minRateChunk bytes buy minRateGrace more, so a body trickled at a few bytes a second
// is cut off within minRateGrace, while a slow but real upload (2 KiB/s) goes through.
const (
	maxConcurrentUploads = 8
	slotWait             = 5 * time.Second
	minRateChunk         = 64 << 10
	minRateGrace         = 30 * time.Second
)

// uploadRoute accepts an image and queues its thumbnails: POST /api/v1/images,
// multipart field `image` (JPEG, PNG or GIF) and optional `sizes` ("160,320"). The
// image is checked from its header (format, pixel count) before anything is stored.
func uploadRoute(h *host.Host) http.Handler {
	sem := make(chan struct{}, maxConcurrentUploads)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		wait := time.NewTimer(slotWait)
		defer wait.Stop()
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-wait.C:
			w.Header().Set("Retry-After", "5")
			web.WriteError(w, r, &web.Error{Status: http.StatusServiceUnavailable, Msg: "too many uploads in progress; retry shortly"})
			return
		case <-r.Context().Done():
			return // the client gave up waiting
		}
		cfg := h.Config()
		rc := http.NewResponseController(w)
		_ = rc.SetReadDeadline(time.Now().Add(minRateGrace))
		r.Body = &minRateBody{ReadCloser: r.Body, rc: rc, next: minRateChunk}
		data, sizes, err := readUpload(w, r, cfg.MaxUploadBytes, cfg.ThumbnailSizes)
		if err != nil {
			web.WriteError(w, r, err)
			return
		}
		info, err := Inspect(data)
		if err != nil {
			web.WriteError(w, r, &web.Error{Status: http.StatusUnsupportedMediaType, Field: "image",
				Msg: "image must be a JPEG, PNG or GIF: " + err.Error()})
			return
		}
		if px := int64(info.Width) * int64(info.Height); px > cfg.MaxImagePixels {
			web.WriteError(w, r, &web.Error{Status: http.StatusUnprocessableEntity, Field: "image",
				Msg: fmt.Sprintf("image is %dx%d = %d pixels, over the limit of %d", info.Width, info.Height, px, cfg.MaxImagePixels)})
			return
		}
		if need := Cost(info, sizes); need > cfg.ImageMemoryBudget {
			web.WriteError(w, r, &web.Error{Status: http.StatusUnprocessableEntity, Field: "image",
				Msg: fmt.Sprintf("making these thumbnails of a %dx%d %s needs about %d MiB, over IMAGE_MEMORY_BUDGET (%d MiB)",
					info.Width, info.Height, info.Format, need>>20, cfg.ImageMemoryBudget>>20)})
			return
		}

		id := storage.NewJobID()
		key := UploadKey(id, info.Format)
		ctx := r.Context()
		if err := h.Bucket().WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: "image/" + info.Format}); err != nil {
			web.WriteError(w, r, fmt.Errorf("store upload: %w", err))
			return
		}
		if _, err := h.Enqueue(ctx, Args{Key: key, Sizes: sizes}, host.JobID(id)); err != nil {
			// A fresh context: the client may be gone, and the upload must not stay.
			uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
			defer cancel()
			if derr := h.Bucket().Delete(uctx, key); derr != nil {
				h.Logger().WarnContext(ctx, "undo upload", "key", key, "err", derr)
			}
			web.WriteError(w, r, err)
			return
		}
		web.WriteAccepted(w, storage.Job{ID: id, Type: Args{}.Kind(), State: storage.StatePending})
	})
}

// minRateBody extends the connection's read deadline by minRateGrace each time
// another minRateChunk bytes have arrived.
type minRateBody struct {
	io.ReadCloser
	rc      *http.ResponseController
	n, next int64
}

func (b *minRateBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if b.n += int64(n); b.n >= b.next {
		b.next = b.n + minRateChunk
		_ = b.rc.SetReadDeadline(time.Now().Add(minRateGrace))
	}
	return n, err
}

// readUpload reads the multipart body, at most maxBytes, streaming: no temp files.
func readUpload(w http.ResponseWriter, r *http.Request, maxBytes int64, defaultSizes []int) (data []byte, sizes []int, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return nil, nil, &web.Error{Status: http.StatusBadRequest, Field: "image",
			Msg: "expected a multipart/form-data body with an image field"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, &web.Error{Status: http.StatusBadRequest, Msg: "malformed multipart body: " + err.Error()}
	}
	sizes = defaultSizes
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, nil, multipartError(err)
		}
		switch part.FormName() {
		case "image":
			if data, err = io.ReadAll(part); err != nil {
				return nil, nil, multipartError(err)
			}
		case "sizes":
			raw, err := io.ReadAll(io.LimitReader(part, maxSizesField+1))
			if err != nil {
				return nil, nil, multipartError(err)
			}
			if len(raw) > maxSizesField {
				return nil, nil, &web.Error{Status: http.StatusBadRequest, Field: "sizes", Msg: "sizes is too long"}
			}
			if sizes, err = config.ParseSizes(string(raw)); err != nil {
				return nil, nil, &web.Error{Status: http.StatusBadRequest, Field: "sizes", Msg: "sizes: " + err.Error()}
			}
		}
		part.Close()
	}
	if len(data) == 0 {
		return nil, nil, &web.Error{Status: http.StatusBadRequest, Field: "image", Msg: "image is missing or empty"}
	}
	return data, sizes, nil
}

func multipartError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return &web.Error{Status: http.StatusBadRequest, Msg: "malformed multipart body: " + err.Error()}
}
