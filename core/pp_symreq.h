/* The request of the Symbol endpoint (Go's net/http/pprof Symbol): the POST body, or the
 * GET query, is a '+'-separated list of words, each an address for strconv.ParseUint(word,
 * 0, 64). Pure parsing of untrusted bytes: no allocation, no state. */
#ifndef PP_SYMREQ_H
#define PP_SYMREQ_H

#include <stddef.h>
#include <stdint.h>

/* One word as Go's strconv.ParseUint(word, 0, 64) reads it: 0x/0o/0b prefixes, a leading
 * 0 for octal, underscores between digits, no sign, no spaces, any length. 0 for anything
 * else, which Go's Symbol skips (out of range too: Go's maximum names no code either). */
uint64_t pp_symreq_addr(const char *word, size_t len);

/* The next word of the request [*p, end): 1 with its address in *pc (0 when it is none)
 * and *p past the word and its '+'; 0 once *p reaches end. */
int pp_symreq_next(const char **p, const char *end, uint64_t *pc);

#endif
