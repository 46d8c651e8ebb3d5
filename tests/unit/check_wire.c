/* Unit tests of the wire between processes (pp_wire): frames, round trips of every
 * message and field, and what a hostile or broken peer can send: every truncation,
 * every bound exceeded by one, lengths that lie, random bytes and bit flips. */
#include "pp_wire.h"

#include <check.h>
#include "unit_main.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A reply with something in every field: two mappings (out of order), counters, stacks,
 * tags, threads, trace sections and samples. Everything points into static storage. */
static uint64_t pcs_a[3] = { 0x401000, 0x402000, 0x403000 };
static uint64_t vals_a[4] = { 1, 2, 3, 4 };
static char records[24] = "records of one thread";

typedef struct {
    pp_wire_reply r;
    pp_wire_mapping m[2], *mp[2];
    pp_wire_counter c[2], *cp[2];
    pp_wire_stack s[2], *sp[2];
    pp_wire_tag t[1], *tp[1];
    pp_wire_thread th[2], *thp[2];
    pp_wire_section sec[1], *secp[1];
    pp_wire_sample smp[1], *smpp[1];
} full_reply;

static void make_full(full_reply *f)
{
    int i;

    memset(f, 0, sizeof(*f));
    ppwire__reply__init(&f->r);
    f->r.status = PP_WIRE_OK;
    f->r.pid = 4242;
    for (i = 0; i < 2; i++) {
        ppwire__mapping__init(&f->m[i]);
        ppwire__counter__init(&f->c[i]);
        ppwire__stack__init(&f->s[i]);
        ppwire__thread__init(&f->th[i]);
        f->mp[i] = &f->m[i];
        f->cp[i] = &f->c[i];
        f->sp[i] = &f->s[i];
        f->thp[i] = &f->th[i];
    }
    /* Out of order: pp_wire_maps sorts them. */
    f->m[0].start = 0x7f0000;
    f->m[0].end = 0x7f1000;
    f->m[0].offset = 0x2000;
    f->m[0].path = "/usr/lib/libz.so";
    f->m[1].start = 0x400000;
    f->m[1].end = 0x500000;
    f->m[1].path = "/usr/sbin/apache2";
    f->r.n_mappings = 2;
    f->r.mappings = f->mp;
    f->c[0].name = "dropped";
    f->c[0].value = 7;
    f->c[1].name = "started_us";
    f->c[1].value = -5;
    f->r.n_counters = 2;
    f->r.counters = f->cp;
    f->s[0].key = 1ULL << 40 | 3;
    f->s[0].n_values = 4;
    f->s[0].values = vals_a;
    f->s[0].n_pcs = 3;
    f->s[0].pcs = pcs_a;
    f->s[1].key = 9;                    /* an empty stack is a stack too */
    f->r.n_stacks = 2;
    f->r.stacks = f->sp;
    ppwire__request_tag__init(&f->t[0]);
    f->t[0].id = 3;
    f->t[0].handler = "php-fpm";
    f->t[0].vhost = "www";
    f->tp[0] = &f->t[0];
    f->r.n_tags = 1;
    f->r.tags = f->tp;
    f->th[0].tid = 100;
    f->th[0].n_pcs = 3;
    f->th[0].pcs = pcs_a;
    f->th[0].answered = 1;
    f->th[0].state = 'S';
    f->th[0].name = "apache2";
    f->th[0].role = "worker";
    f->th[0].status = "writing";
    f->th[0].client = "127.0.0.1";
    f->th[0].vhost = "www";
    f->th[0].request = "GET / HTTP/1.1";
    f->th[0].handler = "php-fpm";
    f->th[0].seconds = 2.5;
    f->th[1].tid = 101;
    f->th[1].slot = 7;
    f->th[1].busy = 1;
    f->th[1].seconds = -1;
    f->r.n_threads = 2;
    f->r.threads = f->thp;
    ppwire__trace_section__init(&f->sec[0]);
    f->sec[0].slot = 2;
    f->sec[0].tid = 100;
    f->sec[0].records.data = (uint8_t *)records;
    f->sec[0].records.len = sizeof(records);
    f->secp[0] = &f->sec[0];
    f->r.n_sections = 1;
    f->r.sections = f->secp;
    ppwire__trace_sample__init(&f->smp[0]);
    f->smp[0].ts = 123456789;
    f->smp[0].tid = 100;
    f->smp[0].n_pcs = 2;
    f->smp[0].pcs = pcs_a;
    f->smpp[0] = &f->smp[0];
    f->r.n_samples = 1;
    f->r.samples = f->smpp;
}

/* What a reader of a decoded reply may rely on, checked independently of pp_wire. */
static void assert_bounded(const pp_wire_reply *m)
{
    size_t i;

    ck_assert_ptr_nonnull(m->error);
    ck_assert_uint_le(strlen(m->error), PP_WIRE_MAX_STRING);
    ck_assert_uint_le(m->n_mappings, PP_WIRE_MAX_MAPPINGS);
    for (i = 0; i < m->n_mappings; i++) {
        ck_assert_uint_lt(m->mappings[i]->start, m->mappings[i]->end);
        ck_assert_uint_le(strlen(m->mappings[i]->path), PP_WIRE_MAX_STRING);
    }
    ck_assert_uint_le(m->n_counters, PP_WIRE_MAX_COUNTERS);
    for (i = 0; i < m->n_counters; i++) {
        ck_assert_uint_le(strlen(m->counters[i]->name), PP_WIRE_MAX_STRING);
    }
    ck_assert_uint_le(m->n_stacks, PP_WIRE_MAX_STACKS);
    for (i = 0; i < m->n_stacks; i++) {
        ck_assert_uint_le(m->stacks[i]->n_pcs, PP_WIRE_MAX_PCS);
        ck_assert_uint_le(m->stacks[i]->n_values, PP_WIRE_MAX_VALUES);
    }
    ck_assert_uint_le(m->n_tags, PP_WIRE_MAX_TAGS);
    for (i = 0; i < m->n_tags; i++) {
        ck_assert_uint_le(strlen(m->tags[i]->handler), PP_WIRE_MAX_STRING);
        ck_assert_uint_le(strlen(m->tags[i]->vhost), PP_WIRE_MAX_STRING);
    }
    ck_assert_uint_le(m->n_threads, PP_WIRE_MAX_THREADS);
    for (i = 0; i < m->n_threads; i++) {
        const pp_wire_thread *t = m->threads[i];
        ck_assert_uint_le(t->n_pcs, PP_WIRE_MAX_PCS);
        ck_assert_uint_le(strlen(t->name) + strlen(t->role) + strlen(t->status) +
                          strlen(t->client) + strlen(t->vhost) + strlen(t->request) +
                          strlen(t->handler), 7 * PP_WIRE_MAX_STRING);
    }
    ck_assert_uint_le(m->n_sections, PP_WIRE_MAX_SECTIONS);
    ck_assert_uint_le(m->n_samples, PP_WIRE_MAX_SAMPLES);
    for (i = 0; i < m->n_samples; i++) {
        ck_assert_uint_le(m->samples[i]->n_pcs, PP_WIRE_MAX_PCS);
    }
}

static unsigned char *pack_reply(const pp_wire_reply *r, size_t *len)
{
    unsigned char *buf = NULL;

    ck_assert_int_eq(pp_wire_pack_reply(r, &buf, len), 0);
    ck_assert_ptr_nonnull(buf);
    return buf;
}

START_TEST(a_request_round_trips)
{
    pp_wire_request q = PPWIRE__REQUEST__INIT, *d;
    unsigned char *buf = NULL;
    size_t len = 0;

    q.kind = "cpu";
    q.op = PP_WIRE_STOP;
    q.gen = 0xfffffff0u;
    q.hz = 250;
    q.deadline_us = 1700000000123456LL;
    q.flags = 1;
    ck_assert_int_eq(pp_wire_pack_request(&q, &buf, &len), 0);
    ck_assert_int_eq(pp_wire_frame_length(buf, PP_WIRE_MAX_REQUEST), (long)(len - PP_WIRE_FRAME));
    d = pp_wire_unpack_request(buf + PP_WIRE_FRAME, len - PP_WIRE_FRAME);
    ck_assert_ptr_nonnull(d);
    ck_assert_str_eq(d->kind, "cpu");
    ck_assert_int_eq(d->op, PP_WIRE_STOP);
    ck_assert_uint_eq(d->gen, 0xfffffff0u);
    ck_assert_uint_eq(d->hz, 250);
    ck_assert_int_eq(d->deadline_us, 1700000000123456LL);
    ck_assert_uint_eq(d->flags, 1);
    pp_wire_free_request(d);
    free(buf);
}
END_TEST

START_TEST(a_reply_round_trips_with_every_field)
{
    full_reply f;
    pp_wire_reply *d;
    unsigned char *buf;
    size_t len;
    pp_maps *maps;

    make_full(&f);
    buf = pack_reply(&f.r, &len);
    d = pp_wire_unpack_reply_frame(buf, len);
    ck_assert_ptr_nonnull(d);
    assert_bounded(d);
    ck_assert_int_eq(d->status, PP_WIRE_OK);
    ck_assert_int_eq(d->pid, 4242);
    ck_assert_uint_eq(d->n_mappings, 2);
    ck_assert_str_eq(d->mappings[0]->path, "/usr/lib/libz.so");
    ck_assert_uint_eq(d->mappings[0]->offset, 0x2000);
    ck_assert_int_eq(pp_wire_get_counter(d, "dropped", -1), 7);
    ck_assert_int_eq(pp_wire_get_counter(d, "started_us", 0), -5);
    ck_assert_int_eq(pp_wire_get_counter(d, "absent", 99), 99);
    ck_assert_uint_eq(d->n_stacks, 2);
    ck_assert_uint_eq(d->stacks[0]->key, 1ULL << 40 | 3);
    ck_assert_uint_eq(d->stacks[0]->n_values, 4);
    ck_assert_uint_eq(d->stacks[0]->values[3], 4);
    ck_assert_uint_eq(d->stacks[0]->n_pcs, 3);
    ck_assert_uint_eq(d->stacks[0]->pcs[2], 0x403000);
    ck_assert_uint_eq(d->stacks[1]->n_pcs, 0);
    ck_assert_uint_eq(d->n_tags, 1);
    ck_assert_uint_eq(d->tags[0]->id, 3);
    ck_assert_str_eq(d->tags[0]->handler, "php-fpm");
    ck_assert_str_eq(d->tags[0]->vhost, "www");
    ck_assert_uint_eq(d->n_threads, 2);
    ck_assert_uint_eq(d->threads[0]->tid, 100);
    ck_assert(d->threads[0]->answered);
    ck_assert_uint_eq(d->threads[0]->state, 'S');
    ck_assert_str_eq(d->threads[0]->request, "GET / HTTP/1.1");
    ck_assert_str_eq(d->threads[0]->handler, "php-fpm");
    ck_assert(d->threads[0]->seconds == 2.5);
    ck_assert_str_eq(d->threads[1]->role, "");      /* absent strings decode as "" */
    ck_assert_int_eq(d->threads[1]->slot, 7);
    ck_assert(d->threads[1]->busy);
    ck_assert_uint_eq(d->n_sections, 1);
    ck_assert_uint_eq(d->sections[0]->records.len, sizeof(records));
    ck_assert_mem_eq(d->sections[0]->records.data, records, sizeof(records));
    ck_assert_uint_eq(d->n_samples, 1);
    ck_assert_uint_eq(d->samples[0]->ts, 123456789);
    ck_assert_uint_eq(d->samples[0]->n_pcs, 2);
    /* The mappings as a pp_maps: sorted, so that PCs are found. */
    maps = pp_wire_maps(d);
    ck_assert_ptr_nonnull(maps);
    ck_assert_uint_eq(pp_maps_count(maps), 2);
    ck_assert_str_eq(pp_maps_get(maps, 0)->path, "/usr/sbin/apache2");
    ck_assert_str_eq(pp_maps_find(maps, 0x7f0800)->path, "/usr/lib/libz.so");
    ck_assert_ptr_null(pp_maps_find(maps, 0x600000));
    pp_maps_free(maps);
    pp_wire_free_reply(d);
    free(buf);
}
END_TEST

/* A writer that keeps what it is given, in pieces of whatever size it is handed, and
 * fails at the call numbered fail_at (0: never); in_place counts the pieces that were
 * given at the address `watch` (not copied). */
typedef struct {
    unsigned char *buf;
    size_t len, cap;
    int calls, fail_at, in_place;
    const void *watch;
} collected;

static int collect_pieces(void *baton, struct iovec *iov, int n)
{
    collected *c = baton;
    int i;

    if (++c->calls == c->fail_at) {
        return -1;
    }
    ck_assert_int_gt(n, 0);
    for (i = 0; i < n; i++) {
        ck_assert_uint_gt(iov[i].iov_len, 0);
        ck_assert_uint_le(c->len + iov[i].iov_len, c->cap);
        memcpy(c->buf + c->len, iov[i].iov_base, iov[i].iov_len);
        c->len += iov[i].iov_len;
        c->in_place += iov[i].iov_base == c->watch;
    }
    return 0;
}

START_TEST(a_reply_written_in_pieces_is_the_packed_frame)
{
    static unsigned char big[300000];  /* larger than the chunk */
    static const unsigned char small[5] = { 1, 2, 3, 4, 5 };
    full_reply f;
    pp_wire_section more[70], *secs[72];
    unsigned char *packed;
    size_t packed_len, i;
    collected c;

    for (i = 0; i < sizeof(big); i++) {
        big[i] = (unsigned char)(i * 7 + i / 251);
    }
    make_full(&f);
    f.sec[0].records.data = big;
    f.sec[0].records.len = sizeof(big);
    ck_assert_int_eq(pp_wire_pack_reply(&f.r, &packed, &packed_len), 0);
    memset(&c, 0, sizeof(c));
    c.cap = packed_len;
    c.buf = malloc(c.cap);
    c.watch = big;
    ck_assert_ptr_nonnull(c.buf);
    ck_assert_int_eq(pp_wire_write_reply(&f.r, collect_pieces, &c), 0);
    ck_assert_uint_eq(c.len, packed_len);
    ck_assert_mem_eq(c.buf, packed, packed_len);
    ck_assert_int_eq(c.in_place, 1);    /* the records where they are, uncopied */
    free(packed);
    free(c.buf);

    /* Many sections, some with zero numbers or no records (left out, as protobuf-c
     * does), more pieces than one call takes: the same bytes as packed, in calls. */
    secs[0] = &f.sec[0];
    for (i = 0; i < 70; i++) {
        ppwire__trace_section__init(&more[i]);
        more[i].slot = (uint32_t)(i % 3 == 0 ? 0 : i * 1000);
        more[i].tid = (uint32_t)(i % 5 == 0 ? 0 : 4000000000u - i);
        more[i].records.data = (uint8_t *)(uintptr_t)small;
        more[i].records.len = i % 7 == 0 ? 0 : sizeof(small);
        secs[i + 1] = &more[i];
    }
    f.r.sections = secs;
    f.r.n_sections = 71;
    ck_assert_int_eq(pp_wire_pack_reply(&f.r, &packed, &packed_len), 0);
    memset(&c, 0, sizeof(c));
    c.cap = packed_len;
    c.buf = malloc(c.cap);
    ck_assert_ptr_nonnull(c.buf);
    ck_assert_int_eq(pp_wire_write_reply(&f.r, collect_pieces, &c), 0);
    ck_assert_uint_eq(c.len, packed_len);
    ck_assert_mem_eq(c.buf, packed, packed_len);
    ck_assert_int_ge(c.calls, 2);
    /* A writer that fails: reported, and nothing is written after the failure. */
    memset(c.buf, 0, c.cap);
    c.len = 0;
    c.calls = 0;
    c.fail_at = 1;
    ck_assert_int_eq(pp_wire_write_reply(&f.r, collect_pieces, &c), -1);
    ck_assert_int_eq(c.calls, 1);
    ck_assert_uint_eq(c.len, 0);
    /* Larger than a reply may be: refused before anything is written. */
    f.r.n_sections = 1;
    f.sec[0].records.len = (size_t)PP_WIRE_MAX_REPLY + 1;
    c.len = 0;
    c.calls = 0;
    c.fail_at = 0;
    ck_assert_int_eq(pp_wire_write_reply(&f.r, collect_pieces, &c), -2);
    ck_assert_int_eq(c.calls, 0);
    free(c.buf);
    free(packed);
}
END_TEST

START_TEST(frame_heads_are_bounded_and_exact)
{
    unsigned char head[4] = { 0xff, 0xff, 0xff, 0xff }, *buf;
    pp_wire_reply *empty;
    full_reply f;
    size_t len;

    ck_assert_int_eq(pp_wire_frame_length(head, PP_WIRE_MAX_REPLY), -1);
    head[0] = 16;
    head[1] = head[2] = head[3] = 0;
    ck_assert_int_eq(pp_wire_frame_length(head, 16), 16);
    ck_assert_int_eq(pp_wire_frame_length(head, 15), -1);
    /* An empty reply is a reply (status OK, nothing in it). */
    head[0] = 0;
    empty = pp_wire_unpack_reply_frame(head, 4);
    ck_assert_ptr_nonnull(empty);
    ck_assert_int_eq(empty->status, PP_WIRE_OK);
    pp_wire_free_reply(empty);
    ck_assert_ptr_null(pp_wire_unpack_reply_frame(head, 3));
    ck_assert_ptr_null(pp_wire_unpack_reply_frame(NULL, 0));
    make_full(&f);
    buf = pack_reply(&f.r, &len);
    /* A head that announces more than follows, or less. */
    buf = realloc(buf, len + 1);
    buf[len] = 0;
    ck_assert_ptr_null(pp_wire_unpack_reply_frame(buf, len + 1));
    ck_assert_ptr_null(pp_wire_unpack_reply_frame(buf, len - 1));
    free(buf);
}
END_TEST

START_TEST(every_truncation_is_refused_or_bounded)
{
    full_reply f;
    unsigned char *buf;
    size_t len, cut, refused = 0;

    make_full(&f);
    buf = pack_reply(&f.r, &len);
    for (cut = 0; cut < len; cut++) {
        pp_wire_reply *d = pp_wire_unpack_reply_frame(buf, cut);
        /* The head announces the whole message: any frame cut short is refused. */
        ck_assert_ptr_null(d);
        /* The message alone, cut: protobuf may end between two fields (a shorter
         * message), else it is refused; either way nothing is out of bounds. */
        if (cut >= PP_WIRE_FRAME) {
            unsigned char *copy = malloc(cut - PP_WIRE_FRAME + 1);
            memcpy(copy, buf + PP_WIRE_FRAME, cut - PP_WIRE_FRAME);
            d = pp_wire_unpack_reply(copy, cut - PP_WIRE_FRAME);
            if (d) {
                assert_bounded(d);
                pp_wire_free_reply(d);
            } else {
                refused++;
            }
            free(copy);
        }
    }
    ck_assert_uint_gt(refused, len / 2);
    free(buf);
}
END_TEST

/* Pack r, then unpack it: whether pp_wire accepts it. */
static int accepted(const pp_wire_reply *r)
{
    unsigned char *buf = NULL;
    size_t len;
    pp_wire_reply *d;
    int ok;

    if (pp_wire_pack_reply(r, &buf, &len) != 0) {
        return 0;
    }
    d = pp_wire_unpack_reply(buf + PP_WIRE_FRAME, len - PP_WIRE_FRAME);
    ok = d != NULL;
    if (d) {
        assert_bounded(d);
    }
    pp_wire_free_reply(d);
    free(buf);
    return ok;
}

START_TEST(each_bound_is_enforced_at_its_edge)
{
    static uint64_t many[PP_WIRE_MAX_PCS + 1];
    static uint64_t values[PP_WIRE_MAX_VALUES + 1];
    static char longstr[PP_WIRE_MAX_STRING + 2];
    pp_wire_counter counters[PP_WIRE_MAX_COUNTERS + 1], *cp[PP_WIRE_MAX_COUNTERS + 1];
    full_reply f;
    size_t i;

    memset(longstr, 'x', sizeof(longstr) - 1);
    make_full(&f);
    ck_assert(accepted(&f.r));
    /* PCs of a stack, a thread and a sample. */
    f.s[0].pcs = many;
    f.s[0].n_pcs = PP_WIRE_MAX_PCS;
    ck_assert(accepted(&f.r));
    f.s[0].n_pcs = PP_WIRE_MAX_PCS + 1;
    ck_assert(!accepted(&f.r));
    make_full(&f);
    f.th[0].pcs = many;
    f.th[0].n_pcs = PP_WIRE_MAX_PCS;
    ck_assert(accepted(&f.r));
    f.th[0].n_pcs = PP_WIRE_MAX_PCS + 1;
    ck_assert(!accepted(&f.r));
    make_full(&f);
    f.smp[0].pcs = many;
    f.smp[0].n_pcs = PP_WIRE_MAX_PCS;
    ck_assert(accepted(&f.r));
    f.smp[0].n_pcs = PP_WIRE_MAX_PCS + 1;
    ck_assert(!accepted(&f.r));
    /* Values of a stack. */
    make_full(&f);
    f.s[1].values = values;
    f.s[1].n_values = PP_WIRE_MAX_VALUES;
    ck_assert(accepted(&f.r));
    f.s[1].n_values = PP_WIRE_MAX_VALUES + 1;
    ck_assert(!accepted(&f.r));
    /* Strings: a path, a thread's request line, an error, a tag. */
    make_full(&f);
    longstr[PP_WIRE_MAX_STRING] = '\0';
    f.m[0].path = longstr;
    ck_assert(accepted(&f.r));
    longstr[PP_WIRE_MAX_STRING] = 'x';
    ck_assert(!accepted(&f.r));
    make_full(&f);
    f.th[0].request = longstr;
    ck_assert(!accepted(&f.r));
    make_full(&f);
    f.r.error = longstr;
    ck_assert(!accepted(&f.r));
    make_full(&f);
    f.t[0].vhost = longstr;
    ck_assert(!accepted(&f.r));
    make_full(&f);
    f.c[1].name = longstr;
    ck_assert(!accepted(&f.r));
    /* A mapping must be a range. */
    make_full(&f);
    f.m[1].end = f.m[1].start;
    ck_assert(!accepted(&f.r));
    /* The number of counters. */
    make_full(&f);
    for (i = 0; i <= PP_WIRE_MAX_COUNTERS; i++) {
        ppwire__counter__init(&counters[i]);
        counters[i].name = "c";
        cp[i] = &counters[i];
    }
    f.r.counters = cp;
    f.r.n_counters = PP_WIRE_MAX_COUNTERS;
    ck_assert(accepted(&f.r));
    f.r.n_counters = PP_WIRE_MAX_COUNTERS + 1;
    ck_assert(!accepted(&f.r));
}
END_TEST

START_TEST(requests_are_bounded)
{
    static char longkind[PP_WIRE_MAX_REQUEST + 16];
    pp_wire_request q = PPWIRE__REQUEST__INIT;
    unsigned char *buf = NULL, bad[8];
    size_t len;

    memset(longkind, 'k', sizeof(longkind) - 1);
    q.kind = longkind;
    ck_assert_int_eq(pp_wire_pack_request(&q, &buf, &len), -1);
    longkind[100] = '\0';
    ck_assert_int_eq(pp_wire_pack_request(&q, &buf, &len), 0);
    ck_assert_int_eq(pp_wire_frame_length(buf, PP_WIRE_MAX_REQUEST), (long)(len - PP_WIRE_FRAME));
    pp_wire_free_request(pp_wire_unpack_request(buf + PP_WIRE_FRAME, len - PP_WIRE_FRAME));
    free(buf);
    longkind[100] = 'k';
    ck_assert_ptr_null(pp_wire_unpack_request(longkind, sizeof(longkind)));
    /* Field 1 (kind) claiming 127 bytes of which 2 follow. */
    bad[0] = 0x0a;
    bad[1] = 0x7f;
    bad[2] = 'c';
    bad[3] = 'p';
    ck_assert_ptr_null(pp_wire_unpack_request(bad, 4));
}
END_TEST

/* Hand-made messages that lie about their lengths or are no protobuf at all. */
START_TEST(lying_lengths_and_malformed_encodings_are_refused)
{
    /* stacks (field 6), length-delimited, claiming 2^31 bytes. */
    static const unsigned char huge_len[] = { 0x32, 0x80, 0x80, 0x80, 0x80, 0x08, 0x08, 0x01 };
    /* pid (field 3) as a varint of 11 bytes: longer than any 64-bit varint. */
    static const unsigned char long_varint[] = { 0x18, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                                 0xff, 0xff, 0xff, 0xff, 0x01 };
    /* A stack whose packed pcs (field 3 of Stack) end inside a varint. */
    static const unsigned char cut_packed[] = { 0x32, 0x04, 0x1a, 0x02, 0x80, 0x80 };
    /* A varint that ends the buffer half-way. */
    static const unsigned char cut_varint[] = { 0x18, 0x80 };
    /* Wire type 7 does not exist. */
    static const unsigned char bad_type[] = { 0x1f, 0x00 };
    /* A mapping (field 4) whose path (field 4 of Mapping) claims more than the mapping. */
    static const unsigned char nested_lie[] = { 0x22, 0x03, 0x22, 0x10, 'a' };

    ck_assert_ptr_null(pp_wire_unpack_reply(huge_len, sizeof(huge_len)));
    ck_assert_ptr_null(pp_wire_unpack_reply(long_varint, sizeof(long_varint)));
    ck_assert_ptr_null(pp_wire_unpack_reply(cut_packed, sizeof(cut_packed)));
    ck_assert_ptr_null(pp_wire_unpack_reply(cut_varint, sizeof(cut_varint)));
    ck_assert_ptr_null(pp_wire_unpack_reply(bad_type, sizeof(bad_type)));
    ck_assert_ptr_null(pp_wire_unpack_reply(nested_lie, sizeof(nested_lie)));
}
END_TEST

START_TEST(random_bytes_and_bit_flips_never_escape_the_bounds)
{
    full_reply f;
    unsigned char *buf, *copy;
    size_t len, i;
    unsigned seed = 12345;
    int round, accepted_flips = 0;

    make_full(&f);
    buf = pack_reply(&f.r, &len);
    copy = malloc(len);
    /* Flip one to three bits of a valid message, many times. */
    for (round = 0; round < 20000; round++) {
        pp_wire_reply *d;
        int k, flips = 1 + round % 3;
        memcpy(copy, buf + PP_WIRE_FRAME, len - PP_WIRE_FRAME);
        for (k = 0; k < flips; k++) {
            seed = seed * 1103515245u + 12345u;
            i = (seed >> 8) % (len - PP_WIRE_FRAME);
            copy[i] ^= (unsigned char)(1u << ((seed >> 4) & 7));
        }
        d = pp_wire_unpack_reply(copy, len - PP_WIRE_FRAME);
        if (d) {
            assert_bounded(d);
            accepted_flips++;
            pp_wire_free_reply(d);
        }
    }
    /* Random bytes of random lengths. */
    for (round = 0; round < 20000; round++) {
        unsigned char junk[256];
        size_t n;
        pp_wire_reply *d;
        seed = seed * 1103515245u + 12345u;
        n = (seed >> 8) % sizeof(junk);
        for (i = 0; i < n; i++) {
            seed = seed * 1103515245u + 12345u;
            junk[i] = (unsigned char)(seed >> 16);
        }
        if ((d = pp_wire_unpack_reply(junk, n)) != NULL) {
            assert_bounded(d);
            pp_wire_free_reply(d);
        }
        pp_wire_free_request(pp_wire_unpack_request(junk, n));
    }
    /* Some flips only change a value: the test did decode real messages. */
    ck_assert_int_gt(accepted_flips, 0);
    free(copy);
    free(buf);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_wire");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_request_round_trips);
    tcase_add_test(tc, a_reply_round_trips_with_every_field);
    tcase_add_test(tc, a_reply_written_in_pieces_is_the_packed_frame);
    tcase_add_test(tc, frame_heads_are_bounded_and_exact);
    tcase_add_test(tc, every_truncation_is_refused_or_bounded);
    tcase_add_test(tc, each_bound_is_enforced_at_its_edge);
    tcase_add_test(tc, requests_are_bounded);
    tcase_add_test(tc, lying_lengths_and_malformed_encodings_are_refused);
    tcase_add_test(tc, random_bytes_and_bit_flips_never_escape_the_bounds);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
