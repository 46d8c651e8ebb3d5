/* The pprof-handler: picks the endpoint from the URL (ours: the index page, cmdline,
 * symbol; and every kind's, pprof_kinds.h) and answers as Go's net/http/pprof. */
#ifndef PPROF_HANDLER_H
#define PPROF_HANDLER_H

#include "httpd.h"

/* register_hooks: gather the endpoints of every kind. */
void pprof_handler_init(void);

int pprof_handler(request_rec *r);

#endif
