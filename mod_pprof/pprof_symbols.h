/* The symbolizer of this process (libdw's objects and the site cache of pp_symbolize),
 * made on first use and kept until the child ends: every answer that names code shares
 * it. libdw is not thread-safe, so it is held by one request thread at a time. */
#ifndef PPROF_SYMBOLS_H
#define PPROF_SYMBOLS_H

#include "httpd.h"

#include "pp_symbolize.h"

/* child_init: the lock, and the cleanup that frees the symbolizer with pchild. */
void pprof_symbols_child_init(apr_pool_t *pchild);

/* Take the symbolizer; the caller releases it with pprof_symbols_unlock. NULL when out of
 * memory (nothing is held then). Blocks while another thread holds it. */
pp_symbolizer *pprof_symbols_lock(void);
void pprof_symbols_unlock(void);

#endif
