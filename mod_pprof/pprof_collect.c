#include "pprof_collect.h"
#include "pprof_client.h"
#include "pprof_ipc.h"
#include "pprof_kinds.h"
#include "pprof_query.h"
#include "pprof_respond.h"
#include "pprof_scoreboard.h"
#include "pprof_shared.h"

#include "http_log.h"
#include "apr_strings.h"

#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define START_TIMEOUT apr_time_from_sec(5)     /* START and QUIT: nothing to gather */
#define TAKE_TIMEOUT apr_time_from_sec(30)     /* a TAKE or STOP: the child's whole data */
#define ROUND_TIMEOUT apr_time_from_sec(10)    /* a round's TAKE: the next round comes */
/* Children stop by themselves this long after the window's planned end. */
#define GRACE apr_time_from_sec(10)

static apr_status_t free_reply(void *m)
{
    pp_wire_free_reply(m);
    return APR_SUCCESS;
}

static apr_status_t free_maps(void *m)
{
    pp_maps_free(m);
    return APR_SUCCESS;
}

/* What one call brought back, as the kind's merge sees it. */
static void read_answer(apr_pool_t *pool, pprof_ipc_call *call, pprof_child *ch)
{
    pp_wire_reply *m;
    pp_maps *maps;

    if (call->status == PPROF_IPC_UNREACHABLE) {
        ch->status = PPROF_CHILD_GONE;
        ch->why = "not listening";
        return;
    }
    ch->status = PPROF_CHILD_FAILED;
    if (call->status != PPROF_IPC_OK) {
        ch->why = "no answer";
        return;
    }
    m = pp_wire_unpack_reply(call->body ? call->body : (unsigned char *)"", call->len);
    free(call->body);
    call->body = NULL;
    if (!m) {
        ch->why = "a broken answer";
        return;
    }
    apr_pool_cleanup_register(pool, m, free_reply, apr_pool_cleanup_null);
    if (m->status == PP_WIRE_NONE) {
        ch->status = PPROF_CHILD_NONE;
        ch->why = "nothing to hand over";
    } else if (m->status == PP_WIRE_ERROR) {
        ch->status = PPROF_CHILD_REFUSED;
        ch->why = apr_pstrdup(pool, m->error);
    } else if (!(maps = pp_wire_maps(m))) {
        ch->why = "out of memory";
    } else {
        apr_pool_cleanup_register(pool, maps, free_maps, apr_pool_cleanup_null);
        ch->status = PPROF_CHILD_OK;
        ch->why = NULL;
        ch->reply = m;
        ch->maps = maps;
    }
}

int pprof_collect(apr_pool_t *pool, const pprof_kind *k, const pp_wire_request *req,
                  apr_array_header_t *pids, apr_interval_time_t timeout, void *answer,
                  const char **why)
{
    int n = pids->nelts, i, kept = 0, ok = 0;
    pprof_ipc_call *calls = apr_pcalloc(pool, (apr_size_t)(n ? n : 1) * sizeof(*calls));
    pp_wire_request q = *req;
    unsigned char *frame = NULL;
    size_t framelen = 0;

    q.kind = (char *)k->name;
    for (i = 0; i < n; i++) {
        calls[i].pid = APR_ARRAY_IDX(pids, i, pid_t);
        calls[i].status = PPROF_IPC_FAILED;
    }
    if (n && pp_wire_pack_request(&q, &frame, &framelen) == 0) {
        pprof_ipc_exchange(calls, n, frame, framelen, PP_WIRE_MAX_REPLY,
                           apr_time_now() + timeout);
    }
    free(frame);
    if (why) {
        *why = NULL;
    }
    for (i = 0; i < n; i++) {
        pprof_child ch;

        memset(&ch, 0, sizeof(ch));
        ch.pid = calls[i].pid;
        ch.op = req->op;
        read_answer(pool, &calls[i], &ch);
        k->merge(answer, &ch);
        if (ch.status == PPROF_CHILD_OK) {
            ok++;
        } else if (why) {
            *why = ch.why;
        }
        /* A child that is gone answers no more: asking again would only wait. */
        if (ch.status == PPROF_CHILD_OK || kill(ch.pid, 0) == 0) {
            APR_ARRAY_IDX(pids, kept, pid_t) = ch.pid;
            kept++;
        }
    }
    pids->nelts = kept;
    return ok;
}

int pprof_take_snapshots(request_rec *r, apr_table_t *args, pprof_snapshots *s)
{
    const char *secs = apr_table_get(args, "seconds"), *err;
    pp_wire_request req = PPWIRE__REQUEST__INIT;
    apr_int64_t sec;
    pid_t only;

    if ((err = pprof_query_pid(r, args, &only)) != NULL) {
        pprof_serve_error(r, HTTP_BAD_REQUEST, err);
        return DONE;
    }
    req.op = PP_WIRE_TAKE;
    s->delta = 0;
    s->t0 = s->t1 = apr_time_now();
    /* Go serves a delta only for a non-empty "seconds". */
    if (!secs || !*secs) {
        req.flags = s->flags;
        pprof_collect(r->pool, s->kind, &req, pprof_children(r->pool, only), TAKE_TIMEOUT,
                      s->now, NULL);
        return OK;
    }
    if ((err = pprof_delta_seconds(r, args, &sec)) != NULL) {
        pprof_serve_error(r, HTTP_BAD_REQUEST, err);
        return DONE;
    }
    pprof_collect(r->pool, s->kind, &req, pprof_children(r->pool, only), TAKE_TIMEOUT,
                  s->before, NULL);
    if (pprof_sleep_unless_gone(r, s->t0 + apr_time_from_sec(sec))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s: client went away", s->gone_tag);
        return -1;
    }
    s->t1 = apr_time_now();
    pprof_collect(r->pool, s->kind, &req, pprof_children(r->pool, only), TAKE_TIMEOUT,
                  s->now, NULL);
    s->delta = 1;
    return OK;
}

/* Add to pids the children alive now (those born during the window joined it). */
static void add_children(request_rec *r, apr_array_header_t *pids, pid_t only)
{
    apr_array_header_t *now = pprof_children(r->pool, only);
    int i, j;

    for (i = 0; i < now->nelts; i++) {
        pid_t pid = APR_ARRAY_IDX(now, i, pid_t);
        for (j = 0; j < pids->nelts && APR_ARRAY_IDX(pids, j, pid_t) != pid; j++) {
        }
        if (j == pids->nelts) {
            APR_ARRAY_PUSH(pids, pid_t) = pid;
        }
    }
}

int pprof_run_window(request_rec *r, pprof_window_run *w)
{
    pprof_window *win = pprof_shared_window(pprof_kind_index(w->kind));
    apr_uint32_t self = (apr_uint32_t)getpid();
    pp_wire_request req = PPWIRE__REQUEST__INIT;
    apr_array_header_t *pids;
    const char *why = NULL;
    apr_time_t end, child_deadline;
    int gone = 0;

    if (!win) {
        pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                          apr_pstrcat(r->pool, w->fail, ": mod_pprof is not initialized", NULL));
        return DONE;
    }
    if (!pprof_window_claim(win, self)) {
        pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                          apr_pstrcat(r->pool, w->fail, ": ", w->busy, NULL));
        return DONE;
    }
    w->t0 = apr_time_now();
    end = w->t0 + pprof_window_length(w->seconds);
    /* The duration as parsed from the query (test_160 compares it with Go's). */
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r, "PP0051: %s window of %.3f s", w->kind->name,
                  (double)(end - w->t0) / APR_USEC_PER_SEC);
    child_deadline = end + GRACE;
    req.gen = w->gen = pprof_window_open(win, w->hz, (apr_uint32_t)w->only, child_deadline);
    req.hz = w->hz;
    req.deadline_us = child_deadline;
    req.op = PP_WIRE_START;
    pids = pprof_children(r->pool, w->only);
    if (pprof_collect(r->pool, w->kind, &req, pids, START_TIMEOUT, w->answer, &why) == 0) {
        pprof_window_close(win);
        req.op = PP_WIRE_QUIT;
        pprof_collect(r->pool, w->kind, &req, pids, START_TIMEOUT, w->answer, NULL);
        pprof_window_release(win, self);
        pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                          apr_pstrcat(r->pool, w->fail, ": ", why ? why : "no child", NULL));
        return DONE;
    }
    gone = w->started ? w->started(w) : 0;
    while (!gone && apr_time_now() < end) {
        apr_time_t next = w->round ? apr_time_now() + w->round : end;
        apr_pool_t *round;
        if (pprof_sleep_unless_gone(r, next < end ? next : end)) {
            gone = 1;
            break;
        }
        if (!w->round) {
            continue;
        }
        /* What each round brings is merged and let go: a round's replies live until the
         * next. */
        apr_pool_create(&round, r->pool);
        add_children(r, pids, w->only);
        req.op = PP_WIRE_TAKE;
        pprof_collect(round, w->kind, &req, pids, ROUND_TIMEOUT, w->answer, NULL);
        gone = w->rounded ? w->rounded(w) : 0;
        apr_pool_destroy(round);
    }
    w->t1 = apr_time_now();
    /* Each child is stopped by its last take; only then is the window closed (a child
     * that sees it closed first stops by itself and drops what a collector would read). */
    add_children(r, pids, w->only);
    req.op = gone ? PP_WIRE_QUIT : PP_WIRE_STOP;
    pprof_collect(r->pool, w->kind, &req, pids, gone ? START_TIMEOUT : TAKE_TIMEOUT,
                  w->answer, NULL);
    pprof_window_close(win);
    pprof_window_release(win, self);
    w->gone = gone;
    w->nchildren = pids->nelts;
    return OK;
}
