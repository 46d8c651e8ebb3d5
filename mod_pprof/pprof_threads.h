/* /debug/pprof/goroutine (every thread of every child, with the request it serves, from
 * its own request record) and /debug/pprof/threadcreate (where each live thread was
 * created). */
#ifndef PPROF_THREADS_H
#define PPROF_THREADS_H

#include "httpd.h"

int pprof_serve_goroutine(request_rec *r, apr_table_t *args);
int pprof_serve_threadcreate(request_rec *r, apr_table_t *args);

/* Index counts: threads of every child (from /proc, without stopping any thread). */
long pprof_threads_count(request_rec *r);

#endif
