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

enum { PP_WAIT_DONE = 0, PP_WAIT_LOCK = 1, PP_WAIT_NET = 2, PP_WAIT_ASK = 4 };

/* Called as fn(kind | PP_WAIT_ASK, NULL, 0) first (kind PP_WAIT_LOCK or PP_WAIT_NET): a
 * non-zero answer means "report this wait", and only then is the stack unwound and
 * fn(kind, pcs, npcs) called (return addresses, the caller of pthread_mutex_lock or poll
 * first), then fn(PP_WAIT_DONE, NULL, 0) when the wait is over. Other answers are
 * ignored. */
typedef int (*pp_wait_fn)(int kind, const uint64_t *pcs, int npcs);

/* Interpose (process-wide, once; inherited by forked children). Returns the number of
 * call sites hooked, or -1. */
int pp_wait_install(void);

/* Switch the observer on (fn) or off (NULL). */
void pp_wait_observe(pp_wait_fn fn);

#endif
