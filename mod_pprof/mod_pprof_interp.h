/* mod_pprof's one service to other modules: interpreter frames. A module that knows an
 * interpreter embedded in httpd (mod_pprof_php for mod_php; later Python's mod_wsgi, Lua's
 * mod_lua) registers a provider: the interpreter loop's code ranges and a walk of its
 * frame chain (core/pp_interp.h says what a walk may and must not do). Every profile that
 * captures stacks then shows the script's functions above the loop that runs them.
 *
 * An APR optional function, so that mod_pprof works without any provider and a provider
 * module loaded without mod_pprof finds nothing to register with (and says so):
 *
 *     APR_OPTIONAL_FN_TYPE(pprof_interp_register) *reg =
 *         APR_RETRIEVE_OPTIONAL_FN(pprof_interp_register);
 *     if (reg && reg(pconf, &provider) == APR_SUCCESS) ...
 *
 * Call it from post_config, in the parent, before any child starts: children inherit the
 * registration. The provider stays registered until `pool` is cleared (restart), when its
 * code may be unloaded. */
#ifndef MOD_PPROF_INTERP_H
#define MOD_PPROF_INTERP_H

#include "apr_optional.h"
#include "apr_pools.h"

#include "pp_interp.h"

/* APR_SUCCESS, or APR_EGENERAL when mod_pprof has no room for it (logged). */
APR_DECLARE_OPTIONAL_FN(apr_status_t, pprof_interp_register,
                        (apr_pool_t *pool, const pp_interp_provider *provider));

#endif
