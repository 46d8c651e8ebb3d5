#include "pprof_collect.h"

#include "ap_mpm.h"
#include "http_connection.h"
#include "http_core.h"
#include "scoreboard.h"
#include "apr_strings.h"
#include "util_filter.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <unistd.h>

apr_array_header_t *pprof_children(request_rec *r, pid_t only)
{
    apr_array_header_t *pids = apr_array_make(r->pool, 16, sizeof(pid_t));
    pid_t self = getpid();
    int limit = 0, i, have_self = 0;

    if (ap_scoreboard_image && ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) == APR_SUCCESS) {
        for (i = 0; i < limit; i++) {
            process_score *ps = ap_get_scoreboard_process(i);
            pid_t pid = ps ? ps->pid : 0;
            if (pid <= 0 || (only && pid != only) || kill(pid, 0) != 0) {
                continue;
            }
            have_self |= pid == self;
            APR_ARRAY_PUSH(pids, pid_t) = pid;
        }
    }
    if (!have_self && (!only || only == self)) {
        APR_ARRAY_PUSH(pids, pid_t) = self;
    }
    return pids;
}

const char *pprof_query_pid(request_rec *r, apr_table_t *args, pid_t *only)
{
    const char *v = apr_table_get(args, "pid");
    apr_int64_t pid;

    *only = 0;
    if (!v) {
        return NULL;
    }
    if (pprof_parse_int(v, &pid) != 0 || pid <= 0 || pid > INT32_MAX ||
        pprof_children(r, (pid_t)pid)->nelts == 0) {
        return apr_psprintf(r->pool, "pid %s is not a child process of this server", v);
    }
    *only = (pid_t)pid;
    return NULL;
}

static apr_status_t free_maps(void *m)
{
    pp_maps_free(m);
    return APR_SUCCESS;
}

int pprof_call_child(request_rec *r, pid_t pid, const char *cmd, int nblobs,
                     pprof_reply *rep, pp_maps **maps)
{
    int rc = pprof_ipc_call(r->pool, pid, cmd, nblobs, rep,
                            apr_time_now() + apr_time_from_sec(30));

    if (rc != 0) {
        return rc;
    }
    if (!(*maps = pp_maps_parse(rep->blob[0], rep->len[0]))) {
        return -1;
    }
    apr_pool_cleanup_register(r->pool, *maps, free_maps, apr_pool_cleanup_null);
    return 0;
}

int pprof_client_gone(request_rec *r)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb;
    apr_status_t rv;
    int gone;

    /* httpd's own word: a failed write (any protocol), or mod_http2 marking the stream's
     * connection aborted when the client resets the stream or closes the connection. */
    if (c->aborted || (c->master && c->master->aborted)) {
        return 1;
    }
    if (c->master) {
        /* An HTTP/2 stream owns no socket: its reset reaches us through aborted. */
        return 0;
    }
    /* HTTP/1.x, plain or TLS: ask the connection's input filters (mod_ssl included) for
     * one byte, without waiting and without consuming it. End of stream or an error means
     * the client closed; nothing yet, or pipelined bytes, mean it is still there. */
    bb = apr_brigade_create(r->pool, c->bucket_alloc);
    rv = ap_get_brigade(c->input_filters, bb, AP_MODE_SPECULATIVE, APR_NONBLOCK_READ, 1);
    if (APR_STATUS_IS_EAGAIN(rv)) {
        gone = 0;
    } else if (rv != APR_SUCCESS) {
        gone = 1;
    } else {
        gone = !APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb));
    }
    apr_brigade_destroy(bb);
    if (gone) {
        c->aborted = 1;
    }
    return gone;
}

int pprof_sleep_unless_gone(request_rec *r, apr_time_t until)
{
    for (;;) {
        apr_time_t left = until - apr_time_now();
        if (left <= 0) {
            return 0;
        }
        if (pprof_client_gone(r)) {
            return 1;
        }
        apr_sleep(left < apr_time_from_msec(100) ? left : apr_time_from_msec(100));
    }
}

int pprof_parse_int(const char *s, apr_int64_t *out)
{
    const char *p = s;
    int neg = 0;
    apr_uint64_t v = 0;

    if (!s || !*s) {
        return -1;
    }
    if (*p == '+' || *p == '-') {
        neg = *p == '-';
        p++;
    }
    if (!*p) {
        return -1;
    }
    for (; *p; p++) {
        if (*p < '0' || *p > '9') {
            return -1;
        }
        v = v * 10 + (apr_uint64_t)(*p - '0');
        if (v > (apr_uint64_t)APR_INT64_MAX + (apr_uint64_t)neg) {
            return -1;
        }
    }
    *out = neg ? -(apr_int64_t)v : (apr_int64_t)v;
    return 0;
}

int pprof_query_int(apr_table_t *args, const char *name)
{
    apr_int64_t v;

    if (pprof_parse_int(args ? apr_table_get(args, name) : NULL, &v) != 0 || v > INT_MAX ||
        v < INT_MIN) {
        return 0;
    }
    return (int)v;
}

int pprof_parse_float(const char *s, double *out)
{
    char *end;
    double v;

    if (!s || !*s || isspace((unsigned char)*s)) {
        return -1;
    }
    errno = 0;
    v = strtod(s, &end);
    if (*end || errno == ERANGE || isnan(v)) {
        return -1;
    }
    *out = v;
    return 0;
}

int pprof_exceeds_timeout(request_rec *r, double seconds)
{
    apr_interval_time_t t = r->server->timeout;

    return t != 0 && seconds >= (double)t / APR_USEC_PER_SEC;
}

double pprof_seconds_or(apr_table_t *args, double dflt, int integer)
{
    const char *v = args ? apr_table_get(args, "seconds") : NULL;
    apr_int64_t i;
    double d;

    if (integer) {
        return (pprof_parse_int(v, &i) != 0 || i <= 0) ? dflt : (double)i;
    }
    return (pprof_parse_float(v, &d) != 0 || !(d > 0)) ? dflt : d;
}

const char *pprof_delta_seconds(request_rec *r, apr_table_t *args, apr_int64_t *sec)
{
    if (pprof_parse_int(apr_table_get(args, "seconds"), sec) != 0 || *sec <= 0) {
        return "invalid value for \"seconds\" - must be a positive integer";
    }
    if (pprof_exceeds_timeout(r, (double)*sec)) {
        return "profile duration exceeds server's WriteTimeout";
    }
    if (pprof_query_int(args, "debug") != 0) {
        return "seconds and debug params are incompatible";
    }
    return NULL;
}
