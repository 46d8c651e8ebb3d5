/* Lock and network waits (pp_wait: pthread_mutex_lock and poll interposed in every loaded
 * object), shared by the kinds that observe them: pp_wait has one observer, this is it,
 * and it hands each wait to every kind's observer that asks for it (the trace's recorder
 * now; a mutex or block profile beside it). With no observer, pp_wait's hooks cost one
 * predictable branch, as before.
 *
 * An observer follows pp_wait's protocol (pp_wait_fn): asked first (kind | PP_WAIT_ASK),
 * and only if it answers non-zero told the stack, then the end (PP_WAIT_DONE). It runs on
 * the waiting thread, must not wait itself, and is called while added (and at most for
 * the wait in flight after it is removed: its code must stay loaded, as a module's does). */
#ifndef PPROF_WAITS_H
#define PPROF_WAITS_H

#include "httpd.h"

#include "pp_wait.h"

/* post_config (parent), by each kind that observes waits: interpose once (PP0400 when it
 * cannot: nothing is observed then). */
void pprof_waits_install(server_rec *s);

/* Add or remove an observer (at most 4; from one thread at a time: the agent's). */
void pprof_waits_observe(pp_wait_fn fn);
void pprof_waits_unobserve(pp_wait_fn fn);

#endif
