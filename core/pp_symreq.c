#include "pp_symreq.h"

#include <string.h>

/* A character's value as a digit of any base up to 36; 36 for what is no digit. */
static unsigned digit_value(char c)
{
    if (c >= '0' && c <= '9') {
        return (unsigned)(c - '0');
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'z' ? (unsigned)(c - 'a') + 10 : 36;
}

uint64_t pp_symreq_addr(const char *s, size_t len)
{
    const char *p = s, *end = s + len;
    unsigned base = 10;
    uint64_t v = 0;
    int after_digit;            /* an underscore may only come between digits */

    if (len == 0 || s[0] < '0' || s[0] > '9') {
        return 0;
    }
    if (s[0] == '0') {
        char x = len >= 3 ? (char)(s[1] | 0x20) : 0;
        base = x == 'x' ? 16 : x == 'o' ? 8 : x == 'b' ? 2 : 8;
        /* The prefix, or the octal 0, counts as a digit for the underscores. */
        p += (x == 'x' || x == 'o' || x == 'b') ? 2 : 1;
    }
    after_digit = p > s;
    for (; p < end; p++) {
        unsigned d;
        if (*p == '_') {
            if (!after_digit) {
                return 0;
            }
            after_digit = 0;
            continue;
        }
        if ((d = digit_value(*p)) >= base || v > (UINT64_MAX - d) / base) {
            return 0;           /* no digit of the base, or out of range */
        }
        v = v * base + d;
        after_digit = 1;
    }
    return after_digit ? v : 0;
}

int pp_symreq_next(const char **p, const char *end, uint64_t *pc)
{
    const char *w = *p, *plus;
    size_t wlen;

    if (w >= end) {
        return 0;
    }
    plus = memchr(w, '+', (size_t)(end - w));
    wlen = plus ? (size_t)(plus - w) : (size_t)(end - w);
    *pc = pp_symreq_addr(w, wlen);
    *p = plus ? plus + 1 : end;
    return 1;
}
