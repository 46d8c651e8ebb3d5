/* The module: configuration, hooks, and the glue between the core and httpd. */
#include "mod_pprof.h"
#include "pprof_handler.h"

#include "http_log.h"
#include "http_protocol.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "pp_log.h"

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

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    log_server = s;
    pp_log_set(core_log, NULL);
    return OK;
}

static void child_init(apr_pool_t *pchild, server_rec *s)
{
    log_server = s;
    apr_thread_mutex_create(&sym_mutex, APR_THREAD_MUTEX_DEFAULT, pchild);
    apr_pool_cleanup_register(pchild, NULL, symbolizer_cleanup, apr_pool_cleanup_null);
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_post_config(post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_handler(pprof_handler, NULL, NULL, APR_HOOK_MIDDLE);
}

static const command_rec cmds[] = {
    { NULL }
};

AP_DECLARE_MODULE(pprof) = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    NULL,
    NULL,
    cmds,
    register_hooks
};
