package sqlitedb

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// TestFreedHeapKept checks that glibc took the trim threshold and the arena cap (the C preamble
// compiled its glibc branch), wherever the C library is glibc.
func TestFreedHeapKept(t *testing.T) {
	musl, _ := filepath.Glob("/lib/ld-musl-*")
	if runtime.GOOS != "linux" || len(musl) > 0 {
		if freedHeapPolicy != -1 || arenaPolicy != -1 {
			t.Errorf("freedHeapPolicy, arenaPolicy = %d, %d on a C library other than glibc; want -1, -1", freedHeapPolicy, arenaPolicy)
		}
		return
	}
	if freedHeapPolicy != 1 {
		t.Errorf("freedHeapPolicy = %d; want 1 (glibc's M_TRIM_THRESHOLD set)", freedHeapPolicy)
	}
	want := 1 // glibc's M_ARENA_MAX set, by the constructor
	if _, ok := os.LookupEnv("MALLOC_ARENA_MAX"); ok {
		want = 0 // left to the environment
	}
	if arenaPolicy != want {
		t.Errorf("arenaPolicy = %d; want %d (M_ARENA_MAX %d, or MALLOC_ARENA_MAX from the environment)", arenaPolicy, want, cHeapArenas)
	}
}
