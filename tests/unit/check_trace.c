/* Unit tests of the Go trace writer (pp_trace), fed by per-thread rings (pp_tbuf, whose
 * own suite is check_tbuf). The writer's output for a busy two-process scenario is also written to
 * tests/unit/out/scenario.trace, which the integration tests check with the real
 * `go tool trace` and the independent format checker (tests/integration/go_trace.py). */
#include "pp_tbuf.h"
#include "pp_trace.h"

#include <check.h>
#include "unit_main.h"
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* --- the writer ----------------------------------------------------------------------- */

static pp_tbuf *ring;

static void rec(uint64_t ts, int kind, uint64_t a, const char *text, size_t len)
{
    ck_assert_int_eq(pp_tbuf_put(ring, 1, kind, ts, a, 0, text, len), 0);
}

static void feed(pp_trace *t, int th)
{
    unsigned char out[65536];
    int more;
    size_t n = pp_tbuf_read(ring, 1, out, sizeof(out), &more);
    ck_assert_int_eq(pp_trace_records(t, th, out, n), 0);
}

static void request(uint64_t ts, uint64_t task, const char *type)
{
    pp_tbuf_put_task(ring, 1, ts, task);
    rec(ts + 1, PP_TB_REGION_BEGIN, task, "read_request", 12);
    rec(ts + 2, PP_TB_LOG, task, "method\0GET", 10);
    rec(ts + 3, PP_TB_REGION_END, task, "read_request", 12);
    rec(ts + 4, PP_TB_REGION_BEGIN, task, "handler", 7);
    pp_tbuf_task_type(ring, type);
    rec(ts + 5, PP_TB_BLOCK, PP_TB_BLOCK_SYNC, "pthread_mutex_lock 0x1234 0x99", 31);
    rec(ts + 50, PP_TB_UNBLOCK, 0, NULL, 0);
    rec(ts + 60, PP_TB_LOG, task, "status\0" "200", 10);
}

/* The waits' callers: 0x1234 is lock_caller, 0x99 unknown. */
static int fake_resolve(void *baton, uint32_t pid, uint64_t pc, pp_trace_frame *out, int max)
{
    (void)baton;
    (void)pid;
    if (pc != 0x1234 || max < 1) {
        return 0;
    }
    out[0].function = "lock_caller";
    out[0].file = "mod_x.c";
    out[0].line = 7;
    return 1;
}

/* Two processes, five threads: waiting, running and new ones; requests with nested
 * regions, a lock wait, logs; a task ended by another thread; a region end that matches
 * nothing; a thread going idle with a region open; CPU samples. */
static pp_trace *scenario(void)
{
    uint64_t t0 = 5000000000ULL;
    pp_trace *t = pp_trace_new(t0);
    pp_trace_frame f[3] = { { "burn", "mod_x.c", 12 }, { "ap_run_handler", "config.c", 0 },
                            { "worker_thread", NULL, 0 } };
    int a, b, c, d, e;

    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(pp_trace_set_thread_frame(t, "httpd.worker_thread", "event.c"), 0);
    ck_assert_int_eq(pp_trace_set_frame(t, "handler", "ap_invoke_handler", "config.c"), 0);
    pp_trace_set_resolver(t, fake_resolve, NULL);
    ck_assert_int_eq(pp_trace_set_frame(t, "idle", "ap_queue_pop", "fdqueue.c"), 0);
    a = pp_trace_thread(t, 100, 0, 1001, PP_TRACE_WAITING);
    b = pp_trace_thread(t, 100, 1, 1002, PP_TRACE_RUNNING);
    c = pp_trace_thread(t, 200, 0, 2001, PP_TRACE_WAITING);
    ck_assert_int_eq(pp_trace_thread(t, 100, 0, 1001, PP_TRACE_WAITING), a);
    ck_assert_int_eq(pp_trace_find_tid(t, 200, 2001), c);
    ck_assert_int_eq(pp_trace_find_tid(t, 200, 1001), -1);

    ring = pp_tbuf_new(65536);
    /* a: two full requests, the second's task ends on thread b. */
    rec(t0 + 10, PP_TB_WAKE, 0, NULL, 0);
    request(t0 + 20, 1, "pprof-test");
    rec(t0 + 90, PP_TB_REGION_END, 1, "handler", 7);
    rec(t0 + 91, PP_TB_TASK_END, 1, NULL, 0);
    request(t0 + 100, 2, "static");
    rec(t0 + 170, PP_TB_REGION_END, 2, "handler", 7);
    rec(t0 + 180, PP_TB_REGION_BEGIN, 2, "log", 3);     /* left open at idle */
    rec(t0 + 190, PP_TB_IDLE, 0, NULL, 0);
    feed(t, a);
    /* b: was busy; ends a request begun before the trace, then a's task 2. */
    rec(t0 + 5, PP_TB_REGION_END, 9, "handler", 7);     /* matches nothing */
    rec(t0 + 6, PP_TB_TASK_END, 9, NULL, 0);            /* unknown: ignored */
    rec(t0 + 7, PP_TB_IDLE, 0, NULL, 0);
    rec(t0 + 195, PP_TB_WAKE, 0, NULL, 0);
    rec(t0 + 196, PP_TB_TASK_END, 2, NULL, 0);
    rec(t0 + 197, PP_TB_IDLE, 0, NULL, 0);
    feed(t, b);
    /* c: never does anything. d: a new thread of process 200, busy at the end. */
    d = pp_trace_thread(t, 200, 1, 2002, PP_TRACE_NEW);
    rec(t0 + 300, PP_TB_WAKE, 0, NULL, 0);
    request(t0 + 310, 1, "pprof-test");                  /* same local id, other process */
    feed(t, d);
    /* e: new, its first record is idle. */
    e = pp_trace_thread(t, 300, 0, 3001, PP_TRACE_NEW);
    rec(t0 + 400, PP_TB_IDLE, 0, NULL, 0);
    feed(t, e);
    ck_assert_int_eq(pp_trace_cpu_sample(t, t0 + 30, a, f, 3), 0);
    ck_assert_int_eq(pp_trace_cpu_sample(t, t0 + 320, d, f, 3), 0);
    ck_assert_int_eq(pp_trace_cpu_sample(t, t0 + 330, -1, f + 1, 2), 0);
    ck_assert_int_eq(pp_trace_cpu_sample(t, t0 + 340, c, f, 1), 0);
    /* Before e's goroutine was created: it must not be named (the reader would create
     * it twice). */
    ck_assert_int_eq(pp_trace_cpu_sample(t, t0 + 350, e, f, 1), 0);
    ck_assert_int_eq(pp_trace_finish(t, t0 + 1000), 0);
    ck_assert_int_eq(pp_trace_finish(t, t0 + 1000), -1);
    pp_tbuf_free(ring);
    return t;
}

static void write_file(const char *path, const unsigned char *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(data, 1, len, f), len);
    fclose(f);
}

START_TEST(scenario_writes_a_go_119_trace)
{
    pp_trace *t = scenario();
    pp_trace_stats st;
    const unsigned char *data;
    size_t len;

    data = pp_trace_data(t, &len);
    ck_assert_uint_gt(len, 16);
    ck_assert_int_eq(memcmp(data, "go 1.19 trace\0\0\0", 16), 0);
    ck_assert_int_eq(data[16], 0x41);  /* the first record is a chunk (EvBatch) */
    pp_trace_get_stats(t, &st);
    ck_assert_uint_eq(st.tasks, 3);
    ck_assert_uint_eq(st.threads, 5);
    ck_assert_uint_eq(st.cpu_samples, 5);
    ck_assert_uint_eq(st.regions, 7);
    /* The unmatched end, the region open at idle, and the one open at a task's end. */
    ck_assert_uint_ge(st.repaired, 2);
    mkdir(TEST_BUILDDIR "/out", 0755);
    write_file(TEST_BUILDDIR "/out/scenario.trace", data, len);
    pp_trace_free(t);
}
END_TEST

/* 50 requests of one thread, fed round by round; each round's output is taken (and
 * consumed) when take is set. Returns everything the trace wrote, in order. */
static unsigned char *fifty_rounds(int take, size_t *outlen)
{
    uint64_t t0 = 5000000000ULL;
    pp_trace *t = pp_trace_new(t0);
    const unsigned char *data;
    unsigned char *joined = NULL;
    size_t len, jlen = 0;
    int a = pp_trace_thread(t, 1, 0, 11, PP_TRACE_WAITING);

    ring = pp_tbuf_new(65536);
    for (int i = 0; i < 50; i++) {
        rec(t0 + 100 * (uint64_t)i + 1, PP_TB_WAKE, 0, NULL, 0);
        request(t0 + 100 * (uint64_t)i + 2, (uint64_t)i + 1, "h");
        rec(t0 + 100 * (uint64_t)i + 90, PP_TB_IDLE, 0, NULL, 0);
        feed(t, a);
        if (take) {
            data = pp_trace_data(t, &len);
            joined = realloc(joined, jlen + len);
            memcpy(joined + jlen, data, len);
            jlen += len;
            pp_trace_consume(t);
        }
    }
    ck_assert_int_eq(pp_trace_finish(t, t0 + 100000), 0);
    data = pp_trace_data(t, &len);
    joined = realloc(joined, jlen + len);
    memcpy(joined + jlen, data, len);
    jlen += len;
    pp_tbuf_free(ring);
    pp_trace_free(t);
    *outlen = jlen;
    return joined;
}

START_TEST(streaming_pieces_concatenate_to_the_whole)
{
    size_t slen, wlen;
    unsigned char *streamed = fifty_rounds(1, &slen), *whole = fifty_rounds(0, &wlen);

    /* Taking the output in pieces changes only when dictionary records go out (before
     * the next piece instead of at the end): same length, same header, same end. */
    ck_assert_uint_eq(slen, wlen);
    ck_assert_int_eq(memcmp(streamed, "go 1.19 trace\0\0\0", 16), 0);
    ck_assert_int_eq(memcmp(whole, "go 1.19 trace\0\0\0", 16), 0);
    /* The final piece holds the EvFrequency: 02 80 94 eb dc 03. */
    ck_assert_int_eq(memcmp(streamed + slen - 6, "\x02\x80\x94\xeb\xdc\x03", 6), 0);
    ck_assert_int_eq(memcmp(whole + wlen - 6, "\x02\x80\x94\xeb\xdc\x03", 6), 0);
    /* Written out for the integration tests: both must parse to the same events. */
    mkdir(TEST_BUILDDIR "/out", 0755);
    write_file(TEST_BUILDDIR "/out/streamed.trace", streamed, slen);
    write_file(TEST_BUILDDIR "/out/whole.trace", whole, wlen);
    free(streamed);
    free(whole);
}
END_TEST

/* --- reading the output back --------------------------------------------------------- */

/* Just enough of a Go 1.19 trace reader for the writer's rules below. */
enum { R_MAX_EVENTS = 4096, R_MAX_STACKS = 256, R_MAX_STRINGS = 256 };

typedef struct {
    int type;
    uint64_t p, ts, args[8];
    int nargs;
} r_event;

typedef struct {
    r_event ev[R_MAX_EVENTS];
    int nev;
    uint64_t stack_outer[R_MAX_STACKS];     /* string id of a stack's last frame's function */
    char strings[R_MAX_STRINGS][64];
} r_trace;

static uint64_t r_varint(const unsigned char *d, size_t len, size_t *off)
{
    uint64_t v = 0;
    int shift = 0;

    while (*off < len) {
        unsigned char b = d[(*off)++];
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            return v;
        }
        shift += 7;
    }
    ck_abort_msg("truncated varint");
    return 0;
}

static void r_parse(const unsigned char *d, size_t len, r_trace *tr)
{
    size_t off = 16;
    uint64_t p = 0, ts = 0;

    memset(tr, 0, sizeof(*tr));
    while (off < len) {
        int type = d[off] & 0x3f, n = d[off] >> 6;
        uint64_t a[1024];
        int na = 0;
        off++;
        if (type == 37) {                       /* EvString: id, len, bytes */
            uint64_t id = r_varint(d, len, &off), sl = r_varint(d, len, &off);
            if (id < R_MAX_STRINGS) {
                snprintf(tr->strings[id], sizeof(tr->strings[0]), "%.*s", (int)sl, d + off);
            }
            off += sl;
            continue;
        }
        if (n == 3) {                           /* length-prefixed */
            uint64_t blen = r_varint(d, len, &off);
            size_t stop = off + blen;
            while (off < stop && na < 1024) {
                a[na++] = r_varint(d, len, &off);
            }
        } else {
            for (int i = 0; i <= n; i++) {
                a[na++] = r_varint(d, len, &off);
            }
        }
        if (type == 1) {                        /* EvBatch */
            p = a[0];
            ts = a[1];
        } else if (type == 3) {                 /* EvStack: id, n, n x (pc, fn, file, line) */
            if (a[0] < R_MAX_STACKS && a[1] > 0) {
                tr->stack_outer[a[0]] = a[2 + 4 * (a[1] - 1) + 1];
            }
        } else if (type != 2) {                 /* timed */
            r_event *e = &tr->ev[tr->nev++];
            ck_assert_int_lt(tr->nev, R_MAX_EVENTS);
            ts += a[0];
            e->type = type;
            e->p = p;
            e->ts = ts;
            e->nargs = na - 1 < 8 ? na - 1 : 8;
            memcpy(e->args, a + 1, (size_t)e->nargs * sizeof(a[0]));
            if (type == 48) {                   /* EvUserLog: the message follows */
                off += r_varint(d, len, &off);
            }
        }
    }
}

/* The function that ends stack id (its outermost frame). */
static const char *r_outer(const r_trace *tr, uint64_t stk)
{
    ck_assert_uint_lt(stk, R_MAX_STACKS);
    return tr->strings[tr->stack_outer[stk]];
}

enum { EV_CREATE = 13, EV_PSTART = 5, EV_PSTOP = 6, EV_GSTART = 14, EV_CPU = 49 };

/* State changes whose last argument is a stack (GoUnblock's is the waker's: here the
 * thread itself, where it waited). */
static int is_transition_with_stack(int type)
{
    return (type >= 16 && type <= 28) || type == 42;
}

START_TEST(dump_creates_are_the_earliest_events_alone)
{
    pp_trace *t = scenario();
    static r_trace tr;
    const unsigned char *data;
    size_t len;
    uint64_t first = UINT64_MAX;
    int i, creates = 0;

    data = pp_trace_data(t, &len);
    r_parse(data, len, &tr);
    for (i = 0; i < tr.nev; i++) {
        first = tr.ev[i].ts < first ? tr.ev[i].ts : first;
    }
    for (i = 0; i < tr.nev; i++) {
        const r_event *e = &tr.ev[i];
        if (e->ts == first) {
            ck_assert_int_eq(e->type, EV_CREATE);
            creates++;
        }
        if (e->type == EV_CPU) {
            ck_assert_uint_gt(e->args[0], first);  /* a sample's own time */
        }
    }
    ck_assert_int_eq(creates, 3);       /* the three threads of the dump */
    pp_trace_free(t);
}
END_TEST

START_TEST(transitions_end_in_the_thread_frame)
{
    pp_trace *t = scenario();
    static r_trace tr;
    const unsigned char *data;
    size_t len;
    int i, n = 0;

    data = pp_trace_data(t, &len);
    r_parse(data, len, &tr);
    for (i = 0; i < tr.nev; i++) {
        const r_event *e = &tr.ev[i];
        if (is_transition_with_stack(e->type)) {
            ck_assert_uint_ne(e->args[e->nargs - 1], 0);
            ck_assert_str_eq(r_outer(&tr, e->args[e->nargs - 1]), "httpd.worker_thread");
            n++;
        }
        if (e->type == EV_CREATE) {
            ck_assert_str_eq(r_outer(&tr, e->args[1]), "httpd.worker_thread");
        }
    }
    /* waits and idles of a, b, d, e; d stopped at the end; wake-ups: a's 3, b's, d's */
    ck_assert_int_eq(n, 8 + 5);
    /* Goroutines are named by the frame set before the first thread; not after. */
    ck_assert_int_eq(pp_trace_set_thread_frame(t, "other", NULL), -1);
    pp_trace_free(t);
}
END_TEST

START_TEST(proc_starts_only_on_a_known_thread_id)
{
    uint64_t t0 = 5000000000ULL;
    pp_trace *t = pp_trace_new(t0);
    static r_trace tr;
    const unsigned char *data;
    size_t len;
    int a, b, c, i, starts = 0, stops = 0, started_a = 0;

    a = pp_trace_thread(t, 7, 0, 0, PP_TRACE_WAITING);     /* its id learnt later */
    b = pp_trace_thread(t, 7, 1, 0, PP_TRACE_WAITING);     /* never learnt: no ProcStart */
    c = pp_trace_thread(t, 7, 2, 0, PP_TRACE_RUNNING);     /* learnt while it runs */
    ck_assert_int_eq(b, a + 1);
    ck_assert_int_eq(c, a + 2);
    ring = pp_tbuf_new(65536);
    ck_assert_int_eq(pp_trace_thread(t, 7, 0, 77, PP_TRACE_NEW), a);
    rec(t0 + 10, PP_TB_WAKE, 0, NULL, 0);
    request(t0 + 20, 1, "h");
    rec(t0 + 90, PP_TB_IDLE, 0, NULL, 0);
    feed(t, a);
    ck_assert_int_eq(pp_trace_thread(t, 7, 2, 88, PP_TRACE_NEW), c);
    rec(t0 + 90, PP_TB_LOG, 0, "k\0v", 3);     /* while it runs */
    rec(t0 + 100, PP_TB_IDLE, 0, NULL, 0);
    rec(t0 + 110, PP_TB_WAKE, 0, NULL, 0);
    rec(t0 + 120, PP_TB_IDLE, 0, NULL, 0);
    feed(t, c);
    ck_assert_int_eq(pp_trace_finish(t, t0 + 1000), 0);
    data = pp_trace_data(t, &len);
    r_parse(data, len, &tr);
    for (i = 0; i < tr.nev; i++) {
        const r_event *e = &tr.ev[i];
        if (e->type == EV_PSTART && e->p == (uint64_t)a + 1) {
            ck_assert_uint_eq(e->args[0], 77);
            starts++;
            started_a = 1;
        } else if (e->type == EV_PSTART) {
            /* c's P starts once it has stopped running (at the idle), before it wakes */
            ck_assert_uint_eq(e->p, (uint64_t)c + 1);
            ck_assert_uint_eq(e->args[0], 88);
            ck_assert_uint_eq(e->ts, t0 + 110);
            starts++;
        } else if (e->type == EV_PSTOP) {
            stops++;
        } else if (e->type == EV_GSTART && e->p == (uint64_t)a + 1) {
            ck_assert(started_a);       /* its P started before it runs there */
        }
    }
    ck_assert_int_eq(starts, 2);
    ck_assert_int_eq(stops, 2);
    pp_tbuf_free(ring);
    pp_trace_free(t);
}
END_TEST

/* One record as a writer lays it out: header, text (len bytes, as given), zeros to size. */
static size_t put_record(unsigned char *buf, int kind, uint64_t ts, uint64_t a,
                         const char *text, size_t len, size_t size)
{
    pp_tb_record r;

    memset(&r, 0, sizeof(r));
    r.gen = 1;
    r.kind = (uint16_t)kind;
    r.size = (uint16_t)size;
    r.ts = ts;
    r.a = a;
    memset(buf, 0, size);
    memcpy(buf, &r, sizeof(r));
    memcpy(buf + sizeof(r), text, len);
    return size;
}

START_TEST(log_value_ends_with_its_record)
{
    /* A log record whose value has no NUL of its own (a torn or forged record: the walk
     * only vouches for the key's): the value is what the record holds, not a byte more. */
    uint64_t t0 = 1000;
    pp_trace *t = pp_trace_new(t0);
    unsigned char buf[256];
    size_t n = 0, len, i;
    const unsigned char *data;
    int th = pp_trace_thread(t, 5, 0, 55, PP_TRACE_RUNNING), found = 0;

    n += put_record(buf + n, PP_TB_WAKE, t0 + 10, 0, "", 1, sizeof(pp_tb_record) + 8);
    n += put_record(buf + n, PP_TB_LOG, t0 + 20, 0, "uri\0/index.html!", 16,
                    sizeof(pp_tb_record) + 16);
    n += put_record(buf + n, PP_TB_IDLE, t0 + 30, 0, "", 1, sizeof(pp_tb_record) + 8);
    ck_assert_int_eq(pp_trace_records(t, th, buf, n), 0);
    /* The same record last in its buffer: nothing past the buffer is read (ASan). */
    n = put_record(buf, PP_TB_LOG, t0 + 40, 0, "uri\0/index.html!", 16,
                   sizeof(pp_tb_record) + 16);
    ck_assert_int_eq(pp_trace_records(t, th, buf, n), 0);
    ck_assert_int_eq(pp_trace_finish(t, t0 + 100), 0);
    data = pp_trace_data(t, &len);
    /* The event's string: its length (12, a one-byte varint), then its bytes. */
    for (i = 0; i + 13 <= len; i++) {
        if (memcmp(data + i, "/index.html!", 12) == 0) {
            ck_assert_uint_gt(i, 0);
            ck_assert_uint_eq(data[i - 1], 12);
            found++;
        }
    }
    ck_assert_int_eq(found, 2);
    pp_trace_free(t);
}
END_TEST

/* One request's records, its region and log names as text or by number. */
static const unsigned char *named_request(pp_trace *t, int by_number, size_t *len)
{
    uint64_t t0 = 1000;
    int th = pp_trace_thread(t, 5, 0, 55, PP_TRACE_WAITING);
    unsigned char out[4096];
    size_t n;
    int more;

    ck_assert_int_eq(pp_trace_set_name_id(t, 1, "read_request"), 0);
    ck_assert_int_eq(pp_trace_set_name_id(t, 2, "method"), 0);
    ck_assert_int_eq(pp_trace_set_name_id(t, 0, "x"), -1);
    ck_assert_int_eq(pp_trace_set_name_id(t, PP_TRACE_NAME_IDS, "x"), -1);
    ring = pp_tbuf_new(4096);
    rec(t0 + 10, PP_TB_WAKE, 0, NULL, 0);
    pp_tbuf_put_task(ring, 1, t0 + 11, 7);
    if (by_number) {
        pp_tbuf_put(ring, 1, PP_TB_REGION_BEGIN, t0 + 12, 7, 1, NULL, 0);
        pp_tbuf_put(ring, 1, PP_TB_LOG, t0 + 13, 7, 2, "GET", 3);
        pp_tbuf_put(ring, 1, PP_TB_LOG, t0 + 14, 7, 2, NULL, 0);      /* empty value */
        pp_tbuf_put(ring, 1, PP_TB_REGION_END, t0 + 15, 7, 1, NULL, 0);
    } else {
        rec(t0 + 12, PP_TB_REGION_BEGIN, 7, "read_request", 12);
        rec(t0 + 13, PP_TB_LOG, 7, "method\0GET", 10);
        rec(t0 + 14, PP_TB_LOG, 7, "method\0", 7);
        rec(t0 + 15, PP_TB_REGION_END, 7, "read_request", 12);
    }
    pp_tbuf_task_type(ring, "static");
    rec(t0 + 16, PP_TB_TASK_END, 7, NULL, 0);
    rec(t0 + 17, PP_TB_IDLE, 0, NULL, 0);
    n = pp_tbuf_read(ring, 1, out, sizeof(out), &more);
    pp_tbuf_free(ring);
    ck_assert_int_eq(pp_trace_records(t, th, out, n), 0);
    ck_assert_int_eq(pp_trace_finish(t, t0 + 100), 0);
    return pp_trace_data(t, len);
}

START_TEST(names_by_number_write_what_their_text_would)
{
    /* A region and a log key given by number (b, no text) make the same file, byte for
     * byte, as the same records with the names written out. */
    pp_trace *ta = pp_trace_new(1000), *tb = pp_trace_new(1000);
    const unsigned char *a, *b;
    size_t alen, blen;
    pp_trace_stats st;

    a = named_request(ta, 0, &alen);
    b = named_request(tb, 1, &blen);
    pp_trace_get_stats(tb, &st);
    ck_assert_uint_eq(st.regions, 1);
    ck_assert_uint_eq(st.repaired, 0);
    ck_assert_uint_eq(blen, alen);
    ck_assert_int_eq(memcmp(a, b, alen), 0);
    pp_trace_free(ta);
    pp_trace_free(tb);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_trace");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, scenario_writes_a_go_119_trace);
    tcase_add_test(tc, streaming_pieces_concatenate_to_the_whole);
    tcase_add_test(tc, dump_creates_are_the_earliest_events_alone);
    tcase_add_test(tc, transitions_end_in_the_thread_frame);
    tcase_add_test(tc, proc_starts_only_on_a_known_thread_id);
    tcase_add_test(tc, log_value_ends_with_its_record);
    tcase_add_test(tc, names_by_number_write_what_their_text_would);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
