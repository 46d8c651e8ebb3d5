/* The "block" and "mutex" kinds, /debug/pprof/block and /debug/pprof/mutex: Go's
 * contention profiles for the whole server, two snapshot kinds sharing this file (their
 * agent and collector halves differ only in what feeds them and how they are scaled).
 *
 * block (PprofBlockProfileRate N, Go's SetBlockProfileRate): every wait that pp_wait
 * reports in pthread_mutex_lock (the lock was held), pthread_cond_wait/timedwait,
 * pthread_rwlock_rdlock/wrlock (held) and sem_wait/timedwait (count 0) is timed with the
 * waiter's stack (pprof_waits observer); Go's blocksampled decides whether it is recorded (a
 * delay >= N always, shorter with probability delay/N), and Go's saveblockevent how: a
 * sampled shorter event counts N/delay contentions and N ns (Go's bias removal).
 * mutex (PprofMutexProfileFraction N, Go's SetMutexProfileFraction): pp_wait's contention
 * table (pp_wait.h) charges each unlock of a mutex that threads wait for with the delay
 * they suffered since the previous unlock; one such unlock in N is recorded with the
 * unlocker's stack (Go: the stack that unlocked), scaled by N when served (Go's
 * scaleMutexProfile).
 *
 * Apache's accept mutex (prefork and worker serialize accept() across children with an
 * apr_proc_mutex, whichever mechanism `Mutex` selects): apr_proc_mutex_lock is
 * interposed too (pp_got) while the block profile is on; a lock that a try finds taken is
 * a blocking event of its own, recorded with key = the mechanism (PROC_*) and served with
 * a label wait="apr_proc_mutex_lock (<mechanism>)"; its stack names the MPM's caller
 * (prefork's child_main, worker's listener_thread: accept serialization). The
 * pthread_mutex_lock of the pthread mechanism inside it is not counted again.
 *
 * Each child records into its own bounded table (pp_stacktab, 2 values: contentions in
 * thousandths, delay in ns; key 0) from the hooks, under a spin flag, from the child's
 * start: cumulative, as Go's are since the process started. Delays are nanoseconds of
 * CLOCK_MONOTONIC: debug=1 prints cycles/second=1000000000 (one cycle = one ns).
 *
 * Reply (take): the table's stacks (PCs are return addresses), mappings, counters
 * "rate" (N) and "dropped" (events whose stack did not fit the table). */
#include "pprof_conf.h"
#include "pprof_answer.h"
#include "pprof_collect.h"
#include "pprof_kind.h"
#include "pprof_query.h"
#include "pprof_reply.h"
#include "pprof_respond.h"
#include "pprof_scoreboard.h"
#include "pprof_symbols.h"
#include "pprof_text.h"
#include "pprof_waits.h"

#include "http_log.h"
#include "apr_strings.h"

#include "apr_proc_mutex.h"

#include "pp_funwind.h"
#include "pp_got.h"
#include "pp_stacktab.h"
#include "pp_wait.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <stdlib.h>
#include <string.h>
#include <time.h>

APLOG_USE_MODULE(pprof);

extern const pprof_kind pprof_kind_block;
extern const pprof_kind pprof_kind_mutex;

#define MAX_STACKS 4096
#define MILLI 1000              /* contentions are kept in thousandths (Go's float count) */

/* One child's table of one kind. */
typedef struct {
    int spin;
    pp_stacktab *tab;
    apr_uint64_t dropped;
} table;

static table block_tab, mutex_tab;
static apr_int64_t block_rate, mutex_fraction;  /* the server's, set before the fork */
/* Set while this thread holds a table: a wait reported meanwhile is not recorded. */
static __thread int tls_holding __attribute__((tls_model("initial-exec")));

static void tab_lock(table *t)
{
    tls_holding = 1;
    while (__atomic_exchange_n(&t->spin, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(&t->spin, __ATOMIC_RELAXED)) {
            __builtin_ia32_pause();
        }
    }
}

static void tab_unlock(table *t)
{
    __atomic_store_n(&t->spin, 0, __ATOMIC_RELEASE);
    tls_holding = 0;
}

static void record_key(table *t, uint64_t key, const uint64_t *pcs, int npcs,
                       uint64_t millicount, uint64_t delay)
{
    uint64_t v[2] = { millicount, delay };

    if (tls_holding || !t->tab || npcs <= 0) {
        return;
    }
    tab_lock(t);
    if (pp_stacktab_addv(t->tab, key, pcs, (uint32_t)npcs, v) < 0) {
        t->dropped++;
    }
    tab_unlock(t);
}

static void record(table *t, const uint64_t *pcs, int npcs, uint64_t millicount,
                   uint64_t delay)
{
    record_key(t, 0, pcs, npcs, millicount, delay);
}

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* --- block: the waiter's stack, from pprof_waits ---------------------------------------- */

static __thread uint64_t w_pcs[PP_WAIT_DEPTH] __attribute__((tls_model("initial-exec")));
static __thread int w_npcs __attribute__((tls_model("initial-exec")));
static __thread uint64_t w_start __attribute__((tls_model("initial-exec")));
static __thread uint32_t w_rand __attribute__((tls_model("initial-exec")));
/* Inside apr_proc_mutex_lock's hook. */
static __thread int w_in_proc_lock __attribute__((tls_model("initial-exec")));

static uint32_t fastrand(void)
{
    uint32_t x = w_rand;

    if (x == 0) {
        x = (uint32_t)(uintptr_t)&x ^ (uint32_t)now_ns() ^ 0x85ebca6bu;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    return w_rand = x;
}

/* Go's blocksampled and saveblockevent. */
static void block_event(uint64_t key, const uint64_t *pcs, int npcs, int64_t cycles)
{
    int64_t rate = block_rate;

    if (rate > 0 && !(rate > cycles && (int64_t)(fastrand() % (uint64_t)rate) > cycles)) {
        if (cycles < rate) {
            record_key(&block_tab, key, pcs, npcs, (uint64_t)(MILLI * rate / cycles),
                       (uint64_t)rate);
        } else {
            record_key(&block_tab, key, pcs, npcs, MILLI, (uint64_t)cycles);
        }
    }
}

static int block_observer(int kind, const uint64_t *pcs, int npcs)
{
    if (kind & PP_WAIT_ASK) {
        int what = kind & ~PP_WAIT_ASK;
        return !w_in_proc_lock && (what == PP_WAIT_LOCK || what == PP_WAIT_SYNC);
    }
    if (kind == PP_WAIT_LOCK || kind == PP_WAIT_SYNC) {
        w_npcs = npcs < PP_WAIT_DEPTH ? npcs : PP_WAIT_DEPTH;
        if (w_npcs > 0) {
            memcpy(w_pcs, pcs, (size_t)w_npcs * sizeof(*pcs));
        }
        w_start = now_ns();
        return 1;
    }
    if (kind == PP_WAIT_DONE && w_npcs > 0) {
        int64_t cycles = (int64_t)(now_ns() - w_start);
        if (cycles <= 0) {
            cycles = 1;
        }
        /* Go's blocksampled and saveblockevent */
        block_event(0, w_pcs, w_npcs, cycles);
        w_npcs = 0;
    }
    return 1;
}

/* --- block: Apache's accept mutex (any apr_proc_mutex) ---------------------------------- */

enum { PROC_FCNTL = 1, PROC_FLOCK, PROC_SYSVSEM, PROC_PTHREAD, PROC_POSIXSEM, PROC_OTHER };
static const char *const proc_names[] = { NULL, "fcntl", "flock", "sysvsem", "pthread",
                                          "posixsem", "other" };

static uint64_t proc_mech(apr_proc_mutex_t *m)
{
    const char *n = apr_proc_mutex_name(m);
    uint64_t i;

    for (i = PROC_FCNTL; n && i < PROC_OTHER; i++) {
        if (strcmp(n, proc_names[i]) == 0) {
            return i;
        }
    }
    return PROC_OTHER;
}

/* The waiter's stack into pcs, without this file's frames (the hook's, and this one's):
 * through the CPU sampler's frame cache, one per process, where it can; libunwind's
 * unw_backtrace kept 256 KiB of cache in every process that waited here. */
static __attribute__((noinline)) int waiter_stack(uint64_t *pcs)
{
    uint64_t buf[PP_WAIT_DEPTH + 3];
    void *ips[PP_WAIT_DEPTH + 2];
    int n, i;

    /* buf: pp_funwind_here's own PC, then return addresses into this function and into
     * the hook, then the hook's caller. */
    if (pp_funwind_prepare() == 0 && (n = pp_funwind_here(buf, PP_WAIT_DEPTH + 3)) > 3) {
        memcpy(pcs, buf + 3, (size_t)(n - 3) * sizeof(*pcs));
        return n - 3;
    }
    /* ips: return addresses into this function and into the hook, then the caller. */
    n = unw_backtrace(ips, PP_WAIT_DEPTH + 2);
    for (i = 2; i < n; i++) {
        pcs[i - 2] = (uint64_t)(uintptr_t)ips[i];
    }
    return n > 2 ? n - 2 : 0;
}

static apr_status_t hook_proc_lock(apr_proc_mutex_t *m)
{
    uint64_t pcs[PP_WAIT_DEPTH];
    int n;
    uint64_t t0;
    apr_status_t rv;

    if (!__atomic_load_n(&block_tab.tab, __ATOMIC_RELAXED) || w_in_proc_lock) {
        return apr_proc_mutex_lock(m);
    }
    rv = apr_proc_mutex_trylock(m);
    if (rv == APR_SUCCESS || !APR_STATUS_IS_EBUSY(rv)) {
        return rv == APR_SUCCESS ? rv : apr_proc_mutex_lock(m);
    }
    w_in_proc_lock = 1;
    n = waiter_stack(pcs);
    t0 = now_ns();
    rv = apr_proc_mutex_lock(m);
    if (n > 0) {
        int64_t cycles = (int64_t)(now_ns() - t0);
        block_event(proc_mech(m), pcs, n, cycles > 0 ? cycles : 1);
    }
    w_in_proc_lock = 0;
    return rv;
}

static const pp_got_hook proc_hooks[] = {
    { "apr_proc_mutex_lock", (void *)hook_proc_lock, NULL },
};

/* --- mutex: the unlocker's stack, from pp_wait's contention table ----------------------- */

static void mutex_contender(uint64_t delay, const uint64_t *pcs, int npcs)
{
    record(&mutex_tab, pcs, npcs, MILLI, delay);
}

/* === The module's life and the agent half =============================================== */

static void contention_post_config(apr_pool_t *pconf, server_rec *s)
{
    pprof_server_conf *conf = pprof_conf(s);

    block_rate = conf->block_rate;
    mutex_fraction = conf->mutex_fraction;
    if (block_rate > 0 || mutex_fraction > 0) {
        pprof_waits_install(s);
    }
    if (block_rate > 0 && pp_got_patch(proc_hooks, 1) < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0412: cannot hook "
                     "apr_proc_mutex_lock: the block profile does not show the accept mutex");
    }
    if (block_rate > 0 && pp_wait_install_sync() < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0411: cannot hook condition "
                     "variable, rwlock and semaphore waits: the block profile shows only "
                     "mutex waits");
    }
    if (mutex_fraction > 0 && pp_wait_install_unlock() < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0410: cannot hook "
                     "pthread_mutex_unlock: the mutex profile stays empty");
    }
}

static void contention_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (block_rate > 0 && !block_tab.tab) {
        block_tab.tab = pp_stacktab_new_values(MAX_STACKS, 2);
        if (block_tab.tab) {
            pprof_waits_observe(block_observer);
        }
    }
    if (mutex_fraction > 0 && !mutex_tab.tab) {
        mutex_tab.tab = pp_stacktab_new_values(MAX_STACKS, 2);
        if (mutex_tab.tab) {
            pp_wait_contention(mutex_contender, (unsigned)mutex_fraction);
        }
    }
}

static int take(table *t, apr_int64_t rate, pprof_out *out)
{
    unsigned char *recs = NULL;
    size_t reclen = 0;
    apr_uint64_t dropped = 0;
    int rc = PP_WIRE_OK, bad = 0;

    if (t->tab) {
        tab_lock(t);
        bad = pp_stacktab_serialize(t->tab, &recs, &reclen) != 0;
        dropped = t->dropped + pp_stacktab_overflow(t->tab);
        tab_unlock(t);
    }
    if (pprof_out_mappings(out) != 0 || bad ||
        (recs && pprof_out_stacks_serialized(out, recs, reclen) != 0)) {
        rc = pprof_out_error(out, "out of memory");
    }
    free(recs);
    pprof_out_counter(out, "rate", rate);
    pprof_out_counter(out, "dropped", (apr_int64_t)dropped);
    return rc;
}

/* The index page's question: how many records, nothing copied. */
static int count_take(table *t, pprof_out *out)
{
    size_t n = 0;

    if (t->tab) {
        tab_lock(t);
        n = pp_stacktab_count(t->tab);
        tab_unlock(t);
    }
    pprof_out_counter(out, "records", (apr_int64_t)n);
    return PP_WIRE_OK;
}

static int block_take(const pp_wire_request *req, pprof_out *out)
{
    return req->flags & PPROF_TAKE_COUNT ? count_take(&block_tab, out)
                                         : take(&block_tab, block_rate, out);
}

static int mutex_take(const pp_wire_request *req, pprof_out *out)
{
    return req->flags & PPROF_TAKE_COUNT ? count_take(&mutex_tab, out)
                                         : take(&mutex_tab, mutex_fraction, out);
}

/* === The collector half ================================================================= */

typedef struct {
    long pid;
    apr_int64_t rate;
    apr_int64_t dropped;
    const pp_maps *maps;
} snapshot;

enum { V_MILLI, V_DELAY, NV };  /* what a record holds, as its stack's values */

typedef struct {
    pprof_rec_id id;            /* key: 0, or an apr_proc_mutex's mechanism (PROC_*) */
    const snapshot *from;
    apr_uint64_t v[NV];         /* contentions in thousandths, delay in ns; as recorded */
} crec;

typedef struct {
    request_rec *r;
    int mutex;
    apr_array_header_t *recs;   /* crec */
    apr_int64_t dropped;
} cont_answer;

static void answer_init(cont_answer *a, request_rec *r, int mutex)
{
    a->r = r;
    a->mutex = mutex;
    a->recs = apr_array_make(r->pool, 64, sizeof(crec));
    a->dropped = 0;
}

static void contention_merge(void *answer, const pprof_child *ch)
{
    cont_answer *a = answer;
    const pp_wire_reply *m = ch->reply;
    snapshot *s;
    size_t i;

    if (ch->status == PPROF_CHILD_FAILED || ch->status == PPROF_CHILD_REFUSED) {
        pprof_collect_missing(a->r, ch, a->mutex ? "mutex profile" : "block profile");
    }
    if (ch->status != PPROF_CHILD_OK) {
        return;
    }
    s = apr_pcalloc(a->r->pool, sizeof(*s));
    s->pid = (long)ch->pid;
    s->rate = pp_wire_get_counter(m, "rate", 0);
    s->dropped = pp_wire_get_counter(m, "dropped", 0);
    s->maps = ch->maps;
    a->dropped += s->dropped;
    for (i = 0; i < m->n_stacks; i++) {
        const pp_wire_stack *st = m->stacks[i];
        crec *rec = apr_array_push(a->recs);
        rec->id.pid = s->pid;
        rec->id.key = st->key;
        rec->id.npcs = (apr_uint32_t)st->n_pcs;
        rec->id.pcs = st->pcs;
        rec->from = s;
        rec->v[V_MILLI] = st->n_values > 0 ? st->values[0] : 0;
        rec->v[V_DELAY] = st->n_values > 1 ? st->values[1] : 0;
    }
}

/* Go's scaleBlockProfile (none) and scaleMutexProfile (times the fraction). */
static void scaled(const cont_answer *a, const crec *rec, int64_t *count, int64_t *ns)
{
    int64_t k = a->mutex && rec->from->rate > 0 ? rec->from->rate : 1;

    *count = (int64_t)(rec->v[V_MILLI] / MILLI) * k;
    *ns = (int64_t)rec->v[V_DELAY] * k;
}

static int by_delay(const void *x, const void *y)
{
    const crec *a = x, *b = y;

    return a->v[V_DELAY] < b->v[V_DELAY] ? 1 : a->v[V_DELAY] > b->v[V_DELAY] ? -1 : 0;
}

/* Go's printCountCycleProfile. */
static int send_profile(request_rec *r, const cont_answer *a, const char *filename,
                        apr_time_t t0, apr_time_t t1)
{
    pprof_answer *ans = pprof_answer_new(r);
    pp_profile *prof;
    int i;

    if (!ans) {
        return pprof_answer_fail(r, NULL);
    }
    prof = pprof_answer_profile(ans);
    pp_profile_set_period(prof, "contentions", "count", 1);
    pp_profile_add_sample_type(prof, "contentions", "count");
    pp_profile_add_sample_type(prof, "delay", "nanoseconds");
    pp_profile_set_time(prof, (int64_t)t1 * 1000, (int64_t)(t1 - t0) * 1000);
    qsort(a->recs->elts, (size_t)a->recs->nelts, sizeof(crec), by_delay);
    for (i = 0; i < a->recs->nelts; i++) {
        const crec *rec = &APR_ARRAY_IDX(a->recs, i, crec);
        int64_t values[2];
        pp_label labels[2] = { { "pid", NULL, rec->from->pid, NULL },
                               { "wait", NULL, 0, NULL } };

        if (!rec->v[V_MILLI] && !rec->v[V_DELAY]) {
            continue;
        }
        if (rec->id.key >= PROC_FCNTL && rec->id.key <= PROC_OTHER) {
            labels[1].str = apr_psprintf(r->pool, "apr_proc_mutex_lock (%s)",
                                         proc_names[rec->id.key]);
        }
        scaled(a, rec, &values[0], &values[1]);
        if (pprof_answer_sample(ans, rec->from->maps, rec->id.pcs, rec->id.npcs, 1, values, labels,
                                labels[1].str ? 2 : 1) != 0) {
            return pprof_answer_fail(r, ans);
        }
    }
    if (a->dropped > 0) {
        int64_t values[2] = { a->dropped, 0 };
        if (pprof_answer_synthetic(ans, "pprof.dropped_stacks", values, NULL, 0) != 0) {
            return pprof_answer_fail(r, ans);
        }
    }
    return pprof_answer_send(ans, filename);
}

/* Go's debug=1 text of writeProfileInternal: raw (unscaled) cycles and counts. */
static int send_text(request_rec *r, const cont_answer *a)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    pp_symbolizer *sym;
    int i;

    qsort(a->recs->elts, (size_t)a->recs->nelts, sizeof(crec), by_delay);
    apr_brigade_printf(bb, NULL, NULL, "--- %s:\ncycles/second=1000000000\n",
                       a->mutex ? "mutex" : "contention");
    if (a->mutex) {
        apr_brigade_printf(bb, NULL, NULL, "sampling period=%" APR_INT64_T_FMT "\n",
                           mutex_fraction);
    }
    if (!(sym = pprof_symbols_lock())) {
        return pprof_answer_fail(r, NULL);
    }
    for (i = 0; i < a->recs->nelts; i++) {
        const crec *rec = &APR_ARRAY_IDX(a->recs, i, crec);
        apr_brigade_printf(bb, NULL, NULL, "%" APR_UINT64_T_FMT " %" APR_UINT64_T_FMT " @",
                           rec->v[V_DELAY], rec->v[V_MILLI] / MILLI);
        pprof_text_pcs(bb, rec->id.pcs, rec->id.npcs);
        apr_brigade_printf(bb, NULL, NULL, "\n");
        pprof_text_stack(bb, sym, rec->from->maps, rec->id.pcs, rec->id.npcs, 1);
    }
    pprof_symbols_unlock();
    return pprof_send_text(r, bb);
}

static int serve(request_rec *r, apr_table_t *args, int mutex)
{
    const char *name = mutex ? "mutex" : "block";
    cont_answer before, now;
    pprof_snapshots s;

    answer_init(&before, r, mutex);
    answer_init(&now, r, mutex);
    memset(&s, 0, sizeof(s));
    s.kind = mutex ? &pprof_kind_mutex : &pprof_kind_block;
    s.gone_tag = "PP0203";
    s.before = &before;
    s.now = &now;
    if (pprof_take_snapshots(r, args, &s) != OK) {
        return OK;
    }
    if (!s.delta) {
        int debug = pprof_query_int(args, "debug");
        if (debug > 0) {
            return send_text(r, &now);
        }
        /* Go's writeProfileInternal writes text for a debug > 0 only: a negative one is
         * the binary profile under the text/plain header its handler set. */
        return send_profile(r, &now, debug < 0 ? NULL : name, s.t0, s.t0);
    }
    {
        /* Go's serveDeltaProfile: both values accumulate. */
        static const int both[NV] = { V_MILLI, V_DELAY };
        pprof_delta_subtract(r->pool, now.recs, before.recs, APR_OFFSETOF(crec, v), both, NV);
    }
    now.dropped -= before.dropped < now.dropped ? before.dropped : now.dropped;
    return send_profile(r, &now, apr_pstrcat(r->pool, name, "-delta", NULL), s.t0, s.t1);
}

static int serve_block(request_rec *r, apr_table_t *args)
{
    return serve(r, args, 0);
}

static int serve_mutex(request_rec *r, apr_table_t *args)
{
    return serve(r, args, 1);
}

/* Go's index count: the records of every child (each counts its table, nothing is
 * copied). */
static long block_count(request_rec *r)
{
    return pprof_collect_count(r, &pprof_kind_block);
}

static long mutex_count(request_rec *r)
{
    return pprof_collect_count(r, &pprof_kind_mutex);
}

static const pprof_endpoint block_endpoints[] = {
    { "block", serve_block, block_count,
      "Stack traces that led to blocking on synchronization primitives (pthread mutexes) in "
      "every child" },
    { NULL }
};

static const pprof_endpoint mutex_endpoints[] = {
    { "mutex", serve_mutex, mutex_count,
      "Stack traces of holders of contended mutexes (pthread mutexes) in every child" },
    { NULL }
};

const pprof_kind pprof_kind_block = {
    .name = "block",
    .endpoints = block_endpoints,
    .post_config = contention_post_config,
    .child_init = contention_child_init,
    .handover = 1,
    .take = block_take,
    .merge = contention_merge,
};

/* post_config and child_init are the block kind's: they serve both. */
const pprof_kind pprof_kind_mutex = {
    .name = "mutex",
    .endpoints = mutex_endpoints,
    .handover = 1,
    .take = mutex_take,
    .merge = contention_merge,
};
