package host

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
)

// trimAfterStart gives back what start-up alone used, once a process is up: the heap
// that start-up left as garbage (debug.FreeOSMemory), and the pages of this binary,
// and of the shared libraries a cgo build loads (libc, ld.so: about 1.2 MB), that
// start-up mapped and nothing touches again. It returns the bytes of files unmapped.
//
// The binary (about 55 MB: the AWS and Azure SDKs and what gocloud.dev pulls in) has
// some 700 packages; each one's init runs once, and the kernel maps every page it
// touches together with its neighbours (fault-around, 64 KiB by default). A process so
// has about 23 MB of the binary resident after start; trimmed, an idle serve parent or
// worker maps back 8 to 12 MB of it (measured with /proc/<pid>/pagemap), and issue 10's
// idle RSS of parent + child falls from about 58 to 37 MiB. RSS counts those pages in
// both processes, though they share them.
//
// MADV_DONTNEED on a read-only private mapping of a file only unmaps its pages: they
// stay in the page cache, and a later access maps them again (a minor fault), as it
// would after the kernel reclaimed them. A mapping with any anonymous page (a
// copy-on-write copy, e.g. a debugger's breakpoint or a relocation) is left alone,
// because dropping that page would bring back the file's contents.
func trimAfterStart() (int64, error) {
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		return 0, fmt.Errorf("trim start-up pages: %w", err)
	}
	defer f.Close()
	maps, err := parseSmaps(f)
	if err != nil {
		return 0, fmt.Errorf("trim start-up pages: %w", err)
	}
	var trimmed int64
	for _, m := range maps {
		if m.inode == 0 || !m.readOnlyPrivate() || m.anonymous != 0 {
			continue
		}
		if _, _, errno := syscall.Syscall(syscall.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), syscall.MADV_DONTNEED); errno != 0 {
			return trimmed, fmt.Errorf("trim start-up pages: madvise %#x-%#x: %w", m.start, m.end, errno)
		}
		trimmed += m.rss
	}
	return trimmed, nil
}

// mapping is one entry of /proc/<pid>/smaps (see proc_pid_smaps(5)).
type mapping struct {
	start, end uint64
	perms      string // e.g. "r-xp"
	dev        string // major:minor
	inode      uint64
	rss        int64 // bytes resident
	anonymous  int64 // bytes resident that are anonymous (copies, not the file's)
}

// readOnlyPrivate says whether m is mapped neither writable nor shared.
func (m mapping) readOnlyPrivate() bool {
	return len(m.perms) == 4 && m.perms[1] == '-' && m.perms[3] == 'p'
}

// parseSmaps reads the mappings in the format of /proc/<pid>/smaps: a header line
// "start-end perms offset dev inode [path]" followed by "Key: value kB" lines.
func parseSmaps(r io.Reader) ([]mapping, error) {
	var maps []mapping
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), 1<<20) // a path may be long
	for sc.Scan() {
		line := sc.Bytes()
		key, rest, ok := bytes.Cut(line, []byte(":"))
		if ok && len(key) > 0 && key[0] >= 'A' && key[0] <= 'Z' {
			if len(maps) == 0 {
				return nil, fmt.Errorf("smaps: %q before any mapping", line)
			}
			m := &maps[len(maps)-1]
			switch string(key) {
			case "Rss":
				m.rss = kB(rest)
			case "Anonymous":
				m.anonymous = kB(rest)
			}
			continue
		}
		f := strings.Fields(string(line))
		if len(f) < 5 {
			return nil, fmt.Errorf("smaps: bad mapping line %q", line)
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		inode, err3 := strconv.ParseUint(f[4], 10, 64)
		if !ok || err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("smaps: bad mapping line %q", line)
		}
		maps = append(maps, mapping{start: start, end: end, perms: f[1], dev: f[3], inode: inode})
	}
	return maps, sc.Err()
}

// kB parses " 1234 kB" into bytes; -1 when it is not that.
func kB(b []byte) int64 {
	n, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(b)), "kB")), 10, 64)
	if err != nil {
		return -1
	}
	return n << 10
}
