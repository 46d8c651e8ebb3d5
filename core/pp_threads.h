/* Stacks of every thread of this process, on demand: each thread is sent a directed
 * real-time signal (rt_tgsigqueueinfo) whose handler unwinds its interrupted context into
 * a preallocated slot, with libunwind's step loop (async-signal-safe, no per-thread
 * cache to warm). A thread that does not answer by the deadline (it blocks the signal, or
 * never gets scheduled) is reported as such, never waited on further. A thread never holds
 * more than one request: while an earlier one is still pending for it (/proc's SigPnd),
 * it is not asked again and is reported as not answering at once.
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

typedef struct {
    uint32_t tid;
    pp_thread_result result;
    char state;                 /* from /proc: R running, S sleeping, D disk, ... */
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
