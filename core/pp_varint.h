/* The base-128 varint that protobuf and Go's execution trace both write: seven bits a
 * byte, low bits first, the top bit set on every byte but the last. Internal to the core
 * (pp_wire's hand-packed sections, pp_trace's events). */
#ifndef PP_VARINT_H
#define PP_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* Bytes v takes: 1 to 10. */
static inline size_t pp_varint_len(uint64_t v)
{
    size_t n = 1;

    while (v >= 0x80) {
        v >>= 7;
        n++;
    }
    return n;
}

/* Writes v at p (room for 10 bytes); returns the bytes written. */
static inline size_t pp_varint_put(unsigned char *p, uint64_t v)
{
    size_t n = 0;

    while (v >= 0x80) {
        p[n++] = (unsigned char)(v | 0x80);
        v >>= 7;
    }
    p[n++] = (unsigned char)v;
    return n;
}

#endif
