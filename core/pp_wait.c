#include "pp_wait.h"
#include "pp_got.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <semaphore.h>
#include <time.h>

static pp_wait_fn observer;
static pp_contend_fn contender;
static unsigned contend_fraction;
/* observer or contender set: the one word the lock hook reads first */
static int active;
static uintptr_t self_lo, self_hi;
/* Set while this thread reports a wait: the unwinder and the observer may take locks of
 * their own (libunwind's caches), which must go straight to the real call, else a held
 * one would recurse without end. */
static __thread int tls_busy __attribute__((tls_model("initial-exec")));

static int (*const real_lock)(pthread_mutex_t *) = pthread_mutex_lock;
static int (*const real_unlock)(pthread_mutex_t *) = pthread_mutex_unlock;
static int (*const real_cond_wait)(pthread_cond_t *, pthread_mutex_t *) = pthread_cond_wait;
static int (*const real_cond_timedwait)(pthread_cond_t *, pthread_mutex_t *,
                                        const struct timespec *) = pthread_cond_timedwait;
static int (*const real_rdlock)(pthread_rwlock_t *) = pthread_rwlock_rdlock;
static int (*const real_wrlock)(pthread_rwlock_t *) = pthread_rwlock_wrlock;
static int (*const real_sem_wait)(sem_t *) = sem_wait;
static int (*const real_sem_timedwait)(sem_t *, const struct timespec *) = sem_timedwait;

/* === Contention: waiters per mutex ====================================================== */

#define SLOTS 512

typedef struct {
    int spin;
    uintptr_t addr;             /* 0: free */
    uint32_t n;                 /* waiters registered */
    uint64_t sum;               /* sum of max(start, last) over them */
    uint64_t last;              /* the last unlock that charged them */
} waiters;

static waiters slots[SLOTS];
static int nwaiting;            /* waiters registered anywhere */
static uint64_t untracked;

static uint64_t now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static waiters *slot_of(const void *m)
{
    uintptr_t a = (uintptr_t)m;

    return &slots[((a >> 3) ^ (a >> 12)) % SLOTS];
}

static void spin_lock(int *f)
{
    while (__atomic_exchange_n(f, 1, __ATOMIC_ACQUIRE)) {
        while (__atomic_load_n(f, __ATOMIC_RELAXED)) {
            __builtin_ia32_pause();
        }
    }
}

static void spin_unlock(int *f)
{
    __atomic_store_n(f, 0, __ATOMIC_RELEASE);
}

/* A waiter arrives: 1 if registered (then it must leave). Its start is counted from the
 * last charge at the earliest (an unlock that charged before it registered). */
static int waiter_arrive(const void *m, uint64_t *start)
{
    waiters *w = slot_of(m);
    int ok = 0;

    spin_lock(&w->spin);
    if (w->addr == 0 || w->addr == (uintptr_t)m) {
        if (w->addr == 0) {
            w->addr = (uintptr_t)m;
            w->n = 0;
            w->sum = 0;
            w->last = 0;
        }
        if (*start < w->last) {
            *start = w->last;
        }
        w->n++;
        w->sum += *start;
        ok = 1;
        __atomic_add_fetch(&nwaiting, 1, __ATOMIC_RELAXED);
    }
    spin_unlock(&w->spin);
    if (!ok) {
        __atomic_add_fetch(&untracked, 1, __ATOMIC_RELAXED);
    }
    return ok;
}

static void waiter_leave(const void *m, uint64_t start)
{
    waiters *w = slot_of(m);

    spin_lock(&w->spin);
    start = start > w->last ? start : w->last;
    w->sum = w->sum > start ? w->sum - start : 0;
    if (--w->n == 0) {
        w->addr = 0;
    }
    __atomic_sub_fetch(&nwaiting, 1, __ATOMIC_RELAXED);
    spin_unlock(&w->spin);
}

/* The unlocker charges the waiters of m: the delay, or 0. */
static uint64_t charge(const void *m)
{
    waiters *w = slot_of(m);
    uint64_t delay = 0, t;

    if (__atomic_load_n(&w->addr, __ATOMIC_RELAXED) != (uintptr_t)m) {
        return 0;
    }
    spin_lock(&w->spin);
    /* Read under the flag: every registered start is earlier (taken before its owner
     * held the flag), so the charge is never negative. */
    t = now_ns();
    if (w->addr == (uintptr_t)m && w->n) {
        delay = (uint64_t)w->n * t > w->sum ? (uint64_t)w->n * t - w->sum : 0;
        w->sum = (uint64_t)w->n * t;
        w->last = t;
    }
    spin_unlock(&w->spin);
    return delay;
}

static __thread uint32_t tls_rand __attribute__((tls_model("initial-exec")));

static int sampled(unsigned fraction)
{
    uint32_t x = tls_rand;

    if (fraction <= 1) {
        return 1;
    }
    if (x == 0) {
        x = (uint32_t)(uintptr_t)&x ^ (uint32_t)now_ns() ^ 0x9e3779b9u;
    }
    x ^= x << 13;
    x ^= x >> 17;
    x ^= x << 5;
    tls_rand = x;
    return x % fraction == 0;
}
static int (*const real_poll)(struct pollfd *, nfds_t, int) = poll;

/* Where the caller waits: return addresses without our own frames. */
static int waiting_stack(uint64_t *pcs)
{
    unw_context_t uc;
    unw_cursor_t cur;
    int n = 0;

    if (unw_getcontext(&uc) != 0 || unw_init_local(&cur, &uc) != 0) {
        return 0;
    }
    while (n < PP_WAIT_DEPTH && unw_step(&cur) > 0) {
        unw_word_t ip;
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0) {
            break;
        }
        if (n == 0 && ip >= self_lo && ip < self_hi) {
            continue;
        }
        pcs[n++] = ip;
    }
    return n;
}

/* Report a wait (if the observer wants it): 1 if reported. errno is left as it was: the
 * unwinder and the observer may change it (libunwind's memory checks do), the real calls
 * do not when they succeed. Cancellation is held off meanwhile: those checks read(), a
 * cancellation point, and pthread_mutex_lock is none; a thread cancelled in here would
 * leave its wait half reported. */
static int report(pp_wait_fn fn, int kind)
{
    uint64_t pcs[PP_WAIT_DEPTH];
    int n, wanted = 1, saved_errno = errno, cancel_state;

    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    tls_busy = 1;
    if (kind != PP_WAIT_DONE && !(wanted = fn(kind | PP_WAIT_ASK, NULL, 0))) {
        tls_busy = 0;
        pthread_setcancelstate(cancel_state, NULL);
        errno = saved_errno;
        return 0;
    }
    n = kind == PP_WAIT_DONE ? 0 : waiting_stack(pcs);
    fn(kind, n ? pcs : NULL, n);
    tls_busy = 0;
    pthread_setcancelstate(cancel_state, NULL);
    errno = saved_errno;
    return wanted;
}

/* poll is a cancellation point: a thread cancelled in it still ends its wait. */
typedef struct {
    pp_wait_fn fn;
} reported_wait;

static void end_on_cancel(void *arg)
{
    report(((reported_wait *)arg)->fn, PP_WAIT_DONE);
}

/* The lock was busy (rc from the try): register, report, wait. */
static __attribute__((noinline)) int lock_busy(pthread_mutex_t *m)
{
    pp_wait_fn fn;
    int rc, reported, registered = 0;
    uint64_t start = 0;

    if (__atomic_load_n(&contender, __ATOMIC_ACQUIRE)) {
        start = now_ns();
        registered = waiter_arrive(m, &start);
    }
    fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    reported = fn && report(fn, PP_WAIT_LOCK);
    rc = real_lock(m);
    if (registered) {
        waiter_leave(m, start);
    }
    if (reported) {
        report(fn, PP_WAIT_DONE);
    }
    return rc;
}

/* This thread's id, as glibc keeps it in a mutex's owner field (0: not read yet; a forked
 * child's thread starts again). */
static __thread pid_t tls_tid __attribute__((tls_model("initial-exec")));

static void forget_tid(void)
{
    tls_tid = 0;
}

/* pthread_mutex_trylock costs about 6 ns more than pthread_mutex_lock's fast path
 * (glibc 2.36); for a plain mutex (__kind 0: PTHREAD_MUTEX_TIMED_NP, not robust, not
 * priority-inheriting, no elision) we take it as glibc's own fast path does, on the
 * public, ABI-stable layout of struct __pthread_mutex_s: the lock word from 0 to 1 (1:
 * locked, no waiter), then __owner and __nusers as glibc sets them, which its
 * pthread_mutex_unlock undoes. Other mutexes go through pthread_mutex_trylock. */
static inline int try_lock(pthread_mutex_t *m)
{
    int zero = 0;

    if (__builtin_expect(m->__data.__kind != 0, 0)) {
        return pthread_mutex_trylock(m);
    }
    if (!__atomic_compare_exchange_n(&m->__data.__lock, &zero, 1, 0, __ATOMIC_ACQUIRE,
                                     __ATOMIC_RELAXED)) {
        return EBUSY;
    }
    if (__builtin_expect(tls_tid == 0, 0)) {
        tls_tid = (pid_t)syscall(SYS_gettid);
    }
    m->__data.__owner = tls_tid;
    ++m->__data.__nusers;
    return 0;
}

static int hook_lock(pthread_mutex_t *m)
{
    int rc;

    if (__builtin_expect(!__atomic_load_n(&active, __ATOMIC_RELAXED), 1) || tls_busy) {
        return real_lock(m);
    }
    rc = try_lock(m);
    if (__builtin_expect(rc == 0, 1)) {
        return 0;
    }
    if (rc != EBUSY) {
        /* Taken (EOWNERDEAD for a robust mutex), or an error the real call reports the
         * same way (EINVAL). An error-checking mutex this thread already holds gives
         * EBUSY here: it is reported as a wait, and the real call then fails at once. */
        return rc == EOWNERDEAD ? rc : real_lock(m);
    }
    return lock_busy(m);
}

/* An unlock while some thread waits somewhere: charge m's waiters, maybe report. */
static __attribute__((noinline)) void unlock_charge(pthread_mutex_t *m, pp_contend_fn fn)
{
    uint64_t delay = charge(m);

    if (delay && sampled(contend_fraction)) {
        uint64_t pcs[PP_WAIT_DEPTH];
        int n, saved_errno = errno, cancel_state;

        pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
        tls_busy = 1;
        n = waiting_stack(pcs);
        fn(delay, n ? pcs : NULL, n);
        tls_busy = 0;
        pthread_setcancelstate(cancel_state, NULL);
        errno = saved_errno;
    }
}

static int hook_unlock(pthread_mutex_t *m)
{
    pp_contend_fn fn = __atomic_load_n(&contender, __ATOMIC_RELAXED);

    if (__builtin_expect(fn != NULL, 0) && __atomic_load_n(&nwaiting, __ATOMIC_RELAXED) &&
        !tls_busy) {
        unlock_charge(m, fn);
    }
    return real_unlock(m);
}

static int hook_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    pp_wait_fn fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    int rc;

    if (__builtin_expect(fn == NULL, 1) || timeout == 0 || tls_busy) {
        return real_poll(fds, nfds, timeout);
    }
    if (!report(fn, PP_WAIT_NET)) {
        return real_poll(fds, nfds, timeout);
    }
    {
        reported_wait w = { fn };
        pthread_cleanup_push(end_on_cancel, &w);
        rc = real_poll(fds, nfds, timeout);
        pthread_cleanup_pop(0);
    }
    report(fn, PP_WAIT_DONE);
    return rc;
}

/* libunwind's own locks are never observed: a wait reported from inside it would unwind
 * again while it holds its lock (and, in a dl_iterate_phdr callback, the loader's): two
 * threads doing so deadlocked an Apache child (found by the soak). */
static const void *const unwinder_keep_in[] = { (const void *)unw_step, NULL };

static const pp_got_hook hooks[] = {
    { "pthread_mutex_lock", (void *)hook_lock, unwinder_keep_in },
    { "poll", (void *)hook_poll, unwinder_keep_in },
};

/* The observer, if it wants this synchronization wait reported (NULL: call the real one
 * alone). */
static pp_wait_fn sync_fn(void)
{
    pp_wait_fn fn;

    if (__builtin_expect(!__atomic_load_n(&active, __ATOMIC_RELAXED), 1) || tls_busy) {
        return NULL;
    }
    fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    return fn && report(fn, PP_WAIT_SYNC) ? fn : NULL;
}

static int hook_cond_wait(pthread_cond_t *c, pthread_mutex_t *m)
{
    pp_wait_fn fn = sync_fn();
    int rc;

    if (!fn) {
        return real_cond_wait(c, m);
    }
    {
        reported_wait w = { fn };
        pthread_cleanup_push(end_on_cancel, &w);
        rc = real_cond_wait(c, m);
        pthread_cleanup_pop(0);
    }
    report(fn, PP_WAIT_DONE);
    return rc;
}

static int hook_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                               const struct timespec *until)
{
    pp_wait_fn fn = sync_fn();
    int rc;

    if (!fn) {
        return real_cond_timedwait(c, m, until);
    }
    {
        reported_wait w = { fn };
        pthread_cleanup_push(end_on_cancel, &w);
        rc = real_cond_timedwait(c, m, until);
        pthread_cleanup_pop(0);
    }
    report(fn, PP_WAIT_DONE);
    return rc;
}

static int rwlock_wait(pthread_rwlock_t *l, int (*try)(pthread_rwlock_t *),
                       int (*real)(pthread_rwlock_t *))
{
    pp_wait_fn fn;
    int rc;

    if (__builtin_expect(!__atomic_load_n(&active, __ATOMIC_RELAXED), 1) || tls_busy) {
        return real(l);
    }
    rc = try(l);
    if (rc != EBUSY) {
        return rc == 0 ? 0 : real(l);
    }
    fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    if (!fn || !report(fn, PP_WAIT_SYNC)) {
        return real(l);
    }
    rc = real(l);
    report(fn, PP_WAIT_DONE);
    return rc;
}

static int hook_rdlock(pthread_rwlock_t *l)
{
    return rwlock_wait(l, pthread_rwlock_tryrdlock, real_rdlock);
}

static int hook_wrlock(pthread_rwlock_t *l)
{
    return rwlock_wait(l, pthread_rwlock_trywrlock, real_wrlock);
}

/* sem_wait and sem_timedwait: a try first (errno kept as it was when it fails). */
static int sem_common(sem_t *sem, const struct timespec *until)
{
    pp_wait_fn fn;
    int rc, saved_errno;

    if (__builtin_expect(!__atomic_load_n(&active, __ATOMIC_RELAXED), 1) || tls_busy) {
        return until ? real_sem_timedwait(sem, until) : real_sem_wait(sem);
    }
    saved_errno = errno;
    if (sem_trywait(sem) == 0) {
        return 0;
    }
    errno = saved_errno;
    fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    if (!fn || !report(fn, PP_WAIT_SYNC)) {
        return until ? real_sem_timedwait(sem, until) : real_sem_wait(sem);
    }
    {
        reported_wait w = { fn };
        pthread_cleanup_push(end_on_cancel, &w);
        rc = until ? real_sem_timedwait(sem, until) : real_sem_wait(sem);
        pthread_cleanup_pop(0);
    }
    saved_errno = errno;
    report(fn, PP_WAIT_DONE);
    errno = saved_errno;
    return rc;
}

static int hook_sem_wait(sem_t *sem)
{
    return sem_common(sem, NULL);
}

static int hook_sem_timedwait(sem_t *sem, const struct timespec *until)
{
    return sem_common(sem, until);
}

static const pp_got_hook sync_hooks[] = {
    { "pthread_cond_wait", (void *)hook_cond_wait, unwinder_keep_in },
    { "pthread_cond_timedwait", (void *)hook_cond_timedwait, unwinder_keep_in },
    { "pthread_rwlock_rdlock", (void *)hook_rdlock, unwinder_keep_in },
    { "pthread_rwlock_wrlock", (void *)hook_wrlock, unwinder_keep_in },
    { "sem_wait", (void *)hook_sem_wait, unwinder_keep_in },
    { "sem_timedwait", (void *)hook_sem_timedwait, unwinder_keep_in },
};

int pp_wait_install_sync(void)
{
    pp_got_code_range((const void *)&hook_lock, &self_lo, &self_hi);
    return pp_got_patch(sync_hooks, sizeof(sync_hooks) / sizeof(sync_hooks[0]));
}

static const pp_got_hook unlock_hooks[] = {
    { "pthread_mutex_unlock", (void *)hook_unlock, unwinder_keep_in },
};

static void watch_forks(void)
{
    static int done;

    if (!done) {
        done = 1;
        pthread_atfork(NULL, NULL, forget_tid);
    }
}

int pp_wait_install(void)
{
    watch_forks();
    pp_got_code_range((const void *)&hook_lock, &self_lo, &self_hi);
    return pp_got_patch(hooks, sizeof(hooks) / sizeof(hooks[0]));
}

int pp_wait_install_unlock(void)
{
    pp_got_code_range((const void *)&hook_lock, &self_lo, &self_hi);
    return pp_got_patch(unlock_hooks, 1);
}

static void update_active(void)
{
    __atomic_store_n(&active, __atomic_load_n(&observer, __ATOMIC_RELAXED) != NULL ||
                     __atomic_load_n(&contender, __ATOMIC_RELAXED) != NULL, __ATOMIC_RELEASE);
}

void pp_wait_observe(pp_wait_fn fn)
{
    __atomic_store_n(&observer, fn, __ATOMIC_RELEASE);
    update_active();
}

void pp_wait_contention(pp_contend_fn fn, unsigned fraction)
{
    contend_fraction = fraction;
    __atomic_store_n(&contender, fn, __ATOMIC_RELEASE);
    update_active();
}

uint64_t pp_wait_untracked(void)
{
    return __atomic_load_n(&untracked, __ATOMIC_RELAXED);
}
