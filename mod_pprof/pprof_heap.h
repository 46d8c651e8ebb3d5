/* /debug/pprof/heap and /debug/pprof/allocs: Go's memory profiles for the whole server. */
#ifndef PPROF_HEAP_H
#define PPROF_HEAP_H

#include "httpd.h"

int pprof_serve_heap(request_rec *r, apr_table_t *args);
int pprof_serve_allocs(request_rec *r, apr_table_t *args);

/* Go's index count: the number of records of the heap profile, server-wide. */
long pprof_heap_count(request_rec *r);

#endif
