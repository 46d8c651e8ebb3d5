/* The Go execution-trace writer: turns the per-thread records of pp_tbuf, collected from
 * any number of processes, into Go 1.19's trace format ("go 1.19 trace"), which every
 * `go tool trace` from 1.19 on opens. The format and its traps are described in
 * ../shared/docs/go-trace/FORMAT.md; the rules this writer keeps by construction:
 *
 *  - each thread is one goroutine (G = index + 1) that runs on a processor of its own
 *    (P = index + 1), so all of a thread's events sit in its own P's chunks, written in
 *    the order they happened, and a thread only ever wakes itself (GoUnblock from G 0 and
 *    GoStart on its own P); sequence numbers are kept here;
 *  - P 0 carries EvGomaxprocs, which ends the initial dump (threads that existed when
 *    tracing started are created, and shown waiting or running, before it in time), and
 *    the CPU samples;
 *  - per-P timestamps strictly increase; the dump is timed just before the start, live
 *    events and CPU samples after it;
 *  - the dump's GoCreates, all on one tick, are the earliest events and the only ones on
 *    that tick: Go 1.23+ drop them and back-date goroutines shown running to the next
 *    event, whose time must not be the trace's 0 (their viewer panics on it);
 *  - every stack of a goroutine's state change (block, stop) ends with the thread's start
 *    function, by which Go 1.23+ name a goroutine that existed before the trace;
 *  - a P starts (EvProcStart) on the thread's kernel id, never on an unknown id 0: a
 *    thread whose id is not known runs on a P that is not started until it is;
 *  - records that would break the model are repaired: a region or log of a thread that
 *    is not running first wakes it; an end that matches no open region is dropped; a
 *    region left open inside it is closed first; every running goroutine is stopped and
 *    every started P stopped when the trace ends;
 *  - every string and stack is defined once; every frame has a PC of its own; stacks
 *    stay below 2048 bytes; events with four or more arguments are length-prefixed.
 *
 * Output is appended to a buffer that the caller takes in pieces (streaming).
 * Not thread-safe. Returns of -1 mean out of memory. */
#ifndef PP_TRACE_H
#define PP_TRACE_H

#include <stddef.h>
#include <stdint.h>

#include "pp_tbuf.h"

typedef struct pp_trace pp_trace;

typedef struct {
    const char *function;
    const char *file;           /* may be NULL */
    int line;
} pp_trace_frame;

enum { PP_TRACE_NEW = 0, PP_TRACE_WAITING, PP_TRACE_RUNNING };

/* A trace that starts at t0 (CLOCK_MONOTONIC ns, as pp_tbuf_now). Writes the header and
 * P 0's first chunk. */
pp_trace *pp_trace_new(uint64_t t0);
void pp_trace_free(pp_trace *t);

/* The frame that names the goroutines of threads (what Go shows as a goroutine's start
 * function), e.g. "httpd.worker_thread"; it also ends every stack of their state changes.
 * Default "thread". Before the first thread is added: -1 afterwards. */
int pp_trace_set_thread_frame(pp_trace *t, const char *function, const char *file);

/* The frame used as the stack of the regions called name, e.g. handler ->
 * ap_invoke_handler. Regions without one get "region.<name>". Also used for tasks
 * ("task") and waits ("idle"). */
int pp_trace_set_frame(pp_trace *t, const char *name, const char *function,
                       const char *file);

/* Records may give a name by number instead of its text, 1 <= id < PP_TRACE_NAME_IDS in
 * the record's b: a region (PP_TB_REGION_BEGIN and _END with no text) or a log's key
 * (PP_TB_LOG whose text is then the value alone). A writer's fixed names then cost no
 * text in its ring, and their string and stack ids are looked up once, not hashed at
 * every record. Set before the records that use it; 0 or -1 (bad id). */
#define PP_TRACE_NAME_IDS 16
int pp_trace_set_name_id(pp_trace *t, unsigned id, const char *name);

/* How PCs in records become frames: fn fills up to max frames (innermost first) for the
 * return address pc in process pid and returns how many (0: unknown). Used for waits
 * recorded as "function 0xPC 0xPC ..." (the waiting function, then where it was called
 * from). Without a resolver only the function is shown. */
typedef int (*pp_trace_resolve_fn)(void *baton, uint32_t pid, uint64_t pc,
                                   pp_trace_frame *out, int max);
void pp_trace_set_resolver(pp_trace *t, pp_trace_resolve_fn fn, void *baton);

/* The thread (pid, slot) of some process: its index, adding it if new. tid is the
 * kernel's thread id (shown as the M; 0 when not known: a later call with the id starts
 * the thread's P then), state what it was doing when the trace started
 * (PP_TRACE_WAITING or _RUNNING; those threads are part of the initial dump) or
 * PP_TRACE_NEW for a thread that appeared later (it is created when first seen). */
int pp_trace_thread(pp_trace *t, uint32_t pid, uint32_t slot, uint32_t tid, int state);

/* The thread with kernel id tid in process pid, or -1. */
int pp_trace_find_tid(const pp_trace *t, uint32_t pid, uint32_t tid);

/* The records of one thread (from pp_tbuf_read), in order. Task ids are the process's
 * own, below 2^40: they are made unique here with the pid. -1 on malformed input or out of memory. */
int pp_trace_records(pp_trace *t, int thread, const void *recs, size_t len);

/* One CPU sample at ts on thread (or -1: a thread that is no goroutine), frames leaf
 * first. */
int pp_trace_cpu_sample(pp_trace *t, uint64_t ts, int thread, const pp_trace_frame *frames,
                        int nframes);

/* End the trace at t_end: stop every running goroutine and every started P, then write
 * EvFrequency. Nothing may be added afterwards. */
int pp_trace_finish(pp_trace *t, uint64_t t_end);

/* The bytes written so far and not yet taken; pp_trace_consume drops them. */
const unsigned char *pp_trace_data(const pp_trace *t, size_t *len);
void pp_trace_consume(pp_trace *t);

/* Counts, for logs and tests. */
typedef struct {
    uint64_t events, tasks, regions, cpu_samples, threads, repaired;
} pp_trace_stats;
void pp_trace_get_stats(const pp_trace *t, pp_trace_stats *out);

#endif
