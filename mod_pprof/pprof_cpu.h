/* /debug/pprof/profile: Go's Profile handler for the whole server. */
#ifndef PPROF_CPU_H
#define PPROF_CPU_H

#include "httpd.h"

int pprof_serve_profile(request_rec *r, apr_table_t *args);

#endif
