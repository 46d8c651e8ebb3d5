/* Waits as a tracer sees them: pthread_mutex_lock and poll are interposed in every
 * loaded object (pp_got). While an observer is switched on, a lock that is already held
 * and a poll that may block (timeout != 0: a socket read or write waiting for its peer,
 * a backend's answer) are reported before the wait, with the waiting call stack, and
 * after it. A free lock costs one trylock and is not reported. While the observer is off
 * each replacement costs one predictable branch before the real call. The observer must
 * not wait itself. Observed or not, the replacements behave as the real calls do: errno
 * is theirs, and cancellation acts where theirs does (never in pthread_mutex_lock; in
 * poll, after which the observer still hears the wait is over). */
#ifndef PP_WAIT_H
#define PP_WAIT_H

#include <stdint.h>

#define PP_WAIT_DEPTH 24

enum { PP_WAIT_DONE = 0, PP_WAIT_LOCK = 1, PP_WAIT_NET = 2, PP_WAIT_ASK = 4,
       PP_WAIT_SYNC = 8 };

/* Called as fn(kind | PP_WAIT_ASK, NULL, 0) first (kind PP_WAIT_LOCK or PP_WAIT_NET): a
 * non-zero answer means "report this wait", and only then is the stack unwound and
 * fn(kind, pcs, npcs) called (return addresses, the caller of pthread_mutex_lock or poll
 * first), then fn(PP_WAIT_DONE, NULL, 0) when the wait is over. Other answers are
 * ignored. */
typedef int (*pp_wait_fn)(int kind, const uint64_t *pcs, int npcs);

/* Interpose (process-wide, once; inherited by forked children). Returns the number of
 * call sites hooked, or -1. */
int pp_wait_install(void);

/* Other synchronization waits (Go's block profile), reported as PP_WAIT_SYNC once
 * pp_wait_install_sync has interposed them (once, in the parent): pthread_cond_wait and
 * pthread_cond_timedwait (always a wait), pthread_rwlock_rdlock and _wrlock (when a
 * try finds the lock taken), sem_wait and sem_timedwait (when a try finds the count 0).
 * An observer that does not want them answers 0 to PP_WAIT_SYNC | PP_WAIT_ASK. Cond
 * waits and sem waits are cancellation points: a thread cancelled in one still ends its
 * wait, as in poll. Objects bound to glibc's pre-2.3.2 condition variables
 * (pthread_cond_*@GLIBC_2.2.5) would reach the current ones: none in Debian's Apache.
 * Returns the number of call sites hooked, or -1. */
int pp_wait_install_sync(void);

/* Switch the observer on (fn) or off (NULL). */
void pp_wait_observe(pp_wait_fn fn);

/* Contention, attributed to the unlocker (Go's mutex profile). pthread_mutex_unlock is
 * interposed too (pp_wait_install_unlock, once, in the parent). While a contention
 * observer is on, a thread whose pthread_mutex_lock finds the mutex held registers as a
 * waiter in a small table keyed by the mutex's address (a fixed array of slots, each
 * guarded by a spin flag; a mutex whose slot another mutex holds is not tracked). Each
 * pthread_mutex_unlock of a mutex with waiters charges the delay they suffered since
 * they began to wait or since the previous unlock of that mutex, whichever is later:
 * n waiters, each charged (now - max(start, last unlock)); so the delays charged add up
 * to the waiting that happened (less each waiter's wake-up, after the last unlock). One
 * such unlock in `fraction` (random, as Go's fastrand()%rate == 0) is reported:
 * fn(delay_ns, pcs, npcs) with the unlocker's stack (the caller of pthread_mutex_unlock
 * first; return addresses). With no contention observer the unlock hook costs one
 * predictable branch; with one, an unlock while no thread waits anywhere costs one more
 * load (a global count of waiters). */
typedef void (*pp_contend_fn)(uint64_t delay_ns, const uint64_t *pcs, int npcs);

int pp_wait_install_unlock(void);
void pp_wait_contention(pp_contend_fn fn, unsigned fraction);

/* Mutexes whose contention was not tracked (their slot was taken). */
uint64_t pp_wait_untracked(void);

#endif
