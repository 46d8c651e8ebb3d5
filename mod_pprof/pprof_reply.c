#include "pprof_reply.h"

#include "apr_strings.h"

#include <stdlib.h>

/* The repeated fields of a reply are (n, array of pointers): an array grows by doubling,
 * copied within the pool (what it leaves behind is at most what it holds). */
static void *grown(apr_pool_t *p, void *old, apr_size_t n, apr_size_t elem)
{
    apr_size_t cap;
    void *na;

    if (n != 0 && (n < 4 || (n & (n - 1)) != 0)) {
        return old;             /* room left: capacity is 4, then each power of two */
    }
    cap = n < 4 ? 4 : n * 2;
    na = apr_palloc(p, cap * elem);
    if (n) {
        memcpy(na, old, n * elem);
    }
    return na;
}

#define PUSH(out, field, item)                                                          \
    do {                                                                                \
        (out)->reply->field = grown((out)->pool, (out)->reply->field,                   \
                                    (out)->reply->n_##field, sizeof(*(out)->reply->field)); \
        (out)->reply->field[(out)->reply->n_##field++] = (item);                        \
    } while (0)

int pprof_out_error(pprof_out *out, const char *why)
{
    out->reply->status = PP_WIRE_ERROR;
    out->reply->error = apr_pstrdup(out->pool, why);
    return PP_WIRE_ERROR;
}

void pprof_out_counter(pprof_out *out, const char *name, apr_int64_t value)
{
    pp_wire_counter *c = apr_palloc(out->pool, sizeof(*c));

    ppwire__counter__init(c);
    c->name = (char *)name;
    c->value = value;
    PUSH(out, counters, c);
}

int pprof_out_mappings(pprof_out *out)
{
    pp_maps *maps = pp_maps_read(NULL);
    apr_size_t i, n;

    if (!maps) {
        return -1;
    }
    n = pp_maps_count(maps);
    for (i = 0; i < n; i++) {
        const pp_map_entry *e = pp_maps_get(maps, i);
        pp_wire_mapping *m = apr_palloc(out->pool, sizeof(*m));
        ppwire__mapping__init(m);
        m->start = e->start;
        m->end = e->end;
        m->offset = e->offset;
        m->path = apr_pstrdup(out->pool, e->path);
        PUSH(out, mappings, m);
    }
    pp_maps_free(maps);
    return 0;
}

uint64_t *pprof_out_pcs(pprof_out *out, const uint64_t *pcs, apr_size_t n)
{
    return n ? apr_pmemdup(out->pool, pcs, n * sizeof(*pcs)) : NULL;
}

void pprof_out_stack(pprof_out *out, apr_uint64_t key, const apr_uint64_t *values,
                     apr_size_t nvalues, const apr_uint64_t *pcs, apr_size_t npcs)
{
    pp_wire_stack *s = apr_palloc(out->pool, sizeof(*s));

    ppwire__stack__init(s);
    s->key = key;
    s->n_values = nvalues;
    s->values = pprof_out_pcs(out, values, nvalues);
    s->n_pcs = npcs;
    s->pcs = pprof_out_pcs(out, pcs, npcs);
    PUSH(out, stacks, s);
}

void pprof_out_stacktab(pprof_out *out, const pp_stacktab *t)
{
    apr_size_t i, n = pp_stacktab_count(t);

    for (i = 0; i < n; i++) {
        pp_stack view;
        const pp_stack *st = pp_stacktab_get(t, i, &view);
        if (st) {
            pprof_out_stack(out, st->key, st->values, st->nvalues, st->pcs, st->npcs);
        }
    }
}

static void add_parsed(void *baton, const pp_stack *st)
{
    pprof_out_stack(baton, st->key, st->values, st->nvalues, st->pcs, st->npcs);
}

int pprof_out_stacks_serialized(pprof_out *out, const unsigned char *buf, apr_size_t len)
{
    return pp_stacktab_parse(buf, len, add_parsed, out);
}

void pprof_out_tag(pprof_out *out, apr_uint32_t id, const char *handler, const char *vhost)
{
    pp_wire_tag *t = apr_palloc(out->pool, sizeof(*t));

    ppwire__request_tag__init(t);
    t->id = id;
    t->handler = apr_pstrdup(out->pool, handler);
    t->vhost = apr_pstrdup(out->pool, vhost);
    PUSH(out, tags, t);
}

pp_wire_thread *pprof_out_thread(pprof_out *out)
{
    pp_wire_thread *t = apr_palloc(out->pool, sizeof(*t));

    ppwire__thread__init(t);
    PUSH(out, threads, t);
    return t;
}

pp_wire_section *pprof_out_section(pprof_out *out)
{
    pp_wire_section *s = apr_palloc(out->pool, sizeof(*s));

    ppwire__trace_section__init(s);
    PUSH(out, sections, s);
    return s;
}

pp_wire_sample *pprof_out_sample(pprof_out *out)
{
    pp_wire_sample *s = apr_palloc(out->pool, sizeof(*s));

    ppwire__trace_sample__init(s);
    PUSH(out, samples, s);
    return s;
}
