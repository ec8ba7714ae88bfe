package sqlitedb

import (
	"path/filepath"
	"runtime"
	"testing"
)

// TestFreedHeapKept checks that glibc took the trim threshold (the C preamble compiled its glibc
// branch), wherever the C library is glibc.
func TestFreedHeapKept(t *testing.T) {
	musl, _ := filepath.Glob("/lib/ld-musl-*")
	if runtime.GOOS != "linux" || len(musl) > 0 {
		if freedHeapPolicy != -1 {
			t.Errorf("freedHeapPolicy = %d on a C library other than glibc; want -1", freedHeapPolicy)
		}
		return
	}
	if freedHeapPolicy != 1 {
		t.Errorf("freedHeapPolicy = %d; want 1 (glibc's M_TRIM_THRESHOLD set)", freedHeapPolicy)
	}
}
