#include "pprof_waits.h"

#include "http_log.h"

APLOG_USE_MODULE(pprof);

#define MAX_OBSERVERS 4

static int installed;
static pp_wait_fn observers[MAX_OBSERVERS];     /* read by every waiting thread */
/* Which observers asked for the wait this thread is in (one at a time per thread). */
static __thread unsigned asked __attribute__((tls_model("initial-exec")));

void pprof_waits_install(server_rec *s)
{
    if (installed) {
        return;
    }
    installed = 1;
    if (pp_wait_install() < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PP0400: cannot hook pthread_mutex_lock and poll: traces show no waits");
    }
}

static int dispatch(int kind, const uint64_t *pcs, int npcs)
{
    unsigned i;

    if (kind & PP_WAIT_ASK) {
        unsigned want = 0;
        for (i = 0; i < MAX_OBSERVERS; i++) {
            pp_wait_fn fn = __atomic_load_n(&observers[i], __ATOMIC_ACQUIRE);
            if (fn && fn(kind, NULL, 0)) {
                want |= 1u << i;
            }
        }
        asked = want;
        return want != 0;
    }
    for (i = 0; i < MAX_OBSERVERS; i++) {
        pp_wait_fn fn;
        if ((asked & (1u << i)) && (fn = __atomic_load_n(&observers[i], __ATOMIC_ACQUIRE))) {
            fn(kind, pcs, npcs);
        }
    }
    if (kind == PP_WAIT_DONE) {
        asked = 0;
    }
    return 1;
}

/* pp_wait's one observer: ours while any is added, none otherwise. */
static void update(void)
{
    int i, any = 0;

    for (i = 0; i < MAX_OBSERVERS; i++) {
        any |= observers[i] != NULL;
    }
    pp_wait_observe(any ? dispatch : NULL);
}

void pprof_waits_observe(pp_wait_fn fn)
{
    int i, free_slot = -1;

    for (i = 0; i < MAX_OBSERVERS; i++) {
        if (observers[i] == fn) {
            return;
        }
        if (!observers[i] && free_slot < 0) {
            free_slot = i;
        }
    }
    if (free_slot >= 0) {
        __atomic_store_n(&observers[free_slot], fn, __ATOMIC_RELEASE);
        update();
    }
}

void pprof_waits_unobserve(pp_wait_fn fn)
{
    int i;

    for (i = 0; i < MAX_OBSERVERS; i++) {
        if (observers[i] == fn) {
            __atomic_store_n(&observers[i], NULL, __ATOMIC_RELEASE);
        }
    }
    update();
}
