/* The optional function behind mod_pprof_interp.h: providers of interpreter frames, handed
 * to the core (pp_interp) for the life of the configuration pool they name. */
#include "mod_pprof_interp.h"
#include "pprof_interp.h"

#include "httpd.h"
#include "http_log.h"

APLOG_USE_MODULE(pprof);

static apr_status_t unregister(void *handle)
{
    pp_interp_unregister((int)(intptr_t)handle);
    if (!pp_interp_active()) {
        /* The last provider is gone (a restart unloads modules next): so is the table
         * this mod_pprof allocated. Only the parent gets here, where nothing samples. */
        pp_interp_reset();
    }
    return APR_SUCCESS;
}

static apr_status_t pprof_interp_register(apr_pool_t *pool, const pp_interp_provider *provider)
{
    int handle = pp_interp_register(provider);

    if (handle < 0) {
        return APR_EGENERAL;    /* logged by the core (PP0701) */
    }
    apr_pool_cleanup_register(pool, (void *)(intptr_t)handle, unregister,
                              apr_pool_cleanup_null);
    ap_log_error(APLOG_MARK, APLOG_DEBUG, 0, NULL, "PP0700: %s frames provider registered "
                 "(%d loop range%s)", provider->name ? provider->name : "interpreter",
                 provider->nranges, provider->nranges == 1 ? "" : "s");
    return APR_SUCCESS;
}

void pprof_interp_register_hooks(apr_pool_t *p)
{
    APR_REGISTER_OPTIONAL_FN(pprof_interp_register);
}
