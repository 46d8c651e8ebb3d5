#include "pprof_conf.h"

#include "apr_strings.h"

#include "pp_heap.h"

#include <stdlib.h>

pprof_server_conf *pprof_conf(const server_rec *s)
{
    return ap_get_module_config(s->module_config, &pprof_module);
}

void *pprof_create_server_conf(apr_pool_t *p, server_rec *s)
{
    pprof_server_conf *conf = apr_pcalloc(p, sizeof(*conf));

    conf->cpu_hz = 100;         /* Go's default rate */
    conf->mem_rate = PP_HEAP_DEFAULT_RATE;
    return conf;
}

void *pprof_merge_server_conf(apr_pool_t *p, void *basev, void *addv)
{
    pprof_server_conf *base = basev, *add = addv, *conf = apr_pcalloc(p, sizeof(*conf));

    conf->cpu_hz = add->cpu_hz_set ? add->cpu_hz : base->cpu_hz;
    conf->cpu_hz_set = add->cpu_hz_set || base->cpu_hz_set;
    conf->mem_rate = add->mem_rate_set ? add->mem_rate : base->mem_rate;
    conf->mem_rate_set = add->mem_rate_set || base->mem_rate_set;
    conf->block_rate = add->block_rate_set ? add->block_rate : base->block_rate;
    conf->block_rate_set = add->block_rate_set || base->block_rate_set;
    conf->mutex_fraction = add->mutex_fraction_set ? add->mutex_fraction
                                                   : base->mutex_fraction;
    conf->mutex_fraction_set = add->mutex_fraction_set || base->mutex_fraction_set;
    return conf;
}

static const char *set_cpu_rate(cmd_parms *cmd, void *dconf, const char *arg)
{
    pprof_server_conf *conf = pprof_conf(cmd->server);
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
    pprof_server_conf *conf = pprof_conf(cmd->server);
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

static const char *set_block_rate(cmd_parms *cmd, void *dconf, const char *arg)
{
    pprof_server_conf *conf = pprof_conf(cmd->server);
    char *end;
    long long rate = strtoll(arg, &end, 10);

    if (!*arg || *end || rate < 0 || rate > (1LL << 50)) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a number of nanoseconds (0 turns "
                            "the block profile off, 1 records every blocking event)",
                            cmd->cmd->name, arg);
    }
    conf->block_rate = rate;
    conf->block_rate_set = 1;
    return NULL;
}

static const char *set_mutex_fraction(cmd_parms *cmd, void *dconf, const char *arg)
{
    pprof_server_conf *conf = pprof_conf(cmd->server);
    char *end;
    long long n = strtoll(arg, &end, 10);

    if (!*arg || *end || n < 0 || n > 1000000000LL) {
        return apr_psprintf(cmd->pool, "%s: '%s' is not a fraction 1/N given as N (0 turns "
                            "the mutex profile off, 1 records every contention event)",
                            cmd->cmd->name, arg);
    }
    conf->mutex_fraction = n;
    conf->mutex_fraction_set = 1;
    return NULL;
}

const command_rec pprof_cmds[] = {
    AP_INIT_TAKE1("PprofCPURate", set_cpu_rate, NULL, RSRC_CONF,
                  "CPU samples per second of thread CPU time (1-1000, default 100)"),
    AP_INIT_TAKE1("PprofMemProfileRate", set_mem_rate, NULL, RSRC_CONF,
                  "mean bytes allocated between heap samples (Go's MemProfileRate; default "
                  "524288, 0 off, 1 every allocation)"),
    AP_INIT_TAKE1("PprofBlockProfileRate", set_block_rate, NULL, RSRC_CONF,
                  "blocking events of this many ns or more are always recorded, shorter "
                  "ones with probability delay/N (Go's SetBlockProfileRate; default 0 off)"),
    AP_INIT_TAKE1("PprofMutexProfileFraction", set_mutex_fraction, NULL, RSRC_CONF,
                  "record 1 in N mutex contention events (Go's SetMutexProfileFraction; "
                  "default 0 off)"),
    { NULL }
};
