/* The CPU sampler on this process: real timers, real signals (the sampler's real-time one), real unwinds. Each test
 * starts and stops the sampler itself (Check forks a process per test). Work is measured
 * in thread CPU time, never wall time, and bounds are loose: the machine may be loaded,
 * and CPU-clock timers only fire on scheduler ticks (250 Hz on a Debian kernel), so
 * "1000 Hz" may well mean 250 samples per CPU second. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* syscall(SYS_gettid) */
#endif
#include "pp_cpu.h"
#include <sys/time.h>
#include "pp_heap.h"
#include "pp_log.h"
#include "pp_maps.h"
#include "pp_stacktab.h"
#include "pp_symbolize.h"
#include "pp_threads.h"

#include <check.h>
#include "unit_main.h"
#include "unit_util.h"
#include <dlfcn.h>
#include <errno.h>
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

/* One unit of work: about a millisecond of a dependent multiply-add chain. */
#define UNIT_ITERS (1UL << 20)

/* ---- work that must appear on stacks, by name ---------------------------------------- */

__attribute__((noinline, noclone)) uint64_t hot_a(uint64_t x, unsigned long units);
__attribute__((noinline, noclone)) uint64_t hot_b(uint64_t x, unsigned long units);
__attribute__((noinline, noclone)) uint64_t hot_c(uint64_t x, unsigned long units);

/* Says whether a burn has done enough; may drain the ring as a side effect. */
typedef int enough_fn(void *arg);

__attribute__((noinline, noclone)) uint64_t burn_ratio(int64_t min_ns, enough_fn *enough,
                                                       void *arg);
__attribute__((noinline, noclone)) uint64_t burn_cpu(uint64_t (*work)(uint64_t, unsigned long),
                                                     int64_t min_ns, enough_fn *enough,
                                                     void *arg);

static volatile uint64_t sink;

/* hot_a, hot_b and hot_c cost the same per iteration; their constants differ so that the
 * compiler cannot fold them into one function. */
uint64_t hot_a(uint64_t x, unsigned long units)
{
    unsigned long i, n = units * UNIT_ITERS;

    for (i = 0; i < n; i++) {
        x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

uint64_t hot_b(uint64_t x, unsigned long units)
{
    unsigned long i, n = units * UNIT_ITERS;

    for (i = 0; i < n; i++) {
        x = x * 2862933555777941757ULL + 3037000493ULL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

uint64_t hot_c(uint64_t x, unsigned long units)
{
    unsigned long i, n = units * UNIT_ITERS;

    for (i = 0; i < n; i++) {
        x = x * 3935559000370003845ULL + 2691343689449507681ULL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

static int64_t thread_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* Every burn uses at least its minimum of CPU, then goes on until enough() says it has
 * seen enough (when there is an enough()). A loaded machine lands fewer ticks, so fewer
 * samples, per CPU second of a thread (tens instead of 250 has been seen), so burns are
 * bounded by what was seen, not by time; these caps keep a test inside its timeout. */
#define MAX_BURN_CPU (3000 * MS)
#define MAX_BURN_WALL (8000 * MS)

/* hot_a for 3 units, hot_b for 1, repeatedly, asking enough() after each round. Rounds
 * are long (tens of ms) so that each one spans several sampling ticks: with short rounds
 * every sample would be a coin toss, and the ratio too noisy to check. Their length
 * varies a little so that rounds cannot lock onto the tick. */
uint64_t burn_ratio(int64_t min_ns, enough_fn *enough, void *arg)
{
    int64_t start = thread_cpu_ns(), wall_end = mono_ns() + MAX_BURN_WALL, used;
    uint64_t x = 1;
    unsigned long round, units;
    int ok;

    for (round = 0;; round++) {
        units = 14 + (round * 3) % 5;
        x = hot_a(x, 3 * units);
        __asm__ volatile("" ::: "memory");
        x = hot_b(x, units);
        __asm__ volatile("" ::: "memory");
        ok = enough(arg);
        __asm__ volatile("" ::: "memory");
        used = thread_cpu_ns() - start;
        if ((used >= min_ns && ok) || used >= MAX_BURN_CPU || mono_ns() >= wall_end) {
            break;
        }
    }
    return x;
}

/* work, one unit (about a millisecond) at a time. */
uint64_t burn_cpu(uint64_t (*work)(uint64_t, unsigned long), int64_t min_ns, enough_fn *enough,
                  void *arg)
{
    int64_t start = thread_cpu_ns(), wall_end = mono_ns() + MAX_BURN_WALL, used;
    uint64_t x = 1;
    int ok;

    for (;;) {
        x = work(x, 1);
        __asm__ volatile("" ::: "memory");
        ok = enough ? enough(arg) : 1;
        __asm__ volatile("" ::: "memory");
        used = thread_cpu_ns() - start;
        if ((used >= min_ns && ok) || used >= MAX_BURN_CPU || mono_ns() >= wall_end) {
            break;
        }
    }
    return x;
}

/* ---- collecting samples --------------------------------------------------------------- */

typedef struct {
    size_t n, cap;
    pp_cpu_sample *s;
} samples;

static void keep(void *baton, const pp_cpu_sample *s)
{
    samples *ss = baton;

    if (ss->n == ss->cap) {
        ss->cap = ss->cap ? ss->cap * 2 : 256;
        ss->s = realloc(ss->s, ss->cap * sizeof(*ss->s));
        ck_assert_ptr_nonnull(ss->s);
    }
    ss->s[ss->n++] = *s;
}

static void into_stacktab(void *baton, const pp_cpu_sample *s)
{
    ck_assert_int_eq(pp_stacktab_add(baton, s->tag, s->flags, s->pcs, s->npcs, 1), 0);
}

static void count_only(void *baton, const pp_cpu_sample *s)
{
    (void)s;
    (*(size_t *)baton)++;
}

/* Samples of one thread among those kept, counted as they arrive. */
typedef struct {
    samples ss;
    pid_t tid;
    size_t scanned, of_tid, others, want;
} tally;

static void tally_drain(tally *ty)
{
    pp_cpu_drain(keep, &ty->ss);
    for (; ty->scanned < ty->ss.n; ty->scanned++) {
        if ((pid_t)ty->ss.s[ty->scanned].tid == ty->tid) {
            ty->of_tid++;
        } else {
            ty->others++;
        }
    }
}

/* enough_fn: drain; enough once want samples came from threads other than tid. */
static int others_enough(void *arg)
{
    tally *ty = arg;

    tally_drain(ty);
    return ty->others >= ty->want;
}

/* enough_fn: enough once something was dropped. */
static int some_dropped(void *arg)
{
    (void)arg;
    return pp_cpu_dropped() > 0;
}

/* enough_fn: drain and count; enough at *want. */
typedef struct {
    size_t n, want;
} counter;

static int counted_enough(void *arg)
{
    counter *c = arg;

    c->n += pp_cpu_drain(NULL, NULL);
    return c->n >= c->want;
}

/* ---- naming PCs ----------------------------------------------------------------------- */

/* The function containing pc ("" when unknown). */
static const char *name_of(namer *nm, uint64_t pc)
{
    return pc_function(nm, pc, 0);
}

/* The caller of frame i > 0: a return address, so look at the call instruction. */
static const char *caller_name(namer *nm, const uint64_t *pcs, uint32_t npcs, uint32_t i)
{
    return i < npcs ? name_of(nm, pcs[i] - 1) : "";
}

/* The samples of ty's thread (it burns in hot_c, under burn_cpu and worker_main): whole
 * stacks, or its leaf alone; at least 20 of them, 80% or more in hot_c. The others are
 * all of thread `other` when it is non-zero. */
static void assert_worker_stacks(const tally *ty, int whole, pid_t other, const char *who)
{
    size_t i, named = 0;
    namer nm;

    namer_init(&nm);
    for (i = 0; i < ty->ss.n; i++) {
        const pp_cpu_sample *s = &ty->ss.s[i];
        if ((pid_t)s->tid != ty->tid) {
            if (other) {
                ck_assert_int_eq(s->tid, other);
            }
            continue;
        }
        if (whole) {
            ck_assert_uint_eq(s->flags, 0);
            ck_assert_uint_ge(s->npcs, 2);
        } else {
            ck_assert_uint_eq(s->flags, PP_CPU_LEAF_ONLY);
            ck_assert_uint_eq(s->npcs, 1);  /* still the exact interrupted PC */
        }
        if (strcmp(name_of(&nm, s->pcs[0]), "hot_c") == 0) {
            if (whole) {
                ck_assert_str_eq(caller_name(&nm, s->pcs, s->npcs, 1), "burn_cpu");
                ck_assert_str_eq(caller_name(&nm, s->pcs, s->npcs, 2), "worker_main");
            }
            named++;
        }
    }
    namer_free(&nm);
    ck_assert_msg(ty->of_tid >= 20, "only %zu samples from the %s thread", ty->of_tid, who);
    ck_assert_uint_ge(named * 10, ty->of_tid * 8);
}

/* ---- signals and timers --------------------------------------------------------------- */

static volatile sig_atomic_t sigprof_count;

static void on_count(int sig)
{
    (void)sig;
    sigprof_count++;
}

static void on_count_info(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
    sigprof_count++;
}

static void set_disposition(int sig, void (*handler)(int), int flags)
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sa.sa_flags = flags;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(sig, &sa, NULL), 0);
}

/* The sampler's own signal (a real-time one, never SIGPROF). */
static void set_sampler_signal(void (*handler)(int), int flags)
{
    set_disposition(pp_cpu_signal(), handler, flags);
}

/* glibc's sigaction() always adds SA_RESTORER (and its own restorer) on the way to the
 * kernel, which reports it back; a disposition inherited through exec lacks it. It says
 * nothing about the disposition, so it is not compared. */
#ifndef SA_RESTORER
#define SA_RESTORER 0x04000000
#endif

static void assert_same_action(const struct sigaction *a, const struct sigaction *b)
{
    int sig;

    ck_assert_int_eq(a->sa_flags & ~SA_RESTORER, b->sa_flags & ~SA_RESTORER);
    if (a->sa_flags & SA_SIGINFO) {
        ck_assert_ptr_eq((void *)a->sa_sigaction, (void *)b->sa_sigaction);
    } else {
        ck_assert_ptr_eq((void *)a->sa_handler, (void *)b->sa_handler);
    }
    for (sig = 1; sig <= SIGRTMAX; sig++) {
        ck_assert_msg(sigismember(&a->sa_mask, sig) == sigismember(&b->sa_mask, sig),
                      "sa_mask differs for signal %d", sig);
    }
}

/* The process's POSIX timers as /proc lists them, or -1 where the kernel does not. */
static int count_timers(void)
{
    FILE *f = fopen("/proc/self/timers", "r");
    char line[256];
    int n = 0;

    if (!f) {
        return -1;
    }
    while (fgets(line, sizeof(line), f)) {
        n += strncmp(line, "ID:", 3) == 0;
    }
    fclose(f);
    return n;
}

static void assert_timers(int expected)
{
    int n = count_timers();

    if (n >= 0) {
        ck_assert_int_eq(n, expected);
    }
}

/* Whether some timer of ours signals thread tid ("notify: signal/tid.N" in
 * /proc/self/timers). -1 when the file cannot be read. */
static int timer_for_tid(pid_t tid)
{
    FILE *f = fopen("/proc/self/timers", "r");
    char line[256], want[32];
    int found = 0;

    if (!f) {
        return -1;
    }
    snprintf(want, sizeof(want), "/tid.%d\n", (int)tid);
    while (fgets(line, sizeof(line), f)) {
        found |= strncmp(line, "notify:", 7) == 0 && strstr(line, want) != NULL;
    }
    fclose(f);
    return found;
}

/* The kernel's count of this process's threads. */
static int threads_now(void)
{
    struct stat st;

    return stat("/proc/self/task", &st) == 0 ? (int)st.st_nlink - 2 : -1;
}

/* ---- a worker thread ------------------------------------------------------------------ */

typedef struct {
    int warm;
    int allow;                  /* pp_cpu_thread_allow only (a thread that served before) */
    uint32_t tag;
    int64_t before_ns;          /* CPU to use before "ready" */
    int64_t min_ns;             /* and at least this after "go", until "stop" */
    _Atomic pid_t tid;
    _Atomic int ready, go, stop, done;
} worker;

static int stop_requested(void *arg)
{
    return atomic_load((_Atomic int *)arg);
}

static void *worker_main(void *arg)
{
    worker *w = arg;

    atomic_store(&w->tid, my_tid());
    if (w->warm) {
        pp_cpu_thread_warm();
    } else if (w->allow) {
        pp_cpu_thread_allow();
    }
    pp_cpu_set_tag(w->tag);
    if (w->before_ns) {
        sink = burn_cpu(hot_c, w->before_ns, NULL, NULL);
    }
    atomic_store(&w->ready, 1);
    while (!atomic_load(&w->go)) {
        sleep_ms(1);
    }
    sink = burn_cpu(hot_c, w->min_ns, stop_requested, &w->stop);
    atomic_store(&w->done, 1);
    return NULL;
}

static void wait_ready(worker *w)
{
    int64_t deadline = mono_ns() + 20000 * MS;

    while (!atomic_load(&w->ready)) {
        ck_assert_msg(mono_ns() < deadline, "worker thread never got ready");
        sleep_ms(1);
    }
}

/* Let the worker go, drain while it burns, and stop it once want of its samples came. */
static void run_worker(worker *w, pthread_t th, tally *ty, size_t want)
{
    int64_t deadline = mono_ns() + 20000 * MS;

    ty->tid = atomic_load(&w->tid);
    atomic_store(&w->go, 1);
    while (!atomic_load(&w->done)) {
        ck_assert_msg(mono_ns() < deadline, "worker thread never finished");
        tally_drain(ty);
        if (ty->of_tid >= want) {
            atomic_store(&w->stop, 1);
        }
        sleep_ms(2);
    }
    ck_assert_int_eq(pthread_join(th, NULL), 0);
}

/* ---- the tests ------------------------------------------------------------------------ */

typedef struct {
    pp_stacktab *t;
    size_t n, want;
} tab_fill;

/* enough_fn: drain into the table; enough at want samples. */
static int tab_enough(void *arg)
{
    tab_fill *f = arg;

    f->n += pp_cpu_drain(into_stacktab, f->t);
    return f->n >= f->want;
}

/* The sampler's timers run on each thread's CPU-time clock, and the kernel raises their
 * signal from the thread itself as it returns to user space (POSIX CPU timers' task
 * work, x86-64 since Linux 5.10): after a system call returned, never during one. So a
 * sample never ends a wait early, however close to the wait it comes: a thread that runs
 * 1 ms then sleeps 5 ms, at the highest rate, sees none of its sleeps cut short. */
static _Atomic int alternating_stop;
static _Atomic int sleeps_done, sleeps_short;

static void *alternating_main(void *arg)
{
    (void)arg;
    pp_cpu_thread_warm();
    while (!atomic_load(&alternating_stop)) {
        struct timespec ts = { 0, 5 * MS };
        int64_t t0 = thread_cpu_ns(), w0;
        int rc;
        while (thread_cpu_ns() - t0 < 1 * MS) {
            sink = sink * 6364136223846793005ULL + 1;
            if ((sink & 1023) == 0) {
                (void)getppid();    /* kernel time too */
            }
        }
        w0 = mono_ns();
        rc = nanosleep(&ts, NULL);
        if (rc != 0 || mono_ns() - w0 < 5 * MS) {
            atomic_fetch_add(&sleeps_short, 1);
        }
        atomic_fetch_add(&sleeps_done, 1);
    }
    return NULL;
}

START_TEST(a_sample_never_ends_a_wait)
{
    pthread_t th;
    size_t got = 0;
    int64_t deadline;

    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, alternating_main, NULL), 0);
    sleep_ms(5);
    pp_cpu_refresh_threads();
    /* 150 sleeps at least, and on until 5 samples came: a timer's signal comes only
     * from a tick that finds the thread running, and on a loaded machine the thread's
     * 1 ms runs may start just after a tick (the tick's preemption is what lets it
     * run) and end before the next: 150 of them once gave 1 sample. */
    deadline = mono_ns() + 20000 * MS;
    while ((atomic_load(&sleeps_done) < 150 || got < 5) && mono_ns() < deadline) {
        sleep_ms(20);
        pp_cpu_drain(count_only, &got);
    }
    atomic_store(&alternating_stop, 1);
    pthread_join(th, NULL);
    pp_cpu_stop(count_only, &got);
    ck_assert_int_ge(atomic_load(&sleeps_done), 150);
    /* Samples came (one per tick that finds it running at most: about 37 for its 150 ms
     * of CPU at HZ=250, fewer on a loaded machine; the bound only says the sampler ran
     * beside the sleeps), and no sleep was cut short. */
    ck_assert_uint_ge(got, 5);
    ck_assert_int_eq(atomic_load(&sleeps_short), 0);
}
END_TEST

START_TEST(samples_follow_the_work_and_name_it)
{
    tab_fill f = { pp_stacktab_new(100000), 0, 80 };
    uint64_t total = 0, leaf_only = 0, a = 0, b = 0, deep = 0;
    namer nm;
    pp_stack st;
    size_t i;

    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    ck_assert_int_eq(pp_cpu_running(), 1);
    sink = burn_ratio(300 * MS, tab_enough, &f);
    pp_cpu_stop(into_stacktab, f.t);
    ck_assert_int_eq(pp_cpu_running(), 0);
    ck_assert_uint_eq(pp_cpu_dropped(), 0);
    ck_assert_uint_eq(pp_stacktab_overflow(f.t), 0);

    namer_init(&nm);
    for (i = 0; i < pp_stacktab_count(f.t); i++) {
        const pp_stack *s = pp_stacktab_get(f.t, i, &st);
        const char *leaf;

        ck_assert_uint_ge(s->npcs, 1);
        ck_assert_uint_le(s->npcs, PP_CPU_MAX_DEPTH);
        total += s->count;
        if (s->flags & PP_CPU_LEAF_ONLY) {
            leaf_only += s->count;
            ck_assert_uint_eq(s->npcs, 1);
        }
        leaf = name_of(&nm, s->pcs[0]);
        if (strcmp(leaf, "hot_a") == 0) {
            a += s->count;
        } else if (strcmp(leaf, "hot_b") == 0) {
            b += s->count;
        } else {
            continue;
        }
        /* The rest of the stack is there too: burn_ratio called the hot function, and
         * this test called burn_ratio. */
        if (!(s->flags & PP_CPU_LEAF_ONLY)) {
            ck_assert_str_eq(caller_name(&nm, s->pcs, s->npcs, 1), "burn_ratio");
            ck_assert_str_eq(caller_name(&nm, s->pcs, s->npcs, 2),
                             "samples_follow_the_work_and_name_it_fn");
            deep += s->count;
        }
    }
    namer_free(&nm);

    ck_assert_msg(total >= 50, "only %lu samples", (unsigned long)total);
    /* The main thread was warmed by pp_cpu_start: full stacks, not leaves. */
    ck_assert_msg(leaf_only * 10 <= total, "%lu of %lu samples are leaf-only",
                  (unsigned long)leaf_only, (unsigned long)total);
    ck_assert_msg((a + b) * 10 >= total * 8, "hot_a %lu + hot_b %lu of %lu samples",
                  (unsigned long)a, (unsigned long)b, (unsigned long)total);
    ck_assert_uint_ge(deep * 10, (a + b) * 9);
    /* 3:1 work, so about 3:1 samples. */
    ck_assert_msg(a >= 2 * b && 2 * a <= 9 * b, "hot_a:hot_b = %lu:%lu, not about 3:1",
                  (unsigned long)a, (unsigned long)b);
    pp_stacktab_free(f.t);
}
END_TEST

START_TEST(threads_started_later_are_sampled_after_refresh)
{
    worker w;
    pthread_t th;
    tally ty;
    samples before = { 0, 0, NULL };
    size_t i;
    pid_t main_tid = my_tid(), tid;

    memset(&w, 0, sizeof(w));
    memset(&ty, 0, sizeof(ty));
    w.warm = 1;
    w.before_ns = 100 * MS;
    w.min_ns = 200 * MS;
    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    assert_timers(1);
    ck_assert_int_eq(pthread_create(&th, NULL, worker_main, &w), 0);
    wait_ready(&w);
    tid = atomic_load(&w.tid);
    ck_assert_int_ne(tid, main_tid);

    /* Before the refresh the new thread has no timer: its first 100 ms went unsampled. */
    pp_cpu_drain(keep, &before);
    for (i = 0; i < before.n; i++) {
        ck_assert_int_ne(before.s[i].tid, tid);
    }
    free(before.s);

    ck_assert_int_eq(pp_cpu_refresh_threads(), 2);
    assert_timers(2);
    ck_assert_int_eq(pp_cpu_refresh_threads(), 2);     /* idempotent */
    assert_timers(2);
    run_worker(&w, th, &ty, 40);

    /* The thread has ended: a refresh forgets it and deletes its timer. pthread_join can
     * return while the kernel still lists the exiting thread, so give it a moment. */
    {
        int64_t deadline = mono_ns() + 5000 * MS;
        int n;

        while ((n = pp_cpu_refresh_threads()) != 1 && mono_ns() < deadline) {
            sleep_ms(1);
        }
        ck_assert_int_eq(n, 1);
    }
    assert_timers(1);
    pp_cpu_stop(keep, &ty.ss);
    assert_timers(0);
    tally_drain(&ty);

    assert_worker_stacks(&ty, 1, main_tid, "new");  /* warmed: full stacks */
    free(ty.ss.s);
}
END_TEST

/* A parked worker (no CPU burnt): started, ready, then ended by end_parked. */
static void start_parked(worker *w, pthread_t *th)
{
    memset(w, 0, sizeof(*w));
    ck_assert_int_eq(pthread_create(th, NULL, worker_main, w), 0);
    wait_ready(w);
}

static void end_parked(worker *w, pthread_t th, int threads_after)
{
    int64_t deadline = mono_ns() + 5000 * MS;

    atomic_store(&w->go, 1);
    ck_assert_int_eq(pthread_join(th, NULL), 0);
    /* pthread_join can return while the kernel still counts the exiting thread. */
    while (threads_now() != threads_after) {
        ck_assert_msg(mono_ns() < deadline, "the ended thread is still counted");
        sleep_ms(1);
    }
}

/* The agent checks every tick; a walk of the threads happens only when their number
 * changed, when it was told of a new thread, or every PP_CPU_WALK_EVERY checks: each way
 * arms the thread that appeared. */
START_TEST(a_check_arms_new_threads_however_they_came)
{
    worker a, b, c;
    pthread_t ta, tb, tc;
    int i, n;

    if (timer_for_tid(my_tid()) < 0 || threads_now() != 1) {
        return;                 /* no /proc here to check with */
    }
    ck_assert_int_eq(pp_cpu_start(100, 256), 0);
    ck_assert_int_eq(timer_for_tid(my_tid()), 1);

    /* The count changed: the first check walks. */
    start_parked(&a, &ta);
    ck_assert_int_eq(timer_for_tid(atomic_load(&a.tid)), 0);
    ck_assert_int_eq(pp_cpu_check_threads(0), 2);
    ck_assert_int_eq(timer_for_tid(atomic_load(&a.tid)), 1);

    /* One thread replaced by another between two checks, the count the same: told of
     * it, the check walks at once. */
    end_parked(&a, ta, 1);
    start_parked(&b, &tb);
    ck_assert_int_eq(timer_for_tid(atomic_load(&b.tid)), 0);
    ck_assert_int_eq(pp_cpu_check_threads(1), 2);
    ck_assert_int_eq(timer_for_tid(atomic_load(&b.tid)), 1);
    assert_timers(2);

    /* Not told: within PP_CPU_WALK_EVERY checks, and the ended thread's timer goes. */
    end_parked(&b, tb, 1);
    start_parked(&c, &tc);
    for (i = 0; i < PP_CPU_WALK_EVERY && timer_for_tid(atomic_load(&c.tid)) != 1; i++) {
        n = pp_cpu_check_threads(0);
        ck_assert_int_eq(n, 2);
    }
    ck_assert_int_eq(timer_for_tid(atomic_load(&c.tid)), 1);
    assert_timers(2);

    /* A thread that ends lowers the count: the next check forgets it. */
    end_parked(&c, tc, 1);
    ck_assert_int_eq(pp_cpu_check_threads(0), 1);
    assert_timers(1);
    pp_cpu_stop(NULL, NULL);
    assert_timers(0);
}
END_TEST

/* A thread that burns without being warmed: allowed first (a request thread that served
 * before sampling started, still in that request), or not. */
static void unwarmed_burner(int allow)
{
    worker w;
    pthread_t th;
    tally ty;

    memset(&w, 0, sizeof(w));
    memset(&ty, 0, sizeof(ty));
    w.allow = allow;
    w.min_ns = 200 * MS;
    if (!allow) {
        ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    }
    ck_assert_int_eq(pthread_create(&th, NULL, worker_main, &w), 0);
    wait_ready(&w);
    if (allow) {
        ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    }
    ck_assert_int_eq(pp_cpu_refresh_threads(), 2);
    run_worker(&w, th, &ty, 40);
    pp_cpu_stop(keep, &ty.ss);
    tally_drain(&ty);
    assert_worker_stacks(&ty, allow, 0, allow ? "allowed" : "unwarmed");
    free(ty.ss.s);
}

START_TEST(an_unwarmed_thread_gives_leaf_only_samples)
{
    unwarmed_burner(0);
}
END_TEST

#if defined(__x86_64__)
/* An allowed thread's stack bounds are known from the allow, so its samples have the
 * whole stack, not the leaf alone. */
START_TEST(an_allowed_unwarmed_thread_gives_whole_stacks)
{
    unwarmed_burner(1);
}
END_TEST
#endif

START_TEST(samples_carry_their_threads_tag)
{
    worker w;
    pthread_t th;
    tally ty, untagged;
    samples between = { 0, 0, NULL };
    size_t i;
    pid_t main_tid = my_tid();

    memset(&w, 0, sizeof(w));
    memset(&ty, 0, sizeof(ty));
    memset(&untagged, 0, sizeof(untagged));
    w.warm = 1;
    w.tag = 0xb2b2b2b2u;
    w.min_ns = 100 * MS;

    /* Tagged before the start: every sample of this thread carries the tag. */
    pp_cpu_set_tag(0xa1u);
    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    ck_assert_int_eq(pthread_create(&th, NULL, worker_main, &w), 0);
    wait_ready(&w);
    ck_assert_int_eq(pp_cpu_refresh_threads(), 2);
    ty.tid = atomic_load(&w.tid);
    ty.want = 20;
    atomic_store(&w.go, 1);
    /* Both threads burn; the main thread until it has 20 samples of its own... */
    sink = burn_cpu(hot_a, 100 * MS, others_enough, &ty);
    /* ...and the worker until it has 20 too. */
    run_worker(&w, th, &ty, 20);
    tally_drain(&ty);
    for (i = 0; i < ty.ss.n; i++) {
        if ((pid_t)ty.ss.s[i].tid == ty.tid) {
            ck_assert_uint_eq(ty.ss.s[i].tag, 0xb2b2b2b2u);
        } else {
            ck_assert_int_eq(ty.ss.s[i].tid, main_tid);
            ck_assert_uint_eq(ty.ss.s[i].tag, 0xa1u);
        }
    }

    /* Untagged. Samples taken just before the store may still be in the ring. */
    pp_cpu_set_tag(0);
    pp_cpu_drain(keep, &between);
    for (i = 0; i < between.n; i++) {
        ck_assert_int_eq(between.s[i].tid, main_tid);
        ck_assert(between.s[i].tag == 0xa1u || between.s[i].tag == 0);
    }
    untagged.tid = ty.tid;
    untagged.want = 10;
    sink = burn_cpu(hot_a, 100 * MS, others_enough, &untagged);
    pp_cpu_stop(keep, &untagged.ss);
    tally_drain(&untagged);
    for (i = 0; i < untagged.ss.n; i++) {
        ck_assert_int_eq(untagged.ss.s[i].tid, main_tid);
        ck_assert_uint_eq(untagged.ss.s[i].tag, 0);
    }
    ck_assert_msg(ty.others >= 10 && ty.of_tid >= 10 && untagged.others >= 5,
                  "too few samples: %zu tagged, %zu from the thread, %zu untagged",
                  ty.others, ty.of_tid, untagged.others);
    free(between.s);
    free(ty.ss.s);
    free(untagged.ss.s);
}
END_TEST

START_TEST(stop_restores_the_disposition_and_leaves_no_timer)
{
    struct sigaction before, after, mine;
    int round;

    for (round = 0; round < 3; round++) {
        counter c = { 0, 3 };

        if (round == 1) {
            /* A disposition of our own: ignored, with flags and a mask to restore. */
            memset(&mine, 0, sizeof(mine));
            mine.sa_handler = SIG_IGN;
            mine.sa_flags = SA_RESTART | SA_NODEFER;
            sigemptyset(&mine.sa_mask);
            sigaddset(&mine.sa_mask, SIGUSR1);
            sigaddset(&mine.sa_mask, SIGRTMIN + 3);
            ck_assert_int_eq(sigaction(pp_cpu_signal(), &mine, NULL), 0);
        } else if (round == 2) {
            set_sampler_signal(SIG_DFL, SA_RESTART);
        }
        /* round 0: whatever this process inherited (the default). */
        ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &before), 0);
        ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
        sink = burn_cpu(hot_a, 50 * MS, counted_enough, &c);
        pp_cpu_stop(count_only, &c.n);
        ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &after), 0);
        assert_same_action(&before, &after);
        ck_assert_uint_ge(c.n, 1);
        assert_timers(0);
    }

    /* No timer fires any more: a handler of our own sees nothing. */
    sigprof_count = 0;
    set_sampler_signal(on_count, SA_RESTART);
    sink = burn_cpu(hot_a, 100 * MS, NULL, NULL);
    ck_assert_int_eq(sigprof_count, 0);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), &before, NULL), 0);

    /* Stopping again, or when never started, is harmless. */
    pp_cpu_stop(NULL, NULL);
    pp_cpu_stop(NULL, NULL);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &after), 0);
    assert_same_action(&before, &after);
}
END_TEST

static _Atomic int refusals_logged;

static void on_log(void *baton, pp_log_level level, const char *tag, const char *msg)
{
    (void)baton;
    if (level == PP_LOG_WARN && strcmp(tag, "PP0301") == 0 && strstr(msg, "CPU profiling refused")) {
        atomic_fetch_add(&refusals_logged, 1);
    }
}

START_TEST(start_refuses_a_foreign_handler_and_a_second_start)
{
    struct sigaction sa, now;

    pp_log_set(on_log, NULL);

    /* A plain handler. */
    set_sampler_signal(on_count, 0);
    ck_assert_int_eq(pp_cpu_start(100, 64), -1);
    ck_assert_int_eq(pp_cpu_running(), 0);
    ck_assert_int_eq(atomic_load(&refusals_logged), 1);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &now), 0);
    ck_assert_ptr_eq((void *)now.sa_handler, (void *)on_count);
    assert_timers(0);

    /* An SA_SIGINFO handler. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_count_info;
    sa.sa_flags = SA_SIGINFO | SA_RESTART;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), &sa, NULL), 0);
    ck_assert_int_eq(pp_cpu_start(100, 64), -1);
    ck_assert_int_eq(pp_cpu_running(), 0);
    ck_assert_int_eq(atomic_load(&refusals_logged), 2);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &now), 0);
    ck_assert_ptr_eq((void *)now.sa_sigaction, (void *)on_count_info);
    assert_timers(0);

    /* Ignored is not a handler: that start succeeds, once. */
    set_sampler_signal(SIG_IGN, 0);
    ck_assert_int_eq(pp_cpu_start(100, 64), 0);
    ck_assert_int_eq(pp_cpu_start(100, 64), -2);
    ck_assert_int_eq(pp_cpu_start(1000, 4096), -2);
    ck_assert_int_eq(pp_cpu_running(), 1);
    pp_cpu_stop(NULL, NULL);
    ck_assert_int_eq(pp_cpu_running(), 0);

    /* And the default, of course; and again after a stop. */
    set_sampler_signal(SIG_DFL, 0);
    ck_assert_int_eq(pp_cpu_start(100, 64), 0);
    pp_cpu_stop(NULL, NULL);
    ck_assert_int_eq(pp_cpu_start(100, 64), 0);
    ck_assert_int_eq(pp_cpu_start(100, 64), -2);
    pp_cpu_stop(NULL, NULL);
    ck_assert_int_eq(atomic_load(&refusals_logged), 2);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &now), 0);
    ck_assert_ptr_eq((void *)now.sa_handler, (void *)SIG_DFL);
    pp_log_set(NULL, NULL);
}
END_TEST

/* PHP's max_execution_time, gperftools: a process-wide ITIMER_PROF whose SIGPROFs are
 * another's. While we sample, they keep coming to that handler, as many as without us,
 * and SIGPROF's disposition is never touched. */
static void burn_with_itimer_prof(long ms, int *signals)
{
    struct itimerval it = { { 0, 10000 }, { 0, 10000 } }, off = { { 0, 0 }, { 0, 0 } };

    sigprof_count = 0;
    ck_assert_int_eq(setitimer(ITIMER_PROF, &it, NULL), 0);
    sink = burn_cpu(hot_a, ms * MS, NULL, NULL);
    ck_assert_int_eq(setitimer(ITIMER_PROF, &off, NULL), 0);
    *signals = sigprof_count;
}

START_TEST(sigprof_stays_with_its_owner_while_sampling)
{
    struct sigaction before, during;
    int alone, beside;
    counter c = { 0, 1000000 };

    ck_assert_int_ne(pp_cpu_signal(), SIGPROF);
    ck_assert_int_ge(pp_cpu_signal(), SIGRTMIN);
    set_disposition(SIGPROF, on_count, SA_RESTART);
    ck_assert_int_eq(sigaction(SIGPROF, NULL, &before), 0);
    burn_with_itimer_prof(400, &alone);

    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    ck_assert_int_eq(sigaction(SIGPROF, NULL, &during), 0);
    assert_same_action(&before, &during);
    burn_with_itimer_prof(400, &beside);
    pp_cpu_stop(count_only, &c.n);

    /* ~40 SIGPROFs in 400 ms of CPU at 100 Hz, with or without the sampler beside (a
     * loaded machine delivers fewer: the bounds only tell "keeps coming" from "stolen"). */
    ck_assert_int_ge(alone, 5);
    ck_assert_int_ge(beside, 5);
    ck_assert_uint_ge(c.n, 20);
    ck_assert_int_eq(sigaction(SIGPROF, NULL, &during), 0);
    assert_same_action(&before, &during);
    set_disposition(SIGPROF, SIG_DFL, 0);
}
END_TEST

START_TEST(a_full_ring_drops_and_counts)
{
    size_t n = 0;

    ck_assert_int_eq(pp_cpu_start(1000, 16), 0);
    ck_assert_uint_eq(pp_cpu_dropped(), 0);
    /* No draining: 200 ms is ~50 samples (at 250 Hz ticks) for 16 slots. */
    sink = burn_cpu(hot_a, 200 * MS, some_dropped, NULL);
    ck_assert_msg(pp_cpu_dropped() > 0, "nothing dropped from a 16-slot ring");
    n = pp_cpu_drain(NULL, NULL);
    ck_assert_uint_ge(n, 1);
    ck_assert_uint_le(n, 16);
    pp_cpu_stop(NULL, NULL);

    /* Drops are counted since the start. */
    ck_assert_int_eq(pp_cpu_start(1000, 16), 0);
    ck_assert_uint_eq(pp_cpu_dropped(), 0);
    pp_cpu_stop(NULL, NULL);
}
END_TEST

START_TEST(the_handler_can_be_measured)
{
    int64_t out[200];
    struct sigaction before, after;
    int depth, i;

    for (i = 0; i < 200; i++) {
        out[i] = -1;
    }
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &before), 0);
    depth = pp_cpu_measure_handler(out, 200);
    ck_assert_int_gt(depth, 0);
    ck_assert_int_le(depth, PP_CPU_MAX_DEPTH);
    for (i = 0; i < 200; i++) {
        ck_assert_msg(out[i] > 0, "out[%d] = %lld", i, (long long)out[i]);
    }
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &after), 0);
    ck_assert_ptr_eq((void *)after.sa_handler, (void *)before.sa_handler);

    /* Not while the sampler runs. */
    ck_assert_int_eq(pp_cpu_start(100, 64), 0);
    ck_assert_int_eq(pp_cpu_measure_handler(out, 1), -1);
    ck_assert_int_eq(pp_cpu_running(), 1);
    pp_cpu_stop(NULL, NULL);
}
END_TEST

START_TEST(invalid_arguments_leave_nothing_installed)
{
    static const struct { int hz; size_t slots; } bad[] = {
        { 0, 4096 }, { 1001, 4096 }, { -1, 4096 }, { 1000000, 4096 },
        { 1000, 15 }, { 1000, 0 }, { 100, 1 },
    };
    struct sigaction before, now;
    size_t i;
    int k;

    ck_assert_int_eq(pp_cpu_period_ns(1000), 1000000);
    ck_assert_int_eq(pp_cpu_period_ns(100), 10000000);
    ck_assert_int_eq(pp_cpu_period_ns(1), 1000000000LL);
    ck_assert_int_eq(pp_cpu_period_ns(0), 0);

    /* Not started: everything is a harmless no-op. */
    ck_assert_int_eq(pp_cpu_running(), 0);
    ck_assert_int_eq(pp_cpu_refresh_threads(), 0);
    ck_assert_uint_eq(pp_cpu_drain(NULL, NULL), 0);
    pp_cpu_stop(NULL, NULL);

    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &before), 0);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        ck_assert_msg(pp_cpu_start(bad[i].hz, bad[i].slots) == -1, "start(%d, %zu) accepted",
                      bad[i].hz, bad[i].slots);
        ck_assert_int_eq(pp_cpu_running(), 0);
        ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &now), 0);
        assert_same_action(&before, &now);
        ck_assert_uint_eq(pp_cpu_drain(NULL, NULL), 0);
        assert_timers(0);
    }
    /* No timer was armed: with a handler of our own, CPU use raises nothing. */
    sigprof_count = 0;
    set_sampler_signal(on_count, SA_RESTART);
    sink = burn_cpu(hot_a, 50 * MS, NULL, NULL);
    ck_assert_int_eq(sigprof_count, 0);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), &before, NULL), 0);

    /* The edges are valid, and start/stop cycles leave nothing behind. */
    ck_assert_int_eq(pp_cpu_start(1, 16), 0);
    pp_cpu_stop(NULL, NULL);
    for (k = 0; k < 20; k++) {
        ck_assert_int_eq(pp_cpu_start(1000, 16), 0);
        assert_timers(1);
        pp_cpu_stop(NULL, NULL);
        assert_timers(0);
    }
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &now), 0);
    assert_same_action(&before, &now);
}
END_TEST

/* ---- nesting: our two handlers, and the heap sampler ---------------------------------- */

START_TEST(our_two_handlers_mask_each_other)
{
    struct sigaction cpu, dump;
    pp_thread_stack *st = NULL;
    size_t n = 0;

    ck_assert_int_eq(pp_cpu_start(100, 64), 0);
    /* The first capture installs the thread dump's handler, for the life of the process. */
    ck_assert_int_eq(pp_threads_capture(&st, &n, 250), 0);
    free(st);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &cpu), 0);
    ck_assert_int_eq(sigaction(pp_threads_signal(), NULL, &dump), 0);
    /* The kernel blocks a handler's sa_mask, and its own signal (no SA_NODEFER), while it
     * runs: a CPU sample never starts on a thread inside a dump's unwind, nor a dump's
     * inside a sample's, nor either inside itself. */
    ck_assert_msg(sigismember(&cpu.sa_mask, pp_threads_signal()) == 1,
                  "the CPU sample's handler lets the thread dump's signal in");
    ck_assert_msg(sigismember(&dump.sa_mask, pp_cpu_signal()) == 1,
                  "the thread dump's handler lets the CPU sample's signal in");
    ck_assert_int_eq(cpu.sa_flags & SA_NODEFER, 0);
    ck_assert_int_eq(dump.sa_flags & SA_NODEFER, 0);
    pp_cpu_stop(NULL, NULL);
    /* Both masks hold for the next window too. */
    ck_assert_int_eq(pp_cpu_start(100, 64), 0);
    ck_assert_int_eq(sigaction(pp_cpu_signal(), NULL, &cpu), 0);
    ck_assert_int_eq(sigismember(&cpu.sa_mask, pp_threads_signal()), 1);
    pp_cpu_stop(NULL, NULL);
}
END_TEST

typedef struct {
    _Atomic int stop;
    int captures;
} dumper;

/* Thread dumps, one after another, while the main thread allocates: their signal lands on
 * it while it runs, in the heap sampler or not. */
static void *dump_loop(void *arg)
{
    dumper *d = arg;

    while (!atomic_load(&d->stop)) {
        pp_thread_stack *st = NULL;
        size_t n = 0;
        if (pp_threads_capture(&st, &n, 100) == 0) {
            d->captures++;
        }
        free(st);
        sleep_ms(2);
    }
    return NULL;
}

typedef struct {
    namer nm;
    int bad;                    /* heap stacks through one of our handlers */
    int from_lib;               /* heap stacks of the test library's allocations */
    char first_bad[256];
} heap_scan;

static void scan_bucket(void *baton, const pp_stack *s)
{
    heap_scan *hs = baton;
    uint32_t i;
    int saw_lib = 0;

    /* The whole stack: a handler's allocation has the handler above whatever it
     * interrupted (the library's malloc loop too). */
    for (i = 0; i < s->npcs; i++) {
        const char *f = pc_function(&hs->nm, s->pcs[i], 1);
        if (strcmp(f, "on_sample") == 0 || strcmp(f, "on_signal") == 0 ||
            strcmp(f, "capture") == 0 || strcmp(f, "unwind_into") == 0) {
            if (!hs->bad++) {
                snprintf(hs->first_bad, sizeof(hs->first_bad), "%s at frame %u", f, i);
            }
        }
        if (strcmp(f, "ppt_malloc") == 0 && !saw_lib) {
            saw_lib = 1;
            hs->from_lib++;
        }
    }
}

/* The heap sampler and our handlers on one thread, both ways round, with every allocation
 * sampled (rate 1): the sampler unwinds (unw_step) and takes its lock on every malloc,
 * and CPU samples (1000 Hz) and thread dumps land meanwhile. A handler takes no lock and
 * allocates nothing, so it neither waits for the sampler's lock nor runs the sampler
 * itself: this ends (no deadlock), samples did land inside the sampler (the nesting
 * happened), and no allocation was ever made from inside a handler (it would be sampled
 * here, with the handler on its stack: libunwind's allocations go through its GOT, which
 * the heap hooks patch). */
START_TEST(heap_sampling_and_our_handlers_nest_safely)
{
    void *lib = dlopen(TEST_ALLOCLIB, RTLD_NOW);
    void *(*lib_malloc)(size_t);
    void (*lib_free)(void *);
    dumper d = { 0, 0 };
    samples ss = { 0, 0, NULL };
    heap_scan hs;
    pthread_t t;
    int64_t start, wall_end;
    size_t i, in_sampler = 0;
    unsigned char *buf = NULL;
    size_t len = 0;
    unsigned k = 0;

    ck_assert_msg(lib != NULL, "dlopen %s: %s", TEST_ALLOCLIB, dlerror());
    *(void **)&lib_malloc = dlsym(lib, "ppt_malloc");
    *(void **)&lib_free = dlsym(lib, "ppt_free");
    ck_assert_ptr_nonnull(lib_malloc);
    ck_assert_ptr_nonnull(lib_free);
    ck_assert_int_gt(pp_heap_start(1), 0);
    lib_free(lib_malloc(1));    /* a thread's first allocation only draws its threshold */
    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    pp_cpu_thread_warm();
    pp_threads_allow();
    ck_assert_int_eq(pthread_create(&t, NULL, dump_loop, &d), 0);
    start = thread_cpu_ns();
    wall_end = mono_ns() + 10000 * MS;
    while (thread_cpu_ns() - start < 400 * MS && mono_ns() < wall_end) {
        void *p = lib_malloc(40 + (k++ % 8) * 8);
        ck_assert_ptr_nonnull(p);
        lib_free(p);
        if (k % 256 == 0) {
            pp_cpu_drain(keep, &ss);
        }
    }
    atomic_store(&d.stop, 1);
    pthread_join(t, NULL);
    pp_cpu_stop(keep, &ss);
    pp_heap_stop();

    memset(&hs, 0, sizeof(hs));
    namer_init(&hs.nm);
    for (i = 0; i < ss.n; i++) {
        uint32_t j;
        for (j = 0; j < ss.s[i].npcs; j++) {
            if (strcmp(pc_function(&hs.nm, ss.s[i].pcs[j], j > 0), "sample") == 0) {
                in_sampler++;
                break;
            }
        }
    }
    ck_assert_int_eq(pp_heap_serialize(&buf, &len), 0);
    ck_assert_int_eq(pp_stacktab_parse(buf, len, scan_bucket, &hs), 0);
    free(buf);
    fprintf(stderr, "nesting: %u allocations, %zu CPU samples (%zu inside the heap "
            "sampler), %d thread dumps, %d heap stacks of the library's malloc\n", k, ss.n,
            in_sampler, d.captures, hs.from_lib);
    ck_assert_msg(hs.from_lib > 0, "the heap sampler sampled nothing");
    ck_assert_msg(in_sampler > 0, "no CPU sample landed inside the heap sampler "
                  "(%zu samples)", ss.n);
    ck_assert_int_gt(d.captures, 0);
    ck_assert_msg(hs.bad == 0, "%d heap samples were taken inside one of our handlers (%s)",
                  hs.bad, hs.first_bad);
    namer_free(&hs.nm);
    free(ss.s);
    pp_heap_reset();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_cpu");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, samples_follow_the_work_and_name_it);
    tcase_add_test(tc, a_sample_never_ends_a_wait);
    tcase_add_test(tc, threads_started_later_are_sampled_after_refresh);
    tcase_add_test(tc, a_check_arms_new_threads_however_they_came);
    tcase_add_test(tc, an_unwarmed_thread_gives_leaf_only_samples);
#if defined(__x86_64__)
    tcase_add_test(tc, an_allowed_unwarmed_thread_gives_whole_stacks);
#endif
    tcase_add_test(tc, samples_carry_their_threads_tag);
    tcase_add_test(tc, stop_restores_the_disposition_and_leaves_no_timer);
    tcase_add_test(tc, start_refuses_a_foreign_handler_and_a_second_start);
    tcase_add_test(tc, sigprof_stays_with_its_owner_while_sampling);
    tcase_add_test(tc, a_full_ring_drops_and_counts);
    tcase_add_test(tc, the_handler_can_be_measured);
    tcase_add_test(tc, invalid_arguments_leave_nothing_installed);
    tcase_add_test(tc, our_two_handlers_mask_each_other);
    tcase_add_test(tc, heap_sampling_and_our_handlers_nest_safely);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
