/* The stack table: merging, its bound, and the wire format it hands to a collector. */
#include "pp_stacktab.h"

#include <check.h>
#include "unit_main.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_COLLECTED 64

/* What pp_stacktab_parse reported, copied out (its pcs pointer does not outlive fn). */
typedef struct {
    size_t n;
    uint64_t count[MAX_COLLECTED];
    uint32_t tag[MAX_COLLECTED], flags[MAX_COLLECTED], npcs[MAX_COLLECTED];
    uint64_t *pcs[MAX_COLLECTED];
} collected;

static void collect(void *baton, const pp_stack *s)
{
    collected *c = baton;

    ck_assert_uint_lt(c->n, MAX_COLLECTED);
    c->count[c->n] = s->count;
    c->tag[c->n] = s->tag;
    c->flags[c->n] = s->flags;
    c->npcs[c->n] = s->npcs;
    c->pcs[c->n] = malloc((s->npcs ? s->npcs : 1) * sizeof(uint64_t));
    ck_assert_ptr_nonnull(c->pcs[c->n]);
    if (s->npcs) {
        memcpy(c->pcs[c->n], s->pcs, s->npcs * sizeof(uint64_t));
    }
    c->n++;
}

static void collected_free(collected *c)
{
    size_t i;

    for (i = 0; i < c->n; i++) {
        free(c->pcs[i]);
    }
    memset(c, 0, sizeof(*c));
}

static void put32(unsigned char *p, uint32_t v)
{
    int i;

    for (i = 0; i < 4; i++) {
        p[i] = (unsigned char)(v >> (8 * i));
    }
}

/* The table's entry i, checked field by field. */
static void assert_entry(const pp_stacktab *t, size_t i, uint64_t count, uint32_t tag,
                         uint32_t flags, const uint64_t *pcs, uint32_t npcs)
{
    pp_stack st;
    const pp_stack *s = pp_stacktab_get(t, i, &st);

    ck_assert_ptr_nonnull(s);
    ck_assert_uint_eq(s->count, count);
    ck_assert_uint_eq(s->tag, tag);
    ck_assert_uint_eq(s->flags, flags);
    ck_assert_uint_eq(s->npcs, npcs);
    if (npcs) {
        ck_assert_mem_eq(s->pcs, pcs, npcs * sizeof(uint64_t));
    }
}

START_TEST(identical_keys_merge_and_sum_counts)
{
    pp_stacktab *t = pp_stacktab_new(16);
    uint64_t a[3] = { 0x401000, 0x402000, 0x403000 };
    uint64_t same[3] = { 0x401000, 0x402000, 0x403000 };    /* equal content, other memory */
    pp_stack st;

    ck_assert_ptr_nonnull(t);
    ck_assert_uint_eq(pp_stacktab_count(t), 0);
    ck_assert_ptr_null(pp_stacktab_get(t, 0, &st));
    ck_assert_int_eq(pp_stacktab_add(t, 7, 0, a, 3, 1), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 7, 0, same, 3, 5), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 7, 0, a, 3, 10), 0);
    ck_assert_uint_eq(pp_stacktab_count(t), 1);
    assert_entry(t, 0, 16, 7, 0, a, 3);
    ck_assert_ptr_null(pp_stacktab_get(t, 1, &st));
    ck_assert_uint_eq(pp_stacktab_overflow(t), 0);
    /* The table keeps its own copy of the PCs. */
    a[0] = 0xdead;
    assert_entry(t, 0, 16, 7, 0, same, 3);
    pp_stacktab_free(t);
    pp_stacktab_free(NULL);
}
END_TEST

START_TEST(tag_flags_and_pcs_each_make_distinct_entries)
{
    pp_stacktab *t = pp_stacktab_new(64);
    uint64_t base[3] = { 0x1000, 0x2000, 0x3000 };
    uint64_t other_leaf[3] = { 0x1001, 0x2000, 0x3000 };
    uint64_t other_root[3] = { 0x1000, 0x2000, 0x3001 };
    uint64_t reversed[3] = { 0x3000, 0x2000, 0x1000 };
    size_t i;

    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, base, 3, 1), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 2, 0, base, 3, 2), 0);         /* tag */
    ck_assert_int_eq(pp_stacktab_add(t, 1, 1, base, 3, 3), 0);         /* flags */
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, other_leaf, 3, 4), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, other_root, 3, 5), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, reversed, 3, 6), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, base, 2, 7), 0);         /* a prefix */
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, base, 1, 8), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, base, 0, 9), 0);         /* no PCs at all */
    /* Tag and flags are not confused with each other, nor with the PCs. */
    ck_assert_int_eq(pp_stacktab_add(t, 0, 1, base, 3, 10), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0x80000000u, 0, base, 3, 11), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0x80000000u, base, 3, 12), 0);
    ck_assert_uint_eq(pp_stacktab_count(t), 12);

    /* Insertion order, each with its own count. */
    assert_entry(t, 0, 1, 1, 0, base, 3);
    assert_entry(t, 1, 2, 2, 0, base, 3);
    assert_entry(t, 2, 3, 1, 1, base, 3);
    assert_entry(t, 3, 4, 1, 0, other_leaf, 3);
    assert_entry(t, 4, 5, 1, 0, other_root, 3);
    assert_entry(t, 5, 6, 1, 0, reversed, 3);
    assert_entry(t, 6, 7, 1, 0, base, 2);
    assert_entry(t, 7, 8, 1, 0, base, 1);
    assert_entry(t, 8, 9, 1, 0, base, 0);
    assert_entry(t, 9, 10, 0, 1, base, 3);
    assert_entry(t, 10, 11, 0x80000000u, 0, base, 3);
    assert_entry(t, 11, 12, 0, 0x80000000u, base, 3);

    /* Every one of them merges with itself again, not with a neighbour. */
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, base, 0, 100), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 1, 0, base, 2, 100), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 2, 0, base, 3, 100), 0);
    ck_assert_uint_eq(pp_stacktab_count(t), 12);
    assert_entry(t, 8, 109, 1, 0, base, 0);
    assert_entry(t, 6, 107, 1, 0, base, 2);
    assert_entry(t, 1, 102, 2, 0, base, 3);
    for (i = 0; i < 12; i++) {
        pp_stack st;
        ck_assert_ptr_nonnull(pp_stacktab_get(t, i, &st));
    }
    ck_assert_uint_eq(pp_stacktab_overflow(t), 0);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(the_bound_sends_new_stacks_to_overflow)
{
    pp_stacktab *t = pp_stacktab_new(3);
    uint64_t pcs[1];
    uint64_t i;

    for (i = 0; i < 3; i++) {
        pcs[0] = 0x1000 + i;
        ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 1, 1), 0);
    }
    ck_assert_uint_eq(pp_stacktab_count(t), 3);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 0);

    /* New stacks: counted, never stored. */
    pcs[0] = 0x2000;
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 1, 5), 1);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 1, 7), 1);
    pcs[0] = 0x1000;
    ck_assert_int_eq(pp_stacktab_add(t, 9, 0, pcs, 1, 11), 1);         /* known PCs, new tag */
    ck_assert_uint_eq(pp_stacktab_count(t), 3);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 23);

    /* Known stacks still merge. */
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 1, 100), 0);
    pcs[0] = 0x1002;
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 1, 200), 0);
    ck_assert_uint_eq(pp_stacktab_count(t), 3);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 23);
    pcs[0] = 0x1000;
    assert_entry(t, 0, 101, 0, 0, pcs, 1);
    pcs[0] = 0x1001;
    assert_entry(t, 1, 1, 0, 0, pcs, 1);
    pcs[0] = 0x1002;
    assert_entry(t, 2, 201, 0, 0, pcs, 1);
    pp_stacktab_free(t);

    /* A table of no entries overflows at once. */
    t = pp_stacktab_new(0);
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 1, 4), 1);
    ck_assert_uint_eq(pp_stacktab_count(t), 0);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 4);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(a_large_table_grows)
{
    pp_stacktab *t = pp_stacktab_new(5000);
    uint64_t pcs[4] = { 0, 0x2000, 0x3000, 0x4000 };
    uint64_t i;

    for (i = 0; i < 5000; i++) {
        pcs[0] = 0x100000 + i;
        ck_assert_int_eq(pp_stacktab_add(t, (uint32_t)(i % 3), 0, pcs, 4, i + 1), 0);
    }
    for (i = 0; i < 5000; i++) {
        pcs[0] = 0x100000 + i;
        ck_assert_int_eq(pp_stacktab_add(t, (uint32_t)(i % 3), 0, pcs, 4, 1), 0);
    }
    ck_assert_uint_eq(pp_stacktab_count(t), 5000);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 0);
    for (i = 0; i < 5000; i += 499) {
        pcs[0] = 0x100000 + i;
        assert_entry(t, (size_t)i, i + 2, (uint32_t)(i % 3), 0, pcs, 4);
    }
    pcs[0] = 0x1;
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, pcs, 4, 1), 1);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(clear_empties_the_table_and_its_overflow)
{
    pp_stacktab *t = pp_stacktab_new(2);
    uint64_t a[2] = { 0x10, 0x20 }, b[2] = { 0x30, 0x40 }, c[2] = { 0x50, 0x60 };
    pp_stack st;

    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, a, 2, 3), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, b, 2, 4), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, c, 2, 5), 1);
    pp_stacktab_clear(t);
    ck_assert_uint_eq(pp_stacktab_count(t), 0);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 0);
    ck_assert_ptr_null(pp_stacktab_get(t, 0, &st));

    /* The bound applies afresh, and old keys are gone: b starts again from its own count. */
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, c, 2, 1), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, b, 2, 2), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, a, 2, 9), 1);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, b, 2, 2), 0);
    ck_assert_uint_eq(pp_stacktab_count(t), 2);
    ck_assert_uint_eq(pp_stacktab_overflow(t), 9);
    assert_entry(t, 0, 1, 0, 0, c, 2);
    assert_entry(t, 1, 4, 0, 0, b, 2);

    /* Clearing twice, and clearing an empty table, are fine. */
    pp_stacktab_clear(t);
    pp_stacktab_clear(t);
    ck_assert_uint_eq(pp_stacktab_count(t), 0);
    ck_assert_int_eq(pp_stacktab_add(t, 0, 0, a, 2, 1), 0);
    ck_assert_uint_eq(pp_stacktab_count(t), 1);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(serialize_then_parse_round_trips)
{
    pp_stacktab *t = pp_stacktab_new(100);
    uint64_t s1[3] = { 0x7f0000001234ULL, 0x55d0c0010000ULL, 0xffffffffffffffffULL };
    uint64_t s2[1] = { 0x0123456789abcdefULL };
    uint64_t deep[1000];
    unsigned char *buf;
    size_t len, i, j;
    collected c;
    pp_stack st;

    for (i = 0; i < 1000; i++) {
        deep[i] = 0x400000 + i * 0x10;
    }
    pp_stacktab_add(t, 0xdeadbeefu, 1, s1, 3, 0xfedcba9876543210ULL);
    pp_stacktab_add(t, 0, 0, s2, 1, 1);
    pp_stacktab_add(t, 42, 0, s1, 0, 3);
    pp_stacktab_add(t, 1, 0x80000001u, deep, 1000, 17);
    pp_stacktab_add(t, 0, 0, s2, 1, 2);                 /* merges into the second */
    ck_assert_uint_eq(pp_stacktab_count(t), 4);

    ck_assert_int_eq(pp_stacktab_serialize(t, &buf, &len), 0);
    ck_assert_ptr_nonnull(buf);
    ck_assert_uint_eq(len, 4 * 24 + (3 + 1 + 0 + 1000) * 8);

    /* The documented layout, byte for byte, for the first record. */
    {
        static const unsigned char rec0[24 + 8] = {
            0xef, 0xbe, 0xad, 0xde,                             /* key: tag */
            0x01, 0x00, 0x00, 0x00,                             /* key: flags */
            0x03, 0x00, 0x00, 0x00,                             /* npcs */
            0x01, 0x00, 0x00, 0x00,                             /* nvalues */
            0x10, 0x32, 0x54, 0x76, 0x98, 0xba, 0xdc, 0xfe,     /* values[0]: count */
            0x34, 0x12, 0x00, 0x00, 0x00, 0x7f, 0x00, 0x00,     /* pcs[0] */
        };
        ck_assert_mem_eq(buf, rec0, sizeof(rec0));
    }

    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), 0);
    ck_assert_uint_eq(c.n, pp_stacktab_count(t));
    for (i = 0; i < c.n; i++) {
        const pp_stack *s = pp_stacktab_get(t, i, &st);
        ck_assert_uint_eq(c.count[i], s->count);
        ck_assert_uint_eq(c.tag[i], s->tag);
        ck_assert_uint_eq(c.flags[i], s->flags);
        ck_assert_uint_eq(c.npcs[i], s->npcs);
        for (j = 0; j < s->npcs; j++) {
            ck_assert_uint_eq(c.pcs[i][j], s->pcs[j]);
        }
    }
    ck_assert_uint_eq(c.count[0], 0xfedcba9876543210ULL);
    ck_assert_uint_eq(c.tag[0], 0xdeadbeefu);
    ck_assert_uint_eq(c.pcs[0][2], 0xffffffffffffffffULL);
    ck_assert_uint_eq(c.count[1], 3);
    ck_assert_uint_eq(c.npcs[2], 0);
    ck_assert_uint_eq(c.tag[2], 42);
    ck_assert_uint_eq(c.npcs[3], 1000);
    ck_assert_uint_eq(c.flags[3], 0x80000001u);
    ck_assert_uint_eq(c.pcs[3][999], 0x400000 + 999 * 0x10);
    collected_free(&c);

    /* Parsed stacks fed into another table serialize to the same bytes. */
    {
        pp_stacktab *t2 = pp_stacktab_new(100);
        unsigned char *buf2;
        size_t len2;

        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), 0);
        for (i = 0; i < c.n; i++) {
            ck_assert_int_eq(pp_stacktab_add(t2, c.tag[i], c.flags[i], c.pcs[i], c.npcs[i],
                                             c.count[i]), 0);
        }
        ck_assert_int_eq(pp_stacktab_serialize(t2, &buf2, &len2), 0);
        ck_assert_uint_eq(len2, len);
        ck_assert_mem_eq(buf2, buf, len);
        free(buf2);
        collected_free(&c);
        pp_stacktab_free(t2);
    }
    free(buf);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(parse_rejects_truncated_buffers)
{
    pp_stacktab *t = pp_stacktab_new(10);
    uint64_t a[2] = { 0x1111, 0x2222 }, b[3] = { 0x3333, 0x4444, 0x5555 };
    unsigned char *buf, *copy;
    size_t len, cut;
    collected c;

    pp_stacktab_add(t, 1, 0, a, 2, 10);
    pp_stacktab_add(t, 2, 0, b, 3, 20);
    ck_assert_int_eq(pp_stacktab_serialize(t, &buf, &len), 0);
    ck_assert_uint_eq(len, 24 + 16 + 24 + 24);

    /* Every prefix: whole records parse, anything else is -1 after the whole records. Each
     * prefix is copied to a buffer of exactly its length so that a read past it is seen by
     * ASan/valgrind. */
    for (cut = 0; cut < len; cut++) {
        int rc;

        copy = malloc(cut ? cut : 1);
        memcpy(copy, buf, cut);
        memset(&c, 0, sizeof(c));
        rc = pp_stacktab_parse(copy, cut, collect, &c);
        if (cut == 0 || cut == 40) {
            ck_assert_int_eq(rc, 0);
        } else {
            ck_assert_msg(rc == -1, "prefix of %zu bytes: %d", cut, rc);
        }
        ck_assert_uint_eq(c.n, cut >= 40 ? 1 : 0);
        if (c.n) {
            ck_assert_uint_eq(c.count[0], 10);
            ck_assert_uint_eq(c.npcs[0], 2);
        }
        collected_free(&c);
        free(copy);
    }
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), 0);
    ck_assert_uint_eq(c.n, 2);
    collected_free(&c);
    free(buf);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(parse_rejects_an_absurd_npcs)
{
    static const uint32_t absurd[] = { 0xffffffffu, 0x80000000u, 0x20000000u, 0x10000001u,
                                       1u << 21, 100000u };
    pp_stacktab *t = pp_stacktab_new(10);
    uint64_t a[2] = { 0x1111, 0x2222 };
    unsigned char *buf, *big;
    size_t len, i;
    collected c;

    pp_stacktab_add(t, 1, 0, a, 2, 10);
    pp_stacktab_add(t, 2, 0, a, 1, 20);
    ck_assert_int_eq(pp_stacktab_serialize(t, &buf, &len), 0);
    ck_assert_uint_eq(len, 40 + 32);

    for (i = 0; i < sizeof(absurd) / sizeof(absurd[0]); i++) {
        /* In the first record: nothing is reported. */
        put32(buf + 8, absurd[i]);
        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), -1);
        ck_assert_uint_eq(c.n, 0);
        put32(buf + 8, 2);
        /* In the second: the first record is reported, nothing past the bad one. */
        put32(buf + 40 + 8, absurd[i]);
        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), -1);
        ck_assert_uint_eq(c.n, 1);
        ck_assert_uint_eq(c.count[0], 10);
        collected_free(&c);
        put32(buf + 40 + 8, 1);
    }
    /* One PC more than the buffer holds. */
    put32(buf + 40 + 8, 2);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), -1);
    ck_assert_uint_eq(c.n, 1);
    collected_free(&c);
    put32(buf + 40 + 8, 1);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), 0);
    ck_assert_uint_eq(c.n, 2);
    collected_free(&c);

    /* Likewise an absurd count of values: none, more than a table can have, or huge. */
    {
        static const uint32_t bad_nvalues[] = { 0, PP_STACKTAB_MAX_VALUES + 1, 0xffffffffu };

        for (i = 0; i < sizeof(bad_nvalues) / sizeof(bad_nvalues[0]); i++) {
            put32(buf + 12, bad_nvalues[i]);
            memset(&c, 0, sizeof(c));
            ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), -1);
            ck_assert_uint_eq(c.n, 0);
            put32(buf + 12, 1);
        }
        /* Two values where one was written: the second record's header becomes data and
         * what is left no longer adds up. */
        put32(buf + 12, 2);
        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), -1);
        collected_free(&c);
        put32(buf + 12, 1);
        memset(&c, 0, sizeof(c));
        ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), 0);
        ck_assert_uint_eq(c.n, 2);
        collected_free(&c);
    }

    /* A huge npcs with a buffer that really is that long is still refused, not read into
     * a bounded array: 100000 PCs. */
    big = calloc(1, 24 + (size_t)100000 * 8);
    ck_assert_ptr_nonnull(big);
    put32(big + 8, 100000);
    put32(big + 12, 1);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(pp_stacktab_parse(big, 24 + (size_t)100000 * 8, collect, &c), -1);
    ck_assert_uint_eq(c.n, 0);
    free(big);
    free(buf);
    pp_stacktab_free(t);
}
END_TEST

START_TEST(an_empty_table_serializes_to_nothing)
{
    pp_stacktab *t = pp_stacktab_new(10);
    uint64_t a[1] = { 0x1 };
    unsigned char *buf = NULL;
    size_t len = 99;
    collected c;

    ck_assert_int_eq(pp_stacktab_serialize(t, &buf, &len), 0);
    ck_assert_uint_eq(len, 0);
    free(buf);
    memset(&c, 0, sizeof(c));
    ck_assert_int_eq(pp_stacktab_parse(NULL, 0, collect, &c), 0);
    ck_assert_uint_eq(c.n, 0);

    /* Emptied by clear, likewise. */
    pp_stacktab_add(t, 0, 0, a, 1, 1);
    pp_stacktab_clear(t);
    buf = NULL;
    len = 99;
    ck_assert_int_eq(pp_stacktab_serialize(t, &buf, &len), 0);
    ck_assert_uint_eq(len, 0);
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &c), 0);
    ck_assert_uint_eq(c.n, 0);
    free(buf);
    pp_stacktab_free(t);
}
END_TEST

/* Several counters per entry (the heap's four), indices stable for pp_stacktab_add_at. */
static void collect_values(void *baton, const pp_stack *s)
{
    uint64_t *out = baton;
    unsigned i;

    ck_assert_uint_eq(s->nvalues, 4);
    for (i = 0; i < 4; i++) {
        out[s->key * 4 + i] = s->values[i];
    }
}

START_TEST(several_values_per_entry)
{
    pp_stacktab *t = pp_stacktab_new_values(8, 4);
    uint64_t pcs[2] = { 0x10, 0x20 }, v1[4] = { 1, 100, 0, 0 }, v2[4] = { 0, 0, 1, 100 };
    uint64_t got[8] = { 0 };
    unsigned char *buf;
    size_t len;
    long a, b;
    pp_stack st;

    ck_assert_ptr_null(pp_stacktab_new_values(8, 0));
    ck_assert_ptr_null(pp_stacktab_new_values(8, PP_STACKTAB_MAX_VALUES + 1));
    a = pp_stacktab_addv(t, 0, pcs, 2, v1);
    b = pp_stacktab_addv(t, 1, pcs, 2, v1);
    ck_assert_int_eq(a, 0);
    ck_assert_int_eq(b, 1);
    ck_assert_int_eq(pp_stacktab_addv(t, 0, pcs, 2, v1), a);
    pp_stacktab_add_at(t, (size_t)a, v2);
    pp_stacktab_add_at(t, 99, v2);                     /* out of range: ignored */
    ck_assert_ptr_nonnull(pp_stacktab_get(t, (size_t)a, &st));
    ck_assert_uint_eq(st.values[0], 2);
    ck_assert_uint_eq(st.values[1], 200);
    ck_assert_uint_eq(st.values[2], 1);
    ck_assert_uint_eq(st.values[3], 100);
    ck_assert_int_eq(pp_stacktab_serialize(t, &buf, &len), 0);
    ck_assert_uint_eq(len, 2 * (16 + 4 * 8 + 2 * 8));
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect_values, got), 0);
    ck_assert_uint_eq(got[0], 2);
    ck_assert_uint_eq(got[3], 100);
    ck_assert_uint_eq(got[4], 1);
    ck_assert_uint_eq(got[7], 0);
    free(buf);
    pp_stacktab_free(t);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_stacktab");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, identical_keys_merge_and_sum_counts);
    tcase_add_test(tc, tag_flags_and_pcs_each_make_distinct_entries);
    tcase_add_test(tc, the_bound_sends_new_stacks_to_overflow);
    tcase_add_test(tc, a_large_table_grows);
    tcase_add_test(tc, clear_empties_the_table_and_its_overflow);
    tcase_add_test(tc, serialize_then_parse_round_trips);
    tcase_add_test(tc, parse_rejects_truncated_buffers);
    tcase_add_test(tc, parse_rejects_an_absurd_npcs);
    tcase_add_test(tc, an_empty_table_serializes_to_nothing);
    tcase_add_test(tc, several_values_per_entry);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
