/* mod_pprof's side of mod_pprof_interp.h: exports the optional function. */
#ifndef PPROF_INTERP_H
#define PPROF_INTERP_H

#include "apr_pools.h"

/* register_hooks: make pprof_interp_register retrievable by other modules. */
void pprof_interp_register_hooks(apr_pool_t *p);

#endif
