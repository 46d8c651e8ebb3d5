#include "pp_stacktab.h"
#include "pp_hash.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PCS 1024
#define REC_HEADER 16

typedef struct {
    uint64_t key;
    uint32_t npcs;
    uint64_t *pcs;
    uint64_t values[PP_STACKTAB_MAX_VALUES];
} entry;

struct pp_stacktab {
    pp_hash *ix;
    entry *e;
    size_t n, cap, max;
    unsigned nvalues;
    uint64_t overflow;
};

pp_stacktab *pp_stacktab_new_values(size_t max_entries, unsigned nvalues)
{
    pp_stacktab *t;

    if (nvalues < 1 || nvalues > PP_STACKTAB_MAX_VALUES || !(t = calloc(1, sizeof(*t)))) {
        return NULL;
    }
    if (!(t->ix = pp_hash_new())) {
        free(t);
        return NULL;
    }
    t->max = max_entries;
    t->nvalues = nvalues;
    return t;
}

pp_stacktab *pp_stacktab_new(size_t max_entries)
{
    return pp_stacktab_new_values(max_entries, 1);
}

void pp_stacktab_clear(pp_stacktab *t)
{
    size_t i;

    for (i = 0; i < t->n; i++) {
        free(t->e[i].pcs);
    }
    t->n = 0;
    t->overflow = 0;
    pp_hash_free(t->ix);
    t->ix = pp_hash_new();
}

void pp_stacktab_free(pp_stacktab *t)
{
    if (!t) {
        return;
    }
    pp_stacktab_clear(t);
    pp_hash_free(t->ix);
    free(t->e);
    free(t);
}

long pp_stacktab_addv(pp_stacktab *t, uint64_t key, const uint64_t *pcs, uint32_t npcs,
                      const uint64_t *values)
{
    uint64_t keybuf[MAX_PCS + 2], ix = t->n;
    size_t keylen;
    entry *e;

    if (!t->ix) {
        return -2;
    }
    if (npcs > MAX_PCS) {
        npcs = MAX_PCS;
    }
    keybuf[0] = key;
    keybuf[1] = npcs;
    memcpy(&keybuf[2], pcs, npcs * sizeof(uint64_t));
    keylen = (npcs + 2) * sizeof(uint64_t);
    if (pp_hash_find(t->ix, keybuf, keylen, &ix)) {
        pp_stacktab_add_at(t, (size_t)ix, values);
        return (long)ix;
    }
    if (t->n >= t->max) {
        t->overflow += values[0];
        return -1;
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 256;
        entry *ne = realloc(t->e, ncap * sizeof(entry));
        if (!ne) {
            return -2;
        }
        t->e = ne;
        t->cap = ncap;
    }
    e = &t->e[t->n];
    if (!(e->pcs = malloc((npcs ? npcs : 1) * sizeof(uint64_t)))) {
        return -2;
    }
    ix = t->n;
    if (pp_hash_intern(t->ix, keybuf, keylen, &ix) < 0) {
        free(e->pcs);
        return -2;
    }
    memcpy(e->pcs, pcs, npcs * sizeof(uint64_t));
    e->npcs = npcs;
    e->key = key;
    memset(e->values, 0, sizeof(e->values));
    t->n++;
    pp_stacktab_add_at(t, (size_t)ix, values);
    return (long)ix;
}

void pp_stacktab_add_at(pp_stacktab *t, size_t index, const uint64_t *values)
{
    unsigned i;

    if (index >= t->n) {
        return;
    }
    for (i = 0; i < t->nvalues; i++) {
        t->e[index].values[i] += values[i];
    }
}

int pp_stacktab_add(pp_stacktab *t, uint32_t tag, uint32_t flags, const uint64_t *pcs,
                    uint32_t npcs, uint64_t count)
{
    uint64_t values[PP_STACKTAB_MAX_VALUES] = { count };
    long rc = pp_stacktab_addv(t, (uint64_t)tag | ((uint64_t)flags << 32), pcs, npcs, values);

    return rc >= 0 ? 0 : rc == -1 ? 1 : -1;
}

size_t pp_stacktab_count(const pp_stacktab *t)
{
    return t->n;
}

uint64_t pp_stacktab_overflow(const pp_stacktab *t)
{
    return t->overflow;
}

const pp_stack *pp_stacktab_get(const pp_stacktab *t, size_t i, pp_stack *out)
{
    if (i >= t->n) {
        return NULL;
    }
    out->key = t->e[i].key;
    out->npcs = t->e[i].npcs;
    out->nvalues = t->nvalues;
    out->values = t->e[i].values;
    out->pcs = t->e[i].pcs;
    out->count = out->values[0];
    out->tag = (uint32_t)out->key;
    out->flags = (uint32_t)(out->key >> 32);
    return out;
}

static void put32(unsigned char *p, uint32_t v)
{
    int i;
    for (i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static void put64(unsigned char *p, uint64_t v)
{
    int i;
    for (i = 0; i < 8; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

static uint32_t get32(const unsigned char *p)
{
    uint32_t v = 0;
    int i;
    for (i = 3; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

static uint64_t get64(const unsigned char *p)
{
    uint64_t v = 0;
    int i;
    for (i = 7; i >= 0; i--) {
        v = (v << 8) | p[i];
    }
    return v;
}

int pp_stacktab_serialize(const pp_stacktab *t, unsigned char **out, size_t *outlen)
{
    size_t len = 0, i, j;
    unsigned char *buf, *p;

    for (i = 0; i < t->n; i++) {
        len += REC_HEADER + (t->nvalues + t->e[i].npcs) * 8;
    }
    if (!(buf = malloc(len ? len : 1))) {
        return -1;
    }
    p = buf;
    for (i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        put64(p, e->key);
        put32(p + 8, e->npcs);
        put32(p + 12, t->nvalues);
        p += REC_HEADER;
        for (j = 0; j < t->nvalues; j++, p += 8) {
            put64(p, e->values[j]);
        }
        for (j = 0; j < e->npcs; j++, p += 8) {
            put64(p, e->pcs[j]);
        }
    }
    *out = buf;
    *outlen = len;
    return 0;
}

int pp_stacktab_parse(const unsigned char *buf, size_t len,
                      void (*fn)(void *baton, const pp_stack *s), void *baton)
{
    uint64_t pcs[MAX_PCS], values[PP_STACKTAB_MAX_VALUES];
    size_t off = 0, j;

    while (off < len) {
        pp_stack s;
        if (len - off < REC_HEADER) {
            return -1;
        }
        s.key = get64(buf + off);
        s.npcs = get32(buf + off + 8);
        s.nvalues = get32(buf + off + 12);
        off += REC_HEADER;
        if (s.npcs > MAX_PCS || s.nvalues < 1 || s.nvalues > PP_STACKTAB_MAX_VALUES ||
            (len - off) / 8 < (size_t)s.npcs + s.nvalues) {
            return -1;
        }
        for (j = 0; j < s.nvalues; j++, off += 8) {
            values[j] = get64(buf + off);
        }
        for (j = 0; j < s.npcs; j++, off += 8) {
            pcs[j] = get64(buf + off);
        }
        s.values = values;
        s.pcs = pcs;
        s.count = values[0];
        s.tag = (uint32_t)s.key;
        s.flags = (uint32_t)(s.key >> 32);
        fn(baton, &s);
    }
    return 0;
}
