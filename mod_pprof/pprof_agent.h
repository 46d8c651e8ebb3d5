/* The agent: a thread in every child that answers the collector (pprof_collect) for every
 * kind of the registry (pprof_kinds.h). Per connection it reads one request (pp_wire),
 * hands it to the kind's agent half, and writes the kind's reply. It also keeps, for each
 * window kind, the window open in this child: joins an open window when the child starts,
 * ticks it (every PPROF_TICK_MS, or its kind's tick_ms), stops it at its deadline or when
 * it closes in shared memory (a collector that died), and when the child ends
 * (PPROF_STOP_EXIT). Every read
 * and write has a deadline; requests are bounded (PP_WIRE_MAX_REQUEST). */
#ifndef PPROF_AGENT_H
#define PPROF_AGENT_H

#include "httpd.h"

/* child_init, after every kind's child_init: listen, join the open windows, start the
 * thread. Errors are logged (PP0010-PP0012); the child then serves without an agent. */
void pprof_agent_child_init(apr_pool_t *pchild, server_rec *s);

#endif
