/* An interning table: byte-string keys to 64-bit values, for deduplicating strings,
 * functions, locations and samples. Internal to libpprofcore; not thread-safe; never
 * used from a signal handler. */
#ifndef PP_HASH_H
#define PP_HASH_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp_hash pp_hash;

pp_hash *pp_hash_new(void);
void pp_hash_free(pp_hash *h);

/* If key is present, store its value in *val and return 1. Otherwise insert a copy of
 * key with value *val and return 0. -1: out of memory (nothing inserted). */
int pp_hash_intern(pp_hash *h, const void *key, size_t len, uint64_t *val);

/* Find only: 1 and *val set, or 0. */
int pp_hash_find(const pp_hash *h, const void *key, size_t len, uint64_t *val);

size_t pp_hash_count(const pp_hash *h);

/* FNV-1a, exposed for callers that hash their own keys. */
uint64_t pp_hash_bytes(const void *key, size_t len);

#endif
