/* Lock waits as a tracer sees them: pthread_mutex_lock is interposed in every loaded
 * object (pp_got), and while an observer is switched on, a lock that is already held is
 * reported before the wait (with the waiting call stack) and after it. A free lock costs
 * one trylock, and nothing is reported; while the observer is off the replacement costs
 * one predictable branch before the real call. The observer must not lock. */
#ifndef PP_LOCKWAIT_H
#define PP_LOCKWAIT_H

#include <stdint.h>

#define PP_LOCKWAIT_DEPTH 24

/* phase 1: about to wait for a held lock, called from pcs (return addresses, the caller
 * of pthread_mutex_lock first); phase 0: taken (pcs NULL). */
typedef void (*pp_lockwait_fn)(int phase, const uint64_t *pcs, int npcs);

/* Interpose pthread_mutex_lock (process-wide, once; inherited by forked children).
 * Returns the number of call sites hooked, or -1. */
int pp_lockwait_install(void);

/* Switch the observer on (fn) or off (NULL). */
void pp_lockwait_observe(pp_lockwait_fn fn);

#endif
