/* Stacks of every thread of this process, on demand, without changing what any thread
 * does: taking them must never end a wait early. A signal handler that runs while a
 * thread is blocked makes nanosleep, clock_nanosleep, poll, ppoll, select, pselect,
 * epoll_wait, timed futex waits, semop... return EINTR (with or without SA_RESTART): a
 * sleep(), a backend's timeout or a module's wait that does not retry would end early,
 * and one that retries would not know how long is left. So no thread is ever signalled
 * while it could be blocked:
 *
 *  - A thread blocked in the kernel (/proc/self/task/TID/syscall gives the call it waits
 *    in, with the stack pointer and PC it entered the kernel at) is unwound from those two
 *    registers by the capturing thread, reading its stack through process_vm_readv
 *    (pp_regunwind): it is never interrupted. The stack is kept only if the thread did
 *    not move meanwhile: the syscall file reads the same before and after the walk (still
 *    blocked, same call, arguments, sp and pc) and its context switch count
 *    (pp_tasks_switches, read first and last) did not change, so it did not run in
 *    between (to block again it would have had to switch out). Otherwise it is tried again
 *    in the next round, never reported torn. In a process that changed its user (httpd's
 *    children) that file is readable through pp_sysfd's helper only.
 *
 *  - A thread that is running (or runnable) answers a signal whose handler unwinds its
 *    interrupted context with libunwind's step loop (async-signal-safe, no per-thread
 *    cache to warm) into a preallocated slot. The signal is not sent directly
 *    (rt_tgsigqueueinfo), which could land just as the thread enters a wait and end it:
 *    it comes from a one-shot timer on the thread's own CPU-time clock, expiring after one
 *    nanosecond of its CPU time. The kernel checks such a timer only while the thread
 *    runs, and (POSIX_CPU_TIMERS_TASK_WORK, x86-64 and arm64 since Linux 5.10 and 5.19)
 *    raises its signal from the thread itself as it returns to user space: after a system
 *    call has returned, never during one. The handler therefore only ever interrupts user
 *    code, and a thread that blocks before its timer fires is taken from /proc instead.
 *
 * A thread that does neither by the deadline (it blocks the signal while running, it is
 * not scheduled, or it is blocked and /proc cannot be read) is reported as not answering,
 * never waited on further. A thread never holds more than one request: while an earlier
 * one is still pending for it (/proc's SigPnd), it is not asked again. Each thread's
 * record says how it was taken (how).
 *
 * The handler blocks the CPU sampler's signal (and the sampler's blocks this one), so two
 * unwinds never nest on one thread; the /proc walks run on the capturing thread outside
 * any handler, with libunwind's remote interface (a separate library and state from the
 * local unwinder the handlers use).
 *
 * One capture at a time per process (callers serialize). Not async-signal-safe. */
#ifndef PP_THREADS_H
#define PP_THREADS_H

#include <stddef.h>
#include <stdint.h>

#define PP_THREADS_NATIVE_DEPTH 64      /* native frames unwound */
#define PP_THREADS_MAX_DEPTH 96         /* with interpreter frames spliced in (pp_interp.h) */

typedef enum {
    PP_THREAD_OK = 0,           /* stack captured */
    PP_THREAD_SELF,             /* the capturing thread itself (captured directly) */
    PP_THREAD_NO_ANSWER,        /* did not answer by the deadline (signal blocked?), or
                                   could not be asked (an earlier request still pending,
                                   or the kernel's pending signals limit reached) */
    PP_THREAD_GONE              /* exited before it could be asked */
} pp_thread_result;

/* How a stack was taken. */
#define PP_THREAD_BY_SIGNAL 's'     /* its handler, while it ran (a CPU-time timer) */
#define PP_THREAD_BY_PROC 'p'       /* from /proc's registers while it was blocked */
#define PP_THREAD_BY_SELF 'o'       /* the capturing thread's own */

typedef struct {
    uint32_t tid;
    pp_thread_result result;
    char state;                 /* from /proc: R running, S sleeping, D disk, ... */
    char how;                   /* PP_THREAD_BY_*: how the stack was taken */
    char name[16];              /* /proc/self/task/TID/comm */
    uint64_t pthread;           /* the thread's pthread_self(), when it answered */
    uint32_t npcs;
    uint64_t pcs[PP_THREADS_MAX_DEPTH];  /* pcs[0] is the exact interrupted PC, or the
                                            newest interpreter frame (pp_interp.h) */
} pp_thread_stack;

/* The signal used: SIGRTMIN + 7 unless the program sets another before the first
 * capture. Threads must not block it to be captured: see pp_threads_allow. */
int pp_threads_signal(void);
void pp_threads_set_signal(int sig);

/* Unblock the capture signal in this thread (thread pools block every async signal).
 * Once per thread; later calls cost a thread-local test. A program should set the
 * signal to SIG_IGN beforehand if its disposition is SIG_DFL (death). */
void pp_threads_allow(void);

/* Capture every thread of the process. *out is a malloc'ed array of *n entries, ordered
 * by tid. Waits at most timeout_ms for all answers. 0, or -1 (another handler owns the
 * signal: logged as PP0501, or out of memory). */
int pp_threads_capture(pp_thread_stack **out, size_t *n, int timeout_ms);

#endif
