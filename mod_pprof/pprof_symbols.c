#include "pprof_symbols.h"

#include "apr_thread_mutex.h"

static apr_thread_mutex_t *mutex;       /* NULL in the parent: one thread there */
static pp_symbolizer *symbolizer;

static apr_status_t symbols_cleanup(void *unused)
{
    pp_symbolizer_free(symbolizer);
    symbolizer = NULL;
    mutex = NULL;
    return APR_SUCCESS;
}

void pprof_symbols_child_init(apr_pool_t *pchild)
{
    apr_thread_mutex_create(&mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    apr_pool_cleanup_register(pchild, NULL, symbols_cleanup, apr_pool_cleanup_null);
}

pp_symbolizer *pprof_symbols_lock(void)
{
    if (mutex) {
        apr_thread_mutex_lock(mutex);
    }
    if (!symbolizer && !(symbolizer = pp_symbolizer_new())) {
        pprof_symbols_unlock();
        return NULL;
    }
    return symbolizer;
}

void pprof_symbols_unlock(void)
{
    if (mutex) {
        apr_thread_mutex_unlock(mutex);
    }
}
