#include "pprof_answer.h"
#include "pprof_respond.h"
#include "pprof_symbols.h"

#include "pp_resolve.h"
#include "pp_wire.h"

struct pprof_answer {
    request_rec *r;
    pp_symbolizer *sym;         /* held until the end */
    pp_profile *prof;
    pp_resolver *res;
};

static apr_status_t answer_end(void *data)
{
    pprof_answer *a = data;

    pp_resolver_free(a->res);
    pp_profile_free(a->prof);
    if (a->sym) {
        pprof_symbols_unlock();
    }
    a->res = NULL;
    a->prof = NULL;
    a->sym = NULL;
    return APR_SUCCESS;
}

pprof_answer *pprof_answer_new(request_rec *r)
{
    pprof_answer *a = apr_pcalloc(r->pool, sizeof(*a));
    pp_maps *own = pp_maps_read(NULL);

    a->r = r;
    apr_pool_cleanup_register(r->pool, a, answer_end, apr_pool_cleanup_null);
    if (own && (a->sym = pprof_symbols_lock()) != NULL && (a->prof = pp_profile_new()) &&
        (a->res = pp_resolver_new(a->prof, a->sym)) &&
        pp_resolver_add_mappings(a->res, own) == 0) {
        pp_maps_free(own);
        return a;
    }
    pp_maps_free(own);
    apr_pool_cleanup_run(r->pool, a, answer_end);
    return NULL;
}

pp_profile *pprof_answer_profile(pprof_answer *a)
{
    return a->prof;
}

int pprof_answer_sample(pprof_answer *a, const pp_maps *maps, const uint64_t *pcs, size_t n,
                        int first_is_return, const int64_t *values, const pp_label *labels,
                        size_t nlabels)
{
    uint64_t locs[PP_WIRE_MAX_PCS];
    int nl;

    if (n > PP_WIRE_MAX_PCS) {
        n = PP_WIRE_MAX_PCS;    /* never from a checked reply; a bound all the same */
    }
    nl = pp_resolver_stack(a->res, maps, pcs, n, first_is_return, locs);
    if (nl < 0) {
        return -1;
    }
    return pp_profile_add_sample(a->prof, locs, (size_t)nl, values, labels, nlabels) == 0 ? 0 : -1;
}

int pprof_answer_synthetic(pprof_answer *a, const char *frame, const int64_t *values,
                           const pp_label *labels, size_t nlabels)
{
    uint64_t loc = pp_resolver_synthetic(a->res, frame);

    if (!loc) {
        return -1;
    }
    return pp_profile_add_sample(a->prof, &loc, 1, values, labels, nlabels) == 0 ? 0 : -1;
}

int pprof_answer_send(pprof_answer *a, const char *filename)
{
    int rc = pprof_send_profile(a->r, a->prof, filename);

    apr_pool_cleanup_run(a->r->pool, a, answer_end);
    return rc;
}

int pprof_answer_fail(request_rec *r, pprof_answer *a)
{
    if (a) {
        apr_pool_cleanup_run(r->pool, a, answer_end);
    }
    return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
}
