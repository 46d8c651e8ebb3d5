/* The CPU sampler's unwinder (x86-64): a frame cache of our own, one per process, shared by
 * every thread, and a walk that reads it in the signal handler.
 *
 * Why not libunwind's unw_backtrace: its fast path keeps a cache per thread (a 16384-entry
 * hash, 256 KiB, all of it written when the thread's cache is made, freed only when the
 * thread exits), so an event child of 25 threads held 6.4 MiB more once they had served
 * under a profile. The same knowledge (for a PC: where the caller's frame is) fits a few
 * thousand entries for the whole process.
 *
 * An entry says, for one PC, how to find its caller: the CFA (the caller's stack pointer)
 * as RSP or RBP plus an offset, the return address at CFA - 8, and where RBP was saved
 * (or that it is unchanged); or that the frame is a signal trampoline (the interrupted
 * registers are in the ucontext at RSP); or that the stack ends there. The cache is
 * filled on a miss from libunwind: one unw_step of a cursor made from that frame's RIP,
 * RSP and RBP, done twice with RBP moved to tell an RSP-based CFA from an RBP-based one.
 * A frame whose rule is none of these (a CFA from an expression or another register) is
 * stepped by libunwind every time it is met and never cached. A miss takes libunwind's
 * locks as a miss of its own per-thread cache did, but once per process instead of once
 * per thread.
 *
 * The walk reads only the thread's own stack, between the interrupted RSP and the top of
 * the stack recorded when the thread was prepared, and each step must move up: a wrong or
 * stale rule ends the stack early, it cannot make the handler fault or loop. */
#ifndef PP_FUNWIND_H
#define PP_FUNWIND_H

#include <stddef.h>
#include <stdint.h>

/* Make this thread's stacks unwindable: the process's cache is mapped at the first call,
 * the thread's stack bounds read. Not async-signal-safe (it may allocate and map); once
 * per thread, later calls cost a thread-local test. Returns 0, or -1 (the walk then
 * returns -1 on this thread). */
int pp_funwind_prepare(void);

/* Only the second half of pp_funwind_prepare: record this thread's stack bounds, so that
 * the walk can unwind it once some thread has mapped the cache (the walk fills what it
 * misses). Not async-signal-safe (pthread_getattr_np allocates; for a process's main
 * thread it reads /proc/self/maps); once per thread, later calls cost a thread-local
 * test. A thread made by fork inherits its parent thread's bounds (the same stack).
 * Returns 0, or -1. */
int pp_funwind_bounds(void);

/* Read again which objects are loaded (their code ranges), if that changed since the
 * last read: a return address outside every object's code ends a stack rather than be
 * handed to libunwind. pp_funwind_prepare does it for each new thread; call it when
 * sampling starts. Not async-signal-safe (takes the loader's lock). */
void pp_funwind_refresh(void);

/* Unwind the context a signal interrupted (uc: the handler's third argument) into pcs
 * (capacity max): pcs[0] the interrupted PC, then return addresses, as unw_backtrace
 * gives them. Async-signal-safe on a prepared thread: no allocation, no lock on a hit
 * (a miss steps libunwind, see above). Returns the number of PCs, or -1 when this thread
 * was not prepared or its stack pointer is outside its stack (a stack of its own, such
 * as a coroutine's or sigaltstack's: the caller falls back). */
int pp_funwind(const void *uc, uint64_t *pcs, int max);

/* The same from where it is called (outside a signal handler): fills the cache with the
 * caller's frames, e.g. when a thread is warmed. Returns as pp_funwind. */
int pp_funwind_here(uint64_t *pcs, int max);

typedef struct {
    uint64_t entries;           /* PCs cached */
    uint64_t fills;             /* misses stepped by libunwind and cached */
    uint64_t uncached;          /* frames stepped by libunwind and not cacheable */
    uint64_t full;              /* fills that found no free entry */
    size_t bytes;               /* the cache's mapping */
} pp_funwind_stats;

/* The cache's counters, for tests and benchmarks. */
void pp_funwind_get_stats(pp_funwind_stats *st);

#endif
