/* Unit tests of the core's logging (pp_log): messages reach the installed callback with
 * their level, tag and formatted text (cut to the buffer, NUL-terminated); without a
 * callback, or after it is removed, they are dropped. */
#include "pp_log.h"

#include <check.h>
#include "unit_main.h"
#include <stdlib.h>
#include <string.h>

typedef struct {
    int calls;
    pp_log_level level;
    char tag[16];
    char msg[2048];
    size_t len;
} got;

static void keep(void *baton, pp_log_level level, const char *tag, const char *msg)
{
    got *g = baton;

    g->calls++;
    g->level = level;
    strncpy(g->tag, tag, sizeof(g->tag) - 1);
    g->len = strlen(msg);
    memcpy(g->msg, msg, g->len + 1 < sizeof(g->msg) ? g->len + 1 : sizeof(g->msg));
}

START_TEST(messages_reach_the_callback_formatted)
{
    got g;

    memset(&g, 0, sizeof(g));
    pp_log_set(keep, &g);
    pp_log(PP_LOG_WARN, "PP0999", "%d threads in %s", 3, "child");
    ck_assert_int_eq(g.calls, 1);
    ck_assert_int_eq(g.level, PP_LOG_WARN);
    ck_assert_str_eq(g.tag, "PP0999");
    ck_assert_str_eq(g.msg, "3 threads in child");
    pp_log(PP_LOG_DEBUG, "PP0998", "plain");
    ck_assert_int_eq(g.calls, 2);
    ck_assert_int_eq(g.level, PP_LOG_DEBUG);
    ck_assert_str_eq(g.msg, "plain");
    pp_log_set(NULL, NULL);
}
END_TEST

START_TEST(long_messages_are_cut_and_terminated)
{
    char big[4000];
    got g;

    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    memset(&g, 0, sizeof(g));
    pp_log_set(keep, &g);
    pp_log(PP_LOG_ERROR, "PP0997", "%s", big);
    ck_assert_int_eq(g.calls, 1);
    ck_assert_uint_gt(g.len, 0);
    ck_assert_uint_lt(g.len, sizeof(big) - 1);
    ck_assert_int_eq(g.msg[g.len], '\0');
    pp_log_set(NULL, NULL);
}
END_TEST

START_TEST(without_a_callback_messages_are_dropped)
{
    got g;

    memset(&g, 0, sizeof(g));
    pp_log(PP_LOG_ERROR, "PP0996", "nobody listens");
    pp_log_set(keep, &g);
    pp_log_set(NULL, NULL);
    pp_log(PP_LOG_ERROR, "PP0996", "nobody listens");
    ck_assert_int_eq(g.calls, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_log");
    TCase *tc = tcase_create("core");

    tcase_add_test(tc, messages_reach_the_callback_formatted);
    tcase_add_test(tc, long_messages_are_cut_and_terminated);
    tcase_add_test(tc, without_a_callback_messages_are_dropped);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
