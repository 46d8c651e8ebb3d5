/* The module: its hooks, which run every part of the glue at its time. What each kind of
 * profile needs from httpd it registers itself (pprof_kinds.h). */
#include "pprof_conf.h"
#include "pprof_agent.h"
#include "pprof_handler.h"
#include "pprof_handover.h"
#include "pprof_interp.h"
#include "pprof_ipc.h"
#include "pprof_kinds.h"
#include "pprof_request.h"
#include "pprof_sampler.h"
#include "pprof_scoreboard.h"
#include "pprof_shared.h"
#include "pprof_symbols.h"

#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"

#include <signal.h>
#include <unistd.h>

#include "pp_log.h"
#include "pp_cpu.h"
#include "pp_funwind.h"
#include "pp_heap.h"
#include "pp_threads.h"

static server_rec *log_server;

static void core_log(void *baton, pp_log_level level, const char *tag, const char *msg)
{
    static const int levels[] = { APLOG_ERR, APLOG_WARNING, APLOG_INFO, APLOG_DEBUG };

    ap_log_error(APLOG_MARK, levels[level], 0, log_server, "%s: %s", tag, msg);
}

static pid_t parent_pid;

/* pconf goes at every restart; only when the parent exits (stop, graceful-stop: its
 * children are gone by then) does the socket directory go with what is left in it. */
static apr_status_t parent_exit(void *unused)
{
    if (getpid() == parent_pid && ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_EXITING) {
        pprof_handover_sweep(NULL);     /* their collectors are gone with the children */
        pprof_ipc_sweep(0, 1);
    }
    return APR_SUCCESS;
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    int i;

    log_server = s;
    pp_log_set(core_log, NULL);
    /* Single-threaded, before any child is forked: the malloc_trim and mallinfo2 calls
     * of the agent and the collectors may be the first glibc sees (pp_heap.h). */
    pp_heap_malloc_ready();
    /* The main thread's stack bounds, read here once (glibc reads /proc/self/maps for
     * them) rather than in every child: each child's main thread is this thread, forked,
     * and keeps them (pp_cpu_thread_allow then has nothing to read in prefork's). */
    pp_funwind_bounds();
    /* The first pass of a start only checks the configuration. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    if (pprof_shared_create(pconf, s) != APR_SUCCESS || pprof_ipc_init(pconf, s) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    /* Hand-overs of collectors that are gone (a crash, an earlier run) are read by none. */
    pprof_handover_sweep(pconf);
    /* Children of older generations may still serve (graceful restart): only what dead
     * ones left goes, and their hand-over files only when no window could still read
     * them. */
    pprof_ipc_sweep(pprof_windows_busy(), 0);
    parent_pid = getpid();
    apr_pool_cleanup_register(pconf, NULL, parent_exit, apr_pool_cleanup_null);
    /* In the parent, before any child is forked: children inherit what the kinds hook.
     * ExtendedStatus stays the admin's (or mod_status's): nothing here sets it. */
    for (i = 0; pprof_kinds[i]; i++) {
        if (pprof_kinds[i]->post_config) {
            pprof_kinds[i]->post_config(pconf, s);
        }
    }
    pprof_symbols_post_config(pconf);
    return OK;
}

/* Set once this thread's signals are unblocked: until a CPU profile runs there is
 * nothing more to do for it, and this runs on every request. */
static __thread int thread_allowed __attribute__((tls_model("initial-exec")));

/* Every connection and request: the thread may be sampled and its stack captured (our
 * real-time signals unblocked), its unwinder warmed while a CPU profile runs. Once done
 * and while no profile runs: a thread-local and a shared word read, no call. */
static void thread_ready(void)
{
    if (__builtin_expect(thread_allowed && !pprof_sampler_running(), 1)) {
        return;
    }
    pprof_sampler_thread_ready();
    pp_threads_allow();
    thread_allowed = 1;
}

/* One hook per phase for every kind (pprof_request.h): what each needs, in one call. */
static int pre_connection(conn_rec *c, void *csd)
{
    thread_ready();
    pprof_cpu_untag();
    pprof_trace_rec_connection(c);
    return OK;
}

static int create_request(request_rec *r)
{
    thread_ready();
    if (!r->main) {
        pprof_cpu_untag();
    }
    pprof_trace_rec_create_request(r);
    return OK;
}

/* First of all handlers: the CPU profile's label and the request record's handler are
 * the request's own before any handler runs (ours included). */
static int request_handler(request_rec *r)
{
    pprof_cpu_tag(r);
    pprof_threads_handler(r);
    pprof_trace_rec_handler(r);
    return DECLINED;
}

/* After every logger: the trace logs the status, and the request record is over. */
static int log_transaction(request_rec *r)
{
    pprof_threads_request_end(r);
    pprof_trace_rec_log_last(r);
    return DECLINED;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    int sigs[2] = { pp_cpu_signal(), pp_threads_signal() }, i;

    log_server = s;
    pprof_symbols_child_init(pchild);
    /* Threads get the sampling and thread-dump signals (real-time signals of our own;
     * SIGPROF is left to its owners, e.g. PHP's max_execution_time) unblocked: a stray
     * one must be ignored, not kill the child. */
    for (i = 0; i < 2; i++) {
        struct sigaction sa;
        if (sigaction(sigs[i], NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
            sa.sa_handler == SIG_DFL) {
            sa.sa_handler = SIG_IGN;
            sigaction(sigs[i], &sa, NULL);
        }
    }
    thread_ready();
    pprof_scoreboard_child_init(pchild);
    for (i = 0; pprof_kinds[i]; i++) {
        if (pprof_kinds[i]->child_init) {
            pprof_kinds[i]->child_init(pchild, s);
        }
    }
    pprof_agent_child_init(pchild, s);
}

static void register_hooks(apr_pool_t *p)
{
    int i;

    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(pre_connection, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_create_request(create_request, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_handler(request_handler, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_log_transaction(log_transaction, NULL, NULL, APR_HOOK_REALLY_LAST);
    for (i = 0; pprof_kinds[i]; i++) {
        if (pprof_kinds[i]->register_hooks) {
            pprof_kinds[i]->register_hooks(p);
        }
    }
    pprof_handler_init();
    ap_hook_handler(pprof_handler, NULL, NULL, APR_HOOK_MIDDLE);
    pprof_interp_register_hooks(p);
}

AP_DECLARE_MODULE(pprof) = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    pprof_create_server_conf,
    pprof_merge_server_conf,
    pprof_cmds,
    register_hooks
};
