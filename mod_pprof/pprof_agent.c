#include "pprof_agent.h"
#include "pprof_handover.h"
#include "pprof_ipc.h"
#include "pprof_kinds.h"
#include "pprof_reply.h"
#include "pprof_sampler.h"
#include "pprof_shared.h"

#include "http_log.h"
#include "apr_allocator.h"
#include "apr_thread_proc.h"

#include "pp_cpu.h"
#include "pp_heap.h"
#include "pp_wire.h"

#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define CMD_TIMEOUT apr_time_from_sec(5)

typedef struct {
    /* A pool with an allocator of its own: pchild's may not be touched from two threads. */
    apr_pool_t *pool;
    int listen_fd;
    int wake[2];
    apr_thread_t *thread;
    volatile int stopping;
    /* The window of each window kind open in this child (0: none), by registry index. */
    apr_uint32_t gen[PPROF_MAX_WINDOWS];
    apr_time_t deadline[PPROF_MAX_WINDOWS];
} agent_t;

/* This child's agent, for pprof_sampler's announcer. */
static agent_t *the_agent;

/* A request thread serves for the first time while sampling: wake the agent, whose tick
 * arms that thread's timer (pprof_sampler_drain follows new threads). */
static void new_thread(void)
{
    agent_t *a = the_agent;

    if (a && !a->stopping && write(a->wake[1], "t", 1) < 0) {
        /* full: a wake-up is pending anyway */
    }
}

/* How long the agent may sleep: the shortest tick of its open windows; -1 (for ever)
 * with none open. */
static int tick_ms(const agent_t *a)
{
    int i, ms = -1;

    for (i = 0; pprof_kinds[i]; i++) {
        if (a->gen[i]) {
            int k = pprof_kinds[i]->tick_wait ? pprof_kinds[i]->tick_wait(a->gen[i]) : 0;
            if (k <= 0) {
                k = pprof_kinds[i]->tick_ms > 0 ? pprof_kinds[i]->tick_ms : PPROF_TICK_MS;
            }
            if (ms < 0 || k < ms) {
                ms = k;
            }
        }
    }
    return ms;
}

static int any_open(const agent_t *a)
{
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        if (a->gen[i]) {
            return 1;
        }
    }
    return 0;
}

static void window_stop(agent_t *a, int i, pprof_stop_why why)
{
    if (a->gen[i]) {
        apr_uint32_t gen = a->gen[i];
        a->gen[i] = 0;
        pprof_kinds[i]->stop(gen, why);
    }
}

/* Open window req->gen of kind i here; a window of an older gen stops first. */
static const char *window_start(agent_t *a, int i, const pp_wire_request *req, pprof_out *out)
{
    const char *err;

    if (a->gen[i] != req->gen) {
        window_stop(a, i, PPROF_STOP_ENDED);
    }
    if ((err = pprof_kinds[i]->start(req, out)) != NULL) {
        return err;
    }
    a->gen[i] = req->gen;
    a->deadline[i] = req->deadline_us;
    return NULL;
}

/* Every tick: let each open window empty its buffers, and stop the ones that ended
 * without their collector (past the deadline, or closed or reopened in shared memory:
 * the collector may have died). */
static void tick(agent_t *a)
{
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        const pprof_window *w = pprof_shared_window(i);
        if (!a->gen[i]) {
            continue;
        }
        if (pprof_kinds[i]->tick) {
            pprof_kinds[i]->tick(a->gen[i]);
        }
        if (apr_time_now() > a->deadline[i] || (w && pprof_window_active(w) != a->gen[i])) {
            window_stop(a, i, PPROF_STOP_ENDED);
        }
    }
}

/* A child born during a window joins it, before any of its workers runs (the agent
 * thread may start late): a request served right after the fork is in the window too. */
static void join_open_windows(agent_t *a)
{
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        const pprof_window *w = pprof_shared_window(i);
        pp_wire_request req = PPWIRE__REQUEST__INIT;
        apr_uint32_t only;

        if (!pprof_kinds[i]->window || !w || !(req.gen = pprof_window_active(w))) {
            continue;
        }
        only = pprof_window_only(w);
        if (only && only != (apr_uint32_t)getpid()) {
            continue;
        }
        req.kind = (char *)pprof_kinds[i]->name;
        req.op = PP_WIRE_START;
        req.hz = pprof_window_hz(w);
        req.deadline_us = pprof_window_deadline(w);
        window_start(a, i, &req, NULL);
    }
}

typedef struct {
    int fd;
    apr_time_t deadline;
} send_sink;

static int send_pieces(void *baton, struct iovec *iov, int n)
{
    send_sink *k = baton;

    return pprof_ipc_writev_all(k->fd, iov, n, k->deadline);
}

/* What the request asks of its kind, into out; the reply's status. */
static int dispatch(agent_t *a, const pp_wire_request *req, pprof_out *out)
{
    const pprof_kind *k = pprof_kind_named(req->kind);
    int i = k ? pprof_kind_index(k) : -1;
    const char *err;

    if (!k) {
        return pprof_out_error(out, "unknown kind");
    }
    if (!k->window && req->op != PP_WIRE_TAKE) {
        return pprof_out_error(out, "not a window kind");
    }
    switch (req->op) {
    case PP_WIRE_START:
        if (!req->gen) {
            return pprof_out_error(out, "no window");
        }
        err = window_start(a, i, req, out);
        return err ? pprof_out_error(out, err) : PP_WIRE_OK;
    case PP_WIRE_STOP:
        if (req->gen && a->gen[i] == req->gen) {
            window_stop(a, i, PPROF_STOP_TAKE);
        }
        return k->take(req, out);
    case PP_WIRE_TAKE:
        return k->take(req, out);
    case PP_WIRE_QUIT:
        /* The collector's client is gone: stop, and nothing to hand over. */
        if (req->gen && a->gen[i] == req->gen) {
            window_stop(a, i, PPROF_STOP_QUIT);
        }
        return PP_WIRE_NONE;
    default:
        return pprof_out_error(out, "unknown request");
    }
}

static void serve_one(agent_t *a, int fd)
{
    apr_time_t deadline = apr_time_now() + CMD_TIMEOUT;
    pp_wire_request *req = NULL;
    pp_wire_reply reply = PPWIRE__REPLY__INIT;
    pprof_out out;
    send_sink sink;
    apr_size_t len;
    void *body;
    apr_pool_t *p;
    int was_open = any_open(a);

    apr_pool_create(&p, a->pool);
    out.pool = p;
    out.reply = &reply;
    reply.pid = getpid();
    if (pprof_ipc_read_frame(fd, p, PP_WIRE_MAX_REQUEST, &body, &len, deadline) != 0) {
        goto done;
    }
    if (!(req = pp_wire_unpack_request(body, len))) {
        pprof_out_error(&out, "a broken request");
    } else {
        reply.status = dispatch(a, req, &out);
    }
    if (reply.status == PP_WIRE_NONE) {
        /* Nothing is handed over with NONE, whatever a kind began to fill. */
        ppwire__reply__init(&reply);
        reply.status = PP_WIRE_NONE;
        reply.pid = getpid();
    }
    /* Encoded as it is sent: a trace's take is megabytes of records, which a packed
     * frame would hold once more. Handed over (or lost with the collector): either way,
     * not sent twice. */
    sink.fd = fd;
    sink.deadline = deadline;
    if (pp_wire_write_reply(&reply, send_pieces, &sink) == -2) {
        ppwire__reply__init(&reply);
        reply.pid = getpid();
        pprof_out_error(&out, "the answer is larger than a reply may be");
        pp_wire_write_reply(&reply, send_pieces, &sink);
    }
done:
    pp_wire_free_request(req);
    apr_pool_destroy(p);
    /* The take that closed the last open window freed what the window gathered (a
     * trace's buffers, the reply): glibc would keep it in this thread's arena for the
     * life of the child. Only then: malloc_trim takes every arena's lock in turn, the
     * worker threads' too, and a snapshot's take (a goroutine dump, a heap profile,
     * the index page's count, scraped without pause) frees little. */
    if (was_open && !any_open(a)) {
        malloc_trim(0);
    }
}

static void *APR_THREAD_FUNC agent_main(apr_thread_t *t, void *data)
{
    agent_t *a = data;

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
        rc = poll(pfd, 2, tick_ms(a));
        if (a->stopping) {
            break;
        }
        if (rc > 0 && (pfd[1].revents & POLLIN)) {
            char buf[64];
            while (read(a->wake[0], buf, sizeof(buf)) > 0) {
            }
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
    return NULL;
}

/* Kind i's take for req, into a reply in p; PP_WIRE_OK or what the kind answered. */
static int take_for_handover(int i, const pp_wire_request *req, apr_pool_t *p,
                             pp_wire_reply *reply)
{
    pprof_out out;

    ppwire__reply__init(reply);
    reply->pid = getpid();
    out.pool = p;
    out.reply = reply;
    return pprof_kinds[i]->take(req, &out);
}

/* The child ends: what each kind holds for a collector goes to it by file
 * (pprof_handover.h). A window kind stops its open window (PPROF_STOP_EXIT) and gives its
 * last take, always (that take lets go of what it holds), left in the window's hand-over
 * if its collector opened one. A snapshot kind that hands over gives one take, left in
 * every delta of it in progress. */
static void hand_over_all(agent_t *a)
{
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        const pprof_kind *k = pprof_kinds[i];
        pp_wire_request req = PPWIRE__REQUEST__INIT;
        pp_wire_reply reply;
        apr_array_header_t *dirs;
        apr_pool_t *p;

        if (k->window ? !a->gen[i] : !k->handover) {
            continue;
        }
        if (apr_pool_create(&p, a->pool) != APR_SUCCESS) {
            window_stop(a, i, PPROF_STOP_QUIT);
            continue;
        }
        req.kind = (char *)k->name;
        if (k->window) {
            req.op = PP_WIRE_STOP;
            req.gen = a->gen[i];
            dirs = pprof_handover_find(p, k->name, req.gen, a->deadline[i]);
            window_stop(a, i, PPROF_STOP_EXIT);
            if (take_for_handover(i, &req, p, &reply) == PP_WIRE_OK) {
                pprof_handover_leave(p, dirs, &reply);
            }
        } else if ((dirs = pprof_handover_find(p, k->name, 0, 0))->nelts > 0) {
            req.op = PP_WIRE_TAKE;
            if (take_for_handover(i, &req, p, &reply) == PP_WIRE_OK) {
                pprof_handover_leave(p, dirs, &reply);
            }
        }
        apr_pool_destroy(p);
    }
}

/* The child ends (its workers are done): stop the thread, then hand over what every kind
 * holds for a collector, before the socket closes: a collector that finds the socket
 * gone (or its call broken) finds the reply left for it. */
static apr_status_t agent_cleanup(void *data)
{
    agent_t *a = data;
    apr_status_t rv;

    a->stopping = 1;
    pprof_sampler_announcer(NULL);
    the_agent = NULL;
    if (write(a->wake[1], "x", 1) < 0) {
        /* the thread still sees `stopping` at its next wake-up */
    }
    if (a->thread) {
        apr_thread_join(&rv, a->thread);
    }
    pp_heap_guard_enter();
    hand_over_all(a);
    pp_heap_guard_leave();
    close(a->listen_fd);
    close(a->wake[0]);
    close(a->wake[1]);
    unlink(pprof_ipc_path(a->pool, getpid(), ".sock"));
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

    if (!(a->pool = own_pool())) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0012: cannot create the agent's pools");
        return;
    }
    if (pipe2(a->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "PP0010: cannot set up the agent");
        apr_pool_destroy(a->pool);
        return;
    }
    /* The socket exists before we look at the shared state: a collector that opens a
     * window after our look finds our socket, and one that opened it before is seen. */
    if ((a->listen_fd = pprof_ipc_listen(pchild, s)) < 0) {
        close(a->wake[0]);
        close(a->wake[1]);
        apr_pool_destroy(a->pool);
        return;
    }
    join_open_windows(a);
    the_agent = a;
    pprof_sampler_announcer(new_thread);
    /* The MPM's signals must keep going to its own threads, never to ours. Not the
     * faults: blocked, a fault kills the process at once, past httpd's fatal-signal
     * handler (and a sanitizer's), with no trace of where. */
    sigfillset(&all);
    sigdelset(&all, SIGSEGV);
    sigdelset(&all, SIGBUS);
    sigdelset(&all, SIGILL);
    sigdelset(&all, SIGFPE);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&a->thread, NULL, agent_main, a, pchild);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_ERR, rv, s, "PP0011: cannot start the agent thread");
        a->thread = NULL;
    }
    /* A pre-cleanup: the thread must be joined before pchild destroys its subpools. */
    apr_pool_pre_cleanup_register(pchild, a, agent_cleanup);
}
