#include "pprof_symbols.h"

#include "apr_thread_mutex.h"

#include "pp_heap.h"
#include "pp_maps.h"

#include <fcntl.h>
#include <unistd.h>

static apr_thread_mutex_t *mutex;       /* NULL in the parent: one thread there */
static pp_symbolizer *symbolizer;

static apr_status_t symbols_cleanup(void *unused)
{
    pp_symbolizer_free(symbolizer);
    symbolizer = NULL;
    mutex = NULL;
    return APR_SUCCESS;
}

#define FD_SCAN 4096

/* Descriptors libdw opens (debug files) must not reach what children exec (CGI): only
 * those not open before (was) are marked. */
static void mark_open(unsigned char *was)
{
    int fd;

    for (fd = 0; fd < FD_SCAN; fd++) {
        was[fd] = fcntl(fd, F_GETFD) >= 0;
    }
}

static void cloexec_new(const unsigned char *was)
{
    int fd, flags;

    for (fd = 0; fd < FD_SCAN; fd++) {
        if (!was[fd] && (flags = fcntl(fd, F_GETFD)) >= 0 && !(flags & FD_CLOEXEC)) {
            fcntl(fd, F_SETFD, flags | FD_CLOEXEC);
        }
    }
}

void pprof_symbols_post_config(apr_pool_t *pconf)
{
    unsigned char *was = apr_palloc(pconf, FD_SCAN);
    pp_maps *maps;
    size_t i;

    if (symbolizer) {
        return;                 /* this generation's already */
    }
    /* What is allocated here is the profiler's, not the server's: never sampled, so
     * no child inherits it as a heap sample. */
    pp_heap_guard_enter();
    mark_open(was);
    if ((symbolizer = pp_symbolizer_new()) && (maps = pp_maps_read(NULL)) != NULL) {
        for (i = 0; i < pp_maps_count(maps); i++) {
            pp_symbolizer_build_id(symbolizer, pp_maps_get(maps, i)->path);
        }
        pp_maps_free(maps);
        pp_symbolizer_close_light(symbolizer);
    }
    cloexec_new(was);
    pp_heap_guard_leave();
    apr_pool_cleanup_register(pconf, NULL, symbols_cleanup, apr_pool_cleanup_null);
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
