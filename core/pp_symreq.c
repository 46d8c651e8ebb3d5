#include "pp_symreq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

uint64_t pp_symreq_addr(const char *s, size_t len)
{
    char buf[80], *end;
    int base = 10;
    const char *digits = buf;
    unsigned long long v;

    if (len == 0 || len >= sizeof(buf)) {
        return 0;
    }
    memcpy(buf, s, len);
    buf[len] = '\0';
    if (buf[0] < '0' || buf[0] > '9') {
        return 0;
    }
    if (buf[0] == '0' && len > 1) {
        switch (buf[1]) {
        case 'x': case 'X': base = 16; digits = buf + 2; break;
        case 'o': case 'O': base = 8; digits = buf + 2; break;
        case 'b': case 'B': base = 2; digits = buf + 2; break;
        default: base = 8; digits = buf + 1; break;
        }
    }
    if (!*digits || *digits == '-' || *digits == '+' || *digits == ' ') {
        return 0;
    }
    errno = 0;
    v = strtoull(digits, &end, base);
    if (errno || *end) {
        return 0;
    }
    return (uint64_t)v;
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
