/* The CPU sampler's unwinder and its per-process frame cache (pp_funwind): every stack it
 * gives is the one libunwind's own step loop gives from the same signal context, frame by
 * frame, through frames of every shape (frame pointer or not, alloca, a signal frame),
 * cached or not; what one thread filled serves the others; a stack that is not the
 * thread's is refused rather than read. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_funwind.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <check.h>
#include "unit_main.h"
#include <alloca.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>

#define DEPTH 64

typedef struct {
    int n_ours, n_theirs;
    uint64_t ours[DEPTH], theirs[DEPTH];
} pair;

static pair got;
static volatile sig_atomic_t nested_sig;

/* libunwind's own walk of the context, as the reference. */
static int reference(void *uc, uint64_t *pcs, int max)
{
    unw_cursor_t cur;
    unw_word_t ip;
    int n = 0;

    if (unw_init_local2(&cur, (unw_context_t *)uc, UNW_INIT_SIGNAL_FRAME) != 0) {
        return 0;
    }
    do {
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0) {
            break;
        }
        pcs[n++] = ip;
    } while (n < max && unw_step(&cur) > 0);
    return n;
}

static void on_sample(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    got.n_ours = pp_funwind(uc, got.ours, DEPTH);
    got.n_theirs = reference(uc, got.theirs, DEPTH);
}

/* A handler that is itself interrupted: the sample's stack crosses a signal frame. */
static void on_outer(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    raise(nested_sig);
}

static void install(int sig, void (*fn)(int, siginfo_t *, void *))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = fn;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(sig, &sa, NULL), 0);
}

static void assert_same(const char *what)
{
    int i;

    ck_assert_msg(got.n_ours > 3, "%s: %d frames", what, got.n_ours);
    ck_assert_msg(got.n_ours == got.n_theirs, "%s: %d frames, libunwind %d", what,
                  got.n_ours, got.n_theirs);
    for (i = 0; i < got.n_ours; i++) {
        ck_assert_msg(got.ours[i] == got.theirs[i], "%s: frame %d is %#llx, libunwind's "
                      "%#llx", what, i, (unsigned long long)got.ours[i],
                      (unsigned long long)got.theirs[i]);
    }
}

/* ---- stacks of several shapes ---------------------------------------------------------- */

static volatile int sink;
static int signal_to_raise = SIGUSR1;

__attribute__((noinline)) static void leaf(void)
{
    raise(signal_to_raise);
    sink++;
}

/* No frame pointer (the default at -O2): CFA from RSP. */
__attribute__((noinline)) static void plain(int depth);
/* A frame pointer, and alloca: CFA from RBP, RSP different at every call. */
__attribute__((noinline, optimize("no-omit-frame-pointer"))) static void with_alloca(int depth,
                                                                                      int size);

static void plain(int depth)
{
    volatile char pad[40];

    pad[0] = (char)depth;
    if (depth > 0) {
        with_alloca(depth - 1, 16 + 48 * depth);
    } else {
        leaf();
    }
    sink += pad[0];
}

static void with_alloca(int depth, int size)
{
    volatile char *p = alloca((size_t)size);

    p[0] = (char)size;
    plain(depth);
    sink += p[0];
}

/* ---- tests ------------------------------------------------------------------------------ */

START_TEST(stacks_are_libunwinds_cached_or_not)
{
    pp_funwind_stats st0, st1;
    int round;

    install(SIGUSR1, on_sample);
    ck_assert_int_eq(pp_funwind_prepare(), 0);
    for (round = 0; round < 6; round++) {
        /* Other alloca sizes each round: a rule taken for RSP-based would break here. */
        with_alloca(3 + round % 3, 32 + 16 * round);
        assert_same("alloca and plain frames");
        if (round == 2) {
            pp_funwind_get_stats(&st0);
        }
    }
    pp_funwind_get_stats(&st1);
    ck_assert_uint_gt(st1.entries, 4);
    /* The deepest stacks of rounds 3..5 were those of rounds 0..2: nothing new to fill. */
    ck_assert_msg(st1.fills == st0.fills, "fills went from %llu to %llu on stacks seen before",
                  (unsigned long long)st0.fills, (unsigned long long)st1.fills);
    ck_assert_uint_eq(st1.full, 0);
}
END_TEST

START_TEST(a_stack_through_a_signal_frame)
{
    install(SIGUSR1, on_outer);
    install(SIGUSR2, on_sample);
    nested_sig = SIGUSR2;
    ck_assert_int_eq(pp_funwind_prepare(), 0);
    with_alloca(2, 64);
    assert_same("through a signal frame, filled");
    with_alloca(2, 64);
    assert_same("through a signal frame, cached");
}
END_TEST

static void *other_thread(void *arg)
{
    pp_funwind_stats *st = arg;

    install(SIGUSR1, on_sample);
    if (pp_funwind_prepare() != 0) {
        return NULL;
    }
    pp_funwind_get_stats(&st[0]);
    with_alloca(3, 64);
    pp_funwind_get_stats(&st[1]);
    return NULL;
}

START_TEST(one_cache_serves_every_thread)
{
    pp_funwind_stats st[2];
    pthread_t t;
    pair mine;

    install(SIGUSR1, on_sample);
    ck_assert_int_eq(pp_funwind_prepare(), 0);
    with_alloca(3, 64);
    assert_same("first thread");
    mine = got;
    memset(st, 0, sizeof(st));
    ck_assert_int_eq(pthread_create(&t, NULL, other_thread, st), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    assert_same("second thread");
    /* The frames above the thread's start differ; those of the work were cached by the
     * first thread: the second fills at most its own outermost frames. */
    ck_assert_int_ge(mine.n_ours, 8);
    ck_assert_msg(st[1].fills - st[0].fills <= 4, "the second thread filled %llu entries",
                  (unsigned long long)(st[1].fills - st[0].fills));
    ck_assert_uint_eq(st[1].bytes, st[0].bytes);
    ck_assert_uint_le(st[1].bytes, 256 * 1024);
}
END_TEST

static ucontext_t main_ctx, co_ctx;

static void on_coroutine(void)
{
    with_alloca(1, 64);
}

START_TEST(a_stack_not_the_threads_is_refused)
{
    size_t size = 256 * 1024;
    char *stack = malloc(size);

    install(SIGUSR1, on_sample);
    /* Not prepared yet: refused. */
    with_alloca(1, 64);
    ck_assert_int_eq(got.n_ours, -1);
    ck_assert_int_eq(pp_funwind_prepare(), 0);
    ck_assert_ptr_nonnull(stack);
    ck_assert_int_eq(getcontext(&co_ctx), 0);
    co_ctx.uc_stack.ss_sp = stack;
    co_ctx.uc_stack.ss_size = size;
    co_ctx.uc_link = &main_ctx;
    makecontext(&co_ctx, on_coroutine, 0);
    ck_assert_int_eq(swapcontext(&main_ctx, &co_ctx), 0);
    ck_assert_int_eq(got.n_ours, -1);
    ck_assert_int_gt(got.n_theirs, 2);
    /* Back on its own stack, the thread is unwound again. */
    with_alloca(1, 64);
    assert_same("back on the thread's stack");
    free(stack);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_funwind");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, stacks_are_libunwinds_cached_or_not);
    tcase_add_test(tc, a_stack_through_a_signal_frame);
    tcase_add_test(tc, one_cache_serves_every_thread);
    tcase_add_test(tc, a_stack_not_the_threads_is_refused);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
