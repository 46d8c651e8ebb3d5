/* The symbolizer of this process (libdw's objects and the site cache of pp_symbolize),
 * kept until the child ends: every answer that names code shares it. libdw is not
 * thread-safe, so it is held by one request thread at a time.
 *
 * It is made in the parent, before the children are forked, with every object the parent
 * has loaded opened: opening one reads (and for Debian's compressed debug files,
 * inflates) its DWARF, ~0.2 s of CPU and ~10 MiB for libc's alone. Made in each child on
 * its first profile instead, every prefork child that ever answered one paid both, and
 * kept the memory private. Forked, the children share those pages until they write them;
 * a child opens only what it loaded itself. */
#ifndef PPROF_SYMBOLS_H
#define PPROF_SYMBOLS_H

#include "httpd.h"

#include "pp_symbolize.h"

/* post_config, in the parent: make the symbolizer and open every loaded object (freed
 * with pconf, before a restart unloads this module). */
void pprof_symbols_post_config(apr_pool_t *pconf);

/* child_init: the lock, and the cleanup that frees the symbolizer with pchild. */
void pprof_symbols_child_init(apr_pool_t *pchild);

/* Take the symbolizer; the caller releases it with pprof_symbols_unlock. NULL when out of
 * memory (nothing is held then). Blocks while another thread holds it. */
pp_symbolizer *pprof_symbols_lock(void);
void pprof_symbols_unlock(void);

#endif
