/* What the kinds do at each phase of every connection and request, called from the one
 * hook per phase that mod_pprof.c registers. Every hook httpd runs is a call on every
 * request, profiled or not, and the module is meant to cost nothing measurable while no
 * profile runs: so the CPU profile's tag, the thread dump's request record and the trace's
 * recorder share one pre_connection, one create_request, one handler (REALLY_FIRST) and
 * one last log_transaction hook instead of registering three of each. Hooks that must run
 * at another place (the trace's first log_transaction, its post_read_request and fixups,
 * the request record's post_read_request, REALLY_LAST for mod_remoteip's client) stay the
 * kind's own. Each function here is cheap when its kind observes nothing: a load and a
 * branch, or a write to the thread's own record. Request threads only. */
#ifndef PPROF_REQUEST_H
#define PPROF_REQUEST_H

#include "httpd.h"

/* cpu (pprof_cpu.c): label the thread with r's handler and vhost while sampling, and
 * clear the label when a connection or a main request begins. */
void pprof_cpu_tag(request_rec *r);
void pprof_cpu_untag(void);

/* goroutine (pprof_threads.c): the request record's handler, and its end (on whichever
 * thread logs r). */
void pprof_threads_handler(request_rec *r);
void pprof_threads_request_end(request_rec *r);

/* trace (pprof_trace_rec.c): the connection's output filter and its wake-up, a request's
 * beginning, its handler region, its status and the end of its log region. */
void pprof_trace_rec_connection(conn_rec *c);
void pprof_trace_rec_create_request(request_rec *r);
void pprof_trace_rec_handler(request_rec *r);
void pprof_trace_rec_log_last(request_rec *r);

#endif
