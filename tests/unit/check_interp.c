/* Interpreter frames: splicing a provider's frames into native stacks, the lock-free
 * table that interns them, their pseudo-mappings in this process's maps, and their names
 * through pp_symbolize and the resolver. Then the three samplers that splice them, for
 * real: CPU samples and thread dumps taken by signal inside a fake interpreter loop, and
 * heap samples of allocations made from inside it. Check forks a process per test: each
 * starts with no provider and an empty table. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_cpu.h"
#include "pp_heap.h"
#include "pp_interp.h"
#include "pp_maps.h"
#include "pp_profile.h"
#include "pp_resolve.h"
#include "pp_stacktab.h"
#include "pp_symbolize.h"
#include "pp_threads.h"
#include "profile.pb-c.h"

#include <check.h>
#include "unit_main.h"
#include <dlfcn.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/* The record (slot) a synthetic PC names; its line is in the PC too. */
#define SLOT(pc) (((pc) - PP_INTERP_PC_BASE) / PP_INTERP_FN_SPAN)

static int is_synthetic(uint64_t pc)
{
    return pc >= PP_INTERP_PC_BASE &&
           pc < PP_INTERP_PC_BASE + PP_INTERP_FN_SPAN * (uint64_t)PP_INTERP_SLOTS;
}

/* ---- a scripted provider ------------------------------------------------------------- */

typedef struct {
    pp_interp_frame fr[PP_INTERP_MAX_FRAMES];
    int n;
    _Atomic int calls;
    int last_leaf_in_loop, last_activations, last_max;
    const void *last_uc;
} script;

static int scripted_walk(void *baton, const pp_interp_ctx *ctx, pp_interp_frame *out, int max)
{
    script *s = baton;
    int i;

    atomic_fetch_add(&s->calls, 1);
    s->last_leaf_in_loop = ctx->leaf_in_loop;
    s->last_activations = ctx->activations;
    s->last_max = max;
    s->last_uc = ctx->ucontext;
    for (i = 0; i < s->n && i < max; i++) {
        out[i] = s->fr[i];
    }
    return i;
}

static pp_interp_frame frame(const char *name, const char *scope, const char *file,
                             uint32_t line, uint32_t start, uint32_t flags, uint64_t key)
{
    pp_interp_frame f;

    memset(&f, 0, sizeof(f));
    f.name = name;
    f.name_len = name ? strlen(name) : 0;
    f.scope = scope;
    f.scope_len = scope ? strlen(scope) : 0;
    f.file = file;
    f.file_len = file ? strlen(file) : 0;
    f.line = line;
    f.start_line = start;
    f.flags = flags;
    f.key = key;
    return f;
}

static int register_range(script *s, uint64_t lo, uint64_t hi)
{
    pp_interp_provider p;

    memset(&p, 0, sizeof(p));
    p.name = "test";
    p.lo[0] = lo;
    p.hi[0] = hi;
    p.nranges = 1;
    p.walk = scripted_walk;
    p.baton = s;
    return pp_interp_register(&p);
}

/* This process's maps, records included, and a symbolizer to name PCs with. */
typedef struct {
    pp_maps *maps;
    pp_symbolizer *sym;
} namer;

static namer namer_new(void)
{
    namer nm;
    char *text;
    size_t len;

    ck_assert_int_eq(pp_maps_read_text(NULL, &text, &len), 0);
    nm.maps = pp_maps_parse(text, len);
    free(text);
    ck_assert_ptr_nonnull(nm.maps);
    nm.sym = pp_symbolizer_new();
    ck_assert_ptr_nonnull(nm.sym);
    return nm;
}

static void namer_free(namer *nm)
{
    pp_maps_free(nm->maps);
    pp_symbolizer_free(nm->sym);
}

/* The frame at pc, as every consumer names it: (mapping path, file offset). */
static int name_pc(namer *nm, uint64_t pc, int is_return, pp_frame *f)
{
    const pp_map_entry *e;

    pc -= is_return ? 1 : 0;
    e = pp_maps_find(nm->maps, pc);
    if (!e) {
        return 0;
    }
    return pp_symbolize(nm->sym, e->path, pc - e->start + e->offset, f, 1);
}

static void assert_named(namer *nm, uint64_t pc, int is_return, const char *function,
                         const char *file, int line, int start_line)
{
    pp_frame f;

    ck_assert_msg(name_pc(nm, pc, is_return, &f) == 1, "pc %#llx not named",
                  (unsigned long long)pc);
    ck_assert_str_eq(f.function, function);
    if (file) {
        ck_assert_ptr_nonnull(f.file);
        ck_assert_str_eq(f.file, file);
    } else {
        ck_assert_ptr_null(f.file);
    }
    ck_assert_int_eq(f.line, line);
    ck_assert_int_eq(f.start_line, start_line);
}

/* ---- splicing ------------------------------------------------------------------------ */

START_TEST(without_a_provider_stacks_are_untouched)
{
    uint64_t pcs[8] = { 0x1100, 0x2200, 0x3300 };

    ck_assert_int_eq(pp_interp_active(), 0);
    ck_assert_uint_eq(pp_interp_splice(pcs, 3, 8, NULL, 1), 3);
    ck_assert_uint_eq(pcs[0], 0x1100);
    ck_assert_uint_eq(pcs[2], 0x3300);
}
END_TEST

START_TEST(frames_go_above_the_loop_activation_that_runs_them)
{
    static script s;
    /* Leaf first: a native callee, the loop, a native caller of the loop. */
    uint64_t pcs[16] = { 0x5000, 0x1500, 0x7000, 0x8000 };
    size_t n;
    namer nm;

    s.n = 2;
    s.fr[0] = frame("php_alpha", NULL, "/srv/hot.php", 3, 2, 0, 0);
    s.fr[1] = frame(NULL, NULL, "/srv/hot.php", 9, 0, PP_INTERP_LOOP_END, 0);
    s.fr[1].name = "{main}";
    s.fr[1].name_len = 6;
    ck_assert_int_gt(register_range(&s, 0x1000, 0x2000), 0);
    ck_assert_int_eq(pp_interp_active(), 1);
    n = pp_interp_splice(pcs, 4, 16, NULL, 1);
    ck_assert_uint_eq(n, 6);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.last_activations, 1);
    ck_assert_int_eq(s.last_leaf_in_loop, 0);
    ck_assert_uint_eq(pcs[0], 0x5000);
    ck_assert(is_synthetic(pcs[1]) && is_synthetic(pcs[2]));
    ck_assert_uint_eq(pcs[3], 0x1500);
    ck_assert_uint_eq(pcs[4], 0x7000);
    ck_assert_uint_eq(pcs[5], 0x8000);
    nm = namer_new();
    /* Names hold whether a consumer looks the PC up as it is or one byte back. */
    assert_named(&nm, pcs[1], 0, "php_alpha", "/srv/hot.php", 3, 2);
    assert_named(&nm, pcs[1], 1, "php_alpha", "/srv/hot.php", 3, 2);
    assert_named(&nm, pcs[2], 1, "{main}", "/srv/hot.php", 9, 0);
    namer_free(&nm);
}
END_TEST

START_TEST(a_stack_without_the_loop_is_not_walked)
{
    static script s;
    /* An interrupted PC at the range's end, a return address at its start (the call was
     * before it): neither is in the loop. */
    uint64_t pcs[8] = { 0x2000, 0x7000, 0x1000 };

    s.n = 1;
    s.fr[0] = frame("f", NULL, "/x.php", 1, 1, 0, 0);
    register_range(&s, 0x1000, 0x2000);
    ck_assert_uint_eq(pp_interp_splice(pcs, 3, 8, NULL, 1), 3);
    ck_assert_int_eq(s.calls, 0);
    ck_assert_uint_eq(pcs[0], 0x2000);
    pcs[0] = 0x1fff;
    ck_assert_uint_eq(pp_interp_splice(pcs, 1, 8, NULL, 1), 2);
    ck_assert_int_eq(s.calls, 1);
    ck_assert_int_eq(s.last_leaf_in_loop, 1);
    ck_assert(is_synthetic(pcs[0]));
    ck_assert_uint_eq(pcs[1], 0x1fff);
}
END_TEST

START_TEST(nested_loops_each_get_their_own_frames)
{
    static script s;
    /* closure runs in the inner loop (entered from a native array_map), the rest in the
     * outer one. */
    uint64_t pcs[16] = { 0x1010, 0x9000, 0x9100, 0x1200, 0x7000 };
    size_t n;
    namer nm;

    s.n = 4;
    s.fr[0] = frame("{closure}", NULL, "/a.php", 5, 4, PP_INTERP_LOOP_END, 0);
    s.fr[1] = frame("array_map", NULL, NULL, 0, 0, 0, 0);
    s.fr[2] = frame("run", "App", "/a.php", 12, 10, 0, 0);
    s.fr[3] = frame("{main}", NULL, "/a.php", 20, 0, PP_INTERP_LOOP_END, 0);
    register_range(&s, 0x1000, 0x2000);
    ck_assert_uint_eq(n = pp_interp_splice(pcs, 5, 16, &s, 1), 9);
    ck_assert_int_eq(s.last_activations, 2);
    ck_assert_int_eq(s.last_leaf_in_loop, 1);
    ck_assert_ptr_eq(s.last_uc, &s);
    nm = namer_new();
    assert_named(&nm, pcs[0], 0, "{closure}", "/a.php", 5, 4);
    ck_assert_uint_eq(pcs[1], 0x1010);
    ck_assert_uint_eq(pcs[2], 0x9000);
    ck_assert_uint_eq(pcs[3], 0x9100);
    assert_named(&nm, pcs[4], 1, "array_map", NULL, 0, 0);
    assert_named(&nm, pcs[5], 1, "App::run", "/a.php", 12, 10);
    assert_named(&nm, pcs[6], 1, "{main}", "/a.php", 20, 0);
    ck_assert_uint_eq(pcs[7], 0x1200);
    ck_assert_uint_eq(pcs[8], 0x7000);
    namer_free(&nm);
}
END_TEST

START_TEST(frames_of_activations_beyond_the_stack_are_dropped_and_counted)
{
    static script s;
    uint64_t pcs[16] = { 0x1010, 0x7000 };
    pp_interp_stats st;

    s.n = 3;
    s.fr[0] = frame("inner", NULL, "/a.php", 5, 4, PP_INTERP_LOOP_END, 0);
    s.fr[1] = frame("outer", NULL, "/a.php", 9, 8, 0, 0);
    s.fr[2] = frame("{main}", NULL, "/a.php", 20, 0, PP_INTERP_LOOP_END, 0);
    register_range(&s, 0x1000, 0x2000);
    ck_assert_uint_eq(pp_interp_splice(pcs, 2, 16, NULL, 1), 3);
    ck_assert(is_synthetic(pcs[0]));
    ck_assert_uint_eq(pcs[1], 0x1010);
    pp_interp_get_stats(&st);
    ck_assert_uint_eq(st.walks, 1);
    ck_assert_uint_eq(st.frames, 1);
    ck_assert_uint_eq(st.unplaced, 2);
}
END_TEST

START_TEST(splices_are_counted_and_one_in_four_timed)
{
    static script s;
    pp_interp_stats st;
    uint64_t total = 0, t0;
    int i;

    s.n = 1;
    s.fr[0] = frame("f", NULL, "/x.php", 1, 1, PP_INTERP_LOOP_END, 0);
    register_range(&s, 0x1000, 0x2000);
    for (i = 0; i < 8; i++) {
        /* Four samples in the loop, four outside it. */
        uint64_t pcs[8] = { i & 1 ? 0x1010 : 0x3000, 0x7000 };
        ck_assert_uint_eq(pp_interp_splice(pcs, 2, 8, NULL, 1), i & 1 ? 3 : 2);
    }
    pp_interp_get_stats(&st);
    ck_assert_uint_eq(st.samples, 8);
    ck_assert_uint_eq(st.spliced, 4);
    for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
        total += st.hist[i];
    }
    ck_assert_uint_eq(total, 2);
    /* The ticks go forward. */
    t0 = pp_interp_ticks();
    ck_assert_uint_ge(pp_interp_ticks(), t0);
}
END_TEST

START_TEST(splicing_stays_within_the_room_given)
{
    static script s;
    uint64_t pcs[8] = { 0x1010, 0x7000, 0x8000 };
    int i;

    s.n = 10;
    for (i = 0; i < 10; i++) {
        s.fr[i] = frame("f", NULL, "/a.php", (uint32_t)i + 1, 1, 0, 0);
    }
    register_range(&s, 0x1000, 0x2000);
    /* Room for 5 of them: the newest 5, then the native stack whole. */
    ck_assert_uint_eq(pp_interp_splice(pcs, 3, 8, NULL, 1), 8);
    ck_assert_int_eq(s.last_max, 5);
    ck_assert_uint_eq(pcs[5], 0x1010);
    ck_assert_uint_eq(pcs[7], 0x8000);
    /* A full stack is left as it is. */
    ck_assert_uint_eq(pp_interp_splice(pcs, 8, 8, NULL, 1), 8);
    ck_assert_int_eq(s.calls, 1);
}
END_TEST

/* ---- the table ----------------------------------------------------------------------- */

START_TEST(the_same_frame_is_one_pc_and_a_new_line_another_of_the_same_record)
{
    static script s;
    uint64_t a[4] = { 0x1010 }, b[4] = { 0x1010 }, c[4] = { 0x1010 }, d[4] = { 0x1010 };
    pp_interp_stats st;

    s.n = 1;
    s.fr[0] = frame("php_alpha", NULL, "/srv/hot.php", 3, 2, 0, 0);
    register_range(&s, 0x1000, 0x2000);
    pp_interp_splice(a, 1, 4, NULL, 1);
    pp_interp_splice(b, 1, 4, NULL, 1);
    ck_assert_uint_eq(a[0], b[0]);
    s.fr[0].line = 4;
    pp_interp_splice(c, 1, 4, NULL, 1);
    ck_assert_uint_ne(c[0], a[0]);
    ck_assert_uint_eq(SLOT(c[0]), SLOT(a[0]));
    /* Found by the provider's key: the strings are not even read. */
    s.fr[0] = frame("keyed", NULL, "/k.php", 1, 1, 0, 0xabcdef);
    pp_interp_splice(d, 1, 4, NULL, 1);
    s.fr[0].name = "garbage that must not be read";
    b[0] = 0x1010;
    pp_interp_splice(b, 1, 4, NULL, 1);
    ck_assert_uint_eq(b[0], d[0]);
    pp_interp_get_stats(&st);
    ck_assert_uint_eq(st.records, 2);
    {
        namer nm = namer_new();
        assert_named(&nm, a[0], 0, "php_alpha", "/srv/hot.php", 3, 2);
        assert_named(&nm, c[0], 1, "php_alpha", "/srv/hot.php", 4, 2);
        assert_named(&nm, d[0], 0, "keyed", "/k.php", 1, 1);
        namer_free(&nm);
    }
}
END_TEST

START_TEST(names_are_bounded_and_cannot_break_a_maps_line)
{
    static script s;
    static char longname[1000], longfile[3000];
    uint64_t a[4] = { 0x1010 }, b[4] = { 0x1010 };
    namer nm;
    pp_frame f;

    memset(longname, 'n', sizeof(longname) - 1);
    memset(longfile, 'f', sizeof(longfile) - 1);
    longfile[0] = '/';
    s.n = 1;
    s.fr[0] = frame("bad\tname\nwith\rcontrols", "Cl\x01s", "/tmp/a\tb\n.php", 7, 6, 0, 0);
    register_range(&s, 0x1000, 0x2000);
    pp_interp_splice(a, 1, 4, NULL, 1);
    s.fr[0] = frame(longname, NULL, longfile, 1, 1, 0, 0);
    pp_interp_splice(b, 1, 4, NULL, 1);
    nm = namer_new();
    assert_named(&nm, a[0], 0, "Cl?s::bad?name?with?controls", "/tmp/a?b?.php", 7, 6);
    ck_assert_int_eq(name_pc(&nm, b[0], 0, &f), 1);
    ck_assert_uint_eq(strlen(f.function), PP_INTERP_MAX_NAME);
    ck_assert_uint_eq(strlen(f.file), PP_INTERP_MAX_FILE);
    namer_free(&nm);
}
END_TEST

START_TEST(a_full_table_names_the_rest_as_such)
{
    static script s;
    uint64_t pcs[4];
    pp_interp_stats st;
    uint32_t i;
    namer nm;

    s.n = 1;
    register_range(&s, 0x1000, 0x2000);
    for (i = 0; i < 20000; i++) {
        s.fr[0] = frame("f", NULL, "/a.php", 7, i + 1, 0, 0);
        pcs[0] = 0x1010;
        ck_assert_uint_eq(pp_interp_splice(pcs, 1, 4, NULL, 1), 2);
        ck_assert(is_synthetic(pcs[0]));
    }
    pp_interp_get_stats(&st);
    ck_assert_uint_le(st.records, 16383);
    ck_assert_uint_ge(st.records, 15000);
    ck_assert_uint_eq(st.records + st.table_full, 20000);
    /* The last one did not fit: it is the table's own record. */
    nm = namer_new();
    ck_assert_uint_eq(SLOT(pcs[0]), 0);
    assert_named(&nm, pcs[0], 0, "(interpreter frames table full)", NULL, 7, 0);
    namer_free(&nm);
}
END_TEST

typedef struct {
    script *s;
    uint64_t seen[64][2];       /* a frame may get a second record when two threads race */
    int extra;
} racer;

/* Threads intern the same 64 frames (half found by key, half by content), each from its
 * own copy of the script, in a different order: every PC they get must name the frame
 * they asked for. */
static void *race(void *arg)
{
    racer *r = arg;
    int round, k;
    unsigned seed = (unsigned)(uintptr_t)arg;

    for (round = 0; round < 200; round++) {
        for (k = 0; k < 64; k++) {
            int j = (int)(rand_r(&seed) % 64);
            uint64_t pcs[4] = { 0x1010 };
            r->s->fr[0] = frame("racer", NULL, "/race.php", (uint32_t)j + 1, (uint32_t)j + 1,
                                0, j % 2 ? 0 : 1000 + (uint64_t)j);
            pp_interp_splice(pcs, 1, 4, NULL, 1);
            if (!r->seen[j][0]) {
                r->seen[j][0] = pcs[0];
            } else if (r->seen[j][0] != pcs[0] && r->seen[j][1] != pcs[0]) {
                r->extra += r->seen[j][1] != 0;
                r->seen[j][1] = pcs[0];
            }
        }
    }
    return NULL;
}

/* A provider whose script is the calling thread's own. */
static __thread script *tls_script;

static int tls_walk(void *baton, const pp_interp_ctx *ctx, pp_interp_frame *out, int max)
{
    (void)baton;
    (void)ctx;
    out[0] = tls_script->fr[0];
    return max > 0 ? 1 : 0;
}

static void *race_tls(void *arg)
{
    racer *r = arg;
    tls_script = r->s;
    return race(arg);
}

START_TEST(interning_from_many_threads_keeps_every_record_whole)
{
    static script ss[4];
    racer rs[4];
    pthread_t t[4];
    pp_interp_provider p;
    pp_interp_stats st;
    namer nm;
    int i, j;

    memset(&p, 0, sizeof(p));
    p.name = "race";
    p.lo[0] = 0x1000;
    p.hi[0] = 0x2000;
    p.nranges = 1;
    p.walk = tls_walk;
    ck_assert_int_gt(pp_interp_register(&p), 0);
    memset(rs, 0, sizeof(rs));
    for (i = 0; i < 4; i++) {
        rs[i].s = &ss[i];
        ck_assert_int_eq(pthread_create(&t[i], NULL, race_tls, &rs[i]), 0);
    }
    for (i = 0; i < 4; i++) {
        pthread_join(t[i], NULL);
    }
    nm = namer_new();
    for (i = 0; i < 4; i++) {
        ck_assert_int_eq(rs[i].extra, 0);
        for (j = 0; j < 64; j++) {
            int k;
            for (k = 0; k < 2; k++) {
                if (rs[i].seen[j][k]) {
                    assert_named(&nm, rs[i].seen[j][k], 0, "racer", "/race.php", j + 1, j + 1);
                }
            }
        }
    }
    pp_interp_get_stats(&st);
    ck_assert_uint_ge(st.records, 64);
    ck_assert_uint_le(st.records, 128);
    namer_free(&nm);
}
END_TEST

/* ---- maps and the resolver ----------------------------------------------------------- */

START_TEST(records_travel_in_this_process_maps_only)
{
    static script s;
    uint64_t pcs[4] = { 0x1010 };
    pp_maps *own, *file;
    size_t i, nrec = 0;

    s.n = 1;
    s.fr[0] = frame("f", NULL, "/a.php", 1, 1, 0, 0);
    register_range(&s, 0x1000, 0x2000);
    pp_interp_splice(pcs, 1, 4, NULL, 1);
    own = pp_maps_read(NULL);
    file = pp_maps_read("/proc/self/maps");
    ck_assert_ptr_nonnull(own);
    ck_assert_ptr_nonnull(file);
    for (i = 0; i < pp_maps_count(own); i++) {
        nrec += pp_interp_is_path(pp_maps_get(own, i)->path);
    }
    /* The table's own record and ours; sorted after every real mapping. */
    ck_assert_uint_eq(nrec, 2);
    ck_assert(pp_interp_is_path(pp_maps_get(own, pp_maps_count(own) - 1)->path));
    ck_assert_ptr_nonnull(pp_maps_find(own, pcs[0]));
    ck_assert_ptr_null(pp_maps_find(file, pcs[0]));
    ck_assert_uint_eq(pp_maps_count(file) + 2, pp_maps_count(own));
    pp_maps_free(own);
    pp_maps_free(file);
}
END_TEST

static const char *fn_name(Perftools__Profiles__Profile *pb, uint64_t function_id)
{
    size_t i;

    for (i = 0; i < pb->n_function; i++) {
        if (pb->function[i]->id == function_id) {
            return pb->string_table[pb->function[i]->name];
        }
    }
    return NULL;
}

START_TEST(the_resolver_makes_one_location_per_script_line_across_processes)
{
    /* Two children whose tables gave the same frames different slots. */
    const char *maps1 =
        "fff0000001000000-fff0000002000000 r-xp 0 00:00 0 [pp-interp] php_alpha\t/s/hot.php\t2\n"
        "fff0000002000000-fff0000003000000 r-xp 0 00:00 0 [pp-interp] {main}\t/s/hot.php\t0\n";
    const char *maps2 =
        "fff0000005000000-fff0000006000000 r-xp 0 00:00 0 [pp-interp] {main}\t/s/hot.php\t0\n"
        "fff0000007000000-fff0000008000000 r-xp 0 00:00 0 [pp-interp] php_alpha\t/s/hot.php\t2\n";
    /* php_alpha at line 3, {main} at line 9: 16 bytes a line, 8 into it. */
    uint64_t s1[2] = { 0xfff0000001000038ull, 0xfff0000002000098ull };
    uint64_t s2[2] = { 0xfff0000007000038ull, 0xfff0000005000098ull };
    uint64_t l1[2], l2[2];
    pp_maps *m1 = pp_maps_parse(maps1, strlen(maps1)), *m2 = pp_maps_parse(maps2, strlen(maps2));
    pp_profile *prof = pp_profile_new();
    pp_symbolizer *sym = pp_symbolizer_new();
    pp_resolver *r = pp_resolver_new(prof, sym);
    int64_t v[1] = { 1 };
    unsigned char *out;
    size_t len, i;
    Perftools__Profiles__Profile *pb;

    ck_assert_uint_eq(pp_maps_count(m1), 2);
    ck_assert_int_eq(pp_resolver_add_mappings(r, m1), 0);
    ck_assert_int_eq(pp_resolver_stack(r, m1, s1, 2, 0, l1), 2);
    ck_assert_int_eq(pp_resolver_stack(r, m2, s2, 2, 0, l2), 2);
    ck_assert_uint_eq(l1[0], l2[0]);
    ck_assert_uint_eq(l1[1], l2[1]);
    ck_assert_uint_ne(l1[0], l1[1]);
    pp_profile_add_sample_type(prof, "samples", "count");
    ck_assert_int_eq(pp_profile_add_sample(prof, l1, 2, v, NULL, 0), 0);
    ck_assert_int_eq(pp_profile_encode(prof, 0, &out, &len), 0);
    pb = perftools__profiles__profile__unpack(NULL, len, out);
    ck_assert_ptr_nonnull(pb);
    /* No mapping for records; each location one line of its function, at the line. */
    ck_assert_uint_eq(pb->n_mapping, 0);
    ck_assert_uint_eq(pb->n_location, 2);
    for (i = 0; i < pb->n_location; i++) {
        Perftools__Profiles__Location *loc = pb->location[i];
        const char *name;
        ck_assert_uint_eq(loc->mapping_id, 0);
        ck_assert_uint_eq(loc->n_line, 1);
        name = fn_name(pb, loc->line[0]->function_id);
        ck_assert_ptr_nonnull(name);
        if (strcmp(name, "php_alpha") == 0) {
            ck_assert_int_eq(loc->line[0]->line, 3);
        } else {
            ck_assert_str_eq(name, "{main}");
            ck_assert_int_eq(loc->line[0]->line, 9);
        }
    }
    for (i = 0; i < pb->n_function; i++) {
        ck_assert_str_eq(pb->string_table[pb->function[i]->filename], "/s/hot.php");
    }
    perftools__profiles__profile__free_unpacked(pb, NULL);
    free(out);
    pp_resolver_free(r);
    pp_symbolizer_free(sym);
    pp_profile_free(prof);
    pp_maps_free(m1);
    pp_maps_free(m2);
}
END_TEST

/* ---- the samplers, for real ---------------------------------------------------------- */

/* The fake interpreter loop: a section of its own, whose bounds the linker provides. */
extern char __start_pp_fake_loop[], __stop_pp_fake_loop[];
__attribute__((noinline, noclone, section("pp_fake_loop"))) uint64_t fake_loop(
    uint64_t (*callee)(uint64_t), atomic_int *stop);

static uint64_t fake_loop_callee_spin(uint64_t x);
static uint64_t fake_loop_callee_sleep(uint64_t x);
static uint64_t fake_loop_callee_alloc(uint64_t x);

uint64_t fake_loop(uint64_t (*callee)(uint64_t), atomic_int *stop)
{
    uint64_t x = 1;

    while (!atomic_load(stop)) {
        unsigned i;
        for (i = 0; i < 100000; i++) {
            x = x * 6364136223846793005ULL + 1;
            __asm__ volatile("" : "+r"(x));
        }
        if (callee) {
            x = callee(x);
        }
        __asm__ volatile("" ::: "memory");
    }
    return x;
}

static __attribute__((noinline, noclone)) uint64_t fake_loop_callee_spin(uint64_t x)
{
    unsigned i;

    for (i = 0; i < 100000; i++) {
        x = x * 2862933555777941757ULL + 3;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static __attribute__((noinline, noclone)) uint64_t fake_loop_callee_sleep(uint64_t x)
{
    struct timespec ts = { 0, 20 * 1000000 };
    nanosleep(&ts, NULL);
    return x + 1;
}

static void *(*alloc_fn)(size_t);
static void (*free_fn)(void *);

static __attribute__((noinline, noclone)) uint64_t fake_loop_callee_alloc(uint64_t x)
{
    void *p = alloc_fn(4096);
    free_fn(p);
    return x + (uint64_t)(uintptr_t)p;
}

static script loop_script;

static int register_fake_loop(void)
{
    loop_script.n = 2;
    loop_script.fr[0] = frame("php_inner", NULL, "/srv/fake.php", 11, 10, 0, 77);
    loop_script.fr[1] = frame("{main}", NULL, "/srv/fake.php", 30, 0, PP_INTERP_LOOP_END, 78);
    return register_range(&loop_script, (uint64_t)(uintptr_t)__start_pp_fake_loop,
                          (uint64_t)(uintptr_t)__stop_pp_fake_loop);
}

/* An interrupted PC in the loop, or a return address into it. */
static int in_fake_loop(uint64_t pc)
{
    return pc >= (uint64_t)(uintptr_t)__start_pp_fake_loop &&
           pc <= (uint64_t)(uintptr_t)__stop_pp_fake_loop;
}

typedef struct {
    uint64_t (*callee)(uint64_t);
    atomic_int stop;
    atomic_int tid;
    int warm;
} looper;

static void *loop_thread(void *arg)
{
    looper *l = arg;

    atomic_store(&l->tid, (int)syscall(SYS_gettid));
    if (l->warm) {
        pp_cpu_thread_warm();
    }
    pp_threads_allow();
    fake_loop(l->callee, &l->stop);
    return NULL;
}

typedef struct {
    int total, spliced, placed_right, ids_differ;
    uint64_t first_inner;
} cpu_tally;

/* A sample of the loop's thread: the two frames right above the loop's native frame. */
static void tally(void *baton, const pp_cpu_sample *s)
{
    cpu_tally *t = baton;
    uint32_t i;

    t->total++;
    for (i = 0; i < s->npcs; i++) {
        if (is_synthetic(s->pcs[i])) {
            t->spliced++;
            if (i + 2 < s->npcs && is_synthetic(s->pcs[i + 1]) && in_fake_loop(s->pcs[i + 2])) {
                t->placed_right++;
            }
            if (t->first_inner && t->first_inner != s->pcs[i]) {
                t->ids_differ++;
            }
            t->first_inner = s->pcs[i];
            break;
        }
    }
}

START_TEST(cpu_samples_inside_the_loop_carry_its_frames)
{
    looper l = { fake_loop_callee_spin, 0, 0, 1 };
    pthread_t t;
    cpu_tally tl;
    struct timespec ts = { 0, 50 * 1000000 };
    namer nm;
    int i;

    memset(&tl, 0, sizeof(tl));
    ck_assert_int_gt(register_fake_loop(), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, loop_thread, &l), 0);
    while (!atomic_load(&l.tid)) {
        nanosleep(&ts, NULL);
    }
    ck_assert_int_eq(pp_cpu_start(200, 4096), 0);
    for (i = 0; i < 40 && tl.total < 40; i++) {
        nanosleep(&ts, NULL);
        pp_cpu_drain(tally, &tl);
    }
    pp_cpu_stop(tally, &tl);
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    ck_assert_int_ge(tl.total, 10);
    /* Every sample of the thread is in the loop or its callee: all carry the frames. */
    ck_assert_int_ge(tl.spliced, tl.total * 9 / 10);
    ck_assert_int_eq(tl.placed_right, tl.spliced);
    ck_assert_int_eq(tl.ids_differ, 0);
    nm = namer_new();
    assert_named(&nm, tl.first_inner, 0, "php_inner", "/srv/fake.php", 11, 10);
    namer_free(&nm);
    ck_assert_int_ge(loop_script.last_activations, 1);
}
END_TEST

START_TEST(a_thread_dump_shows_the_frames_of_a_thread_waiting_in_the_loop)
{
    looper l = { fake_loop_callee_sleep, 0, 0, 0 };
    pthread_t t;
    pp_thread_stack *st = NULL;
    size_t n = 0, i;
    struct timespec ts = { 0, 50 * 1000000 };
    int found = 0;
    namer nm;

    ck_assert_int_gt(register_fake_loop(), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, loop_thread, &l), 0);
    while (!atomic_load(&l.tid)) {
        nanosleep(&ts, NULL);
    }
    nanosleep(&ts, NULL);
    ck_assert_int_eq(pp_threads_capture(&st, &n, 1000), 0);
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    nm = namer_new();
    for (i = 0; i < n; i++) {
        uint32_t k;
        if (st[i].tid != (uint32_t)atomic_load(&l.tid)) {
            continue;
        }
        ck_assert_int_eq(st[i].result, PP_THREAD_OK);
        for (k = 0; k + 2 < st[i].npcs; k++) {
            if (is_synthetic(st[i].pcs[k])) {
                assert_named(&nm, st[i].pcs[k], 1, "php_inner", "/srv/fake.php", 11, 10);
                assert_named(&nm, st[i].pcs[k + 1], 1, "{main}", "/srv/fake.php", 30, 0);
                ck_assert(in_fake_loop(st[i].pcs[k + 2]));
                found = 1;
                break;
            }
        }
    }
    namer_free(&nm);
    free(st);
    ck_assert_msg(found, "no interpreter frames in the dump of the looping thread");
}
END_TEST

typedef struct {
    int stacks, spliced;
} heap_tally;

static void heap_stack(void *baton, const pp_stack *s)
{
    heap_tally *h = baton;
    uint32_t i;

    h->stacks++;
    for (i = 0; i + 2 < s->npcs; i++) {
        if (is_synthetic(s->pcs[i]) && is_synthetic(s->pcs[i + 1]) && in_fake_loop(s->pcs[i + 2])) {
            h->spliced++;
            break;
        }
    }
}

START_TEST(heap_samples_of_the_loop_carry_its_frames)
{
    void *lib = dlopen(TEST_ALLOCLIB, RTLD_NOW);
    looper l = { fake_loop_callee_alloc, 0, 0, 0 };
    pthread_t t;
    struct timespec ts = { 0, 100 * 1000000 };
    unsigned char *buf;
    size_t len;
    heap_tally h = { 0, 0 };

    ck_assert_ptr_nonnull(lib);
    alloc_fn = (void *(*)(size_t))dlsym(lib, "ppt_malloc");
    free_fn = (void (*)(void *))dlsym(lib, "ppt_free");
    ck_assert(alloc_fn && free_fn);
    ck_assert_int_gt(register_fake_loop(), 0);
    ck_assert_int_ge(pp_heap_start(1), 0);
    ck_assert_int_eq(pthread_create(&t, NULL, loop_thread, &l), 0);
    nanosleep(&ts, NULL);
    atomic_store(&l.stop, 1);
    pthread_join(t, NULL);
    pp_heap_stop();
    ck_assert_int_eq(pp_heap_serialize(&buf, &len), 0);
    ck_assert_int_eq(pp_stacktab_parse(buf, len, heap_stack, &h), 0);
    free(buf);
    ck_assert_int_ge(h.spliced, 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_interp");
    TCase *tc = tcase_create("splice");
    TCase *tt = tcase_create("table");
    TCase *tm = tcase_create("maps");
    TCase *ts = tcase_create("samplers");

    tcase_add_test(tc, without_a_provider_stacks_are_untouched);
    tcase_add_test(tc, frames_go_above_the_loop_activation_that_runs_them);
    tcase_add_test(tc, a_stack_without_the_loop_is_not_walked);
    tcase_add_test(tc, nested_loops_each_get_their_own_frames);
    tcase_add_test(tc, frames_of_activations_beyond_the_stack_are_dropped_and_counted);
    tcase_add_test(tc, splicing_stays_within_the_room_given);
    tcase_add_test(tc, splices_are_counted_and_one_in_four_timed);
    suite_add_tcase(s, tc);
    tcase_add_test(tt, the_same_frame_is_one_pc_and_a_new_line_another_of_the_same_record);
    tcase_add_test(tt, names_are_bounded_and_cannot_break_a_maps_line);
    tcase_add_test(tt, a_full_table_names_the_rest_as_such);
    tcase_add_test(tt, interning_from_many_threads_keeps_every_record_whole);
    suite_add_tcase(s, tt);
    tcase_add_test(tm, records_travel_in_this_process_maps_only);
    tcase_add_test(tm, the_resolver_makes_one_location_per_script_line_across_processes);
    suite_add_tcase(s, tm);
    tcase_set_timeout(ts, 30);
    tcase_add_test(ts, cpu_samples_inside_the_loop_carry_its_frames);
    tcase_add_test(ts, a_thread_dump_shows_the_frames_of_a_thread_waiting_in_the_loop);
    tcase_add_test(ts, heap_samples_of_the_loop_carry_its_frames);
    suite_add_tcase(s, ts);
    return run_suite(s);
}
