/* libFuzzer target: the query every endpoint parses (mod_pprof/pprof_query.c, built here
 * with httpd's headers): pprof_parse_query on the raw input (every pair it keeps is
 * read back), then the input as one value: pprof_parse_int against Go's
 * strconv.ParseInt(s, 10, 64) written out, pprof_parse_float for what its callers rely
 * on. A value reaches them as apr_table_get gives it: a C string, so the input is cut at
 * its first NUL. */
#include "pprof_query.h"

#include "apr_pools.h"
#include "apr_tables.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* ParseInt(s, 10, 64): an optional sign, then decimal digits only, within int64. */
static int go_parse_int10(const char *s, int64_t *out)
{
    int neg = 0;
    uint64_t v = 0, limit;

    if (*s == '+' || *s == '-') {
        neg = *s++ == '-';
    }
    if (!*s) {
        return 0;
    }
    limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
    for (; *s; s++) {
        unsigned d = (unsigned)(*s - '0');
        if (*s < '0' || *s > '9' || v > (limit - d) / 10) {
            return 0;
        }
        v = v * 10 + d;
    }
    *out = neg ? (int64_t)(0 - v) : (int64_t)v;
    return 1;
}

/* The query parser: whatever it keeps is a C string per key and value, no longer than
 * the input (unescaping only shortens, "%00" stays as it is), and an input without '&'
 * gives at most one pair. */
static void fuzz_query(const char *s)
{
    static apr_pool_t *pool;
    const apr_array_header_t *arr;
    const apr_table_entry_t *e;
    apr_table_t *t;
    size_t n = strlen(s);
    int i;

    if (!pool) {
        apr_pool_initialize();
        apr_pool_create(&pool, NULL);
    }
    t = apr_table_make(pool, 4);
    pprof_parse_query(pool, t, s);
    arr = apr_table_elts(t);
    e = (const apr_table_entry_t *)arr->elts;
    for (i = 0; i < arr->nelts; i++) {
        if (strlen(e[i].key) > n || strlen(e[i].val) > n) {
            fprintf(stderr, "pprof_parse_query(\"%s\"): a pair longer than the query\n", s);
            abort();
        }
    }
    if (!strchr(s, '&') && arr->nelts > 1) {
        fprintf(stderr, "pprof_parse_query(\"%s\"): %d pairs without '&'\n", s, arr->nelts);
        abort();
    }
    apr_pool_clear(pool);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *s = malloc(size + 1);
    apr_int64_t got = 0;
    int64_t want = 0;
    double d = 0;
    int ok, want_ok;

    if (!s) {
        return 0;
    }
    memcpy(s, data, size);
    s[size] = '\0';
    fuzz_query(s);
    ok = pprof_parse_int(s, &got) == 0;
    want_ok = *s && go_parse_int10(s, &want);
    if (ok != want_ok || (ok && got != want)) {
        fprintf(stderr, "pprof_parse_int(\"%s\"): %s %lld, Go: %s %lld\n", s,
                ok ? "ok" : "error", (long long)got, want_ok ? "ok" : "error",
                (long long)want);
        abort();
    }
    if (pprof_parse_float(s, &d) == 0) {
        /* Go's ParseFloat gives a NaN for "nan" in any case, and for nothing else. */
        if (isnan(d) != (strcasecmp(s, "nan") == 0)) {
            fprintf(stderr, "pprof_parse_float(\"%s\") is %g\n", s, d);
            abort();
        }
    } else if (ok) {
        /* Every integer is a float. */
        fprintf(stderr, "pprof_parse_float(\"%s\") refuses an integer\n", s);
        abort();
    }
    if (ok && d != (double)got) {
        fprintf(stderr, "pprof_parse_float(\"%s\") = %.17g, not %lld\n", s, d, (long long)got);
        abort();
    }
    free(s);
    return 0;
}
