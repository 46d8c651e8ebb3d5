/* The heap and allocs endpoints. Every child samples its allocations all the time
 * (pp_heap, hooked in the parent before the fork); this asks each child's agent for its
 * buckets and merges them: a snapshot, or with "seconds" the difference of two. */
#include "mod_pprof.h"
#include "pprof_collect.h"
#include "pprof_handler.h"
#include "pprof_heap.h"
#include "pprof_ipc.h"
#include "pprof_text.h"

#include "http_log.h"
#include "http_protocol.h"
#include "apr_hash.h"
#include "apr_escape.h"
#include "apr_strings.h"

#include "pp_heap.h"
#include "pp_maps.h"
#include "pp_profile.h"
#include "pp_resolve.h"
#include "pp_stacktab.h"

#include <stdlib.h>

APLOG_USE_MODULE(pprof);

typedef struct {
    long pid;
    apr_size_t rate;
    apr_uint64_t dropped;
    apr_size_t mi[4];           /* mallinfo2: arena, hblkhd, uordblks, fordblks */
    pp_maps *maps;
    const unsigned char *recs;
    apr_size_t reclen;
} snapshot;

/* One bucket, copied out of the wire format. */
typedef struct {
    const snapshot *from;
    apr_uint64_t size;
    apr_uint64_t v[PP_HEAP_NVALUES];
    apr_uint64_t inuse_objects, inuse_bytes;    /* as collected: a delta keeps them */
    apr_uint32_t npcs;
    apr_uint64_t *pcs;
} record;

/* Every child's buckets (one "HEAP" call each). */
static apr_array_header_t *collect(request_rec *r, pid_t only, int gc)
{
    apr_array_header_t *pids = pprof_children(r, only);
    apr_array_header_t *snaps = apr_array_make(r->pool, pids->nelts, sizeof(snapshot));
    int i;

    for (i = 0; i < pids->nelts; i++) {
        pprof_reply rep;
        snapshot s;
        pid_t pid = APR_ARRAY_IDX(pids, i, pid_t);
        int rc;

        memset(&s, 0, sizeof(s));
        rc = pprof_call_child(r, pid, gc ? "HEAP 1" : "HEAP 0", 2, &rep, &s.maps);

        if (rc == 1) {
            continue;
        }
        if (rc != 0 || sscanf(rep.line, "HEAP %ld %" APR_SIZE_T_FMT " %" APR_UINT64_T_FMT
                              " %" APR_SIZE_T_FMT " %" APR_SIZE_T_FMT " %" APR_SIZE_T_FMT
                              " %" APR_SIZE_T_FMT, &s.pid, &s.rate, &s.dropped, &s.mi[0],
                              &s.mi[1], &s.mi[2], &s.mi[3]) != 7) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "PP0201: child %ld did not hand over its heap samples", (long)pid);
            continue;
        }
        s.recs = (const unsigned char *)rep.blob[1];
        s.reclen = rep.len[1];
        APR_ARRAY_PUSH(snaps, snapshot) = s;
    }
    return snaps;
}

typedef struct {
    apr_pool_t *p;
    const snapshot *from;
    apr_array_header_t *out;
} parse_ctx;

static void copy_record(void *baton, const pp_stack *st)
{
    parse_ctx *c = baton;
    record *rec = apr_array_push(c->out);
    unsigned i;

    rec->from = c->from;
    rec->size = st->key;
    for (i = 0; i < PP_HEAP_NVALUES; i++) {
        rec->v[i] = i < st->nvalues ? st->values[i] : 0;
    }
    rec->inuse_objects = rec->v[PP_HEAP_ALLOC_OBJECTS] > rec->v[PP_HEAP_FREE_OBJECTS]
        ? rec->v[PP_HEAP_ALLOC_OBJECTS] - rec->v[PP_HEAP_FREE_OBJECTS] : 0;
    rec->inuse_bytes = rec->v[PP_HEAP_ALLOC_BYTES] > rec->v[PP_HEAP_FREE_BYTES]
        ? rec->v[PP_HEAP_ALLOC_BYTES] - rec->v[PP_HEAP_FREE_BYTES] : 0;
    rec->npcs = st->npcs;
    rec->pcs = apr_pmemdup(c->p, st->pcs, st->npcs * sizeof(apr_uint64_t));
}

static apr_array_header_t *records(request_rec *r, apr_array_header_t *snaps)
{
    apr_array_header_t *out = apr_array_make(r->pool, 256, sizeof(record));
    parse_ctx c;
    int i;

    c.p = r->pool;
    c.out = out;
    for (i = 0; i < snaps->nelts; i++) {
        c.from = &APR_ARRAY_IDX(snaps, i, snapshot);
        if (pp_stacktab_parse(c.from->recs, c.from->reclen, copy_record, &c) != 0) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                          "PP0202: bad heap data from child %ld", c.from->pid);
        }
    }
    return out;
}

static const char *record_key(apr_pool_t *p, const record *rec)
{
    return apr_psprintf(p, "%ld/%" APR_UINT64_T_FMT "/%s", rec->from->pid, rec->size,
                        apr_pescape_hex(p, rec->pcs, rec->npcs * sizeof(apr_uint64_t), 0));
}

/* Unlike Go (golang/go#67942), a delta subtracts only what accumulates (allocations);
 * what is in use is as it stands at the end of the window. */
static void subtract_allocs(request_rec *r, apr_array_header_t *end, apr_array_header_t *start)
{
    apr_hash_t *ix = apr_hash_make(r->pool);
    int i;

    for (i = 0; i < start->nelts; i++) {
        record *rec = &APR_ARRAY_IDX(start, i, record);
        apr_hash_set(ix, record_key(r->pool, rec), APR_HASH_KEY_STRING, rec);
    }
    for (i = 0; i < end->nelts; i++) {
        record *rec = &APR_ARRAY_IDX(end, i, record);
        const record *old = apr_hash_get(ix, record_key(r->pool, rec), APR_HASH_KEY_STRING);
        if (old) {
            rec->v[PP_HEAP_ALLOC_OBJECTS] -= old->v[PP_HEAP_ALLOC_OBJECTS] <
                rec->v[PP_HEAP_ALLOC_OBJECTS] ? old->v[PP_HEAP_ALLOC_OBJECTS]
                                              : rec->v[PP_HEAP_ALLOC_OBJECTS];
            rec->v[PP_HEAP_ALLOC_BYTES] -= old->v[PP_HEAP_ALLOC_BYTES] <
                rec->v[PP_HEAP_ALLOC_BYTES] ? old->v[PP_HEAP_ALLOC_BYTES]
                                            : rec->v[PP_HEAP_ALLOC_BYTES];
        }
    }
}

static void inuse(const record *rec, apr_uint64_t *objects, apr_uint64_t *bytes)
{
    *objects = rec->inuse_objects;
    *bytes = rec->inuse_bytes;
}

static int send_profile(request_rec *r, apr_array_header_t *recs, const char *name,
                        const char *filename, apr_time_t t0, apr_time_t t1)
{
    pprof_server_conf *conf = ap_get_module_config(r->server->module_config, &pprof_module);
    pp_symbolizer *sym = pprof_symbolizer_lock();
    pp_profile *prof = sym ? pp_profile_new() : NULL;
    pp_resolver *res = prof ? pp_resolver_new(prof, sym) : NULL;
    pp_maps *own = pp_maps_read(NULL);
    int i, rc;

    if (!res || !own) {
        rc = pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
        goto done;
    }
    pp_profile_set_period(prof, "space", "bytes", (int64_t)conf->mem_rate);
    pp_profile_add_sample_type(prof, "alloc_objects", "count");
    pp_profile_add_sample_type(prof, "alloc_space", "bytes");
    pp_profile_add_sample_type(prof, "inuse_objects", "count");
    pp_profile_add_sample_type(prof, "inuse_space", "bytes");
    if (strcmp(name, "allocs") == 0) {
        pp_profile_set_default_sample_type(prof, "alloc_space");
    }
    pp_profile_set_time(prof, (int64_t)t1 * 1000, (int64_t)(t1 - t0) * 1000);
    pp_resolver_add_mappings(res, own);
    for (i = 0; i < recs->nelts; i++) {
        const record *rec = &APR_ARRAY_IDX(recs, i, record);
        uint64_t locs[1024];
        int64_t values[4];
        apr_uint64_t io, ib;
        pp_label labels[2] = { { "pid", NULL, rec->from->pid, NULL },
                               { "bytes", NULL, (int64_t)rec->size, NULL } };
        int n;

        inuse(rec, &io, &ib);
        if (!rec->v[PP_HEAP_ALLOC_OBJECTS] && !io) {
            continue;
        }
        pp_heap_scale(rec->v[PP_HEAP_ALLOC_OBJECTS], rec->v[PP_HEAP_ALLOC_BYTES],
                      rec->from->rate, &values[0], &values[1]);
        pp_heap_scale(io, ib, rec->from->rate, &values[2], &values[3]);
        n = pp_resolver_stack(res, rec->from->maps, rec->pcs, rec->npcs, 1, locs);
        if (n < 0 || pp_profile_add_sample(prof, locs, (size_t)n, values, labels, 2) != 0) {
            rc = pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
            goto done;
        }
    }
    rc = pprof_send_profile(r, prof, filename);
done:
    pp_maps_free(own);
    pp_resolver_free(res);
    pp_profile_free(prof);
    if (sym) {
        pprof_symbolizer_unlock();
    }
    return rc;
}

static int by_inuse_bytes(const void *a, const void *b)
{
    apr_uint64_t ao, ab, bo, bb;

    inuse(a, &ao, &ab);
    inuse(b, &bo, &bb);
    return ab < bb ? 1 : ab > bb ? -1 : 0;
}

/* Go's debug=1 heap text: totals, then records by in-use bytes with their frames, raw
 * (unscaled) sample counts, "@ heap/2*rate" for pprof to unsample; then, where Go
 * prints runtime.MemStats, each child's glibc mallinfo2. */
static int send_text(request_rec *r, apr_array_header_t *snaps, apr_array_header_t *recs)
{
    pprof_server_conf *conf = ap_get_module_config(r->server->module_config, &pprof_module);
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_uint64_t tot[PP_HEAP_NVALUES] = { 0 }, io, ib;
    pp_symbolizer *sym;
    int i, j;

    ap_set_content_type(r, "text/plain; charset=utf-8");
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
    if (!(sym = pprof_symbolizer_lock())) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
    }
    for (i = 0; i < recs->nelts; i++) {
        const record *rec = &APR_ARRAY_IDX(recs, i, record);
        inuse(rec, &io, &ib);
        apr_brigade_printf(bb, NULL, NULL, "%" APR_UINT64_T_FMT ": %" APR_UINT64_T_FMT " [%"
                           APR_UINT64_T_FMT ": %" APR_UINT64_T_FMT "] @", io, ib,
                           rec->v[PP_HEAP_ALLOC_OBJECTS], rec->v[PP_HEAP_ALLOC_BYTES]);
        pprof_text_pcs(bb, rec->pcs, rec->npcs);
        apr_brigade_printf(bb, NULL, NULL, "\n");
        pprof_text_stack(bb, sym, rec->from->maps, rec->pcs, rec->npcs, 1);
    }
    pprof_symbolizer_unlock();
    apr_brigade_puts(bb, NULL, NULL, "\n# glibc malloc statistics (mallinfo2), per child\n");
    for (i = 0; i < snaps->nelts; i++) {
        const snapshot *s = &APR_ARRAY_IDX(snaps, i, snapshot);
        apr_brigade_printf(bb, NULL, NULL, "# pid %ld: Arena = %" APR_SIZE_T_FMT
                           " Mmap = %" APR_SIZE_T_FMT " InUse = %" APR_SIZE_T_FMT
                           " Free = %" APR_SIZE_T_FMT " MemProfileRate = %" APR_SIZE_T_FMT
                           " Dropped = %" APR_UINT64_T_FMT "\n", s->pid, s->mi[0], s->mi[1],
                           s->mi[2], s->mi[3], s->rate, s->dropped);
    }
    if (r->header_only) {
        return OK;
    }
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

/* Go's handler.ServeHTTP and serveDeltaProfile for a memory profile. */
static int serve_memory(request_rec *r, apr_table_t *args, const char *name)
{
    const char *secs = apr_table_get(args, "seconds"), *err;
    int debug = pprof_query_int(args, "debug");
    int gc = strcmp(name, "heap") == 0 && pprof_query_int(args, "gc") > 0;
    apr_array_header_t *s0, *s1;
    apr_int64_t sec;
    apr_time_t t0 = apr_time_now(), t1;
    pid_t only;

    if ((err = pprof_query_pid(r, args, &only)) != NULL) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST, err);
    }
    /* Go serves a delta only for a non-empty "seconds". */
    if (!secs || !*secs) {
        s1 = collect(r, only, gc);
        if (debug != 0) {
            return send_text(r, s1, records(r, s1));
        }
        return send_profile(r, records(r, s1), name, name, t0, t0);
    }
    if ((err = pprof_delta_seconds(r, args, &sec)) != NULL) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST, err);
    }
    s0 = collect(r, only, 0);
    if (pprof_sleep_unless_gone(r, t0 + apr_time_from_sec(sec))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "PP0203: client went away");
        return OK;
    }
    t1 = apr_time_now();
    s1 = records(r, collect(r, only, 0));
    subtract_allocs(r, s1, records(r, s0));
    return send_profile(r, s1, name, apr_pstrcat(r->pool, name, "-delta", NULL), t0, t1);
}

int pprof_serve_heap(request_rec *r, apr_table_t *args)
{
    return serve_memory(r, args, "heap");
}

int pprof_serve_allocs(request_rec *r, apr_table_t *args)
{
    return serve_memory(r, args, "allocs");
}

long pprof_heap_count(request_rec *r)
{
    return records(r, collect(r, 0, 0))->nelts;
}
