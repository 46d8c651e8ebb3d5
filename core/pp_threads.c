#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_threads.h"
#include "pp_cpu.h"
#include "pp_interp.h"
#include "pp_log.h"
#include "pp_regunwind.h"
#include "pp_sysfd.h"
#include "pp_tasks.h"
#include "pp_tcreate.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
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
    _Atomic int claim;          /* taken by the first answer: the handler's or /proc's */
    _Atomic int done;           /* st is complete */
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

/* Which pthread_self() each thread has, as far as we saw it: a thread taken from /proc
 * did not run anything of ours, and a program may want to tell its threads apart by it
 * (httpd's scoreboard keeps each worker's). Learnt from pp_threads_allow, from every
 * answer to a signal, and from pp_tcreate for threads it saw created; forgotten when
 * the thread is no longer listed. */
typedef struct {
    uint32_t tid;
    uint64_t pthread;
} known_thread;

static pthread_mutex_t known_lock = PTHREAD_MUTEX_INITIALIZER;
static known_thread *known;
static size_t nknown, capknown;

static void remember(uint32_t tid, uint64_t pthread)
{
    size_t i;

    pthread_mutex_lock(&known_lock);
    for (i = 0; i < nknown && known[i].tid != tid; i++) {
    }
    if (i == nknown && nknown == capknown) {
        size_t ncap = capknown ? capknown * 2 : 64;
        known_thread *nk = realloc(known, ncap * sizeof(*nk));
        if (!nk) {
            pthread_mutex_unlock(&known_lock);
            return;
        }
        known = nk;
        capknown = ncap;
    }
    if (i == nknown) {
        nknown++;
    }
    known[i].tid = tid;
    known[i].pthread = pthread;
    pthread_mutex_unlock(&known_lock);
}

static uint64_t recall(uint32_t tid)
{
    uint64_t pthread = 0;
    size_t i;

    pthread_mutex_lock(&known_lock);
    for (i = 0; i < nknown; i++) {
        if (known[i].tid == tid) {
            pthread = known[i].pthread;
            break;
        }
    }
    pthread_mutex_unlock(&known_lock);
    return pthread ? pthread : pp_tcreate_pthread(tid);
}

/* Keep only the threads listed now (st, ordered by tid). */
static void forget_others(const pp_thread_stack *st, size_t n)
{
    size_t i, j;

    pthread_mutex_lock(&known_lock);
    for (i = 0, j = 0; i < nknown; i++) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (st[mid].tid < known[i].tid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < n && st[lo].tid == known[i].tid) {
            known[j++] = known[i];
        }
    }
    nknown = j;
    pthread_mutex_unlock(&known_lock);
}

void pp_threads_allow(void)
{
    static __thread int allowed __attribute__((tls_model("initial-exec")));
    sigset_t set;

    if (allowed) {
        return;
    }
    allowed = 1;
    remember((uint32_t)syscall(SYS_gettid), (uint64_t)pthread_self());
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
    /* Our requests come from the capture's CPU-time timers (SI_TIMER); SI_QUEUE is a
     * request queued by hand (the tests'). Anything else is ignored. */
    uintptr_t v = si && (si->si_code == SI_TIMER || si->si_code == SI_QUEUE)
                  ? (uintptr_t)si->si_value.sival_ptr : 0;
    size_t ix = v & ((1u << INDEX_BITS) - 1);
    uint64_t gen = (uint64_t)(v >> INDEX_BITS);
    pool *p;

    (void)sig;
    atomic_fetch_add(&inflight, 1);
    p = atomic_load(&slots_pool);
    /* Only the current capture's requests are answered; anything else is ignored. */
    if (p && gen && ix < p->cap && atomic_load(&p->s[ix].gen) == gen &&
        !atomic_exchange(&p->s[ix].claim, 1)) {
        unwind_into(&p->s[ix].st, (unw_context_t *)uc, 1);
        p->s[ix].st.npcs = (uint32_t)pp_interp_splice(p->s[ix].st.pcs, p->s[ix].st.npcs,
                                                      PP_THREADS_MAX_DEPTH, uc, 1);
        p->s[ix].st.pthread = (uint64_t)pthread_self();
        p->s[ix].st.result = PP_THREAD_OK;
        p->s[ix].st.how = PP_THREAD_BY_SIGNAL;
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

/* The kernel's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED): that thread's CPU time. */
static clockid_t thread_cpu_clock(uint32_t tid)
{
    return (clockid_t)((~(unsigned int)tid << 3) | 6);
}

/* Ask a running thread for its stack: a timer on its CPU-time clock that expires after
 * one nanosecond of its CPU time and signals it alone. 0 armed, -1 not (it still holds an
 * earlier request, or the kernel refused: the timer's queued signal is charged to
 * RLIMIT_SIGPENDING). */
static int ask(uint32_t tid, uintptr_t value, timer_t *t)
{
    struct sigevent sev;
    struct itimerspec its;

    /* A thread that still holds an earlier capture's request blocks the signal (or has
     * not run since): it cannot answer this one, which would only queue behind the other.
     * Requests must not pile up: each is a kernel allocation charged to the user's
     * RLIMIT_SIGPENDING, shared with every process of that user. */
    if (pp_tasks_sig_pending(NULL, tid, pp_threads_signal()) == 1) {
        return -1;
    }
    memset(&sev, 0, sizeof(sev));
    sev.sigev_notify = SIGEV_THREAD_ID;
    sev.sigev_signo = pp_threads_signal();
    sev.sigev_value.sival_ptr = (void *)value;
    sev._sigev_un._tid = (pid_t)tid;
    if (timer_create(thread_cpu_clock(tid), &sev, t) != 0) {
        return -1;
    }
    memset(&its, 0, sizeof(its));
    its.it_value.tv_nsec = 1;
    if (timer_settime(*t, 0, &its, NULL) != 0) {
        timer_delete(*t);
        return -1;
    }
    return 0;
}

typedef enum {
    BLOCKED_TAKEN,              /* blocked, and its stack taken (still blocked after) */
    NOT_BLOCKED,                /* running or runnable, or it moved while we read */
    NO_SUCH_THREAD,
    UNREADABLE                  /* /proc/self/task/TID/syscall cannot be read */
} probe;

static probe read_syscall(uint32_t tid, char *buf, size_t len, pp_tasks_syscall *sc)
{
    int n = pp_sysfd_read(tid, buf, len);

    if (n < 0) {
        return errno == ESRCH ? NO_SUCH_THREAD : UNREADABLE;
    }
    if (pp_tasks_parse_syscall(buf, (size_t)n, sc) != 0 || sc->running) {
        return NOT_BLOCKED;
    }
    return BLOCKED_TAKEN;
}

/* A blocked thread's stack, from the registers the kernel saved when it entered the
 * kernel: taken only if the thread provably stayed blocked throughout (see the header). */
static probe take_blocked(uint32_t tid, pp_thread_stack *st)
{
    char before[256], after[256];
    pp_tasks_syscall sc, sc2;
    uint64_t sw1, sw2;
    probe r;
    int n;

    if ((r = read_syscall(tid, before, sizeof(before), &sc)) != BLOCKED_TAKEN) {
        return r;
    }
    if (pp_tasks_switches(NULL, tid, &sw1) != 0) {
        return NO_SUCH_THREAD;
    }
    /* Read again after the count: the state that the walk must find unchanged. */
    if ((r = read_syscall(tid, before, sizeof(before), &sc)) != BLOCKED_TAKEN) {
        return r;
    }
    n = pp_regunwind(sc.sp, sc.pc, st->pcs, PP_THREADS_NATIVE_DEPTH);
    /* An interpreter's frames too, read the same way; checked below with the rest. */
    n = (int)pp_interp_splice_blocked(st->pcs, (size_t)(n > 0 ? n : 0), PP_THREADS_MAX_DEPTH);
    if ((r = read_syscall(tid, after, sizeof(after), &sc2)) != BLOCKED_TAKEN) {
        return r;
    }
    if (strcmp(before, after) != 0 || pp_tasks_switches(NULL, tid, &sw2) != 0 || sw1 != sw2) {
        return NOT_BLOCKED;     /* it ran meanwhile: what was read may be torn */
    }
    st->npcs = (uint32_t)n;
    return BLOCKED_TAKEN;
}

int pp_threads_capture(pp_thread_stack **out, size_t *outn, int timeout_ms)
{
    static int told_unreadable;
    pp_thread_stack *st;
    pool *p;
    uint32_t *tids;
    size_t n, i, pending;
    pid_t self = (pid_t)syscall(SYS_gettid);
    struct timespec start, now;
    uint64_t gen;
    timer_t *timers;
    unsigned char *asked, *unreadable;
    int nunreadable = 0, rounds = 0;

    if (install() != 0 || pp_tasks_list(NULL, &tids, &n) != 0) {
        return -1;
    }
    pp_sysfd_retain(tids, n);
    /* Ordered by tid, as listed. */
    st = calloc(n ? n : 1, sizeof(*st));
    timers = calloc(n ? n : 1, sizeof(*timers));
    asked = calloc(n ? n : 1, 2);
    if (!st || !timers || !asked) {
        free(tids);
        free(st);
        free(timers);
        free(asked);
        return -1;
    }
    unreadable = asked + n;
    for (i = 0; i < n; i++) {
        st[i].tid = tids[i];
    }
    free(tids);
    if (!(p = pool_for(n))) {
        free(st);
        free(timers);
        free(asked);
        return -1;
    }
    gen = ++capture_gen;
    for (i = 0; i < n; i++) {
        slot *sl = &p->s[i];
        read_proc(&st[i]);
        atomic_store(&sl->done, 0);
        atomic_store(&sl->claim, 0);
        sl->st = st[i];
        sl->st.result = PP_THREAD_NO_ANSWER;
        atomic_store(&sl->gen, gen);
        if ((pid_t)st[i].tid == self) {
            unw_context_t ctx;
            atomic_store(&sl->claim, 1);
            unw_getcontext(&ctx);
            unwind_into(&sl->st, &ctx, 0);
            sl->st.pthread = (uint64_t)pthread_self();
            sl->st.result = PP_THREAD_SELF;
            sl->st.how = PP_THREAD_BY_SELF;
            atomic_store(&sl->done, 1);
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        for (i = 0, pending = 0; i < n; i++) {
            slot *sl = &p->s[i];
            pp_thread_stack taken;
            probe r = UNREADABLE;

            if (atomic_load_explicit(&sl->done, memory_order_acquire)) {
                continue;
            }
            if (!atomic_load(&sl->claim) && !unreadable[i]) {
                taken.npcs = 0;
                r = take_blocked(st[i].tid, &taken);
                if (r == UNREADABLE) {
                    unreadable[i] = 1;
                    nunreadable++;
                }
            }
            if ((r == BLOCKED_TAKEN || r == NO_SUCH_THREAD) && !atomic_exchange(&sl->claim, 1)) {
                if (r == BLOCKED_TAKEN) {
                    sl->st.npcs = taken.npcs;
                    memcpy(sl->st.pcs, taken.pcs, taken.npcs * sizeof(taken.pcs[0]));
                    sl->st.result = PP_THREAD_OK;
                    sl->st.how = PP_THREAD_BY_PROC;
                    sl->st.pthread = recall(st[i].tid);
                } else {
                    sl->st.result = PP_THREAD_GONE;
                }
                atomic_store_explicit(&sl->done, 1, memory_order_release);
                continue;
            }
            if (r != BLOCKED_TAKEN && r != NO_SUCH_THREAD && !asked[i]) {
                /* Running (or unknown): ask it through its CPU-time clock, once. */
                asked[i] = ask(st[i].tid, (uintptr_t)((gen << INDEX_BITS) | i), &timers[i])
                           == 0 ? 1 : 2;
                if (asked[i] == 2) {
                    /* It cannot be asked and was not blocked just now: not waited for
                     * (the caller's deadline is for threads that can answer). */
                    atomic_store(&sl->done, 1);
                    continue;
                }
            }
            pending++;
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        /* In nanoseconds: milliseconds of a negative tv_nsec difference would round
         * towards zero, up, and give up to a millisecond before the timeout. */
        if (!pending || (int64_t)(now.tv_sec - start.tv_sec) * 1000000000 +
                        (now.tv_nsec - start.tv_nsec) >= (int64_t)timeout_ms * 1000000) {
            break;
        }
        {
            /* 0.5 ms, doubling to 8 ms: blocked threads are taken in the first round and
             * running ones answer within a tick (4 ms at HZ=250); what is left waits for
             * the scheduler, and probing it faster would only take CPU from it. */
            struct timespec ts = { 0, 500000L << (rounds < 4 ? rounds : 4) };
            rounds++;
            nanosleep(&ts, NULL);
        }
    }
    /* Close the capture: no timer fires any more, and later answers (a signal already
     * queued) see another generation and write nothing. */
    for (i = 0; i < n; i++) {
        if (asked[i] == 1) {
            timer_delete(timers[i]);
        }
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
    forget_others(st, n);
    for (i = 0; i < n; i++) {
        if (st[i].how == PP_THREAD_BY_SIGNAL && st[i].pthread) {
            remember(st[i].tid, st[i].pthread);
        }
    }
    if (nunreadable && !told_unreadable) {
        told_unreadable = 1;
        pp_log(PP_LOG_INFO, "PP0502", "process %ld: /proc/self/task/TID/syscall cannot be "
               "read (the process changed its user and no helper was started): blocked "
               "threads are reported without their stacks", (long)getpid());
    }
    free(timers);
    free(asked);
    *out = st;
    *outn = n;
    return 0;
}
