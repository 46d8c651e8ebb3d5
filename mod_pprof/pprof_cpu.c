/* /debug/pprof/profile: a CPU profile of the whole server. This child collects: it opens
 * a window in the shared state, has every child's agent sample its threads, waits, then
 * gathers each child's stacks and maps, merges, symbolizes and encodes them. */
#include "mod_pprof.h"
#include "pprof_collect.h"
#include "pprof_cpu.h"
#include "pprof_handler.h"
#include "pprof_ipc.h"
#include "pprof_shared.h"

#include "http_log.h"
#include "http_protocol.h"
#include "apr_strings.h"

#include "pp_cpu.h"
#include "pp_maps.h"
#include "pp_profile.h"
#include "pp_resolve.h"
#include "pp_stacktab.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define START_TIMEOUT apr_time_from_sec(5)
#define GATHER_TIMEOUT apr_time_from_sec(30)
#define MAX_TAGS 1024
/* Children stop by themselves this long after the window's planned end. */
#define GRACE apr_time_from_sec(10)

typedef struct {
    pp_profile *prof;
    pp_resolver *res;
    const pp_maps *maps;
    long pid;
    int64_t period;
    const char *handler[MAX_TAGS + 1];
    const char *vhost[MAX_TAGS + 1];
    apr_uint64_t samples;
    int failed;
} merge_ctx;

static void merge_stack(void *baton, const pp_stack *s)
{
    merge_ctx *m = baton;
    uint64_t locs[1024];
    int64_t values[2];
    pp_label labels[3];
    size_t nlabels = 1;
    int n;

    n = pp_resolver_stack(m->res, m->maps, s->pcs, s->npcs, 0, locs);
    if (n < 0) {
        m->failed = 1;
        return;
    }
    values[0] = (int64_t)s->count;
    values[1] = (int64_t)s->count * m->period;
    memset(labels, 0, sizeof(labels));
    labels[0].key = "pid";
    labels[0].num = m->pid;
    if (s->tag && s->tag <= MAX_TAGS && m->handler[s->tag]) {
        labels[1].key = "handler";
        labels[1].str = m->handler[s->tag];
        labels[2].key = "vhost";
        labels[2].str = m->vhost[s->tag];
        nlabels = 3;
    }
    if (pp_profile_add_sample(m->prof, locs, (size_t)n, values, labels, nlabels) != 0) {
        m->failed = 1;
    }
    m->samples += s->count;
}

/* "id\thandler\tvhost\n" lines into the context's tag arrays. */
static void parse_tags(merge_ctx *m, char *text)
{
    char *line, *last;

    for (line = apr_strtok(text, "\n", &last); line; line = apr_strtok(NULL, "\n", &last)) {
        char *tab1 = strchr(line, '\t'), *tab2 = tab1 ? strchr(tab1 + 1, '\t') : NULL;
        long id = strtol(line, NULL, 10);
        if (!tab2 || id <= 0 || id > MAX_TAGS) {
            continue;
        }
        *tab1 = *tab2 = '\0';
        m->handler[id] = tab1 + 1;
        m->vhost[id] = tab2 + 1;
    }
}

/* Ask one child for its window's data and merge it: NULL, or why it is missing. */
static const char *gather_child(request_rec *r, pid_t pid, apr_uint32_t gen, pp_profile *prof,
                         pp_resolver *res, int64_t period, apr_uint64_t *total)
{
    apr_time_t deadline = apr_time_now() + GATHER_TIMEOUT;
    pprof_reply rep;
    long cpid;
    apr_uint64_t dropped, leaf_only;
    apr_int64_t started, stopped;
    merge_ctx *m;
    pp_maps *maps = NULL;
    apr_pool_t *p;
    const char *why = NULL;
    int rc;

    apr_pool_create(&p, r->pool);
    rc = pprof_ipc_call(p, pid, apr_psprintf(p, "CPU-STOP %lu", (unsigned long)gen), 3, &rep,
                        deadline);
    if (rc == 1) {
        goto done;
    }
    if (rc != 0 || sscanf(rep.line, "DATA %ld %" APR_UINT64_T_FMT " %" APR_UINT64_T_FMT
                          " %" APR_INT64_T_FMT " %" APR_INT64_T_FMT, &cpid, &dropped,
                          &leaf_only, &started, &stopped) != 5) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "PP0102: child %ld did not hand over its CPU samples", (long)pid);
        why = "did not hand over its samples";
        goto done;
    }
    maps = pp_maps_parse(rep.blob[0], rep.len[0]);
    m = apr_pcalloc(p, sizeof(*m));
    m->prof = prof;
    m->res = res;
    m->maps = maps;
    m->pid = cpid;
    m->period = period;
    parse_tags(m, rep.blob[1]);
    if (!maps || pp_stacktab_parse((unsigned char *)rep.blob[2], rep.len[2], merge_stack, m) != 0 ||
        m->failed) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "PP0104: could not merge the CPU data of child %ld", (long)pid);
        why = "its samples could not be merged";
    }
    if (dropped > 0) {
        /* As Go does for samples its buffer could not take: a synthetic frame. */
        uint64_t loc = pp_resolver_synthetic(res, "mod_pprof.lostProfileEvent");
        int64_t values[2] = { (int64_t)dropped, (int64_t)dropped * period };
        pp_label pidl = { "pid", NULL, cpid, NULL };
        if (loc) {
            pp_profile_add_sample(prof, &loc, 1, values, &pidl, 1);
        }
    }
    *total += m->samples;
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, r,
                  "PP0105: child %ld: %" APR_UINT64_T_FMT " samples, %" APR_UINT64_T_FMT
                  " dropped, %" APR_UINT64_T_FMT " leaf-only", cpid, m->samples, dropped,
                  leaf_only);
done:
    pp_maps_free(maps);
    apr_pool_destroy(p);
    return why;
}

/* A child that could not be sampled is never silently missing from a 200 profile: the
 * profile says so in a comment (`go tool pprof -comments`), and error_log in a warning. */
static void note_absent(request_rec *r, apr_array_header_t *absent, pid_t pid, const char *why)
{
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                  "PP0103: child %ld is absent from the CPU profile: %s", (long)pid, why);
    APR_ARRAY_PUSH(absent, const char *) =
        apr_psprintf(r->pool, "mod_pprof: pid %ld absent: %s", (long)pid, why);
}

/* Send "CPU-START" to one child: NULL on success, else its reason. */
static const char *start_child(request_rec *r, pid_t pid, apr_uint32_t gen, int hz,
                               apr_time_t child_deadline)
{
    apr_time_t deadline = apr_time_now() + START_TIMEOUT;
    char line[256];
    int fd = pprof_ipc_connect(pid, r->pool);
    const char *err = "no answer";

    if (fd < 0) {
        /* Not yet listening (it joins the window from child_init) or already gone. */
        return "not listening";
    }
    apr_snprintf(line, sizeof(line), "CPU-START %lu %d %" APR_TIME_T_FMT "\n",
                 (unsigned long)gen, hz, child_deadline);
    if (pprof_ipc_write_all(fd, line, strlen(line), deadline) == 0 &&
        pprof_ipc_read_line(fd, line, sizeof(line), deadline) == 0) {
        err = strcmp(line, "OK") == 0 ? NULL
            : apr_pstrdup(r->pool, strncmp(line, "ERR ", 4) == 0 ? line + 4 : line);
    }
    close(fd);
    return err;
}

int pprof_serve_profile(request_rec *r, apr_table_t *args)
{
    pprof_server_conf *conf = ap_get_module_config(r->server->module_config, &pprof_module);
    pprof_shared *sh = pprof_shared_get();
    double sec = pprof_seconds_or(args, 30, 1);
    const char *err = NULL;
    pid_t only = 0;
    apr_uint32_t self = (apr_uint32_t)getpid(), gen;
    apr_array_header_t *started, *now, *absent = apr_array_make(r->pool, 4, sizeof(char *));
    apr_time_t t0, t1;
    pp_profile *prof = NULL;
    pp_resolver *res = NULL;
    pp_symbolizer *sym;
    pp_maps *own = NULL;
    int64_t period = pp_cpu_period_ns(conf->cpu_hz);
    apr_uint64_t total = 0;
    int i, j, nstarted = 0, gone, rc;

    if (pprof_exceeds_timeout(r, sec)) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST,
                                 "profile duration exceeds server's WriteTimeout");
    }
    if ((err = pprof_query_pid(r, args, &only)) != NULL) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST, err);
    }
    if (!sh) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                 "Could not enable CPU profiling: mod_pprof is not initialized");
    }
    if (!pprof_window_claim(&sh->cpu, self)) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                 "Could not enable CPU profiling: cpu profiling already in use");
    }
    t0 = apr_time_now();
    gen = pprof_window_open(&sh->cpu, (apr_uint32_t)conf->cpu_hz, (apr_uint32_t)only,
                            t0 + apr_time_from_sec((apr_time_t)sec) + GRACE);
    started = pprof_children(r, (pid_t)only);
    for (i = 0; i < started->nelts; i++) {
        const char *e = start_child(r, APR_ARRAY_IDX(started, i, pid_t), gen, conf->cpu_hz,
                                    t0 + apr_time_from_sec((apr_time_t)sec) + GRACE);
        if (e) {
            err = e;
            if (strcmp(e, "not listening") != 0) {
                note_absent(r, absent, APR_ARRAY_IDX(started, i, pid_t), e);
            }
        } else {
            nstarted++;
        }
    }
    if (nstarted == 0) {
        pprof_window_close(&sh->cpu);
        pprof_window_release(&sh->cpu, self);
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, apr_pstrcat(r->pool,
                                 "Could not enable CPU profiling: ", err ? err : "no child", NULL));
    }
    gone = pprof_sleep_unless_gone(r, t0 + apr_time_from_sec((apr_time_t)sec));
    pprof_window_close(&sh->cpu);
    t1 = apr_time_now();

    /* Gather from every child that was or now is in the window. */
    now = pprof_children(r, (pid_t)only);
    for (i = 0; i < started->nelts; i++) {
        pid_t pid = APR_ARRAY_IDX(started, i, pid_t);
        for (j = 0; j < now->nelts && APR_ARRAY_IDX(now, j, pid_t) != pid; j++) {
        }
        if (j == now->nelts) {
            APR_ARRAY_PUSH(now, pid_t) = pid;
        }
    }
    if (gone) {
        /* Nobody to answer: stop every child now (their data is dropped unread). */
        for (i = 0; i < now->nelts; i++) {
            int fd = pprof_ipc_connect(APR_ARRAY_IDX(now, i, pid_t), r->pool);
            if (fd >= 0) {
                char line[64];
                apr_snprintf(line, sizeof(line), "CPU-STOP %lu\n", (unsigned long)gen);
                pprof_ipc_write_all(fd, line, strlen(line), apr_time_now() + START_TIMEOUT);
                close(fd);
            }
        }
        pprof_window_release(&sh->cpu, self);
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "PP0101: client went away; CPU profiling stopped");
        return OK;
    }
    if (!(sym = pprof_symbolizer_lock())) {
        pprof_window_release(&sh->cpu, self);
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
    }
    prof = pp_profile_new();
    res = prof ? pp_resolver_new(prof, sym) : NULL;
    own = pp_maps_read(NULL);
    if (!prof || !res || !own) {
        rc = pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to collect profile");
        goto done;
    }
    pp_profile_add_sample_type(prof, "samples", "count");
    pp_profile_add_sample_type(prof, "cpu", "nanoseconds");
    pp_profile_set_period(prof, "cpu", "nanoseconds", period);
    pp_profile_set_time(prof, (int64_t)t0 * 1000, (int64_t)(t1 - t0) * 1000);
    pp_resolver_add_mappings(res, own);
    for (i = 0; i < now->nelts; i++) {
        pid_t pid = APR_ARRAY_IDX(now, i, pid_t);
        const char *why = gather_child(r, pid, gen, prof, res, period, &total);
        for (j = 0; why && j < absent->nelts; j++) {
            /* A child that never started says so already. */
            if (strstr(APR_ARRAY_IDX(absent, j, const char *),
                       apr_psprintf(r->pool, " pid %ld ", (long)pid))) {
                why = NULL;
            }
        }
        if (why) {
            note_absent(r, absent, pid, why);
        }
    }
    for (i = 0; i < absent->nelts; i++) {
        pp_profile_add_comment(prof, APR_ARRAY_IDX(absent, i, const char *));
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "PP0100: CPU profile: %d children, %" APR_UINT64_T_FMT " samples in %.1f s",
                  now->nelts, total, (double)(t1 - t0) / APR_USEC_PER_SEC);
    rc = pprof_send_profile(r, prof, "profile");
done:
    pp_maps_free(own);
    pp_resolver_free(res);
    pp_profile_free(prof);
    pprof_symbolizer_unlock();
    pprof_window_release(&sh->cpu, self);
    return rc;
}
