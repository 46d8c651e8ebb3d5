/* Waits as a tracer sees them, on this process. The core is linked statically into this
 * executable, and pp_got never patches the object that holds it: pthread_mutex_lock and
 * poll called from here are always libc's. TEST_WAITLIB locks and polls through its own
 * GOT (ppw_mutex_lock, ppw_poll), as any module or library of a real server does, so its
 * calls are the interposed ones. Every test runs in its own forked process (Check's
 * default): each starts unhooked, with the library unloaded and no observer.
 *
 * Order, not time, is checked wherever it can be: a wait is reported before the event
 * that ends it and its end after. Time bounds only tell "prompt" from "hung". */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall(SYS_gettid), PTHREAD_MUTEX_ERRORCHECK */
#endif
#include "pp_maps.h"
#include "pp_symbolize.h"
#include "pp_tasks.h"
#include "pp_wait.h"

#include <check.h>
#include "unit_main.h"
#include "unit_util.h"
#include <dlfcn.h>
#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define NOINLINE __attribute__((noinline, noclone))

/* ---- the library that locks and polls through its GOT --------------------------------- */

static int (*lib_lock)(pthread_mutex_t *);
static int (*lib_poll)(struct pollfd *, nfds_t, int);
static int (*lib_unlock)(pthread_mutex_t *);
static int (*lib_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *, const struct timespec *);
static int (*lib_sem_wait)(sem_t *);

/* Load the library, then hook: everything loaded is patched. */
static void install(void)
{
    void *h = dlopen(TEST_WAITLIB, RTLD_NOW);

    ck_assert_msg(h != NULL, "dlopen %s: %s", TEST_WAITLIB, dlerror());
    *(void **)&lib_lock = dlsym(h, "ppw_mutex_lock");
    *(void **)&lib_poll = dlsym(h, "ppw_poll");
    *(void **)&lib_unlock = dlsym(h, "ppw_mutex_unlock");
    *(void **)&lib_cond_timedwait = dlsym(h, "ppw_cond_timedwait");
    *(void **)&lib_sem_wait = dlsym(h, "ppw_sem_wait");
    ck_assert_ptr_nonnull(lib_unlock);
    ck_assert_ptr_nonnull(lib_cond_timedwait);
    ck_assert_ptr_nonnull(lib_sem_wait);
    ck_assert_ptr_nonnull(lib_lock);
    ck_assert_ptr_nonnull(lib_poll);
    /* At least the library's two call sites. */
    ck_assert_int_ge(pp_wait_install(), 2);
}

/* ---- naming PCs (as check_cpu does) ----------------------------------------------------- */

/* The function calling at return address pc. */
static const char *caller_at(namer *nm, uint64_t pc)
{
    return pc_function(nm, pc, 1);
}

/* ---- the observer: records every call -------------------------------------------------- */

typedef struct {
    int kind;                   /* as passed, PP_WAIT_ASK included */
    uint32_t tid;
    int64_t ts;
    int npcs;
    uint64_t pcs[PP_WAIT_DEPTH];
} event;

#define MAX_EVENTS 256

static event events[MAX_EVENTS];
static _Atomic int nevents;
static _Atomic int answer = 1;          /* the answer to PP_WAIT_ASK */
static _Atomic int depth, max_depth;
static _Atomic int clobber_errno;       /* leave errno changed, as a careless observer may */
static void (*_Atomic inside)(void);    /* run inside the observer, at depth 1 */
static _Atomic int bad_calls;           /* a count of PCs without the PCs */

static int observer(int kind, const uint64_t *pcs, int npcs)
{
    int d = atomic_fetch_add(&depth, 1) + 1, i = atomic_fetch_add(&nevents, 1), m;
    void (*fn)(void) = atomic_load(&inside);

    while ((m = atomic_load(&max_depth)) < d && !atomic_compare_exchange_weak(&max_depth, &m, d)) {
    }
    if (i < MAX_EVENTS) {
        event *e = &events[i];
        e->kind = kind;
        e->tid = my_tid();
        e->ts = mono_ns();
        e->npcs = npcs < 0 ? 0 : npcs > PP_WAIT_DEPTH ? PP_WAIT_DEPTH : npcs;
        if (pcs && e->npcs) {
            memcpy(e->pcs, pcs, (size_t)e->npcs * sizeof(*pcs));
        }
        if (!pcs && npcs) {
            atomic_store(&bad_calls, 1);
        }
    }
    if (fn && d == 1 && (kind & PP_WAIT_ASK)) {
        fn();
    }
    if (atomic_load(&clobber_errno)) {
        errno = ENOTRECOVERABLE;
    }
    atomic_fetch_sub(&depth, 1);
    return atomic_load(&answer);
}

/* Checked here, not in the observer: an assertion writes, a cancellation point. */
static int count_events(void)
{
    int n = atomic_load(&nevents);

    ck_assert_int_le(n, MAX_EVENTS);
    ck_assert_int_eq(atomic_load(&bad_calls), 0);
    return n;
}

/* The events of one thread, in order, as a string of letters: a ask lock, n ask net,
 * s ask sync, L lock, N net, S sync, D done. */
static const char *sequence(uint32_t tid)
{
    static char buf[MAX_EVENTS + 1];
    int i, n = count_events(), k = 0;

    for (i = 0; i < n; i++) {
        const event *e = &events[i];
        if (e->tid != tid) {
            continue;
        }
        switch (e->kind) {
        case PP_WAIT_LOCK | PP_WAIT_ASK: buf[k++] = 'a'; break;
        case PP_WAIT_NET | PP_WAIT_ASK: buf[k++] = 'n'; break;
        case PP_WAIT_LOCK: buf[k++] = 'L'; break;
        case PP_WAIT_NET: buf[k++] = 'N'; break;
        case PP_WAIT_SYNC | PP_WAIT_ASK: buf[k++] = 's'; break;
        case PP_WAIT_SYNC: buf[k++] = 'S'; break;
        case PP_WAIT_DONE: buf[k++] = 'D'; break;
        default: buf[k++] = '?'; break;
        }
    }
    buf[k] = '\0';
    return buf;
}

/* The first event of a thread of the given kind, or NULL. */
static const event *find_event(uint32_t tid, int kind)
{
    int i, n = count_events();

    for (i = 0; i < n; i++) {
        if (events[i].tid == tid && events[i].kind == kind) {
            return &events[i];
        }
    }
    return NULL;
}

/* Until tid had an event of that kind. */
static const event *await_event(uint32_t tid, int kind)
{
    int64_t deadline = mono_ns() + 20000 * MS;
    const event *e;

    while (!(e = find_event(tid, kind))) {
        ck_assert_msg(mono_ns() < deadline, "no event %d from thread %u", kind, tid);
        sleep_ms(1);
    }
    return e;
}

static void assert_stack(namer *nm, const event *e, const char *first, const char *waiter)
{
    int i, found = 0;

    ck_assert_int_gt(e->npcs, 1);
    for (i = 0; i < e->npcs; i++) {
        found |= strcmp(caller_at(nm, e->pcs[i]), waiter) == 0;
    }
    if (strcmp(caller_at(nm, e->pcs[0]), first) != 0 || !found) {
        for (i = 0; i < e->npcs; i++) {
            fprintf(stderr, "  %#llx %s\n", (unsigned long long)e->pcs[i],
                    caller_at(nm, e->pcs[i]));
        }
        ck_abort_msg("the stack does not start in %s or lacks %s", first, waiter);
    }
}

/* ---- threads that wait in known functions ---------------------------------------------- */

typedef struct {
    pthread_mutex_t *m;
    int fd;
    int timeout;
    int cancel_pending;         /* start with a cancellation pending */
    _Atomic uint32_t tid;
    _Atomic int done;
    int rc, err, revents;
    int64_t end_ts;             /* when the call returned */
    pthread_t th;
} waiter;

int wait_for_lock(waiter *w);
int wait_for_data(waiter *w);

NOINLINE int wait_for_lock(waiter *w)
{
    int rc = lib_lock(w->m);

    __asm__ volatile("" ::: "memory");
    return rc;
}

NOINLINE int wait_for_data(waiter *w)
{
    struct pollfd p = { w->fd, POLLIN, 0 };
    int rc;

    errno = 4242;
    rc = lib_poll(&p, 1, w->timeout);
    w->err = errno;
    w->revents = p.revents;
    __asm__ volatile("" ::: "memory");
    return rc;
}

static void start_cancel_pending(waiter *w)
{
    if (w->cancel_pending) {
        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, NULL);
        pthread_cancel(pthread_self());
        pthread_setcancelstate(PTHREAD_CANCEL_ENABLE, NULL);
    }
}

static void *lock_main(void *arg)
{
    waiter *w = arg;

    atomic_store(&w->tid, my_tid());
    start_cancel_pending(w);
    errno = 4242;
    w->rc = wait_for_lock(w);
    w->err = errno;
    w->end_ts = mono_ns();
    atomic_store(&w->done, 1);
    if (w->rc == 0) {
        pthread_mutex_unlock(w->m);
    }
    return NULL;
}

static void *poll_main(void *arg)
{
    waiter *w = arg;

    atomic_store(&w->tid, my_tid());
    start_cancel_pending(w);
    w->rc = wait_for_data(w);
    w->end_ts = mono_ns();
    atomic_store(&w->done, 1);
    return NULL;
}

static uint32_t start_waiter(waiter *w, void *(*fn)(void *))
{
    int64_t deadline = mono_ns() + 20000 * MS;
    uint32_t tid;

    ck_assert_int_eq(pthread_create(&w->th, NULL, fn, w), 0);
    while (!(tid = atomic_load(&w->tid))) {
        ck_assert_msg(mono_ns() < deadline, "the thread never started");
        sleep_ms(1);
    }
    return tid;
}

/* Until the thread sleeps (in its wait, for the tests that use it). */
static void await_sleeping(uint32_t tid)
{
    int64_t deadline = mono_ns() + 20000 * MS;

    while (pp_tasks_state(NULL, tid) != 'S') {
        ck_assert_msg(mono_ns() < deadline, "thread %u never slept", tid);
        sleep_ms(1);
    }
}

static void on_usr1(int sig)
{
    (void)sig;
}

static void catch_usr1(void)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_usr1;
    sigemptyset(&sa.sa_mask);
    /* Without SA_RESTART; poll would not restart anyway. */
    ck_assert_int_eq(sigaction(SIGUSR1, &sa, NULL), 0);
}

/* ---- tests ---------------------------------------------------------------------------- */

START_TEST(without_an_observer_calls_go_through_unchanged)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER, ec;
    pthread_mutexattr_t attr;
    int fds[2], fl[2];
    struct pollfd p;
    struct rlimit rl;
    waiter w;
    char c = 'x';

    install();
    catch_usr1();

    /* Locks: free, contended, and an error the real call reports. */
    ck_assert_int_eq(lib_lock(&m), 0);
    memset(&w, 0, sizeof(w));
    w.m = &m;
    start_waiter(&w, lock_main);
    await_sleeping(atomic_load(&w.tid));
    ck_assert_int_eq(atomic_load(&w.done), 0);
    pthread_mutex_unlock(&m);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.err, 4242);
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&ec, &attr);
    ck_assert_int_eq(lib_lock(&ec), 0);
    ck_assert_int_eq(lib_lock(&ec), EDEADLK);
    pthread_mutex_unlock(&ec);

    /* Polls: ready, timed out, a bad descriptor, bad arguments, interrupted. */
    ck_assert_int_eq(pipe(fds), 0);
    ck_assert_int_eq(write(fds[1], &c, 1), 1);
    p.fd = fds[0];
    p.events = POLLIN;
    errno = 4242;
    ck_assert_int_eq(lib_poll(&p, 1, -1), 1);
    ck_assert_int_eq(p.revents, POLLIN);
    ck_assert_int_eq(errno, 4242);
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    ck_assert_int_eq(lib_poll(&p, 1, 20), 0);
    ck_assert_int_eq(p.revents, 0);
    ck_assert_int_eq(pipe(fl), 0);
    close(fl[0]);
    close(fl[1]);
    p.fd = fl[0];
    ck_assert_int_eq(lib_poll(&p, 1, 1000), 1);
    ck_assert_int_eq(p.revents, POLLNVAL);
    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (1u << 24)) {
        /* The kernel refuses more fds than RLIMIT_NOFILE before it reads any; the array
         * is whole all the same, as the call's contract wants (ASan's poll reads it). */
        struct pollfd *many = calloc((size_t)rl.rlim_cur + 1, sizeof(*many));
        nfds_t k;
        ck_assert_ptr_nonnull(many);
        for (k = 0; k <= (nfds_t)rl.rlim_cur; k++) {
            many[k].fd = -1;
        }
        errno = 0;
        ck_assert_int_eq(lib_poll(many, (nfds_t)rl.rlim_cur + 1, 1000), -1);
        ck_assert_int_eq(errno, EINVAL);
        free(many);
    }

    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = -1;
    start_waiter(&w, poll_main);
    await_sleeping(atomic_load(&w.tid));
    ck_assert_int_eq(pthread_kill(w.th, SIGUSR1), 0);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, -1);
    ck_assert_int_eq(w.err, EINTR);

    /* Nothing was reported: there was no one to report to. */
    ck_assert_int_eq(count_events(), 0);

    /* The same calls are the hooked ones: with an observer, a contended lock is seen. */
    pp_wait_observe(observer);
    ck_assert_int_eq(lib_lock(&m), 0);
    memset(&w, 0, sizeof(w));
    w.m = &m;
    start_waiter(&w, lock_main);
    await_event(atomic_load(&w.tid), PP_WAIT_LOCK);
    pthread_mutex_unlock(&m);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_str_eq(sequence(atomic_load(&w.tid)), "aLD");
    pp_wait_observe(NULL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(a_contended_lock_is_reported_with_the_waiters_stack)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    waiter w;
    const event *ask, *lk, *done;
    int64_t release_ts;
    uint32_t tid;
    namer nm;

    install();
    pp_wait_observe(observer);
    ck_assert_int_eq(pthread_mutex_lock(&m), 0);
    memset(&w, 0, sizeof(w));
    w.m = &m;
    tid = start_waiter(&w, lock_main);
    /* Reported before the wait: the holder lets go only once it was. */
    lk = await_event(tid, PP_WAIT_LOCK);
    sleep_ms(5);
    ck_assert_int_eq(atomic_load(&w.done), 0);
    release_ts = mono_ns();
    pthread_mutex_unlock(&m);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 0);

    ck_assert_str_eq(sequence(tid), "aLD");
    ask = find_event(tid, PP_WAIT_LOCK | PP_WAIT_ASK);
    done = find_event(tid, PP_WAIT_DONE);
    /* Asked without a stack; the stack only once wanted. */
    ck_assert_int_eq(ask->npcs, 0);
    /* Its time: from before the holder let go to after, the 5 ms held included. */
    ck_assert_int_le(ask->ts, lk->ts);
    ck_assert_int_le(lk->ts, release_ts);
    ck_assert_int_ge(done->ts, release_ts);
    ck_assert_int_le(done->ts, w.end_ts);
    ck_assert_int_ge(done->ts - lk->ts, 5 * MS);
    ck_assert_int_eq(done->npcs, 0);
    /* Where it waits: the caller of pthread_mutex_lock first, no frame of the hook's. */
    namer_init(&nm);
    assert_stack(&nm, lk, "ppw_mutex_lock", "wait_for_lock");
    assert_stack(&nm, lk, "ppw_mutex_lock", "lock_main");
    namer_free(&nm);
    /* Nothing else was reported, from any thread. */
    ck_assert_int_eq(count_events(), 3);
    pp_wait_observe(NULL);
}
END_TEST

START_TEST(a_blocking_poll_is_reported_with_the_waiters_stack)
{
    waiter w;
    const event *net, *done;
    int64_t write_ts;
    int fds[2];
    uint32_t tid;
    char c = 'x';
    namer nm;

    install();
    pp_wait_observe(observer);
    ck_assert_int_eq(pipe(fds), 0);

    /* Until data comes. */
    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = -1;
    tid = start_waiter(&w, poll_main);
    net = await_event(tid, PP_WAIT_NET);
    write_ts = mono_ns();
    ck_assert_int_eq(write(fds[1], &c, 1), 1);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 1);
    ck_assert_int_eq(w.revents, POLLIN);
    ck_assert_int_eq(w.err, 4242);
    ck_assert_str_eq(sequence(tid), "nND");
    done = find_event(tid, PP_WAIT_DONE);
    ck_assert_int_le(net->ts, write_ts);
    ck_assert_int_ge(done->ts, write_ts);
    namer_init(&nm);
    assert_stack(&nm, net, "ppw_poll", "wait_for_data");
    ck_assert_int_eq(read(fds[0], &c, 1), 1);

    /* Until its timeout, which the kernel never cuts short. */
    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = 30;
    tid = start_waiter(&w, poll_main);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_str_eq(sequence(tid), "nND");
    net = find_event(tid, PP_WAIT_NET);
    done = find_event(tid, PP_WAIT_DONE);
    ck_assert_int_ge(done->ts - net->ts, 30 * MS);
    assert_stack(&nm, net, "ppw_poll", "poll_main");
    namer_free(&nm);
    pp_wait_observe(NULL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(free_locks_and_zero_timeout_polls_are_not_reported)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER, rec, ec;
    pthread_mutexattr_t attr;
    struct pollfd p;
    int fds[2], i;

    install();
    pp_wait_observe(observer);
    ck_assert_int_eq(pipe(fds), 0);
    for (i = 0; i < 100; i++) {
        ck_assert_int_eq(lib_lock(&m), 0);
        pthread_mutex_unlock(&m);
    }
    /* A recursive mutex this thread holds is free to it. */
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_RECURSIVE);
    pthread_mutex_init(&rec, &attr);
    ck_assert_int_eq(lib_lock(&rec), 0);
    ck_assert_int_eq(lib_lock(&rec), 0);
    pthread_mutex_unlock(&rec);
    pthread_mutex_unlock(&rec);
    p.fd = fds[0];
    p.events = POLLIN;
    for (i = 0; i < 100; i++) {
        ck_assert_int_eq(lib_poll(&p, 1, 0), 0);
    }
    ck_assert_int_eq(count_events(), 0);

    /* As the header says: an error-checking mutex this thread already holds looks busy,
     * so it is reported as a wait, and the real call then fails at once. */
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&ec, &attr);
    ck_assert_int_eq(lib_lock(&ec), 0);
    ck_assert_int_eq(lib_lock(&ec), EDEADLK);
    ck_assert_str_eq(sequence(my_tid()), "aLD");
    pthread_mutex_unlock(&ec);
    pp_wait_observe(NULL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(an_observer_that_declines_gets_no_stack_and_no_end)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    waiter w;
    int fds[2];
    uint32_t tid;
    char c = 'x';

    install();
    atomic_store(&answer, 0);
    pp_wait_observe(observer);
    ck_assert_int_eq(pthread_mutex_lock(&m), 0);
    memset(&w, 0, sizeof(w));
    w.m = &m;
    tid = start_waiter(&w, lock_main);
    await_event(tid, PP_WAIT_LOCK | PP_WAIT_ASK);
    await_sleeping(tid);
    pthread_mutex_unlock(&m);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_str_eq(sequence(tid), "a");

    ck_assert_int_eq(pipe(fds), 0);
    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = -1;
    tid = start_waiter(&w, poll_main);
    await_event(tid, PP_WAIT_NET | PP_WAIT_ASK);
    ck_assert_int_eq(write(fds[1], &c, 1), 1);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 1);
    ck_assert_str_eq(sequence(tid), "n");
    pp_wait_observe(NULL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

START_TEST(observed_waits_leave_errno_as_the_real_calls_do)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER, ec;
    pthread_mutexattr_t attr;
    struct pollfd p;
    struct rlimit rl;
    waiter w;
    int fds[2];
    uint32_t tid;
    char c = 'x';

    install();
    catch_usr1();
    /* The observer leaves errno changed, as one that logs or writes may. */
    atomic_store(&clobber_errno, 1);
    pp_wait_observe(observer);
    ck_assert_int_eq(pipe(fds), 0);

    /* A contended lock: pthread_mutex_lock returns its error, errno is untouched. */
    ck_assert_int_eq(pthread_mutex_lock(&m), 0);
    memset(&w, 0, sizeof(w));
    w.m = &m;
    tid = start_waiter(&w, lock_main);
    await_event(tid, PP_WAIT_LOCK);
    pthread_mutex_unlock(&m);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(w.err, 4242);
    ck_assert_str_eq(sequence(tid), "aLD");
    /* The same when the lock fails, and when the observer declines. */
    pthread_mutexattr_init(&attr);
    pthread_mutexattr_settype(&attr, PTHREAD_MUTEX_ERRORCHECK);
    pthread_mutex_init(&ec, &attr);
    ck_assert_int_eq(lib_lock(&ec), 0);
    errno = 4242;
    ck_assert_int_eq(lib_lock(&ec), EDEADLK);
    ck_assert_int_eq(errno, 4242);
    atomic_store(&answer, 0);
    errno = 4242;
    ck_assert_int_eq(lib_lock(&ec), EDEADLK);
    ck_assert_int_eq(errno, 4242);
    atomic_store(&answer, 1);
    pthread_mutex_unlock(&ec);

    /* A poll that succeeds leaves errno alone; one that fails sets its own. */
    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = -1;
    tid = start_waiter(&w, poll_main);
    await_event(tid, PP_WAIT_NET);
    ck_assert_int_eq(write(fds[1], &c, 1), 1);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, 1);
    ck_assert_int_eq(w.err, 4242);
    ck_assert_int_eq(read(fds[0], &c, 1), 1);
    p.fd = fds[0];
    p.events = POLLIN;
    errno = 4242;
    ck_assert_int_eq(lib_poll(&p, 1, 20), 0);
    ck_assert_int_eq(errno, 4242);

    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = -1;
    tid = start_waiter(&w, poll_main);
    await_event(tid, PP_WAIT_NET);
    await_sleeping(tid);
    ck_assert_int_eq(pthread_kill(w.th, SIGUSR1), 0);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(w.rc, -1);
    ck_assert_int_eq(w.err, EINTR);
    ck_assert_str_eq(sequence(tid), "nND");

    ck_assert_int_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (1u << 24)) {
        /* The kernel refuses more fds than RLIMIT_NOFILE before it reads any; the array
         * is whole all the same, as the call's contract wants (ASan's poll reads it). */
        struct pollfd *many = calloc((size_t)rl.rlim_cur + 1, sizeof(*many));
        nfds_t k;
        ck_assert_ptr_nonnull(many);
        for (k = 0; k <= (nfds_t)rl.rlim_cur; k++) {
            many[k].fd = -1;
        }
        errno = 0;
        ck_assert_int_eq(lib_poll(many, (nfds_t)rl.rlim_cur + 1, 1000), -1);
        ck_assert_int_eq(errno, EINVAL);
        free(many);
    }
    pp_wait_observe(NULL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* pthread_mutex_lock is no cancellation point, poll is one: observing must change
 * neither, and a wait that ends by cancellation still ends for the observer. */
START_TEST(cancellation_acts_where_the_real_calls_let_it)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    waiter w;
    int fds[2], round;
    uint32_t tid;
    void *ret;

    install();
    pp_wait_observe(observer);
    /* A contended lock taken with a cancellation pending: taken, and the thread goes
     * on (to its end here, which is no cancellation point either). Several rounds: the
     * unwinder's own cancellation points (reads that check memory) are not taken on
     * every unwind. */
    for (round = 0; round < 3; round++) {
        ck_assert_int_eq(pthread_mutex_lock(&m), 0);
        memset(&w, 0, sizeof(w));
        w.m = &m;
        w.cancel_pending = 1;
        tid = start_waiter(&w, lock_main);
        await_event(tid, PP_WAIT_LOCK);
        pthread_mutex_unlock(&m);
        ck_assert_int_eq(pthread_join(w.th, &ret), 0);
        ck_assert_ptr_null(ret);
        ck_assert_int_eq(atomic_load(&w.done), 1);
        ck_assert_int_eq(w.rc, 0);
        ck_assert_str_eq(sequence(tid), "aLD");
    }

    /* A thread cancelled in a blocking poll: cancelled, and its wait reported over. */
    ck_assert_int_eq(pipe(fds), 0);
    memset(&w, 0, sizeof(w));
    w.fd = fds[0];
    w.timeout = -1;
    tid = start_waiter(&w, poll_main);
    await_event(tid, PP_WAIT_NET);
    await_sleeping(tid);
    ck_assert_int_eq(pthread_cancel(w.th), 0);
    ck_assert_int_eq(pthread_join(w.th, &ret), 0);
    ck_assert_ptr_eq(ret, PTHREAD_CANCELED);
    ck_assert_int_eq(atomic_load(&w.done), 0);
    ck_assert_str_eq(sequence(tid), "nND");
    pp_wait_observe(NULL);
    close(fds[0]);
    close(fds[1]);
}
END_TEST

/* Inside the observer: a lock that another thread holds until this one sleeps on it, and
 * a poll that may block. Both would be reported again, from inside, without the guard. */
static pthread_mutex_t inner = PTHREAD_MUTEX_INITIALIZER;
static int inner_fds[2];
static _Atomic uint32_t inner_waiter;
static _Atomic int inner_done;

static void inside_observer(void)
{
    struct pollfd p = { inner_fds[0], POLLIN, 0 };

    atomic_store(&inner_waiter, my_tid());
    ck_assert_int_eq(lib_lock(&inner), 0);
    pthread_mutex_unlock(&inner);
    ck_assert_int_eq(lib_poll(&p, 1, 1000), 1);
    atomic_fetch_add(&inner_done, 1);
}

static void *inner_holder(void *arg)
{
    int64_t deadline = mono_ns() + 20000 * MS;
    uint32_t tid;

    (void)arg;
    while (!(tid = atomic_load(&inner_waiter))) {
        if (mono_ns() > deadline) {
            break;
        }
        sleep_ms(1);
    }
    /* Contended for sure: let go only once the observer's thread sleeps on it. */
    while (tid && pp_tasks_state(NULL, tid) != 'S' && mono_ns() < deadline) {
        sleep_ms(1);
    }
    pthread_mutex_unlock(&inner);
    return NULL;
}

static void *inner_lock_holder(void *arg)
{
    ck_assert_int_eq(pthread_mutex_lock(&inner), 0);
    return inner_holder(arg);
}

START_TEST(the_observer_is_not_reentered_by_its_own_waits)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_t holder;
    waiter w;
    uint32_t tid;
    char c = 'x';

    install();
    ck_assert_int_eq(pipe(inner_fds), 0);
    ck_assert_int_eq(write(inner_fds[1], &c, 1), 1);
    ck_assert_int_eq(pthread_create(&holder, NULL, inner_lock_holder, NULL), 0);
    /* The holder has the inner lock before anything is observed. */
    while (pthread_mutex_trylock(&inner) == 0) {
        pthread_mutex_unlock(&inner);
        sleep_ms(1);
    }
    atomic_store(&inside, inside_observer);
    pp_wait_observe(observer);

    ck_assert_int_eq(pthread_mutex_lock(&m), 0);
    memset(&w, 0, sizeof(w));
    w.m = &m;
    tid = start_waiter(&w, lock_main);
    await_event(tid, PP_WAIT_LOCK);
    pthread_mutex_unlock(&m);
    ck_assert_int_eq(pthread_join(w.th, NULL), 0);
    ck_assert_int_eq(pthread_join(holder, NULL), 0);
    ck_assert_int_eq(w.rc, 0);
    ck_assert_int_eq(atomic_load(&inner_done), 1);
    /* One wait, reported once; the observer never ran inside itself. */
    ck_assert_str_eq(sequence(tid), "aLD");
    ck_assert_int_eq(atomic_load(&max_depth), 1);
    pp_wait_observe(NULL);
}
END_TEST

/* ---- contention charged to the unlocker; cond, rwlock and sem waits --------------------- */

static _Atomic int ncharges;
static _Atomic uint64_t charged;
static uint64_t charge_pcs[PP_WAIT_DEPTH];
static _Atomic int charge_npcs;

static void contended(uint64_t delay, const uint64_t *pcs, int npcs)
{
    if (atomic_fetch_add(&ncharges, 1) == 0 && pcs && npcs > 0) {
        int n = npcs > PP_WAIT_DEPTH ? PP_WAIT_DEPTH : npcs;
        memcpy(charge_pcs, pcs, (size_t)n * sizeof(*pcs));
        atomic_store(&charge_npcs, n);
    }
    atomic_fetch_add(&charged, delay);
}

START_TEST(contention_is_charged_to_the_unlocker_with_the_waiting_it_caused)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    waiter w1, w2;
    int64_t t_start, t_held, t_unlock, t_end;
    namer nm;

    install();
    ck_assert_int_ge(pp_wait_install_unlock(), 1);
    pp_wait_contention(contended, 1);
    ck_assert_int_eq(lib_lock(&m), 0);             /* free: taken at once, not charged */
    t_start = mono_ns();
    memset(&w1, 0, sizeof(w1));
    memset(&w2, 0, sizeof(w2));
    w1.m = w2.m = &m;
    await_sleeping(start_waiter(&w1, lock_main));
    await_sleeping(start_waiter(&w2, lock_main));
    t_held = mono_ns();
    sleep_ms(20);
    t_unlock = mono_ns();
    ck_assert_int_eq(lib_unlock(&m), 0);           /* charged: two waiters */
    t_end = mono_ns();
    ck_assert_int_eq(pthread_join(w1.th, NULL), 0);
    ck_assert_int_eq(pthread_join(w2.th, NULL), 0);
    /* The waiters unlock from this executable, never hooked: one charge only. */
    ck_assert_int_eq(atomic_load(&ncharges), 1);
    /* Each waiter waited from before t_held until the charge, which reads its clock after
     * t_unlock: a bound with no tolerance, at least 2 x 20 ms. What the unlock does after
     * that read (the unwind, a preemption under load) is not waiting and not charged. */
    ck_assert_int_ge((int64_t)atomic_load(&charged), 2 * (t_unlock - t_held));
    ck_assert_int_le((int64_t)atomic_load(&charged), 2 * (t_end - t_start));
    namer_init(&nm);
    ck_assert_int_gt(atomic_load(&charge_npcs), 0);
    ck_assert_str_eq(caller_at(&nm, charge_pcs[0]), "ppw_mutex_unlock");
    namer_free(&nm);

    /* Off: the same contention is not charged, and nothing is left registered. */
    pp_wait_contention(NULL, 0);
    ck_assert_int_eq(lib_lock(&m), 0);
    memset(&w1, 0, sizeof(w1));
    w1.m = &m;
    await_sleeping(start_waiter(&w1, lock_main));
    ck_assert_int_eq(lib_unlock(&m), 0);
    ck_assert_int_eq(pthread_join(w1.th, NULL), 0);
    ck_assert_int_eq(atomic_load(&ncharges), 1);
    ck_assert_int_eq(pp_wait_untracked(), 0);
}
END_TEST

static sem_t sem;
static _Atomic uint32_t sem_tid;

static void *sem_main(void *arg)
{
    (void)arg;
    atomic_store(&sem_tid, my_tid());
    lib_sem_wait(&sem);
    return NULL;
}

START_TEST(cond_and_sem_waits_are_reported_as_sync_waits)
{
    pthread_mutex_t m = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t c = PTHREAD_COND_INITIALIZER;
    struct timespec until;
    pthread_t th;
    const event *sy, *done;
    int64_t t_before;
    uint32_t tid;
    namer nm;

    install();
    ck_assert_int_ge(pp_wait_install_sync(), 2);
    pp_wait_observe(observer);
    /* A cond wait is always a wait: 10 ms of it, nobody signalling. */
    pthread_mutex_lock(&m);
    t_before = mono_ns();
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_nsec += 10 * MS;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    ck_assert_int_eq(lib_cond_timedwait(&c, &m, &until), ETIMEDOUT);
    pthread_mutex_unlock(&m);
    ck_assert_str_eq(sequence(my_tid()), "sSD");
    sy = find_event(my_tid(), PP_WAIT_SYNC);
    done = find_event(my_tid(), PP_WAIT_DONE);
    /* Its end is reported after the 10 ms the deadline allowed, which count from the
     * clock read before it was set (1 ms for CLOCK_REALTIME against CLOCK_MONOTONIC),
     * not from the report of its start: that comes after the stack was taken, which a
     * loaded machine may stretch over more than a millisecond. */
    ck_assert_int_ge(sy->ts, t_before);
    ck_assert_int_ge(done->ts - t_before, 9 * MS);
    namer_init(&nm);
    ck_assert_int_gt(sy->npcs, 0);
    ck_assert_str_eq(caller_at(&nm, sy->pcs[0]), "ppw_cond_timedwait");

    /* A sem_wait at 0 waits until posted; one with a count does not wait. */
    sem_init(&sem, 0, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, sem_main, NULL), 0);
    while (!(tid = atomic_load(&sem_tid))) {
        sleep_ms(1);
    }
    await_sleeping(tid);
    sem_post(&sem);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    ck_assert_str_eq(sequence(tid), "sSD");
    sy = find_event(tid, PP_WAIT_SYNC);
    ck_assert_str_eq(caller_at(&nm, sy->pcs[0]), "ppw_sem_wait");
    sem_post(&sem);
    ck_assert_int_eq(lib_sem_wait(&sem), 0);
    ck_assert_str_eq(sequence(my_tid()), "sSD");   /* nothing more for this thread */
    namer_free(&nm);
    pp_wait_observe(NULL);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_wait");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, without_an_observer_calls_go_through_unchanged);
    tcase_add_test(tc, a_contended_lock_is_reported_with_the_waiters_stack);
    tcase_add_test(tc, a_blocking_poll_is_reported_with_the_waiters_stack);
    tcase_add_test(tc, free_locks_and_zero_timeout_polls_are_not_reported);
    tcase_add_test(tc, an_observer_that_declines_gets_no_stack_and_no_end);
    tcase_add_test(tc, the_observer_is_not_reentered_by_its_own_waits);
    tcase_add_test(tc, observed_waits_leave_errno_as_the_real_calls_do);
    tcase_add_test(tc, cancellation_acts_where_the_real_calls_let_it);
    tcase_add_test(tc, contention_is_charged_to_the_unlocker_with_the_waiting_it_caused);
    tcase_add_test(tc, cond_and_sem_waits_are_reported_as_sync_waits);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
