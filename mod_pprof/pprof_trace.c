#include "mod_pprof.h"
#include "pprof_agent.h"
#include "pprof_collect.h"
#include "pprof_handler.h"
#include "pprof_ipc.h"
#include "pprof_shared.h"
#include "pprof_trace.h"

#include "ap_mpm.h"
#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_file_info.h"

#include "pp_wait.h"
#include "pp_maps.h"
#include "pp_symbolize.h"
#include "pp_tbuf.h"
#include "pp_trace.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

/* Per worker thread: mapped on the first trace, given back after each. The agent empties
 * it every 100 ms: room for about 100 requests of one thread in that time. */
#define RING_BYTES (128 * 1024)
/* What an agent holds for a collector that falls behind: beyond it the rings fill and
 * their records are counted as lost. */
#define AGENT_BUF_MAX (16 * 1024 * 1024)
#define POLL_MS 250                     /* the collector's round: how fast the file grows */
#define START_TIMEOUT apr_time_from_sec(5)
#define CALL_TIMEOUT apr_time_from_sec(10)
/* Children stop by themselves this long after the trace's planned end. */
#define GRACE apr_time_from_sec(10)
#define MAX_FRAMES 64

/* === The child: hooks that write the records ========================================== */

static apr_uint32_t trace_gen;          /* 0: off. Read by every hook. */
static pp_tbuf **rings;                 /* by scoreboard thread slot */
static int nrings;
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
} tstate;

static __thread tstate tls;

/* Per request: which task it is (any thread may end it: event's write completion). */
typedef struct rstate {
    apr_uint32_t gen;
    apr_uint64_t task;          /* 0 until the request line has arrived */
    apr_uint64_t t_begin;       /* when reading it began */
    int ka_wait;                /* began waiting for the request on a kept-alive conn */
    int in_handler;             /* its handler region is open */
} rstate;

/* The one test each hook makes while no trace runs. */
static tstate *tracing(void)
{
    apr_uint32_t gen = __atomic_load_n(&trace_gen, __ATOMIC_ACQUIRE);

    if (__builtin_expect(gen == 0, 1)) {
        return NULL;
    }
    if (tls.gen != gen) {
        int slot = pprof_agent_slot();
        if (slot < 0 || slot >= nrings || !rings[slot]) {
            return NULL;
        }
        tls.gen = gen;
        tls.ring = rings[slot];
        tls.slot = slot;
        tls.task = 0;
        tls.in_output = 0;
        tls.out_task = 0;
        /* A task start held back in an earlier trace is dropped, never published: the
         * ring may have been trimmed under it. */
        pp_tbuf_discard_held(tls.ring);
    }
    return &tls;
}

static void put(tstate *s, int kind, apr_uint64_t a, const char *text)
{
    pp_tbuf_put(s->ring, s->gen, kind, pp_tbuf_now(), a, 0, text, text ? strlen(text) : 0);
}

static void put_log(tstate *s, apr_uint64_t task, const char *key, const char *value)
{
    char buf[PP_TB_STR_MAX];
    size_t k = strlen(key), v = strlen(value);

    if (k + 1 + v + 1 > sizeof(buf)) {
        v = sizeof(buf) - k - 2;
    }
    memcpy(buf, key, k + 1);
    memcpy(buf + k + 1, value, v);
    buf[k + 1 + v] = '\0';
    pp_tbuf_put(s->ring, s->gen, PP_TB_LOG, pp_tbuf_now(), task, 0, buf, k + 1 + v);
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
        return s && s->task;    /* only waits inside a request, and only then unwound */
    }
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
        pp_tbuf_put(s->ring, s->gen, PP_TB_BLOCK, pp_tbuf_now(),
                    kind == PP_WAIT_LOCK ? PP_TB_BLOCK_SYNC : PP_TB_BLOCK_NET, 0, text, n);
    }
    return 1;
}

/* Every connection gets the output filter when it begins, traced or not (while no trace
 * runs it passes the brigade on after one test). It used to be added only while tracing,
 * and so, for a connection accepted before the trace began, from create_request: a
 * connection filter inserted after ap_create_request had taken the chain's head left
 * http_create_request's HTTP_HEADER and CONTENT_LENGTH filters out of the request's
 * chain, and that response went out without its status line and headers (seen about once
 * in 50,000 requests while traces ran back to back). */
static int trace_pre_connection(conn_rec *c, void *csd)
{
    tstate *s = tracing();

    ap_add_output_filter_handle(out_filter, NULL, NULL, c);
    if (s) {
        put(s, PP_TB_WAKE, 0, NULL);
    }
    return OK;
}

static apr_status_t request_done(void *data)
{
    rstate *rs = data;
    tstate *s = tracing();

    if (!s || rs->gen != s->gen) {
        return APR_SUCCESS;
    }
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
        put(s, PP_TB_REGION_END, rs->task, "output");
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

static int trace_create_request(request_rec *r)
{
    tstate *s = tracing();
    rstate *rs;

    if (!s || r->main || r->prev || s->task) {
        return OK;  /* off, a subrequest or redirect, or mod_proxy's backend request */
    }
    rs = apr_pcalloc(r->pool, sizeof(*rs));
    rs->gen = s->gen;
    ap_set_module_config(r->request_config, &pprof_module, rs);
    apr_pool_cleanup_register(r->pool, rs, request_done, apr_pool_cleanup_null);
    if (!async_mpm && r->connection->keepalives > 0) {
        /* Prefork and worker wait for a kept-alive connection's next request in here:
         * that is waiting on the network; the request begins once it has arrived. */
        pp_tbuf_put(s->ring, s->gen, PP_TB_BLOCK, pp_tbuf_now(), PP_TB_BLOCK_NET, 0,
                    "httpd.keepalive_wait", 20);
        rs->ka_wait = 1;
        return OK;
    }
    put(s, PP_TB_WAKE, 0, NULL);
    /* The task is written once a request line has arrived (a connection the client
     * closed makes no task), with the time reading began. */
    rs->t_begin = pp_tbuf_now();
    return OK;
}

static int trace_post_read_request(request_rec *r)
{
    tstate *s = tracing();
    rstate *rs = s && !r->main && !r->prev
                 ? ap_get_module_config(r->request_config, &pprof_module) : NULL;

    if (!rs || rs->gen != s->gen || rs->task || s->task) {
        return DECLINED;
    }
    /* Unique in this child (the trace wants them below 2^40): slot, then a count that
     * may wrap only after 16M requests of one thread. */
    rs->task = ((apr_uint64_t)(s->slot + 1) << 24) | (++s->count & 0xffffff);
    s->task = rs->task;
    s->rs = rs;
    if (rs->ka_wait) {
        rs->ka_wait = 0;
        put(s, PP_TB_UNBLOCK, 0, NULL);
        pp_tbuf_put_task(s->ring, s->gen, pp_tbuf_now(), rs->task);
    } else {
        pp_tbuf_put_task(s->ring, s->gen, rs->t_begin, rs->task);
        pp_tbuf_put(s->ring, s->gen, PP_TB_REGION_BEGIN, rs->t_begin + 1, rs->task, 0,
                    "read_request", 12);
        put(s, PP_TB_REGION_END, rs->task, "read_request");
    }
    put_log(s, rs->task, "method", r->method ? r->method : "");
    put_log(s, rs->task, "uri", r->unparsed_uri ? r->unparsed_uri : "");
    put_log(s, rs->task, "vhost", r->server->server_hostname ? r->server->server_hostname : "");
    put(s, PP_TB_REGION_BEGIN, rs->task, "access_auth");
    return DECLINED;
}

static int trace_fixups(request_rec *r)
{
    tstate *s;
    rstate *rs = traced(r, &s);

    if (rs) {
        put(s, PP_TB_REGION_END, rs->task, "access_auth");
    }
    return DECLINED;
}

static int trace_handler(request_rec *r)
{
    tstate *s;
    rstate *rs = traced(r, &s);

    if (rs) {
        if (s->task == rs->task) {
            pp_tbuf_task_type(s->ring, r->handler ? r->handler : "(none)");
        }
        put(s, PP_TB_REGION_BEGIN, rs->task, "handler");
        rs->in_handler = 1;
    }
    return DECLINED;
}

static int trace_log_first(request_rec *r)
{
    tstate *s;
    rstate *rs = traced(r, &s);

    if (rs) {
        if (rs->in_handler) {
            /* A connection without our output filter: the handler ends here. */
            put(s, PP_TB_REGION_END, rs->task, "handler");
            rs->in_handler = 0;
        }
        put(s, PP_TB_REGION_BEGIN, rs->task, "log");
    }
    return DECLINED;
}

static int trace_log_last(request_rec *r)
{
    tstate *s;
    rstate *rs = traced(r, &s);

    if (rs) {
        char num[32];
        apr_snprintf(num, sizeof(num), "%d", r->status);
        put_log(s, rs->task, "status", num);
        apr_snprintf(num, sizeof(num), "%" APR_OFF_T_FMT, r->bytes_sent);
        put_log(s, rs->task, "bytes", num);
        put(s, PP_TB_REGION_END, rs->task, "log");
    }
    return DECLINED;
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
    if (eor && rs && rs->task == task && rs->in_handler) {
        put(s, PP_TB_REGION_END, task, "handler");
        rs->in_handler = 0;
    }
    outer = s->in_output++ == 0;
    if (outer) {
        put(s, PP_TB_REGION_BEGIN, task, "output");
        s->out_task = task;
    }
    rv = ap_pass_brigade(f->next, bb);
    s->in_output--;
    if (outer && s->out_task == task) {
        put(s, PP_TB_REGION_END, task, "output");
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

void pprof_trace_register_hooks(apr_pool_t *p)
{
    ap_hook_pre_connection(trace_pre_connection, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_create_request(trace_create_request, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_post_read_request(trace_post_read_request, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_fixups(trace_fixups, NULL, NULL, APR_HOOK_REALLY_LAST);
    ap_hook_handler(trace_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_log_transaction(trace_log_first, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_log_transaction(trace_log_last, NULL, NULL, APR_HOOK_REALLY_LAST);
    out_filter = ap_register_output_filter("PPROF_TRACE_OUTPUT", trace_output, NULL,
                                           (ap_filter_type)(AP_FTYPE_NETWORK - 1));
}

void pprof_trace_post_config(server_rec *s)
{
    if (pp_wait_install() < 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     "PP0400: cannot hook pthread_mutex_lock and poll: traces show no waits");
    }
}

const char *pprof_trace_child_start(apr_uint32_t gen, int nslots)
{
    int i, async = 0;

    if (!rings) {
        rings = calloc((size_t)nslots, sizeof(*rings));
        if (!rings) {
            return "out of memory";
        }
        nrings = nslots;
        ap_mpm_query(AP_MPMQ_IS_ASYNC, &async);
        async_mpm = async;
    }
    for (i = 0; i < nrings; i++) {
        if (!rings[i] && !(rings[i] = pp_tbuf_new(RING_BYTES))) {
            return "out of memory";
        }
    }
    pp_wait_observe(wait_seen);
    __atomic_store_n(&trace_gen, gen, __ATOMIC_RELEASE);
    return NULL;
}

void pprof_trace_child_stop(apr_uint32_t gen)
{
    if (__atomic_compare_exchange_n(&trace_gen, &gen, 0, 0, __ATOMIC_ACQ_REL,
                                    __ATOMIC_ACQUIRE)) {
        pp_wait_observe(NULL);
    }
}

void pprof_trace_child_trim(void)
{
    int i;

    for (i = 0; i < nrings; i++) {
        if (rings[i]) {
            pp_tbuf_trim(rings[i]);
        }
    }
}

int pprof_trace_child_drain(apr_uint32_t gen, unsigned char **buf, apr_size_t *len,
                            apr_size_t *cap, apr_uint64_t *dropped)
{
    static apr_uint64_t last_dropped;
    apr_uint64_t lost = 0;
    int i, more, rc = 0;

    for (i = 0; i < nrings; i++) {
        if (!rings[i]) {
            continue;
        }
        lost += pp_tbuf_dropped(rings[i]);
        for (more = 1; more && pp_tbuf_pending(rings[i]) > 0;) {
            apr_uint32_t hdr[4];
            apr_size_t want = pp_tbuf_pending(rings[i]) + sizeof(hdr), n;
            if (*cap - *len < want) {
                apr_size_t ncap = *cap ? *cap : 65536;
                unsigned char *nb;
                while (ncap - *len < want) {
                    ncap *= 2;
                }
                if (ncap > AGENT_BUF_MAX || !(nb = realloc(*buf, ncap))) {
                    rc = -1;
                    break;
                }
                *buf = nb;
                *cap = ncap;
            }
            n = pp_tbuf_read(rings[i], gen, *buf + *len + sizeof(hdr),
                             *cap - *len - sizeof(hdr), &more);
            if (n == 0) {
                continue;       /* only records of other generations: consumed */
            }
            hdr[0] = (apr_uint32_t)i;
            hdr[1] = pprof_agent_slot_tid(i);
            hdr[2] = (apr_uint32_t)n;
            hdr[3] = 0;
            memcpy(*buf + *len, hdr, sizeof(hdr));
            *len += sizeof(hdr) + n;
        }
    }
    *dropped += lost - last_dropped;
    last_dropped = lost;
    return rc;
}

/* A child that ends while a trace runs leaves what its threads wrote since the last read
 * in "<pid>.trace" next to its socket, for the collector: nothing is lost to an exit. */
static const char *leftover_path(apr_pool_t *p, pid_t pid)
{
    const char *sock = pprof_ipc_socket_path(p, pid);
    return sock ? apr_pstrcat(p, apr_pstrndup(p, sock, strlen(sock) - 5), ".trace", NULL)
                : NULL;
}

void pprof_trace_child_exit(apr_pool_t *p, apr_uint32_t gen, const unsigned char *held,
                            apr_size_t held_len)
{
    apr_uint64_t dropped = 0;
    unsigned char *buf = NULL;
    apr_size_t len = 0, cap = 0;
    const char *path, *tmp;
    FILE *f;

    if (!gen || !(path = leftover_path(p, getpid()))) {
        return;
    }
    pprof_trace_child_drain(gen, &buf, &len, &cap, &dropped);
    tmp = apr_pstrcat(p, path, ".tmp", NULL);
    if ((len || held_len) && (f = fopen(tmp, "wb")) != NULL) {
        apr_uint32_t head[2] = { gen, 0 };
        int ok = fwrite(head, sizeof(head), 1, f) == 1 &&
                 (!held_len || fwrite(held, 1, held_len, f) == held_len) &&
                 (!len || fwrite(buf, 1, len, f) == len);
        if (fclose(f) == 0 && ok) {
            rename(tmp, path);
        } else {
            unlink(tmp);
        }
    }
    free(buf);
}

/* === The collector ====================================================================== */

typedef struct {
    request_rec *r;
    pp_trace *tr;
    apr_uint32_t gen;
    apr_array_header_t *pids;   /* children seen */
    apr_uint64_t dropped;
    int failed;
    /* While one child's answer is read: its maps, and the symbolizer (locked). */
    pid_t maps_pid;
    pp_maps *maps;
    pp_symbolizer *sym;
    char names[2 * MAX_FRAMES][24];
    unsigned nnames;
} collector;

static const struct {
    const char *name, *function, *file;
} frames[] = {
    { "read_request", "ap_read_request", "server/protocol.c" },
    { "access_auth", "ap_process_request_internal", "server/request.c" },
    { "handler", "ap_invoke_handler", "server/config.c" },
    { "output", "ap_pass_brigade", "server/util_filter.c" },
    { "log", "ap_run_log_transaction", "server/protocol.c" },
    { "task", "ap_process_request", "modules/http/http_request.c" },
    { "idle", "httpd.wait_for_work", NULL },
};

static int seen_pid(collector *c, pid_t pid)
{
    int i;

    for (i = 0; i < c->pids->nelts; i++) {
        if (APR_ARRAY_IDX(c->pids, i, pid_t) == pid) {
            return 1;
        }
    }
    APR_ARRAY_PUSH(c->pids, pid_t) = pid;
    return 0;
}

/* The threads a child had when tracing started: "slot\ttid\tbusy" lines. */
static void add_threads(collector *c, pid_t pid, char *text)
{
    char *line, *last;

    for (line = apr_strtok(text, "\n", &last); line; line = apr_strtok(NULL, "\n", &last)) {
        unsigned long slot, tid;
        int busy;
        if (sscanf(line, "%lu\t%lu\t%d", &slot, &tid, &busy) == 3) {
            pp_trace_thread(c->tr, (apr_uint32_t)pid, (apr_uint32_t)slot, (apr_uint32_t)tid,
                            busy ? PP_TRACE_RUNNING : PP_TRACE_WAITING);
        }
    }
}

/* The frames of pc in the child being read (c->maps), innermost first. */
static int resolve_pc(collector *c, apr_uint64_t pc, int leaf, pp_trace_frame *out, int max)
{
    pp_frame sf[8];
    pp_pc_site site;
    int k, ns;

    if (!c->maps || !c->sym || max <= 0) {
        return 0;
    }
    /* A return address unless leaf: the call is the byte before. */
    ns = pp_symbolize_pc(c->sym, c->maps, pc, !leaf, sf, 8, &site);
    for (k = 0; k < ns && k < max; k++) {
        out[k].function = sf[k].function ? sf[k].function : "?";
        out[k].file = sf[k].file ? sf[k].file : site.map->path;
        out[k].line = sf[k].line;
    }
    if (ns == 0) {
        char *name = c->names[c->nnames++ % (sizeof(c->names) / sizeof(c->names[0]))];
        apr_snprintf(name, sizeof(c->names[0]), "0x%" APR_UINT64_T_HEX_FMT, pc);
        out[0].function = name;
        out[0].file = site.map ? site.map->path : NULL;
        out[0].line = 0;
        k = 1;
    }
    return k;
}

static int resolver(void *baton, uint32_t pid, uint64_t pc, pp_trace_frame *out, int max)
{
    collector *c = baton;
    return (pid_t)pid == c->maps_pid ? resolve_pc(c, pc, 0, out, max) : 0;
}

static void add_samples(collector *c, const unsigned char *buf, apr_size_t len)
{
    apr_size_t off = 0;

    while (len - off >= 16) {
        apr_uint64_t ts, pc;
        apr_uint32_t tid, npcs, i;
        pp_trace_frame fr[MAX_FRAMES];
        int n = 0;

        memcpy(&ts, buf + off, 8);
        memcpy(&tid, buf + off + 8, 4);
        memcpy(&npcs, buf + off + 12, 4);
        off += 16;
        if (npcs > 1024 || (apr_size_t)npcs * 8 > len - off) {
            break;
        }
        for (i = 0; i < npcs && n < MAX_FRAMES; i++) {
            memcpy(&pc, buf + off + 8 * i, 8);
            n += resolve_pc(c, pc, i == 0, fr + n, MAX_FRAMES - n);
        }
        off += (apr_size_t)npcs * 8;
        pp_trace_cpu_sample(c->tr, ts, pp_trace_find_tid(c->tr, (apr_uint32_t)c->maps_pid, tid),
                            fr, n);
    }
}

/* One child's records (and CPU samples) since the last call. */
static void feed_sections(collector *c, pid_t pid, const char *buf, apr_size_t len)
{
    apr_size_t off = 0;

    while (len - off >= 16) {
        apr_uint32_t hdr[4];
        int th;
        memcpy(hdr, buf + off, sizeof(hdr));
        off += sizeof(hdr);
        if (hdr[2] > len - off) {
            c->failed = 1;
            break;
        }
        th = pp_trace_thread(c->tr, (apr_uint32_t)pid, hdr[0], hdr[1], PP_TRACE_NEW);
        if (th < 0 || pp_trace_records(c->tr, th, buf + off, hdr[2]) != 0) {
            c->failed = 1;
        }
        off += hdr[2];
    }
}

/* The last records of a child that has ended (pprof_trace_child_exit). */
static void adopt_leftovers(collector *c, pid_t pid)
{
    const char *path = leftover_path(c->r->pool, pid);
    apr_file_t *f;
    apr_finfo_t fi;
    char *buf;
    apr_size_t n;

    if (!path || apr_file_open(&f, path, APR_FOPEN_READ | APR_FOPEN_BINARY, 0,
                               c->r->pool) != APR_SUCCESS) {
        return;
    }
    if (apr_file_info_get(&fi, APR_FINFO_SIZE, f) == APR_SUCCESS && fi.size >= 8 &&
        fi.size < 256 * 1024 * 1024) {
        n = (apr_size_t)fi.size;
        buf = malloc(n);
        if (buf && apr_file_read_full(f, buf, n, &n) == APR_SUCCESS) {
            apr_uint32_t gen;
            memcpy(&gen, buf, 4);
            if (gen == c->gen) {
                feed_sections(c, pid, buf + 8, n - 8);
            }
        }
        free(buf);
    }
    apr_file_close(f);
    apr_file_remove(path, c->r->pool);
}

static void forget_pid(collector *c, pid_t pid)
{
    int i;

    for (i = 0; i < c->pids->nelts; i++) {
        if (APR_ARRAY_IDX(c->pids, i, pid_t) == pid) {
            APR_ARRAY_IDX(c->pids, i, pid_t) = APR_ARRAY_IDX(c->pids, c->pids->nelts - 1, pid_t);
            c->pids->nelts--;
            return;
        }
    }
}

/* Leftovers of children that were born and ended between two rounds. */
static void adopt_orphans(collector *c)
{
    const char *sock = pprof_ipc_socket_path(c->r->pool, 0), *slash;
    apr_dir_t *dir;
    apr_finfo_t fi;

    if (!sock || !(slash = strrchr(sock, '/')) ||
        apr_dir_open(&dir, apr_pstrndup(c->r->pool, sock, (apr_size_t)(slash - sock)),
                     c->r->pool) != APR_SUCCESS) {
        return;
    }
    while (apr_dir_read(&fi, APR_FINFO_NAME, dir) == APR_SUCCESS) {
        char *end;
        long pid = strtol(fi.name, &end, 10);
        if (pid > 0 && strcmp(end, ".trace") == 0 && kill((pid_t)pid, 0) != 0) {
            adopt_leftovers(c, (pid_t)pid);
        }
    }
    apr_dir_close(dir);
}

static void take(collector *c, pid_t pid, const char *cmd)
{
    pprof_reply rep;
    apr_pool_t *p;
    long cpid;
    apr_uint64_t dropped;

    apr_pool_create(&p, c->r->pool);
    if (pprof_ipc_call(p, pid, apr_psprintf(p, "%s %lu", cmd, (unsigned long)c->gen), 3, &rep,
                       apr_time_now() + CALL_TIMEOUT) != 0 ||
        sscanf(rep.line, "TRACE %ld %" APR_UINT64_T_FMT, &cpid, &dropped) != 2) {
        apr_pool_destroy(p);
        adopt_leftovers(c, pid);
        if (kill(pid, 0) != 0) {
            forget_pid(c, pid);     /* ended: its last records were just adopted */
        }
        return;
    }
    c->dropped += dropped;
    /* Names for the children's PCs: CPU samples and the callers of lock waits. */
    c->maps_pid = (pid_t)cpid;
    c->maps = rep.len[2] ? pp_maps_parse(rep.blob[2], rep.len[2]) : NULL;
    c->sym = c->maps ? pprof_symbolizer_lock() : NULL;
    feed_sections(c, (pid_t)cpid, rep.blob[0], rep.len[0]);
    add_samples(c, (unsigned char *)rep.blob[1], rep.len[1]);
    if (c->sym) {
        pprof_symbolizer_unlock();
    }
    pp_maps_free(c->maps);
    c->maps = NULL;
    c->sym = NULL;
    apr_pool_destroy(p);
}

/* Start a child; NULL, or why not. */
static const char *start_child(collector *c, pid_t pid, apr_time_t child_deadline)
{
    pprof_reply rep;
    int rc = pprof_ipc_call(c->r->pool, pid,
                            apr_psprintf(c->r->pool, "TRACE-START %lu %" APR_TIME_T_FMT,
                                         (unsigned long)c->gen, child_deadline),
                            1, &rep, apr_time_now() + START_TIMEOUT);
    long cpid;

    if (rc != 0) {
        return "no answer";
    }
    if (strncmp(rep.line, "ERR ", 4) == 0) {
        return apr_pstrdup(c->r->pool, rep.line + 4);
    }
    if (sscanf(rep.line, "TRACE %ld", &cpid) != 1) {
        return "a broken answer";
    }
    add_threads(c, (pid_t)cpid, rep.blob[0]);
    return NULL;
}

static int send_data(collector *c)
{
    size_t len;
    const unsigned char *data = pp_trace_data(c->tr, &len);
    int rc = 0;

    if (len) {
        rc = ap_rwrite(data, (int)len, c->r) < 0 || ap_rflush(c->r) < 0;
    }
    pp_trace_consume(c->tr);
    return rc;
}

/* Add the children alive now (those born during the trace joined by themselves). */
static void note_children(collector *c)
{
    apr_array_header_t *now = pprof_children(c->r, 0);
    int i;

    for (i = 0; i < now->nelts; i++) {
        seen_pid(c, APR_ARRAY_IDX(now, i, pid_t));
    }
}

static void stop_children(collector *c, int collect)
{
    int i;

    note_children(c);
    for (i = c->pids->nelts - 1; i >= 0; i--) {     /* take() may forget pid i */
        take(c, APR_ARRAY_IDX(c->pids, i, pid_t), collect ? "TRACE-STOP" : "TRACE-QUIT");
    }
}

int pprof_serve_trace(request_rec *r, apr_table_t *args)
{
    pprof_shared *sh = pprof_shared_get();
    double sec = pprof_seconds_or(args, 1, 0);
    apr_uint32_t self = (apr_uint32_t)getpid();
    apr_time_t t0, end, child_deadline;
    apr_array_header_t *children;
    const char *err = NULL, *mpm = ap_show_mpm();
    collector c;
    pp_trace_stats st;
    int i, nstarted = 0, gone = 0;
    size_t k;

    if (pprof_exceeds_timeout(r, sec)) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST,
                                 "profile duration exceeds server's WriteTimeout");
    }
    if (!sh) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                 "Could not enable tracing: mod_pprof is not initialized");
    }
    if (!pprof_window_claim(&sh->trace, self)) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                 "Could not enable tracing: tracing is already enabled");
    }
    memset(&c, 0, sizeof(c));
    c.r = r;
    c.pids = apr_array_make(r->pool, 16, sizeof(pid_t));
    t0 = apr_time_now();
    end = t0 + (apr_time_t)(sec * APR_USEC_PER_SEC);
    child_deadline = end + GRACE;
    c.tr = pp_trace_new(pp_tbuf_now());
    if (!c.tr) {
        pprof_window_release(&sh->trace, self);
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                 "Could not enable tracing: out of memory");
    }
    pp_trace_set_thread_frame(c.tr, "httpd.worker_thread",
                              apr_psprintf(r->pool, "server/mpm/%s/%s.c", mpm, mpm));
    pp_trace_set_resolver(c.tr, resolver, &c);
    for (k = 0; k < sizeof(frames) / sizeof(frames[0]); k++) {
        pp_trace_set_frame(c.tr, frames[k].name, frames[k].function, frames[k].file);
    }
    c.gen = pprof_window_open(&sh->trace, 0, 0, child_deadline);
    children = pprof_children(r, 0);
    for (i = 0; i < children->nelts; i++) {
        pid_t pid = APR_ARRAY_IDX(children, i, pid_t);
        const char *e = start_child(&c, pid, child_deadline);
        seen_pid(&c, pid);
        if (e) {
            err = e;
        } else {
            nstarted++;
        }
    }
    if (nstarted == 0) {
        pprof_window_close(&sh->trace);
        stop_children(&c, 0);
        pprof_window_release(&sh->trace, self);
        pp_trace_free(c.tr);
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, apr_pstrcat(r->pool,
                                 "Could not enable tracing: ", err ? err : "no child", NULL));
    }
    ap_set_content_type(r, "application/octet-stream");
    apr_table_setn(r->headers_out, "Content-Disposition", "attachment; filename=\"trace\"");
    /* The file grows while the trace runs: the header goes out now. */
    gone = send_data(&c);
    while (!gone && apr_time_now() < end) {
        apr_time_t next = apr_time_now() + apr_time_from_msec(POLL_MS);
        if (pprof_sleep_unless_gone(r, next < end ? next : end)) {
            gone = 1;
            break;
        }
        note_children(&c);
        for (i = c.pids->nelts - 1; i >= 0; i--) {  /* take() may forget pid i */
            take(&c, APR_ARRAY_IDX(c.pids, i, pid_t), "TRACE-READ");
        }
        adopt_orphans(&c);
        gone = send_data(&c);
    }
    /* Each child is stopped by its last read; only then is the window closed (a child
     * that sees it closed first stops by itself and its last records go unread). */
    stop_children(&c, !gone);
    pprof_window_close(&sh->trace);
    adopt_orphans(&c);
    if (!gone) {
        pp_trace_finish(c.tr, pp_tbuf_now());
        send_data(&c);
    }
    pp_trace_get_stats(c.tr, &st);
    ap_log_rerror(APLOG_MARK, gone ? APLOG_INFO : APLOG_DEBUG, 0, r,
                  "PP0401: trace %s after %.1f s: %d children, %" APR_UINT64_T_FMT
                  " threads, %" APR_UINT64_T_FMT " tasks, %" APR_UINT64_T_FMT " events, %"
                  APR_UINT64_T_FMT " CPU samples, %" APR_UINT64_T_FMT " records lost, %"
                  APR_UINT64_T_FMT " repaired", gone ? "stopped: client went away" : "done",
                  (double)(apr_time_now() - t0) / APR_USEC_PER_SEC, c.pids->nelts, st.threads,
                  st.tasks, st.events, st.cpu_samples, c.dropped, st.repaired);
    if (c.failed) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "PP0402: some trace records of the children could not be read");
    }
    pp_trace_free(c.tr);
    pprof_window_release(&sh->trace, self);
    return OK;
}
