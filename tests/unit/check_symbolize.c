#include "pp_maps.h"
#include "pp_symbolize.h"

#include <check.h>
#include "unit_main.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

__attribute__((noinline)) int symbolize_target(int x);
__attribute__((noinline)) int opaque(int x);
static inline __attribute__((always_inline)) int inlined_helper(int x);

int opaque(int x)
{
    __asm__ volatile("" ::: "memory");
    return x + 1;
}

static int inlined_helper(int x)
{
    return opaque(x) * 3;               /* INLINE_LINE */
}

__attribute__((noinline)) int symbolize_target(int x)
{
    return inlined_helper(x) + opaque(2); /* CALLSITE_LINE */
}

/* A symbol inside another (as hand-written assembly has them): addresses of the outer
 * one around the inner one name the outer one, the inner one's name the inner one. */
__asm__(".text\n"
        ".globl pp_test_outer\n"
        ".type pp_test_outer, @function\n"
        "pp_test_outer:\n"
        ".skip 16, 0x90\n"
        ".globl pp_test_inner\n"
        ".type pp_test_inner, @function\n"
        "pp_test_inner:\n"
        ".skip 8, 0x90\n"
        ".size pp_test_inner, 8\n"
        ".skip 8, 0x90\n"
        "ret\n"
        ".size pp_test_outer, .-pp_test_outer\n");
extern const char pp_test_outer[], pp_test_inner[];

/* The line number of the first line of this file that contains marker. */
static int line_of(const char *marker)
{
    FILE *f = fopen(TEST_SRCDIR "/check_symbolize.c", "r");
    char buf[512];
    int n = 0;

    ck_assert_ptr_nonnull(f);
    while (fgets(buf, sizeof(buf), f)) {
        n++;
        if (strstr(buf, marker) && !strstr(buf, "line_of(")) {
            fclose(f);
            return n;
        }
    }
    fclose(f);
    return -1;
}

static int symbolize_addr(pp_symbolizer *s, const void *addr, pp_frame *frames, int max)
{
    pp_maps *m = pp_maps_read(NULL);
    const pp_map_entry *e = pp_maps_find(m, (uint64_t)(uintptr_t)addr);
    int n;

    ck_assert_ptr_nonnull(e);
    n = pp_symbolize(s, e->path, (uint64_t)(uintptr_t)addr - e->start + e->offset, frames, max);
    pp_maps_free(m);
    return n;
}

START_TEST(names_a_function_with_file_and_line)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_frame fr[8];
    int n = symbolize_addr(s, (const void *)symbolize_target, fr, 8);

    ck_assert_int_ge(n, 1);
    ck_assert_str_eq(fr[n - 1].function, "symbolize_target");
    ck_assert_ptr_nonnull(strstr(fr[n - 1].file, "check_symbolize.c"));
    /* The entry address is on the signature or the brace just before the body. */
    ck_assert_int_ge(fr[n - 1].line, line_of("/* CALLSITE_LINE */") - 2);
    ck_assert_int_le(fr[n - 1].line, line_of("/* CALLSITE_LINE */"));
    pp_symbolizer_free(s);
}
END_TEST

START_TEST(inlined_calls_become_frames)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_frame fr[8];
    const unsigned char *p = (const unsigned char *)symbolize_target;
    int n = 0, i, found = 0;

    /* Walk the function's first bytes until an address inside the inlined body. */
    for (i = 0; i < 64 && !found; i++) {
        n = symbolize_addr(s, p + i, fr, 8);
        found = n == 2;
    }
    ck_assert_msg(found, "no address of symbolize_target symbolized as an inline chain");
    ck_assert_str_eq(fr[0].function, "inlined_helper");
    ck_assert_int_eq(fr[0].line, line_of("/* INLINE_LINE */"));
    ck_assert_str_eq(fr[1].function, "symbolize_target");
    ck_assert_int_eq(fr[1].line, line_of("/* CALLSITE_LINE */"));
    ck_assert_ptr_nonnull(strstr(fr[1].file, "check_symbolize.c"));
    pp_symbolizer_free(s);
}
END_TEST

START_TEST(names_libc_functions_from_dynsym)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_frame fr[8];
    int n = symbolize_addr(s, (const void *)getpid, fr, 8);

    ck_assert_int_ge(n, 1);
    ck_assert_ptr_nonnull(strstr(fr[n - 1].function, "getpid"));
    pp_symbolizer_free(s);
}
END_TEST

START_TEST(build_id_is_hex_and_cached)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_maps *m = pp_maps_read(NULL);
    const pp_map_entry *e = pp_maps_find(m, (uint64_t)(uintptr_t)symbolize_target);
    const char *id = pp_symbolizer_build_id(s, e->path);
    size_t i;

    ck_assert_ptr_nonnull(id);
    ck_assert_uint_eq(strlen(id), 40);
    for (i = 0; i < 40; i++) {
        ck_assert(strchr("0123456789abcdef", id[i]) != NULL);
    }
    ck_assert_ptr_eq(pp_symbolizer_build_id(s, e->path), id);
    ck_assert_int_eq(pp_symbolizer_has_lines(s, e->path), 1);
    pp_maps_free(m);
    pp_symbolizer_free(s);
}
END_TEST

START_TEST(unknown_objects_and_offsets_give_nothing)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_frame fr[4];

    ck_assert_int_eq(pp_symbolize(s, "/nonexistent/lib.so", 0x1000, fr, 4), 0);
    ck_assert_int_eq(pp_symbolize(s, "[vdso]", 0x10, fr, 4), 0);
    ck_assert_int_eq(pp_symbolize(s, "/proc/self/exe", 0x7fffffffffffULL, fr, 4), 0);
    ck_assert_ptr_null(pp_symbolizer_build_id(s, "/nonexistent/lib.so"));
    pp_symbolizer_free(s);
}
END_TEST


/* pp_symbolize_pc is pp_maps_find + the file offset + pp_symbolize, in one place. */
START_TEST(a_pc_in_a_process_s_maps_is_named_as_its_object_offset)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_maps *m = pp_maps_read(NULL);
    uint64_t pc = (uint64_t)(uintptr_t)symbolize_target;
    pp_frame a[8], b[8];
    pp_pc_site site;
    int na, nb;

    na = pp_symbolize_pc(s, m, pc, 0, a, 8, &site);
    ck_assert_int_ge(na, 1);
    ck_assert_uint_eq(site.pc, pc);
    ck_assert_ptr_eq(site.map, pp_maps_find(m, pc));
    ck_assert_uint_eq(site.file_offset, pc - site.map->start + site.map->offset);
    nb = pp_symbolize(s, site.map->path, site.file_offset, b, 8);
    ck_assert_int_eq(na, nb);
    ck_assert_str_eq(a[na - 1].function, "symbolize_target");
    ck_assert_ptr_eq(a[na - 1].function, b[nb - 1].function);
    /* A return address is looked up one byte back: the call instruction. */
    pp_symbolize_pc(s, m, pc + 1, 1, a, 8, &site);
    ck_assert_uint_eq(site.pc, pc);
    /* Nothing maps address 8, and no maps at all finds nothing either. */
    ck_assert_int_eq(pp_symbolize_pc(s, m, 8, 0, a, 8, &site), 0);
    ck_assert_ptr_null(site.map);
    ck_assert_uint_eq(site.pc, 8);
    ck_assert_int_eq(pp_symbolize_pc(s, NULL, pc, 0, a, 8, &site), 0);
    ck_assert_ptr_null(site.map);
    /* A return address of 0 stays 0 (no wrap to the top of the address space). */
    pp_symbolize_pc(s, m, 0, 1, a, 8, &site);
    ck_assert_uint_eq(site.pc, 0);
    pp_maps_free(m);
    pp_symbolizer_free(s);
}
END_TEST

/* Both NULL (unknown), or equal strings. */
static int same_str(const char *a, const char *b)
{
    return a == b || (a && b && strcmp(a, b) == 0);
}

/* The site cache answers what a fresh lookup would, including the inline chain, a
 * smaller max, and after it filled up and started over. */
START_TEST(cached_sites_answer_as_fresh_lookups)
{
    pp_symbolizer *cached = pp_symbolizer_new();
    pp_maps *m = pp_maps_read(NULL);
    const unsigned char *p = (const unsigned char *)symbolize_target;
    const pp_map_entry *e = pp_maps_find(m, (uint64_t)(uintptr_t)p);
    pp_frame a[PP_SYMBOLIZE_MAX_FRAMES], b[PP_SYMBOLIZE_MAX_FRAMES];
    int i, k, round;

    ck_assert_ptr_nonnull(e);
    for (round = 0; round < 2; round++) {
        for (i = 0; i < 64; i++) {
            uint64_t off = (uint64_t)(uintptr_t)(p + i) - e->start + e->offset;
            pp_symbolizer *fresh = pp_symbolizer_new();
            int na = pp_symbolize(cached, e->path, off, a, PP_SYMBOLIZE_MAX_FRAMES);
            int nb = pp_symbolize(fresh, e->path, off, b, PP_SYMBOLIZE_MAX_FRAMES);
            ck_assert_int_eq(na, nb);
            for (k = 0; k < na; k++) {
                ck_assert(same_str(a[k].function, b[k].function));
                ck_assert(same_str(a[k].file, b[k].file));
                ck_assert_int_eq(a[k].line, b[k].line);
                ck_assert_uint_eq(a[k].offset, b[k].offset);
            }
            /* A smaller max is the same chain, cut. */
            ck_assert_int_eq(pp_symbolize(cached, e->path, off, a, 1), na > 0 ? 1 : 0);
            if (na > 0) {
                ck_assert(same_str(a[0].function, b[0].function));
            }
            pp_symbolizer_free(fresh);
        }
        /* Fill the cache past its bound with other offsets of the same object: it
         * starts over, and the sites above are looked up again, the same. */
        for (i = 0; round == 0 && i < PP_SYMBOLIZE_CACHE_SITES + 16; i++) {
            pp_symbolize(cached, e->path, e->offset + (uint64_t)i, a, 1);
        }
    }
    ck_assert_int_eq(pp_symbolize(cached, e->path, 0, a, 0), 0);
    pp_maps_free(m);
    pp_symbolizer_free(cached);
}
END_TEST

/* What a kept symbol range answers is what libdw answers for each address. */
static void assert_as_libdw(pp_symbolizer *ranged, pp_symbolizer *plain, const char *path,
                            uint64_t off)
{
    pp_frame a[PP_SYMBOLIZE_MAX_FRAMES], b[PP_SYMBOLIZE_MAX_FRAMES];
    int na = pp_symbolize(ranged, path, off, a, PP_SYMBOLIZE_MAX_FRAMES);
    int nb = pp_symbolize(plain, path, off, b, PP_SYMBOLIZE_MAX_FRAMES), k;

    ck_assert_int_eq(na, nb);
    for (k = 0; k < na; k++) {
        ck_assert_msg(same_str(a[k].function, b[k].function), "%s+%#llx: %s, libdw %s", path,
                      (unsigned long long)off, a[k].function ? a[k].function : "(none)",
                      b[k].function ? b[k].function : "(none)");
        ck_assert_uint_eq(a[k].offset, b[k].offset);
        ck_assert(same_str(a[k].file, b[k].file));
        ck_assert_int_eq(a[k].line, b[k].line);
    }
}

START_TEST(symbol_ranges_answer_as_libdw)
{
    pp_symbolizer *ranged = pp_symbolizer_new(), *plain = pp_symbolizer_new();
    pp_maps *m = pp_maps_read(NULL);
    const pp_map_entry *libc = pp_maps_find(m, (uint64_t)(uintptr_t)getpid);
    const pp_map_entry *self = pp_maps_find(m, (uint64_t)(uintptr_t)pp_test_outer);
    uint64_t at = (uint64_t)(uintptr_t)getpid, lo, i;
    static const int nested[] = { 4, 18, 28, 2, 20, 16, 24, 0, 31 };
    pp_frame fr[4];

    ck_assert_ptr_nonnull(libc);
    ck_assert_ptr_nonnull(self);
    pp_symbolizer_no_ranges(plain);
    /* Across 16 KiB of libc around getpid, twice: the second pass mostly from ranges. */
    lo = at - 8192 > libc->start ? at - 8192 : libc->start;
    for (i = 0; i < 2 * 16384; i += 5) {
        uint64_t pc = lo + i % 16384;
        if (pc < libc->end) {
            assert_as_libdw(ranged, plain, libc->path, pc - libc->start + libc->offset);
        }
    }
    /* The nested symbols, the outer one first looked up. */
    for (i = 0; i < sizeof(nested) / sizeof(nested[0]); i++) {
        uint64_t pc = (uint64_t)(uintptr_t)pp_test_outer + (uint64_t)nested[i];
        assert_as_libdw(ranged, plain, self->path, pc - self->start + self->offset);
    }
    ck_assert_int_ge(pp_symbolize(ranged, self->path,
                                  (uint64_t)(uintptr_t)pp_test_inner + 2 - self->start +
                                      self->offset, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, "pp_test_inner");
    ck_assert_int_ge(pp_symbolize(ranged, self->path,
                                  (uint64_t)(uintptr_t)pp_test_outer + 28 - self->start +
                                      self->offset, fr, 4), 1);
    ck_assert_str_eq(fr[0].function, "pp_test_outer");
    pp_maps_free(m);
    pp_symbolizer_free(ranged);
    pp_symbolizer_free(plain);
}
END_TEST

/* How many mappings of this process are of path: pp_symbolizer_close_light must give back
 * the one libdw made of an object it closes. */
static int mappings_of(const char *path)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[4608];
    size_t len = strlen(path);
    int n = 0;

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        char *p = strchr(line, '/');
        if (p && strncmp(p, path, len) == 0 && (p[len] == '\n' || p[len] == '\0')) {
            n++;
        }
    }
    fclose(f);
    return n;
}

/* What httpd's parent does before it forks: objects without DWARF are closed, the rest
 * kept; both answer as before, a closed one by being opened again. */
START_TEST(closed_light_objects_answer_as_before)
{
    pp_symbolizer *s = pp_symbolizer_new(), *plain = pp_symbolizer_new();
    pp_maps *m = pp_maps_read(NULL);
    const pp_map_entry *z = pp_maps_find(m, (uint64_t)(uintptr_t)crc32);
    const pp_map_entry *self = pp_maps_find(m, (uint64_t)(uintptr_t)symbolize_target);
    const char *zid, *selfid;
    uint64_t at = (uint64_t)(uintptr_t)crc32, lo, i;
    pp_frame fr[8];
    int before, n;

    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_nonnull(self);
    pp_symbolizer_no_ranges(plain);
    before = mappings_of(z->path);
    zid = pp_symbolizer_build_id(s, z->path);
    selfid = pp_symbolizer_build_id(s, self->path);
    ck_assert_ptr_nonnull(zid);
    ck_assert_int_eq(pp_symbolizer_has_lines(s, z->path), 0);   /* zlib: no debug file */
    ck_assert_int_eq(pp_symbolizer_has_lines(s, self->path), 1);
    ck_assert_int_gt(mappings_of(z->path), before);
    pp_symbolizer_close_light(s);
    ck_assert_int_eq(mappings_of(z->path), before);
    ck_assert_ptr_eq(pp_symbolizer_build_id(s, z->path), zid);
    ck_assert_ptr_eq(pp_symbolizer_build_id(s, self->path), selfid);
    ck_assert_int_eq(pp_symbolizer_has_lines(s, z->path), 0);
    /* The kept object, with its lines. */
    n = symbolize_addr(s, (const void *)symbolize_target, fr, 8);
    ck_assert_int_ge(n, 1);
    ck_assert_str_eq(fr[n - 1].function, "symbolize_target");
    ck_assert_int_gt(fr[n - 1].line, 0);
    /* The closed one, across 4 KiB around crc32, twice (the second pass from ranges). */
    lo = at - 2048 > z->start ? at - 2048 : z->start;
    for (i = 0; i < 2 * 4096; i += 3) {
        uint64_t pc = lo + i % 4096;
        if (pc < z->end) {
            assert_as_libdw(s, plain, z->path, pc - z->start + z->offset);
        }
    }
    ck_assert_int_ge(symbolize_addr(s, (const void *)crc32, fr, 8), 1);
    ck_assert_str_eq(fr[0].function, "crc32");
    pp_maps_free(m);
    pp_symbolizer_free(s);
    pp_symbolizer_free(plain);
}
END_TEST

/* Copies the file at from to to; 0 on success. */
static int copy_file(const char *from, const char *to)
{
    char buf[65536];
    FILE *in = fopen(from, "rb"), *out = fopen(to, "wb");
    size_t n;
    int rc = in && out ? 0 : -1;

    while (rc == 0 && (n = fread(buf, 1, sizeof(buf), in)) > 0) {
        rc = fwrite(buf, 1, n, out) == n ? 0 : -1;
    }
    if (in) {
        fclose(in);
    }
    if (out && fclose(out) != 0) {
        rc = -1;
    }
    return rc;
}

/* A closed object whose file was replaced since (a package upgrade while the server
 * runs) is not named from the new file: its build id changed. */
START_TEST(a_replaced_light_object_is_not_named_from_its_new_file)
{
    pp_symbolizer *s = pp_symbolizer_new();
    pp_maps *m = pp_maps_read(NULL);
    const pp_map_entry *z = pp_maps_find(m, (uint64_t)(uintptr_t)crc32);
    const pp_map_entry *self = pp_maps_find(m, (uint64_t)(uintptr_t)symbolize_target);
    char path[] = "/tmp/pp-symbolize-XXXXXX";
    uint64_t off;
    pp_frame fr[8];
    int fd;

    ck_assert_ptr_nonnull(z);
    ck_assert_ptr_nonnull(self);
    off = (uint64_t)(uintptr_t)crc32 - z->start + z->offset;
    ck_assert_int_ge(fd = mkstemp(path), 0);
    close(fd);
    ck_assert_int_eq(copy_file(z->path, path), 0);
    ck_assert_int_ge(pp_symbolize(s, path, off, fr, 8), 1);     /* the copy names crc32 */
    ck_assert_str_eq(fr[0].function, "crc32");
    pp_symbolizer_close_light(s);
    /* Unchanged, it is reopened and named as before. */
    ck_assert_int_ge(pp_symbolize(s, path, off, fr, 8), 1);
    ck_assert_str_eq(fr[0].function, "crc32");
    pp_symbolizer_close_light(s);
    ck_assert_int_eq(copy_file(self->path, path), 0);           /* another object there */
    ck_assert_int_eq(pp_symbolize(s, path, off, fr, 8), 0);
    unlink(path);
    pp_maps_free(m);
    pp_symbolizer_free(s);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_symbolize");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, names_a_function_with_file_and_line);
    tcase_add_test(tc, inlined_calls_become_frames);
    tcase_add_test(tc, names_libc_functions_from_dynsym);
    tcase_add_test(tc, build_id_is_hex_and_cached);
    tcase_add_test(tc, unknown_objects_and_offsets_give_nothing);
    tcase_add_test(tc, a_pc_in_a_process_s_maps_is_named_as_its_object_offset);
    tcase_add_test(tc, cached_sites_answer_as_fresh_lookups);
    tcase_add_test(tc, symbol_ranges_answer_as_libdw);
    tcase_add_test(tc, closed_light_objects_answer_as_before);
    tcase_add_test(tc, a_replaced_light_object_is_not_named_from_its_new_file);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
