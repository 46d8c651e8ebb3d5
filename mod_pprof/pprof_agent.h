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

#endif
