#include "pp_symreq.h"

#include <check.h>
#include "unit_main.h"
#include <stdlib.h>
#include <string.h>

static uint64_t addr(const char *s)
{
    return pp_symreq_addr(s, strlen(s));
}

START_TEST(words_read_as_go_reads_them)
{
    ck_assert_uint_eq(addr("42"), 42);
    ck_assert_uint_eq(addr("0x4a5b"), 0x4a5b);
    ck_assert_uint_eq(addr("0X4A5B"), 0x4a5b);
    ck_assert_uint_eq(addr("0o17"), 017);
    ck_assert_uint_eq(addr("0O17"), 017);
    ck_assert_uint_eq(addr("017"), 017);
    ck_assert_uint_eq(addr("0b101"), 5);
    ck_assert_uint_eq(addr("0B101"), 5);
    ck_assert_uint_eq(addr("18446744073709551615"), UINT64_MAX);
    ck_assert_uint_eq(addr("0xffffffffffffffff"), UINT64_MAX);
    /* Go's underscores: between digits, the base prefix and the octal 0 count as one. */
    ck_assert_uint_eq(addr("1_1"), 11);
    ck_assert_uint_eq(addr("1_000_000"), 1000000);
    ck_assert_uint_eq(addr("0x_4a_5b"), 0x4a5b);
    ck_assert_uint_eq(addr("0_17"), 017);
    ck_assert_uint_eq(addr("0b_1_0"), 2);
    /* Any length: leading zeros are digits like any other. */
    ck_assert_uint_eq(addr("0x00000000000000000000000000000000000000000000000000000000000000"
                           "00000000000000000000000000000000000000000000000000000000004a5b"),
                      0x4a5b);
}
END_TEST

START_TEST(what_is_no_address_is_zero)
{
    /* Go's ParseUint fails on each: Symbol skips them. An overflow is Go's maximum with
     * an error, which no code has either. */
    static const char *const bad[] = {
        "", "0", "-1", "+1", " 1", "1 ", "0x", "0xg", "09", "0b2", "0o8", "x1", "1x",
        "18446744073709551616", "0x10000000000000000", "0x-1", "0x+1", "0x 1",
        /* What strtoull would take and Go does not: a second prefix, other spaces. */
        "0x0x1", "0X0x1", "0x\t1", "0x\n1", "0b0b1", "00x1",
        /* Underscores out of place. */
        "_1", "1_", "1__0", "0x__1", "0b_", "0x_", "1_x", "0_x1",
    };
    size_t i;

    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(addr(bad[i]) == 0, "\"%s\" read as an address", bad[i]);
    }
    /* Only len bytes are read: no NUL needed, and what follows is not the word's. */
    ck_assert_uint_eq(pp_symreq_addr("0x12+99", 4), 0x12);
}
END_TEST

START_TEST(the_request_splits_on_plus)
{
    const char *in = "0x10+junk++0x20+", *p = in, *end = in + strlen(in);
    uint64_t pc, want[] = { 0x10, 0, 0, 0x20 };
    size_t n = 0;

    while (pp_symreq_next(&p, end, &pc)) {
        ck_assert_uint_lt(n, 4);
        ck_assert_uint_eq(pc, want[n]);
        n++;
    }
    ck_assert_uint_eq(n, 4);
    ck_assert_ptr_eq(p, end);
    p = in;
    ck_assert_int_eq(pp_symreq_next(&p, in, &pc), 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_symreq");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, words_read_as_go_reads_them);
    tcase_add_test(tc, what_is_no_address_is_zero);
    tcase_add_test(tc, the_request_splits_on_plus);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
