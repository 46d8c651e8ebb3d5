/* The "heap" kind, /debug/pprof/heap and /debug/pprof/allocs: Go's memory profiles for the
 * whole server, a snapshot kind. Every child samples its allocations all the time
 * (pp_heap, hooked in the parent before the fork).
 *
 * Reply (take; flags 1: malloc_trim first, Go's gc=1 adapted): stacks (key = object
 * size, values = PP_HEAP_NVALUES cumulative counters, PCs are return addresses),
 * mappings, counters "rate", "dropped" and glibc's mallinfo2 "arena", "mmap", "inuse",
 * "free".
 *
 * Collector half: one record per bucket of every child, answered as a profile (scaled back
 * as Go does), as Go's debug=1 text, or as the delta of two takes. */
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

#include "http_log.h"
#include "apr_strings.h"

#include "pp_heap.h"

#include <malloc.h>
#include <stdlib.h>

APLOG_USE_MODULE(pprof);

extern const pprof_kind pprof_kind_heap;

/* === The module's life and the agent half =============================================== */

/* Before this module is unloaded (restart), every GOT entry pointing into it goes back. */
static apr_status_t heap_cleanup(void *unused)
{
    pp_heap_stop();
    pp_heap_reset();
    return APR_SUCCESS;
}

/* In the parent, before any child is forked: children inherit the hooks. */
static void heap_post_config(apr_pool_t *pconf, server_rec *s)
{
    pprof_server_conf *conf = pprof_conf(s);
    int n = pp_heap_start((size_t)conf->mem_rate);

    if (n < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0020: cannot hook the allocator");
    } else {
        ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "PP0021: heap sampling every %"
                     APR_INT64_T_FMT " bytes; %d allocator entries hooked", conf->mem_rate, n);
    }
    apr_pool_cleanup_register(pconf, NULL, heap_cleanup, apr_pool_cleanup_null);
}

static void heap_child_init(apr_pool_t *pchild, server_rec *s)
{
    pp_heap_after_fork();
    pp_heap_refresh();
}

static int heap_take(const pp_wire_request *req, pprof_out *out)
{
    unsigned char *recs = NULL;
    size_t reclen = 0;
    struct mallinfo2 mi;
    int rc = PP_WIRE_OK;

    if (req->flags & PPROF_TAKE_COUNT) {
        pprof_out_counter(out, "records", (apr_int64_t)pp_heap_records());
        return PP_WIRE_OK;
    }
    if (req->flags & 1) {
        /* C has no collector to run: give freed memory back to the system instead. */
        malloc_trim(0);
    }
    pp_heap_refresh();
    mi = mallinfo2();
    if (pprof_out_mappings(out) != 0 || pp_heap_serialize(&recs, &reclen) != 0 ||
        pprof_out_stacks_serialized(out, recs, reclen) != 0) {
        rc = pprof_out_error(out, "out of memory");
    }
    free(recs);
    pprof_out_counter(out, "rate", (apr_int64_t)pp_heap_rate());
    pprof_out_counter(out, "dropped", (apr_int64_t)pp_heap_dropped());
    pprof_out_counter(out, "arena", (apr_int64_t)mi.arena);
    pprof_out_counter(out, "mmap", (apr_int64_t)mi.hblkhd);
    pprof_out_counter(out, "inuse", (apr_int64_t)mi.uordblks);
    pprof_out_counter(out, "free", (apr_int64_t)mi.fordblks);
    return rc;
}

/* === The collector half ================================================================= */

/* One child's snapshot. */
typedef struct {
    long pid;
    apr_uint64_t rate;
    apr_uint64_t dropped;
    apr_int64_t mi[4];          /* mallinfo2: arena, hblkhd, uordblks, fordblks */
    const pp_maps *maps;
} snapshot;

/* One bucket of one child. */
typedef struct {
    pprof_rec_id id;            /* key: the object size; PCs: the reply's (as long as
                                   r->pool) */
    const snapshot *from;
    apr_uint64_t v[PP_HEAP_NVALUES];
    apr_uint64_t inuse_objects, inuse_bytes;    /* as taken: a delta keeps them */
} record;

typedef struct {
    request_rec *r;
    apr_array_header_t *snaps;  /* snapshot * */
    apr_array_header_t *recs;   /* record */
} heap_answer;

static void heap_answer_init(heap_answer *h, request_rec *r)
{
    h->r = r;
    h->snaps = apr_array_make(r->pool, 8, sizeof(snapshot *));
    h->recs = apr_array_make(r->pool, 256, sizeof(record));
}

static void heap_merge(void *answer, const pprof_child *ch)
{
    heap_answer *h = answer;
    const pp_wire_reply *m = ch->reply;
    snapshot *s;
    size_t i, j;

    if (ch->status == PPROF_CHILD_FAILED || ch->status == PPROF_CHILD_REFUSED) {
        pprof_collect_missing(h->r, ch, "heap samples");
    }
    if (ch->status != PPROF_CHILD_OK) {
        return;
    }
    s = apr_pcalloc(h->r->pool, sizeof(*s));
    s->pid = (long)ch->pid;
    s->rate = (apr_uint64_t)pp_wire_get_counter(m, "rate", 0);
    s->dropped = (apr_uint64_t)pp_wire_get_counter(m, "dropped", 0);
    s->mi[0] = pp_wire_get_counter(m, "arena", 0);
    s->mi[1] = pp_wire_get_counter(m, "mmap", 0);
    s->mi[2] = pp_wire_get_counter(m, "inuse", 0);
    s->mi[3] = pp_wire_get_counter(m, "free", 0);
    s->maps = ch->maps;
    APR_ARRAY_PUSH(h->snaps, snapshot *) = s;
    for (i = 0; i < m->n_stacks; i++) {
        const pp_wire_stack *st = m->stacks[i];
        record *rec = apr_array_push(h->recs);
        rec->id.pid = s->pid;
        rec->id.key = st->key;
        rec->from = s;
        for (j = 0; j < PP_HEAP_NVALUES; j++) {
            rec->v[j] = j < st->n_values ? st->values[j] : 0;
        }
        rec->inuse_objects = rec->v[PP_HEAP_ALLOC_OBJECTS] > rec->v[PP_HEAP_FREE_OBJECTS]
            ? rec->v[PP_HEAP_ALLOC_OBJECTS] - rec->v[PP_HEAP_FREE_OBJECTS] : 0;
        rec->inuse_bytes = rec->v[PP_HEAP_ALLOC_BYTES] > rec->v[PP_HEAP_FREE_BYTES]
            ? rec->v[PP_HEAP_ALLOC_BYTES] - rec->v[PP_HEAP_FREE_BYTES] : 0;
        rec->id.npcs = (apr_uint32_t)st->n_pcs;
        rec->id.pcs = st->pcs;
    }
}

static int send_profile(request_rec *r, apr_array_header_t *recs, const char *name,
                        const char *filename, apr_time_t t0, apr_time_t t1)
{
    pprof_server_conf *conf = pprof_conf(r->server);
    pprof_answer *ans = pprof_answer_new(r);
    pp_profile *prof;
    int i;

    if (!ans) {
        return pprof_answer_fail(r, NULL);
    }
    prof = pprof_answer_profile(ans);
    pp_profile_set_period(prof, "space", "bytes", (int64_t)conf->mem_rate);
    pp_profile_add_sample_type(prof, "alloc_objects", "count");
    pp_profile_add_sample_type(prof, "alloc_space", "bytes");
    pp_profile_add_sample_type(prof, "inuse_objects", "count");
    pp_profile_add_sample_type(prof, "inuse_space", "bytes");
    if (strcmp(name, "allocs") == 0) {
        pp_profile_set_default_sample_type(prof, "alloc_space");
    }
    pp_profile_set_time(prof, (int64_t)t1 * 1000, (int64_t)(t1 - t0) * 1000);
    for (i = 0; i < recs->nelts; i++) {
        const record *rec = &APR_ARRAY_IDX(recs, i, record);
        int64_t values[4];
        pp_label labels[2] = { { "pid", NULL, rec->from->pid, NULL },
                               { "bytes", NULL, (int64_t)rec->id.key, NULL } };

        if (!rec->v[PP_HEAP_ALLOC_OBJECTS] && !rec->inuse_objects) {
            continue;
        }
        pp_heap_scale(rec->v[PP_HEAP_ALLOC_OBJECTS], rec->v[PP_HEAP_ALLOC_BYTES],
                      (size_t)rec->from->rate, &values[0], &values[1]);
        pp_heap_scale(rec->inuse_objects, rec->inuse_bytes, (size_t)rec->from->rate,
                      &values[2], &values[3]);
        if (pprof_answer_sample(ans, rec->from->maps, rec->id.pcs, rec->id.npcs, 1, values, labels,
                                2) != 0) {
            return pprof_answer_fail(r, ans);
        }
    }
    return pprof_answer_send(ans, filename);
}

static int by_inuse_bytes(const void *a, const void *b)
{
    const record *x = a, *y = b;

    return x->inuse_bytes < y->inuse_bytes ? 1 : x->inuse_bytes > y->inuse_bytes ? -1 : 0;
}

/* Go's debug=1 heap text: totals, then records by in-use bytes with their frames, raw
 * (unscaled) sample counts, "@ heap/2*rate" for pprof to unsample; then, where Go
 * prints runtime.MemStats, each child's glibc mallinfo2. */
static int send_text(request_rec *r, const heap_answer *h)
{
    pprof_server_conf *conf = pprof_conf(r->server);
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_array_header_t *recs = h->recs;
    apr_uint64_t tot[PP_HEAP_NVALUES] = { 0 };
    pp_symbolizer *sym;
    int i, j;

    qsort(recs->elts, (size_t)recs->nelts, sizeof(record), by_inuse_bytes);
    for (i = 0; i < recs->nelts; i++) {
        for (j = 0; j < PP_HEAP_NVALUES; j++) {
            tot[j] += APR_ARRAY_IDX(recs, i, record).v[j];
        }
    }
    apr_brigade_printf(bb, NULL, NULL, "heap profile: %" APR_UINT64_T_FMT ": %"
                       APR_UINT64_T_FMT " [%" APR_UINT64_T_FMT ": %" APR_UINT64_T_FMT
                       "] @ heap/%" APR_INT64_T_FMT "\n",
                       tot[0] - tot[2], tot[1] - tot[3], tot[0], tot[1], 2 * conf->mem_rate);
    if (!(sym = pprof_symbols_lock())) {
        return pprof_answer_fail(r, NULL);
    }
    for (i = 0; i < recs->nelts; i++) {
        const record *rec = &APR_ARRAY_IDX(recs, i, record);
        apr_brigade_printf(bb, NULL, NULL, "%" APR_UINT64_T_FMT ": %" APR_UINT64_T_FMT " [%"
                           APR_UINT64_T_FMT ": %" APR_UINT64_T_FMT "] @", rec->inuse_objects,
                           rec->inuse_bytes, rec->v[PP_HEAP_ALLOC_OBJECTS],
                           rec->v[PP_HEAP_ALLOC_BYTES]);
        pprof_text_pcs(bb, rec->id.pcs, rec->id.npcs);
        apr_brigade_printf(bb, NULL, NULL, "\n");
        pprof_text_stack(bb, sym, rec->from->maps, rec->id.pcs, rec->id.npcs, 1);
    }
    pprof_symbols_unlock();
    apr_brigade_puts(bb, NULL, NULL, "\n# glibc malloc statistics (mallinfo2), per child\n");
    for (i = 0; i < h->snaps->nelts; i++) {
        const snapshot *s = APR_ARRAY_IDX(h->snaps, i, const snapshot *);
        apr_brigade_printf(bb, NULL, NULL, "# pid %ld: Arena = %" APR_INT64_T_FMT
                           " Mmap = %" APR_INT64_T_FMT " InUse = %" APR_INT64_T_FMT
                           " Free = %" APR_INT64_T_FMT " MemProfileRate = %" APR_UINT64_T_FMT
                           " Dropped = %" APR_UINT64_T_FMT "\n", s->pid, s->mi[0], s->mi[1],
                           s->mi[2], s->mi[3], s->rate, s->dropped);
    }
    return pprof_send_text(r, bb);
}

/* Go's handler.ServeHTTP and serveDeltaProfile for a memory profile. */
static int serve_memory(request_rec *r, apr_table_t *args, const char *name)
{
    heap_answer before, now;
    pprof_snapshots s;

    heap_answer_init(&before, r);
    heap_answer_init(&now, r);
    memset(&s, 0, sizeof(s));
    s.kind = &pprof_kind_heap;
    s.flags = strcmp(name, "heap") == 0 && pprof_query_int(args, "gc") > 0;
    s.gone_tag = "PP0203";
    s.before = &before;
    s.now = &now;
    if (pprof_take_snapshots(r, args, &s) != OK) {
        return OK;              /* answered (a 400), or the client is gone */
    }
    if (!s.delta) {
        if (pprof_query_int(args, "debug") != 0) {
            return send_text(r, &now);
        }
        return send_profile(r, now.recs, name, name, s.t0, s.t0);
    }
    {
        /* Unlike Go (golang/go#67942), a delta subtracts only what accumulates
         * (allocations); what is in use is as it stands at the end of the window. */
        static const int cumulative[2] = { PP_HEAP_ALLOC_OBJECTS, PP_HEAP_ALLOC_BYTES };
        pprof_delta_subtract(r->pool, now.recs, before.recs, APR_OFFSETOF(record, v),
                             cumulative, 2);
    }
    return send_profile(r, now.recs, name, apr_pstrcat(r->pool, name, "-delta", NULL), s.t0,
                        s.t1);
}

static int serve_heap(request_rec *r, apr_table_t *args)
{
    return serve_memory(r, args, "heap");
}

static int serve_allocs(request_rec *r, apr_table_t *args)
{
    return serve_memory(r, args, "allocs");
}

/* Go's index count: the number of records of the heap profile, server-wide (each child
 * counts its buckets; nothing is copied). */
static long heap_count(request_rec *r)
{
    return pprof_collect_count(r, &pprof_kind_heap);
}

static const pprof_endpoint endpoints[] = {
    { "allocs", serve_allocs, heap_count,
      "A sampling of all past memory allocations of every child (malloc and friends)" },
    { "heap", serve_heap, heap_count,
      "A sampling of memory allocations of live objects in every child. You can specify "
      "the gc GET parameter to return freed memory to the system (malloc_trim) before "
      "taking the heap sample." },
    { NULL }
};

const pprof_kind pprof_kind_heap = {
    .name = "heap",
    .endpoints = endpoints,
    .post_config = heap_post_config,
    .child_init = heap_child_init,
    .take = heap_take,
    .merge = heap_merge,
};
