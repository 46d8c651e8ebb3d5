#include "pprof_query.h"
#include "pprof_scoreboard.h"

#include "apr_strings.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>

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
        apr_uint64_t d = (apr_uint64_t)(*p - '0');
        /* Checked before the product, which would wrap: 2^63 for a '-', else 2^63 - 1. */
        if (*p < '0' || *p > '9' || v > ((apr_uint64_t)APR_INT64_MAX + neg - d) / 10) {
            return -1;
        }
        v = v * 10 + d;
    }
    /* -2^63 is an int64, 2^63 is not: negate what is one. */
    *out = neg ? (v ? -(apr_int64_t)(v - 1) - 1 : 0) : (apr_int64_t)v;
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

const char *pprof_query_pid(request_rec *r, apr_table_t *args, pid_t *only)
{
    const char *v = apr_table_get(args, "pid");
    apr_int64_t pid;

    *only = 0;
    if (!v) {
        return NULL;
    }
    if (pprof_parse_int(v, &pid) != 0 || pid <= 0 || pid > INT32_MAX ||
        pprof_children(r->pool, (pid_t)pid)->nelts == 0) {
        return apr_psprintf(r->pool, "pid %s is not a child process of this server", v);
    }
    *only = (pid_t)pid;
    return NULL;
}
