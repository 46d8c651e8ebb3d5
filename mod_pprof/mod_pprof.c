/* The module: configuration, hooks, and the glue between the core and httpd. */
#include "mod_pprof.h"
#include "pprof_agent.h"
#include "pprof_handler.h"
#include "pprof_interp.h"
#include "pprof_ipc.h"
#include "pprof_shared.h"
#include "pprof_trace.h"

#include "http_connection.h"
#include "http_core.h"
#include "http_log.h"
#include "http_request.h"
#include "http_protocol.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>

#include "pp_heap.h"
#include "pp_log.h"
#include "pp_tcreate.h"
#include "pp_cpu.h"
#include "pp_sysfd.h"
#include "pp_threads.h"

static server_rec *log_server;
static apr_thread_mutex_t *sym_mutex;
static pp_symbolizer *symbolizer;

static void core_log(void *baton, pp_log_level level, const char *tag, const char *msg)
{
    static const int levels[] = { APLOG_ERR, APLOG_WARNING, APLOG_INFO, APLOG_DEBUG };

    ap_log_error(APLOG_MARK, levels[level], 0, log_server, "%s: %s", tag, msg);
}

pp_symbolizer *pprof_symbolizer_lock(void)
{
    if (sym_mutex) {
        apr_thread_mutex_lock(sym_mutex);
    }
    if (!symbolizer && !(symbolizer = pp_symbolizer_new())) {
        pprof_symbolizer_unlock();
        return NULL;
    }
    return symbolizer;
}

void pprof_symbolizer_unlock(void)
{
    if (sym_mutex) {
        apr_thread_mutex_unlock(sym_mutex);
    }
}

static apr_status_t symbolizer_cleanup(void *unused)
{
    pp_symbolizer_free(symbolizer);
    symbolizer = NULL;
    sym_mutex = NULL;
    return APR_SUCCESS;
}

static void *create_server_conf(apr_pool_t *p, server_rec *s)
{
    pprof_server_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->cpu_hz = 100;         /* Go's default rate */
    conf->mem_rate = PP_HEAP_DEFAULT_RATE;
    return conf;
}

static void *merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    pprof_server_conf *base = basev, *add = addv, *conf = apr_pcalloc(p, sizeof(*conf));

    conf->cpu_hz = add->cpu_hz_set ? add->cpu_hz : base->cpu_hz;
    conf->cpu_hz_set = add->cpu_hz_set || base->cpu_hz_set;
    conf->mem_rate = add->mem_rate_set ? add->mem_rate : base->mem_rate;
    conf->mem_rate_set = add->mem_rate_set || base->mem_rate_set;
    return conf;
}

static const char *set_cpu_rate(cmd_parms *cmd, void *dconf, const char *arg)
{
    pprof_server_conf *conf = ap_get_module_config(cmd->server->module_config, &pprof_module);
    char *end;
    long hz = strtol(arg, &end, 10);

    if (!*arg || *end || hz < 1 || hz > 1000) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a rate from 1 to 1000 (samples per "
                            "second of CPU time)", cmd->cmd->name, arg);
    }
    conf->cpu_hz = (int)hz;
    conf->cpu_hz_set = 1;
    return NULL;
}

static const char *set_mem_rate(cmd_parms *cmd, void *dconf, const char *arg)
{
    pprof_server_conf *conf = ap_get_module_config(cmd->server->module_config, &pprof_module);
    char *end;
    long long rate = strtoll(arg, &end, 10);

    if (!*arg || *end || rate < 0 || rate > (1LL << 40)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of bytes (0 turns heap "
                            "sampling off, 1 samples every allocation)", cmd->cmd->name, arg);
    }
    conf->mem_rate = rate;
    conf->mem_rate_set = 1;
    return NULL;
}

/* Before this module is unloaded (restart), every GOT entry pointing into it goes back. */
static apr_status_t heap_cleanup(void *unused)
{
    pp_heap_stop();
    pp_heap_reset();
    return APR_SUCCESS;
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    log_server = s;
    pp_log_set(core_log, NULL);
    /* The first pass of a start only checks the configuration. */
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    if (pprof_shared_create(pconf, s) != APR_SUCCESS || pprof_ipc_init(pconf, s) != APR_SUCCESS) {
        return HTTP_INTERNAL_SERVER_ERROR;
    }
    {
        /* In the parent, before any child is forked: children inherit the hooks. */
        pprof_server_conf *conf = ap_get_module_config(s->module_config, &pprof_module);
        int n = pp_heap_start((size_t)conf->mem_rate);
        if (n < 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0020: cannot hook the allocator");
        } else {
            ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, s, "PP0021: heap sampling every %"
                         APR_INT64_T_FMT " bytes; %d allocator entries hooked",
                         conf->mem_rate, n);
        }
        pprof_trace_post_config(s);
        if (pp_tcreate_start() < 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0022: cannot hook pthread_create");
        }
        /* Children change user: the helper reads their blocked threads' registers. */
        if (pp_sysfd_helper_start() < 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "PP0023: cannot start the "
                         "helper: blocked threads will show no stack");
        }
        apr_pool_cleanup_register(pconf, NULL, heap_cleanup, apr_pool_cleanup_null);
        /* ExtendedStatus stays the admin's (or mod_status's): the thread dump keeps what
         * it shows in records of its own (pprof_agent_request_begin), never set here. */
    }
    return OK;
}

static int pre_connection(conn_rec *c, void *csd)
{
    pprof_agent_thread_warm();
    return OK;
}

static int create_request(request_rec *r)
{
    pprof_agent_thread_warm();
    return OK;
}

static int tag_request(request_rec *r)
{
    pprof_agent_tag_request(r);
    return DECLINED;
}

static int request_begin(request_rec *r)
{
    pprof_agent_request_begin(r);
    return DECLINED;
}

static int request_end(request_rec *r)
{
    pprof_agent_request_end(r);
    return DECLINED;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    log_server = s;
    apr_thread_mutex_create(&sym_mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    apr_pool_cleanup_register(pchild, NULL, symbolizer_cleanup, apr_pool_cleanup_null);
    /* Threads get the sampling and thread-dump signals (real-time signals of our own;
     * SIGPROF is left to its owners, e.g. PHP's max_execution_time) unblocked
     * (pp_cpu_thread_allow, pp_threads_allow): a stray one must be ignored, not kill the
     * child. */
    {
        int sigs[2] = { pp_cpu_signal(), pp_threads_signal() }, i;
        for (i = 0; i < 2; i++) {
            struct sigaction sa;
            if (sigaction(sigs[i], NULL, &sa) == 0 && !(sa.sa_flags & SA_SIGINFO) &&
                sa.sa_handler == SIG_DFL) {
                sa.sa_handler = SIG_IGN;
                sigaction(sigs[i], &sa, NULL);
            }
        }
    }
    pprof_agent_thread_warm();
    pp_heap_after_fork();
    pp_heap_refresh();
    pprof_agent_child_init(pchild, s);
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_pre_connection(pre_connection, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_create_request(create_request, NULL, NULL, APR_HOOK_MIDDLE);
    /* Last: the client as mod_remoteip (a FIRST hook) makes it. Ended after every logger. */
    ap_hook_post_read_request(request_begin, NULL, NULL, APR_HOOK_REALLY_LAST);
    ap_hook_log_transaction(request_end, NULL, NULL, APR_HOOK_REALLY_LAST);
    /* First of all handlers: label the thread with the request it now serves. */
    ap_hook_handler(tag_request, NULL, NULL, APR_HOOK_REALLY_FIRST);
    ap_hook_handler(pprof_handler, NULL, NULL, APR_HOOK_MIDDLE);
    pprof_trace_register_hooks(p);
    pprof_interp_register_hooks(p);
}

static const command_rec cmds[] = {
    AP_INIT_TAKE1("PprofCPURate", set_cpu_rate, NULL, RSRC_CONF,
                  "CPU samples per second of thread CPU time (1-1000, default 100)"),
    AP_INIT_TAKE1("PprofMemProfileRate", set_mem_rate, NULL, RSRC_CONF,
                  "mean bytes allocated between heap samples (Go's MemProfileRate; default "
                  "524288, 0 off, 1 every allocation)"),
    { NULL }
};

AP_DECLARE_MODULE(pprof) = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    create_server_conf,
    merge_server_conf,
    cmds,
    register_hooks
};
