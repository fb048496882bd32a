package worker

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"

	"github.com/hibiken/asynq"
	"gocloud.dev/blob"
	"gocloud.dev/gcerrors"

	"github.com/shoestring-go/shoestring/worker/task"
	"github.com/shoestring-go/shoestring/worker/thumbnail"
)

// FilesPath is where the web tier serves blobs; thumbnail URLs point under it.
const FilesPath = "/api/v1/files/"

// thumbnailState is the checkpoint of an image:thumbnail task: how many of its sizes
// are done, and what they made.
type thumbnailState struct {
	Next       int          `json:"next"`
	Thumbnails []task.Thumb `json:"thumbnails"`
}

// thumbnailHandler makes one JPEG per requested width, writing each and checkpointing
// it as soon as it is made, so a retried task skips the sizes already done. Input that
// cannot be decoded fails at once (asynq.SkipRetry): retrying cannot fix it.
func thumbnailHandler(bucket *blob.Bucket, maxPixels int64) Handler {
	return func(ctx context.Context, t *Task) (any, error) {
		var p task.Thumbnail
		if err := json.Unmarshal(t.Payload, &p); err != nil {
			return nil, fmt.Errorf("decode thumbnail payload: %v: %w", err, asynq.SkipRetry)
		}
		var st thumbnailState
		if _, err := t.Checkpoint.Load(ctx, &st); err != nil {
			return nil, err
		}
		total := int64(len(p.Sizes))
		if st.Next >= len(p.Sizes) {
			return task.ThumbnailResult{Thumbnails: st.Thumbnails}, nil
		}
		data, err := bucket.ReadAll(ctx, p.Key)
		if gcerrors.Code(err) == gcerrors.NotFound {
			return nil, fmt.Errorf("upload %s not found: %w", p.Key, asynq.SkipRetry)
		}
		if err != nil {
			return nil, fmt.Errorf("read upload %s: %w", p.Key, err)
		}
		img, info, err := thumbnail.Decode(data, maxPixels)
		if err != nil {
			return nil, fmt.Errorf("%v: %w", err, asynq.SkipRetry)
		}
		data = nil // the decoded image is all that is needed now
		for ; st.Next < len(p.Sizes); st.Next++ {
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			w, _ := thumbnail.Size(info, p.Sizes[st.Next])
			// A width past the image's own is clamped; two such sizes make one thumbnail.
			if !slices.ContainsFunc(st.Thumbnails, func(th task.Thumb) bool { return th.Width == w }) {
				jpg, w, h, err := thumbnail.Render(img, info, p.Sizes[st.Next])
				if err != nil {
					return nil, fmt.Errorf("render width %d: %w", p.Sizes[st.Next], err)
				}
				key := task.ThumbnailKey(t.ID, w)
				if err := bucket.WriteAll(ctx, key, jpg, &blob.WriterOptions{ContentType: "image/jpeg"}); err != nil {
					return nil, fmt.Errorf("write %s: %w", key, err)
				}
				st.Thumbnails = append(st.Thumbnails, task.Thumb{Width: w, Height: h, URL: FilesPath + key, Bytes: int64(len(jpg))})
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
		return task.ThumbnailResult{Thumbnails: st.Thumbnails}, nil
	}
}
