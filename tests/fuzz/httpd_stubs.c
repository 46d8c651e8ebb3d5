/* What mod_pprof/pprof_collect.c calls besides its parsers and that lives in the apache2
 * binary or in other mod_pprof files, so that fuzz_query links without them (APR itself
 * is linked for real). The fuzzed parsers never call these: each stops the run if it is. */
#include "ap_mpm.h"
#include "scoreboard.h"
#include "util_filter.h"

#include "pprof_ipc.h"

#include <stdio.h>
#include <stdlib.h>

static void not_here(const char *what)
{
    fprintf(stderr, "fuzz_query: %s called (not part of the fuzzed parsers)\n", what);
    abort();
}

AP_DECLARE_DATA scoreboard *ap_scoreboard_image;

AP_DECLARE(apr_status_t) ap_mpm_query(int query_code, int *result)
{
    not_here("ap_mpm_query");
    return APR_ENOTIMPL;
}

AP_DECLARE(process_score *) ap_get_scoreboard_process(int x)
{
    not_here("ap_get_scoreboard_process");
    return NULL;
}

AP_DECLARE(apr_status_t) ap_get_brigade(ap_filter_t *filter, apr_bucket_brigade *bucket,
                                        ap_input_mode_t mode, apr_read_type_e block,
                                        apr_off_t readbytes)
{
    not_here("ap_get_brigade");
    return APR_ENOTIMPL;
}

int pprof_ipc_call(apr_pool_t *p, pid_t pid, const char *cmd, int nblobs, pprof_reply *out,
                   apr_time_t deadline)
{
    not_here("pprof_ipc_call");
    return -1;
}
