package host

import (
	"os"
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

// binaryResident is the bytes of this binary's read-only mappings resident now.
func binaryResident(tb testing.TB) int64 {
	tb.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		tb.Skipf("no /proc/self/smaps: %v", err)
	}
	defer f.Close()
	maps, err := binaryMappings(f)
	if err != nil {
		tb.Fatal(err)
	}
	var n int64
	for _, m := range maps {
		if m.readOnlyPrivate() {
			n += m.rss
		}
	}
	return n
}

// TestTrimAfterStart: the pages of the binary that start-up mapped are unmapped, and
// the code that runs next still runs (it maps its pages again). Not parallel: other
// tests running at the same time would map pages back while it measures.
func TestTrimAfterStart(t *testing.T) {
	before := binaryResident(t)
	n, err := trimAfterStart()
	if err != nil {
		t.Fatal(err)
	}
	after := binaryResident(t)
	t.Logf("binary resident: %d KiB before, %d KiB unmapped, %d KiB after", before>>10, n>>10, after>>10)
	if n < before/2 || after > before/2 {
		t.Errorf("binary resident %d KiB before, %d KiB after, trimAfterStart reported %d KiB: want at least half unmapped",
			before>>10, after>>10, n>>10)
	}
}
