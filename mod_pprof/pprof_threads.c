/* Thread profiles: each child's agent signals its threads (pp_threads) or lists their
 * creation stacks (pp_tcreate); this merges the children's answers into Go's shapes. */
#include "mod_pprof.h"
#include "pprof_collect.h"
#include "pprof_handler.h"
#include "pprof_ipc.h"
#include "pprof_text.h"
#include "pprof_threads.h"

#include "http_log.h"
#include "http_protocol.h"
#include "apr_escape.h"
#include "apr_hash.h"
#include "apr_strings.h"

#include "pp_maps.h"
#include "pp_profile.h"
#include "pp_resolve.h"
#include "pp_tcreate.h"
#include "pp_threads.h"

#include <stdlib.h>

APLOG_USE_MODULE(pprof);

/* One thread of one child, as the profiles need it. */
typedef struct {
    long pid;
    const pp_maps *maps;
    apr_uint32_t tid;
    const apr_uint64_t *pcs;
    apr_uint32_t npcs;
    int first_is_return;        /* creation stacks: every PC is a return address */
    int answered;
    char state;
    const char *name;
    /* From the child's info line: the thread's role and its request record. */
    const char *role, *status, *client, *vhost, *request, *handler;
    double seconds;
} thread_rec;

/* Tabs split the info line; empty fields vanish in strtok, so rebuild them by position. */
static char **split_tabs(apr_pool_t *p, const char *line, int n)
{
    char **f = apr_pcalloc(p, (apr_size_t)n * sizeof(char *)), *copy = apr_pstrdup(p, line);
    int i;

    for (i = 0; i < n; i++) {
        char *tab = strchr(copy, '\t');
        f[i] = copy;
        if (!tab) {
            break;
        }
        *tab = '\0';
        copy = tab + 1;
    }
    for (; i < n; i++) {
        if (!f[i]) {
            f[i] = "";
        }
    }
    return f;
}

static apr_array_header_t *collect_threads(request_rec *r, pid_t only)
{
    apr_array_header_t *pids = pprof_children(r, only);
    apr_array_header_t *out = apr_array_make(r->pool, 64, sizeof(thread_rec));
    int i;
    size_t j;

    for (i = 0; i < pids->nelts; i++) {
        pprof_reply rep;
        long pid;
        apr_size_t n;
        pp_maps *maps;
        const pp_thread_stack *st;
        apr_hash_t *info = apr_hash_make(r->pool);
        char *line, *last;

        if (pprof_call_child(r, APR_ARRAY_IDX(pids, i, pid_t), "THREADS", 3, &rep, &maps) != 0 ||
            sscanf(rep.line, "THREADS %ld %" APR_SIZE_T_FMT, &pid, &n) != 2 ||
            rep.len[1] != n * sizeof(pp_thread_stack)) {
            continue;
        }
        for (line = apr_strtok(rep.blob[2], "\n", &last); line;
             line = apr_strtok(NULL, "\n", &last)) {
            char **f = split_tabs(r->pool, line, 8);
            apr_hash_set(info, f[0], APR_HASH_KEY_STRING, f);
        }
        /* The blob is malloc-aligned only by chance: copy before reading the structs. */
        st = apr_pmemdup(r->pool, rep.blob[1], rep.len[1]);
        for (j = 0; j < n; j++) {
            thread_rec *t = apr_array_push(out);
            char **f = apr_hash_get(info, apr_psprintf(r->pool, "%u", st[j].tid),
                                    APR_HASH_KEY_STRING);
            memset(t, 0, sizeof(*t));
            t->pid = pid;
            t->maps = maps;
            t->tid = st[j].tid;
            t->pcs = st[j].pcs;
            t->npcs = st[j].npcs;
            t->answered = st[j].result == PP_THREAD_OK || st[j].result == PP_THREAD_SELF;
            t->state = st[j].state;
            t->name = apr_pstrndup(r->pool, st[j].name, sizeof(st[j].name));
            t->role = f ? f[1] : "other";
            t->status = f ? f[2] : "";
            t->client = f ? f[3] : "";
            t->vhost = f ? f[4] : "";
            t->request = f ? f[5] : "";
            t->handler = f ? f[6] : "";
            t->seconds = f ? atof(f[7]) : -1;
        }
    }
    return out;
}

static apr_array_header_t *collect_tcreate(request_rec *r, pid_t only)
{
    apr_array_header_t *pids = pprof_children(r, only);
    apr_array_header_t *out = apr_array_make(r->pool, 64, sizeof(thread_rec));
    int i;
    size_t j;

    for (i = 0; i < pids->nelts; i++) {
        pprof_reply rep;
        long pid;
        apr_uint64_t total;
        pp_maps *maps;
        const pp_tcreate_record *recs;
        size_t n;

        if (pprof_call_child(r, APR_ARRAY_IDX(pids, i, pid_t), "TCREATE", 2, &rep, &maps) != 0 ||
            sscanf(rep.line, "TCREATE %ld %" APR_UINT64_T_FMT, &pid, &total) != 2 ||
            rep.len[1] % sizeof(pp_tcreate_record) != 0) {
            continue;
        }
        recs = apr_pmemdup(r->pool, rep.blob[1], rep.len[1]);
        n = rep.len[1] / sizeof(pp_tcreate_record);
        for (j = 0; j < n; j++) {
            thread_rec *t = apr_array_push(out);
            memset(t, 0, sizeof(*t));
            t->pid = pid;
            t->maps = maps;
            t->tid = recs[j].tid;
            t->pcs = recs[j].pcs;
            t->npcs = recs[j].npcs;
            t->first_is_return = 1;
            t->answered = 1;
            t->role = "";
        }
    }
    return out;
}

static int busy(const thread_rec *t)
{
    return *t->request || *t->handler;
}

/* A profile of counts: one sample per thread, with pid, role and request labels. For a
 * delta, `minus` (the start of the window) enters with -1, as Go's Scale(-1) and Merge. */
static int send_count_profile(request_rec *r, const char *name, const char *filename,
                              apr_array_header_t *threads, apr_array_header_t *minus,
                              apr_time_t t0, apr_time_t t1)
{
    pp_symbolizer *sym = pprof_symbolizer_lock();
    pp_profile *prof = sym ? pp_profile_new() : NULL;
    pp_resolver *res = prof ? pp_resolver_new(prof, sym) : NULL;
    pp_maps *own = pp_maps_read(NULL);
    apr_array_header_t *sets[2] = { threads, minus };
    int i, k, rc = OK, goroutine = strcmp(name, "goroutine") == 0;

    if (!res || !own) {
        rc = pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
        goto done;
    }
    pp_profile_add_sample_type(prof, name, "count");
    pp_profile_set_period(prof, name, "count", 1);
    pp_profile_set_time(prof, (int64_t)t1 * 1000, (int64_t)(t1 - t0) * 1000);
    pp_resolver_add_mappings(res, own);
    for (k = 0; k < 2; k++) {
        for (i = 0; sets[k] && i < sets[k]->nelts; i++) {
            const thread_rec *t = &APR_ARRAY_IDX(sets[k], i, thread_rec);
            uint64_t locs[PP_THREADS_MAX_DEPTH];
            int64_t value = k ? -1 : 1;
            pp_label labels[4];
            size_t nl = 0;
            int n;

            memset(labels, 0, sizeof(labels));
            labels[nl].key = "pid";
            labels[nl++].num = t->pid;
            if (goroutine) {
                labels[nl].key = "role";
                labels[nl++].str = t->role;
                if (busy(t)) {
                    labels[nl].key = "handler";
                    labels[nl++].str = *t->handler ? t->handler : "(none)";
                    labels[nl].key = "vhost";
                    labels[nl++].str = t->vhost;
                }
            }
            if (!t->answered) {
                locs[0] = pp_resolver_synthetic(res, "mod_pprof.threadDidNotAnswer");
                n = locs[0] ? 1 : -1;
            } else {
                n = pp_resolver_stack(res, t->maps, t->pcs, t->npcs, t->first_is_return, locs);
            }
            if (n < 0 || pp_profile_add_sample(prof, locs, (size_t)n, &value, labels, nl) != 0) {
                rc = pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                       "failed to collect profile");
                goto done;
            }
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

typedef struct {
    const thread_rec *first;
    const char *labels;
    long count;
} group;

static int by_count(const void *a, const void *b)
{
    const group *x = *(group *const *)a, *y = *(group *const *)b;

    return x->count < y->count ? 1 : x->count > y->count ? -1 : 0;
}

/* Go's printCountProfile (debug=1): identical stacks (and labels) grouped, largest first. */
static int send_count_text(request_rec *r, const char *name, apr_array_header_t *threads)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_hash_t *ix = apr_hash_make(r->pool);
    apr_array_header_t *groups = apr_array_make(r->pool, 64, sizeof(group *));
    int i, goroutine = strcmp(name, "goroutine") == 0;
    pp_symbolizer *sym;

    ap_set_content_type(r, "text/plain; charset=utf-8");
    for (i = 0; i < threads->nelts; i++) {
        const thread_rec *t = &APR_ARRAY_IDX(threads, i, thread_rec);
        const char *labels = !goroutine ? ""
            : busy(t) ? apr_psprintf(r->pool, "{\"handler\":\"%s\", \"pid\":\"%ld\", "
                                     "\"role\":\"%s\", \"vhost\":\"%s\"}",
                                     *t->handler ? t->handler : "(none)", t->pid, t->role,
                                     t->vhost)
                      : apr_psprintf(r->pool, "{\"pid\":\"%ld\", \"role\":\"%s\"}", t->pid,
                                     t->role);
        const char *key = apr_pstrcat(r->pool, labels, "|",
                                      apr_pescape_hex(r->pool, t->pcs,
                                                      t->npcs * sizeof(apr_uint64_t), 0),
                                      t->answered ? "" : "|noanswer", NULL);
        group *g = apr_hash_get(ix, key, APR_HASH_KEY_STRING);
        if (!g) {
            g = apr_pcalloc(r->pool, sizeof(*g));
            g->first = t;
            g->labels = labels;
            apr_hash_set(ix, key, APR_HASH_KEY_STRING, g);
            APR_ARRAY_PUSH(groups, group *) = g;
        }
        g->count++;
    }
    qsort(groups->elts, (size_t)groups->nelts, sizeof(group *), by_count);
    apr_brigade_printf(bb, NULL, NULL, "%s profile: total %d\n", name, threads->nelts);
    if (!(sym = pprof_symbolizer_lock())) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
    }
    for (i = 0; i < groups->nelts; i++) {
        const group *g = APR_ARRAY_IDX(groups, i, group *);
        apr_brigade_printf(bb, NULL, NULL, "%ld @", g->count);
        pprof_text_pcs(bb, g->first->pcs, g->first->npcs);
        apr_brigade_puts(bb, NULL, NULL, "\n");
        if (*g->labels) {
            apr_brigade_printf(bb, NULL, NULL, "# labels: %s\n", g->labels);
        }
        if (!g->first->answered) {
            apr_brigade_puts(bb, NULL, NULL, "#\tthread did not answer (signals blocked?)\n\n");
            continue;
        }
        pprof_text_stack(bb, sym, g->first->maps, g->first->pcs, g->first->npcs,
                         g->first->first_is_return);
    }
    pprof_symbolizer_unlock();
    if (r->header_only) {
        return OK;
    }
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

static const char *state_name(char s)
{
    switch (s) {
    case 'R': return "running";
    case 'S': return "sleeping";
    case 'D': return "disk wait";
    case 'T': case 't': return "stopped";
    case 'Z': return "zombie";
    default: return "unknown";
    }
}

/* Go's full goroutine dump (debug=2), one block per thread: a header with the thread id,
 * its state, and what its request record says it serves; then each frame as
 * "function(...)" and "\tfile:line +0xOFF". */
static int send_dump(request_rec *r, apr_array_header_t *threads)
{
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    pp_symbolizer *sym;
    int i;
    apr_uint32_t k;

    ap_set_content_type(r, "text/plain; charset=utf-8");
    if (!(sym = pprof_symbolizer_lock())) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
    }
    for (i = 0; i < threads->nelts; i++) {
        const thread_rec *t = &APR_ARRAY_IDX(threads, i, thread_rec);
        apr_brigade_printf(bb, NULL, NULL, "goroutine %u [%s, pid %ld, %s, %s", t->tid,
                           state_name(t->state), t->pid, t->role, t->name);
        if (*t->status) {
            apr_brigade_printf(bb, NULL, NULL, ", %s", t->status);
        }
        if (busy(t)) {
            apr_brigade_printf(bb, NULL, NULL, ", client %s, vhost %s, handler %s, "
                               "request \"%s\", %.3f s in request", t->client, t->vhost,
                               *t->handler ? t->handler : "(none)", t->request, t->seconds);
        }
        apr_brigade_puts(bb, NULL, NULL, "]:\n");
        if (!t->answered) {
            apr_brigade_puts(bb, NULL, NULL, "(did not answer within 250 ms: signals blocked?)\n\n");
            continue;
        }
        for (k = 0; k < t->npcs; k++) {
            pp_frame fr[16];
            pp_pc_site site;
            int nf = pp_symbolize_pc(sym, t->maps, t->pcs[k], k > 0, fr, 16, &site), j;
            if (nf <= 0) {
                apr_brigade_printf(bb, NULL, NULL, "?()\n\t%s +0x%" APR_UINT64_T_HEX_FMT "\n",
                                   site.map ? site.map->path : "?",
                                   site.map ? site.file_offset : site.pc);
                continue;
            }
            for (j = 0; j < nf; j++) {
                apr_brigade_printf(bb, NULL, NULL, "%s(...)\n\t%s:%d +0x%" APR_UINT64_T_HEX_FMT
                                   "\n", fr[j].function ? fr[j].function : "?",
                                   fr[j].file ? fr[j].file : site.map->path, fr[j].line,
                                   fr[j].offset);
            }
        }
        apr_brigade_puts(bb, NULL, NULL, "\n");
    }
    pprof_symbolizer_unlock();
    if (r->header_only) {
        return OK;
    }
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}

static int serve_threads(request_rec *r, apr_table_t *args, const char *name,
                         apr_array_header_t *(*collect)(request_rec *, pid_t))
{
    const char *err, *secs = apr_table_get(args, "seconds");
    int debug = pprof_query_int(args, "debug");
    apr_time_t t0 = apr_time_now(), t1;
    apr_array_header_t *start;
    apr_int64_t sec;
    pid_t only;

    if ((err = pprof_query_pid(r, args, &only)) != NULL) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST, err);
    }
    if (!secs || !*secs) {
        apr_array_header_t *threads = collect(r, only);
        if (debug >= 2 && strcmp(name, "goroutine") == 0) {
            return send_dump(r, threads);
        }
        if (debug != 0) {
            return send_count_text(r, name, threads);
        }
        return send_count_profile(r, name, name, threads, NULL, t0, t0);
    }
    if ((err = pprof_delta_seconds(r, args, &sec)) != NULL) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST, err);
    }
    start = collect(r, only);
    if (pprof_sleep_unless_gone(r, t0 + apr_time_from_sec(sec))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "PP0601: client went away");
        return OK;
    }
    t1 = apr_time_now();
    return send_count_profile(r, name, apr_pstrcat(r->pool, name, "-delta", NULL),
                              collect(r, only), start, t0, t1);
}

int pprof_serve_goroutine(request_rec *r, apr_table_t *args)
{
    return serve_threads(r, args, "goroutine", collect_threads);
}

int pprof_serve_threadcreate(request_rec *r, apr_table_t *args)
{
    return serve_threads(r, args, "threadcreate", collect_tcreate);
}

long pprof_threads_count(request_rec *r)
{
    apr_array_header_t *pids = pprof_children(r, 0);
    long total = 0;
    int i;

    for (i = 0; i < pids->nelts; i++) {
        apr_dir_t *d;
        apr_finfo_t fi;
        if (apr_dir_open(&d, apr_psprintf(r->pool, "/proc/%ld/task",
                                          (long)APR_ARRAY_IDX(pids, i, pid_t)),
                         r->pool) != APR_SUCCESS) {
            continue;
        }
        while (apr_dir_read(&fi, APR_FINFO_NAME, d) == APR_SUCCESS) {
            total += fi.name[0] >= '1' && fi.name[0] <= '9';
        }
        apr_dir_close(d);
    }
    return total;
}
