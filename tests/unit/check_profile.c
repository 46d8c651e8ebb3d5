#include "pp_profile.h"
#include "profile.pb-c.h"

#include <check.h>
#include "unit_main.h"
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

typedef Perftools__Profiles__Profile pb_profile;

static const char *str(const pb_profile *pb, int64_t ix)
{
    ck_assert_int_ge(ix, 0);
    ck_assert_uint_lt((size_t)ix, pb->n_string_table);
    return pb->string_table[ix];
}

static pb_profile *roundtrip(pp_profile *p)
{
    unsigned char *buf;
    size_t len;
    pb_profile *pb;

    ck_assert_int_eq(pp_profile_encode(p, 0, &buf, &len), 0);
    pb = perftools__profiles__profile__unpack(NULL, len, buf);
    free(buf);
    ck_assert_ptr_nonnull(pb);
    return pb;
}

START_TEST(empty_profile_has_empty_string_first)
{
    pp_profile *p = pp_profile_new();
    pb_profile *pb = roundtrip(p);

    ck_assert_uint_eq(pb->n_string_table, 1);
    ck_assert_str_eq(pb->string_table[0], "");
    ck_assert_int_eq(pp_profile_string(p, NULL), 0);
    ck_assert_int_eq(pp_profile_string(p, ""), 0);
    perftools__profiles__profile__free_unpacked(pb, NULL);
    pp_profile_free(p);
}
END_TEST

START_TEST(types_period_time_and_comments)
{
    pp_profile *p = pp_profile_new();
    pb_profile *pb;

    ck_assert_int_eq(pp_profile_add_sample_type(p, "samples", "count"), 0);
    ck_assert_int_eq(pp_profile_add_sample_type(p, "cpu", "nanoseconds"), 0);
    ck_assert_int_eq(pp_profile_set_period(p, "cpu", "nanoseconds", 10000000), 0);
    ck_assert_int_eq(pp_profile_set_default_sample_type(p, "cpu"), 0);
    ck_assert_int_eq(pp_profile_add_comment(p, "hello"), 0);
    pp_profile_set_time(p, 1700000000000000000LL, 5000000000LL);
    pb = roundtrip(p);
    ck_assert_uint_eq(pb->n_sample_type, 2);
    ck_assert_str_eq(str(pb, pb->sample_type[0]->type), "samples");
    ck_assert_str_eq(str(pb, pb->sample_type[0]->unit), "count");
    ck_assert_str_eq(str(pb, pb->sample_type[1]->type), "cpu");
    ck_assert_str_eq(str(pb, pb->sample_type[1]->unit), "nanoseconds");
    ck_assert_ptr_nonnull(pb->period_type);
    ck_assert_str_eq(str(pb, pb->period_type->type), "cpu");
    ck_assert_int_eq(pb->period, 10000000);
    ck_assert_str_eq(str(pb, pb->default_sample_type), "cpu");
    ck_assert_uint_eq(pb->n_comment, 1);
    ck_assert_str_eq(str(pb, pb->comment[0]), "hello");
    ck_assert_int_eq(pb->time_nanos, 1700000000000000000LL);
    ck_assert_int_eq(pb->duration_nanos, 5000000000LL);
    /* "cpu" is interned once even though it was given three times. */
    {
        size_t i, n = 0;
        for (i = 0; i < pb->n_string_table; i++) {
            n += strcmp(pb->string_table[i], "cpu") == 0;
        }
        ck_assert_uint_eq(n, 1);
    }
    perftools__profiles__profile__free_unpacked(pb, NULL);
    pp_profile_free(p);
}
END_TEST

START_TEST(samples_merge_by_stack_and_labels)
{
    pp_profile *p = pp_profile_new();
    pp_mapping_info mi = { 0x1000, 0x2000, 0, "/bin/x", "abcd", 1, 1, 1, 0 };
    uint64_t m, f1, f2, l1, l2, stack[2];
    pp_line line;
    int64_t v[2] = { 1, 10 };
    pp_label lab[2] = { { "pid", NULL, 42, NULL }, { "handler", "php", 0, NULL } };
    pp_label other[1] = { { "pid", NULL, 43, NULL } };
    pb_profile *pb;
    size_t i;

    pp_profile_add_sample_type(p, "samples", "count");
    pp_profile_add_sample_type(p, "cpu", "nanoseconds");
    m = pp_profile_add_mapping(p, &mi);
    ck_assert_uint_eq(m, 1);
    f1 = pp_profile_function(p, "leaf", NULL, "x.c", 10);
    f2 = pp_profile_function(p, "main", NULL, "x.c", 1);
    ck_assert_uint_eq(pp_profile_function(p, "leaf", NULL, "x.c", 10), f1);
    ck_assert_uint_ne(f1, f2);
    line.function_id = f1;
    line.line = 12;
    l1 = pp_profile_add_location(p, m, 0x1100, &line, 1);
    line.function_id = f2;
    line.line = 3;
    l2 = pp_profile_add_location(p, m, 0x1200, &line, 1);
    stack[0] = l1;
    stack[1] = l2;
    ck_assert_int_eq(pp_profile_add_sample(p, stack, 2, v, lab, 2), 0);
    ck_assert_int_eq(pp_profile_add_sample(p, stack, 2, v, lab, 2), 0);
    ck_assert_int_eq(pp_profile_add_sample(p, stack, 2, v, other, 1), 0);
    ck_assert_int_eq(pp_profile_add_sample(p, stack, 1, v, lab, 2), 0);
    ck_assert_uint_eq(pp_profile_num_samples(p), 3);
    pb = roundtrip(p);
    ck_assert_uint_eq(pb->n_sample, 3);
    ck_assert_uint_eq(pb->sample[0]->n_location_id, 2);
    ck_assert_uint_eq(pb->sample[0]->location_id[0], l1);
    ck_assert_int_eq(pb->sample[0]->value[0], 2);
    ck_assert_int_eq(pb->sample[0]->value[1], 20);
    ck_assert_uint_eq(pb->sample[0]->n_label, 2);
    ck_assert_str_eq(str(pb, pb->sample[0]->label[0]->key), "pid");
    ck_assert_int_eq(pb->sample[0]->label[0]->num, 42);
    ck_assert_str_eq(str(pb, pb->sample[0]->label[1]->str), "php");
    ck_assert_int_eq(pb->sample[1]->label[0]->num, 43);
    ck_assert_int_eq(pb->sample[1]->value[0], 1);
    ck_assert_uint_eq(pb->n_mapping, 1);
    ck_assert_str_eq(str(pb, pb->mapping[0]->filename), "/bin/x");
    ck_assert_str_eq(str(pb, pb->mapping[0]->build_id), "abcd");
    ck_assert(pb->mapping[0]->has_functions);
    ck_assert_uint_eq(pb->n_location, 2);
    ck_assert_uint_eq(pb->location[1]->address, 0x1200);
    ck_assert_uint_eq(pb->location[1]->line[0]->function_id, f2);
    ck_assert_int_eq(pb->location[1]->line[0]->line, 3);
    ck_assert_uint_eq(pb->n_function, 2);
    for (i = 0; i < pb->n_function; i++) {
        ck_assert_uint_eq(pb->function[i]->id, i + 1);
    }
    ck_assert_str_eq(str(pb, pb->function[0]->name), "leaf");
    ck_assert_str_eq(str(pb, pb->function[0]->system_name), "leaf");
    ck_assert_str_eq(str(pb, pb->function[0]->filename), "x.c");
    ck_assert_int_eq(pb->function[0]->start_line, 10);
    perftools__profiles__profile__free_unpacked(pb, NULL);
    pp_profile_free(p);
}
END_TEST

START_TEST(gzip_is_gzip_of_the_raw_encoding)
{
    pp_profile *p = pp_profile_new();
    unsigned char *raw, *gz, *back;
    size_t rawlen, gzlen;
    uLongf backlen;
    z_stream z;

    pp_profile_add_sample_type(p, "samples", "count");
    ck_assert_int_eq(pp_profile_encode(p, 0, &raw, &rawlen), 0);
    ck_assert_int_eq(pp_profile_encode(p, 1, &gz, &gzlen), 0);
    ck_assert_uint_ge(gzlen, 18);
    ck_assert_uint_eq(gz[0], 0x1f);
    ck_assert_uint_eq(gz[1], 0x8b);
    back = malloc(rawlen + 64);
    memset(&z, 0, sizeof(z));
    ck_assert_int_eq(inflateInit2(&z, 15 + 16), Z_OK);
    z.next_in = gz;
    z.avail_in = (uInt)gzlen;
    z.next_out = back;
    z.avail_out = (uInt)(rawlen + 64);
    ck_assert_int_eq(inflate(&z, Z_FINISH), Z_STREAM_END);
    backlen = z.total_out;
    inflateEnd(&z);
    ck_assert_uint_eq(backlen, rawlen);
    ck_assert_mem_eq(back, raw, rawlen);
    free(raw);
    free(gz);
    free(back);
    pp_profile_free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_profile");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, empty_profile_has_empty_string_first);
    tcase_add_test(tc, types_period_time_and_comments);
    tcase_add_test(tc, samples_merge_by_stack_and_labels);
    tcase_add_test(tc, gzip_is_gzip_of_the_raw_encoding);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
