/* mod_pprof: Go's net/http/pprof for Apache httpd. Shared declarations of the glue. */
#ifndef MOD_PPROF_H
#define MOD_PPROF_H

#include "httpd.h"
#include "http_config.h"

#include "pp_symbolize.h"

#define PPROF_HANDLER "pprof-handler"

extern module AP_MODULE_DECLARE_DATA pprof_module;

typedef struct {
    int cpu_hz;                 /* PprofCPURate: CPU samples per second of thread CPU time */
    int cpu_hz_set;
    apr_int64_t mem_rate;       /* PprofMemProfileRate: mean bytes between heap samples */
    int mem_rate_set;
} pprof_server_conf;

/* The process-wide symbolizer, created on first use in this process. Callers hold the
 * lock between pprof_symbolizer_lock and pprof_symbolizer_unlock: libdw is not
 * thread-safe. NULL on out of memory (the lock is then already released). */
pp_symbolizer *pprof_symbolizer_lock(void);
void pprof_symbolizer_unlock(void);

#endif
