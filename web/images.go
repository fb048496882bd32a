package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"gocloud.dev/blob"

	"github.com/shoestring-go/shoestring/config"
	"github.com/shoestring-go/shoestring/worker/task"
	"github.com/shoestring-go/shoestring/worker/thumbnail"
)

// maxSizesField bounds the `sizes` form field, in bytes.
const maxSizesField = 1 << 10

// Uploads are read into memory (at most MaxUploadBytes each): at most
// maxConcurrentUploads are read at once, each within uploadReadTimeout, so slow or many
// clients cannot pin unbounded memory.
const (
	maxConcurrentUploads = 8
	uploadReadTimeout    = 2 * time.Minute
)

// handleImageCreate accepts an image and queues its thumbnails: POST /api/v1/images,
// multipart field `image` (JPEG, PNG or GIF) and optional `sizes` ("160,320"). The
// image is checked from its header (format, pixel count) before anything is stored.
func handleImageCreate(d Deps) http.Handler {
	sem := make(chan struct{}, maxConcurrentUploads)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case sem <- struct{}{}:
			defer func() { <-sem }()
		case <-r.Context().Done():
			return // the client gave up waiting
		}
		_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(uploadReadTimeout))
		data, sizes, err := readUpload(w, r, d.Limits)
		if err != nil {
			writeError(w, r, d.Logger, err)
			return
		}
		info, err := thumbnail.Inspect(data)
		if err != nil {
			writeError(w, r, d.Logger, &apiError{Status: http.StatusUnsupportedMediaType, Field: "image",
				Msg: "image must be a JPEG, PNG or GIF: " + err.Error()})
			return
		}
		if px := int64(info.Width) * int64(info.Height); px > d.Limits.MaxImagePixels {
			writeError(w, r, d.Logger, &apiError{Status: http.StatusUnprocessableEntity, Field: "image",
				Msg: fmt.Sprintf("image is %dx%d = %d pixels, over the limit of %d", info.Width, info.Height, px, d.Limits.MaxImagePixels)})
			return
		}

		id := newJobID()
		key := task.UploadKey(id, info.Format)
		ctx := r.Context()
		if err := d.Bucket.WriteAll(ctx, key, data, &blob.WriterOptions{ContentType: "image/" + info.Format}); err != nil {
			writeError(w, r, d.Logger, fmt.Errorf("store upload: %w", err))
			return
		}
		payload, err := json.Marshal(task.Thumbnail{Key: key, Sizes: sizes})
		if err != nil {
			writeError(w, r, d.Logger, err)
			return
		}
		a, err := enqueue(ctx, d, id, task.TypeThumbnail, defaultQueue(d.Limits.Queues), payload, 0)
		if err != nil {
			if derr := d.Bucket.Delete(ctx, key); derr != nil {
				d.Logger.WarnContext(ctx, "undo upload", "key", key, "err", derr)
			}
			writeError(w, r, d.Logger, err)
			return
		}
		writeAccepted(w, a)
	})
}

// readUpload reads the multipart body, at most MaxUploadBytes, streaming: no temp files.
func readUpload(w http.ResponseWriter, r *http.Request, lim Limits) (data []byte, sizes []int, err error) {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if mt != "multipart/form-data" {
		return nil, nil, &apiError{Status: http.StatusBadRequest, Field: "image",
			Msg: "expected a multipart/form-data body with an image field"}
	}
	r.Body = http.MaxBytesReader(w, r.Body, lim.MaxUploadBytes)
	mr, err := r.MultipartReader()
	if err != nil {
		return nil, nil, &apiError{Status: http.StatusBadRequest, Msg: "malformed multipart body: " + err.Error()}
	}
	sizes = lim.ThumbnailSizes
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
				return nil, nil, &apiError{Status: http.StatusBadRequest, Field: "sizes", Msg: "sizes is too long"}
			}
			if sizes, err = config.ParseSizes(string(raw)); err != nil {
				return nil, nil, &apiError{Status: http.StatusBadRequest, Field: "sizes", Msg: "sizes: " + err.Error()}
			}
		}
		part.Close()
	}
	if len(data) == 0 {
		return nil, nil, &apiError{Status: http.StatusBadRequest, Field: "image", Msg: "image is missing or empty"}
	}
	return data, sizes, nil
}

func multipartError(err error) error {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return err
	}
	return &apiError{Status: http.StatusBadRequest, Msg: "malformed multipart body: " + err.Error()}
}
