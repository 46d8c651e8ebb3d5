#include "pp_hash.h"

#include <stdlib.h>
#include <string.h>

typedef struct {
    uint64_t hash;
    uint64_t val;
    size_t len;
    unsigned char *key;     /* NULL: empty slot */
} slot;

struct pp_hash {
    slot *slots;
    size_t cap;             /* power of two */
    size_t count;
};

uint64_t pp_hash_bytes(const void *key, size_t len)
{
    const unsigned char *p = key;
    uint64_t h = 1469598103934665603ULL;
    size_t i;

    for (i = 0; i < len; i++) {
        h ^= p[i];
        h *= 1099511628211ULL;
    }
    return h ^ (h >> 29);
}

pp_hash *pp_hash_new(void)
{
    pp_hash *h = calloc(1, sizeof(*h));

    if (!h) {
        return NULL;
    }
    h->cap = 64;
    h->slots = calloc(h->cap, sizeof(slot));
    if (!h->slots) {
        free(h);
        return NULL;
    }
    return h;
}

void pp_hash_free(pp_hash *h)
{
    size_t i;

    if (!h) {
        return;
    }
    for (i = 0; i < h->cap; i++) {
        free(h->slots[i].key);
    }
    free(h->slots);
    free(h);
}

static slot *lookup(const pp_hash *h, uint64_t hash, const void *key, size_t len)
{
    size_t mask = h->cap - 1, i = hash & mask;

    for (;;) {
        slot *s = &h->slots[i];
        if (!s->key) {
            return s;
        }
        if (s->hash == hash && s->len == len && memcmp(s->key, key, len) == 0) {
            return s;
        }
        i = (i + 1) & mask;
    }
}

static int grow(pp_hash *h)
{
    size_t ncap = h->cap * 2, i;
    slot *old = h->slots, *ns = calloc(ncap, sizeof(slot));
    size_t ocap = h->cap;

    if (!ns) {
        return -1;
    }
    h->slots = ns;
    h->cap = ncap;
    for (i = 0; i < ocap; i++) {
        if (old[i].key) {
            *lookup(h, old[i].hash, old[i].key, old[i].len) = old[i];
        }
    }
    free(old);
    return 0;
}

int pp_hash_find(const pp_hash *h, const void *key, size_t len, uint64_t *val)
{
    slot *s = lookup(h, pp_hash_bytes(key, len), key, len);

    if (!s->key) {
        return 0;
    }
    *val = s->val;
    return 1;
}

int pp_hash_intern(pp_hash *h, const void *key, size_t len, uint64_t *val)
{
    uint64_t hash = pp_hash_bytes(key, len);
    slot *s;

    /* Keep the load under 1/2 so probes stay short. */
    if ((h->count + 1) * 2 > h->cap && grow(h) != 0) {
        return -1;
    }
    s = lookup(h, hash, key, len);
    if (s->key) {
        *val = s->val;
        return 1;
    }
    /* One extra byte so a zero-length key still gets a non-NULL allocation. */
    s->key = malloc(len + 1);
    if (!s->key) {
        return -1;
    }
    memcpy(s->key, key, len);
    s->hash = hash;
    s->len = len;
    s->val = *val;
    h->count++;
    return 0;
}

size_t pp_hash_count(const pp_hash *h)
{
    return h->count;
}
