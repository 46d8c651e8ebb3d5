/* Interpreter frames: the call stack of a script, spliced into the native stack of the
 * thread that runs it, where the interpreter runs it. A CPU sample of a PHP worker is a
 * wall of the interpreter's loop (PHP's execute_ex); with a provider registered here, the
 * PHP functions it was running (name, script file, line) sit above that loop's native
 * frame, so that a profile names the script's functions with their native callees above
 * them and the server below.
 *
 * A provider is what knows one interpreter: the address ranges of its loop functions
 * (each activation of the loop is one native frame in a range) and a walk function that,
 * on the thread being sampled, reads the interpreter's own frame chain. The core finds
 * the loop's activations in a captured native stack, asks the walk for the interpreter's
 * frames (newest first), interns each in a preallocated per-process table, and inserts
 * one synthetic PC per frame above the activation that runs it. Nothing else changes
 * downstream: stacks stay PC arrays.
 *
 * A synthetic PC names one line of one interned (function, file, start line) record of
 * this process: the record is its slot in the table, the line is in the PC itself. The
 * records travel with the process's maps: pp_maps_read_text(NULL) and pp_maps_read(NULL)
 * list each as a pseudo-mapping in a range no user-space address has (PP_INTERP_PC_BASE
 * and up), named "[pp-interp] function\tfile\tstart_line", whose file offset at a PC is
 * the line times 16. So every path that ships a process's PCs with its maps ships the
 * names too, and every consumer that names a PC by (mapping path, file offset) names it
 * through pp_symbolize, which decodes such paths (the line is the offset / 16).
 *
 * Signal contract: pp_interp_splice is async-signal-safe and lock-free: it runs in the
 * CPU and thread-dump signal handlers and in the heap sampler. It allocates nothing (the
 * table is allocated at the first registration), takes no lock, and a walk is only asked
 * when the captured native stack holds an activation of its loop, so a walk only ever
 * reads the frame chain of the thread that is stopped in it. Registration is for start-up
 * (before any sampler runs). */
#ifndef PP_INTERP_H
#define PP_INTERP_H

#include <stddef.h>
#include <stdint.h>

#define PP_INTERP_MAX_FRAMES 64         /* interpreter frames one walk may report */
#define PP_INTERP_MAX_PROVIDERS 4
#define PP_INTERP_MAX_RANGES 4          /* loop ranges of one provider */
#define PP_INTERP_MAX_ACTIVATIONS 32    /* loop activations looked for in one stack */
#define PP_INTERP_SLOTS 16384           /* distinct functions one process keeps (its life long) */
#define PP_INTERP_MAX_NAME 256          /* bytes kept of "scope::function" */
#define PP_INTERP_MAX_FILE 1024         /* bytes kept of a file name */

/* Synthetic PCs: PP_INTERP_PC_BASE + PP_INTERP_FN_SPAN * slot + 16 * line + 8, so a
 * record's pseudo-mapping spans PP_INTERP_FN_SPAN bytes (lines up to 2^20 - 1; beyond,
 * the last). Above every user-space address on x86-64 and arm64 (whose user halves end at
 * 2^47 and 2^48), below [vsyscall]. A line spans 16 bytes so that a synthetic PC taken as
 * a return address (looked up one byte back) is still on its line. */
#define PP_INTERP_PC_BASE 0xfff0000000000000ull
#define PP_INTERP_PC_SPAN 16u                   /* one line */
#define PP_INTERP_FN_SPAN (1ull << 24)          /* one record: 2^20 lines */

/* The path prefix of a record's pseudo-mapping. */
#define PP_INTERP_PATH_PREFIX "[pp-interp] "

/* Frame flag: the oldest frame that this activation of the loop runs; the frames after it
 * belong to the next older activation (a script that calls back into itself from a native
 * function, e.g. PHP's array_map with a closure, nests the loop). */
#define PP_INTERP_LOOP_END 1u

/* One interpreter frame, as a walk reports it. The strings point into the interpreter's
 * memory and are copied when the frame is first interned; they need not be terminated. */
typedef struct {
    const char *name;           /* the function; NULL or empty: "?" */
    size_t name_len;
    const char *scope;          /* its class, or NULL: the name becomes "scope::name" */
    size_t scope_len;
    const char *file;           /* the script file; NULL for a built-in function */
    size_t file_len;
    uint32_t line;              /* the line being run, 0 unknown */
    uint32_t start_line;        /* the function's first line, 0 unknown */
    uint32_t flags;             /* PP_INTERP_LOOP_END */
    uint64_t key;               /* non-zero: a value that only this function has (its
                                   name, scope, file and start line; the provider vouches),
                                   so a function seen before is found without reading its
                                   strings; 0: found by content */
} pp_interp_frame;

/* What a walk is told about the thread it walks. */
typedef struct {
    const void *ucontext;       /* the interrupted context (ucontext_t *), NULL when the
                                   stack is the calling thread's own (heap samples) or the
                                   thread is blocked (read below) */
    int leaf_in_loop;           /* the interrupted PC itself lies in a loop range: the
                                   registers in ucontext are the loop's */
    int activations;            /* native frames in the loop ranges (at least 1) */
    /* NULL: the thread walked is the caller itself (stopped in a signal handler, or
     * allocating): the interpreter's memory cannot change or go away during the walk and
     * may be read in place. Otherwise it is another thread, blocked in the kernel, that may
     * wake up and change or free what the walk reads: every read must go through read
     * (0, or -1 where it would have faulted), and the strings the frames point to must be
     * copies, made in scratch (scratch_len bytes). */
    int (*read)(void *dst, const void *src, size_t len);
    char *scratch;
    size_t scratch_len;
    /* For a walk of the caller's own stack (read NULL), when the allocator hooks see this
     * thread's unmappings (pp_heap.h), else NULL. maybe_unmapped(p, len): 1 when
     * [p, p + len) may have been unmapped by this thread since its last unmaps_mark(). A
     * walk marks when everything its frames point to is alive (so mapped); later, memory
     * that may have been freed since (and that only this thread unmaps, through a hooked
     * object) is read in place when the hull misses it, instead of through
     * process_vm_readv. */
    int (*maybe_unmapped)(const void *p, size_t len);
    void (*unmaps_mark)(void);
} pp_interp_ctx;

/* Fill up to max frames, newest first, and return how many. Runs in signal handlers on
 * memory the interpreter owns: async-signal-safe, bounded, and never trusting a pointer it
 * has not checked; with ctx->read set, reading only through it. */
typedef int (*pp_interp_walk_fn)(void *baton, const pp_interp_ctx *ctx,
                                 pp_interp_frame *frames, int max);

typedef struct {
    const char *name;           /* for messages: "php" */
    uint64_t lo[PP_INTERP_MAX_RANGES], hi[PP_INTERP_MAX_RANGES];  /* loop code: [lo, hi) */
    int nranges;
    pp_interp_walk_fn walk;
    void *baton;
} pp_interp_provider;

/* Register a provider (copied). Allocates the frames table at the first call. Returns a
 * handle > 0, or -1 (no room, no ranges, or out of memory: logged as PP0701). Call it
 * while no sampler runs. */
int pp_interp_register(const pp_interp_provider *p);

/* Forget a provider (its code may be unloaded next). Call it while no sampler runs. The
 * table of frames outlives it: stacks that name them may still be kept. */
void pp_interp_unregister(int handle);

/* Forget every provider and free the table: for a program (or module) that is about to
 * be unloaded. Call it while no sampler runs. */
void pp_interp_reset(void);

/* 1 when at least one provider is registered. Async-signal-safe. */
int pp_interp_active(void);

/* Splice interpreter frames into a native stack of n PCs (leaf first) held in pcs with
 * room for cap: returns the new count (n when nothing applies). leaf_exact: pcs[0] is an
 * interrupted PC (signal samples), else every PC is a return address. uc: the interrupted
 * context, or NULL. Async-signal-safe; allocates nothing. */
size_t pp_interp_splice(uint64_t *pcs, size_t n, size_t cap, const void *uc, int leaf_exact);

/* The same for the native stack of another thread of this process, blocked in the kernel
 * and unwound without stopping it (pp_regunwind): the walk reads through
 * process_vm_readv, which fails instead of faulting when the thread has woken up and freed
 * what it reads. The caller must drop the result if the thread ran meanwhile (what was
 * read may be torn). Not async-signal-safe; one caller at a time (a static scratch). */
size_t pp_interp_splice_blocked(uint64_t *pcs, size_t n, size_t cap);

/* A record named by a pseudo-mapping's path and file offset. The strings point into
 * path (not terminated). */
typedef struct {
    const char *function;
    size_t function_len;
    const char *file;           /* empty for a built-in function */
    size_t file_len;
    uint32_t line;
    uint32_t start_line;
} pp_interp_record;

/* 1 if path is a record's pseudo-mapping ("[pp-interp] ..."). */
int pp_interp_is_path(const char *path);

/* Decode a record from its pseudo-mapping's path and a file offset within it: 0, or -1
 * when path is no record. */
int pp_interp_decode(const char *path, uint64_t file_offset, pp_interp_record *out);

/* This process's records as maps lines (pseudo-mappings, the format of /proc/PID/maps),
 * appended to *buf (malloc'ed, *len bytes used, *cap allocated; grown with realloc). 0,
 * or -1 on out of memory. Not async-signal-safe. */
int pp_interp_maps_append(char **buf, size_t *len, size_t *cap);

/* The splice's time histogram: 64 buckets of 256 ticks (111 ns at the 2.3 GHz TSC this
 * was measured on: up to 7.1 us), then one for all longer. Few enough buckets that a CPU
 * profile's reply can carry each as a counter. */
#define PP_INTERP_HIST_BUCKETS 64
#define PP_INTERP_HIST_TICKS 256

typedef struct {
    uint64_t walks;             /* stacks a provider was asked to walk */
    uint64_t frames;            /* interpreter frames spliced in */
    uint64_t records;           /* distinct functions interned */
    uint64_t table_full;        /* frames named "(interpreter frames table full)" */
    uint64_t unplaced;          /* frames with no activation left to go above (dropped) */
    uint64_t samples;           /* pp_interp_splice calls while a provider was registered */
    uint64_t spliced;           /* of them, those that gained interpreter frames */
    /* What the splice took in one of every four of them, in pp_interp_ticks: hist[i]
     * counts those of i * PP_INTERP_HIST_TICKS up to the next bucket; the last, all
     * longer ones. */
    uint64_t hist[PP_INTERP_HIST_BUCKETS + 1];
} pp_interp_stats;

void pp_interp_get_stats(pp_interp_stats *out);

/* The clock of pp_interp_stats.ticks: the TSC on x86-64 (convert with a rate measured
 * against CLOCK_MONOTONIC over a window), elsewhere CLOCK_MONOTONIC's nanoseconds.
 * Async-signal-safe. */
uint64_t pp_interp_ticks(void);

#endif
