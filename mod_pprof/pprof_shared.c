#include "pprof_shared.h"
#include "pprof_kinds.h"
#include "pprof_scoreboard.h"

#include "http_config.h"
#include "http_log.h"
#include "apr_shm.h"
#include "apr_strings.h"

#include <errno.h>
#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define MAGIC 0x50505348u       /* "PPSH": a segment of this module, of any layout */

/* The head never changes between versions of the module: a graceful restart into another
 * build (another layout) finds the older segment's window count through it. */
typedef struct {
    apr_uint32_t magic;
    apr_uint32_t parent;        /* the server's parent: owners are its children */
    apr_uint32_t next_gen;      /* every window of every kind takes the next one */
    apr_uint32_t pad;
} pprof_shared_head;

typedef struct {
    pprof_shared_head head;
    pprof_window window[PPROF_MAX_WINDOWS];
    apr_uint64_t quiet[PPROF_QUIET_WORDS];      /* (gen << 32) | pid: see pprof_quiet_say */
} pprof_shared;

/* What the parent keeps across generations (ap_retained_data: its process pool). */
typedef struct {
    pprof_shared *seg;
} retained;

static pprof_shared *shared;

/* Retained data: under LATEST_KEY the newest segment whatever its layout, under
 * layout_key() the segment of this build's layout. */
#define LATEST_KEY "mod_pprof: shared windows"

/* A segment's layout: its size and the kinds its slots stand for, in order. A module of
 * another layout (loaded by a graceful restart after an upgrade) makes its own segment:
 * slot i must mean the same kind to every child that reads it. */
static const char *layout_key(apr_pool_t *p)
{
    const char *key = apr_psprintf(p, "%s %" APR_SIZE_T_FMT, LATEST_KEY, sizeof(pprof_shared));
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        key = apr_pstrcat(p, key, " ", pprof_kinds[i]->name, NULL);
    }
    return key;
}

/* Whether pid still owns what it claimed: a live (not zombie) child of our parent. The
 * parent's own pid counts (one-process mode, -X). Unsure (no /proc) means alive: a window
 * must never be taken from a collector that still runs. */
static int owner_alive(apr_uint32_t pid)
{
    apr_uint32_t parent = shared ? __atomic_load_n(&shared->head.parent, __ATOMIC_RELAXED) : 0;

    if (!pid || (kill((pid_t)pid, 0) != 0 && errno == ESRCH)) {
        return 0;
    }
    if (!parent || pid == parent) {
        return 1;
    }
    return pprof_is_child((pid_t)pid, (pid_t)parent) != 0;
}

apr_status_t pprof_shared_create(apr_pool_t *pconf, server_rec *s)
{
    apr_pool_t *life = s->process->pool;
    const char *key = layout_key(pconf);
    retained *mine = ap_retained_data_get(key), *latest = ap_retained_data_get(LATEST_KEY);
    apr_shm_t *shm;
    apr_status_t rv;
    int i, nkinds = 0;

    if (!mine) {
        /* First generation (or the first of this layout): the segment lives in the
         * process pool, with the parent; children of every generation inherit it. */
        if ((rv = apr_shm_create(&shm, sizeof(pprof_shared), NULL, life)) != APR_SUCCESS) {
            ap_log_error(APLOG_MARK, APLOG_ERR, rv, s,
                         "PP0001: cannot create anonymous shared memory for mod_pprof");
            shared = NULL;
            return rv;
        }
        mine = ap_retained_data_create(key, sizeof(*mine));   /* the key is copied */
        mine->seg = apr_shm_baseaddr_get(shm);
        memset(mine->seg, 0, sizeof(*mine->seg));
        mine->seg->head.magic = MAGIC;
        /* After a segment of another layout, gens go on past its: a child of the older
         * build must not take one of ours for one of its windows. */
        if (latest && latest->seg && latest->seg->head.magic == MAGIC) {
            mine->seg->head.next_gen =
                __atomic_load_n(&latest->seg->head.next_gen, __ATOMIC_ACQUIRE) + (1u << 24);
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "PP0006: another build of mod_pprof: "
                         "its windows are apart from those of children of the older one");
        }
        if (!latest) {
            latest = ap_retained_data_create(LATEST_KEY, sizeof(*latest));
        }
        latest->seg = mine->seg;
    }
    shared = mine->seg;
    while (pprof_kinds[nkinds]) {
        nkinds++;
    }
    __atomic_store_n(&shared->head.parent, (apr_uint32_t)getpid(), __ATOMIC_RELEASE);
    /* A window whose collector died (a restart that killed the children, a crash) must
     * not be joined by the children about to start: close it, free it. A collector of
     * an older generation that still runs keeps its window. */
    for (i = 0; i < PPROF_MAX_WINDOWS; i++) {
        pprof_window *w = &shared->window[i];
        apr_uint32_t owner = __atomic_load_n(&w->owner, __ATOMIC_ACQUIRE);
        if (!owner_alive(owner)) {
            if (owner && i < nkinds) {
                ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "PP0007: the %s window of pid %lu, "
                             "which is gone, is closed", pprof_kinds[i]->name,
                             (unsigned long)owner);
            }
            __atomic_store_n(&w->active, 0, __ATOMIC_RELEASE);
            __atomic_compare_exchange_n(&w->owner, &owner, 0, 0, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE);
        }
    }
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
    if (owner != pid && !owner_alive(owner) &&
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

int pprof_windows_busy(void)
{
    int i;

    for (i = 0; shared && i < PPROF_MAX_WINDOWS; i++) {
        if (owner_alive(__atomic_load_n(&shared->window[i].owner, __ATOMIC_ACQUIRE))) {
            return 1;
        }
    }
    return 0;
}

apr_uint32_t pprof_window_open(pprof_window *w, apr_uint32_t hz, apr_uint32_t only_pid,
                               apr_time_t deadline)
{
    apr_uint32_t gen = __atomic_add_fetch(&shared->head.next_gen, 1, __ATOMIC_ACQ_REL);

    if (gen == 0) {
        gen = __atomic_add_fetch(&shared->head.next_gen, 1, __ATOMIC_ACQ_REL);
    }
    __atomic_store_n(&w->gen, gen, __ATOMIC_RELEASE);
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

static apr_uint64_t *quiet_word(pid_t pid)
{
    return &shared->quiet[(apr_uint32_t)pid % PPROF_QUIET_WORDS];
}

/* This child's pid, for its workers (set by its agent before it first says it is quiet:
 * until then there is no word of this child's to clear). */
static apr_uint32_t quiet_pid;

void pprof_quiet_say(apr_uint32_t gen, int quiet)
{
    apr_uint32_t pid = __atomic_load_n(&quiet_pid, __ATOMIC_RELAXED);
    apr_uint64_t mine, *w;

    if (!shared || !gen) {
        return;
    }
    if (!pid) {
        pid = (apr_uint32_t)getpid();
        __atomic_store_n(&quiet_pid, pid, __ATOMIC_RELEASE);
    }
    mine = ((apr_uint64_t)gen << 32) | pid;
    w = quiet_word((pid_t)pid);
    if (quiet) {
        /* A child displaced from the word is asked: never wrong, only dearer. */
        if (__atomic_load_n(w, __ATOMIC_RELAXED) != mine) {
            __atomic_store_n(w, mine, __ATOMIC_RELEASE);
        }
    } else if (__atomic_load_n(w, __ATOMIC_RELAXED) == mine) {
        __atomic_compare_exchange_n(w, &mine, 0, 0, __ATOMIC_ACQ_REL, __ATOMIC_RELAXED);
    }
}

void pprof_quiet_wake(apr_uint32_t gen)
{
    apr_uint32_t pid = __atomic_load_n(&quiet_pid, __ATOMIC_ACQUIRE);
    apr_uint64_t mine = ((apr_uint64_t)gen << 32) | pid;

    if (shared && pid) {
        __atomic_compare_exchange_n(quiet_word((pid_t)pid), &mine, 0, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_RELAXED);
    }
}

int pprof_quiet_is(apr_uint32_t gen, pid_t pid)
{
    apr_uint64_t mine = ((apr_uint64_t)gen << 32) | (apr_uint32_t)pid;

    return shared && gen && pid > 0 &&
           __atomic_load_n(quiet_word(pid), __ATOMIC_ACQUIRE) == mine;
}
