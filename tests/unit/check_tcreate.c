/* Where threads come from, on this process. The core is linked statically into this
 * executable, and pp_got never patches the object that holds it: a pthread_create called
 * from here is always libc's. TEST_ALLOCLIB creates threads through its own GOT
 * (ppt_thread_create), as any module or library of a real server does, so threads created
 * through it are the hooked ones. Every test runs in its own forked process (Check's
 * default): each starts unhooked, with the library unloaded. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall(SYS_gettid) */
#endif
#include "pp_got.h"
#include "pp_maps.h"
#include "pp_symbolize.h"
#include "pp_tasks.h"
#include "pp_tcreate.h"

#include <check.h>
#include "unit_main.h"
#include "unit_util.h"
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define NOINLINE __attribute__((noinline, noclone))

/* ---- the library that creates threads through its GOT ---------------------------------- */

typedef int thread_create_fn(pthread_t *, void *(*)(void *), void *);

static void *lib_handle;
static thread_create_fn *lib_thread_create;

static void load_lib(void)
{
    lib_handle = dlopen(TEST_ALLOCLIB, RTLD_NOW);
    ck_assert_msg(lib_handle != NULL, "dlopen %s: %s", TEST_ALLOCLIB, dlerror());
    *(void **)&lib_thread_create = dlsym(lib_handle, "ppt_thread_create");
    ck_assert_ptr_nonnull(lib_thread_create);
}

/* ---- naming PCs (as check_cpu does) ----------------------------------------------------- */

/* The function calling at return address pc. */
static const char *caller_at(namer *nm, uint64_t pc)
{
    return pc_function(nm, pc, 1);
}

static int record_has(namer *nm, const pp_tcreate_record *r, const char *fn)
{
    uint32_t i;

    for (i = 0; i < r->npcs; i++) {
        if (strcmp(caller_at(nm, r->pcs[i]), fn) == 0) {
            return 1;
        }
    }
    return 0;
}

static void assert_record_has(namer *nm, const pp_tcreate_record *r, const char *fn)
{
    uint32_t i;

    if (record_has(nm, r, fn)) {
        return;
    }
    fprintf(stderr, "creation stack of %u, %u frames:\n", r->tid, r->npcs);
    for (i = 0; i < r->npcs; i++) {
        fprintf(stderr, "  %#llx %s\n", (unsigned long long)r->pcs[i],
                caller_at(nm, r->pcs[i]));
    }
    ck_abort_msg("thread %u: no %s in its creation stack", r->tid, fn);
}

/* ---- snapshots ------------------------------------------------------------------------ */

typedef struct {
    pp_tcreate_record *r;
    size_t n;
} snapshot;

static snapshot take(void)
{
    snapshot s;
    size_t i;

    ck_assert_int_eq(pp_tcreate_snapshot(&s.r, &s.n), 0);
    for (i = 1; i < s.n; i++) {
        ck_assert_msg(s.r[i - 1].tid < s.r[i].tid, "not ordered by tid at %zu", i);
    }
    for (i = 0; i < s.n; i++) {
        ck_assert_uint_le(s.r[i].npcs, PP_TCREATE_MAX_DEPTH);
    }
    return s;
}

static const pp_tcreate_record *find(const snapshot *s, uint32_t tid)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        if (s->r[i].tid == tid) {
            return &s->r[i];
        }
    }
    return NULL;
}

/* ---- threads that wait until told to go ----------------------------------------------- */

typedef struct {
    int pipe[2];                /* the thread leaves once pipe[1] is closed */
    int leave_by_exit;          /* through pthread_exit from a nested call */
    _Atomic uint32_t tid;
    pthread_t th;
} waiter;

void leave_by_pthread_exit(void);

NOINLINE void leave_by_pthread_exit(void)
{
    pthread_exit(NULL);
}

static void *waiter_main(void *arg)
{
    waiter *w = arg;
    char c;

    atomic_store(&w->tid, my_tid());
    while (read(w->pipe[0], &c, 1) < 0 && errno == EINTR) {
    }
    if (w->leave_by_exit) {
        leave_by_pthread_exit();
    }
    return NULL;
}

static void waiter_init(waiter *w, int leave_by_exit)
{
    memset(w, 0, sizeof(*w));
    ck_assert_int_eq(pipe(w->pipe), 0);
    w->leave_by_exit = leave_by_exit;
}

static uint32_t waiter_tid(waiter *w)
{
    int64_t deadline = mono_ns() + 20000 * MS;
    uint32_t tid;

    while (!(tid = atomic_load(&w->tid))) {
        ck_assert_msg(mono_ns() < deadline, "the thread never started");
        sleep_ms(1);
    }
    return tid;
}

/* After it was joined, wait until /proc no longer lists it (pthread_join may return a
 * moment before the task is gone): afterwards no snapshot may list it. */
static void waiter_gone(uint32_t tid)
{
    int64_t deadline = mono_ns() + 20000 * MS;

    for (;;) {
        snapshot s = take();
        const pp_tcreate_record *r = find(&s, tid);
        int listed = r != NULL;
        /* Leaving, it may still be listed: without its stack once its record is gone. */
        free(s.r);
        if (!listed) {
            break;
        }
        ck_assert_msg(mono_ns() < deadline, "a joined thread is still listed");
        sleep_ms(1);
    }
}

/* Let it go, join it, and wait until it is no longer listed. */
static void waiter_finish(waiter *w)
{
    uint32_t tid = waiter_tid(w);

    close(w->pipe[1]);
    ck_assert_int_eq(pthread_join(w->th, NULL), 0);
    close(w->pipe[0]);
    waiter_gone(tid);
}

int spawn_from_known_site(waiter *w);
int spawn_from_elsewhere(waiter *w);

/* The creating functions that creation stacks must show. */
NOINLINE int spawn_from_known_site(waiter *w)
{
    int rc = lib_thread_create(&w->th, waiter_main, w);

    __asm__ volatile("" ::: "memory");
    return rc;
}

NOINLINE int spawn_from_elsewhere(waiter *w)
{
    int rc = lib_thread_create(&w->th, waiter_main, w);

    __asm__ volatile("" ::: "memory");
    return rc;
}

/* ---- tests ---------------------------------------------------------------------------- */

START_TEST(a_thread_created_after_start_is_listed_with_its_creation_stack)
{
    waiter a, b;
    snapshot s;
    const pp_tcreate_record *r;
    uint64_t total0;
    size_t i, from_known = 0;
    uint32_t *tids;
    size_t ntids;
    namer nm;

    load_lib();
    ck_assert_int_gt(pp_tcreate_start(), 0);
    total0 = pp_tcreate_total();
    waiter_init(&a, 0);
    waiter_init(&b, 0);
    ck_assert_int_eq(spawn_from_known_site(&a), 0);

    /* Listed as soon as creating it returned, before it ran a line of its own. */
    namer_init(&nm);
    s = take();
    for (i = 0; i < s.n; i++) {
        from_known += record_has(&nm, &s.r[i], "spawn_from_known_site");
    }
    ck_assert_uint_eq(from_known, 1);
    free(s.r);
    ck_assert_uint_eq(pp_tcreate_total(), total0 + 1);

    ck_assert_int_eq(spawn_from_elsewhere(&b), 0);
    ck_assert_uint_eq(pp_tcreate_total(), total0 + 2);
    s = take();
    /* The thread: its creator's caller first (no frame of the hook's), then the rest. */
    r = find(&s, waiter_tid(&a));
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_gt(r->npcs, 2);
    ck_assert_str_eq(caller_at(&nm, r->pcs[0]), "ppt_thread_create");
    ck_assert_str_eq(caller_at(&nm, r->pcs[1]), "spawn_from_known_site");
    ck_assert(!record_has(&nm, r, "spawn_from_elsewhere"));
    r = find(&s, waiter_tid(&b));
    ck_assert_ptr_nonnull(r);
    ck_assert_str_eq(caller_at(&nm, r->pcs[0]), "ppt_thread_create");
    assert_record_has(&nm, r, "spawn_from_elsewhere");
    ck_assert(!record_has(&nm, r, "spawn_from_known_site"));
    /* This thread was there before: listed, without a stack. */
    r = find(&s, my_tid());
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->npcs, 0);
    /* Every thread of the process, and only those. */
    ck_assert_int_eq(pp_tasks_list(NULL, &tids, &ntids), 0);
    ck_assert_uint_eq(ntids, s.n);
    for (i = 0; i < ntids; i++) {
        ck_assert_uint_eq(s.r[i].tid, tids[i]);
    }
    free(tids);
    free(s.r);

    /* Once it is gone, no longer listed; the other one still is, with its stack. */
    waiter_finish(&a);
    s = take();
    ck_assert_ptr_null(find(&s, waiter_tid(&a)));
    r = find(&s, waiter_tid(&b));
    ck_assert_ptr_nonnull(r);
    assert_record_has(&nm, r, "spawn_from_elsewhere");
    free(s.r);
    waiter_finish(&b);
    ck_assert_uint_eq(pp_tcreate_total(), total0 + 2);
    namer_free(&nm);
}
END_TEST

START_TEST(a_thread_leaving_through_pthread_exit_is_forgotten)
{
    waiter w[8];
    snapshot s;
    size_t i;
    namer nm;

    load_lib();
    ck_assert_int_gt(pp_tcreate_start(), 0);
    for (i = 0; i < 8; i++) {
        waiter_init(&w[i], (int)(i % 2));
        ck_assert_int_eq(spawn_from_known_site(&w[i]), 0);
    }
    ck_assert_uint_eq(pp_tcreate_total(), 8);
    namer_init(&nm);
    s = take();
    for (i = 0; i < 8; i++) {
        const pp_tcreate_record *r = find(&s, waiter_tid(&w[i]));
        ck_assert_ptr_nonnull(r);
        assert_record_has(&nm, r, "spawn_from_known_site");
    }
    free(s.r);
    namer_free(&nm);
    for (i = 0; i < 8; i++) {
        waiter_finish(&w[i]);
    }
    /* Only this thread is left, and it has no creation stack. */
    s = take();
    ck_assert_uint_eq(s.n, 1);
    ck_assert_uint_eq(s.r[0].tid, my_tid());
    ck_assert_uint_eq(s.r[0].npcs, 0);
    free(s.r);
}
END_TEST

START_TEST(threads_created_before_start_are_listed_without_a_stack)
{
    waiter before, after;
    snapshot s;
    const pp_tcreate_record *r;
    namer nm;

    load_lib();
    waiter_init(&before, 0);
    ck_assert_int_eq(spawn_from_known_site(&before), 0);
    ck_assert_uint_eq(pp_tcreate_total(), 0);
    s = take();
    r = find(&s, waiter_tid(&before));
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->npcs, 0);
    free(s.r);

    ck_assert_int_gt(pp_tcreate_start(), 0);
    waiter_init(&after, 0);
    ck_assert_int_eq(spawn_from_known_site(&after), 0);
    s = take();
    r = find(&s, waiter_tid(&before));
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->npcs, 0);
    r = find(&s, waiter_tid(&after));
    ck_assert_ptr_nonnull(r);
    namer_init(&nm);
    assert_record_has(&nm, r, "spawn_from_known_site");
    namer_free(&nm);
    free(s.r);
    ck_assert_uint_eq(pp_tcreate_total(), 1);
    waiter_finish(&before);
    waiter_finish(&after);
}
END_TEST

START_TEST(unpatching_restores_the_real_pthread_create)
{
    waiter during, after;
    snapshot s;
    const pp_tcreate_record *r;
    namer nm;

    load_lib();
    ck_assert_int_gt(pp_tcreate_start(), 0);
    ck_assert_uint_gt(pp_got_patched_slots(), 0);
    waiter_init(&during, 0);
    ck_assert_int_eq(spawn_from_known_site(&during), 0);

    pp_got_unpatch();
    ck_assert_uint_eq(pp_got_patched_slots(), 0);
    waiter_init(&after, 0);
    ck_assert_int_eq(spawn_from_known_site(&after), 0);
    /* Created by the real function: not counted, listed without a stack. */
    ck_assert_uint_eq(pp_tcreate_total(), 1);
    namer_init(&nm);
    s = take();
    r = find(&s, waiter_tid(&after));
    ck_assert_ptr_nonnull(r);
    ck_assert_uint_eq(r->npcs, 0);
    /* A thread created while hooked keeps its record while it lives, and drops it when it
     * ends, hook or no hook. */
    r = find(&s, waiter_tid(&during));
    ck_assert_ptr_nonnull(r);
    assert_record_has(&nm, r, "spawn_from_known_site");
    free(s.r);
    namer_free(&nm);
    waiter_finish(&during);
    waiter_finish(&after);

    /* And hooking again works. */
    ck_assert_int_gt(pp_tcreate_start(), 0);
    waiter_init(&after, 0);
    ck_assert_int_eq(spawn_from_known_site(&after), 0);
    ck_assert_uint_eq(pp_tcreate_total(), 2);
    s = take();
    ck_assert_uint_gt(find(&s, waiter_tid(&after))->npcs, 0);
    free(s.r);
    waiter_finish(&after);
}
END_TEST

/* pthread_create is no cancellation point: creating a thread with a cancellation pending
 * must return, and the thread be cancelled at its next cancellation point (the hook's
 * unwinder and its wait for the new thread both have one). */
typedef struct {
    waiter child;
    _Atomic int created;        /* pthread_create returned (its result + 1) */
} canceller;

static void *cancelled_creator(void *arg)
{
    canceller *c = arg;
    int rc;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
    pthread_cancel(pthread_self());
    pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    rc = spawn_from_known_site(&c->child);
    atomic_store(&c->created, rc + 1);
    pthread_testcancel();
    return NULL;
}

START_TEST(creating_a_thread_is_no_cancellation_point)
{
    canceller c;
    pthread_t th;
    void *ret;
    snapshot s;
    const pp_tcreate_record *r;
    namer nm;

    load_lib();
    ck_assert_int_gt(pp_tcreate_start(), 0);
    memset(&c, 0, sizeof(c));
    waiter_init(&c.child, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, cancelled_creator, &c), 0);
    ck_assert_int_eq(pthread_join(th, &ret), 0);
    ck_assert_ptr_eq(ret, PTHREAD_CANCELED);
    ck_assert_int_eq(atomic_load(&c.created), 1);
    ck_assert_uint_eq(pp_tcreate_total(), 1);
    s = take();
    r = find(&s, waiter_tid(&c.child));
    ck_assert_ptr_nonnull(r);
    namer_init(&nm);
    assert_record_has(&nm, r, "cancelled_creator");
    namer_free(&nm);
    free(s.r);
    /* The new thread did not inherit the creator's cancellation state: it can be
     * cancelled where it waits (a read, a cancellation point). */
    ck_assert_int_eq(pthread_cancel(c.child.th), 0);
    ck_assert_int_eq(pthread_join(c.child.th, &ret), 0);
    ck_assert_ptr_eq(ret, PTHREAD_CANCELED);
    waiter_gone(waiter_tid(&c.child));
    close(c.child.pipe[0]);
    close(c.child.pipe[1]);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_tcreate");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, a_thread_created_after_start_is_listed_with_its_creation_stack);
    tcase_add_test(tc, a_thread_leaving_through_pthread_exit_is_forgotten);
    tcase_add_test(tc, threads_created_before_start_are_listed_without_a_stack);
    tcase_add_test(tc, unpatching_restores_the_real_pthread_create);
    tcase_add_test(tc, creating_a_thread_is_no_cancellation_point);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
