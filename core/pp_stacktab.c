#include "pp_stacktab.h"
#include "pp_hash.h"

#include <stdlib.h>
#include <string.h>

#define MAX_PCS 1024
#define REC_HEADER 24

typedef struct {
    uint64_t count;
    uint32_t tag, flags, npcs;
    uint64_t *pcs;
} entry;

struct pp_stacktab {
    pp_hash *ix;
    entry *e;
    size_t n, cap, max;
    uint64_t overflow;
};

pp_stacktab *pp_stacktab_new(size_t max_entries)
{
    pp_stacktab *t = calloc(1, sizeof(*t));

    if (!t || !(t->ix = pp_hash_new())) {
        free(t);
        return NULL;
    }
    t->max = max_entries;
    return t;
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

int pp_stacktab_add(pp_stacktab *t, uint32_t tag, uint32_t flags, const uint64_t *pcs,
                    uint32_t npcs, uint64_t count)
{
    uint64_t keybuf[MAX_PCS + 2], ix = t->n;
    size_t keylen;
    int rc;

    if (!t->ix) {
        return -1;
    }
    if (npcs > MAX_PCS) {
        npcs = MAX_PCS;
    }
    keybuf[0] = ((uint64_t)tag << 32) | flags;
    keybuf[1] = npcs;
    memcpy(&keybuf[2], pcs, npcs * sizeof(uint64_t));
    keylen = (npcs + 2) * sizeof(uint64_t);
    if (pp_hash_find(t->ix, keybuf, keylen, &ix)) {
        t->e[ix].count += count;
        return 0;
    }
    if (t->n >= t->max) {
        t->overflow += count;
        return 1;
    }
    if (t->n == t->cap) {
        size_t ncap = t->cap ? t->cap * 2 : 256;
        entry *ne = realloc(t->e, ncap * sizeof(entry));
        if (!ne) {
            return -1;
        }
        t->e = ne;
        t->cap = ncap;
    }
    if (!(t->e[t->n].pcs = malloc((npcs ? npcs : 1) * sizeof(uint64_t)))) {
        return -1;
    }
    ix = t->n;
    rc = pp_hash_intern(t->ix, keybuf, keylen, &ix);
    if (rc < 0) {
        free(t->e[t->n].pcs);
        return -1;
    }
    memcpy(t->e[t->n].pcs, pcs, npcs * sizeof(uint64_t));
    t->e[t->n].npcs = npcs;
    t->e[t->n].tag = tag;
    t->e[t->n].flags = flags;
    t->e[t->n].count = count;
    t->n++;
    return 0;
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
    out->count = t->e[i].count;
    out->tag = t->e[i].tag;
    out->flags = t->e[i].flags;
    out->npcs = t->e[i].npcs;
    out->pcs = t->e[i].pcs;
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
        len += REC_HEADER + t->e[i].npcs * 8;
    }
    if (!(buf = malloc(len ? len : 1))) {
        return -1;
    }
    p = buf;
    for (i = 0; i < t->n; i++) {
        const entry *e = &t->e[i];
        put64(p, e->count);
        put32(p + 8, e->tag);
        put32(p + 12, e->flags);
        put32(p + 16, e->npcs);
        put32(p + 20, 0);
        p += REC_HEADER;
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
    uint64_t pcs[MAX_PCS];
    size_t off = 0, j;

    while (off < len) {
        pp_stack s;
        if (len - off < REC_HEADER) {
            return -1;
        }
        s.count = get64(buf + off);
        s.tag = get32(buf + off + 8);
        s.flags = get32(buf + off + 12);
        s.npcs = get32(buf + off + 16);
        off += REC_HEADER;
        if (s.npcs > MAX_PCS || (len - off) / 8 < s.npcs) {
            return -1;
        }
        for (j = 0; j < s.npcs; j++, off += 8) {
            pcs[j] = get64(buf + off);
        }
        s.pcs = pcs;
        fn(baton, &s);
    }
    return 0;
}
