/* Lock waits as a tracer sees them: pthread_mutex_lock is interposed in every loaded
 * object (pp_got), and while an observer is switched on, a lock that is already held is
 * reported before the wait and after it. A free lock costs one trylock, and nothing is
 * reported; while the observer is off the replacement costs one predictable branch
 * before the real call. The observer must be async-signal-safe in spirit: no locks. */
#ifndef PP_LOCKWAIT_H
#define PP_LOCKWAIT_H

/* phase: 1 before waiting for a held lock, 0 once it is taken. */
typedef void (*pp_lockwait_fn)(int phase, const void *mutex);

/* Interpose pthread_mutex_lock (process-wide, once; inherited by forked children).
 * Returns the number of call sites hooked, or -1. */
int pp_lockwait_install(void);

/* Switch the observer on (fn) or off (NULL). */
void pp_lockwait_observe(pp_lockwait_fn fn);

#endif
