#include "pprof_collect.h"
#include "pprof_client.h"
#include "pprof_handover.h"
#include "pprof_ipc.h"
#include "pprof_kinds.h"
#include "pprof_query.h"
#include "pprof_respond.h"
#include "pprof_scoreboard.h"
#include "pprof_shared.h"

#include "http_log.h"
#include "apr_hash.h"
#include "apr_strings.h"

#include <errno.h>
#include <malloc.h>
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

/* A kind whose merge keeps nothing of them: ch's reply and maps freed now (a trace's
 * round is megabytes per child). */
static void let_go(apr_pool_t *pool, const pprof_kind *k, pprof_child *ch)
{
    if (!k->merge_keeps_nothing || ch->status != PPROF_CHILD_OK) {
        return;
    }
    apr_pool_cleanup_run(pool, (void *)ch->maps, free_maps);
    apr_pool_cleanup_run(pool, (void *)ch->reply, free_reply);
    ch->maps = NULL;
    ch->reply = NULL;
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

/* The children that answered OK (a set of pid_t keys), if asked for. */
static void note_ok(apr_hash_t *answered, pid_t pid)
{
    if (answered) {
        pid_t *key = apr_palloc(apr_hash_pool_get(answered), sizeof(*key));
        *key = pid;
        apr_hash_set(answered, key, sizeof(*key), key);
    }
}

/* pprof_collect, and: a child that did not answer a TAKE or STOP may have ended meanwhile
 * and left its reply in ho, which is then its answer; the children that answered OK (by
 * reply or hand-over) go into answered. */
typedef void merge_fn(void *answer, const pprof_child *child);

static int collect(apr_pool_t *pool, const pprof_kind *k, const pp_wire_request *req,
                   apr_array_header_t *pids, apr_interval_time_t timeout, merge_fn *merge,
                   void *answer, const char **why, pprof_handover *ho, apr_hash_t *answered)
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
        /* The hand-over is written before the socket closes: a call that failed for a
         * child that ended finds it. */
        if (calls[i].status != PPROF_IPC_OK && ho &&
            (req->op == PP_WIRE_TAKE || req->op == PP_WIRE_STOP) &&
            pprof_handover_read(ho, ch.pid, &calls[i].body, &calls[i].len) == 0) {
            calls[i].status = PPROF_IPC_OK;
            ch.handed_over = 1;
        }
        read_answer(pool, &calls[i], &ch);
        merge(answer, &ch);
        if (ch.status == PPROF_CHILD_OK) {
            ok++;
            note_ok(answered, ch.pid);
            if (merge == k->merge) {
                let_go(pool, k, &ch);
            }
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

int pprof_collect(apr_pool_t *pool, const pprof_kind *k, const pp_wire_request *req,
                  apr_array_header_t *pids, apr_interval_time_t timeout, void *answer,
                  const char **why)
{
    return collect(pool, k, req, pids, timeout, k->merge, answer, why, NULL, NULL);
}

static void add_count(void *answer, const pprof_child *ch)
{
    if (ch->status == PPROF_CHILD_OK) {
        *(long *)answer += (long)pp_wire_get_counter(ch->reply, "records", 0);
    }
}

long pprof_collect_count(request_rec *r, const pprof_kind *k)
{
    const char *key = apr_pstrcat(r->pool, "mod_pprof.count.", k->name, NULL);
    pp_wire_request req = PPWIRE__REQUEST__INIT;
    apr_pool_t *scratch;
    long *count = NULL;

    apr_pool_userdata_get((void **)&count, key, r->pool);
    if (count) {
        return *count;
    }
    count = apr_pcalloc(r->pool, sizeof(*count));
    req.op = PP_WIRE_TAKE;
    req.flags = PPROF_TAKE_COUNT;
    /* The replies are a counter each: let them go at once. */
    apr_pool_create(&scratch, r->pool);
    collect(scratch, k, &req, pprof_children(scratch, 0), START_TIMEOUT, add_count, count,
            NULL, NULL, NULL);
    apr_pool_destroy(scratch);
    apr_pool_userdata_setn(count, key, NULL, r->pool);
    return *count;
}

/* Ended: gone, a zombie the parent has not reaped yet, or on its way out (its agent
 * stops answering, then removes its socket, before the process ends). */
static int child_ended(apr_pool_t *p, pid_t pid)
{
    return pprof_is_child(pid, getppid()) == 0 ||
           (access(pprof_ipc_path(p, pid, ".sock"), F_OK) != 0 && errno == ENOENT);
}

/* How long one request may wait, in all, for children that broke their call to end. */
#define MISSING_GRACE_MS 100

void pprof_collect_missing(request_rec *r, const pprof_child *ch, const char *what)
{
    static const char key[] = "pprof_collect_missing";
    int ended = child_ended(r->pool, ch->pid);
    void *data = NULL;
    apr_time_t *deadline;

    /* One on its way out closes its socket a moment before it removes it: a call broken
     * there is an ending, not a child that did not answer. The grace is one per collection,
     * from the first such child on, not one per child: children that end together (a
     * graceful restart) share it, and ten that fail fast while alive cost 100 ms, not 1 s. */
    apr_pool_userdata_get(&data, key, r->pool);
    deadline = data;
    if (!ended && (!deadline || apr_time_now() > *deadline + apr_time_from_sec(1))) {
        /* The first in this request, or in a later collection of it (a delta's second
         * take, seconds after the first): a grace of its own. */
        if (!deadline) {
            deadline = apr_palloc(r->pool, sizeof(*deadline));
            apr_pool_userdata_setn(deadline, key, NULL, r->pool);
        }
        *deadline = apr_time_now() + apr_time_from_msec(MISSING_GRACE_MS);
    }
    while (!ended && apr_time_now() < *deadline) {
        apr_sleep(apr_time_from_msec(10));
        ended = child_ended(r->pool, ch->pid);
    }
    if (ended) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "PP0202: child %ld ended before it gave "
                      "its %s", (long)ch->pid, what);
    } else {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r, "PP0201: child %ld did not give its "
                      "%s: %s", (long)ch->pid, what, ch->why ? ch->why : "no answer");
    }
}

/* Merge the replies left in ho by children that ended (op: how the kind sees them), each
 * once: those of children in skip (they answered the last take themselves, which ended
 * the window for them; what a snapshot kind's child left later is past the window) are
 * removed unread. */
static void adopt(apr_pool_t *pool, const pprof_kind *k, int op, pprof_handover *ho,
                  void *answer, apr_hash_t *skip)
{
    apr_array_header_t *left = pprof_handover_pids(ho, pool);
    int i;

    for (i = 0; i < left->nelts; i++) {
        pprof_ipc_call call;
        pprof_child ch;

        memset(&call, 0, sizeof(call));
        call.pid = APR_ARRAY_IDX(left, i, pid_t);
        if (pprof_handover_read(ho, call.pid, &call.body, &call.len) != 0) {
            continue;
        }
        if (skip && apr_hash_get(skip, &call.pid, sizeof(call.pid))) {
            free(call.body);
            continue;
        }
        call.status = PPROF_IPC_OK;
        memset(&ch, 0, sizeof(ch));
        ch.pid = call.pid;
        ch.op = op;
        ch.handed_over = 1;
        read_answer(pool, &call, &ch);
        if (ch.status == PPROF_CHILD_OK) {
            k->merge(answer, &ch);
            let_go(pool, k, &ch);
        } else {
            ap_log_perror(APLOG_MARK, APLOG_WARNING, 0, pool, "PP0063: the %s data that "
                          "child %ld left when it ended is unusable: %s", k->name,
                          (long)ch.pid, ch.why);
        }
    }
}

/* The window is over: seal ho, merge what is left in it (adopt) unless discard, remove. */
static void close_handover(apr_pool_t *pool, const pprof_kind *k, int op, pprof_handover *ho,
                           void *answer, apr_hash_t *skip, int discard)
{
    if (!ho) {
        return;
    }
    pprof_handover_seal(ho);
    if (!discard) {
        adopt(pool, k, op, ho, answer, skip);
    }
    pprof_handover_remove(ho);
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

int pprof_take_snapshots(request_rec *r, apr_table_t *args, pprof_snapshots *s)
{
    const char *secs = apr_table_get(args, "seconds"), *err;
    pp_wire_request req = PPWIRE__REQUEST__INIT;
    pprof_handover *ho = NULL;
    apr_hash_t *answered = NULL;
    apr_array_header_t *pids;
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
    pids = pprof_children(r->pool, only);
    pprof_collect(r->pool, s->kind, &req, pids, TAKE_TIMEOUT, s->before, NULL);
    /* Children that end from now on leave their last take: the delta keeps what they did
     * in the window. Opened after the first take: a child's take from before the window
     * must not count as in it. */
    if (s->kind->handover && !only) {
        ho = pprof_handover_open(r->pool, s->kind->name, 0, apr_time_now());
        answered = apr_hash_make(r->pool);
    }
    if (pprof_sleep_unless_gone(r, s->t0 + apr_time_from_sec(sec))) {
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r, "%s: client went away", s->gone_tag);
        close_handover(r->pool, s->kind, PP_WIRE_TAKE, ho, NULL, NULL, 1);
        return -1;
    }
    s->t1 = apr_time_now();
    /* The children of the first take too: one that reached MaxConnectionsPerChild while
     * it serves a long request may have lost its scoreboard slot to a new child (worker
     * and event take the slot of a child that quiesces), and still holds its data. */
    add_children(r, pids, only);
    collect(r->pool, s->kind, &req, pids, TAKE_TIMEOUT, s->kind->merge, s->now, NULL, ho,
            answered);
    close_handover(r->pool, s->kind, PP_WIRE_TAKE, ho, s->now, answered, 0);
    s->delta = 1;
    return OK;
}

/* The bytes that pair a record with its counterpart in another take. */
static void *rec_key(apr_pool_t *p, const pprof_rec_id *id, apr_size_t *len)
{
    apr_size_t n = 2 * sizeof(apr_uint64_t) + (apr_size_t)id->npcs * sizeof(apr_uint64_t);
    apr_uint64_t *k = apr_palloc(p, n);

    k[0] = (apr_uint64_t)id->pid;
    k[1] = id->key;
    if (id->npcs) {
        memcpy(k + 2, id->pcs, (apr_size_t)id->npcs * sizeof(apr_uint64_t));
    }
    *len = n;
    return k;
}

void pprof_delta_subtract(apr_pool_t *p, apr_array_header_t *end,
                          const apr_array_header_t *start, apr_size_t values_at,
                          const int *which, int nwhich)
{
    apr_hash_t *ix = apr_hash_make(p);
    apr_size_t len;
    void *key;
    int i, k;

    for (i = 0; i < start->nelts; i++) {
        const char *rec = start->elts + (apr_size_t)i * (apr_size_t)start->elt_size;
        key = rec_key(p, (const pprof_rec_id *)rec, &len);
        apr_hash_set(ix, key, (apr_ssize_t)len, rec);
    }
    for (i = 0; i < end->nelts; i++) {
        char *rec = end->elts + (apr_size_t)i * (apr_size_t)end->elt_size;
        const char *old;
        apr_uint64_t *v;
        const apr_uint64_t *ov;

        key = rec_key(p, (const pprof_rec_id *)rec, &len);
        if (!(old = apr_hash_get(ix, key, (apr_ssize_t)len))) {
            continue;
        }
        v = (apr_uint64_t *)(rec + values_at);
        ov = (const apr_uint64_t *)(old + values_at);
        for (k = 0; k < nwhich; k++) {
            int j = which[k];
            v[j] -= ov[j] < v[j] ? ov[j] : v[j];
        }
    }
}

/* Run last among the collecting request's cleanups, once what the answer held (replies,
 * merge and conversion buffers, the profile) is freed: glibc keeps freed memory in the
 * arena of the thread that freed it, and a window's megabytes would stay with this child
 * (4 MiB after a CPU profile of two event children). Only after a window: malloc_trim
 * takes every arena's lock in turn, the worker threads' too, and a snapshot (scraped
 * without pause) frees little. */
static apr_status_t give_back_memory(void *unused)
{
    malloc_trim(0);
    return APR_SUCCESS;
}

int pprof_run_window(request_rec *r, pprof_window_run *w)
{
    pprof_window *win = pprof_shared_window(pprof_kind_index(w->kind));
    apr_uint32_t self = (apr_uint32_t)getpid();
    pp_wire_request req = PPWIRE__REQUEST__INIT;
    apr_array_header_t *pids;
    pprof_handover *ho;
    apr_hash_t *answered = apr_hash_make(r->pool);
    const char *why = NULL;
    apr_time_t end, child_deadline;
    apr_array_header_t *ask, *quiet;
    int gone = 0, nround;

    if (!win) {
        pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                          apr_pstrcat(r->pool, w->fail, ": mod_pprof is not initialized", NULL));
        return DONE;
    }
    /* Registered before anything the window gathers: cleanups run last-in first-out. */
    apr_pool_cleanup_register(r->pool, NULL, give_back_memory, apr_pool_cleanup_null);
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
    /* Before any child is asked: one that joins and ends before it is asked hands over
     * too. Its children know the window by gen and deadline. */
    ho = pprof_handover_open(r->pool, w->kind->name, w->gen, child_deadline);
    pids = pprof_children(r->pool, w->only);
    if (pprof_collect(r->pool, w->kind, &req, pids, START_TIMEOUT, w->answer, &why) == 0) {
        pprof_window_close(win);
        req.op = PP_WIRE_QUIT;
        pprof_collect(r->pool, w->kind, &req, pids, START_TIMEOUT, w->answer, NULL);
        close_handover(r->pool, w->kind, PP_WIRE_STOP, ho, NULL, NULL, 1);
        pprof_window_release(win, self);
        pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                          apr_pstrcat(r->pool, w->fail, ": ", why ? why : "no child", NULL));
        return DONE;
    }
    /* The window starts when every child asked samples: what ran before its START
     * reached it (a busy child's agent waits for a core) is not in it. */
    w->t0 = apr_time_now();
    gone = w->started ? w->started(w) : 0;
    for (nround = 1; !gone && apr_time_now() < end; nround++) {
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
        req.op = PP_WIRE_TAKE;
        ask = pids;
        quiet = NULL;
        if (w->full_every <= 0 || nround % w->full_every == 0) {
            add_children(r, pids, w->only);
        } else {
            /* Those that said they are quiet wait for a full round or the STOP; not a
             * system call per child each round, only for the new ones. */
            int i;
            pprof_children_add_new(pids, w->only);
            ask = apr_array_make(round, pids->nelts, sizeof(pid_t));
            quiet = apr_array_make(round, pids->nelts, sizeof(pid_t));
            for (i = 0; i < pids->nelts; i++) {
                pid_t pid = APR_ARRAY_IDX(pids, i, pid_t);
                APR_ARRAY_PUSH(pprof_quiet_is(w->gen, pid) ? quiet : ask, pid_t) = pid;
            }
            w->skipped += (apr_uint64_t)quiet->nelts;
        }
        w->asked += (apr_uint64_t)ask->nelts;
        collect(round, w->kind, &req, ask, ROUND_TIMEOUT, w->kind->merge, w->answer, NULL,
                ho, NULL);
        if (quiet) {
            /* collect kept in ask those not gone: they and the quiet ones are the
             * children, as after a round that asked all of them */
            pids->nelts = 0;
            apr_array_cat(pids, ask);
            apr_array_cat(pids, quiet);
        }
        /* And children born and ended since the last round, never asked. */
        if (ho) {
            adopt(round, w->kind, PP_WIRE_TAKE, ho, w->answer, NULL);
        }
        gone = w->rounded ? w->rounded(w) : 0;
        apr_pool_destroy(round);
    }
    w->t1 = apr_time_now();
    /* Each child is stopped by its last take; only then is the window closed (a child
     * that sees it closed first stops by itself and drops what a collector would read).
     * A child that ended before its last take left it in the hand-over: read as its
     * answer, or below with the rest, once the window is closed and no child can join
     * it any more; one that answered the STOP has nothing left there. */
    add_children(r, pids, w->only);
    req.op = gone ? PP_WIRE_QUIT : PP_WIRE_STOP;
    collect(r->pool, w->kind, &req, pids, gone ? START_TIMEOUT : TAKE_TIMEOUT, w->kind->merge,
            w->answer, NULL, gone ? NULL : ho, answered);
    pprof_window_close(win);
    close_handover(r->pool, w->kind, PP_WIRE_STOP, ho, w->answer, answered, gone);
    pprof_window_release(win, self);
    w->gone = gone;
    w->nchildren = pids->nelts;
    return OK;
}
