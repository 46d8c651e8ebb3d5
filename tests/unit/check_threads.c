/* Thread stacks on demand, on this process: threads parked in known functions (a pipe
 * read, a condition wait), real signals, real unwinds, names from the symbolizer. Every
 * test runs in its own forked process (Check's default), so each starts with the capture
 * signal at its default disposition and nothing installed. Waits are bounded generously:
 * the bounds only tell "prompt" from "hung" on a loaded machine. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* pthread_setname_np, syscall(SYS_gettid) */
#endif
#include "pp_log.h"
#include "pp_maps.h"
#include "pp_symbolize.h"
#include "pp_tasks.h"
#include "pp_threads.h"

#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <malloc.h>
#include <pthread.h>
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

/* A capture's timeout where every thread is expected to answer: long enough for a loaded
 * machine to schedule them all, and never reached when they do. */
#define ANSWER_MS 20000

static int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void sleep_ms(int ms)
{
    struct timespec ts = { 0, (long)ms * 1000000L };

    nanosleep(&ts, NULL);
}

static uint32_t my_tid(void)
{
    return (uint32_t)syscall(SYS_gettid);
}

/* ---- naming PCs (as check_cpu does) ----------------------------------------------------- */

typedef struct {
    pp_maps *maps;
    pp_symbolizer *sym;
} namer;

static void namer_init(namer *nm)
{
    nm->maps = pp_maps_read(NULL);
    nm->sym = pp_symbolizer_new();
    ck_assert_ptr_nonnull(nm->maps);
    ck_assert_ptr_nonnull(nm->sym);
}

static void namer_free(namer *nm)
{
    pp_maps_free(nm->maps);
    pp_symbolizer_free(nm->sym);
}

static const char *name_of(namer *nm, uint64_t pc)
{
    const pp_map_entry *e = pp_maps_find(nm->maps, pc);
    pp_frame frames[8];
    int n;

    if (!e) {
        return "";
    }
    n = pp_symbolize(nm->sym, e->path, pc - e->start + e->offset, frames, 8);
    return n > 0 && frames[n - 1].function ? frames[n - 1].function : "";
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

static void assert_stack_has(namer *nm, const pp_thread_stack *st, const char *fn)
{
    if (!stack_has(nm, st, fn)) {
        print_stack(nm, st);
        ck_abort_msg("thread %u (%s): no frame in %s", st->tid, st->name, fn);
    }
}

/* ---- threads parked in known functions ------------------------------------------------ */

enum { PARK_READ, PARK_COND };

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
    pthread_t th;
} parked;

void parked_in_read(parked *p);
void parked_in_cond_wait(parked *p);

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

/* Until the thread sleeps in its parking function. */
static void park_wait(parked *p)
{
    int64_t deadline = mono_ns() + 20000 * MS;

    while (!atomic_load(&p->tid) || pp_tasks_state(NULL, atomic_load(&p->tid)) != 'S') {
        ck_assert_msg(mono_ns() < deadline, "thread %s never parked", p->name);
        sleep_ms(1);
    }
}

static void park_send(parked *p, char c)
{
    ck_assert_int_eq(write(p->pipe[1], &c, 1), 1);
}

static void park_stop(parked *p)
{
    if (p->kind == PARK_READ) {
        park_send(p, 'q');
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
    ck_assert_uint_eq(me->pthread, (uint64_t)pthread_self());
    ck_assert_int_eq(me->state, 'R');
    ck_assert_str_eq(me->name, "pp-capturer");
    assert_stack_has(&nm, me, "capture_from_here");

    /* Each parked thread: answered, sleeping, named, and where it waits. */
    for (i = 0; i < 4; i++) {
        const pp_thread_stack *t = find_tid(st, n, atomic_load(&p[i].tid));
        ck_assert_ptr_nonnull(t);
        ck_assert_int_eq(t->result, PP_THREAD_OK);
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

START_TEST(a_thread_that_blocks_the_signal_does_not_answer_and_is_not_waited_for)
{
    parked blocked, open;
    pp_thread_stack *st;
    const pp_thread_stack *t;
    size_t n;
    int64_t t0, took;
    namer nm;

    park_start(&blocked, PARK_READ, 1, "pp-blocked", 0);
    park_start(&open, PARK_COND, 0, "pp-open", 0);
    park_wait(&blocked);
    park_wait(&open);

    t0 = mono_ns();
    ck_assert_int_eq(pp_threads_capture(&st, &n, 300), 0);
    took = mono_ns() - t0;
    /* It waited for the answer the whole timeout (not a millisecond less: rounding once
     * cut it short), and did not hang (a loose bound: the machine may be loaded). */
    ck_assert_int_ge(took, 300 * MS);
    ck_assert_int_lt(took, 15000 * MS);
    ck_assert_uint_eq(n, 3);
    t = find_tid(st, n, atomic_load(&blocked.tid));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
    ck_assert_uint_eq(t->npcs, 0);
    /* What /proc says is still there. */
    ck_assert_int_eq(t->state, 'S');
    ck_assert_str_eq(t->name, "pp-blocked");
    t = find_tid(st, n, atomic_load(&open.tid));
    ck_assert_int_eq(t->result, PP_THREAD_OK);

    /* The thread unblocks the signal: the late answer comes and is thrown away (the
     * capture is over), the results handed out stay as they were. */
    park_send(&blocked, 'u');
    while (!atomic_load(&blocked.unblocked)) {
        sleep_ms(1);
    }
    t = find_tid(st, n, atomic_load(&blocked.tid));
    ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
    ck_assert_uint_eq(t->npcs, 0);
    free(st);

    /* And it answers the next capture where it waits. */
    park_wait(&blocked);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    t = find_tid(st, n, atomic_load(&blocked.tid));
    ck_assert_int_eq(t->result, PP_THREAD_OK);
    namer_init(&nm);
    assert_stack_has(&nm, t, "parked_in_read");
    namer_free(&nm);
    free(st);
    park_stop(&blocked);
    park_stop(&open);
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

    park_start(&blocked, PARK_READ, 1, "pp-blocked", 0);
    park_wait(&blocked);
    ck_assert_int_eq(pp_threads_capture(&st, &n, 100), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&blocked.tid))->result, PP_THREAD_NO_ANSWER);
    free(st);
    /* Its request is still pending: it is not asked again, so not waited for either
     * (a capture that waited would take its whole timeout). */
    for (k = 0; k < 3; k++) {
        t0 = mono_ns();
        ck_assert_int_eq(pp_threads_capture(&st, &n, 10000), 0);
        ck_assert_int_lt(mono_ns() - t0, 8000 * MS);
        t = find_tid(st, n, atomic_load(&blocked.tid));
        ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
        ck_assert_int_eq(t->state, 'S');
        ck_assert_str_eq(t->name, "pp-blocked");
        free(st);
    }
    /* One request waits in the kernel, not four. */
    park_send(&blocked, 'c');
    deadline = mono_ns() + 20000 * MS;
    while (!atomic_load(&blocked.queued)) {
        ck_assert(mono_ns() < deadline);
        sleep_ms(1);
    }
    ck_assert_int_eq(atomic_load(&blocked.queued) - 1, 1);
    park_stop(&blocked);
}
END_TEST

START_TEST(a_request_the_kernel_refuses_is_no_answer_not_gone)
{
    parked p;
    pp_thread_stack *st;
    const pp_thread_stack *t;
    size_t n;
    struct rlimit rl, none;
    int64_t t0;

    park_start(&p, PARK_COND, 0, "pp-alive", 0);
    park_wait(&p);
    /* No queued signal may be pending: every request fails with EAGAIN. */
    ck_assert_int_eq(getrlimit(RLIMIT_SIGPENDING, &rl), 0);
    none = rl;
    none.rlim_cur = 0;
    ck_assert_int_eq(setrlimit(RLIMIT_SIGPENDING, &none), 0);
    t0 = mono_ns();
    ck_assert_int_eq(pp_threads_capture(&st, &n, 10000), 0);
    /* Nothing to wait for. */
    ck_assert_int_lt(mono_ns() - t0, 8000 * MS);
    t = find_tid(st, n, atomic_load(&p.tid));
    ck_assert_ptr_nonnull(t);
    ck_assert_int_eq(t->result, PP_THREAD_NO_ANSWER);
    ck_assert_int_eq(t->state, 'S');
    ck_assert_int_eq(find_tid(st, n, my_tid())->result, PP_THREAD_SELF);
    free(st);

    ck_assert_int_eq(setrlimit(RLIMIT_SIGPENDING, &rl), 0);
    ck_assert_int_eq(pp_threads_capture(&st, &n, ANSWER_MS), 0);
    ck_assert_int_eq(find_tid(st, n, atomic_load(&p.tid))->result, PP_THREAD_OK);
    free(st);
    park_stop(&p);
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
    SRunner *sr;
    int failed;

    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, capture_names_every_thread_where_it_waits);
    tcase_add_test(tc, the_signal_can_be_set_before_the_first_capture_only);
    tcase_add_test(tc, a_foreign_handler_refuses_the_capture_and_is_logged);
    tcase_add_test(tc, a_thread_that_blocks_the_signal_does_not_answer_and_is_not_waited_for);
    tcase_add_test(tc, a_thread_that_never_answers_holds_one_request_at_most);
    tcase_add_test(tc, a_request_the_kernel_refuses_is_no_answer_not_gone);
    tcase_add_test(tc, repeated_captures_reuse_their_memory);
    tcase_add_test(tc, more_threads_than_the_first_pool_holds);
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
