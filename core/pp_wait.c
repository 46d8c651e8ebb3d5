#include "pp_wait.h"
#include "pp_got.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <errno.h>
#include <poll.h>
#include <pthread.h>

static pp_wait_fn observer;
static uintptr_t self_lo, self_hi;
/* Set while this thread reports a wait: the unwinder and the observer may take locks of
 * their own (libunwind's caches), which must go straight to the real call, else a held
 * one would recurse without end. */
static __thread int tls_busy __attribute__((tls_model("initial-exec")));

static int (*const real_lock)(pthread_mutex_t *) = pthread_mutex_lock;
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

static int hook_lock(pthread_mutex_t *m)
{
    pp_wait_fn fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    int rc;

    if (__builtin_expect(fn == NULL, 1) || tls_busy) {
        return real_lock(m);
    }
    rc = pthread_mutex_trylock(m);
    if (rc != EBUSY) {
        /* Taken (0, or EOWNERDEAD for a robust mutex), or an error the real call reports
         * the same way (EINVAL). An error-checking mutex this thread already holds gives
         * EBUSY here: it is reported as a wait, and the real call then fails at once. */
        return rc == 0 || rc == EOWNERDEAD ? rc : real_lock(m);
    }
    if (!report(fn, PP_WAIT_LOCK)) {
        return real_lock(m);
    }
    rc = real_lock(m);
    report(fn, PP_WAIT_DONE);
    return rc;
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

int pp_wait_install(void)
{
    pp_got_code_range((const void *)&hook_lock, &self_lo, &self_hi);
    return pp_got_patch(hooks, sizeof(hooks) / sizeof(hooks[0]));
}

void pp_wait_observe(pp_wait_fn fn)
{
    __atomic_store_n(&observer, fn, __ATOMIC_RELEASE);
}
