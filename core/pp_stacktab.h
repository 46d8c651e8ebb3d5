/* A bounded table of raw stacks with counts: where a process aggregates its samples
 * between collections, and the wire format in which it hands them to a collector in
 * another process. Keys are (tag, flags, PCs); values are counts. Not thread-safe; never
 * used from a signal handler. */
#ifndef PP_STACKTAB_H
#define PP_STACKTAB_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp_stacktab pp_stacktab;

typedef struct {
    uint64_t count;
    uint32_t tag;
    uint32_t flags;
    uint32_t npcs;
    const uint64_t *pcs;        /* leaf first */
} pp_stack;

/* max_entries bounds the distinct stacks kept; later new stacks are counted as
 * overflow (pp_stacktab_overflow), never stored. */
pp_stacktab *pp_stacktab_new(size_t max_entries);
void pp_stacktab_free(pp_stacktab *t);
void pp_stacktab_clear(pp_stacktab *t);

/* 0: added; 1: table full, counted as overflow; -1: out of memory. */
int pp_stacktab_add(pp_stacktab *t, uint32_t tag, uint32_t flags, const uint64_t *pcs,
                    uint32_t npcs, uint64_t count);

size_t pp_stacktab_count(const pp_stacktab *t);
uint64_t pp_stacktab_overflow(const pp_stacktab *t);
const pp_stack *pp_stacktab_get(const pp_stacktab *t, size_t i, pp_stack *out);

/* Serialize as little-endian records: u64 count, u32 tag, u32 flags, u32 npcs, u32 0,
 * then npcs u64 PCs. *out is malloc'ed. */
int pp_stacktab_serialize(const pp_stacktab *t, unsigned char **out, size_t *outlen);

/* Walk serialized records; calls fn for each. -1 if the buffer is malformed (nothing
 * past the bad record is reported). */
int pp_stacktab_parse(const unsigned char *buf, size_t len,
                      void (*fn)(void *baton, const pp_stack *s), void *baton);

#endif
