/* The task directory reader: on this process's real /proc/self/task, and through the
 * seam on directories made here (numeric entries, junk entries, stat and comm files
 * written by hand). Every test runs in its own forked process (Check's default). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np, syscall(SYS_gettid) */
#endif
#include "pp_tasks.h"

#include <check.h>
#include "unit_main.h"
#include "unit_util.h"
#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL

static int listed(const uint32_t *tids, size_t n, uint32_t tid)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (tids[i] == tid) {
            return 1;
        }
    }
    return 0;
}

static void assert_ascending(const uint32_t *tids, size_t n)
{
    size_t i;

    for (i = 1; i < n; i++) {
        ck_assert_msg(tids[i - 1] < tids[i], "not strictly ascending at %zu: %u, %u", i,
                      tids[i - 1], tids[i]);
    }
}

/* ---- a fake task directory ------------------------------------------------------------ */

static char root[64];

static void make_root(void)
{
    strcpy(root, "/tmp/pp_tasks_XXXXXX");
    ck_assert_ptr_nonnull(mkdtemp(root));
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static void remove_root(void)
{
    ck_assert_int_eq(nftw(root, rm_one, 16, FTW_DEPTH | FTW_PHYS), 0);
}

static void make_entry(const char *name, int as_dir)
{
    char path[256];

    snprintf(path, sizeof(path), "%s/%s", root, name);
    if (as_dir) {
        ck_assert_int_eq(mkdir(path, 0755), 0);
    } else {
        FILE *f = fopen(path, "w");
        ck_assert_ptr_nonnull(f);
        fclose(f);
    }
}

static void write_task_file(const char *tid, const char *file, const char *text)
{
    char path[256];
    FILE *f;

    snprintf(path, sizeof(path), "%s/%s", root, tid);
    mkdir(path, 0755);
    snprintf(path, sizeof(path), "%s/%s/%s", root, tid, file);
    ck_assert_ptr_nonnull(f = fopen(path, "w"));
    fputs(text, f);
    fclose(f);
}

/* ---- the real /proc/self/task --------------------------------------------------------- */

typedef struct {
    _Atomic uint32_t tid;
    int pipe[2];                /* the thread parks reading pipe[0] until it is closed */
} parked;

static void *park(void *arg)
{
    parked *p = arg;
    char c;

    pthread_setname_np(pthread_self(), "pp-parked");
    atomic_store(&p->tid, my_tid());
    while (read(p->pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    return NULL;
}

START_TEST(self_lists_the_main_thread_and_a_started_one_until_it_is_joined)
{
    parked p;
    pthread_t th;
    uint32_t *tids, tid;
    size_t n;
    int64_t deadline;
    char name[PP_TASKS_COMM_LEN];

    ck_assert_int_eq(pp_tasks_list(NULL, &tids, &n), 0);
    ck_assert_uint_ge(n, 1);
    ck_assert(listed(tids, n, my_tid()));
    /* The main thread's tid is the pid, and the smallest of the process. */
    ck_assert_uint_eq(tids[0], (uint32_t)getpid());
    assert_ascending(tids, n);
    free(tids);

    memset(&p, 0, sizeof(p));
    ck_assert_int_eq(pipe(p.pipe), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, park, &p), 0);
    deadline = mono_ns() + 20000 * MS;
    while (!(tid = atomic_load(&p.tid))) {
        ck_assert_msg(mono_ns() < deadline, "the thread never started");
        sleep_ms(1);
    }
    ck_assert_int_eq(pp_tasks_list(NULL, &tids, &n), 0);
    ck_assert(listed(tids, n, my_tid()));
    ck_assert(listed(tids, n, tid));
    assert_ascending(tids, n);
    free(tids);

    /* Its name, and its state once it sleeps in read(). */
    ck_assert_int_eq(pp_tasks_comm(NULL, tid, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "pp-parked");
    while (pp_tasks_state(NULL, tid) != 'S') {
        ck_assert_msg(mono_ns() < deadline, "the thread never slept (state %c)",
                      pp_tasks_state(NULL, tid));
        sleep_ms(1);
    }
    /* The reading thread itself is running. */
    ck_assert_int_eq(pp_tasks_state(NULL, my_tid()), 'R');

    close(p.pipe[1]);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    /* pthread_join returns once the kernel cleared the thread's tid, which may be a moment
     * before the task leaves /proc: poll, with a bound that only tells prompt from never. */
    for (;;) {
        int still;
        ck_assert_int_eq(pp_tasks_list(NULL, &tids, &n), 0);
        still = listed(tids, n, tid);
        ck_assert(listed(tids, n, my_tid()));
        free(tids);
        if (!still) {
            break;
        }
        ck_assert_msg(mono_ns() < deadline, "a joined thread is still listed");
        sleep_ms(1);
    }
    ck_assert_int_eq(pp_tasks_state(NULL, tid), '?');
    strcpy(name, "junk");
    ck_assert_int_eq(pp_tasks_comm(NULL, tid, name, sizeof(name)), -1);
    ck_assert_str_eq(name, "");
    close(p.pipe[0]);
}
END_TEST

START_TEST(self_reads_a_name_with_spaces_and_parentheses)
{
    /* The kernel's own stat line then reads "TID (a) b (c) d )) R ...". */
    static const char odd[] = "a) b (c) d ))";
    char name[PP_TASKS_COMM_LEN], small[4];

    ck_assert_int_eq(pthread_setname_np(pthread_self(), odd), 0);
    ck_assert_int_eq(pp_tasks_comm(NULL, my_tid(), name, sizeof(name)), 0);
    ck_assert_str_eq(name, odd);
    ck_assert_int_eq(pp_tasks_state(NULL, my_tid()), 'R');
    /* A short buffer gets the start of the name, terminated. */
    ck_assert_int_eq(pp_tasks_comm(NULL, my_tid(), small, sizeof(small)), 0);
    ck_assert_str_eq(small, "a) ");

    ck_assert_int_eq(pthread_setname_np(pthread_self(), "fifteen-chars-x"), 0);
    ck_assert_int_eq(pp_tasks_comm(NULL, my_tid(), name, sizeof(name)), 0);
    ck_assert_str_eq(name, "fifteen-chars-x");
}
END_TEST

START_TEST(self_sees_a_signal_pending_for_one_thread)
{
    int sig = SIGRTMIN + 3;
    sigset_t set;
    siginfo_t si;
    struct timespec zero = { 0, 0 };

    sigemptyset(&set);
    sigaddset(&set, sig);
    ck_assert_int_eq(pthread_sigmask(SIG_BLOCK, &set, NULL), 0);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), sig), 0);

    /* Sent to this thread: pending for it. */
    ck_assert_int_eq(syscall(SYS_tgkill, getpid(), my_tid(), sig), 0);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), sig), 1);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), sig + 1), 0);
    ck_assert_int_eq(sigtimedwait(&set, &si, &zero), sig);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), sig), 0);

    /* Sent to the process: pending for it, not for the thread. */
    ck_assert_int_eq(kill(getpid(), sig), 0);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), sig), 0);
    ck_assert_int_eq(sigtimedwait(&set, &si, &zero), sig);

    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), 0), -1);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, my_tid(), 65), -1);
    ck_assert_int_eq(pp_tasks_sig_pending(NULL, 0, sig), -1);
}
END_TEST

/* ---- the seam ------------------------------------------------------------------------- */

START_TEST(seam_lists_numeric_entries_only_ascending)
{
    static const char *const good[] = { "42", "1", "4194304", "7", "300", "65536" };
    static const char *const junk[] = {
        ".hidden", "abc", "12a", "a12", "0", "00", "-5", "+5", "007", " 3", "3 ", "1.5",
        "4194305", "9999999", "12345678", "4294967296", "4294967337",
        "18446744073709551617", "99999999999999999999999999", "0x10",
    };
    static const uint32_t want[] = { 1, 7, 42, 300, 65536, 4194304 };
    uint32_t *tids = NULL;
    size_t i, n = 0;

    make_root();
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
        /* The kernel's entries are directories; a plain file with a tid's name counts
         * the same (only names are read). */
        make_entry(good[i], i % 2 == 0);
    }
    for (i = 0; i < sizeof(junk) / sizeof(junk[0]); i++) {
        make_entry(junk[i], i % 2 == 1);
    }
    ck_assert_int_eq(pp_tasks_list(root, &tids, &n), 0);
    ck_assert_uint_eq(n, sizeof(want) / sizeof(want[0]));
    for (i = 0; i < n; i++) {
        ck_assert_uint_eq(tids[i], want[i]);
    }
    free(tids);
    remove_root();
}
END_TEST

START_TEST(seam_grows_past_its_first_allocation)
{
    uint32_t *tids = NULL;
    size_t i, n = 0;
    char name[16];

    make_root();
    /* 1000 entries made in an order that is not the sorted one. */
    for (i = 0; i < 1000; i++) {
        snprintf(name, sizeof(name), "%zu", 1 + (i * 7919) % 1000 * 3);
        make_entry(name, 1);
    }
    ck_assert_int_eq(pp_tasks_list(root, &tids, &n), 0);
    ck_assert_uint_eq(n, 1000);
    for (i = 0; i < n; i++) {
        ck_assert_uint_eq(tids[i], 1 + i * 3);
    }
    free(tids);
    remove_root();
}
END_TEST

START_TEST(seam_empty_and_missing_directories)
{
    uint32_t sentinel = 77, *tids = &sentinel;
    size_t n = 99;
    char path[128];

    make_root();
    ck_assert_int_eq(pp_tasks_list(root, &tids, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(tids);

    /* Only junk is as good as empty. */
    make_entry("self", 1);
    make_entry("0", 0);
    tids = &sentinel;
    n = 99;
    ck_assert_int_eq(pp_tasks_list(root, &tids, &n), 0);
    ck_assert_uint_eq(n, 0);
    ck_assert_ptr_null(tids);

    /* A missing directory, or a file: an error, and the outputs untouched. */
    tids = &sentinel;
    n = 99;
    snprintf(path, sizeof(path), "%s/missing", root);
    errno = 0;
    ck_assert_int_eq(pp_tasks_list(path, &tids, &n), -1);
    ck_assert_int_eq(errno, ENOENT);
    ck_assert_ptr_eq(tids, &sentinel);
    ck_assert_uint_eq(n, 99);
    snprintf(path, sizeof(path), "%s/0", root);
    errno = 0;
    ck_assert_int_eq(pp_tasks_list(path, &tids, &n), -1);
    ck_assert_int_eq(errno, ENOTDIR);
    ck_assert_ptr_eq(tids, &sentinel);
    ck_assert_uint_eq(n, 99);
    remove_root();
}
END_TEST

START_TEST(seam_reads_state_and_name_of_odd_names)
{
    char name[PP_TASKS_COMM_LEN], small[5];

    make_root();
    /* The name holds spaces and ')', as a thread may name itself. */
    write_task_file("123", "stat", "123 (we) ird (x) ) D 1 123 123 0 -1 4194368 0 0\n");
    write_task_file("123", "comm", "we) ird (x) )\n");
    /* ") " inside the name must not be taken for the end of it. */
    write_task_file("124", "stat", "124 () R ) Z) t 1 2 3\n");
    write_task_file("124", "comm", ") R ) Z)\n");
    /* Broken files. */
    write_task_file("125", "stat", "125 (no end S 1 2 3\n");
    write_task_file("126", "stat", "126 (nothing after)");
    write_task_file("127", "stat", "");
    write_task_file("127", "comm", "");
    write_task_file("128", "comm", "no-newline");

    ck_assert_int_eq(pp_tasks_state(root, 123), 'D');
    ck_assert_int_eq(pp_tasks_comm(root, 123, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "we) ird (x) )");
    ck_assert_int_eq(pp_tasks_comm(root, 123, small, sizeof(small)), 0);
    ck_assert_str_eq(small, "we) ");

    ck_assert_int_eq(pp_tasks_state(root, 124), 't');
    ck_assert_int_eq(pp_tasks_comm(root, 124, name, sizeof(name)), 0);
    ck_assert_str_eq(name, ") R ) Z)");

    ck_assert_int_eq(pp_tasks_state(root, 125), '?');
    ck_assert_int_eq(pp_tasks_state(root, 126), '?');
    ck_assert_int_eq(pp_tasks_state(root, 127), '?');
    ck_assert_int_eq(pp_tasks_comm(root, 127, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "");
    ck_assert_int_eq(pp_tasks_comm(root, 128, name, sizeof(name)), 0);
    ck_assert_str_eq(name, "no-newline");

    /* A task that is not there. */
    ck_assert_int_eq(pp_tasks_state(root, 999), '?');
    strcpy(name, "junk");
    ck_assert_int_eq(pp_tasks_comm(root, 999, name, sizeof(name)), -1);
    ck_assert_str_eq(name, "");
    ck_assert_int_eq(pp_tasks_comm(root, 999, name, 0), -1);
    remove_root();
}
END_TEST

START_TEST(seam_reads_the_pending_mask)
{
    make_root();
    write_task_file("10", "status", "Name:\tx\nState:\tS (sleeping)\nSigQ:\t2/96365\n"
                    "SigPnd:\t0000000000000200\nShdPnd:\t0000000000000001\n"
                    "SigBlk:\tffffffffffffffff\n");
    write_task_file("11", "status", "SigPnd:\t8000000000000001\n");
    write_task_file("12", "status", "Name:\tx\nSigPnd:\tzz\n");
    write_task_file("13", "status", "Name:\tx\nShdPnd:\t0000000000000200\n");
    write_task_file("14", "status", "Name:\tx\nSigPnd:\t00000000000000000\n");
    write_task_file("15", "status", "Name:\tx\nXSigPnd:\t0000000000000200\n");
    write_task_file("16", "status", "SigPnd:\t200");

    ck_assert_int_eq(pp_tasks_sig_pending(root, 10, 10), 1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 10, 9), 0);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 10, 11), 0);
    /* ShdPnd (pending for the process) is another line. */
    ck_assert_int_eq(pp_tasks_sig_pending(root, 10, 1), 0);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 11, 64), 1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 11, 1), 1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 11, 63), 0);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 12, 10), -1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 13, 10), -1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 14, 10), -1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 15, 10), -1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 16, 10), 1);
    ck_assert_int_eq(pp_tasks_sig_pending(root, 999, 10), -1);
    remove_root();
}
END_TEST

START_TEST(parse_syscall_reads_every_form_the_kernel_writes)
{
    pp_tasks_syscall sc;
    const char *blocked = "230 0x0 0x0 0x7f960c36cea0 0x0 0x0 0x7f960c36d6c0 "
                          "0x7f960c36ce60 0x7f960c440545\n";
    static const char *const bad[] = {
        "", "\n", "runnin", "running now", "230", "230 0x0 0x0 0x0 0x0 0x0 0x0 0x1\n",
        "230 0x0 0x0 0x0 0x0 0x0 0x0 0x1 0x2 0x3\n", "230 0 0x0 0x0 0x0 0x0 0x0 0x1 0x2\n",
        "-1 0x1\n", "-2 0x1 0x2\n", "-1 0x1 0x2 0x3\n", "x 0x1 0x2\n", "-1 0x1  0x2\n",
        "-1 0x 0x2\n", "-1 0x1 0x12345678901234567\n", "-1 0x1 0x2\n\n", "-1 0x1 0xG\n",
    };
    size_t i;

    ck_assert_int_eq(pp_tasks_parse_syscall("running\n", 8, &sc), 0);
    ck_assert_int_eq(sc.running, 1);
    ck_assert_int_eq(pp_tasks_parse_syscall("running", 7, &sc), 0);
    ck_assert_int_eq(sc.running, 1);
    ck_assert_int_eq(pp_tasks_parse_syscall(blocked, strlen(blocked), &sc), 0);
    ck_assert_int_eq(sc.running, 0);
    ck_assert_int_eq(sc.nr, 230);
    ck_assert_uint_eq(sc.args[2], 0x7f960c36cea0ULL);
    ck_assert_uint_eq(sc.args[5], 0x7f960c36d6c0ULL);
    ck_assert_uint_eq(sc.sp, 0x7f960c36ce60ULL);
    ck_assert_uint_eq(sc.pc, 0x7f960c440545ULL);
    /* Cut at len: the newline is not needed. */
    ck_assert_int_eq(pp_tasks_parse_syscall(blocked, strlen(blocked) - 1, &sc), 0);
    ck_assert_int_eq(pp_tasks_parse_syscall("-1 0x7ffc1 0xffffffffffffffff\n", 29, &sc), 0);
    ck_assert_int_eq(sc.nr, -1);
    ck_assert_uint_eq(sc.sp, 0x7ffc1);
    ck_assert_uint_eq(sc.pc, 0xffffffffffffffffULL);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(pp_tasks_parse_syscall(bad[i], strlen(bad[i]), &sc) == -1,
                      "accepted \"%s\"", bad[i]);
    }
}
END_TEST

static _Atomic int sleeper_go, sleeper_stop;

/* Its long sleeps last until it is told to stop: a reader that the machine holds back
 * for longer than one of them still finds it asleep. */
static void *switching_sleeper(void *arg)
{
    (void)arg;
    while (!atomic_load(&sleeper_go)) {
        sleep_ms(1);
    }
    while (!atomic_load(&sleeper_stop)) {
        sleep_ms(200);
    }
    return NULL;
}

START_TEST(self_reads_what_a_blocked_thread_waits_in_and_its_switches)
{
    pthread_t th;
    uint32_t *tids;
    size_t n, i;
    uint32_t tid = 0;
    uint64_t a, b;
    char path[96], buf[256];
    FILE *f;
    pp_tasks_syscall sc;
    int64_t deadline;

    ck_assert_int_eq(pthread_create(&th, NULL, switching_sleeper, NULL), 0);
    ck_assert_int_eq(pp_tasks_list(NULL, &tids, &n), 0);
    for (i = 0; i < n; i++) {
        if (tids[i] != my_tid()) {
            tid = tids[i];
        }
    }
    free(tids);
    ck_assert_uint_ne(tid, 0);
    /* It sleeps 1 ms at a time meanwhile, so its count grows: polled, as a loaded
     * machine may not run a new thread for tens of ms (a count that never grows fails
     * at the deadline). */
    deadline = mono_ns() + 20000 * MS;
    ck_assert_int_eq(pp_tasks_switches(NULL, tid, &a), 0);
    do {
        ck_assert_msg(mono_ns() < deadline, "its switches never grew from %llu",
                      (unsigned long long)a);
        sleep_ms(1);
        ck_assert_int_eq(pp_tasks_switches(NULL, tid, &b), 0);
    } while (b <= a);
    atomic_store(&sleeper_go, 1);
    for (;;) {
        snprintf(path, sizeof(path), "/proc/self/task/%u/syscall", tid);
        f = fopen(path, "r");
        ck_assert_ptr_nonnull(f);
        n = fread(buf, 1, sizeof(buf) - 1, f);
        fclose(f);
        ck_assert_int_eq(pp_tasks_parse_syscall(buf, n, &sc), 0);
        if (!sc.running && (sc.nr == SYS_nanosleep || sc.nr == SYS_clock_nanosleep)) {
            break;
        }
        ck_assert(mono_ns() < deadline);
        sleep_ms(1);
    }
    ck_assert_uint_ne(sc.sp, 0);
    ck_assert_uint_ne(sc.pc, 0);
    atomic_store(&sleeper_stop, 1);
    pthread_join(th, NULL);
    /* Gone: pthread_join may return a moment before the task leaves /proc (2 joins in a
     * thousand here still found it), so polled until the deadline. */
    while (pp_tasks_switches(NULL, tid, &a) != -1) {
        ck_assert_msg(mono_ns() < deadline, "a joined thread still has switches");
        sleep_ms(1);
    }
}
END_TEST

START_TEST(parse_state_uses_the_last_parenthesis_within_len)
{
    static const char line[] = "7 (a) S) R 1 2";

    ck_assert_int_eq(pp_tasks_parse_state(line, strlen(line)), 'R');
    /* Only len bytes are looked at: cut before the last ')', the earlier one counts. */
    ck_assert_int_eq(pp_tasks_parse_state(line, 7), 'S');
    /* Cut right after a ')': no state follows within len. */
    ck_assert_int_eq(pp_tasks_parse_state(line, 5), '?');
    ck_assert_int_eq(pp_tasks_parse_state(line, 6), '?');
    ck_assert_int_eq(pp_tasks_parse_state("", 0), '?');
    ck_assert_int_eq(pp_tasks_parse_state("1 (x)  S", 8), '?');
    ck_assert_int_eq(pp_tasks_parse_state("1 (x)\nS", 7), '?');
    ck_assert_int_eq(pp_tasks_parse_state("1 x S", 5), '?');
    ck_assert_int_eq(pp_tasks_parse_state("1 ((()))) I 0", 13), 'I');
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_tasks");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, self_lists_the_main_thread_and_a_started_one_until_it_is_joined);
    tcase_add_test(tc, self_reads_a_name_with_spaces_and_parentheses);
    tcase_add_test(tc, self_sees_a_signal_pending_for_one_thread);
    tcase_add_test(tc, seam_lists_numeric_entries_only_ascending);
    tcase_add_test(tc, seam_grows_past_its_first_allocation);
    tcase_add_test(tc, seam_empty_and_missing_directories);
    tcase_add_test(tc, seam_reads_state_and_name_of_odd_names);
    tcase_add_test(tc, seam_reads_the_pending_mask);
    tcase_add_test(tc, parse_state_uses_the_last_parenthesis_within_len);
    tcase_add_test(tc, parse_syscall_reads_every_form_the_kernel_writes);
    tcase_add_test(tc, self_reads_what_a_blocked_thread_waits_in_and_its_switches);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
