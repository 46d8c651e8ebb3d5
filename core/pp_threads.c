#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_threads.h"
#include "pp_cpu.h"
#include "pp_interp.h"
#include "pp_log.h"
#include "pp_tasks.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

/* Answers land in a pool that is never freed: a thread that had the signal blocked may
 * take it long after its capture gave up, and must then find memory that is still ours
 * (and a generation that no longer matches, so it writes nothing). A larger pool retires
 * the old one, which stays allocated: at most twice the largest pool ever needed. */
typedef struct {
    _Atomic uint64_t gen;       /* the capture this slot serves; 0: none */
    _Atomic int done;
    pp_thread_stack st;
} slot;

typedef struct {
    size_t cap;
    slot s[];
} pool;

#define INDEX_BITS 20

static pool *_Atomic slots_pool;
static uint64_t capture_gen;
static int capture_signal;
static int installed;
static _Atomic int inflight;

int pp_threads_signal(void)
{
    return capture_signal ? capture_signal : SIGRTMIN + 7;
}

void pp_threads_set_signal(int sig)
{
    if (!installed) {
        capture_signal = sig;
    }
}

void pp_threads_allow(void)
{
    static __thread int allowed __attribute__((tls_model("initial-exec")));
    sigset_t set;

    if (allowed) {
        return;
    }
    allowed = 1;
    sigemptyset(&set);
    sigaddset(&set, pp_threads_signal());
    pthread_sigmask(SIG_UNBLOCK, &set, NULL);
}

static void unwind_into(pp_thread_stack *st, unw_context_t *ctx, int signal_frame)
{
    unw_cursor_t cur;

    st->npcs = 0;
    if ((signal_frame ? unw_init_local2(&cur, ctx, UNW_INIT_SIGNAL_FRAME)
                      : unw_init_local(&cur, ctx)) != 0) {
        return;
    }
    do {
        unw_word_t ip;
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0) {
            break;
        }
        st->pcs[st->npcs++] = (uint64_t)ip;
    } while (st->npcs < PP_THREADS_NATIVE_DEPTH && unw_step(&cur) > 0);
}

static void on_signal(int sig, siginfo_t *si, void *uc)
{
    int saved_errno = errno;
    uintptr_t v = si && si->si_code == SI_QUEUE ? (uintptr_t)si->si_value.sival_ptr : 0;
    size_t ix = v & ((1u << INDEX_BITS) - 1);
    uint64_t gen = (uint64_t)(v >> INDEX_BITS);
    pool *p;

    (void)sig;
    atomic_fetch_add(&inflight, 1);
    p = atomic_load(&slots_pool);
    /* Only the current capture's requests are answered; anything else is ignored. */
    if (p && gen && ix < p->cap && atomic_load(&p->s[ix].gen) == gen &&
        !atomic_load(&p->s[ix].done)) {
        unwind_into(&p->s[ix].st, (unw_context_t *)uc, 1);
        p->s[ix].st.npcs = (uint32_t)pp_interp_splice(p->s[ix].st.pcs, p->s[ix].st.npcs,
                                                      PP_THREADS_MAX_DEPTH, uc, 1);
        p->s[ix].st.pthread = (uint64_t)pthread_self();
        p->s[ix].st.result = PP_THREAD_OK;
        atomic_store_explicit(&p->s[ix].done, 1, memory_order_release);
    }
    atomic_fetch_sub(&inflight, 1);
    errno = saved_errno;
}

static int install(void)
{
    struct sigaction sa, old;

    if (installed) {
        return 0;
    }
    if (sigaction(pp_threads_signal(), NULL, &old) != 0) {
        return -1;
    }
    if ((old.sa_flags & SA_SIGINFO) || (old.sa_handler != SIG_DFL && old.sa_handler != SIG_IGN)) {
        char owner[256];
        pp_signal_owner(&old, owner, sizeof(owner));
        pp_log(PP_LOG_WARN, "PP0501", "signal %d (SIGRTMIN+%d) already has a handler in "
               "process %ld (%s): thread stacks cannot be captured", pp_threads_signal(),
               pp_threads_signal() - SIGRTMIN, (long)getpid(), owner);
        return -1;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_signal;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    /* Never nests with a CPU sample's unwind on the same thread (see pp_cpu). */
    sigemptyset(&sa.sa_mask);
    sigaddset(&sa.sa_mask, pp_cpu_signal());
    if (sigaction(pp_threads_signal(), &sa, NULL) != 0) {
        return -1;
    }
    /* Kept for the life of the process: a late answer must never meet SIG_DFL (death). */
    installed = 1;
    return 0;
}

static void read_proc(pp_thread_stack *st)
{
    st->state = pp_tasks_state(NULL, st->tid);
    pp_tasks_comm(NULL, st->tid, st->name, sizeof(st->name));
}

static pool *pool_for(size_t n)
{
    pool *p = atomic_load(&slots_pool);
    size_t cap = 256;

    if (p && p->cap >= n) {
        return p;
    }
    while (cap < n) {
        cap *= 2;
    }
    if (cap >= (1u << INDEX_BITS) || !(p = calloc(1, sizeof(pool) + cap * sizeof(slot)))) {
        return NULL;
    }
    p->cap = cap;
    atomic_store(&slots_pool, p);   /* the old pool is retired, never freed */
    return p;
}

int pp_threads_capture(pp_thread_stack **out, size_t *outn, int timeout_ms)
{
    pp_thread_stack *st;
    pool *p;
    uint32_t *tids;
    size_t n, i, pending;
    pid_t self = (pid_t)syscall(SYS_gettid), pid = getpid();
    struct timespec start, now;
    uint64_t gen;

    if (install() != 0 || pp_tasks_list(NULL, &tids, &n) != 0) {
        return -1;
    }
    /* Ordered by tid, as listed. */
    if (!(st = calloc(n ? n : 1, sizeof(*st)))) {
        free(tids);
        return -1;
    }
    for (i = 0; i < n; i++) {
        st[i].tid = tids[i];
    }
    free(tids);
    if (!(p = pool_for(n))) {
        free(st);
        return -1;
    }
    gen = ++capture_gen;
    for (i = 0; i < n; i++) {
        slot *sl = &p->s[i];
        read_proc(&st[i]);
        atomic_store(&sl->done, 0);
        sl->st = st[i];
        sl->st.result = PP_THREAD_NO_ANSWER;
        atomic_store(&sl->gen, gen);
        if ((pid_t)st[i].tid == self) {
            unw_context_t ctx;
            unw_getcontext(&ctx);
            unwind_into(&sl->st, &ctx, 0);
            sl->st.pthread = (uint64_t)pthread_self();
            sl->st.result = PP_THREAD_SELF;
            atomic_store(&sl->done, 1);
            continue;
        }
        /* A thread that still holds an earlier capture's request blocks the signal (or has
         * not run since): it cannot answer this one, which would only queue behind the
         * other. Requests must not pile up: each is a kernel allocation charged to the
         * user's RLIMIT_SIGPENDING, shared with every process of that user. */
        if (pp_tasks_sig_pending(NULL, st[i].tid, pp_threads_signal()) == 1) {
            atomic_store(&sl->done, 1);
            continue;
        }
        {
            siginfo_t si;
            memset(&si, 0, sizeof(si));
            si.si_signo = pp_threads_signal();
            si.si_code = SI_QUEUE;
            si.si_pid = pid;
            si.si_uid = getuid();
            si.si_value.sival_ptr = (void *)(uintptr_t)((gen << INDEX_BITS) | i);
            if (syscall(SYS_rt_tgsigqueueinfo, pid, st[i].tid, si.si_signo, &si) != 0) {
                /* Only ESRCH says the thread is gone; EAGAIN (the pending signals limit
                 * reached) is a request that could not be made. */
                if (errno == ESRCH) {
                    sl->st.result = PP_THREAD_GONE;
                }
                atomic_store(&sl->done, 1);
            }
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        for (i = 0, pending = 0; i < n; i++) {
            pending += !atomic_load_explicit(&p->s[i].done, memory_order_acquire);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        /* In nanoseconds: milliseconds of a negative tv_nsec difference would round
         * towards zero, up, and give up to a millisecond before the timeout. */
        if (!pending || (int64_t)(now.tv_sec - start.tv_sec) * 1000000000 +
                        (now.tv_nsec - start.tv_nsec) >= (int64_t)timeout_ms * 1000000) {
            break;
        }
        {
            struct timespec ts = { 0, 200000 };
            nanosleep(&ts, NULL);
        }
    }
    /* Close the capture: later answers see another generation and write nothing. */
    for (i = 0; i < n; i++) {
        atomic_store(&p->s[i].gen, 0);
    }
    while (atomic_load(&inflight) > 0) {
        struct timespec ts = { 0, 100000 };
        nanosleep(&ts, NULL);
    }
    for (i = 0; i < n; i++) {
        if (atomic_load_explicit(&p->s[i].done, memory_order_acquire)) {
            st[i] = p->s[i].st;
        } else {
            st[i].result = PP_THREAD_NO_ANSWER;
            st[i].npcs = 0;
        }
    }
    *out = st;
    *outn = n;
    return 0;
}
