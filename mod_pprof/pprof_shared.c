#include "pprof_shared.h"

#include "http_log.h"
#include "apr_shm.h"

#include <errno.h>
#include <signal.h>
#include <sys/types.h>

APLOG_USE_MODULE(pprof);

typedef struct {
    pprof_window window[PPROF_MAX_WINDOWS];
} pprof_shared;

static pprof_shared *shared;

apr_status_t pprof_shared_create(apr_pool_t *pconf, server_rec *s)
{
    apr_shm_t *shm;
    apr_status_t rv = apr_shm_create(&shm, sizeof(pprof_shared), NULL, pconf);

    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                     "PP0001: cannot create anonymous shared memory for mod_pprof");
        shared = NULL;
        return rv;
    }
    shared = apr_shm_baseaddr_get(shm);
    memset(shared, 0, sizeof(*shared));
    return APR_SUCCESS;
}

pprof_window *pprof_shared_window(int index)
{
    return shared && index >= 0 && index < PPROF_MAX_WINDOWS ? &shared->window[index] : NULL;
}

apr_uint32_t pprof_window_active(const pprof_window *w)
{
    return __atomic_load_n(&w->active, __ATOMIC_ACQUIRE);
}

apr_uint32_t pprof_window_hz(const pprof_window *w)
{
    return __atomic_load_n(&w->hz, __ATOMIC_ACQUIRE);
}

apr_uint32_t pprof_window_only(const pprof_window *w)
{
    return __atomic_load_n(&w->only_pid, __ATOMIC_ACQUIRE);
}

apr_time_t pprof_window_deadline(const pprof_window *w)
{
    return __atomic_load_n(&w->deadline, __ATOMIC_ACQUIRE);
}

int pprof_window_claim(pprof_window *w, apr_uint32_t pid)
{
    apr_uint32_t owner = 0;

    if (__atomic_compare_exchange_n(&w->owner, &owner, pid, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        return 1;
    }
    /* A collector that died (killed child) must not hold the window forever. */
    if (owner != pid && kill((pid_t)owner, 0) != 0 && errno == ESRCH &&
        __atomic_compare_exchange_n(&w->owner, &owner, pid, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        __atomic_store_n(&w->active, 0, __ATOMIC_RELEASE);
        return 1;
    }
    return 0;
}

void pprof_window_release(pprof_window *w, apr_uint32_t pid)
{
    apr_uint32_t expect = pid;

    __atomic_compare_exchange_n(&w->owner, &expect, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE);
}

apr_uint32_t pprof_window_open(pprof_window *w, apr_uint32_t hz, apr_uint32_t only_pid,
                               apr_time_t deadline)
{
    apr_uint32_t gen = __atomic_add_fetch(&w->gen, 1, __ATOMIC_ACQ_REL);

    if (gen == 0) {
        gen = __atomic_add_fetch(&w->gen, 1, __ATOMIC_ACQ_REL);
    }
    __atomic_store_n(&w->hz, hz, __ATOMIC_RELEASE);
    __atomic_store_n(&w->only_pid, only_pid, __ATOMIC_RELEASE);
    __atomic_store_n(&w->deadline, deadline, __ATOMIC_RELEASE);
    /* Last: a child that sees active sees the fields above. */
    __atomic_store_n(&w->active, gen, __ATOMIC_RELEASE);
    return gen;
}

void pprof_window_close(pprof_window *w)
{
    __atomic_store_n(&w->active, 0, __ATOMIC_RELEASE);
}
