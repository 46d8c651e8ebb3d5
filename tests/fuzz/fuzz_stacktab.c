/* libFuzzer target: the stack table's wire records (core/pp_stacktab.c), which a
 * collector reads from every child. What parses is added to a table like the collector's,
 * and the table's own serialization must parse again to the same entries. */
#include "pp_stacktab.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

typedef struct {
    pp_stacktab *tab;
    unsigned nvalues;
    size_t records;
    uint64_t sum;
} ctx;

static void take(void *baton, const pp_stack *s)
{
    ctx *c = baton;
    uint32_t i;

    for (i = 0; i < s->nvalues; i++) {
        c->sum += s->values[i];
    }
    for (i = 0; i < s->npcs; i++) {
        c->sum ^= s->pcs[i];
    }
    if (s->count != s->values[0] || s->tag != (uint32_t)s->key ||
        s->flags != (uint32_t)(s->key >> 32)) {
        abort();
    }
    c->records++;
    if (!c->tab) {
        c->nvalues = s->nvalues;
        c->tab = pp_stacktab_new_values(64, s->nvalues);
    }
    if (c->tab && s->nvalues == c->nvalues) {
        (void)pp_stacktab_addv(c->tab, s->key, s->pcs, s->npcs, s->values);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    ctx c = { 0 }, again = { 0 };
    unsigned char *out = NULL;
    size_t outlen = 0;

    (void)pp_stacktab_parse(data, size, take, &c);
    if (!c.tab) {
        return 0;
    }
    if (pp_stacktab_serialize(c.tab, &out, &outlen) == 0) {
        if (pp_stacktab_parse(out, outlen, take, &again) != 0 ||
            again.records != pp_stacktab_count(c.tab)) {
            fprintf(stderr, "a table's own records do not parse back\n");
            abort();
        }
        free(out);
    }
    pp_stacktab_free(again.tab);
    pp_stacktab_free(c.tab);
    return 0;
}
