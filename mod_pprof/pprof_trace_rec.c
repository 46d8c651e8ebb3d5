/* The trace's recorder: request hooks in every child through which each worker thread
 * writes what it does into a ring of its own (pp_tbuf), and the reading of the rings for
 * the trace kind's agent half (pprof_trace.c). */
#include "pprof_conf.h"
#include "pprof_request.h"
#include "pprof_scoreboard.h"
#include "pprof_shared.h"
#include "pprof_trace_rec.h"
#include "pprof_waits.h"

#include "ap_mpm.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"

#include "pp_tbuf.h"

#include <stdlib.h>

APLOG_USE_MODULE(pprof);

/* Per worker thread: mapped on the first trace, given back after each. The agent empties
 * it every 100 ms: room for about 100 requests of one thread in that time. */
#define RING_BYTES (128 * 1024)

const char *const pprof_trace_names[PPROF_NAME_MAX] = {
    NULL, "read_request", "access_auth", "handler", "output", "log",
    "method", "uri", "vhost", "status", "bytes"
};

static apr_uint32_t trace_gen;          /* 0: off. Read by every hook. */
static pp_tbuf **rings;                 /* by scoreboard thread slot */
/* By slot: the last trace whose records its thread began to write. The agent reads the
 * rings of the trace's threads only: a child has a ring for every slot of ThreadLimit (64
 * by default), and reading the unused ones' heads and counters twice a round, each on a
 * page of its own, cost as much as reading the used ones' records (perf). */
static apr_uint32_t *ring_gen;
static apr_uint64_t *ring_dropped;      /* the agent's: drops counted so far, by slot */
static int nrings;

/* Per slot, set by the agent when it says its child holds nothing (pprof_trace_rec_arm):
 * the collector then leaves the child out of its rounds and the agent ticks slowly, so
 * the slot's worker, at its next hook, clears it and the child's quiet word: the child is
 * asked at the next round. A line of its own: written by the agent at most once a tick,
 * read by the slot's one worker once a hook. */
typedef struct {
    apr_uint32_t on;
    char pad[60];
} armed_t;
static armed_t *armed;
static int async_mpm;
static ap_filter_rec_t *out_filter;

typedef struct {
    apr_uint32_t gen;
    pp_tbuf *ring;
    apr_uint64_t task;          /* the request this thread serves, 0 when none */
    apr_uint32_t count;         /* requests begun by this thread */
    int slot;
    int in_output;
    apr_uint64_t out_task;      /* the task whose output region is open, 0 when none */
    struct rstate *rs;          /* the request of `task` (valid while task is set) */
    apr_uint64_t ts;            /* the next record's time (stamp, then 1 ns per record) */
    armed_t *armed;             /* the slot's */
} tstate;

/* Initial-exec: every hook reads it; the default model in a shared object calls
 * __tls_get_addr each time (seen in perf of an idle server). */
static __thread tstate tls __attribute__((tls_model("initial-exec")));

/* Per request: which task it is (any thread may end it: event's write completion). */
typedef struct rstate {
    apr_uint32_t gen;
    apr_uint64_t task;          /* 0 until the request line has arrived */
    apr_uint64_t t_begin;       /* when reading it began */
    int ka_wait;                /* began waiting for the request on a kept-alive conn */
    int in_access;              /* its access_auth region is open */
    int in_handler;             /* its handler region is open */
} rstate;

/* A thread's first record of trace gen: its ring. */
static __attribute__((noinline)) tstate *tracing_begin(apr_uint32_t gen)
{
    int slot = pprof_slot_self();

    if (slot < 0 || slot >= nrings || !rings[slot]) {
        return NULL;
    }
    tls.gen = gen;
    tls.ring = rings[slot];
    tls.armed = &armed[slot];
    tls.slot = slot;
    __atomic_store_n(&ring_gen[slot], gen, __ATOMIC_RELEASE);
    tls.task = 0;
    tls.in_output = 0;
    tls.out_task = 0;
    /* A task start held back in an earlier trace is dropped, never published: the ring
     * may have been trimmed under it. */
    pp_tbuf_discard_held(tls.ring);
    return &tls;
}

/* The one test each hook makes while no trace runs, inlined in every hook and in the
 * output filter's three passes a request. */
static inline tstate *tracing(void)
{
    apr_uint32_t gen = __atomic_load_n(&trace_gen, __ATOMIC_ACQUIRE);

    if (__builtin_expect(gen == 0, 1)) {
        return NULL;
    }
    return tls.gen == gen ? &tls : tracing_begin(gen);
}

/* The agent said this child holds nothing: it does again (this hook's records). */
static __attribute__((noinline)) void wake(tstate *s)
{
    /* The exchange reads the last arm, and what the agent stored before it: the word. */
    if (__atomic_exchange_n(&s->armed->on, 0, __ATOMIC_ACQ_REL)) {
        pprof_quiet_wake(s->gen);
    }
}

/* One clock read per hook, not one per record: the records a hook writes follow each
 * other by 1 ns, which keeps their order and, per thread, never goes back in time. */
static void stamp(tstate *s)
{
    apr_uint64_t now = pp_tbuf_now();

    if (__builtin_expect(__atomic_load_n(&s->armed->on, __ATOMIC_ACQUIRE) != 0, 0)) {
        wake(s);
    }
    if (now > s->ts) {
        s->ts = now;
    }
}

static void put(tstate *s, int kind, apr_uint64_t a, const char *text)
{
    pp_tbuf_put(s->ring, s->gen, kind, s->ts++, a, 0, text, text ? strlen(text) : 0);
}

static void region(tstate *s, int kind, apr_uint64_t task, int id)
{
    pp_tbuf_put(s->ring, s->gen, kind, s->ts++, task, (apr_uint64_t)id, NULL, 0);
}

/* A log of the task: the key by number, the value as text. */
static void put_log(tstate *s, apr_uint64_t task, int key, const char *value)
{
    pp_tbuf_put(s->ring, s->gen, PP_TB_LOG, s->ts++, task, (apr_uint64_t)key, value,
                strlen(value));
}

/* v in decimal into buf (24 bytes), as printf's %lld would: apr_snprintf's formatter
 * was 0.6 us of a traced request in perf, for two small numbers. */
static const char *decimal(char *buf, long long v)
{
    char *p = buf + 23;
    unsigned long long u = v < 0 ? 0ULL - (unsigned long long)v : (unsigned long long)v;

    *p = '\0';
    do {
        *--p = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0) {
        *--p = '-';
    }
    return p;
}

static rstate *req_state(request_rec *r, tstate *s)
{
    rstate *rs = r->main || r->prev ? NULL
                                    : ap_get_module_config(r->request_config, &pprof_module);
    return rs && rs->gen == s->gen && rs->task ? rs : NULL;
}

/* The traced main request r and this thread's state, or NULL. */
static rstate *traced(request_rec *r, tstate **sp)
{
    tstate *s = tracing();

    *sp = s;
    return s ? req_state(r, s) : NULL;
}

/* A lock or network wait inside a request: a block, with where it waits written as
 * "function 0xPC ..." (the collector names the callers). */
static int wait_seen(int kind, const uint64_t *pcs, int npcs)
{
    tstate *s = tracing();

    if (!s || !s->task || (kind & PP_WAIT_ASK)) {
        /* only lock and network waits inside a request, and only then unwound */
        return s && s->task && (kind & ~PP_WAIT_ASK) != PP_WAIT_SYNC;
    }
    stamp(s);
    if (kind == PP_WAIT_DONE) {
        put(s, PP_TB_UNBLOCK, 0, NULL);
    } else {
        char text[PP_TB_STR_MAX];
        const char *fn = kind == PP_WAIT_LOCK ? "pthread_mutex_lock" : "poll";
        size_t n = strlen(fn);
        int i;
        memcpy(text, fn, n);
        for (i = 0; i < npcs && n + 20 < sizeof(text); i++) {
            n += (size_t)apr_snprintf(text + n, sizeof(text) - n, " 0x%" APR_UINT64_T_HEX_FMT,
                                      pcs[i]);
        }
        /* b says the text has PCs: the take sends the child's maps only then. */
        pp_tbuf_put(s->ring, s->gen, PP_TB_BLOCK, s->ts++,
                    kind == PP_WAIT_LOCK ? PP_TB_BLOCK_SYNC : PP_TB_BLOCK_NET, i > 0, text, n);
    }
    return 1;
}

/* The output filter goes on a connection only while a trace runs: on every connection it
 * cost every request three passes (one per brigade) while nothing was traced. A connection
 * begun during a trace gets it here, before any request; one begun before the trace, at
 * its first traced request's post_read_request, once httpd has built that request's
 * chain: given r, httpd links the request's last protocol filter to ours. Never from
 * create_request: a connection filter inserted after ap_create_request had taken the
 * chain's head, before http_create_request added HTTP_HEADER and CONTENT_LENGTH, left them
 * out of the request's chain, and that response went out without its status line and
 * headers (seen about once in 50,000 requests while traces ran back to back). Once added,
 * the filter stays for the connection's life (while no trace runs it passes the brigade
 * on after one test); the connection's config slot marks it. */
static void add_output_filter(request_rec *r, conn_rec *c)
{
    if (!ap_get_module_config(c->conn_config, &pprof_module)) {
        ap_add_output_filter_handle(out_filter, NULL, r, c);
        ap_set_module_config(c->conn_config, &pprof_module, out_filter);
    }
}

void pprof_trace_rec_connection(conn_rec *c)
{
    tstate *s = tracing();

    if (s) {
        add_output_filter(NULL, c);
        stamp(s);
        put(s, PP_TB_WAKE, 0, NULL);
    }
}

static apr_status_t request_done(void *data)
{
    rstate *rs = data;
    tstate *s = tracing();

    if (!s || rs->gen != s->gen) {
        return APR_SUCCESS;
    }
    stamp(s);
    if (!rs->task) {
        /* No request came (the client closed, or a keep-alive wait timed out). */
        if (!s->task && !s->in_output) {
            put(s, PP_TB_IDLE, 0, NULL);
        }
        return APR_SUCCESS;
    }
    if (s->task == rs->task) {
        /* Never reached a handler: the held start goes out with no type. */
        pp_tbuf_task_type(s->ring, "(none)");
    }
    if (s->out_task == rs->task) {
        /* Freed from within the output filter (the end of the request was written). */
        region(s, PP_TB_REGION_END, rs->task, PPROF_NAME_OUTPUT);
        s->out_task = 0;
    }
    put(s, PP_TB_TASK_END, rs->task, NULL);
    if (s->task == rs->task) {
        s->task = 0;
    }
    /* Idle again, unless the thread serves another request (or is in the output filter,
     * which says so itself). Event's write completion ends requests on other threads. */
    if (!s->task && !s->in_output) {
        put(s, PP_TB_IDLE, 0, NULL);
    }
    return APR_SUCCESS;
}

void pprof_trace_rec_create_request(request_rec *r)
{
    tstate *s = tracing();
    rstate *rs;

    if (!s || r->main || r->prev || s->task) {
        return;     /* off, a subrequest or redirect, or mod_proxy's backend request */
    }
    /* Between requests: an emptied ring goes on from its start (its lines still
     * cached), not into lines last written a whole ring ago. */
    pp_tbuf_rewind(s->ring);
    rs = apr_pcalloc(r->pool, sizeof(*rs));
    rs->gen = s->gen;
    ap_set_module_config(r->request_config, &pprof_module, rs);
    apr_pool_cleanup_register(r->pool, rs, request_done, apr_pool_cleanup_null);
    stamp(s);
    if (!async_mpm && r->connection->keepalives > 0) {
        /* Prefork and worker wait for a kept-alive connection's next request in here:
         * that is waiting on the network; the request begins once it has arrived. */
        pp_tbuf_put(s->ring, s->gen, PP_TB_BLOCK, s->ts++, PP_TB_BLOCK_NET, 0,
                    "httpd.keepalive_wait", 20);
        rs->ka_wait = 1;
        return;
    }
    put(s, PP_TB_WAKE, 0, NULL);
    /* The task is written once a request line has arrived (a connection the client
     * closed makes no task), with the time reading began. */
    rs->t_begin = s->ts++;
}

static int trace_post_read_request(request_rec *r)
{
    tstate *s = tracing();
    rstate *rs = s && !r->main && !r->prev
                 ? ap_get_module_config(r->request_config, &pprof_module) : NULL;

    if (!rs || rs->gen != s->gen || rs->task || s->task) {
        return DECLINED;
    }
    /* A connection begun before the trace: its output is seen from this request on. */
    add_output_filter(r, r->connection);
    /* Unique in this child (the trace wants them below 2^40): slot, then a count that
     * may wrap only after 16M requests of one thread. */
    rs->task = ((apr_uint64_t)(s->slot + 1) << 24) | (++s->count & 0xffffff);
    s->task = rs->task;
    s->rs = rs;
    stamp(s);
    if (rs->ka_wait) {
        rs->ka_wait = 0;
        put(s, PP_TB_UNBLOCK, 0, NULL);
        pp_tbuf_put_task(s->ring, s->gen, s->ts++, rs->task);
    } else {
        pp_tbuf_put_task(s->ring, s->gen, rs->t_begin, rs->task);
        pp_tbuf_put(s->ring, s->gen, PP_TB_REGION_BEGIN, rs->t_begin + 1, rs->task,
                    PPROF_NAME_READ_REQUEST, NULL, 0);
        region(s, PP_TB_REGION_END, rs->task, PPROF_NAME_READ_REQUEST);
    }
    put_log(s, rs->task, PPROF_NAME_METHOD, r->method ? r->method : "");
    put_log(s, rs->task, PPROF_NAME_URI, r->unparsed_uri ? r->unparsed_uri : "");
    put_log(s, rs->task, PPROF_NAME_VHOST,
            r->server->server_hostname ? r->server->server_hostname : "");
    region(s, PP_TB_REGION_BEGIN, rs->task, PPROF_NAME_ACCESS_AUTH);
    rs->in_access = 1;
    return DECLINED;
}

void pprof_trace_rec_handler(request_rec *r)
{
    tstate *s;
    rstate *rs;

    /* Learn the worker's scoreboard slot and kernel tid once, traced or not (the trace's
     * first state names the threads by them). */
    pprof_slot_self();
    rs = traced(r, &s);

    if (rs) {
        stamp(s);
        if (rs->in_access) {
            /* access_auth ends where the handler begins, at one clock read: a fixups hook
             * of its own cost a hook call and a read a request, for the insert_filter
             * hooks between the two. */
            region(s, PP_TB_REGION_END, rs->task, PPROF_NAME_ACCESS_AUTH);
            rs->in_access = 0;
        }
        if (s->task == rs->task) {
            pp_tbuf_task_type(s->ring, r->handler ? r->handler : "(none)");
        }
        region(s, PP_TB_REGION_BEGIN, rs->task, PPROF_NAME_HANDLER);
        rs->in_handler = 1;
    }
}

static int trace_log_first(request_rec *r)
{
    tstate *s;
    rstate *rs = traced(r, &s);

    if (rs) {
        stamp(s);
        if (rs->in_handler) {
            /* A connection without our output filter: the handler ends here. */
            region(s, PP_TB_REGION_END, rs->task, PPROF_NAME_HANDLER);
            rs->in_handler = 0;
        }
        region(s, PP_TB_REGION_BEGIN, rs->task, PPROF_NAME_LOG);
    }
    return DECLINED;
}

void pprof_trace_rec_log_last(request_rec *r)
{
    tstate *s;
    rstate *rs = traced(r, &s);

    if (rs) {
        char num[24];
        stamp(s);
        put_log(s, rs->task, PPROF_NAME_STATUS, decimal(num, r->status));
        put_log(s, rs->task, PPROF_NAME_BYTES, decimal(num, r->bytes_sent));
        region(s, PP_TB_REGION_END, rs->task, PPROF_NAME_LOG);
    }
}

/* Just above the core's network filter: time spent handing the response to the network.
 * The pass that carries a request's end (EOR) also ends its handler region, logs it and
 * frees it; the thread is idle after it. */
static apr_status_t trace_output(ap_filter_t *f, apr_bucket_brigade *bb)
{
    tstate *s = tracing();
    apr_uint64_t task = s ? s->task : 0;
    rstate *rs = task ? s->rs : NULL;
    apr_bucket *e;
    apr_status_t rv;
    int eor = 0, outer;

    if (!task) {
        return ap_pass_brigade(f->next, bb);
    }
    for (e = APR_BRIGADE_FIRST(bb); e != APR_BRIGADE_SENTINEL(bb); e = APR_BUCKET_NEXT(e)) {
        if (AP_BUCKET_IS_EOR(e)) {
            eor = 1;
        }
    }
    stamp(s);
    if (eor && rs && rs->task == task && rs->in_handler) {
        region(s, PP_TB_REGION_END, task, PPROF_NAME_HANDLER);
        rs->in_handler = 0;
    }
    outer = s->in_output++ == 0;
    if (outer) {
        region(s, PP_TB_REGION_BEGIN, task, PPROF_NAME_OUTPUT);
        s->out_task = task;
    }
    rv = ap_pass_brigade(f->next, bb);
    s->in_output--;
    stamp(s);
    if (outer && s->out_task == task) {
        region(s, PP_TB_REGION_END, task, PPROF_NAME_OUTPUT);
        s->out_task = 0;
    }
    if (eor && !s->in_output) {
        /* The request is handed over: it ended in there, or event's write completion
         * ends it on another thread. Either way this thread is done with it. */
        if (s->task == task) {
            s->task = 0;
        }
        if (!s->task) {
            put(s, PP_TB_IDLE, 0, NULL);
        }
    }
    return rv;
}

void pprof_trace_rec_register_hooks(apr_pool_t *p)
{
    /* The connection, create_request, handler and last log_transaction hooks are
     * pprof_request's, which call ours: one hook per phase for every kind. */
    ap_hook_post_read_request(trace_post_read_request, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_log_transaction(trace_log_first, NULL, NULL, APR_HOOK_REALLY_FIRST);
    out_filter = ap_register_output_filter("PPROF_TRACE_OUTPUT", trace_output, NULL,
                                           (ap_filter_type)(AP_FTYPE_NETWORK - 1));
}

void pprof_trace_rec_post_config(server_rec *s)
{
    pprof_waits_install(s);
}

const char *pprof_trace_rec_start(apr_uint32_t gen, int nslots)
{
    int i, async = 0;

    if (!rings) {
        rings = calloc((size_t)nslots, sizeof(*rings));
        ring_gen = calloc((size_t)nslots, sizeof(*ring_gen));
        ring_dropped = calloc((size_t)nslots, sizeof(*ring_dropped));
        if (!rings || !ring_gen || !ring_dropped ||
            posix_memalign((void **)&armed, sizeof(armed_t),
                           (size_t)nslots * sizeof(armed_t)) != 0) {
            free(rings);
            free(ring_gen);
            free(ring_dropped);
            rings = NULL;
            ring_gen = NULL;
            ring_dropped = NULL;
            return "out of memory";
        }
        memset(armed, 0, (size_t)nslots * sizeof(armed_t));
        nrings = nslots;
        ap_mpm_query(AP_MPMQ_IS_ASYNC, &async);
        async_mpm = async;
    }
    for (i = 0; i < nrings; i++) {
        if (!rings[i] && !(rings[i] = pp_tbuf_new(RING_BYTES))) {
            return "out of memory";
        }
        /* What a ring dropped before (a hook still writing as the last trace stopped) is
         * not this trace's loss. */
        ring_dropped[i] = pp_tbuf_dropped(rings[i]);
    }
    pprof_waits_observe(wait_seen);
    __atomic_store_n(&trace_gen, gen, __ATOMIC_RELEASE);
    return NULL;
}

void pprof_trace_rec_stop(apr_uint32_t gen)
{
    if (__atomic_compare_exchange_n(&trace_gen, &gen, 0, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        pprof_waits_unobserve(wait_seen);
    }
}

void pprof_trace_rec_trim(void)
{
    int i;

    for (i = 0; i < nrings; i++) {
        if (rings[i]) {
            pp_tbuf_trim(rings[i]);
        }
    }
}

/* Whether records (whole, as pp_tbuf_read gives them) hold a wait with its callers' PCs.
 * Only the record headers are read, just copied and still in cache. */
static int has_pcs(const unsigned char *p, apr_size_t len)
{
    apr_size_t off = 0;

    while (off + sizeof(pp_tb_record) <= len) {
        pp_tb_record r;
        memcpy(&r, p + off, sizeof(r));
        if (r.kind == PP_TB_BLOCK && r.b) {
            return 1;
        }
        if (r.size < sizeof(r)) {
            return 1;           /* cannot happen; the maps then, to be safe */
        }
        off += r.size;
    }
    return 0;
}

apr_uint64_t pprof_trace_rec_peek(int slot, apr_uint32_t gen, pp_tbuf_piece piece[3],
                                  void *scratch, int *pcs)
{
    apr_uint64_t pos;
    apr_size_t len;

    if (slot < 0 || slot >= nrings || !rings[slot] ||
        __atomic_load_n(&ring_gen[slot], __ATOMIC_ACQUIRE) != gen) {
        memset(piece, 0, 3 * sizeof(*piece));
        return 0;
    }
    pos = pp_tbuf_peek(rings[slot], gen, piece, scratch);
    /* The pieces are the positions [pos - len, pos): they hold PCs if the ring's last
     * record with PCs ends in there, or may if it ends after (the maps then, to be
     * safe). A walk of the headers (has_pcs) was a sixth of the agent's cost in perf. */
    len = piece[0].len + piece[1].len + piece[2].len;
    if (len && pp_tbuf_pcs_end(rings[slot]) > pos - len) {
        *pcs = 1;
    }
    return pos;
}

void pprof_trace_rec_consume(int slot, apr_uint64_t pos)
{
    if (slot >= 0 && slot < nrings && rings[slot]) {
        pp_tbuf_consume(rings[slot], pos);
    }
}

apr_uint64_t pprof_trace_rec_drain(apr_uint32_t gen, pprof_trace_held *held,
                                   apr_size_t *total, apr_size_t max, int half_full,
                                   int *pcs)
{
    apr_uint64_t lost = 0;
    int i, more;

    for (i = 0; i < nrings; i++) {
        pprof_trace_held *h = &held[i];
        apr_uint64_t dropped;
        if (!rings[i] || __atomic_load_n(&ring_gen[i], __ATOMIC_ACQUIRE) != gen) {
            continue;           /* no record of this trace: nothing to take or count */
        }
        /* Per ring, not a sum over the rings read: the rings read change with the
         * trace, the drops of each only grow. */
        dropped = pp_tbuf_dropped(rings[i]);
        lost += dropped - ring_dropped[i];
        ring_dropped[i] = dropped;
        if (half_full && pp_tbuf_pending(rings[i]) < RING_BYTES / 2) {
            continue;           /* the take sends it from the ring itself */
        }
        for (more = 1; more && pp_tbuf_pending(rings[i]) > 0;) {
            apr_size_t want = pp_tbuf_pending(rings[i]), n;
            if (h->cap - h->len < want) {
                apr_size_t ncap = h->cap ? h->cap : 65536;
                unsigned char *nb;
                while (ncap - h->len < want) {
                    ncap *= 2;
                }
                /* Beyond max the rings keep what they hold; when full they count. */
                if (*total - h->cap + ncap > max || !(nb = realloc(h->data, ncap))) {
                    break;
                }
                *total = *total - h->cap + ncap;
                h->data = nb;
                h->cap = ncap;
            }
            n = pp_tbuf_read(rings[i], gen, h->data + h->len, h->cap - h->len, &more);
            if (!*pcs) {
                *pcs = has_pcs(h->data + h->len, n);
            }
            h->len += n;
        }
    }
    return lost;
}

int pprof_trace_rec_arm(apr_uint32_t gen)
{
    int i;

    for (i = 0; i < nrings; i++) {
        __atomic_store_n(&armed[i].on, 1, __ATOMIC_RELEASE);
    }
    /* Against a worker that published after the caller looked: its hook may have read
     * the slot before it was set. */
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    return pprof_trace_rec_pending(gen);
}

int pprof_trace_rec_pending(apr_uint32_t gen)
{
    int i;

    /* The rings the agent reads (pprof_trace_rec_peek): what another trace left in a
     * ring is never sent, and must not keep the child from being quiet. */
    for (i = 0; i < nrings; i++) {
        if (rings[i] && __atomic_load_n(&ring_gen[i], __ATOMIC_ACQUIRE) == gen &&
            pp_tbuf_pending(rings[i]) > 0) {
            return 1;
        }
    }
    return 0;
}
