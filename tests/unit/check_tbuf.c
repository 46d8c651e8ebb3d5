/* Unit tests of the per-thread trace rings (pp_tbuf): records round trip in order, other
 * generations are skipped, a held task start is published with its type, a full ring
 * drops and counts and then wraps, malformed buffers are refused by the walk, and a trim
 * gives a ring's pages back. */
#include "pp_tbuf.h"

#include <check.h>
#include "unit_main.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

typedef struct {
    int n;
    int kinds[64];
    uint64_t a[64];
    char text[64][64];
} seen;

static int collect(void *baton, const pp_tb_record *r, const char *text)
{
    seen *s = baton;
    if (s->n < 64) {
        s->kinds[s->n] = r->kind;
        s->a[s->n] = r->a;
        snprintf(s->text[s->n], sizeof(s->text[0]), "%s", text);
        s->n++;
    }
    return 0;
}

START_TEST(ring_round_trip_and_generations)
{
    pp_tbuf *b = pp_tbuf_new(4096);
    unsigned char out[4096];
    seen s;
    int more;
    size_t n;

    ck_assert_ptr_nonnull(b);
    ck_assert_int_eq(pp_tbuf_put(b, 7, PP_TB_WAKE, 100, 0, 0, NULL, 0), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 6, PP_TB_IDLE, 101, 0, 0, NULL, 0), 0);   /* stale */
    ck_assert_int_eq(pp_tbuf_put(b, 7, PP_TB_REGION_BEGIN, 102, 5, 0, "handler", 7), 0);
    n = pp_tbuf_read(b, 7, out, sizeof(out), &more);
    ck_assert_int_eq(more, 0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(pp_tbuf_walk(out, n, collect, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.kinds[0], PP_TB_WAKE);
    ck_assert_str_eq(s.text[0], "");
    ck_assert_int_eq(s.kinds[1], PP_TB_REGION_BEGIN);
    ck_assert_str_eq(s.text[1], "handler");
    /* Without text a record is its header alone; with it, the text, its NUL and the pad. */
    ck_assert_uint_eq(n, sizeof(pp_tb_record) + sizeof(pp_tb_record) + 8);
    ck_assert_int_eq(pp_tbuf_read(b, 7, out, sizeof(out), &more), 0);
    pp_tbuf_free(b);
}
END_TEST

START_TEST(held_task_is_published_with_its_type)
{
    pp_tbuf *b = pp_tbuf_new(4096);
    unsigned char out[4096];
    seen s;
    int more;
    size_t n;

    ck_assert_int_eq(pp_tbuf_put_task(b, 1, 10, 42), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_REGION_BEGIN, 11, 42, 0, "read_request", 12), 0);
    /* Nothing is visible until the task has its type. */
    ck_assert_int_eq(pp_tbuf_read(b, 1, out, sizeof(out), &more), 0);
    pp_tbuf_task_type(b, "a-handler-name-that-is-much-longer-than-thirty-two-bytes");
    n = pp_tbuf_read(b, 1, out, sizeof(out), &more);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(pp_tbuf_walk(out, n, collect, &s), 0);
    ck_assert_int_eq(s.n, 2);
    ck_assert_int_eq(s.kinds[0], PP_TB_TASK_BEGIN);
    ck_assert_uint_eq(s.a[0], 42);
    ck_assert_int_eq((int)strlen(s.text[0]), PP_TB_TYPE_MAX - 1);
    ck_assert_str_eq(s.text[1], "read_request");
    pp_tbuf_free(b);
}
END_TEST

START_TEST(full_ring_drops_and_counts_then_wraps)
{
    pp_tbuf *b = pp_tbuf_new(4096);
    unsigned char out[4096];
    int more, i, ok = 0, total = 0;
    size_t n;

    for (i = 0; i < 1000; i++) {
        ok += pp_tbuf_put(b, 1, PP_TB_WAKE, (uint64_t)i, (uint64_t)i, 0, NULL, 0) == 0;
    }
    ck_assert_int_eq(ok, 4096 / 32);    /* records without text: the header alone */
    ck_assert_uint_eq(pp_tbuf_dropped(b), (uint64_t)(1000 - ok));
    /* Read in two small pieces, then write across the ring's end many times. */
    n = pp_tbuf_read(b, 1, out, 320, &more);
    ck_assert_int_eq(more, 1);
    ck_assert_uint_eq(n, 320);
    for (i = 0; i < 5000; i++) {
        seen s;
        n = pp_tbuf_read(b, 1, out, sizeof(out), &more);
        total += (int)(n / 32);
        ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_LOG, (uint64_t)i, 1, 0, "k\0value", 7), 0);
        n = pp_tbuf_read(b, 1, out, sizeof(out), &more);
        memset(&s, 0, sizeof(s));
        ck_assert_int_eq(pp_tbuf_walk(out, n, collect, &s), 0);
        ck_assert_int_eq(s.n, 1);
        ck_assert_str_eq(s.text[0], "k");
        ck_assert_str_eq((const char *)out + sizeof(pp_tb_record) + 2, "value");
    }
    ck_assert_int_eq(total, ok - 10);
    pp_tbuf_free(b);
}
END_TEST

/* The writer keeps the reader's position from its last look (tail_seen) and looks again
 * only when that says full: a ring the reader emptied takes records again at once, and
 * one it did not keeps refusing them. */
START_TEST(full_ring_looks_again_at_the_reader)
{
    pp_tbuf *b = pp_tbuf_new(4096);
    unsigned char out[4096];
    int more, i;

    for (i = 0; i < 4096 / 32; i++) {
        ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, (uint64_t)i, 0, 0, NULL, 0), 0);
    }
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 0, 0, 0, NULL, 0), -1);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 0, 0, 0, NULL, 0), -1);
    ck_assert_uint_eq(pp_tbuf_dropped(b), 2);
    ck_assert_uint_eq(pp_tbuf_read(b, 1, out, 64, &more), 64);     /* two records */
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 0, 0, 0, NULL, 0), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 0, 0, 0, NULL, 0), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 0, 0, 0, NULL, 0), -1);
    ck_assert_uint_eq(pp_tbuf_dropped(b), 3);
    pp_tbuf_free(b);
}
END_TEST

/* pcs_end: where the last wait with PCs ends, so that a reader knows without reading the
 * records whether what it sends has PCs. */
START_TEST(pcs_end_marks_the_last_wait_with_pcs)
{
    pp_tbuf *b = pp_tbuf_new(4096);
    uint64_t end;

    ck_assert_uint_eq(pp_tbuf_pcs_end(b), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 1, 0, 0, NULL, 0), 0);
    /* a block without PCs (b 0) and other kinds with b set do not count */
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_BLOCK, 2, PP_TB_BLOCK_NET, 0, "poll", 4), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_REGION_BEGIN, 3, 5, 1, NULL, 0), 0);
    ck_assert_uint_eq(pp_tbuf_pcs_end(b), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_BLOCK, 4, PP_TB_BLOCK_SYNC, 1, "f 0x1", 5), 0);
    end = pp_tbuf_pcs_end(b);
    /* 32 + 40 + 32 bytes before it, itself 32 + 8 */
    ck_assert_uint_eq(end, 32 + 40 + 32 + 40);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_UNBLOCK, 5, 0, 0, NULL, 0), 0);
    ck_assert_uint_eq(pp_tbuf_pcs_end(b), end);
    pp_tbuf_free(b);
}
END_TEST

/* A rewind: an emptied ring written past its first 4 KiB goes on from its start; readers
 * that looked before it neither take tail back nor see records that are not there. */
START_TEST(an_emptied_ring_rewinds_to_its_start)
{
    pp_tbuf *b = pp_tbuf_new(16384);
    unsigned char out[16384], scratch[PP_TB_RECORD_MAX];
    pp_tbuf_piece piece[3];
    seen s;
    uint64_t pos, old;
    int more, i;

    for (i = 0; i < 200; i++) {     /* 6400 bytes */
        ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, (uint64_t)i, 0, 0, NULL, 0), 0);
    }
    /* Not empty: no rewind. */
    pp_tbuf_rewind(b);
    pos = pp_tbuf_peek(b, 1, piece, scratch);
    ck_assert_uint_eq(pos, 6400);
    ck_assert_uint_eq(piece[0].len, 6400);
    old = pos;
    pp_tbuf_consume(b, pos);
    ck_assert_uint_eq(pp_tbuf_pending(b), 0);
    /* Empty: the next record is at the ring's start, a lap on. */
    pp_tbuf_rewind(b);
    ck_assert_uint_eq(pp_tbuf_pending(b), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_LOG, 7, 1, 0, "k\0v", 3), 0);
    pos = pp_tbuf_peek(b, 1, piece, scratch);
    ck_assert_uint_eq(pos, 16384 + 40);
    ck_assert_uint_eq(piece[0].len, 40);
    ck_assert_uint_eq(piece[1].len + piece[2].len, 0);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(pp_tbuf_walk(piece[0].data, piece[0].len, collect, &s), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.text[0], "k");
    /* A reader's older position never takes tail back. */
    pp_tbuf_consume(b, old);
    ck_assert_uint_eq(pp_tbuf_pending(b), 40);
    ck_assert_uint_eq(pp_tbuf_read(b, 1, out, sizeof(out), &more), 40);
    /* Near the start (under 4 KiB written since): no rewind. */
    pp_tbuf_rewind(b);
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, 8, 0, 0, NULL, 0), 0);
    ck_assert_uint_eq(pp_tbuf_peek(b, 1, piece, scratch), 16384 + 40 + 32);
    pp_tbuf_free(b);
}
END_TEST

/* Pages of the ring's mapping (it starts at the handle) that are resident. */
static int resident_pages(const pp_tbuf *b, size_t capacity)
{
    long page = sysconf(_SC_PAGESIZE);
    size_t len = capacity + (size_t)page, i, n = 0;
    unsigned char vec[64];

    ck_assert_uint_le(len / (size_t)page, sizeof(vec));
    ck_assert_int_eq(mincore((void *)b, len, vec), 0);
    for (i = 0; i < len / (size_t)page; i++) {
        n += vec[i] & 1;
    }
    return (int)n;
}

START_TEST(trim_gives_the_pages_back)
{
    size_t cap = 128 * 1024;
    pp_tbuf *b = pp_tbuf_new(cap);
    unsigned char *out = malloc(cap);
    int more, full, after;
    seen s;
    size_t n;

    ck_assert_ptr_nonnull(b);
    ck_assert_ptr_nonnull(out);
    while (pp_tbuf_put(b, 1, PP_TB_WAKE, 1, 2, 0, NULL, 0) == 0) {
    }
    full = resident_pages(b, cap);
    ck_assert_int_ge(full, (int)(cap / 4096));
    pp_tbuf_trim(b);
    after = resident_pages(b, cap);
    ck_assert_msg(after <= 1, "%d of %d pages still resident after the trim", after, full);
    ck_assert_uint_eq(pp_tbuf_pending(b), 0);
    /* The ring works on after it. */
    ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_LOG, 5, 1, 0, "k\0value", 7), 0);
    n = pp_tbuf_read(b, 1, out, cap, &more);
    memset(&s, 0, sizeof(s));
    ck_assert_int_eq(pp_tbuf_walk(out, n, collect, &s), 0);
    ck_assert_int_eq(s.n, 1);
    ck_assert_str_eq(s.text[0], "k");
    free(out);
    pp_tbuf_free(b);
}
END_TEST

START_TEST(walk_rejects_malformed_buffers)
{
    unsigned char buf[64];
    pp_tb_record r;

    memset(buf, 0, sizeof(buf));
    memset(&r, 0, sizeof(r));
    r.kind = PP_TB_WAKE;
    r.size = 1000;
    memcpy(buf, &r, sizeof(r));
    ck_assert_int_eq(pp_tbuf_walk(buf, 40, collect, NULL), -1);
    r.size = 40;
    r.kind = 99;
    memcpy(buf, &r, sizeof(r));
    ck_assert_int_eq(pp_tbuf_walk(buf, 40, collect, NULL), -1);
    ck_assert_int_eq(pp_tbuf_walk(buf, 20, collect, NULL), -1);
    /* Shorter than a header; text without its NUL. */
    r.kind = PP_TB_WAKE;
    r.size = 24;
    memcpy(buf, &r, sizeof(r));
    ck_assert_int_eq(pp_tbuf_walk(buf, 40, collect, NULL), -1);
    r.size = 40;
    memcpy(buf, &r, sizeof(r));
    memset(buf + sizeof(r), 'x', 8);
    ck_assert_int_eq(pp_tbuf_walk(buf, 40, collect, NULL), -1);
}
END_TEST

START_TEST(peek_gives_whole_records_in_place_across_the_end)
{
    pp_tbuf *b = pp_tbuf_new(4096), *c = pp_tbuf_new(4096);
    unsigned char out[4096], joined[4096], scratch[PP_TB_RECORD_MAX];
    pp_tbuf_piece piece[3];
    uint64_t pos;
    size_t n, got;
    int more, i, k, wrapped = 0;
    seen s;

    /* The same records into two rings: c read by copying, b peeked in place. Records of
     * 40 and 48 bytes do not divide the ring, so some run across its end. */
    for (i = 0; i < 400; i++) {
        char text[16];
        size_t len = (size_t)snprintf(text, sizeof(text), "r%d%s", i, i % 3 ? "" : "-long");
        uint32_t gen = i % 50 == 7 ? 2 : 1;     /* now and then another generation's */
        ck_assert_int_eq(pp_tbuf_put(b, gen, PP_TB_LOG, (uint64_t)i, 0, 0, text, len), 0);
        ck_assert_int_eq(pp_tbuf_put(c, gen, PP_TB_LOG, (uint64_t)i, 0, 0, text, len), 0);
        if (i % 37 != 36) {
            continue;
        }
        for (got = 0;;) {
            pos = pp_tbuf_peek(b, 1, piece, scratch);
            for (k = 0, n = 0; k < 3; k++) {
                if (!piece[k].len) {
                    continue;
                }
                memcpy(joined + got + n, piece[k].data, piece[k].len);
                n += piece[k].len;
                /* Each piece is whole records. */
                ck_assert_int_eq(pp_tbuf_walk(piece[k].data, piece[k].len, collect,
                                              memset(&s, 0, sizeof(s))), 0);
            }
            wrapped += piece[1].len > 0;
            pp_tbuf_consume(b, pos);
            if (!n) {
                break;
            }
            got += n;
        }
        n = pp_tbuf_read(c, 1, out, sizeof(out), &more);
        ck_assert_uint_eq(got, n);
        ck_assert_int_eq(memcmp(joined, out, n), 0);
        ck_assert_uint_eq(pp_tbuf_pending(b), 0);
    }
    ck_assert_int_gt(wrapped, 0);
    pp_tbuf_free(b);
    pp_tbuf_free(c);
}
END_TEST

START_TEST(peek_drops_a_zeroed_record_instead_of_stalling)
{
    pp_tbuf *b = pp_tbuf_new(4 * 4096);
    unsigned char out[4096], scratch[PP_TB_RECORD_MAX];
    pp_tbuf_piece piece[3];
    uint64_t pos;
    int more, i;

    /* Past the ring's first page (it shares the header's, which a trim keeps). */
    for (i = 0; i < 300; i++) {
        ck_assert_int_eq(pp_tbuf_put(b, 1, PP_TB_WAKE, (uint64_t)i, 0, 0, NULL, 0), 0);
        if (i % 50 == 49) {
            pp_tbuf_read(b, 1, out, sizeof(out), &more);
        }
    }
    /* A writer between its held task and its publish while the reader trims: the bytes it
     * publishes then are zeros, not records. */
    ck_assert_int_eq(pp_tbuf_put_task(b, 2, 1000, 42), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 2, PP_TB_WAKE, 1001, 0, 0, NULL, 0), 0);
    pp_tbuf_trim(b);
    pp_tbuf_publish(b);
    ck_assert_int_eq(pp_tbuf_put(b, 2, PP_TB_WAKE, 1002, 0, 0, NULL, 0), 0);
    ck_assert_uint_gt(pp_tbuf_pending(b), 0);
    /* The peek sends none of it, and drops it itself (a reader consumes only what it
     * sent: here nothing): the ring is read on. */
    pp_tbuf_peek(b, 2, piece, scratch);
    ck_assert_uint_eq(piece[0].len + piece[1].len + piece[2].len, 0);
    ck_assert_uint_eq(pp_tbuf_pending(b), 0);
    ck_assert_int_eq(pp_tbuf_put(b, 2, PP_TB_IDLE, 1003, 0, 0, NULL, 0), 0);
    pos = pp_tbuf_peek(b, 2, piece, scratch);
    ck_assert_uint_eq(piece[0].len + piece[1].len + piece[2].len, sizeof(pp_tb_record));
    pp_tbuf_consume(b, pos);
    ck_assert_uint_eq(pp_tbuf_pending(b), 0);
    pp_tbuf_free(b);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_tbuf");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, ring_round_trip_and_generations);
    tcase_add_test(tc, held_task_is_published_with_its_type);
    tcase_add_test(tc, full_ring_drops_and_counts_then_wraps);
    tcase_add_test(tc, full_ring_looks_again_at_the_reader);
    tcase_add_test(tc, pcs_end_marks_the_last_wait_with_pcs);
    tcase_add_test(tc, an_emptied_ring_rewinds_to_its_start);
    tcase_add_test(tc, walk_rejects_malformed_buffers);
    tcase_add_test(tc, trim_gives_the_pages_back);
    tcase_add_test(tc, peek_gives_whole_records_in_place_across_the_end);
    tcase_add_test(tc, peek_drops_a_zeroed_record_instead_of_stalling);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
