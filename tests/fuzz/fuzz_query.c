/* libFuzzer target: the query values every endpoint parses (mod_pprof/pprof_query.c,
 * built here with httpd's headers): pprof_parse_int against Go's strconv.ParseInt(s, 10,
 * 64) written out, pprof_parse_float for what its callers rely on. A value reaches them
 * as apr_table_get gives it: a C string, so the input is cut at its first NUL. */
#include "pprof_query.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
    ok = pprof_parse_int(s, &got) == 0;
    want_ok = *s && go_parse_int10(s, &want);
    if (ok != want_ok || (ok && got != want)) {
        fprintf(stderr, "pprof_parse_int(\"%s\"): %s %lld, Go: %s %lld\n", s,
                ok ? "ok" : "error", (long long)got, want_ok ? "ok" : "error",
                (long long)want);
        abort();
    }
    if (pprof_parse_float(s, &d) == 0) {
        /* Go's seconds: a NaN would pass every "d > 0" check the wrong way. */
        if (isnan(d)) {
            fprintf(stderr, "pprof_parse_float(\"%s\") is NaN\n", s);
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
