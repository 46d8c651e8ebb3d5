/* Thread stacks on demand, on this process: threads parked in known functions (a pipe
 * read, a condition wait), real signals, real unwinds, names from the symbolizer. Every
 * test runs in its own forked process (Check's default), so each starts with the capture
 * signal at its default disposition and nothing installed. Waits are bounded generously:
 * the bounds only tell "prompt" from "hung" on a loaded machine. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np, syscall(SYS_gettid) */
#endif
#include "pp_cpu.h"
#include "pp_log.h"
#include "pp_maps.h"
#include "pp_symbolize.h"
#include "pp_sysfd.h"
#include "pp_tasks.h"
#include "pp_threads.h"

#include <check.h>
#include "unit_main.h"
#include "unit_util.h"
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <grp.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MS 1000000LL
#define NOINLINE __attribute__((noinline, noclone))

/* A capture's timeout where every thread is expected to answer: long enough for a loaded
 * machine to schedule them all, and never reached when they do. */
#define ANSWER_MS 20000

/* ---- naming PCs (as check_cpu does) ----------------------------------------------------- */

static const char *name_of(namer *nm, uint64_t pc)
{
    return pc_function(nm, pc, 0);
}

/* Whether a captured stack has a frame in fn: pcs[0] is the exact PC, the others return
 * addresses (named by their call instruction). */
static int stack_has(namer *nm, const pp_thread_stack *st, const char *fn)
{
    uint32_t i;

    for (i = 0; i < st->npcs; i++) {
        if (strcmp(name_of(nm, i == 0 ? st->pcs[0] : st->pcs[i] - 1), fn) == 0) {
            return 1;
        }
    }
    return 0;
}

static void print_stack(namer *nm, const pp_thread_stack *st)
{
    uint32_t i;

    fprintf(stderr, "tid %u result %d state %c name %s, %u frames:\n", st->tid,
            (int)st->result, st->state, st->name, st->npcs);
    for (i = 0; i < st->npcs; i++) {
        fprintf(stderr, "  %#llx %s\n", (unsigned long long)st->pcs[i],
                name_of(nm, i == 0 ? st->pcs[0] : st->pcs[i] - 1));
    }
}

/* Under ASan (configure --enable-sanitizers), a thread waiting in a call that ASan
 * intercepts (read, poll...) is cut at the interceptor: libasan keeps frame pointers and
 * the libc call below leaves rbp alone, which the register-only unwinder cannot recover
 * (pp_regunwind.h: cut short, never made up). That, and only under ASan, is forgiven. */
static int cut_at_asan_interceptor(namer *nm, const pp_thread_stack *st)
{
#ifdef __SANITIZE_ADDRESS__
    uint32_t last = st->npcs - 1;

    if (st->npcs > 0 && strncmp(name_of(nm, last == 0 ? st->pcs[0] : st->pcs[last] - 1),
                                "__interceptor_", 14) == 0) {
        fprintf(stderr, "thread %u (%s): cut at ASan's interceptor\n", st->tid, st->name);
        return 1;
    }
#else
    (void)nm;
    (void)st;
#endif
    return 0;
}

static void assert_stack_has(namer *nm, const pp_thread_stack *st, const char *fn)
{
    if (!stack_has(nm, st, fn) && !cut_at_asan_interceptor(nm, st)) {
        print_stack(nm, st);
        ck_abort_msg("thread %u (%s): no frame in %s", st->tid, st->name, fn);
    }
}

/* ---- threads parked in known functions ------------------------------------------------ */

enum { PARK_READ, PARK_COND, PARK_SPIN };

typedef struct {
    int kind;
    int block_signal;           /* block the capture signal before parking */
    char name[16];
    int pipe[2];                /* PARK_READ: one byte per command, 'q' to quit */
    pthread_mutex_t mu;         /* PARK_COND */
    pthread_cond_t cv;
    int quit;
    _Atomic uint32_t tid;
    _Atomic uint64_t self;
    _Atomic int unblocked;      /* command 'u' done: the signal is unblocked */
    _Atomic int queued;         /* command 'c': capture requests taken while blocked, + 1 */
    _Atomic char spin_cmd;      /* PARK_SPIN: the command to run next (0: none) */
    _Atomic int spin_quit;
    pthread_t th;
} parked;

void parked_in_read(parked *p);
void parked_in_cond_wait(parked *p);
void parked_spinning(parked *p);

/* Run one command of parked_in_read's: 'u' unblocks the capture signal, 'c' takes the
 * requests queued for this thread (while it blocks the signal) and counts them. */
static void park_command(parked *p, char c)
{
    if (c == 'u') {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, pp_threads_signal());
        pthread_sigmask(SIG_UNBLOCK, &set, NULL);
        atomic_store(&p->unblocked, 1);
    }
    if (c == 'c') {
        sigset_t set;
        siginfo_t si;
        struct timespec zero = { 0, 0 };
        int k = 0;
        sigemptyset(&set);
        sigaddset(&set, pp_threads_signal());
        while (sigtimedwait(&set, &si, &zero) == pp_threads_signal()) {
            k++;
        }
        atomic_store(&p->queued, k + 1);
    }
}

/* Burns CPU (running, never blocked) until told to quit; runs commands as they come. */
NOINLINE void parked_spinning(parked *p)
{
    volatile uint64_t x = 1;

    while (!atomic_load(&p->spin_quit)) {
        char c = atomic_exchange(&p->spin_cmd, 0);
        int i;
        if (c) {
            park_command(p, c);
        }
        for (i = 0; i < 10000; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        }
    }
    __asm__ volatile("" ::: "memory");
}

/* Reads commands until 'q': 'u' unblocks the capture signal, 'c' takes the requests
 * queued for this thread (while it blocks the signal) and counts them. */
NOINLINE void parked_in_read(parked *p)
{
    char c = 0;

    for (;;) {
        ssize_t n = read(p->pipe[0], &c, 1);
        if (n < 0 && errno == EINTR) {
            continue;
        }
        if (n <= 0 || c == 'q') {
            break;
        }
        park_command(p, c);
    }
    __asm__ volatile("" ::: "memory");
}

NOINLINE void parked_in_cond_wait(parked *p)
{
    pthread_mutex_lock(&p->mu);
    while (!p->quit) {
        pthread_cond_wait(&p->cv, &p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    __asm__ volatile("" ::: "memory");
}

static void *parked_main(void *arg)
{
    parked *p = arg;

    pthread_setname_np(pthread_self(), p->name);
    /* As the threads of a program using the core do (mod_pprof: at each connection). */
    pp_threads_allow();
    if (p->block_signal) {
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, pp_threads_signal());
        pthread_sigmask(SIG_BLOCK, &set, NULL);
    }
    atomic_store(&p->self, (uint64_t)pthread_self());
    atomic_store(&p->tid, my_tid());
    if (p->kind == PARK_READ) {
        parked_in_read(p);
    } else if (p->kind == PARK_SPIN) {
        parked_spinning(p);
    } else {
        parked_in_cond_wait(p);
    }
    __asm__ volatile("" ::: "memory");
    return NULL;
}

static void park_start(parked *p, int kind, int block_signal, const char *name,
                       size_t stack_size)
{
    pthread_attr_t attr;

    memset(p, 0, sizeof(*p));
    p->kind = kind;
    p->block_signal = block_signal;
    snprintf(p->name, sizeof(p->name), "%s", name);
    ck_assert_int_eq(pipe(p->pipe), 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    pthread_attr_init(&attr);
    if (stack_size) {
        pthread_attr_setstacksize(&attr, stack_size);
    }
    ck_assert_int_eq(pthread_create(&p->th, &attr, parked_main, p), 0);
    pthread_attr_destroy(&attr);
}

/* Until the thread sleeps in its parking function (a spinner: until it runs). */
static void park_wait(parked *p)
{
    int64_t deadline = mono_ns() + 20000 * MS;

    while (!atomic_load(&p->tid) ||
           (p->kind != PARK_SPIN && pp_tasks_state(NULL, atomic_load(&p->tid)) != 'S')) {
        ck_assert_msg(mono_ns() < deadline, "thread %s never parked", p->name);
        sleep_ms(1);
    }
}

static void park_send(parked *p, char c)
{
    if (p->kind == PARK_SPIN) {
        atomic_store(&p->spin_cmd, c);
        return;
    }
    ck_assert_int_eq(write(p->pipe[1], &c, 1), 1);
}

static void park_stop(parked *p)
{
    if (p->kind == PARK_READ) {
        park_send(p, 'q');
    } else if (p->kind == PARK_SPIN) {
        atomic_store(&p->spin_quit, 1);
    } else {
        pthread_mutex_lock(&p->mu);
        p->quit = 1;
        pthread_cond_signal(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
    ck_assert_int_eq(pthread_join(p->th, NULL), 0);
    close(p->pipe[0]);
    close(p->pipe[1]);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
}

static const pp_thread_stack *find_tid(const pp_thread_stack *st, size_t n, uint32_t tid)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (st[i].tid == tid) {
            return &st[i];
        }
    }
    return NULL;
}

static void assert_ordered(const pp_thread_stack *st, size_t n)
{
    size_t i;

    for (i = 1; i < n; i++) {
        ck_assert_msg(st[i - 1].tid < st[i].tid, "not ordered by tid at %zu", i);
    }
}

int capture_from_here(pp_thread_stack **out, size_t *n, int timeout_ms);

/* The capturing thread's own stack must show this frame. */
NOINLINE int capture_from_here(pp_thread_stack **out, size_t *n, int timeout_ms)
{
    int rc = pp_threads_capture(out, n, timeout_ms);

    __asm__ volatile("" ::: "memory");
    return rc;
}

/* ---- logs ----------------------------------------------------------------------------- */

static _Atomic int refusals_logged;

static void on_log(void *baton, pp_log_level level, const char *tag, const char *msg)
{
    (void)baton;
    if (level == PP_LOG_WARN && strcmp(tag, "PP0501") == 0 &&
        strstr(msg, "thread stacks cannot be captured")) {
        atomic_fetch_add(&refusals_logged, 1);
    }
}

static void on_foreign(int sig)
{
    (void)sig;
}

static void on_foreign_info(int sig, siginfo_t *si, void *uc)
{
    (void)sig;
    (void)si;
    (void)uc;
}

static void set_handler(int sig, void (*handler)(int))
{
    struct sigaction sa;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(sig, &sa, NULL), 0);
}

/* ---- tests ---------------------------------------------------------------------------- */

/* ---- waits keep their length --------------------------------------------------------- */

#define WAIT_MS 300

typedef struct {
    int kind;                   /* 0 nanosleep, 1 poll, 2 pthread_cond_timedwait, 3 flap */
    _Atomic int stop;
    _Atomic uint32_t tid;
    _Atomic int waits;          /* waits done */
    _Atomic int64_t shortest;   /* ns, the shortest wait measured */
    _Atomic int interrupted;    /* waits that returned EINTR (or a spurious 0) */
    pthread_t th;
} waiter;

void waiting_in_nanosleep(waiter *w);
void waiting_in_poll(waiter *w);
void waiting_in_cond_timedwait(waiter *w);
void flapping(waiter *w);
void burning_cpu(waiter *w);

static void note_wait(waiter *w, int64_t took, int interrupted)
{
    int64_t cur = atomic_load(&w->shortest);

    while (took < cur && !atomic_compare_exchange_weak(&w->shortest, &cur, took)) {
    }
    atomic_fetch_add(&w->interrupted, interrupted);
    atomic_fetch_add(&w->waits, 1);
}

/* Each wait is one call, never retried: an interrupted one shows up short. */
NOINLINE void waiting_in_nanosleep(waiter *w)
{
    while (!atomic_load(&w->stop)) {
        struct timespec ts = { 0, WAIT_MS * 1000000L };
        int64_t t0 = mono_ns();
        int rc = nanosleep(&ts, NULL);
        note_wait(w, mono_ns() - t0, rc != 0);
    }
    __asm__ volatile("" ::: "memory");
}

NOINLINE void waiting_in_poll(waiter *w)
{
    int fds[2];

    ck_assert_int_eq(pipe(fds), 0);
    while (!atomic_load(&w->stop)) {
        struct pollfd pf = { fds[0], POLLIN, 0 };
        int64_t t0 = mono_ns();
        int rc = poll(&pf, 1, WAIT_MS);
        note_wait(w, mono_ns() - t0, rc != 0);
    }
    close(fds[0]);
    close(fds[1]);
    __asm__ volatile("" ::: "memory");
}

NOINLINE void waiting_in_cond_timedwait(waiter *w)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv = PTHREAD_COND_INITIALIZER;

    pthread_mutex_lock(&mu);
    while (!atomic_load(&w->stop)) {
        struct timespec until;
        int64_t t0 = mono_ns();
        int rc;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += WAIT_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        rc = pthread_cond_timedwait(&cv, &mu, &until);
        note_wait(w, mono_ns() - t0, rc != ETIMEDOUT);
    }
    pthread_mutex_unlock(&mu);
    __asm__ volatile("" ::: "memory");
}

/* Blocks 1 ms, runs a little, over and over: caught between the two, its stack must
 * still be whole. */
NOINLINE void flapping(waiter *w)
{
    volatile uint64_t x = 1;

    while (!atomic_load(&w->stop)) {
        struct timespec ts = { 0, 1000000L };
        int i;
        int64_t t0 = mono_ns();
        int rc = nanosleep(&ts, NULL);
        note_wait(w, (mono_ns() - t0) * WAIT_MS, rc != 0);
        for (i = 0; i < 20000; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        }
    }
    __asm__ volatile("" ::: "memory");
}

NOINLINE void burning_cpu(waiter *w)
{
    volatile uint64_t x = 1;

    while (!atomic_load(&w->stop)) {
        int i;
        for (i = 0; i < 10000; i++) {
            x = x * 6364136223846793005ULL + 1442695040888963407ULL;
        }
    }
    __asm__ volatile("" ::: "memory");
}

static void *waiter_main(void *arg)
{
    waiter *w = arg;

    pp_threads_allow();
    pp_cpu_thread_warm();
    atomic_store(&w->tid, my_tid());
    switch (w->kind) {
    case 0:
        waiting_in_nanosleep(w);
        break;
    case 1:
        waiting_in_poll(w);
        break;
    case 2:
        waiting_in_cond_timedwait(w);
        break;
    case 3:
        flapping(w);
        break;
    default:
        burning_cpu(w);
        break;
    }
    __asm__ volatile("" ::: "memory");
    return NULL;
}

static void count_sample(void *baton, const pp_cpu_sample *smp)
{
    (void)smp;
    (*(size_t *)baton)++;
}

START_TEST(waits_keep_their_length_while_captures_and_cpu_samples_come)
{
    static const char *const fn[] = { "waiting_in_nanosleep", "waiting_in_poll",
                                      "waiting_in_cond_timedwait", "flapping", "burning_cpu" };
    waiter w[5];
    pp_thread_stack *st;
    size_t n, samples = 0;
    int i, k, by_signal = 0;
    namer nm;

    memset(w, 0, sizeof(w));
    for (i = 0; i < 5; i++) {
        w[i].kind = i;
        atomic_store(&w[i].shortest, INT64_MAX);
        ck_assert_int_eq(pthread_create(&w[i].th, NULL, waiter_main, &w[i]), 0);
    }
    /* Every waiter has begun its first wait. */
    for (i = 0; i < 5; i++) {
        int64_t deadline = mono_ns() + 20000 * MS;
        while (!atomic_load(&w[i].tid) ||
               (i < 3 && pp_tasks_state(NULL, atomic_load(&w[i].tid)) != 'S')) {
            ck_assert(mono_ns() < deadline);
            sleep_ms(1);
        }
    }
    /* A CPU profile at the highest rate the module allows, all along. */
    ck_assert_int_eq(pp_cpu_start(1000, 4096), 0);
    namer_init(&nm);
    for (k = 0; k < 10; k++) {
        ck_assert_int_eq(capture_from_here(&st, &n, ANSWER_MS), 0);
        for (i = 0; i < 5; i++) {
            const pp_thread_stack *t = find_tid(st, n, atomic_load(&w[i].tid));
            ck_assert_ptr_nonnull(t);
            ck_assert_msg(t->result == PP_THREAD_OK, "capture %d: %s did not answer", k,
                          fn[i]);
            assert_stack_has(&nm, t, fn[i]);
            assert_stack_has(&nm, t, "waiter_main");
            /* The waits in a wait: never signalled. */
            if (i < 3 && t->state == 'S') {
                ck_assert_int_eq(t->how, PP_THREAD_BY_PROC);
            }
            by_signal += i == 4 && t->how == PP_THREAD_BY_SIGNAL;
        }
        free(st);
        pp_cpu_drain(count_sample, &samples);
        sleep_ms(20);
    }
    pp_cpu_refresh_threads();
    namer_free(&nm);
    /* The burner runs all along: caught in its handler. */
    ck_assert_int_ge(by_signal, 8);
    for (i = 0; i < 5; i++) {
        atomic_store(&w[i].stop, 1);
    }
    for (i = 0; i < 5; i++) {
        ck_assert_int_eq(pthread_join(w[i].th, NULL), 0);
    }
    pp_cpu_stop(count_sample, &samples);
    ck_assert_uint_gt(samples, 0);
    for (i = 0; i < 4; i++) {
        ck_assert_msg(atomic_load(&w[i].waits) >= 1, "%s: no wait done", fn[i]);
        ck_assert_msg(atomic_load(&w[i].interrupted) == 0, "%s: %d waits interrupted",
                      fn[i], atomic_load(&w[i].interrupted));
        /* Never shortened (a wait can only be longer: scheduling). */
        ck_assert_msg(atomic_load(&w[i].shortest) >= WAIT_MS * MS, "%s: a wait took %lld ns",
                      fn[i], (long long)atomic_load(&w[i].shortest));
    }
}
END_TEST

/* httpd's children: started as root, running as another user, so not dumpable: /proc
 * shows their files as root's and their own syscall files cannot be opened. The helper
 * started while root opens them for the process. */
START_TEST(a_process_that_changed_its_user_reads_blocked_threads_through_the_helper)
{
    pid_t child;
    int status;

    if (geteuid() != 0) {
        fprintf(stderr, "not root: the helper is not needed, not tested here\n");
        return;
    }
    ck_assert_int_eq(pp_sysfd_helper_start(), 1);
    child = fork();
    ck_assert_int_ge(child, 0);
    if (child == 0) {
        parked p;
        pp_thread_stack *st;
        size_t n;
        char path[96], buf[256];
        gid_t nobody = 65534;
        const pp_thread_stack *t;
        namer nm;
        int rc;

        if (setgroups(1, &nobody) != 0 || setresgid(65534, 65534, 65534) != 0 ||
            setresuid(65534, 65534, 65534) != 0) {
            _exit(10);
        }
        park_start(&p, PARK_COND, 0, "pp-nobody", 0);
        park_wait(&p);
        snprintf(path, sizeof(path), "/proc/self/task/%u/syscall", atomic_load(&p.tid));
        if (open(path, O_RDONLY) >= 0 || errno != EACCES) {
            _exit(11);              /* the case this is for: it cannot be opened */
        }
        {
            /* Parked ('S') may first be another wait (the cond's mutex, a lazy binding):
             * on a loaded machine, give it a moment to reach the condition wait. */
            int64_t until = mono_ns() + 5000 * MS;
            int got;
            while ((got = pp_sysfd_read(atomic_load(&p.tid), buf, sizeof(buf))) <= 0 ||
                   strncmp(buf, "202 ", 4) != 0) {
                if (mono_ns() > until) {
                    fprintf(stderr, "helper read %d: %.60s\n", got, got > 0 ? buf : "");
                    _exit(12);      /* futex */
                }
                sleep_ms(10);
            }
        }
        if (pp_threads_capture(&st, &n, ANSWER_MS) != 0) {
            _exit(13);
        }
        t = find_tid(st, n, atomic_load(&p.tid));
        namer_init(&nm);
        rc = !t || t->result != PP_THREAD_OK || t->how != PP_THREAD_BY_PROC
             ? 14 : !stack_has(&nm, t, "parked_in_cond_wait") ? 15 : 0;
        if (rc == 15) {
            print_stack(&nm, t);
        }
        _exit(rc);
    }
    ck_assert_int_eq(waitpid(child, &status, 0), child);
    ck_assert_msg(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child: status %#x", status);
}
END_TEST

START_TEST(capture_names_every_thread_where_it_waits)
{
    parked p[4];
    pp_thread_stack *st = NULL;
    const pp_thread_stack *me;
    size_t n = 0, i, selves = 0;
    namer nm;

    park_start(&p[0], PARK_READ, 0, "pp-read-0", 0);
    park_start(&p[1], PARK_COND, 0, "pp-cond-1", 0);
    park_start(&p[2], PARK_READ, 0, "pp-read-2", 0);
    park_start(&p[3], PARK_COND, 0, "pp-cond-3", 0);
    for (i = 0; i < 4; i++) {
        park_wait(&p[i]);
    }
    pthread_setname_np(pthread_self(), "pp-capturer");
    ck_assert_int_eq(capture_from_here(&st, &n, ANSWER_MS), 0);
    namer_init(&nm);

    /* Every thread of the process, each once, ordered by tid. */
    ck_assert_uint_eq(n, 5);
    assert_ordered(st, n);
    for (i = 0; i < n; i++) {
        ck_assert_msg(st[i].result == PP_THREAD_OK || st[i].result == PP_THREAD_SELF,
                      "thread %u: result %d", st[i].tid, (int)st[i].result);
        selves += st[i].result == PP_THREAD_SELF;
        ck_assert_uint_gt(st[i].npcs, 0);
        ck_assert_uint_le(st[i].npcs, PP_THREADS_MAX_DEPTH);
    }
    ck_assert_uint_eq(selves, 1);

    /* The capturing thread: captured directly, running. */
    me = find_tid(st, n, my_tid());
    ck_assert_ptr_nonnull(me);
    ck_assert_int_eq(me->result, PP_THREAD_SELF);
    ck_assert_int_eq(me->how, PP_THREAD_BY_SELF);
    ck_assert_uint_eq(me->pthread, (uint64_t)pthread_self());
    ck_assert_int_eq(me->state, 'R');
    ck_assert_str_eq(me->name, "pp-capturer");
    assert_stack_has(&nm, me, "capture_from_here");

    /* Each parked thread: answered, sleeping, named, and where it waits. */
    for (i = 0; i < 4; i++) {
        const pp_thread_stack *t = find_tid(st, n, atomic_load(&p[i].tid));
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->result, PP_THREAD_OK);
        ck_assert_int_eq(t->how, PP_THREAD_BY_PROC);
        ck_assert_uint_eq(t->pthread, atomic_load(&p[i].self));
        ck_assert_int_eq(t->state, 'S');
        ck_assert_str_eq(t->name, p[i].name);
        assert_stack_has(&nm, t, p[i].kind == PARK_READ ? "parked_in_read"
                                                        : "parked_in_cond_wait");
        assert_stack_has(&nm, t, "parked_main");
    }
    free(st);
    namer_free(&nm);
    for (i = 0; i < 4; i++) {
        park_stop(&p[i]);
    }
}
END_TEST

START_TEST(the_signal_can_be_set_before_the_first_capture_only)
{
    int first = SIGRTMIN + 9;
    parked p;
    pp_thread_stack *st;
    size_t n;
    struct sigaction sa;

    ck_assert_int_eq(pp_threads_signal(), SIGRTMIN + 7);
    pp_threads_set_signal(first);
    ck_assert_int_eq(pp_threads_signal(), first);

    park_start(&p, PARK_READ, 0, "pp-read", 0);
    park_wait(&p);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&p.tid))->result, PP_THREAD_OK);
    free(st);

    /* The handler sits on the chosen signal, the default one is untouched. */
    ck_assert_int_eq(sigaction(first, NULL, &sa), 0);
    ck_assert(sa.sa_flags & SA_SIGINFO);
    ck_assert_int_eq(sigaction(SIGRTMIN + 7, NULL, &sa), 0);
    ck_assert(!(sa.sa_flags & SA_SIGINFO));
    ck_assert_ptr_eq((void *)sa.sa_handler, (void *)SIG_DFL);

    /* Too late now: the signal stays, and captures keep working on it. */
    pp_threads_set_signal(SIGRTMIN + 10);
    ck_assert_int_eq(pp_threads_signal(), first);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&p.tid))->result, PP_THREAD_OK);
    free(st);
    ck_assert_int_eq(sigaction(SIGRTMIN + 10, NULL, &sa), 0);
    ck_assert_ptr_eq((void *)sa.sa_handler, (void *)SIG_DFL);
    park_stop(&p);
}
END_TEST

START_TEST(a_foreign_handler_refuses_the_capture_and_is_logged)
{
    pp_thread_stack sentinel, *st = &sentinel;
    size_t n = 12345;
    struct sigaction sa, now;
    parked p;

    pp_log_set(on_log, NULL);
    park_start(&p, PARK_READ, 0, "pp-read", 0);
    park_wait(&p);

    /* A plain handler: refused, logged, left in place, nothing written out. */
    set_handler(pp_threads_signal(), on_foreign);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), -1);
    ck_assert_ptr_eq(st, &sentinel);
    ck_assert_uint_eq(n, 12345);
    ck_assert_int_eq(atomic_load(&refusals_logged), 1);
    ck_assert_int_eq(sigaction(pp_threads_signal(), NULL, &now), 0);
    ck_assert_ptr_eq((void *)now.sa_handler, (void *)on_foreign);

    /* An SA_SIGINFO handler: the same. */
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = on_foreign_info;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    ck_assert_int_eq(sigaction(pp_threads_signal(), &sa, NULL), 0);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), -1);
    ck_assert_int_eq(atomic_load(&refusals_logged), 2);
    ck_assert_int_eq(sigaction(pp_threads_signal(), NULL, &now), 0);
    ck_assert_ptr_eq((void *)now.sa_sigaction, (void *)on_foreign_info);

    /* A refusal fixes nothing: another signal can still be chosen, and works. */
    pp_threads_set_signal(SIGRTMIN + 11);
    ck_assert_int_eq(pp_threads_signal(), SIGRTMIN + 11);
    /* Ignored is not a handler. */
    set_handler(SIGRTMIN + 11, SIG_IGN);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&p.tid))->result, PP_THREAD_OK);
    free(st);
    ck_assert_int_eq(atomic_load(&refusals_logged), 2);
    ck_assert_int_eq(sigaction(SIGRTMIN + 7, NULL, &now), 0);
    ck_assert_ptr_eq((void *)now.sa_sigaction, (void *)on_foreign_info);
    park_stop(&p);
    pp_log_set(NULL, NULL);
}
END_TEST

START_TEST(a_running_thread_that_blocks_the_signal_does_not_answer_and_is_not_waited_for)
{
    parked spinner, sleeper;
    pp_thread_stack *st;
    const pp_thread_stack *t;
    size_t n;
    int64_t t0, took;
    namer nm;

    park_start(&spinner, PARK_SPIN, 1, "pp-blocked", 0);
    /* Blocked in a read with the signal blocked too: that does not matter any more, its
     * stack comes from /proc. */
    park_start(&sleeper, PARK_READ, 1, "pp-sleeper", 0);
    park_wait(&spinner);
    park_wait(&sleeper);

    t0 = mono_ns();
    ck_assert_int_eq(pp_threads_capture(&st, &n, 300), 0);
    took = mono_ns() - t0;
    /* It waited for the answer the whole timeout (not a millisecond less: rounding once
     * cut it short), and did not hang (a loose bound: the machine may be loaded). */
    ck_assert_int_ge(took, 300 * MS);
    ck_assert_int_lt(took, 15000 * MS);
    ck_assert_uint_eq(n, 3);
    t = find_tid(st, n, atomic_load(&spinner.tid));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
    ck_assert_uint_eq(t->npcs, 0);
    /* What /proc says is still there. */
    ck_assert_int_eq(t->state, 'R');
    ck_assert_str_eq(t->name, "pp-blocked");
    namer_init(&nm);
    t = find_tid(st, n, atomic_load(&sleeper.tid));
    ck_assert_int_eq(t->result, PP_THREAD_OK);
    ck_assert_int_eq(t->how, PP_THREAD_BY_PROC);
    assert_stack_has(&nm, t, "parked_in_read");

    /* The thread unblocks the signal: the late answer comes and is thrown away (the
     * capture is over), the results handed out stay as they were. */
    park_send(&spinner, 'u');
    while (!atomic_load(&spinner.unblocked)) {
        sleep_ms(1);
    }
    sleep_ms(20);
    t = find_tid(st, n, atomic_load(&spinner.tid));
    ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
    ck_assert_uint_eq(t->npcs, 0);
    free(st);

    /* And it answers the next capture where it runs. */
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    t = find_tid(st, n, atomic_load(&spinner.tid));
    ck_assert_int_eq(t->result, PP_THREAD_OK);
    ck_assert_int_eq(t->how, PP_THREAD_BY_SIGNAL);
    assert_stack_has(&nm, t, "parked_spinning");
    namer_free(&nm);
    free(st);
    park_stop(&spinner);
    park_stop(&sleeper);
}
END_TEST

START_TEST(a_thread_that_never_answers_holds_one_request_at_most)
{
    parked blocked;
    pp_thread_stack *st;
    const pp_thread_stack *t;
    size_t n;
    int k;
    int64_t deadline, t0;

    park_start(&blocked, PARK_SPIN, 1, "pp-blocked", 0);
    park_wait(&blocked);
    ck_assert_int_eq(pp_threads_capture(&st, &n, 100), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&blocked.tid))->result, PP_THREAD_NO_ANSWER);
    free(st);
    /* Its request is pending once its timer fired (a tick of its CPU time): it is not
     * asked again, so not waited for either (a capture that waited would take its whole
     * timeout). */
    deadline = mono_ns() + 20000 * MS;
    while (pp_tasks_sig_pending(NULL, atomic_load(&blocked.tid), pp_threads_signal()) != 1) {
        ck_assert(mono_ns() < deadline);
        sleep_ms(1);
    }
    for (k = 0; k < 3; k++) {
        t0 = mono_ns();
        ck_assert_int_eq(pp_threads_capture(&st, &n, 10000), 0);
        ck_assert_int_lt(mono_ns() - t0, 8000 * MS);
        t = find_tid(st, n, atomic_load(&blocked.tid));
        ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
        ck_assert_str_eq(t->name, "pp-blocked");
        free(st);
    }
    /* One request waits in the kernel, not four (the kernel may also have dropped the
     * signal of the timer deleted since: none). */
    park_send(&blocked, 'c');
    deadline = mono_ns() + 20000 * MS;
    while (!atomic_load(&blocked.queued)) {
        ck_assert(mono_ns() < deadline);
        sleep_ms(1);
    }
    ck_assert_int_le(atomic_load(&blocked.queued) - 1, 1);
    park_stop(&blocked);
}
END_TEST

START_TEST(a_blocked_thread_needs_no_signal_queued)
{
    parked p, spinner;
    pp_thread_stack *st;
    const pp_thread_stack *t;
    size_t n;
    struct rlimit rl, none;
    int64_t t0;

    park_start(&p, PARK_COND, 0, "pp-alive", 0);
    park_start(&spinner, PARK_SPIN, 0, "pp-spinner", 0);
    park_wait(&p);
    park_wait(&spinner);
    /* No queued signal may be pending: a request may fail with EAGAIN. */
    ck_assert_int_eq(getrlimit(RLIMIT_SIGPENDING, &rl), 0);
    none = rl;
    none.rlim_cur = 0;
    ck_assert_int_eq(setrlimit(RLIMIT_SIGPENDING, &none), 0);
    t0 = mono_ns();
    ck_assert_int_eq(pp_threads_capture(&st, &n, 10000), 0);
    ck_assert_int_lt(mono_ns() - t0, 8000 * MS);
    /* Blocked: taken from /proc, no signal needed. */
    t = find_tid(st, n, atomic_load(&p.tid));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->result, PP_THREAD_OK);
    ck_assert_int_eq(t->how, PP_THREAD_BY_PROC);
    ck_assert_int_eq(t->state, 'S');
    /* Running: answered or not (whether the kernel charges a timer's signal to the
     * limit depends on its version), but never taken for gone. */
    t = find_tid(st, n, atomic_load(&spinner.tid));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_ne(t->result, PP_THREAD_GONE);
    ck_assert_int_eq(find_tid(st, n, my_tid())->result, PP_THREAD_SELF);
    free(st);

    ck_assert_int_eq(setrlimit(RLIMIT_SIGPENDING, &rl), 0);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&p.tid))->result, PP_THREAD_OK);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&spinner.tid))->result, PP_THREAD_OK);
    free(st);
    park_stop(&p);
    park_stop(&spinner);
}
END_TEST

static size_t open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    struct dirent *de;
    size_t n = 0;

    ck_assert_ptr_nonnull(d);
    while ((de = readdir(d))) {
        n += de->d_name[0] != '.';
    }
    closedir(d);
    return n;
}

static size_t heap_in_use(void)
{
    struct mallinfo2 mi = mallinfo2();

    return mi.uordblks + mi.hblkhd;
}

START_TEST(repeated_captures_reuse_their_memory)
{
    parked p[3];
    pp_thread_stack *st;
    size_t n, i, heap0, fds0;
    int k;

    for (i = 0; i < 3; i++) {
        park_start(&p[i], i == 1 ? PARK_COND : PARK_READ, 0, "pp-parked", 0);
        park_wait(&p[i]);
    }
    /* The first capture installs the handler and allocates the answer pool. */
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    free(st);
    heap0 = heap_in_use();
    fds0 = open_fds();
    for (k = 0; k < 50; k++) {
        ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
        ck_assert_uint_eq(n, 4);
        for (i = 0; i < n; i++) {
            ck_assert(st[i].result == PP_THREAD_OK || st[i].result == PP_THREAD_SELF);
        }
        free(st);
    }
    /* Leaking a result array (4 KiB a capture here) or a directory stream (32 KiB)
     * would show many times over. */
    ck_assert_uint_le(heap_in_use(), heap0 + 8192);
    ck_assert_uint_eq(open_fds(), fds0);
    for (i = 0; i < 3; i++) {
        park_stop(&p[i]);
    }
}
END_TEST

START_TEST(more_threads_than_the_first_pool_holds)
{
    enum { N = 300 };
    parked *p = calloc(N, sizeof(*p));
    pp_thread_stack *st;
    size_t n, i;
    int round;

    ck_assert_ptr_nonnull(p);
    for (i = 0; i < N; i++) {
        park_start(&p[i], PARK_COND, 0, "pp-many", 64 * 1024);
    }
    for (i = 0; i < N; i++) {
        park_wait(&p[i]);
    }
    for (round = 0; round < 2; round++) {
        ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
        ck_assert_uint_eq(n, N + 1);
        assert_ordered(st, n);
        for (i = 0; i < N; i++) {
            const pp_thread_stack *t = find_tid(st, n, atomic_load(&p[i].tid));
            ck_assert_ptr_nonnull(t);
            ck_assert_int_eq(t->result, PP_THREAD_OK);
            ck_assert_uint_eq(t->pthread, atomic_load(&p[i].self));
        }
        free(st);
    }
    for (i = 0; i < N; i++) {
        park_stop(&p[i]);
    }
    free(p);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_threads");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, capture_names_every_thread_where_it_waits);
    tcase_add_test(tc, a_process_that_changed_its_user_reads_blocked_threads_through_the_helper);
    tcase_add_test(tc, waits_keep_their_length_while_captures_and_cpu_samples_come);
    tcase_add_test(tc, the_signal_can_be_set_before_the_first_capture_only);
    tcase_add_test(tc, a_foreign_handler_refuses_the_capture_and_is_logged);
    tcase_add_test(tc, a_running_thread_that_blocks_the_signal_does_not_answer_and_is_not_waited_for);
    tcase_add_test(tc, a_thread_that_never_answers_holds_one_request_at_most);
    tcase_add_test(tc, a_blocked_thread_needs_no_signal_queued);
    tcase_add_test(tc, repeated_captures_reuse_their_memory);
    tcase_add_test(tc, more_threads_than_the_first_pool_holds);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
