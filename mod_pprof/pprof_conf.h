/* The module's declaration and its configuration (the Pprof* directives): read by every
 * part of the glue; includes no other part of it. */
#ifndef PPROF_CONF_H
#define PPROF_CONF_H

#include "httpd.h"
#include "http_config.h"

#define PPROF_HANDLER "pprof-handler"

extern module AP_MODULE_DECLARE_DATA pprof_module;

typedef struct {
    int cpu_hz;                 /* PprofCPURate: CPU samples per second of thread CPU time */
    int cpu_hz_set;
    apr_int64_t mem_rate;       /* PprofMemProfileRate: mean bytes between heap samples */
    int mem_rate_set;
    apr_int64_t block_rate;     /* PprofBlockProfileRate: ns (Go's SetBlockProfileRate) */
    int block_rate_set;
    apr_int64_t mutex_fraction; /* PprofMutexProfileFraction: 1 in N (Go's
                                   SetMutexProfileFraction) */
    int mutex_fraction_set;
} pprof_server_conf;

/* The configuration of server s. */
pprof_server_conf *pprof_conf(const server_rec *s);

/* The module's server configuration functions and directives (mod_pprof.c's module). */
void *pprof_create_server_conf(apr_pool_t *p, server_rec *s);
void *pprof_merge_server_conf(apr_pool_t *p, void *basev, void *addv);
extern const command_rec pprof_cmds[];

#endif
