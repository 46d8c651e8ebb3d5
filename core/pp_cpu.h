/* Per-thread CPU sampling, as Go 1.18+ and gperftools' per-thread mode do it: one POSIX
 * timer per thread on that thread's CPU-time clock, delivering a signal to that thread
 * (SIGEV_THREAD_ID), with a random first expiry. A process-wide setitimer would lose
 * samples once more than a few threads are busy (golang/go#35057).
 *
 * The signal is a real-time signal of our own (SIGRTMIN + 6 by default), never SIGPROF:
 * SIGPROF belongs to others in a real server (PHP arms ITIMER_PROF for max_execution_time
 * and takes every SIGPROF as a timeout; gperftools' profiler uses it). Their SIGPROF
 * keeps working, untouched, while we sample.
 *
 * A sample never ends a wait early. Its timer runs on the thread's CPU-time clock, which
 * only advances while the thread runs, and the kernel (POSIX_CPU_TIMERS_TASK_WORK: x86-64
 * since Linux 5.10, arm64 since 5.19) checks it at the tick but raises its signal from the
 * thread itself as it returns to user space, after a system call has returned: a timer
 * that expires as the thread enters nanosleep, poll, epoll_wait... is delivered when that
 * call is over, never into it (check_cpu's a_sample_never_ends_a_wait). On a kernel
 * without that task work a sample could land in the few microseconds a thread spends
 * entering a wait, and end it with EINTR.
 *
 * The sampler is process-wide (signal dispositions are). All functions here except the
 * ones marked async-signal-safe must be called from one controlling thread at a time
 * (mod_pprof: the child's agent thread). The signal handler writes into a preallocated
 * lock-free ring; it never allocates or blocks, and drops (and counts) a sample when the
 * ring is full. It unwinds through pp_funwind's frame cache (x86-64), which takes
 * libunwind's locks only on a miss, once per PC and process (pp_funwind.h). */
#ifndef PP_CPU_H
#define PP_CPU_H

#include <stddef.h>
#include <stdint.h>

#define PP_CPU_NATIVE_DEPTH 64  /* native frames unwound */
#define PP_CPU_MAX_DEPTH 96     /* with interpreter frames spliced in (pp_interp.h) */

/* A sample's flags. */
#define PP_CPU_LEAF_ONLY 1u     /* the thread could not be unwound (not allowed nor
                                   warmed, or off its stack): only the interrupted PC */

typedef struct {
    uint32_t npcs;
    uint32_t tag;               /* the thread's tag when the signal came (pp_cpu_set_tag) */
    uint32_t tid;
    uint32_t flags;
    uint32_t weight;            /* periods this sample stands for: 1 + the timer's overruns */
    uint64_t ts;                /* CLOCK_MONOTONIC ns when the signal came */
    uint64_t pcs[PP_CPU_MAX_DEPTH];     /* pcs[0] is the exact interrupted PC, or the
                                           newest interpreter frame (pp_interp.h) */
} pp_cpu_sample;

/* Start sampling every thread of the process at hz (1..1000). ring_slots bounds the
 * samples buffered between drains. Refuses (-1, and logs PP0301 naming the handler) when
 * another handler owns the sampling signal, and when already started (-2). */
int pp_cpu_start(int hz, size_t ring_slots);

/* The sampling signal: SIGRTMIN + 6 unless set (a real-time signal) before the first
 * start. pp_cpu_set_signal returns -1 once the signal was used, or for a non-RT signal. */
int pp_cpu_signal(void);
int pp_cpu_set_signal(int sig);

/* Describe the handler of sa ("function in object", or its address) into buf: for the
 * refusal messages of every signal user of the core. */
struct sigaction;
void pp_signal_owner(const struct sigaction *sa, char *buf, size_t len);

/* 1 while started. */
int pp_cpu_running(void);

/* Arm timers for threads that appeared since the last call and forget those that ended.
 * Returns the number of threads sampled. */
int pp_cpu_refresh_threads(void);

/* The same, cheaply, for a caller that asks often (every tick): walks the process's
 * threads only when their number changed since the last walk, when changed is non-zero
 * (the caller knows of a new thread), or at the PP_CPU_WALK_EVERY-th call since the last
 * walk (one thread ended and another began in between). Otherwise one fstat. Returns
 * the number of threads sampled. Not async-signal-safe; one caller at a time, as
 * pp_cpu_refresh_threads. */
#define PP_CPU_WALK_EVERY 10
int pp_cpu_check_threads(int changed);

/* Hand every complete sample in the ring to fn, in order; returns how many. */
size_t pp_cpu_drain(void (*fn)(void *baton, const pp_cpu_sample *s), void *baton);

/* Stop: delete every timer, discard pending samples, wait for handlers in flight,
 * restore the previous disposition, drain what is left into fn (may be NULL) and free
 * the ring. Safe to call when not started. */
void pp_cpu_stop(void (*fn)(void *baton, const pp_cpu_sample *s), void *baton);

/* Samples dropped because the ring was full, since pp_cpu_start. */
uint64_t pp_cpu_dropped(void);

/* The sampling period in nanoseconds for hz. */
int64_t pp_cpu_period_ns(int hz);

/* Let this thread be sampled: unblock the sampling signal in it (thread pools often
 * block every asynchronous signal, and a blocked signal is never delivered). Once per
 * thread; later calls cost a thread-local test. Because it unblocks the signal, a program
 * whose disposition of it is SIG_DFL should make it SIG_IGN first, so that a stray one
 * cannot kill it. On x86-64 it also records the thread's stack bounds (pp_funwind_bounds:
 * a thread made by fork has its parent's), so that the thread's samples have their whole
 * stack even before it is warmed (a request that was running when sampling started);
 * elsewhere, until a thread is also warmed (pp_cpu_thread_warm), its samples carry only
 * the interrupted PC (PP_CPU_LEAF_ONLY). */
void pp_cpu_thread_allow(void);

/* Make this thread ready for full stacks, outside any signal handler: allow it (above)
 * and prepare its unwinder (x86-64: pp_funwind's process-wide frame cache, mapped at the
 * first call in the process, and this thread's stack bounds; the frames of the caller's
 * stack are cached here. Elsewhere libunwind's per-thread cache, about 257 KiB, which a
 * signal handler must not allocate). Cheap after the first call in a thread. */
void pp_cpu_thread_warm(void);

/* Set this thread's tag, recorded in its samples (0: none). Async-signal-safe and a
 * single store: callable on every request. */
void pp_cpu_set_tag(uint32_t tag);

/* The signal handler's cost, measured: unwinds n times from a signal frame on this
 * thread (raising the sampling signal at itself) and reports each handler's duration in ns into
 * out (capacity n). For the benchmark; requires pp_cpu_start not running. */
int pp_cpu_measure_handler(int64_t *out, int n);

#endif
