//go:build !linux

package host

import "runtime/debug"

// trimAfterStart gives back the heap that start-up left as garbage; only Linux also
// unmaps the binary's start-up pages (see trim_linux.go).
func trimAfterStart() (int64, error) {
	debug.FreeOSMemory()
	return 0, nil
}
