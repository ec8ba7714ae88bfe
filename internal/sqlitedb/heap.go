package sqlitedb

/*
#include <stdlib.h> // defines __GLIBC__ under glibc
#ifdef __GLIBC__
#include <malloc.h>
static int keep_freed_heap(int bytes) { return mallopt(M_TRIM_THRESHOLD, bytes); }
#else
static int keep_freed_heap(int bytes) { return -1; }
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

// freedHeapPolicy is what setting freedHeapKept returned: 1 set, 0 refused, -1 not glibc (whose
// own policy then stands).
var freedHeapPolicy = int(C.keep_freed_heap(C.int(freedHeapKept)))
