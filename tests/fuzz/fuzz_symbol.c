/* libFuzzer target: the Symbol endpoint's request (core/pp_symreq.c), every word checked
 * against Go's strconv.ParseUint(word, 0, 64) written out as Go's own code reads. */
#include "pp_symreq.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char lower(char c)
{
    return (char)(c | ('x' - 'X'));
}

/* strconv's underscoreOK: underscores only between digits (a base prefix counts as one). */
static int underscore_ok(const char *s, size_t n)
{
    char saw = '^';
    size_t i = 0;
    int hex = 0;

    if (n >= 1 && (s[0] == '-' || s[0] == '+')) {
        s++;
        n--;
    }
    if (n >= 2 && s[0] == '0' &&
        (lower(s[1]) == 'b' || lower(s[1]) == 'o' || lower(s[1]) == 'x')) {
        i = 2;
        saw = '0';
        hex = lower(s[1]) == 'x';
    }
    for (; i < n; i++) {
        if ((s[i] >= '0' && s[i] <= '9') || (hex && lower(s[i]) >= 'a' && lower(s[i]) <= 'f')) {
            saw = '0';
            continue;
        }
        if (s[i] == '_') {
            if (saw != '0') {
                return 0;
            }
            saw = '_';
            continue;
        }
        if (saw == '_') {
            return 0;
        }
        saw = '!';
    }
    return saw != '_';
}

/* ParseUint(s, 0, 64): 1 and *out, or 0 on a syntax or range error. */
static int go_parse_uint0(const char *s0, size_t n0, uint64_t *out)
{
    const char *s = s0;
    size_t n = n0, i;
    unsigned base = 10;
    uint64_t v = 0, cutoff;
    int underscores = 0;

    if (n == 0) {
        return 0;
    }
    if (s[0] == '0') {
        if (n >= 3 && lower(s[1]) == 'b') {
            base = 2, s += 2, n -= 2;
        } else if (n >= 3 && lower(s[1]) == 'o') {
            base = 8, s += 2, n -= 2;
        } else if (n >= 3 && lower(s[1]) == 'x') {
            base = 16, s += 2, n -= 2;
        } else {
            base = 8, s += 1, n -= 1;
        }
    }
    cutoff = UINT64_MAX / base + 1;
    for (i = 0; i < n; i++) {
        char c = s[i];
        unsigned d;
        uint64_t v1;
        if (c == '_') {
            underscores = 1;
            continue;
        } else if (c >= '0' && c <= '9') {
            d = (unsigned)(c - '0');
        } else if (lower(c) >= 'a' && lower(c) <= 'z') {
            d = (unsigned)(lower(c) - 'a' + 10);
        } else {
            return 0;
        }
        if (d >= base || v >= cutoff) {
            return 0;
        }
        v *= base;
        v1 = v + d;
        if (v1 < v) {
            return 0;
        }
        v = v1;
    }
    if (underscores && !underscore_ok(s0, n0)) {
        return 0;
    }
    *out = v;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *in = (const char *)data, *end = in + size, *p = in, *w = in;
    uint64_t pc, want;
    size_t words = 0;

    while (pp_symreq_next(&p, end, &pc)) {
        const char *plus = memchr(w, '+', (size_t)(end - w));
        size_t wlen = plus ? (size_t)(plus - w) : (size_t)(end - w);
        if (!go_parse_uint0(w, wlen, &want)) {
            want = 0;       /* Go's Symbol names nothing for it either */
        }
        if (pc != want) {
            fprintf(stderr, "word %zu \"%.*s\": read as %#llx, Go reads %#llx\n", words,
                    (int)wlen, w, (unsigned long long)pc, (unsigned long long)want);
            abort();
        }
        if (p != (plus ? plus + 1 : end) || p > end) {
            fprintf(stderr, "word %zu: the request's position went wrong\n", words);
            abort();
        }
        w = p;
        words++;
    }
    if (p != end || (size > 0 && words == 0)) {
        fprintf(stderr, "the request was not read to its end\n");
        abort();
    }
    return 0;
}
