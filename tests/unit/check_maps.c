#include "pp_maps.h"

#include <check.h>
#include "unit_main.h"
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* The test seam: maps text as the kernel writes it, with every kind of line. */
static const char sample[] =
    "55d0c0000000-55d0c0010000 r--p 00000000 08:01 1234   /usr/sbin/apache2\n"
    "55d0c0010000-55d0c0050000 r-xp 00010000 08:01 1234   /usr/sbin/apache2\n"
    "55d0c0050000-55d0c0060000 rw-p 00050000 08:01 1234   /usr/sbin/apache2\n"
    "55d0c1000000-55d0c1100000 rw-p 00000000 00:00 0      [heap]\n"
    "7f0000000000-7f0000001000 r-xp 00000000 00:00 0 \n"
    "7f1000000000-7f1000100000 r-xp 00026000 08:01 99     /lib/x86_64-linux-gnu/libc.so.6\n"
    "7f2000000000-7f2000001000 r-xp 00001000 08:01 77     /tmp/with space/lib.so\n"
    "7ffc00000000-7ffc00002000 r-xp 00000000 00:00 0      [vdso]\n"
    "ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0  [vsyscall]";

START_TEST(parses_only_executable_file_mappings)
{
    pp_maps *m = pp_maps_parse(sample, strlen(sample));
    const pp_map_entry *e;

    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(pp_maps_count(m), 4);
    e = pp_maps_get(m, 0);
    ck_assert_uint_eq(e->start, 0x55d0c0010000ULL);
    ck_assert_uint_eq(e->end, 0x55d0c0050000ULL);
    ck_assert_uint_eq(e->offset, 0x10000);
    ck_assert_str_eq(e->path, "/usr/sbin/apache2");
    ck_assert_str_eq(pp_maps_get(m, 1)->path, "/lib/x86_64-linux-gnu/libc.so.6");
    ck_assert_str_eq(pp_maps_get(m, 2)->path, "/tmp/with space/lib.so");
    ck_assert_str_eq(pp_maps_get(m, 3)->path, "[vdso]");
    ck_assert_ptr_null(pp_maps_get(m, 4));
    pp_maps_free(m);
}
END_TEST

START_TEST(find_is_exact_at_the_edges)
{
    pp_maps *m = pp_maps_parse(sample, strlen(sample));

    ck_assert_ptr_null(pp_maps_find(m, 0x55d0c000ffffULL));
    ck_assert_str_eq(pp_maps_find(m, 0x55d0c0010000ULL)->path, "/usr/sbin/apache2");
    ck_assert_str_eq(pp_maps_find(m, 0x55d0c004ffffULL)->path, "/usr/sbin/apache2");
    ck_assert_ptr_null(pp_maps_find(m, 0x55d0c0050000ULL));
    ck_assert_str_eq(pp_maps_find(m, 0x7f1000000100ULL)->path, "/lib/x86_64-linux-gnu/libc.so.6");
    ck_assert_ptr_null(pp_maps_find(m, 0x7f0000000010ULL));
    ck_assert_ptr_null(pp_maps_find(m, 0));
    pp_maps_free(m);
}
END_TEST

START_TEST(garbage_is_skipped_not_fatal)
{
    static const char junk[] = "hello\n\n-\nzzzz-yyyy r-xp 0 0 0 /x\n"
        "1000-2000 r-xp 00000000 08:01 1 /ok\n";
    pp_maps *m = pp_maps_parse(junk, strlen(junk));

    ck_assert_uint_eq(pp_maps_count(m), 1);
    ck_assert_str_eq(pp_maps_get(m, 0)->path, "/ok");
    pp_maps_free(m);
    m = pp_maps_parse("", 0);
    ck_assert_uint_eq(pp_maps_count(m), 0);
    pp_maps_free(m);
}
END_TEST

START_TEST(read_self_finds_this_function)
{
    pp_maps *m = pp_maps_read(NULL);
    const pp_map_entry *e;

    ck_assert_ptr_nonnull(m);
    e = pp_maps_find(m, (uint64_t)(uintptr_t)&pp_maps_parse);
    ck_assert_ptr_nonnull(e);
    ck_assert_ptr_nonnull(strstr(e->path, "check_maps"));
    pp_maps_free(m);
}
END_TEST

START_TEST(read_text_round_trips_through_a_file)
{
    char path[] = "/tmp/pp_maps_XXXXXX", *text;
    size_t len;
    int fd = mkstemp(path);
    FILE *f = fdopen(fd, "w");
    pp_maps *m;

    fputs(sample, f);
    fclose(f);
    ck_assert_int_eq(pp_maps_read_text(path, &text, &len), 0);
    /* Only the four kept lines remain, each ending in a newline. */
    ck_assert_ptr_null(strstr(text, "[heap]"));
    ck_assert_ptr_nonnull(strstr(text, "/tmp/with space/lib.so\n"));
    m = pp_maps_parse(text, len);
    ck_assert_uint_eq(pp_maps_count(m), 4);
    pp_maps_free(m);
    free(text);
    unlink(path);
    ck_assert_ptr_null(pp_maps_read("/nonexistent/maps"));
}
END_TEST

/* Maps that arrive as entries (another process's, over pp_wire): copied, sorted for
 * pp_maps_find, and entries that are no range or have no path left out. */
START_TEST(from_entries_sorts_copies_and_drops_the_invalid)
{
    char path[] = "/usr/lib/libb.so";
    pp_map_entry in[5] = {
        { 0x9000, 0xa000, 0x1000, path },
        { 0x1000, 0x2000, 0, "/usr/lib/liba.so" },
        { 0x5000, 0x5000, 0, "/empty" },            /* no range */
        { 0x7000, 0x6000, 0, "/backwards" },        /* no range */
        { 0x3000, 0x4000, 0, "" },                  /* no path */
    };
    pp_maps *m = pp_maps_from_entries(in, 5);

    ck_assert_ptr_nonnull(m);
    path[1] = 'X';                                  /* the paths were copied */
    ck_assert_uint_eq(pp_maps_count(m), 2);
    ck_assert_str_eq(pp_maps_get(m, 0)->path, "/usr/lib/liba.so");
    ck_assert_str_eq(pp_maps_find(m, 0x9fff)->path, "/usr/lib/libb.so");
    ck_assert_uint_eq(pp_maps_find(m, 0x9000)->offset, 0x1000);
    ck_assert_ptr_null(pp_maps_find(m, 0x5000));
    ck_assert_ptr_null(pp_maps_find(m, 0x3000));
    pp_maps_free(m);
    m = pp_maps_from_entries(NULL, 0);
    ck_assert_ptr_nonnull(m);
    ck_assert_uint_eq(pp_maps_count(m), 0);
    ck_assert_ptr_null(pp_maps_find(m, 0x1000));
    pp_maps_free(m);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_maps");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, parses_only_executable_file_mappings);
    tcase_add_test(tc, find_is_exact_at_the_edges);
    tcase_add_test(tc, garbage_is_skipped_not_fatal);
    tcase_add_test(tc, read_self_finds_this_function);
    tcase_add_test(tc, read_text_round_trips_through_a_file);
    tcase_add_test(tc, from_entries_sorts_copies_and_drops_the_invalid);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
