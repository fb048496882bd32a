package web

import (
	"fmt"
	"mime"
	"net/http"
	"path"
	"regexp"
	"strings"
	"time"

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
		// A big file to a slow client needs longer than the server's WriteTimeout:
		// 60 s plus a second per 32 KiB.
		_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(60*time.Second + time.Duration(rd.Size()>>15)*time.Second))
		hd := w.Header()
		hd.Set("Content-Type", rd.ContentType())
		// Whatever an app stored, it is served as data, never as a page of this origin:
		// no sniffing, no scripts, no plugins, no same-origin access (sandbox).
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Content-Security-Policy", "default-src 'none'; sandbox")
		hd.Set("Content-Disposition", mime.FormatMediaType("inline", map[string]string{"filename": path.Base(key)}))
		// Cached no longer than the blob lives: it expires with its job's retention.
		left := d.FileMaxAge - time.Since(rd.ModTime())
		hd.Set("Cache-Control", fmt.Sprintf("public, max-age=%d", max(int64(left/time.Second), 0)))
		http.ServeContent(w, r, "", rd.ModTime(), rd)
	})
}
