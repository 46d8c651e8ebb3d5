#include "mod_pprof.h"
#include "pprof_agent.h"
#include "pprof_ipc.h"
#include "pprof_shared.h"
#include "pprof_trace.h"

#include "http_log.h"
#include "apr_allocator.h"
#include "apr_hash.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"
#include "apr_thread_proc.h"
#include "ap_mpm.h"
#include "scoreboard.h"

#include "pp_cpu.h"
#include "pp_heap.h"
#include "pp_tcreate.h"
#include "pp_threads.h"
#include "pp_maps.h"
#include "pp_reqrec.h"
#include "pp_stacktab.h"
#include "pp_tbuf.h"

#include <errno.h>
#include <malloc.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define RING_SLOTS 4096         /* samples between drains: 100 ms at 40 busy cores */
#define MAX_STACKS 65536        /* distinct stacks a child keeps per window */
#define MAX_TAGS 1024           /* distinct (handler, vhost) pairs a child labels */
#define DRAIN_MS 100
#define CMD_TIMEOUT apr_time_from_sec(5)
#define SPARE_RECORDS 64        /* request records beyond the MPM's threads (other pools) */

typedef struct {
    /* Pools with allocators of their own: pchild's may not be touched from two threads.
     * `pool` is the agent thread's; `tag_pool` is used under tag_mutex only. */
    apr_pool_t *pool;
    apr_pool_t *tag_pool;
    int listen_fd;
    int wake[2];
    apr_thread_t *thread;
    volatile int stopping;

    /* CPU: touched by the agent thread only, but for `cpu_on`. */
    volatile int cpu_on;        /* read by request threads: tag requests while set */
    apr_uint32_t cpu_gen;       /* window being sampled, 0 when none */
    apr_uint32_t cpu_data_gen;  /* window whose data cpu_tab holds */
    apr_time_t cpu_deadline;
    apr_time_t cpu_started, cpu_stopped;
    pp_stacktab *cpu_tab;
    apr_uint64_t cpu_leaf_only, cpu_dropped;

    /* Trace: the generation traced (0: none), its deadline, and its CPU samples since the
     * last read: [u64 ts][u32 tid][u32 npcs][npcs x u64 pc] records. */
    apr_uint32_t trace_gen;
    apr_uint32_t exit_trace_gen;
    apr_time_t trace_deadline;
    unsigned char *trace_smp;
    apr_size_t trace_smp_len, trace_smp_cap;
    apr_uint64_t trace_dropped;
    unsigned char *trace_recs;  /* the rings' records, taken every DRAIN_MS */
    apr_size_t trace_recs_len, trace_recs_cap;

    /* Request tags: "handler\tvhost" -> id, shared with request threads. */
    apr_thread_mutex_t *tag_mutex;
    apr_hash_t *tag_ix;
    const char *tags[MAX_TAGS + 1];
    apr_uint32_t ntags;

    /* Threads: which scoreboard slot each worker thread fills (for the trace). What each
     * thread serves is in its request record (pp_reqrec), not here. */
    int child_num;              /* our process slot in the scoreboard, -1 unknown */
    int threaded;               /* 0 (prefork): the main thread is worker slot 0 */
    int nworkers;
    apr_uint32_t *worker_tid;   /* by thread_num: the kernel's id of the thread, once seen */
    apr_uint32_t agent_tid;
} agent_t;

static agent_t *agent;

void pprof_agent_thread_warm(void)
{
    /* Always let the thread be sampled; spend the unwinder's per-thread cache only while
     * a CPU profile runs (until the thread's next hook its samples are leaf-only). */
    if (agent && agent->cpu_on) {
        pp_cpu_thread_warm();
    } else {
        pp_cpu_thread_allow();
    }
    pp_threads_allow();
}

/* Our process slot. Prefork's parent writes our pid there only after the fork, so a
 * child may look before it is there: look again until found. */
static int find_child_num(agent_t *a)
{
    int limit = 0, i;

    if (a->child_num >= 0 || !ap_scoreboard_image ||
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) != APR_SUCCESS) {
        return a->child_num;
    }
    for (i = 0; i < limit; i++) {
        process_score *ps = ap_get_scoreboard_process(i);
        if (ps && ps->pid == getpid()) {
            a->child_num = i;
            break;
        }
    }
    return a->child_num;
}

/* This thread's slot in the scoreboard (found once: the MPM stamps each worker score
 * with the pthread that fills it), where the thread dump finds its last handler. */
static __thread int tls_thread_num = -2;

int pprof_agent_slot(void)
{
    agent_t *a = agent;
    int i;

    if (tls_thread_num != -2 || !a || find_child_num(a) < 0) {
        return tls_thread_num >= 0 ? tls_thread_num : -1;
    }
    if (!a->threaded) {
        tls_thread_num = 0;
    } else {
        pthread_t me = pthread_self();
        tls_thread_num = -1;
        for (i = 0; i < a->nworkers; i++) {
            worker_score *ws = ap_get_scoreboard_worker_from_indexes(a->child_num, i);
            if (ws && pthread_equal((pthread_t)ws->tid, me)) {
                tls_thread_num = i;
                break;
            }
        }
    }
    if (tls_thread_num >= 0) {
        a->worker_tid[tls_thread_num] = (apr_uint32_t)syscall(SYS_gettid);
    }
    return tls_thread_num;
}

apr_uint32_t pprof_agent_slot_tid(int slot)
{
    agent_t *a = agent;
    return a && slot >= 0 && slot < a->nworkers ? a->worker_tid[slot] : 0;
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

void pprof_agent_request_begin(request_rec *r)
{
    pp_reqrec *rec;
    pp_reqrec_info info;

    if (r->main || r->prev || !(rec = pp_reqrec_self())) {
        return;
    }
    memset(&info, 0, sizeof(info));
    info.token = (apr_uint64_t)(uintptr_t)r;
    info.start_us = r->request_time;    /* read by httpd already: no clock call here */
    request_line(r, info.request, sizeof(info.request));
    pp_reqrec_copy(info.vhost, sizeof(info.vhost), r->server->server_hostname);
    pp_reqrec_copy(info.client, sizeof(info.client), r->useragent_ip ? r->useragent_ip
                                                     : r->connection->client_ip);
    pp_reqrec_begin(rec, &info);
}

void pprof_agent_request_end(request_rec *r)
{
    /* Found by its token (the request_config slot is the trace's): usually in this
     * thread's own record, else in the one of the thread that began it. */
    pp_reqrec_end((apr_uint64_t)(uintptr_t)r);
}

static void note_handler(request_rec *r)
{
    pp_reqrec *rec;

    /* Learn the worker's scoreboard slot and kernel tid once (the trace's first state
     * names the threads by them). */
    pprof_agent_slot();
    /* The main request's handler (after an internal redirect, the new one's). */
    if (!r->main && r->handler && (rec = pp_reqrec_self()) != NULL) {
        pp_reqrec_set_handler(rec, r->handler);
    }
}

static apr_status_t clear_tag(void *unused)
{
    pp_cpu_set_tag(0);
    return APR_SUCCESS;
}

void pprof_agent_tag_request(request_rec *r)
{
    const char *key;
    apr_uint32_t tag;
    void *v;

    note_handler(r);
    if (!agent || !agent->cpu_on) {
        return;
    }
    key = apr_pstrcat(r->pool, r->handler ? r->handler : "(none)", "\t",
                      r->server->server_hostname ? r->server->server_hostname : "", NULL);
    apr_thread_mutex_lock(agent->tag_mutex);
    v = apr_hash_get(agent->tag_ix, key, APR_HASH_KEY_STRING);
    if (v) {
        tag = (apr_uint32_t)(uintptr_t)v;
    } else if (agent->ntags < MAX_TAGS) {
        /* Bounded: a server with more distinct pairs labels the rest "(other)". */
        const char *copy = apr_pstrdup(agent->tag_pool, key);
        tag = ++agent->ntags;
        agent->tags[tag] = copy;
        apr_hash_set(agent->tag_ix, copy, APR_HASH_KEY_STRING, (void *)(uintptr_t)tag);
    } else {
        tag = 0;
    }
    apr_thread_mutex_unlock(agent->tag_mutex);
    if (tag) {
        pp_cpu_set_tag(tag);
        apr_pool_cleanup_register(r->pool, NULL, clear_tag, apr_pool_cleanup_null);
    }
}

static void trace_sample(agent_t *a, const pp_cpu_sample *smp)
{
    apr_size_t need = 16 + (apr_size_t)smp->npcs * 8;
    apr_uint32_t w[2];

    if (a->trace_smp_len + need > a->trace_smp_cap) {
        apr_size_t cap = a->trace_smp_cap ? a->trace_smp_cap * 2 : 65536;
        unsigned char *nb;
        if (cap > 64 * 1024 * 1024 || !(nb = realloc(a->trace_smp, cap))) {
            a->trace_dropped++;
            return;
        }
        a->trace_smp = nb;
        a->trace_smp_cap = cap;
    }
    memcpy(a->trace_smp + a->trace_smp_len, &smp->ts, 8);
    w[0] = smp->tid;
    w[1] = smp->npcs;
    memcpy(a->trace_smp + a->trace_smp_len + 8, w, 8);
    memcpy(a->trace_smp + a->trace_smp_len + 16, smp->pcs, (apr_size_t)smp->npcs * 8);
    a->trace_smp_len += need;
}

static void add_sample(void *baton, const pp_cpu_sample *smp)
{
    agent_t *a = baton;

    if (a->trace_gen) {
        trace_sample(a, smp);
    }
    if (!a->cpu_gen) {
        return;
    }
    if (smp->flags & PP_CPU_LEAF_ONLY) {
        a->cpu_leaf_only++;
    }
    if (pp_stacktab_add(a->cpu_tab, smp->tag, smp->flags, smp->pcs, smp->npcs,
                        smp->weight ? smp->weight : 1) != 0) {
        a->cpu_dropped++;
    }
}

static void cpu_stop(agent_t *a)
{
    if (!a->cpu_gen) {
        return;
    }
    a->cpu_on = 0;
    /* What is left goes to the table and, while a trace runs, to the trace. */
    pp_cpu_stop(add_sample, a);
    a->cpu_dropped += pp_cpu_dropped() + pp_stacktab_overflow(a->cpu_tab);
    a->cpu_stopped = apr_time_now();
    a->cpu_gen = 0;
}

/* Start sampling for window gen; NULL or the reason it cannot. */
static const char *cpu_start(agent_t *a, apr_uint32_t gen, int hz, apr_time_t deadline)
{
    int rc;

    if (a->cpu_gen == gen) {
        return NULL;
    }
    cpu_stop(a);
    if (!a->cpu_tab && !(a->cpu_tab = pp_stacktab_new(MAX_STACKS))) {
        return "out of memory";
    }
    pp_stacktab_clear(a->cpu_tab);
    a->cpu_leaf_only = a->cpu_dropped = 0;
    a->cpu_data_gen = gen;
    a->cpu_deadline = deadline;
    a->cpu_started = apr_time_now();
    a->cpu_stopped = 0;
    rc = pp_cpu_start(hz, RING_SLOTS);
    if (rc != 0) {
        a->cpu_data_gen = 0;
        return rc == -1 ? "another handler owns the CPU sampling signal (see PP0301 in error_log)"
                        : "cpu profiling already in use";
    }
    a->cpu_gen = gen;
    a->cpu_on = 1;
    return NULL;
}

/* The window's data: a header line, then this child's maps, tags and stacks. */
static void send_cpu_data(agent_t *a, int fd, apr_uint32_t gen, apr_time_t deadline)
{
    char *maps = NULL, *tags, line[256];
    apr_size_t mapslen = 0, tagslen = 0, i;
    unsigned char *recs = NULL;
    size_t reclen = 0;
    apr_pool_t *p;

    if (a->cpu_data_gen != gen || !a->cpu_tab) {
        pprof_ipc_write_all(fd, "NONE\n", 5, deadline);
        return;
    }
    apr_pool_create(&p, a->pool);
    if (pp_maps_read_text(NULL, &maps, &mapslen) != 0) {
        maps = NULL;
        mapslen = 0;
    }
    apr_thread_mutex_lock(a->tag_mutex);
    tags = "";
    for (i = 1; i <= a->ntags; i++) {
        tags = apr_psprintf(p, "%s%lu\t%s\n", tags, (unsigned long)i, a->tags[i]);
    }
    apr_thread_mutex_unlock(a->tag_mutex);
    tagslen = strlen(tags);
    if (pp_stacktab_serialize(a->cpu_tab, &recs, &reclen) != 0) {
        recs = NULL;
        reclen = 0;
    }
    apr_snprintf(line, sizeof(line),
                 "DATA %ld %" APR_UINT64_T_FMT " %" APR_UINT64_T_FMT " %" APR_TIME_T_FMT
                 " %" APR_TIME_T_FMT, (long)getpid(), a->cpu_dropped, a->cpu_leaf_only,
                 a->cpu_started, a->cpu_stopped);
    {
        const void *blobs[3] = { maps, tags, recs };
        apr_size_t lens[3] = { mapslen, tagslen, (apr_size_t)reclen };
        pprof_ipc_reply(fd, line, 3, blobs, lens, deadline);
    }
    /* Handed over (or lost with the collector): either way, not sent twice. */
    a->cpu_data_gen = 0;
    pp_stacktab_clear(a->cpu_tab);
    free(maps);
    free(recs);
    apr_pool_destroy(p);
}

/* The heap buckets, with this child's maps and allocator statistics. */
static void send_heap(int fd, int gc, apr_time_t deadline)
{
    char *maps = NULL, head[256];
    apr_size_t mapslen = 0;
    unsigned char *recs = NULL;
    size_t reclen = 0;
    struct mallinfo2 mi;

    if (gc) {
        /* C has no collector to run: give freed memory back to the system instead. */
        malloc_trim(0);
    }
    pp_heap_refresh();
    mi = mallinfo2();
    if (pp_maps_read_text(NULL, &maps, &mapslen) != 0 ||
        pp_heap_serialize(&recs, &reclen) != 0) {
        pprof_ipc_write_all(fd, "ERR out of memory\n", 18, deadline);
    } else {
        const void *blobs[2] = { maps, recs };
        apr_size_t lens[2] = { mapslen, (apr_size_t)reclen };
        apr_snprintf(head, sizeof(head), "HEAP %ld %" APR_SIZE_T_FMT " %" APR_UINT64_T_FMT
                     " %" APR_SIZE_T_FMT " %" APR_SIZE_T_FMT " %" APR_SIZE_T_FMT " %"
                     APR_SIZE_T_FMT, (long)getpid(), pp_heap_rate(), pp_heap_dropped(),
                     (apr_size_t)mi.arena, (apr_size_t)mi.hblkhd, (apr_size_t)mi.uordblks,
                     (apr_size_t)mi.fordblks);
        pprof_ipc_reply(fd, head, 2, blobs, lens, deadline);
    }
    free(maps);
    free(recs);
}

/* A field of the info line: what the record holds, with tabs and line ends (possible in
 * a hostile request line only) made spaces. */
static const char *field(apr_pool_t *p, const char *src, apr_size_t max)
{
    char *f = apr_pstrndup(p, src, max), *c;

    for (c = f; *c; c++) {
        if (*c == '\t' || *c == '\n' || *c == '\r') {
            *c = ' ';
        }
    }
    return f;
}

/* Is this thread a worker of the MPM? Threaded MPMs stamp each worker score with the
 * pthread that fills it (a stamp kept whatever ExtendedStatus says); prefork's one worker
 * is the main thread. Only for the role of a worker that has served nothing yet: what a
 * worker serves comes from its own request record. */
static int scoreboard_worker(agent_t *a, const pp_thread_stack *st)
{
    int j;

    if (!a->threaded) {
        return st->tid == (apr_uint32_t)getpid();
    }
    for (j = 0; j < a->nworkers && a->child_num >= 0 && st->pthread; j++) {
        worker_score *ws = ap_get_scoreboard_worker_from_indexes(a->child_num, j);
        if (ws && (apr_uint64_t)ws->tid == st->pthread) {
            return 1;
        }
    }
    return 0;
}

/* One line per thread: tid, role, and what its request record says it serves:
 * "tid\trole\tstatus\tclient\tvhost\trequest\thandler\tseconds". Status is "writing"
 * while a request is in progress (its headers read, not yet logged), "idle" otherwise,
 * "changing" for a record that was rewritten under every read. */
static char *thread_info(agent_t *a, apr_pool_t *p, const pp_thread_stack *st, size_t n)
{
    apr_array_header_t *lines = apr_array_make(p, (int)n, sizeof(char *));
    apr_hash_t *by_tid = apr_hash_make(p);
    apr_time_t now = apr_time_now();
    apr_size_t cap = pp_reqrec_capacity(), nrec = 0, i;
    pp_reqrec_view *views;

    /* Records are held by live threads only: room for the threads captured, and for
     * some started since. */
    cap = cap < n + SPARE_RECORDS ? cap : n + SPARE_RECORDS;
    views = cap ? apr_palloc(p, cap * sizeof(*views)) : NULL;
    find_child_num(a);
    if (views) {
        nrec = pp_reqrec_snapshot(views, cap);
    }
    for (i = 0; i < nrec; i++) {
        apr_hash_set(by_tid, &views[i].tid, sizeof(views[i].tid), &views[i]);
    }
    for (i = 0; i < n; i++) {
        const pp_reqrec_view *v = apr_hash_get(by_tid, &st[i].tid, sizeof(st[i].tid));
        const char *role = "other", *status = "", *client = "", *vhost = "", *req = "",
                   *handler = "";
        double secs = -1;

        if (st[i].tid == (apr_uint32_t)getpid() && a->threaded) {
            role = "main";
        } else if (st[i].tid == a->agent_tid) {
            role = "agent";
        } else if (v || scoreboard_worker(a, &st[i])) {
            role = "worker";
            status = "idle";
        }
        if (v && v->torn) {
            status = "changing";
        } else if (v && v->busy) {
            status = "writing";
            client = field(p, v->info.client, sizeof(v->info.client));
            vhost = field(p, v->info.vhost, sizeof(v->info.vhost));
            req = field(p, v->info.request, sizeof(v->info.request));
            handler = field(p, v->info.handler, sizeof(v->info.handler));
            secs = (double)(now - v->info.start_us) / APR_USEC_PER_SEC;
        }
        APR_ARRAY_PUSH(lines, char *) = apr_psprintf(p, "%u\t%s\t%s\t%s\t%s\t%s\t%s\t%.3f",
                                                     st[i].tid, role, status, client, vhost,
                                                     req, handler, secs);
    }
    return apr_array_pstrcat(p, lines, '\n');
}

static void send_threads(agent_t *a, int fd, apr_time_t deadline)
{
    pp_thread_stack *st = NULL;
    size_t n = 0;
    char *maps = NULL, *info, head[128];
    apr_size_t mapslen = 0;
    apr_pool_t *p;

    apr_pool_create(&p, a->pool);
    /* 250 ms: a thread that cannot answer by then (signals blocked) is reported so. */
    if (pp_threads_capture(&st, &n, 250) != 0 || pp_maps_read_text(NULL, &maps, &mapslen) != 0) {
        pprof_ipc_write_all(fd, "ERR cannot capture thread stacks\n", 33, deadline);
    } else {
        const void *blobs[3];
        apr_size_t lens[3];
        info = thread_info(a, p, st, n);
        blobs[0] = maps;
        blobs[1] = st;
        blobs[2] = info;
        lens[0] = mapslen;
        lens[1] = n * sizeof(*st);
        lens[2] = strlen(info);
        apr_snprintf(head, sizeof(head), "THREADS %ld %" APR_SIZE_T_FMT, (long)getpid(),
                     (apr_size_t)n);
        pprof_ipc_reply(fd, head, 3, blobs, lens, deadline);
    }
    free(st);
    free(maps);
    apr_pool_destroy(p);
}

static void send_tcreate(int fd, apr_time_t deadline)
{
    pp_tcreate_record *recs = NULL;
    size_t n = 0;
    char *maps = NULL, head[128];
    apr_size_t mapslen = 0;

    if (pp_tcreate_snapshot(&recs, &n) != 0 || pp_maps_read_text(NULL, &maps, &mapslen) != 0) {
        pprof_ipc_write_all(fd, "ERR out of memory\n", 18, deadline);
    } else {
        const void *blobs[2] = { maps, recs };
        apr_size_t lens[2] = { mapslen, n * sizeof(*recs) };
        apr_snprintf(head, sizeof(head), "TCREATE %ld %" APR_UINT64_T_FMT, (long)getpid(),
                     pp_tcreate_total());
        pprof_ipc_reply(fd, head, 2, blobs, lens, deadline);
    }
    free(recs);
    free(maps);
}

/* --- trace ---------------------------------------------------------------------------- */

static void trace_stop(agent_t *a)
{
    if (!a->trace_gen) {
        return;
    }
    pprof_trace_child_stop(a->trace_gen);
    if (a->cpu_gen) {
        pp_cpu_drain(add_sample, a);    /* a CPU profile's samples up to here */
    }
    a->trace_gen = 0;
}

/* After the last read (or with nobody left to read): the rings' memory goes back and
 * the buffers are freed (a busy server's grow to megabytes). */
static void trace_end(agent_t *a)
{
    trace_stop(a);
    pprof_trace_child_trim();
    free(a->trace_recs);
    free(a->trace_smp);
    a->trace_recs = a->trace_smp = NULL;
    a->trace_recs_len = a->trace_smp_len = 0;
    a->trace_recs_cap = a->trace_smp_cap = 0;
    a->trace_dropped = 0;
}

/* The kernel id of the thread in worker slot j. A thread that has served nothing since the
 * child started has not told it yet: pthread_create's hook knows it by the pthread the
 * scoreboard holds, and prefork's worker is the child's main thread. 0 if not known. */
static apr_uint32_t slot_tid(agent_t *a, int j, const worker_score *ws)
{
    if (!a->worker_tid[j]) {
        if (!a->threaded) {
            a->worker_tid[j] = (apr_uint32_t)getpid();
        } else if (ws->tid) {
            a->worker_tid[j] = pp_tcreate_tid((uint64_t)ws->tid);
        }
    }
    return a->worker_tid[j];
}

/* Switch this child's hooks to trace gen. The threads
 * as they are now: "slot\ttid\tbusy" lines (into *threads), for the trace's first state. */
static const char *trace_start(agent_t *a, apr_uint32_t gen, apr_time_t deadline,
                               apr_pool_t *p, const char **threads)
{
    const char *err;
    apr_array_header_t *lines;
    int j;

    if (threads) {
        lines = apr_array_make(p, a->nworkers, sizeof(char *));
        find_child_num(a);
        for (j = 0; j < a->nworkers && a->child_num >= 0; j++) {
            worker_score *ws = ap_get_scoreboard_worker_from_indexes(a->child_num, j);
            if (!ws || ws->status == SERVER_DEAD || (a->threaded && !ws->tid)) {
                continue;
            }
            APR_ARRAY_PUSH(lines, char *) = apr_psprintf(
                p, "%d\t%lu\t%d\n", j, (unsigned long)slot_tid(a, j, ws),
                ws->status != SERVER_READY && ws->status != SERVER_BUSY_KEEPALIVE &&
                ws->status != SERVER_STARTING);
        }
        *threads = apr_array_pstrcat(p, lines, 0);
    }
    if (a->trace_gen == gen) {
        return NULL;            /* joined from child_init already: keep what it has */
    }
    trace_end(a);
    if ((err = pprof_trace_child_start(gen, a->nworkers)) != NULL) {
        return err;
    }
    a->trace_gen = gen;
    a->trace_deadline = deadline;
    /* As in Go, the trace carries the CPU samples of a CPU profile that runs at the same
     * time (add_sample): tracing alone does not start the sampler. */
    return NULL;
}

/* Hand over the records and CPU samples since the last read; stop first if asked. */
static void trace_send(agent_t *a, int fd, apr_uint32_t gen, int stop, apr_time_t deadline)
{
    char *maps = NULL, head[128];
    apr_size_t mapslen = 0;

    if (!gen || a->trace_gen != gen) {
        pprof_ipc_write_all(fd, "NONE\n", 5, deadline);
        return;
    }
    pp_cpu_drain(add_sample, a);
    if (stop) {
        trace_stop(a);
    }
    pprof_trace_child_drain(gen, &a->trace_recs, &a->trace_recs_len, &a->trace_recs_cap,
                            &a->trace_dropped);
    /* The maps name the PCs of CPU samples and of lock waits' callers. */
    if ((a->trace_smp_len || a->trace_recs_len) &&
        pp_maps_read_text(NULL, &maps, &mapslen) != 0) {
        maps = NULL;
        mapslen = 0;
    }
    apr_snprintf(head, sizeof(head), "TRACE %ld %" APR_UINT64_T_FMT, (long)getpid(),
                 a->trace_dropped);
    {
        const void *blobs[3] = { a->trace_recs, a->trace_smp, maps };
        apr_size_t lens[3] = { a->trace_recs_len, a->trace_smp_len, mapslen };
        pprof_ipc_reply(fd, head, 3, blobs, lens, deadline);
    }
    a->trace_dropped = 0;
    a->trace_smp_len = 0;
    a->trace_recs_len = 0;
    if (stop) {
        trace_end(a);
    }
    free(maps);
}

static void serve_one(agent_t *a, int fd)
{
    apr_time_t deadline = apr_time_now() + CMD_TIMEOUT;
    char line[256], reply[300];
    unsigned long gen = 0, hz = 0;
    long long dl = 0;
    const char *err;

    if (pprof_ipc_read_line(fd, line, sizeof(line), deadline) != 0) {
        return;
    }
    if (sscanf(line, "CPU-START %lu %lu %lld", &gen, &hz, &dl) == 3 && gen) {
        err = cpu_start(a, (apr_uint32_t)gen, (int)hz, (apr_time_t)dl);
        apr_snprintf(reply, sizeof(reply), err ? "ERR %s\n" : "OK\n", err);
        pprof_ipc_write_all(fd, reply, strlen(reply), deadline);
    } else if (sscanf(line, "TRACE-START %lu %lld", &gen, &dl) == 2 && gen) {
        const char *threads = "";
        apr_pool_t *p;
        apr_pool_create(&p, a->pool);
        err = trace_start(a, (apr_uint32_t)gen, (apr_time_t)dl, p, &threads);
        if (err) {
            apr_snprintf(reply, sizeof(reply), "ERR %s\n", err);
            pprof_ipc_write_all(fd, reply, strlen(reply), deadline);
        } else {
            const void *blobs[1] = { threads };
            apr_size_t lens[1] = { strlen(threads) };
            apr_snprintf(reply, sizeof(reply), "TRACE %ld", (long)getpid());
            pprof_ipc_reply(fd, reply, 1, blobs, lens, deadline);
        }
        apr_pool_destroy(p);
    } else if (sscanf(line, "TRACE-READ %lu", &gen) == 1) {
        trace_send(a, fd, (apr_uint32_t)gen, 0, deadline);
    } else if (sscanf(line, "TRACE-STOP %lu", &gen) == 1) {
        trace_send(a, fd, (apr_uint32_t)gen, 1, deadline);
    } else if (sscanf(line, "TRACE-QUIT %lu", &gen) == 1) {
        /* The client is gone: stop, and nothing to hand over. */
        if (gen && a->trace_gen == gen) {
            trace_end(a);
        }
        pprof_ipc_write_all(fd, "NONE\n", 5, deadline);
    } else if (strcmp(line, "THREADS") == 0) {
        send_threads(a, fd, deadline);
    } else if (strcmp(line, "TCREATE") == 0) {
        send_tcreate(fd, deadline);
    } else if (sscanf(line, "HEAP %lu", &gen) == 1) {
        send_heap(fd, gen != 0, deadline);
    } else if (sscanf(line, "CPU-STOP %lu", &gen) == 1 && gen) {
        if (a->cpu_gen == gen) {
            cpu_stop(a);
        }
        send_cpu_data(a, fd, (apr_uint32_t)gen, deadline);
    } else {
        pprof_ipc_write_all(fd, "ERR unknown command\n", 20, deadline);
    }
}

/* While sampling: move samples from the ring into the table, follow new threads, and
 * stop at the window's end even if no collector says so (it may have died). */
static void tick(agent_t *a)
{
    pprof_shared *sh = pprof_shared_get();

    if (a->cpu_gen) {
        pp_cpu_drain(add_sample, a);
        pp_cpu_refresh_threads();
        if (apr_time_now() > a->cpu_deadline ||
            (sh && pprof_atomic_load32(&sh->cpu.active) != a->cpu_gen)) {
            cpu_stop(a);
        }
    }
    if (!a->trace_gen) {
        return;
    }
    /* Rings are emptied here, between the collector's reads: they never wait on it. */
    pprof_trace_child_drain(a->trace_gen, &a->trace_recs, &a->trace_recs_len,
                            &a->trace_recs_cap, &a->trace_dropped);
    if (apr_time_now() > a->trace_deadline ||
        (sh && pprof_atomic_load32(&sh->trace.active) != a->trace_gen)) {
        /* The collector is gone (or never asked): what is left goes unread. */
        trace_end(a);
    }
}

/* A child born during a window joins it. */
static void join_open_windows(agent_t *a)
{
    pprof_shared *sh = pprof_shared_get();
    apr_uint32_t gen, only;

    if (sh && (gen = pprof_atomic_load32(&sh->trace.active)) != 0) {
        trace_start(a, gen, __atomic_load_n(&sh->trace.deadline, __ATOMIC_ACQUIRE), a->pool,
                    NULL);
    }
    if (!sh || !(gen = pprof_atomic_load32(&sh->cpu.active))) {
        return;
    }
    only = pprof_atomic_load32(&sh->cpu.only_pid);
    if (only && only != (apr_uint32_t)getpid()) {
        return;
    }
    cpu_start(a, gen, (int)pprof_atomic_load32(&sh->cpu.hz),
              __atomic_load_n(&sh->cpu.deadline, __ATOMIC_ACQUIRE));
}

static void *APR_THREAD_FUNC agent_main(apr_thread_t *t, void *data)
{
    agent_t *a = data;

    a->agent_tid = (apr_uint32_t)syscall(SYS_gettid);
    pp_cpu_thread_warm();
    /* The agent is the profiler: what it allocates is never in the heap profile. */
    pp_heap_guard_enter();
    while (!a->stopping) {
        struct pollfd pfd[2];
        int rc;

        pfd[0].fd = a->listen_fd;
        pfd[0].events = POLLIN;
        pfd[1].fd = a->wake[0];
        pfd[1].events = POLLIN;
        rc = poll(pfd, 2, a->cpu_gen || a->trace_gen ? DRAIN_MS : -1);
        if (a->stopping) {
            break;
        }
        tick(a);
        if (rc > 0 && (pfd[0].revents & POLLIN)) {
            int fd = accept4(a->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
            if (fd >= 0) {
                serve_one(a, fd);
                close(fd);
            }
        }
    }
    cpu_stop(a);
    a->exit_trace_gen = a->trace_gen;   /* its last records go to the collector by file */
    trace_stop(a);
    return NULL;
}

static apr_status_t agent_cleanup(void *data)
{
    agent_t *a = data;
    apr_status_t rv;

    a->stopping = 1;
    if (write(a->wake[1], "x", 1) < 0) {
        /* the thread still sees `stopping` at its next wake-up */
    }
    if (a->thread) {
        apr_thread_join(&rv, a->thread);
    }
    pprof_trace_child_exit(a->pool, a->exit_trace_gen, a->trace_recs, a->trace_recs_len);
    free(a->trace_recs);
    close(a->listen_fd);
    close(a->wake[0]);
    close(a->wake[1]);
    agent = NULL;
    unlink(pprof_ipc_socket_path(a->pool, getpid()));
    pp_stacktab_free(a->cpu_tab);
    free(a->trace_smp);
    apr_pool_destroy(a->tag_pool);
    apr_pool_destroy(a->pool);
    return APR_SUCCESS;
}

static apr_pool_t *own_pool(void)
{
    apr_allocator_t *al;
    apr_pool_t *p;

    if (apr_allocator_create(&al) != APR_SUCCESS) {
        return NULL;
    }
    if (apr_pool_create_unmanaged_ex(&p, NULL, al) != APR_SUCCESS) {
        apr_allocator_destroy(al);
        return NULL;
    }
    apr_allocator_owner_set(al, p);
    return p;
}

void pprof_agent_child_init(apr_pool_t *pchild, server_rec *s)
{
    agent_t *a = apr_pcalloc(pchild, sizeof(*a));
    sigset_t all, old;
    apr_status_t rv;

    if (!(a->pool = own_pool()) || !(a->tag_pool = own_pool())) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0012: cannot create the agent's pools");
        return;
    }
    a->tag_ix = apr_hash_make(a->tag_pool);
    a->child_num = -1;
    {
        int threaded = 0;
        a->threaded = ap_mpm_query(AP_MPMQ_IS_THREADED, &threaded) == APR_SUCCESS &&
                      threaded != AP_MPMQ_NOT_SUPPORTED;
    }
    if (ap_scoreboard_image) {
        int threads = 1;
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads);
        find_child_num(a);
        a->nworkers = threads > 0 ? threads : 1;
        a->worker_tid = apr_pcalloc(pchild, a->nworkers * sizeof(*a->worker_tid));
    }
    {
        /* One request record per thread that serves requests: the MPM's, and a few of
         * other pools (a protocol module's own workers). Kept until the process ends:
         * no thread may be left writing into a record that is gone. */
        int threads = 1;
        if (ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads) != APR_SUCCESS || threads < 1) {
            threads = 1;
        }
        if (pp_reqrec_init((size_t)threads + SPARE_RECORDS) != 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0013: no memory for request "
                         "records: the thread dump shows no requests");
        }
    }
    if (apr_thread_mutex_create(&a->tag_mutex, APR_THREAD_MUTEX_DEFAULT, pchild) != APR_SUCCESS ||
        pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "PP0010: cannot set up the agent");
        return;
    }
    /* The socket exists before we look at the shared state: a collector that opens a
     * window after our look finds our socket, and one that opened it before is seen. */
    if ((a->listen_fd = pprof_ipc_listen(pchild, s)) < 0) {
        close(a->wake[0]);
        close(a->wake[1]);
        return;
    }
    /* Join open windows before any worker runs (the agent thread may start late): a
     * request served right after the fork is in the trace too. */
    join_open_windows(a);
    /* The MPM's signals must keep going to its own threads, never to ours. */
    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&a->thread, NULL, agent_main, a, pchild);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "PP0011: cannot start the agent thread");
        a->thread = NULL;
    }
    /* A pre-cleanup: the thread must be joined before pchild destroys its subpools. */
    apr_pool_pre_cleanup_register(pchild, a, agent_cleanup);
    agent = a;
}
