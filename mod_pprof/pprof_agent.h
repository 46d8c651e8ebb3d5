/* The agent: a thread in every child that answers the collector (see pprof_ipc.h). It
 * starts and stops this child's samplers, aggregates their samples between collections,
 * and hands them over with this child's maps. Children born while a window is open join
 * it from child_init. */
#ifndef PPROF_AGENT_H
#define PPROF_AGENT_H

#include "httpd.h"

/* child_init: listen, start the thread, join an open window. */
void pprof_agent_child_init(apr_pool_t *pchild, server_rec *s);

/* Request hooks. Each costs a thread-local test and one predictable branch while no
 * profile runs. */
void pprof_agent_thread_warm(void);
void pprof_agent_tag_request(request_rec *r);

/* What the thread dump shows of a worker's request, kept in the thread's own record
 * (pp_reqrec): begin (post_read_request) copies the request line, vhost, client and start
 * time into it; the handler hook adds the handler; end (log_transaction, on whichever
 * thread logs) marks it over. No lock and no allocation; nothing from ExtendedStatus. */
void pprof_agent_request_begin(request_rec *r);
void pprof_agent_request_end(request_rec *r);

/* The calling thread's worker slot in this child's scoreboard row (found once per
 * thread), or -1 for a thread that is no worker. */
int pprof_agent_slot(void);

/* The kernel's thread id of the worker in slot, 0 until that thread was seen. */
apr_uint32_t pprof_agent_slot_tid(int slot);

#endif
