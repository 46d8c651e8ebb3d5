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

/* The calling thread's worker slot in this child's scoreboard row (found once per
 * thread), or -1 for a thread that is no worker. */
int pprof_agent_slot(void);

/* The kernel's thread id of the worker in slot, 0 until that thread was seen. */
apr_uint32_t pprof_agent_slot_tid(int slot);

#endif
