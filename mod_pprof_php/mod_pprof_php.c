/* mod_pprof_php: PHP functions in mod_pprof's profiles. Registers a provider of
 * interpreter frames (mod_pprof_interp.h) for Debian's mod_php: the interpreter loop is
 * libphp's execute_ex, the frames come from its executor_globals (php_walk.c). Needs
 * mod_pprof and php_module loaded; without either it says so and does nothing. */
#include "httpd.h"
#include "http_config.h"
#include "http_log.h"
#include "http_core.h"
#include "ap_mmn.h"
#include "apr_optional.h"
#include "apr_strings.h"

#include "mod_pprof_interp.h"
#include "php_walk.h"

#include <dlfcn.h>
#include <link.h>
#include <stdlib.h>
#include <string.h>



/* The loaded PHP's version, from the symbol every libphp exports: "Zend Engine vX.Y.Z...".
 * Our offsets come from the headers of PHP_VERSION; the struct layouts change between
 * minor versions, never within one. */
static int same_minor_version(server_rec *s)
{
    const char *(*get_zend_version)(void) = (const char *(*)(void))dlsym(RTLD_DEFAULT,
                                                                          "get_zend_version");
    const char *loaded = get_zend_version ? get_zend_version() : NULL, *v;
    const char *ours = pprof_php_walk_version(), *dot;
    char want[32];

    /* PHP 8.x is Zend Engine 4.x: "8.2.36" -> "v4.2." */
    if (!loaded || !(dot = strchr(ours, '.')) || !(v = strstr(loaded, " v"))) {
        return 0;
    }
    apr_snprintf(want, sizeof(want), "v%d.%d.", atoi(ours) - 4, atoi(dot + 1));
    if (strncmp(v + 1, want, strlen(want)) != 0) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0803: mod_pprof_php was built for "
                     "PHP %s but the loaded PHP is %.40s: PHP frames are left out of profiles",
                     ours, loaded);
        return 0;
    }
    return 1;
}

static int post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp, server_rec *s)
{
    APR_OPTIONAL_FN_TYPE(pprof_interp_register) *reg;
    pp_interp_provider prov;
    void *eg, *loop;
    const ElfW(Sym) *sym = NULL;
    Dl_info info;

    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    if (!(reg = APR_RETRIEVE_OPTIONAL_FN(pprof_interp_register))) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0801: mod_pprof is not loaded: "
                     "mod_pprof_php has nothing to do");
        return OK;
    }
    eg = dlsym(RTLD_DEFAULT, "executor_globals");
    loop = dlsym(RTLD_DEFAULT, "execute_ex");
    if (!eg || !loop) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0802: %s: PHP frames are left out "
                     "of profiles", dlsym(RTLD_DEFAULT, "executor_globals_offset")
                     ? "the loaded PHP is thread-safe (ZTS), whose frames mod_pprof_php "
                       "cannot read"
                     : "no PHP loaded (LoadModule php_module)");
        return OK;
    }
    if (!same_minor_version(s)) {
        return OK;
    }
    /* The loop's extent: its symbol's size. */
    if (!dladdr1(loop, &info, (void **)&sym, RTLD_DL_SYMENT) || !sym || !sym->st_size) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s, "PP0804: cannot find the extent of "
                     "PHP's execute_ex: PHP frames are left out of profiles");
        return OK;
    }
    {
        /* USE_ZEND_ALLOC=0 (or a custom heap): PHP's memory comes from malloc, which unmaps
         * inside libc, out of the hooks' sight. */
        _Bool (*is_zend_mm)(void) = (_Bool (*)(void))dlsym(RTLD_DEFAULT, "is_zend_mm");
        pprof_php_walk_init(eg, is_zend_mm && is_zend_mm());
    }
    memset(&prov, 0, sizeof(prov));
    prov.name = "php";
    prov.lo[0] = (uint64_t)(uintptr_t)loop;
    prov.hi[0] = prov.lo[0] + sym->st_size;
    prov.nranges = 1;
    prov.walk = pprof_php_walk;
    if (reg(pconf, &prov) != APR_SUCCESS) {
        return OK;              /* logged by mod_pprof */
    }
    ap_log_error(APLOG_MARK, APLOG_INFO, 0, s, "PP0800: PHP %s frames in profiles (execute_ex "
                 "in %s, %lu bytes)", pprof_php_walk_version(),
                 info.dli_fname ? info.dli_fname : "?", (unsigned long)sym->st_size);
    return OK;
}

static void register_hooks(apr_pool_t *p)
{
    /* After php_module's own post_config (PHP is started by then). */
    static const char *const after[] = { "mod_php.c", "mod_php8.c", "mod_pprof.c", NULL };

    ap_hook_post_config(post_config, after, NULL, APR_HOOK_LAST);
}

AP_DECLARE_MODULE(pprof_php) = {
    STANDARD20_MODULE_STUFF,
    NULL,
    NULL,
    NULL,
    NULL,
    NULL,
    register_hooks
};
