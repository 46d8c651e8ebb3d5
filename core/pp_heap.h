/* Heap sampling as Go does it: every allocation function of every loaded object is
 * interposed (pp_got), and an allocation is sampled when the bytes allocated by its
 * thread since the last sample cross an exponentially distributed threshold of mean
 * `rate` bytes (Go's MemProfileRate, 512 KiB by default). A sampled allocation's stack
 * goes into a bounded table of buckets keyed by (size, stack), each with cumulative
 * allocated and freed objects and bytes; a bounded table of live sampled pointers
 * matches frees to buckets.
 *
 * Anonymous private mappings count as allocations too (mmap, mmap64; munmap and mremap
 * follow them), so that arena allocators that take their memory from the kernel in
 * chunks (PHP's Zend MM, APR's allocator on Debian) show at their chunk level: same
 * countdown, sized by the page-rounded length. Not sampled: file-backed, shared, stack
 * (MAP_STACK, MAP_GROWSDOWN) and PROT_NONE mappings, calls made inside the malloc in use
 * and the unwinder, and the profiler's own. A munmap frees the bytes of sampled mappings
 * it covers; a mapping counts as a freed object when its last byte is unmapped, so a
 * partly unmapped one is in use with fewer bytes than its size. mremap of a sampled
 * mapping is a realloc: the old range freed, the result a new allocation.
 *
 * The unsampled path of malloc+free is a thread-local subtraction and, while sampled
 * objects are live, one probe of the live table. Allocations made by the profiler itself
 * (between pp_heap_guard_enter and _leave, and by the sampler's own work) are never
 * sampled. Nothing here may be called from a signal handler. */
#ifndef PP_HEAP_H
#define PP_HEAP_H

#include <stddef.h>
#include <stdint.h>

#define PP_HEAP_DEFAULT_RATE (512 * 1024)

/* Values of each bucket, in this order. */
enum { PP_HEAP_ALLOC_OBJECTS, PP_HEAP_ALLOC_BYTES, PP_HEAP_FREE_OBJECTS, PP_HEAP_FREE_BYTES,
       PP_HEAP_NVALUES };

/* Install the hooks in every loaded object (again: objects loaded since) and sample at
 * rate bytes (0: hooks stay, nothing is sampled; 1: every allocation). -1 on failure. */
int pp_heap_start(size_t rate);

/* Change the rate; threads pick it up at their next sample. */
void pp_heap_set_rate(size_t rate);
size_t pp_heap_rate(void);

/* Hook objects loaded since the last call. dlopen itself is hooked, so this is only
 * needed for objects loaded by other means. Cheap when none were. */
int pp_heap_refresh(void);

/* Remove the hooks (before the code holding them is unloaded). Sampled data stays
 * readable until pp_heap_reset. */
void pp_heap_stop(void);

/* In a new child of a fork: draw new random thresholds from a new seed, so that
 * children sample independently of their parent and of each other. */
void pp_heap_after_fork(void);

/* Forget every bucket and live object (a new process image, or tests). */
void pp_heap_reset(void);

/* Serialize the buckets (pp_stacktab wire format, key = object size, PP_HEAP_NVALUES
 * values). *out is malloc'ed. */
int pp_heap_serialize(unsigned char **out, size_t *outlen);

/* How many buckets pp_heap_serialize would write now (what Go's index counts), without
 * copying them. */
size_t pp_heap_records(void);

/* Samples not recorded because a table was full. */
uint64_t pp_heap_dropped(void);

/* Keep this thread's allocations out of the profile while inside (nests). */
void pp_heap_guard_enter(void);
void pp_heap_guard_leave(void);

/* Unmappings seen, for a reader of memory that may have been freed (pp_interp's walks,
 * on the calling thread, in a signal handler). While the hooks are in, every munmap,
 * mremap and MAP_FIXED mmap of a hooked object (not the malloc in use: glibc unmaps inside
 * libc) adds its range, before the call, to the calling thread's hull of ranges unmapped
 * since its last mark. So memory known to be mapped at this thread's last mark that only
 * this thread can unmap through a hooked object (Zend MM's chunks: PHP's allocator calls
 * munmap from libphp) is still mapped if the hull misses it. All three are
 * async-signal-safe and act on the calling thread only. */
int pp_heap_unmaps_tracked(void);
void pp_heap_unmaps_mark(void);
/* 1 when [p, p + len) may have been unmapped since the mark (or nothing is tracked). */
int pp_heap_maybe_unmapped(const void *p, size_t len);

/* Start glibc's allocator now, in a process that has one thread. glibc starts it at its
 * first call, and that start is not thread-safe: it marks the allocator ready before it
 * sets up the free lists, and a second thread that comes in meanwhile walks NULL lists
 * (malloc_trim faults at address 8). Where glibc's malloc is the program's, its first
 * malloc did this long ago; where another allocator serves malloc (ASan's, a preloaded
 * jemalloc or tcmalloc), glibc's first call may be a malloc_trim or mallinfo2 of the
 * profiler's, from two threads at once (the agent's take and a collecting request's
 * cleanup when a CPU profile and a trace end together). Cheap (mallinfo2); call it before
 * any thread that may call those starts, e.g. before forking the workers. pp_heap_start
 * calls it too. */
void pp_heap_malloc_ready(void);

/* Go's unsampling of a bucket: scale count and bytes by 1/(1-exp(-avg/rate)). */
void pp_heap_scale(uint64_t count, uint64_t bytes, size_t rate, int64_t *count_out,
                   int64_t *bytes_out);

#endif
