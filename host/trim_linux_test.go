package host

import (
	"fmt"
	"io"
	"os"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseSmaps(t *testing.T) {
	t.Parallel()
	const smaps = `00400000-01706000 r-xp 00000000 fd:01 1234                               /app/shoestring
Size:              19480 kB
Rss:               11480 kB
Anonymous:             0 kB
VmFlags: rd ex mr mw me
01706000-02966000 r--p 01306000 fd:01 1234                               /app/shoestring
Rss:               10688 kB
Anonymous:             8 kB
7ffd1000-7ffd3000 rw-p 00000000 00:00 0                                  [stack]
Rss:                   8 kB
Anonymous:             8 kB
`
	got, err := parseSmaps(strings.NewReader(smaps))
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{start: 0x400000, end: 0x1706000, perms: "r-xp", dev: "fd:01", inode: 1234, rss: 11480 << 10},
		{start: 0x1706000, end: 0x2966000, perms: "r--p", dev: "fd:01", inode: 1234, rss: 10688 << 10, anonymous: 8 << 10},
		{start: 0x7ffd1000, end: 0x7ffd3000, perms: "rw-p", dev: "00:00", rss: 8 << 10, anonymous: 8 << 10},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(mapping{})); diff != "" {
		t.Errorf("parseSmaps (-want +got):\n%s", diff)
	}
	for _, bad := range []string{"Rss: 8 kB\n", "not a mapping\n", "zz-01 r--p 0 fd:01 1\n"} {
		if _, err := parseSmaps(strings.NewReader(bad)); err == nil {
			t.Errorf("parseSmaps(%q): no error", bad)
		}
	}
}

// residentFiles is the bytes of read-only private file mappings resident now: this
// binary's, and other files' (the shared libraries of a cgo build, when it has any).
func residentFiles(tb testing.TB) (binary, others int64) {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		tb.Skipf("no /proc/self/smaps: %v", err)
	}
	self, err := binaryMappings(strings.NewReader(string(b)))
	if err != nil {
		tb.Fatal(err)
	}
	all, err := parseSmaps(strings.NewReader(string(b)))
	if err != nil {
		tb.Fatal(err)
	}
	for _, m := range all {
		switch {
		case m.inode == 0 || !m.readOnlyPrivate():
		case slices.Contains(self, m):
			binary += m.rss
		default:
			others += m.rss
		}
	}
	return binary, others
}

// TestTrimAfterStart: the pages of the binary and of shared libraries that start-up
// mapped are unmapped, and the code that runs next still runs (it maps its pages
// again). Not parallel: other tests running at the same time would map pages back
// while it measures.
func TestTrimAfterStart(t *testing.T) {
	before, libsBefore := residentFiles(t)
	n, err := trimAfterStart()
	if err != nil {
		t.Fatal(err)
	}
	after, libsAfter := residentFiles(t)
	t.Logf("binary resident: %d KiB before, %d KiB after; other files: %d KiB before, %d KiB after; %d KiB unmapped",
		before>>10, after>>10, libsBefore>>10, libsAfter>>10, n>>10)
	if n < before/2 || after > before/2 {
		t.Errorf("binary resident %d KiB before, %d KiB after, trimAfterStart reported %d KiB: want at least half unmapped",
			before>>10, after>>10, n>>10)
	}
	if libsBefore == 0 {
		t.Log("no shared library mapped (a static build): nothing more to check")
	} else if libsAfter > libsBefore/2 {
		t.Errorf("shared libraries resident %d KiB before, %d KiB after: want at least half unmapped", libsBefore>>10, libsAfter>>10)
	}
}

// binaryMappings reads smaps (the format of /proc/self/smaps) and returns the mappings
// of this process's binary: those of the file that holds this function's code.
func binaryMappings(smaps io.Reader) ([]mapping, error) {
	maps, err := parseSmaps(smaps)
	if err != nil {
		return nil, err
	}
	pc := uint64(reflect.ValueOf(binaryMappings).Pointer())
	i := slices.IndexFunc(maps, func(m mapping) bool { return m.start <= pc && pc < m.end })
	if i < 0 || maps[i].inode == 0 {
		return nil, fmt.Errorf("no mapping of a file holds pc %#x", pc)
	}
	self := maps[i]
	return slices.DeleteFunc(maps, func(m mapping) bool { return m.dev != self.dev || m.inode != self.inode }), nil
}
