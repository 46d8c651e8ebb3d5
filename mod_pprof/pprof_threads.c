/* The thread kinds, both snapshot kinds: "goroutine" (/debug/pprof/goroutine: every thread
 * of every child, with the request it serves) and "threadcreate"
 * (/debug/pprof/threadcreate: where each live thread was created). Apache's threads are
 * Go's goroutines.
 *
 * goroutine's reply: threads (tid, stack as captured by a directed signal, pcs[0] exact,
 * whether it answered, /proc state and name, its role and, from its own request record,
 * what it serves), mappings. threadcreate's: threads (tid, creation stack, every PC a
 * return address), mappings, counter "total" (threads created since the child started).
 *
 * Collector half: one record per thread of every child, answered as a count profile, as
 * Go's debug=1 text, goroutine's debug=2 dump, or the delta of two takes. */
#include "pprof_conf.h"
#include "pprof_answer.h"
#include "pprof_collect.h"
#include "pprof_kind.h"
#include "pprof_query.h"
#include "pprof_reply.h"
#include "pprof_request.h"
#include "pprof_respond.h"
#include "pprof_scoreboard.h"
#include "pprof_symbols.h"
#include "pprof_text.h"

#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_escape.h"
#include "apr_hash.h"
#include "apr_strings.h"
#include "apr_uri.h"
#include "ap_mpm.h"

#include "pp_reqrec.h"
#include "pp_sysfd.h"
#include "pp_tasks.h"
#include "pp_tcreate.h"
#include "pp_threads.h"

#include <errno.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define SPARE_RECORDS 64        /* request records beyond the MPM's threads (other pools) */
#define DUMP_DEADLINE_MS 250    /* a thread that cannot answer by then is reported so */

extern const pprof_kind pprof_kind_goroutine, pprof_kind_threadcreate;

/* === goroutine: the request records and the agent half ================================== */

/* In the parent, before any child is forked (while still root): children change user,
 * and the helper reads their blocked threads' registers for pp_threads. */
static void goroutine_post_config(apr_pool_t *pconf, server_rec *s)
{
    if (pp_sysfd_helper_start() < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "PP0024: cannot start the "
                     "helper: blocked threads will show no stack");
    }
}

/* One request record per thread that serves requests: the MPM's, and a few of other pools
 * (a protocol module's own workers). Kept until the process ends: no thread may be left
 * writing into a record that is gone. */
static void goroutine_child_init(apr_pool_t *pchild, server_rec *s)
{
    int threads = 1;

    if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads) != APR_SUCCESS || threads < 1) {
        threads = 1;
    }
    if (pp_reqrec_init((size_t)threads + SPARE_RECORDS) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0013: no memory for request "
                     "records: the thread dump shows no requests");
    }
}

/* The request line as mod_status shows it: a password in the URI is left out. */
static void request_line(request_rec *r, char *dst, apr_size_t n)
{
    if (r->parsed_uri.password) {
        /* Rare (an absolute URI with user:password@): the only case that allocates. */
        pp_reqrec_copy(dst, n, apr_pstrcat(r->pool, r->method, " ",
                                           apr_uri_unparse(r->pool, &r->parsed_uri,
                                                           APR_URI_UNP_OMITPASSWORD),
                                           r->assbackwards ? NULL : " ", r->protocol, NULL));
    } else {
        pp_reqrec_copy(dst, n, r->the_request);
    }
}

/* What the thread dump shows of a worker's request, kept in the thread's own record
 * (pp_reqrec): post_read_request copies the request line, vhost, client and start time
 * into it; the handler hook adds the handler (pprof_threads_handler); log_transaction (on
 * whichever thread logs) marks it over (pprof_threads_request_end). No lock and no
 * allocation; nothing from ExtendedStatus. */
static int request_begin(request_rec *r)
{
    pp_reqrec *rec;
    pp_reqrec_info info;

    if (r->main || r->prev || !(rec = pp_reqrec_self())) {
        return DECLINED;
    }
    memset(&info, 0, sizeof(info));
    info.token = (apr_uint64_t)(uintptr_t)r;
    info.start_us = r->request_time;    /* read by httpd already: no clock call here */
    request_line(r, info.request, sizeof(info.request));
    pp_reqrec_copy(info.vhost, sizeof(info.vhost), r->server->server_hostname);
    pp_reqrec_copy(info.client, sizeof(info.client), r->useragent_ip ? r->useragent_ip
                                                     : r->connection->client_ip);
    pp_reqrec_begin(rec, &info);
    return DECLINED;
}

void pprof_threads_handler(request_rec *r)
{
    pp_reqrec *rec;

    /* The main request's handler (after an internal redirect, the new one's). */
    if (!r->main && r->handler && (rec = pp_reqrec_self()) != NULL) {
        pp_reqrec_set_handler(rec, r->handler);
    }
}

void pprof_threads_request_end(request_rec *r)
{
    /* Found by its token: usually in this thread's own record, else in the one of the
     * thread that began it. */
    pp_reqrec_end((apr_uint64_t)(uintptr_t)r);
}

static void goroutine_register_hooks(apr_pool_t *p)
{
    /* Last: the client as mod_remoteip (a FIRST hook) makes it. The handler and the end
     * (after every logger) come through pprof_request's hooks. */
    ap_hook_post_read_request(request_begin, NULL, NULL, APR_HOOK_REALLY_LAST);
}

/* A field of a record as the dump prints it: tabs and line ends (possible in a hostile
 * request line only) made spaces. */
static char *field(apr_pool_t *p, const char *src, apr_size_t max)
{
    char *f = apr_pstrndup(p, src, max), *c;

    for (c = f; *c; c++) {
        if (*c == '\t' || *c == '\n' || *c == '\r') {
            *c = ' ';
        }
    }
    return f;
}

/* One thread: its stack, its role, and what its request record says it serves. Status is
 * "writing" while a request is in progress (its headers read, not yet logged), "idle"
 * otherwise, "changing" for a record that was rewritten under every read. */
static void add_thread(pprof_out *out, const pp_thread_stack *st, const pp_reqrec_view *v,
                       apr_time_t now)
{
    pp_wire_thread *t = pprof_out_thread(out);

    t->tid = st->tid;
    t->answered = st->result == PP_THREAD_OK || st->result == PP_THREAD_SELF;
    t->n_pcs = t->answered ? st->npcs : 0;
    t->pcs = pprof_out_pcs(out, st->pcs, t->n_pcs);
    t->state = (unsigned char)st->state;
    t->name = apr_pstrndup(out->pool, st->name, sizeof(st->name));
    t->role = "other";
    t->seconds = -1;
    if (st->tid == (apr_uint32_t)getpid() && pprof_threaded()) {
        t->role = "main";
    } else if (st->result == PP_THREAD_SELF) {
        t->role = "agent";      /* the capture runs on the agent thread */
    } else if (v || pprof_slot_is_worker(st->tid, st->pthread)) {
        t->role = "worker";
        t->status = "idle";
    }
    if (v && v->torn) {
        t->status = "changing";
    } else if (v && v->busy) {
        t->status = "writing";
        t->client = field(out->pool, v->info.client, sizeof(v->info.client));
        t->vhost = field(out->pool, v->info.vhost, sizeof(v->info.vhost));
        t->request = field(out->pool, v->info.request, sizeof(v->info.request));
        t->handler = field(out->pool, v->info.handler, sizeof(v->info.handler));
        t->seconds = (double)(now - v->info.start_us) / APR_USEC_PER_SEC;
    }
}

static int goroutine_take(const pp_wire_request *req, pprof_out *out)
{
    pp_thread_stack *st = NULL;
    apr_hash_t *by_tid = apr_hash_make(out->pool);
    apr_time_t now = apr_time_now();
    apr_size_t cap = pp_reqrec_capacity(), nrec = 0, i;
    pp_reqrec_view *views;
    size_t n = 0;

    if (pp_threads_capture(&st, &n, DUMP_DEADLINE_MS) != 0 || pprof_out_mappings(out) != 0) {
        free(st);
        return pprof_out_error(out, "cannot capture thread stacks");
    }
    /* Records are held by live threads only: room for the threads captured, and for
     * some started since. */
    cap = cap < n + SPARE_RECORDS ? cap : n + SPARE_RECORDS;
    views = cap ? apr_palloc(out->pool, cap * sizeof(*views)) : NULL;
    if (views) {
        nrec = pp_reqrec_snapshot(views, cap);
    }
    for (i = 0; i < nrec; i++) {
        apr_hash_set(by_tid, &views[i].tid, sizeof(views[i].tid), &views[i]);
    }
    for (i = 0; i < n; i++) {
        add_thread(out, &st[i], apr_hash_get(by_tid, &st[i].tid, sizeof(st[i].tid)), now);
    }
    free(st);
    return PP_WIRE_OK;
}

/* === threadcreate: the agent half ======================================================= */

static void tcreate_post_config(apr_pool_t *pconf, server_rec *s)
{
    /* In the parent, before any child is forked: children inherit the hook. */
    if (pp_tcreate_start() < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0022: cannot hook pthread_create");
    }
}

static int tcreate_take(const pp_wire_request *req, pprof_out *out)
{
    pp_tcreate_record *recs = NULL;
    size_t n = 0, i;

    if (pp_tcreate_snapshot(&recs, &n) != 0 || pprof_out_mappings(out) != 0) {
        free(recs);
        return pprof_out_error(out, "out of memory");
    }
    for (i = 0; i < n; i++) {
        pp_wire_thread *t = pprof_out_thread(out);
        t->tid = recs[i].tid;
        t->answered = 1;
        t->n_pcs = recs[i].npcs;
        t->pcs = pprof_out_pcs(out, recs[i].pcs, recs[i].npcs);
    }
    pprof_out_counter(out, "total", (apr_int64_t)pp_tcreate_total());
    free(recs);
    return PP_WIRE_OK;
}

/* === The collector half (both kinds) ==================================================== */

/* One thread of one child, as the profiles need it. */
typedef struct {
    long pid;
    const pp_maps *maps;
    const pp_wire_thread *w;    /* the reply's: it lives as long as r->pool */
    int first_is_return;        /* creation stacks: every PC is a return address */
} thread_rec;

typedef struct {
    request_rec *r;
    int goroutine;
    apr_array_header_t *threads;        /* thread_rec */
} threads_answer;

static void threads_merge(void *answer, const pprof_child *ch)
{
    threads_answer *ta = answer;
    size_t i;

    /* A child gone is not in a snapshot; one that is there and did not answer is not
     * either, but error_log says so, as for the heap and contention profiles. */
    if (ch->status == PPROF_CHILD_FAILED || ch->status == PPROF_CHILD_REFUSED) {
        pprof_collect_missing(ta->r, ch, ta->goroutine ? "thread stacks"
                                                       : "threads' creation stacks");
    }
    if (ch->status != PPROF_CHILD_OK) {
        return;
    }
    for (i = 0; i < ch->reply->n_threads; i++) {
        thread_rec *t = apr_array_push(ta->threads);
        t->pid = (long)ch->pid;
        t->maps = ch->maps;
        t->w = ch->reply->threads[i];
        t->first_is_return = !ta->goroutine;
    }
}

static int busy(const thread_rec *t)
{
    return *t->w->request || *t->w->handler;
}

/* A profile of counts: one sample per thread, with pid, role and request labels. For a
 * delta, `minus` (the start of the window) enters with -1, as Go's Scale(-1) and Merge. */
static int send_count_profile(request_rec *r, const char *name, const char *filename,
                              apr_array_header_t *threads, apr_array_header_t *minus,
                              apr_time_t t0, apr_time_t t1)
{
    pprof_answer *ans = pprof_answer_new(r);
    apr_array_header_t *sets[2] = { threads, minus };
    int i, k, goroutine = strcmp(name, "goroutine") == 0;
    pp_profile *prof;

    if (!ans) {
        return pprof_answer_fail(r, NULL);
    }
    prof = pprof_answer_profile(ans);
    pp_profile_add_sample_type(prof, name, "count");
    pp_profile_set_period(prof, name, "count", 1);
    pp_profile_set_time(prof, (int64_t)t1 * 1000, (int64_t)(t1 - t0) * 1000);
    for (k = 0; k < 2; k++) {
        for (i = 0; sets[k] && i < sets[k]->nelts; i++) {
            const thread_rec *t = &APR_ARRAY_IDX(sets[k], i, thread_rec);
            int64_t value = k ? -1 : 1;
            pp_label labels[4];
            size_t nl = 0;
            int rc;

            memset(labels, 0, sizeof(labels));
            labels[nl].key = "pid";
            labels[nl++].num = t->pid;
            if (goroutine) {
                labels[nl].key = "role";
                labels[nl++].str = t->w->role;
                if (busy(t)) {
                    labels[nl].key = "handler";
                    labels[nl++].str = *t->w->handler ? t->w->handler : "(none)";
                    labels[nl].key = "vhost";
                    labels[nl++].str = t->w->vhost;
                }
            }
            if (!t->w->answered) {
                rc = pprof_answer_synthetic(ans, "mod_pprof.threadDidNotAnswer", &value,
                                            labels, nl);
            } else {
                rc = pprof_answer_sample(ans, t->maps, t->w->pcs, t->w->n_pcs,
                                         t->first_is_return, &value, labels, nl);
            }
            if (rc != 0) {
                return pprof_answer_fail(r, ans);
            }
        }
    }
    return pprof_answer_send(ans, filename);
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

    for (i = 0; i < threads->nelts; i++) {
        const thread_rec *t = &APR_ARRAY_IDX(threads, i, thread_rec);
        const char *labels = !goroutine ? ""
            : busy(t) ? apr_psprintf(r->pool, "{\"handler\":\"%s\", \"pid\":\"%ld\", "
                                     "\"role\":\"%s\", \"vhost\":\"%s\"}",
                                     *t->w->handler ? t->w->handler : "(none)", t->pid,
                                     t->w->role, t->w->vhost)
                      : apr_psprintf(r->pool, "{\"pid\":\"%ld\", \"role\":\"%s\"}", t->pid,
                                     t->w->role);
        const char *key = apr_pstrcat(r->pool, labels, "|",
                                      apr_pescape_hex(r->pool, t->w->pcs,
                                                      t->w->n_pcs * sizeof(apr_uint64_t), 0),
                                      t->w->answered ? "" : "|noanswer", NULL);
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
    if (!(sym = pprof_symbols_lock())) {
        return pprof_answer_fail(r, NULL);
    }
    for (i = 0; i < groups->nelts; i++) {
        const group *g = APR_ARRAY_IDX(groups, i, group *);
        const thread_rec *t = g->first;
        apr_brigade_printf(bb, NULL, NULL, "%ld @", g->count);
        pprof_text_pcs(bb, t->w->pcs, t->w->n_pcs);
        apr_brigade_puts(bb, NULL, NULL, "\n");
        if (*g->labels) {
            apr_brigade_printf(bb, NULL, NULL, "# labels: %s\n", g->labels);
        }
        if (!t->w->answered) {
            apr_brigade_puts(bb, NULL, NULL, "#\tthread did not answer (signals blocked?)\n\n");
            continue;
        }
        pprof_text_stack(bb, sym, t->maps, t->w->pcs, t->w->n_pcs, t->first_is_return);
    }
    pprof_symbols_unlock();
    return pprof_send_text(r, bb);
}

static const char *state_name(unsigned s)
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
    size_t k;

    if (!(sym = pprof_symbols_lock())) {
        return pprof_answer_fail(r, NULL);
    }
    for (i = 0; i < threads->nelts; i++) {
        const thread_rec *t = &APR_ARRAY_IDX(threads, i, thread_rec);
        const pp_wire_thread *w = t->w;
        apr_brigade_printf(bb, NULL, NULL, "goroutine %u [%s, pid %ld, %s, %s", w->tid,
                           state_name(w->state), t->pid, w->role, w->name);
        if (*w->status) {
            apr_brigade_printf(bb, NULL, NULL, ", %s", w->status);
        }
        if (busy(t)) {
            apr_brigade_printf(bb, NULL, NULL, ", client %s, vhost %s, handler %s, "
                               "request \"%s\", %.3f s in request", w->client, w->vhost,
                               *w->handler ? w->handler : "(none)", w->request, w->seconds);
        }
        apr_brigade_puts(bb, NULL, NULL, "]:\n");
        if (!w->answered) {
            apr_brigade_printf(bb, NULL, NULL, "(did not answer within %d ms: signals "
                               "blocked?)\n\n", DUMP_DEADLINE_MS);
            continue;
        }
        for (k = 0; k < w->n_pcs; k++) {
            pp_frame fr[16];
            pp_pc_site site;
            int nf = pp_symbolize_pc(sym, t->maps, w->pcs[k], k > 0, fr, 16, &site), j;
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
    pprof_symbols_unlock();
    return pprof_send_text(r, bb);
}

static int serve_threads(request_rec *r, apr_table_t *args, const pprof_kind *k)
{
    const char *name = k->name;
    int goroutine = k == &pprof_kind_goroutine, debug = pprof_query_int(args, "debug");
    threads_answer before = { r, goroutine, apr_array_make(r->pool, 64, sizeof(thread_rec)) };
    threads_answer now = { r, goroutine, apr_array_make(r->pool, 64, sizeof(thread_rec)) };
    pprof_snapshots s;

    memset(&s, 0, sizeof(s));
    s.kind = k;
    s.gone_tag = "PP0601";
    s.before = &before;
    s.now = &now;
    if (pprof_take_snapshots(r, args, &s) != OK) {
        return OK;              /* answered (a 400), or the client is gone */
    }
    if (s.delta) {
        return send_count_profile(r, name, apr_pstrcat(r->pool, name, "-delta", NULL),
                                  now.threads, before.threads, s.t0, s.t1);
    }
    if (debug >= 2 && goroutine) {
        return send_dump(r, now.threads);
    }
    if (debug > 0) {
        return send_count_text(r, name, now.threads);
    }
    /* Go's writeRuntimeProfile writes text for a debug > 0 only: a negative one is the
     * binary profile under the text/plain header its handler set for debug != 0. */
    return send_count_profile(r, name, debug < 0 ? NULL : name, now.threads, NULL, s.t0,
                              s.t0);
}

static int serve_goroutine(request_rec *r, apr_table_t *args)
{
    return serve_threads(r, args, &pprof_kind_goroutine);
}

static int serve_threadcreate(request_rec *r, apr_table_t *args)
{
    return serve_threads(r, args, &pprof_kind_threadcreate);
}

/* Index counts: threads of every child, from /proc, without stopping any thread. */
static long threads_count(request_rec *r)
{
    apr_array_header_t *pids = pprof_children(r->pool, 0);
    long total = 0;
    int i;

    for (i = 0; i < pids->nelts; i++) {
        uint32_t *tids = NULL;
        size_t n = 0;
        if (pp_tasks_list(apr_psprintf(r->pool, "/proc/%ld/task",
                                       (long)APR_ARRAY_IDX(pids, i, pid_t)), &tids, &n) == 0) {
            total += (long)n;
            free(tids);
        }
    }
    return total;
}

static const pprof_endpoint goroutine_endpoints[] = {
    { "goroutine", serve_goroutine, threads_count,
      "Stack traces of all current threads of every child, with the request each worker "
      "serves (debug=2: a full dump with each worker's request)" },
    { NULL }
};

static const pprof_endpoint tcreate_endpoints[] = {
    { "threadcreate", serve_threadcreate, threads_count,
      "Stack traces that led to the creation of the live threads of every child" },
    { NULL }
};

const pprof_kind pprof_kind_goroutine = {
    .name = "goroutine",
    .endpoints = goroutine_endpoints,
    .register_hooks = goroutine_register_hooks,
    .post_config = goroutine_post_config,
    .child_init = goroutine_child_init,
    .take = goroutine_take,
    .merge = threads_merge,
};

const pprof_kind pprof_kind_threadcreate = {
    .name = "threadcreate",
    .endpoints = tcreate_endpoints,
    .post_config = tcreate_post_config,
    .take = tcreate_take,
    .merge = threads_merge,
};
