package web

import (
	"fmt"
	"net/http"
	"regexp"
	"strings"

	"github.com/gorilla/mux"
	"gocloud.dev/gcerrors"
)

// FilesPath is where GET /api/v1/files/{key} serves blobs: FilesPath + key is the URL
// of the blob at key.
const FilesPath = "/api/v1/files/"

// blobKeyRe admits keys of segments that start with a letter, digit, '_' or '-': no
// "..", no hidden files, no absolute paths. Keys ending ".attrs" are fileblob's metadata
// sidecars and are refused separately.
var blobKeyRe = regexp.MustCompile(`^[A-Za-z0-9_-][A-Za-z0-9._-]*(/[A-Za-z0-9_-][A-Za-z0-9._-]*)*$`)

// handleFileGet serves a stored blob with its content type: GET /api/v1/files/{key...}.
// Range and conditional requests work (http.ServeContent).
func handleFileGet(d Deps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := mux.Vars(r)["key"]
		if len(key) > 512 || !blobKeyRe.MatchString(key) || strings.HasSuffix(key, ".attrs") {
			WriteError(w, r, &Error{Status: http.StatusNotFound, Msg: "no such file"})
			return
		}
		rd, err := d.Bucket.NewReader(r.Context(), key, nil)
		if gcerrors.Code(err) == gcerrors.NotFound {
			WriteError(w, r, &Error{Status: http.StatusNotFound, Msg: "no such file"})
			return
		}
		if err != nil {
			WriteError(w, r, fmt.Errorf("open %s: %w", key, err))
			return
		}
		defer rd.Close()
		w.Header().Set("Content-Type", rd.ContentType())
		w.Header().Set("X-Content-Type-Options", "nosniff")
		// Keys are never reused: a job id is random and a thumbnail is made once.
		w.Header().Set("Cache-Control", "public, max-age=31536000, immutable")
		http.ServeContent(w, r, "", rd.ModTime(), rd)
	})
}
