package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// setProcAttr puts cmd in a process group of its own, so a Ctrl-C meant for the bench
// does not reach it (the bench stops it itself, in order), and has the kernel kill it
// if the bench dies without cleaning up (a panic in another goroutine, a SIGKILL).
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}

// newSpawner returns a func that starts commands from one goroutine locked, for the
// life of the program, to an OS thread of its own. Pdeathsig fires when the forking
// thread exits, not the process (golang/go#27505); this thread exits only with the
// process. The goroutine is never stopped, by design.
func newSpawner() func(*exec.Cmd) error {
	type req struct {
		cmd  *exec.Cmd
		errc chan error
	}
	reqs := make(chan req)
	go func() {
		runtime.LockOSThread() // never unlocked: see above
		for r := range reqs {
			r.errc <- r.cmd.Start()
		}
	}()
	return func(cmd *exec.Cmd) error {
		errc := make(chan error, 1)
		reqs <- req{cmd: cmd, errc: errc}
		return <-errc
	}
}

// killGroup sends SIGKILL to the process group led by pid. Call it only while the
// process is not yet reaped, so the group id cannot have been reused.
func killGroup(pid int) error {
	if err := syscall.Kill(-pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("SIGKILL process group %d: %w", pid, err)
	}
	return nil
}

// memOf returns pid's resident memory: VmRSS, RssAnon and RssFile from
// /proc/<pid>/status, and Pss from /proc/<pid>/smaps_rollup (proc_pid_status(5),
// proc_pid_smaps_rollup(5)).
func memOf(pid int) (memFigures, error) {
	var m memFigures
	for file, keys := range map[string]map[string]*int64{
		"status":       {"VmRSS": &m.rss, "RssAnon": &m.anon, "RssFile": &m.file},
		"smaps_rollup": {"Pss": &m.pss},
	} {
		path := fmt.Sprintf("/proc/%d/%s", pid, file)
		data, err := os.ReadFile(path)
		if err != nil {
			return m, fmt.Errorf("read memory of pid %d: %w", pid, err)
		}
		found := 0
		for line := range strings.Lines(string(data)) {
			key, v, _ := strings.Cut(line, ":")
			if dst, ok := keys[key]; ok {
				kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
				if err != nil {
					return m, fmt.Errorf("parse %s of %s: %q: %w", key, path, v, err)
				}
				*dst = kb << 10
				found++
			}
		}
		if found != len(keys) {
			return m, fmt.Errorf("%s lacks one of %d memory fields", path, len(keys))
		}
	}
	m.large, m.known = largeFolioBytes(pid)
	return m, nil
}

// largeFolioBytes returns how many of the bytes of its own executable that pid has
// resident sit in folios of the page cache larger than the kernel's fault-around
// window (64 KiB), and false when the kernel does not say. Linux 6.x caches a file in
// large folios (written in large writes, or read by readahead) and, on a fault, may
// map such a folio whole, where it would map 64 KiB around the page of a file in
// smaller folios. Reading page frame numbers from /proc/<pid>/pagemap and flags from
// /proc/kpageflags needs CAP_SYS_ADMIN (pagemap.rst in the kernel's admin guide).
// Page flags: bit 15 compound head, 16 compound tail; a folio's pages have
// consecutive frame numbers, head first.
func largeFolioBytes(pid int) (int64, bool) {
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		return 0, false
	}
	maps, err := os.ReadFile(fmt.Sprintf("/proc/%d/maps", pid))
	if err != nil {
		return 0, false
	}
	pagemap, err := os.Open(fmt.Sprintf("/proc/%d/pagemap", pid))
	if err != nil {
		return 0, false
	}
	defer pagemap.Close()
	kpf, err := os.Open("/proc/kpageflags")
	if err != nil {
		return 0, false
	}
	defer kpf.Close()
	pageSize := uint64(os.Getpagesize())
	const (
		faultAround = 64 << 10
		head, tail  = 1 << 15, 1 << 16
		maxPages    = 512 // a 2 MiB folio, the largest the page cache makes here
	)
	flagsOf := func(pfn uint64, n int) ([]uint64, error) {
		b := make([]byte, 8*n)
		if _, err := kpf.ReadAt(b, int64(pfn*8)); err != nil && !errors.Is(err, io.EOF) {
			return nil, err
		}
		out := make([]uint64, n)
		for i := range out {
			out[i] = binary.LittleEndian.Uint64(b[8*i:])
		}
		return out, nil
	}
	// folio returns the first frame and the number of pages of the folio holding pfn:
	// pfn and 1 for a page of its own; for a compound page, found by walking back to
	// its head and forward over its tails.
	folio := func(pfn uint64) (first, pages uint64, err error) {
		k, err := flagsOf(pfn, 1)
		if err != nil || k[0]&(head|tail) == 0 {
			return pfn, 1, err
		}
		h := pfn
		if k[0]&tail != 0 {
			lo := pfn - min(pfn, maxPages)
			back, err := flagsOf(lo, int(pfn-lo))
			if err != nil {
				return 0, 0, err
			}
			i := len(back) - 1
			for i >= 0 && back[i]&head == 0 {
				i--
			}
			if i < 0 {
				return pfn, 1, nil // no head within 2 MiB: count the page as small
			}
			h = lo + uint64(i)
		}
		next, err := flagsOf(h+1, maxPages)
		if err != nil {
			return 0, 0, err
		}
		n := uint64(1)
		for n-1 < uint64(len(next)) && next[n-1]&tail != 0 {
			n++
		}
		return h, n, nil
	}
	// The folio last found answers for its other pages without a read: a folio's
	// mapped pages mostly come one after another.
	var first, pages uint64
	var large int64
	sawPFN := false
	for line := range strings.Lines(string(maps)) {
		f := strings.Fields(line)
		if len(f) < 6 || f[5] != exe {
			continue
		}
		lo, hi, _ := strings.Cut(f[0], "-")
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil {
			return 0, false
		}
		entries := make([]byte, (end-start)/pageSize*8)
		if _, err := pagemap.ReadAt(entries, int64(start/pageSize*8)); err != nil {
			return 0, false
		}
		for i := 0; i+8 <= len(entries); i += 8 {
			e := binary.LittleEndian.Uint64(entries[i:])
			if e>>63 == 0 { // not present
				continue
			}
			pfn := e & (1<<55 - 1)
			if pfn == 0 {
				continue // hidden without CAP_SYS_ADMIN
			}
			sawPFN = true
			if pfn < first || pfn >= first+pages {
				if first, pages, err = folio(pfn); err != nil {
					return 0, false
				}
			}
			if pages*pageSize > faultAround {
				large += int64(pageSize)
			}
		}
	}
	return large, sawPFN
}

// childPIDs returns the pids of pid's children (/proc/<pid>/task/*/children).
func childPIDs(pid int) ([]int, error) {
	files, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	if err != nil {
		return nil, fmt.Errorf("list children of pid %d: %w", pid, err)
	}
	var pids []int
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			continue // the thread exited meanwhile
		}
		for field := range strings.FieldsSeq(string(data)) {
			if n, err := strconv.Atoi(field); err == nil {
				pids = append(pids, n)
			}
		}
	}
	return pids, nil
}

// cmdline returns the command line of pid, its arguments joined by spaces.
func cmdline(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(bytes.ReplaceAll(data, []byte{0}, []byte{' '})))
}

// cpuModel returns the "model name" of the first CPU in /proc/cpuinfo.
func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

// loadAvg returns the 1, 5 and 15 minute load averages from /proc/loadavg.
func loadAvg() string {
	data, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(data)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// cpuTime returns the CPU time pid has used, user and system, all its threads
// (utime + stime in /proc/<pid>/stat, in USER_HZ ticks: 10 ms). pid 0 is this process.
func cpuTime(pid int) (time.Duration, error) {
	path := "/proc/self/stat"
	if pid != 0 {
		path = fmt.Sprintf("/proc/%d/stat", pid)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	// The command name, field 2, is in parentheses and may hold spaces: count fields
	// after its closing one. utime and stime are fields 14 and 15.
	_, rest, ok := bytes.Cut(data, []byte(") "))
	f := strings.Fields(string(rest))
	if !ok || len(f) < 13 {
		return 0, fmt.Errorf("parse %s: %q", path, data)
	}
	var ticks int64
	for _, s := range f[11:13] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse %s: %w", path, err)
		}
		ticks += n
	}
	return time.Duration(ticks) * 10 * time.Millisecond, nil
}

// fsType names the file system that holds path, from statfs(2)'s magic number, or
// gives the number.
func fsType(path string) string {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return "file system unknown"
	}
	switch uint32(st.Type) {
	case 0xEF53:
		return "ext2/3/4"
	case 0x58465342:
		return "xfs"
	case 0x9123683E:
		return "btrfs"
	case 0x01021994:
		return "tmpfs"
	case 0x794C7630:
		return "overlayfs"
	}
	return fmt.Sprintf("file system %#x", uint32(st.Type))
}
