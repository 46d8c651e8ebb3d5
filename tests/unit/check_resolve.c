/* The resolver, end to end on this process: a real stack, captured with libunwind,
 * normalized, symbolized and encoded. The profile is also written to
 * out/selfprofile.pb.gz so that the integration tests can open it with go tool pprof. */
#include "pp_maps.h"
#include "pp_profile.h"
#include "pp_resolve.h"
#include "pp_symbolize.h"
#include "profile.pb-c.h"

#include <check.h>
#include "unit_main.h"
#include <libunwind.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

typedef Perftools__Profiles__Profile pb_profile;

__attribute__((noinline)) int resolve_leaf(void **pcs, int max);
__attribute__((noinline)) int resolve_middle(void **pcs, int max);
__attribute__((noinline)) int resolve_outer(void **pcs, int max);

int resolve_leaf(void **pcs, int max)
{
    int n = unw_backtrace(pcs, max);    /* LEAF_LINE */
    __asm__ volatile("" ::: "memory");
    return n;
}

int resolve_middle(void **pcs, int max)
{
    int n = resolve_leaf(pcs, max);     /* MIDDLE_LINE */
    __asm__ volatile("" ::: "memory");
    return n;
}

int resolve_outer(void **pcs, int max)
{
    int n = resolve_middle(pcs, max);   /* OUTER_LINE */
    __asm__ volatile("" ::: "memory");
    return n;
}

static int line_of(const char *marker)
{
    FILE *f = fopen(TEST_SRCDIR "/check_resolve.c", "r");
    char buf[512];
    int n = 0;

    while (f && fgets(buf, sizeof(buf), f)) {
        n++;
        if (strstr(buf, marker) && !strstr(buf, "line_of(")) {
            fclose(f);
            return n;
        }
    }
    if (f) {
        fclose(f);
    }
    return -1;
}

static const char *function_of(const pb_profile *pb, uint64_t loc_id, int64_t *line)
{
    const Perftools__Profiles__Location *l = pb->location[loc_id - 1];
    const Perftools__Profiles__Line *ln;

    ck_assert_uint_eq(l->id, loc_id);
    if (l->n_line == 0) {
        return NULL;
    }
    ln = l->line[l->n_line - 1];
    *line = ln->line;
    return pb->string_table[pb->function[ln->function_id - 1]->name];
}

START_TEST(a_real_stack_resolves_to_named_lines)
{
    void *raw[64];
    uint64_t pcs[64], locs[64], again[64];
    int n = resolve_outer(raw, 64), i, m;
    pp_profile *p = pp_profile_new();
    pp_symbolizer *sym = pp_symbolizer_new();
    pp_resolver *r = pp_resolver_new(p, sym);
    pp_maps *maps = pp_maps_read(NULL);
    int64_t values[2] = { 1, 10000000 }, line = 0;
    pp_label labels[1] = { { "pid", NULL, 1234, NULL } };
    unsigned char *buf;
    size_t len;
    pb_profile *pb;
    FILE *f;

    ck_assert_int_ge(n, 4);
    for (i = 0; i < n; i++) {
        pcs[i] = (uint64_t)(uintptr_t)raw[i];
    }
    pp_profile_add_sample_type(p, "samples", "count");
    pp_profile_add_sample_type(p, "cpu", "nanoseconds");
    pp_profile_set_period(p, "cpu", "nanoseconds", 10000000);
    ck_assert_int_eq(pp_resolver_add_mappings(r, maps), 0);
    /* unw_backtrace's first PC is in resolve_leaf itself: a return address, like the rest. */
    m = pp_resolver_stack(r, maps, pcs, (size_t)n, 1, locs);
    ck_assert_int_eq(m, n);
    /* The same PCs from "another process" with the same maps give the same locations. */
    ck_assert_int_eq(pp_resolver_stack(r, maps, pcs, (size_t)n, 1, again), n);
    ck_assert_mem_eq(locs, again, (size_t)n * sizeof(uint64_t));
    ck_assert_int_eq(pp_profile_add_sample(p, locs, (size_t)n, values, labels, 1), 0);
    ck_assert_int_eq(pp_profile_encode(p, 0, &buf, &len), 0);
    pb = perftools__profiles__profile__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(pb);

    ck_assert_str_eq(function_of(pb, locs[0], &line), "resolve_leaf");
    ck_assert_int_eq(line, line_of("/* LEAF_LINE */"));
    ck_assert_str_eq(function_of(pb, locs[1], &line), "resolve_middle");
    ck_assert_int_eq(line, line_of("/* MIDDLE_LINE */"));
    ck_assert_str_eq(function_of(pb, locs[2], &line), "resolve_outer");
    ck_assert_int_eq(line, line_of("/* OUTER_LINE */"));
    /* Mapping 1 is the main executable, as pprof expects, with a build id. */
    ck_assert_ptr_nonnull(strstr(pb->string_table[pb->mapping[0]->filename], "check_resolve"));
    ck_assert_uint_eq(strlen(pb->string_table[pb->mapping[0]->build_id]), 40);
    ck_assert(pb->mapping[0]->has_functions && pb->mapping[0]->has_line_numbers);
    perftools__profiles__profile__free_unpacked(pb, NULL);

    /* For the integration test that opens it with go tool pprof. */
    mkdir(TEST_BUILDDIR "/out", 0755);
    ck_assert_int_eq(pp_profile_encode(p, 1, &buf, &len), 0);
    f = fopen(TEST_BUILDDIR "/out/selfprofile.pb.gz", "wb");
    ck_assert_ptr_nonnull(f);
    ck_assert_uint_eq(fwrite(buf, 1, len, f), len);
    fclose(f);
    free(buf);

    pp_maps_free(maps);
    pp_resolver_free(r);
    pp_symbolizer_free(sym);
    pp_profile_free(p);
}
END_TEST

START_TEST(unknown_pcs_and_synthetic_frames)
{
    pp_profile *p = pp_profile_new();
    pp_symbolizer *sym = pp_symbolizer_new();
    pp_resolver *r = pp_resolver_new(p, sym);
    pp_maps *maps = pp_maps_parse("", 0);
    uint64_t pcs[2] = { 0x1234, 0x5678 }, locs[2], a, b;

    ck_assert_int_eq(pp_resolver_stack(r, maps, pcs, 2, 0, locs), 2);
    ck_assert_uint_ne(locs[0], 0);
    ck_assert_uint_ne(locs[0], locs[1]);
    a = pp_resolver_synthetic(r, "mod_pprof.lost");
    b = pp_resolver_synthetic(r, "mod_pprof.lost");
    ck_assert_uint_ne(a, 0);
    ck_assert_uint_eq(a, b);
    ck_assert_uint_ne(pp_resolver_synthetic(r, "other"), a);
    pp_maps_free(maps);
    pp_resolver_free(r);
    pp_symbolizer_free(sym);
    pp_profile_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_resolve");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, a_real_stack_resolves_to_named_lines);
    tcase_add_test(tc, unknown_pcs_and_synthetic_frames);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
