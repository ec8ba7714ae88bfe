package sqlitedb

/*
#include <stdlib.h> // defines __GLIBC__ under glibc
#ifdef __GLIBC__
#include <malloc.h>
static int keep_freed_heap(int bytes) { return mallopt(M_TRIM_THRESHOLD, bytes); }

#define C_HEAP_ARENAS 2 // cHeapArenas
// arena_policy is what limiting the arenas returned; -2 until it ran.
static int arena_policy = -2;
// limit_arenas runs as the program is loaded, before the Go runtime starts a thread: glibc
// caps only arenas created after the cap is set, and the runtime's threads malloc (their start
// arguments) as they start.
__attribute__((constructor)) static void limit_arenas(void) {
	if (getenv("MALLOC_ARENA_MAX") != NULL) { arena_policy = 0; return; } // the operator's setting stands
	arena_policy = mallopt(M_ARENA_MAX, C_HEAP_ARENAS);
}
static int limited_arenas(void) { return arena_policy; }
#else
#define C_HEAP_ARENAS 0
static int keep_freed_heap(int bytes) { return -1; }
static int limited_arenas(void) { return -1; }
#endif
*/
import "C"

// freedHeapKept is how much freed memory at the top of the C heap glibc keeps for the next
// allocation instead of giving it back to the kernel at once.
//
// SQLite allocates and frees buffers of hundreds of kilobytes all the time here: the copy of
// every fragment's records bound to a statement or read back (240 kB for 1,000 records), the page
// caches of transient tables. Above glibc's trim threshold (128 kB by default, raised only as far
// as its dynamic mmap threshold goes) each free handed the top of the heap back to the kernel
// and the next allocation took it again: perf showed 7 % of the gateway in sysmalloc, brk and
// page faults end to end. Kept, end to end went from 16,194–16,937 to 19,085–19,132 records/s
// and from 86 to 76 ms of CPU per 1,000 records (gateway-bench -only e2e, builds alternating),
// for about 28 MB more peak RSS.
const freedHeapKept = 16 << 20

// cHeapArenas caps glibc's malloc arenas (by default up to 8 per core, one for each thread that
// finds the others busy). SQLite runs on whichever OS thread the Go scheduler hands a cgo call,
// so over time most of the process's threads get an arena of their own, each holding its freed
// memory (up to freedHeapKept) and its fragments apart from the others': gateway-bench -only peak
// found nine arenas holding 62 MB of a 184 MB peak RSS, and two at the peak with the cap. With
// the cap (and intake's one buffer for kept records), 3 alternating runs: peak RSS ×0.78 in
// peak, ×0.83 in e2e, ×0.91 in big1, at the same speed (e2e records/s ×0.98, CPU ×0.98).
// MALLOC_ARENA_MAX in the environment wins. The C constructor limit_arenas sets the cap: glibc
// applies it only to arenas created later, so it must run before any thread starts.
const cHeapArenas = C.C_HEAP_ARENAS

// freedHeapPolicy and arenaPolicy are what setting freedHeapKept and cHeapArenas returned: 1
// set, 0 refused (or, for arenas, left to MALLOC_ARENA_MAX), -1 not glibc (whose own policy
// then stands); arenaPolicy -2 means the constructor never ran.
var (
	freedHeapPolicy = int(C.keep_freed_heap(C.int(freedHeapKept)))
	arenaPolicy     = int(C.limited_arenas())
)
