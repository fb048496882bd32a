// Package task defines the task types shoestring knows: their names, payloads and
// results, and how a payload is validated before it is enqueued. The web tier uses it to
// reject bad work with a 4xx before anything is stored; the worker uses it to decode.
package task

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Task type names.
const (
	TypeEcho      = "echo"
	TypeThumbnail = "image:thumbnail"
	TypeBatch     = "batch:count"
)

// ErrUnknownType is returned by Validate for a type that no handler serves.
var ErrUnknownType = errors.New("unknown task type")

// InvalidError says which payload field is wrong and why.
type InvalidError struct {
	Field string // JSON name within the payload, "" for the payload as a whole
	Msg   string
}

func (e *InvalidError) Error() string {
	if e.Field == "" {
		return "invalid payload: " + e.Msg
	}
	return fmt.Sprintf("invalid payload: %s: %s", e.Field, e.Msg)
}

// Types returns the registered task type names, sorted.
func Types() []string { return []string{TypeBatch, TypeEcho, TypeThumbnail} }

// BatchCount is the payload of a batch:count task: count to N (1 to MaxBatchN) in
// units of one, sleeping StepMS (0 to MaxBatchStepMS) milliseconds per unit and
// checkpointing after each. It is the built-in example of long work committed in small
// units, and what the fault tests kill.
type BatchCount struct {
	N      int64 `json:"n"`
	StepMS int64 `json:"step_ms"`
}

// BatchCountResult is the result of a batch:count task: the count reached, and how many
// units were executed in all, across every attempt (UnitsRun - Counted were redone).
type BatchCountResult struct {
	Counted  int64 `json:"counted"`
	UnitsRun int64 `json:"units_run"`
}

// Limits of a batch:count payload.
const (
	MaxBatchN      = 1_000_000
	MaxBatchStepMS = 60_000
)

// Echo is the payload of an echo task: the result repeats Message after sleeping
// SleepMS milliseconds (0 to MaxEchoSleepMS), returning early when cancelled. It exists
// for smoke tests and benchmarks.
type Echo struct {
	Message string `json:"message"`
	SleepMS int64  `json:"sleep_ms"`
}

// EchoResult is the result of an echo task.
type EchoResult struct {
	Message string `json:"message"`
}

// Limits of an echo payload.
const (
	MaxEchoSleepMS  = 3_600_000
	MaxEchoMessage  = 64 << 10
	maxKeyOrIDChars = 128
)

// Thumbnail is the payload of an image:thumbnail task: the upload at Key (under
// uploads/, as the upload route stores it) made into one JPEG per width in Sizes.
type Thumbnail struct {
	Key   string `json:"key"`
	Sizes []int  `json:"sizes"`
}

// ThumbnailResult is the result of an image:thumbnail task, one entry per width made.
type ThumbnailResult struct {
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

// Limits of a thumbnail payload.
const (
	MaxSizes = 16
	MaxWidth = 10000
)

var uploadKeyRe = regexp.MustCompile(`^uploads/[a-z0-9]{1,64}\.(jpg|png|gif)$`)

// UploadKey is the blob key an upload with id and image format ("jpeg", "png", "gif")
// is stored under.
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

// Validate checks payload for typ and returns it re-encoded in canonical form. Errors:
// ErrUnknownType, or *InvalidError naming the field.
func Validate(typ string, payload json.RawMessage) ([]byte, error) {
	switch typ {
	case TypeEcho:
		var p Echo
		if err := strictDecode(payload, &p); err != nil {
			return nil, err
		}
		if p.SleepMS < 0 || p.SleepMS > MaxEchoSleepMS {
			return nil, &InvalidError{Field: "sleep_ms", Msg: fmt.Sprintf("must be 0-%d", MaxEchoSleepMS)}
		}
		if len(p.Message) > MaxEchoMessage {
			return nil, &InvalidError{Field: "message", Msg: fmt.Sprintf("longer than %d bytes", MaxEchoMessage)}
		}
		return json.Marshal(p)
	case TypeThumbnail:
		var p Thumbnail
		if err := strictDecode(payload, &p); err != nil {
			return nil, err
		}
		if !uploadKeyRe.MatchString(p.Key) {
			return nil, &InvalidError{Field: "key", Msg: "must name an upload, as uploads/<id>.jpg|png|gif"}
		}
		if len(p.Sizes) == 0 || len(p.Sizes) > MaxSizes {
			return nil, &InvalidError{Field: "sizes", Msg: fmt.Sprintf("must list 1-%d widths", MaxSizes)}
		}
		for _, w := range p.Sizes {
			if w < 1 || w > MaxWidth {
				return nil, &InvalidError{Field: "sizes", Msg: fmt.Sprintf("width %d is not 1-%d", w, MaxWidth)}
			}
		}
		p.Sizes = slices.Compact(slices.Sorted(slices.Values(p.Sizes)))
		return json.Marshal(p)
	case TypeBatch:
		var p BatchCount
		if err := strictDecode(payload, &p); err != nil {
			return nil, err
		}
		if p.N < 1 || p.N > MaxBatchN {
			return nil, &InvalidError{Field: "n", Msg: fmt.Sprintf("must be 1-%d", MaxBatchN)}
		}
		if p.StepMS < 0 || p.StepMS > MaxBatchStepMS {
			return nil, &InvalidError{Field: "step_ms", Msg: fmt.Sprintf("must be 0-%d", MaxBatchStepMS)}
		}
		return json.Marshal(p)
	default:
		return nil, fmt.Errorf("%w %q (known: %s)", ErrUnknownType, typ, strings.Join(Types(), ", "))
	}
}

func strictDecode(payload json.RawMessage, v any) error {
	if len(bytes.TrimSpace(payload)) == 0 {
		payload = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			return &InvalidError{Field: te.Field, Msg: "must be a " + te.Type.String()}
		}
		return &InvalidError{Msg: err.Error()}
	}
	return nil
}
