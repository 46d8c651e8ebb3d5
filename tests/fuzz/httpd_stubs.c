/* What mod_pprof/pprof_query.c calls besides its parsers and that lives in other
 * mod_pprof files (or the apache2 binary), so that fuzz_query links without them (APR
 * itself is linked for real). The fuzzed parsers never call these: each stops the run if
 * it is. */
#include "pprof_scoreboard.h"

#include <stdio.h>
#include <stdlib.h>

static void not_here(const char *what)
{
    fprintf(stderr, "fuzz_query: %s called (not part of the fuzzed parsers)\n", what);
    abort();
}

apr_array_header_t *pprof_children(apr_pool_t *p, pid_t only)
{
    not_here("pprof_children");
    return NULL;
}
