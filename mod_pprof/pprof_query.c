#include "pprof_query.h"
#include "pprof_scoreboard.h"

#include "apr_strings.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static int hexval(char c)
{
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    if (c >= 'a' && c <= 'f') {
        return c - 'a' + 10;
    }
    if (c >= 'A' && c <= 'F') {
        return c - 'A' + 10;
    }
    return -1;
}

/* Go's QueryUnescape of s[0, n) into a new string from p: '+' is a space, "%XX" the byte
 * XX; NULL for a '%' not followed by two hex digits (Go's EscapeError). A "%00" is kept
 * as these three characters when keep_nul, else it fails too (see pprof_parse_query). */
static char *query_unescape(apr_pool_t *p, const char *s, apr_size_t n, int keep_nul)
{
    char *out = apr_palloc(p, n + 1), *o = out;
    apr_size_t i;

    for (i = 0; i < n; i++) {
        int hi, lo;

        if (s[i] == '+') {
            *o++ = ' ';
            continue;
        }
        if (s[i] != '%') {
            *o++ = s[i];
            continue;
        }
        if (n - i < 3 || (hi = hexval(s[i + 1])) < 0 || (lo = hexval(s[i + 2])) < 0) {
            return NULL;
        }
        if (hi == 0 && lo == 0) {
            if (!keep_nul) {
                return NULL;
            }
            memcpy(o, s + i, 3);
            o += 3;
        } else {
            *o++ = (char)(hi * 16 + lo);
        }
        i += 2;
    }
    *o = '\0';
    return out;
}

int pprof_parse_query(apr_pool_t *p, apr_table_t *into, const char *query)
{
    const char *pair = query, *amp, *eq;
    int semicolons = 0;

    /* Go's parseQuery, pair by pair: a bad pair is skipped, the rest still parsed. */
    while (pair && *pair) {
        apr_size_t len;
        char *key, *value;

        amp = strchr(pair, '&');
        len = amp ? (apr_size_t)(amp - pair) : strlen(pair);
        if (memchr(pair, ';', len)) {
            semicolons++;
        } else if (len > 0) {
            eq = memchr(pair, '=', len);
            key = query_unescape(p, pair, eq ? (apr_size_t)(eq - pair) : len, 0);
            value = !eq ? "" : query_unescape(p, eq + 1, len - (apr_size_t)(eq + 1 - pair), 1);
            if (key && value) {
                /* addn keeps duplicates in order: apr_table_get gives the first. */
                apr_table_addn(into, key, value);
            }
        }
        pair = amp ? amp + 1 : NULL;
    }
    return semicolons;
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

    if (pprof_parse_int(args ? apr_table_get(args, name) : NULL, &v) != 0) {
        return 0;
    }
    return v > INT_MAX ? INT_MAX : v < INT_MIN ? INT_MIN : (int)v;
}

/* Compares s with the lower-case word w, ignoring case; the length of their common
 * prefix. */
static size_t prefix_nocase(const char *s, const char *w)
{
    size_t n = 0;

    while (w[n] && (s[n] == w[n] || (s[n] >= 'A' && s[n] <= 'Z' && s[n] + 32 == w[n]))) {
        n++;
    }
    return n;
}

/* Go's underscoreOK: each '_' sits between digits (a base prefix counts as a digit). */
static int underscore_ok(const char *s, size_t n)
{
    char saw = '^';
    size_t i = 0;
    int hex = 0;

    if (n >= 1 && (*s == '+' || *s == '-')) {
        s++;
        n--;
    }
    if (n >= 2 && s[0] == '0' && strchr("bBoOxX", s[1])) {
        i = 2;
        saw = '0';
        hex = s[1] == 'x' || s[1] == 'X';
    }
    for (; i < n; i++) {
        if ((s[i] >= '0' && s[i] <= '9') || (hex && hexval(s[i]) >= 0)) {
            saw = '0';
        } else if (s[i] == '_') {
            if (saw != '0') {
                return 0;
            }
            saw = '_';
        } else if (saw == '_') {
            return 0;
        } else {
            saw = '!';
        }
    }
    return saw != '_';
}

/* Go's readFloat as a syntax check of the whole of s: 1 if ParseFloat reads all of it as
 * a number (not one of the special words), with *underscores set if it holds any. */
static int go_float_syntax(const char *s, int *underscores)
{
    size_t i = 0, n = strlen(s);
    int hex = 0, sawdot = 0, sawdigits = 0;

    *underscores = 0;
    if (i < n && (s[i] == '+' || s[i] == '-')) {
        i++;
    }
    if (i + 2 < n && s[i] == '0' && (s[i + 1] == 'x' || s[i + 1] == 'X')) {
        hex = 1;
        i += 2;
    }
    for (; i < n; i++) {
        if (s[i] == '_') {
            *underscores = 1;
        } else if (s[i] == '.') {
            if (sawdot) {
                break;
            }
            sawdot = 1;
        } else if ((s[i] >= '0' && s[i] <= '9') || (hex && hexval(s[i]) >= 0)) {
            sawdigits = 1;
        } else {
            break;
        }
    }
    if (!sawdigits) {
        return 0;
    }
    if (i < n && (s[i] == (hex ? 'p' : 'e') || s[i] == (hex ? 'P' : 'E'))) {
        i++;
        if (i < n && (s[i] == '+' || s[i] == '-')) {
            i++;
        }
        if (i >= n || s[i] < '0' || s[i] > '9') {
            return 0;
        }
        for (; i < n && ((s[i] >= '0' && s[i] <= '9') || s[i] == '_'); i++) {
            *underscores |= s[i] == '_';
        }
    } else if (hex) {
        return 0;               /* a hexadecimal mantissa needs its 'p' exponent */
    }
    if (*underscores && !underscore_ok(s, i)) {
        return 0;
    }
    return i == n;
}

int pprof_parse_float(const char *s, double *out)
{
    const char *w = s;
    char *buf = NULL, *end;
    int underscores, sign = 1, rc = -1;
    size_t n;
    double v;

    if (!s || !*s) {
        return -1;
    }
    /* Go's special(): a signed or unsigned "inf"/"infinity", an unsigned "nan". */
    if (*w == '+' || *w == '-') {
        sign = *w++ == '-' ? -1 : 1;
    }
    if (((n = prefix_nocase(w, "infinity")) == 8 && w[8] == '\0') || (n == 3 && !w[3])) {
        *out = sign * HUGE_VAL;
        return 0;
    }
    if (w == s && prefix_nocase(s, "nan") == 3 && s[3] == '\0') {
        *out = NAN;
        return 0;
    }
    if (!go_float_syntax(s, &underscores)) {
        return -1;
    }
    if (underscores) {
        /* strtod reads no '_': the digits without them are the same number. */
        char *o = buf = malloc(strlen(s) + 1);
        if (!buf) {
            return -1;
        }
        for (w = s; *w; w++) {
            if (*w != '_') {
                *o++ = *w;
            }
        }
        *o = '\0';
        s = buf;
    }
    /* glibc's strtod rounds both forms correctly as Go does, in the "C" locale httpd runs
     * in. An underflow (ERANGE, 0 or subnormal) is a number for Go; an overflow is its
     * ErrRange. */
    v = strtod(s, &end);
    if (*end == '\0' && !isinf(v)) {
        *out = v;
        rc = 0;
    }
    free(buf);
    return rc;
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
    /* Go's "sec <= 0 || err != nil": a NaN is neither, and stays (pprof_window_length). */
    return (pprof_parse_float(v, &d) != 0 || d <= 0) ? dflt : d;
}

apr_interval_time_t pprof_window_length(double seconds)
{
    /* Go converts seconds * 1e9 to an int64 Duration; amd64 turns a NaN or an
     * out-of-range value into the most negative one, which time.After fires at once. */
    if (!(seconds * 1e9 < 9223372036854775807.0) || seconds <= 0) {
        return 0;
    }
    return (apr_interval_time_t)(seconds * APR_USEC_PER_SEC);
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
