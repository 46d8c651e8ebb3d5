/* /debug/pprof/trace: an execution trace of the whole server, in Go's format.
 *
 * In every child, each worker thread writes what it does into a ring of its own
 * (pp_tbuf) from request hooks: it starts work, a request (a task named by its handler)
 * goes through its phases (regions read_request, access_auth, handler, output, log), it
 * waits for a held lock, it goes idle. While no trace runs each hook costs one load and
 * one predictable branch. The collecting child polls every child's agent a few times a
 * second, turns the records into Go's format (pp_trace) and streams them to the client. */
#ifndef PPROF_TRACE_H
#define PPROF_TRACE_H

#include "httpd.h"

/* register_hooks: the request hooks and the output filter. */
void pprof_trace_register_hooks(apr_pool_t *p);

/* post_config (parent): interpose pthread_mutex_lock for lock waits. */
void pprof_trace_post_config(server_rec *s);

/* The handler of /debug/pprof/trace. */
int pprof_serve_trace(request_rec *r, apr_table_t *args);

/* --- the agent's side (one thread per child) ------------------------------------------ */

/* Make the rings (once per child; they stay) and switch this child's hooks to gen.
 * NULL, or why not. */
const char *pprof_trace_child_start(apr_uint32_t gen, int nslots);

/* Switch the hooks off (if gen is still on). */
void pprof_trace_child_stop(apr_uint32_t gen);

/* After the last read of a trace: the rings' memory goes back to the system. */
void pprof_trace_child_trim(void);

/* Append every ring's published records of gen to *buf (malloc'ed, *len used of *cap):
 * "[u32 slot][u32 tid][u32 len][u32 0] records" sections. Adds the records lost to full
 * rings since the last call to *dropped. -1 on out of memory (what fitted is kept). */
int pprof_trace_child_drain(apr_uint32_t gen, unsigned char **buf, apr_size_t *len,
                            apr_size_t *cap, apr_uint64_t *dropped);

/* The child ends (after its threads): leave what they wrote for trace gen (the one
 * that was on, or 0), after what the agent holds (buf, len), to the collector. */
void pprof_trace_child_exit(apr_pool_t *p, apr_uint32_t gen, const unsigned char *buf,
                            apr_size_t len);

#endif
