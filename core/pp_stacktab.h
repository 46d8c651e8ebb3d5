/* A bounded table of raw stacks, each with a few counters: where a process aggregates
 * samples between collections (CPU: one count per (request tag, flags, stack); heap: four
 * counters per (object size, stack)), and the wire format in which it hands them to a
 * collector in another process. Not thread-safe; never used from a signal handler. */
#ifndef PP_STACKTAB_H
#define PP_STACKTAB_H

#include <stddef.h>
#include <stdint.h>

#define PP_STACKTAB_MAX_VALUES 8

typedef struct pp_stacktab pp_stacktab;

typedef struct {
    uint64_t key;               /* what, besides the stack, tells entries apart */
    uint32_t npcs;
    uint32_t nvalues;
    const uint64_t *values;
    const uint64_t *pcs;        /* leaf first */
    /* The one-counter view (pp_stacktab_new): key split in two, values[0]. */
    uint64_t count;
    uint32_t tag;               /* low 32 bits of key */
    uint32_t flags;             /* high 32 bits of key */
} pp_stack;

/* A table of one counter per entry. max_entries bounds the distinct stacks kept; later
 * new stacks are counted as overflow (pp_stacktab_overflow), never stored. */
pp_stacktab *pp_stacktab_new(size_t max_entries);

/* The same with nvalues counters per entry (1..PP_STACKTAB_MAX_VALUES). */
pp_stacktab *pp_stacktab_new_values(size_t max_entries, unsigned nvalues);

void pp_stacktab_free(pp_stacktab *t);
void pp_stacktab_clear(pp_stacktab *t);

/* One counter: key = tag | flags << 32, count added. 0: added; 1: table full, counted as
 * overflow; -1: out of memory. */
int pp_stacktab_add(pp_stacktab *t, uint32_t tag, uint32_t flags, const uint64_t *pcs,
                    uint32_t npcs, uint64_t count);

/* Add values (nvalues of them) to the entry (key, pcs), creating it. Returns its index
 * (stable until pp_stacktab_clear), -1 when the table is full (values[0] counted as
 * overflow) and -2 on out of memory. */
long pp_stacktab_addv(pp_stacktab *t, uint64_t key, const uint64_t *pcs, uint32_t npcs,
                      const uint64_t *values);

/* Add values to the entry at index. */
void pp_stacktab_add_at(pp_stacktab *t, size_t index, const uint64_t *values);

size_t pp_stacktab_count(const pp_stacktab *t);
uint64_t pp_stacktab_overflow(const pp_stacktab *t);
const pp_stack *pp_stacktab_get(const pp_stacktab *t, size_t i, pp_stack *out);

/* Serialize as little-endian records: u64 key, u32 npcs, u32 nvalues, then nvalues u64
 * values and npcs u64 PCs. *out is malloc'ed. */
int pp_stacktab_serialize(const pp_stacktab *t, unsigned char **out, size_t *outlen);

/* Walk serialized records; calls fn for each. -1 if the buffer is malformed (nothing
 * past the bad record is reported). */
int pp_stacktab_parse(const unsigned char *buf, size_t len,
                      void (*fn)(void *baton, const pp_stack *s), void *baton);

#endif
