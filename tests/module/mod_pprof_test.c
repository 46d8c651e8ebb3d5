/* mod_pprof_test: a test-only module with deterministic workloads, so tests can check
 * what the profiles show. Never installed. Handler "pprof-test"; the last path segment
 * picks the workload:
 *   burn?ms=N      CPU in pprof_test_hot_a and pprof_test_hot_b, 3:1 by work done
 *                  (&block_rtmin_plus=K: with SIGRTMIN+K blocked meanwhile)
 *   cpuburn?ms=N   N ms of this thread's CPU time (not wall time, which a loaded machine
 *                  stretches) in pprof_test_burn_cpu, which calls pprof_test_hot_a and _b
 *                  as burn does; answers "burned X ms cpu pid=P t0=T0 t1=T1": X the thread
 *                  CPU time it took, measured, T0 and T1 the burn's start and end (Unix
 *                  time, microseconds)
 *   sleep?ms=N     sleeps in pprof_test_sleep
 *   retain?bytes=N allocates and keeps N bytes from pprof_test_retain (per child)
 *   churn?bytes=N  allocates and frees N bytes in pprof_test_churn
 *   mmap?mib=N&keep=1  maps N MiB in 2 MiB anonymous private chunks (as PHP's Zend MM
 *                  takes its memory) from pprof_test_mmap_chunk; keep=1 (default) keeps
 *                  them (per child), keep=0 unmaps each at once
 *   munmap         unmaps every chunk this child kept
 *   lock?ms=N      holds a process-wide mutex for N ms in pprof_test_lock_hold
 *   fight?threads=T&ms=N  T threads fight over one mutex, each holding it N ms: each
 *                  waits in pprof_test_fight_wait (pthread_mutex_lock) and unlocks in
 *                  pprof_test_fight_unlock; answers "fought T waited X ms", X the waiting
 *                  measured around every pthread_mutex_lock, summed
 *   waitsem?ms=N   one sem_timedwait until N ms from now on a semaphore nobody posts, in
 *                  pprof_test_wait_sem; answers "waited X ms"
 *   waitrw?ms=N    a thread holds a rwlock for writing N ms while pprof_test_wait_rw
 *                  waits in pthread_rwlock_rdlock; answers "waited X ms"
 *   backend?ms=N   waits N ms in poll() for a peer that does not answer, in
 *                  pprof_test_backend_wait (a slow backend)
 *   waitsleep?ms=N one usleep(N ms) in pprof_test_wait_sleep, not retried
 *   waitpoll?ms=N  one poll(N ms) on a pipe nobody writes, in pprof_test_wait_poll
 *   waitcond?ms=N  one pthread_cond_timedwait until N ms from now, nobody signalling,
 *                  in pprof_test_wait_cond
 *                  (each of the three answers "slept|polled|waited X ms": its length,
 *                  measured around the one call, which an interruption would cut short)
 *   thread?ms=N    starts a thread (pprof_test_thread_main) that lives N ms
 *   dlopen?lib=PATH&bytes=N  dlopens PATH at run time and calls its ppt_retain_named(N)
 *                  (tests/unit/pp_alloc_testlib.c): an object loaded after start-up
 *   addr           prints "0xADDR pprof_test_hot_a" (and _b) for the symbol tests
 *   spread?hold=H&cpu=C&token=T  sleeps H ms, then burns C ms of this thread's CPU time
 *                  (not wall time: a loaded machine still gives every profile its
 *                  samples) in pprof_test_hot_a/b, but only in the first request of
 *                  each child to carry token T; answers "spread pid=P burned=0|1". Many
 *                  at once fill every worker of every child during the hold: each child
 *                  then burns once, whatever the kernel's choice of who accepts
 *   pid            prints this child's pid
 *   extended       prints "extended N": httpd's ap_extended_status in this child
 * Functions are noinline and built with -fno-inline so their names are on the stack. */
#include "httpd.h"
#include "http_config.h"
#include "http_protocol.h"
#include "http_log.h"
#include "scoreboard.h"
#include "util_script.h"
#include "apr_strings.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#define NOINLINE __attribute__((noinline, used))

/* Exported (not static) so that their names are in .dynsym as well as .symtab. */
void pprof_test_hot_a(int units);
void pprof_test_hot_b(int units);
void pprof_test_sleep(long ms);
void pprof_test_backend_wait(long ms);
void *pprof_test_retain(size_t bytes);
void pprof_test_churn(size_t bytes);
int pprof_test_mmap_chunk(int keep);
void pprof_test_munmap_all(void);
void pprof_test_lock_hold(long ms);
double pprof_test_wait_sleep(long ms);
double pprof_test_wait_poll(long ms);
double pprof_test_wait_cond(long ms);
int pprof_test_spawn(long ms);

volatile unsigned long pprof_test_sink;
static pthread_mutex_t test_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_mutex_t retain_lock = PTHREAD_MUTEX_INITIALIZER;
static void **retained;
static size_t nretained, capretained;
#define CHUNK (2u << 20)
static void **chunks;                   /* under retain_lock */
static size_t nchunks, capchunks;

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* The unit of work: a fixed loop, so work (not time) sets the ratio. */
static NOINLINE void burn_unit(void)
{
    unsigned long x = pprof_test_sink;
    int i;
    for (i = 0; i < 20000; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
    }
    pprof_test_sink = x;
}

NOINLINE void pprof_test_hot_a(int units)
{
    int i;
    for (i = 0; i < units; i++) {
        burn_unit();
    }
    pprof_test_sink++;
}

NOINLINE void pprof_test_hot_b(int units)
{
    int i;
    for (i = 0; i < units; i++) {
        burn_unit();
    }
    pprof_test_sink += 2;
}

/* Burn for about ms milliseconds of wall time, in rounds of 3 units in a, 1 in b. */
static NOINLINE void pprof_test_burn(long ms)
{
    double end = now_ms() + (double)ms;
    do {
        pprof_test_hot_a(3);
        pprof_test_hot_b(1);
    } while (now_ms() < end);
}

static double thread_cpu_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static apr_int64_t unix_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (apr_int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

double pprof_test_burn_cpu(long ms);

/* Burn ms of this thread's CPU time, in the rounds of pprof_test_burn; the CPU time it
 * took. Everything it runs (the clock reads too) has it on the stack. */
NOINLINE double pprof_test_burn_cpu(long ms)
{
    double start = thread_cpu_ms(), now;
    do {
        pprof_test_hot_a(3);
        pprof_test_hot_b(1);
    } while ((now = thread_cpu_ms()) < start + (double)ms);
    return now - start;
}

NOINLINE void pprof_test_sleep(long ms)
{
    struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0) {
    }
}

NOINLINE void *pprof_test_retain(size_t bytes)
{
    void *p = malloc(bytes);
    if (!p) {
        return NULL;
    }
    memset(p, 1, bytes);
    pthread_mutex_lock(&retain_lock);
    if (nretained == capretained) {
        size_t ncap = capretained ? capretained * 2 : 64;
        void **n = realloc(retained, ncap * sizeof(void *));
        if (!n) {
            pthread_mutex_unlock(&retain_lock);
            free(p);
            return NULL;
        }
        retained = n;
        capretained = ncap;
    }
    retained[nretained++] = p;
    pthread_mutex_unlock(&retain_lock);
    return p;
}

NOINLINE void pprof_test_churn(size_t bytes)
{
    void *p = malloc(bytes);
    if (p) {
        memset(p, 2, bytes);
        pprof_test_sink += ((unsigned char *)p)[bytes / 2];
        free(p);
    }
}

NOINLINE int pprof_test_mmap_chunk(int keep)
{
    void *p = mmap(NULL, CHUNK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    if (p == MAP_FAILED) {
        return -1;
    }
    ((char *)p)[0] = 1;                 /* one page in use: the test looks at no RSS */
    if (!keep) {
        return munmap(p, CHUNK);
    }
    pthread_mutex_lock(&retain_lock);
    if (nchunks == capchunks) {
        size_t ncap = capchunks ? capchunks * 2 : 64;
        void **n = realloc(chunks, ncap * sizeof(void *));
        if (!n) {
            pthread_mutex_unlock(&retain_lock);
            munmap(p, CHUNK);
            return -1;
        }
        chunks = n;
        capchunks = ncap;
    }
    chunks[nchunks++] = p;
    pthread_mutex_unlock(&retain_lock);
    return 0;
}

NOINLINE void pprof_test_munmap_all(void)
{
    pthread_mutex_lock(&retain_lock);
    while (nchunks > 0) {
        munmap(chunks[--nchunks], CHUNK);
    }
    pthread_mutex_unlock(&retain_lock);
}

NOINLINE void pprof_test_backend_wait(long ms)
{
    int fds[2];

    if (pipe(fds) == 0) {
        struct pollfd p = { fds[0], POLLIN, 0 };
        poll(&p, 1, (int)ms);
        close(fds[0]);
        close(fds[1]);
    }
}

/* Waits of known length, one call each (an interruption is not retried): how long they
 * took, in ms. */
NOINLINE double pprof_test_wait_sleep(long ms)
{
    double t0 = now_ms();
    usleep((useconds_t)ms * 1000u);
    return now_ms() - t0;
}

NOINLINE double pprof_test_wait_poll(long ms)
{
    int fds[2];
    double t0 = now_ms(), took;

    if (pipe(fds) != 0) {
        return -1;
    }
    {
        struct pollfd p = { fds[0], POLLIN, 0 };
        t0 = now_ms();
        poll(&p, 1, (int)ms);
        took = now_ms() - t0;
    }
    close(fds[0]);
    close(fds[1]);
    return took;
}

NOINLINE double pprof_test_wait_cond(long ms)
{
    pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
    pthread_cond_t cv;
    pthread_condattr_t ca;
    struct timespec until;
    double t0, took;

    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&cv, &ca);
    pthread_condattr_destroy(&ca);
    pthread_mutex_lock(&mu);
    t0 = now_ms();
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_cond_timedwait(&cv, &mu, &until);
    took = now_ms() - t0;
    pthread_mutex_unlock(&mu);
    pthread_cond_destroy(&cv);
    return took;
}

NOINLINE void pprof_test_lock_hold(long ms)
{
    pthread_mutex_lock(&test_lock);
    pprof_test_sleep(ms);
    pthread_mutex_unlock(&test_lock);
}

typedef struct {
    pthread_mutex_t mu;
    pthread_barrier_t go;
    long ms;
    double waited;              /* under mu */
} fight;

double pprof_test_wait_sem(long ms);
double pprof_test_wait_rw(long ms);

NOINLINE double pprof_test_wait_sem(long ms)
{
    sem_t sem;
    struct timespec until;
    double t0, took;

    sem_init(&sem, 0, 0);
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    t0 = now_ms();
    while (sem_timedwait(&sem, &until) != 0 && errno == EINTR) {
    }
    took = now_ms() - t0;
    sem_destroy(&sem);
    return took;
}

typedef struct {
    pthread_rwlock_t rw;
    pthread_barrier_t held;
    long ms;
} rwhold;

static NOINLINE void *pprof_test_rw_writer(void *arg)
{
    rwhold *h = arg;
    pthread_rwlock_wrlock(&h->rw);
    pthread_barrier_wait(&h->held);
    pprof_test_sleep(h->ms);
    pthread_rwlock_unlock(&h->rw);
    return NULL;
}

NOINLINE double pprof_test_wait_rw(long ms)
{
    rwhold h;
    pthread_t t;
    double t0, took;

    pthread_rwlock_init(&h.rw, NULL);
    pthread_barrier_init(&h.held, NULL, 2);
    h.ms = ms;
    if (pthread_create(&t, NULL, pprof_test_rw_writer, &h) != 0) {
        return -1;
    }
    pthread_barrier_wait(&h.held);
    t0 = now_ms();
    pthread_rwlock_rdlock(&h.rw);
    took = now_ms() - t0;
    pthread_rwlock_unlock(&h.rw);
    pthread_join(t, NULL);
    pthread_barrier_destroy(&h.held);
    pthread_rwlock_destroy(&h.rw);
    return took;
}

void pprof_test_fight_unlock(fight *f);
void pprof_test_fight_wait(fight *f);
double pprof_test_fight(long nthreads, long ms);

NOINLINE void pprof_test_fight_unlock(fight *f)
{
    pthread_mutex_unlock(&f->mu);
}

NOINLINE void pprof_test_fight_wait(fight *f)
{
    double t0 = now_ms(), w;
    pthread_mutex_lock(&f->mu);
    w = now_ms() - t0;
    f->waited += w;
    pprof_test_sleep(f->ms);
    pprof_test_fight_unlock(f);
}

static NOINLINE void *pprof_test_fight_main(void *arg)
{
    fight *f = arg;
    pthread_barrier_wait(&f->go);
    pprof_test_fight_wait(f);
    return NULL;
}

NOINLINE double pprof_test_fight(long nthreads, long ms)
{
    fight f;
    pthread_t t[64];
    long i, n = 0;

    pthread_mutex_init(&f.mu, NULL);
    pthread_barrier_init(&f.go, NULL, (unsigned)nthreads);
    f.ms = ms;
    f.waited = 0;
    for (i = 0; i < nthreads; i++) {
        if (pthread_create(&t[i], NULL, pprof_test_fight_main, &f) != 0) {
            break;
        }
        n++;
    }
    for (i = 0; i < n; i++) {
        pthread_join(t[i], NULL);
    }
    pthread_barrier_destroy(&f.go);
    pthread_mutex_destroy(&f.mu);
    return n == nthreads ? f.waited : -1;
}

static NOINLINE void *pprof_test_thread_main(void *arg)
{
    pprof_test_sleep((long)(intptr_t)arg);
    return NULL;
}

NOINLINE int pprof_test_spawn(long ms)
{
    pthread_t t;
    int rc = pthread_create(&t, NULL, pprof_test_thread_main, (void *)(intptr_t)ms);
    if (rc == 0) {
        pthread_detach(t);
    }
    return rc;
}

/* Another module's handler of a signal (claim-signal): mod_pprof must refuse, not steal. */
void pprof_test_foreign_handler(int sig);
NOINLINE void pprof_test_foreign_handler(int sig)
{
    (void)sig;
}

static long arg_long(apr_table_t *args, const char *name, long dflt, long max)
{
    const char *v = args ? apr_table_get(args, name) : NULL;
    long n = v ? strtol(v, NULL, 10) : dflt;
    if (n < 0) {
        n = 0;
    }
    return n > max ? max : n;
}

static int test_handler(request_rec *r)
{
    apr_table_t *args = NULL;
    const char *what;

    if (!r->handler || strcmp(r->handler, "pprof-test") != 0) {
        return DECLINED;
    }
    what = strrchr(r->uri, '/');
    what = what ? what + 1 : r->uri;
    ap_args_to_table(r, &args);
    ap_set_content_type(r, "text/plain");
    if (strcmp(what, "burn") == 0) {
        sigset_t set, old;
        long k = arg_long(args, "block_rtmin_plus", -1, 20);
        sigemptyset(&set);
        if (apr_table_get(args, "block_rtmin_plus")) {
            sigaddset(&set, SIGRTMIN + (int)k);
        }
        pthread_sigmask(SIG_BLOCK, &set, &old);
        pprof_test_burn(arg_long(args, "ms", 100, 60000));
        pthread_sigmask(SIG_SETMASK, &old, NULL);
    } else if (strcmp(what, "waitsleep") == 0 || strcmp(what, "waitpoll") == 0 ||
               strcmp(what, "waitcond") == 0) {
        long ms = arg_long(args, "ms", 100, 60000);
        double took = what[4] == 's' ? pprof_test_wait_sleep(ms)
                      : what[4] == 'p' ? pprof_test_wait_poll(ms) : pprof_test_wait_cond(ms);
        ap_rprintf(r, "%s %.1f ms pid=%ld\n", what[4] == 's' ? "slept"
                   : what[4] == 'p' ? "polled" : "waited", took, (long)getpid());
        return OK;
    } else if (strcmp(what, "cpuburn") == 0) {
        apr_int64_t t0 = unix_us(), t1;
        double burned = pprof_test_burn_cpu(arg_long(args, "ms", 40, 60000));
        t1 = unix_us();
        ap_rprintf(r, "burned %.3f ms cpu pid=%ld t0=%" APR_INT64_T_FMT " t1=%" APR_INT64_T_FMT
                   "\n", burned, (long)getpid(), t0, t1);
        return OK;
    } else if (strcmp(what, "sleep") == 0) {
        pprof_test_sleep(arg_long(args, "ms", 100, 60000));
    } else if (strcmp(what, "retain") == 0) {
        if (!pprof_test_retain((size_t)arg_long(args, "bytes", 1 << 20, 1L << 30))) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    } else if (strcmp(what, "churn") == 0) {
        long n = arg_long(args, "count", 1, 1000000), i;
        size_t bytes = (size_t)arg_long(args, "bytes", 1 << 20, 1L << 30);
        for (i = 0; i < n; i++) {
            pprof_test_churn(bytes);
        }
    } else if (strcmp(what, "mmap") == 0) {
        long n = arg_long(args, "mib", 2, 4096) / 2, i;
        int keep = (int)arg_long(args, "keep", 1, 1);
        for (i = 0; i < n; i++) {
            if (pprof_test_mmap_chunk(keep) != 0) {
                return HTTP_INTERNAL_SERVER_ERROR;
            }
        }
    } else if (strcmp(what, "munmap") == 0) {
        pprof_test_munmap_all();
    } else if (strcmp(what, "lock") == 0) {
        pprof_test_lock_hold(arg_long(args, "ms", 100, 60000));
    } else if (strcmp(what, "waitsem") == 0 || strcmp(what, "waitrw") == 0) {
        long ms = arg_long(args, "ms", 100, 60000);
        double took = what[4] == 's' ? pprof_test_wait_sem(ms) : pprof_test_wait_rw(ms);
        ap_rprintf(r, "waited %.3f ms\n", took);
        return OK;
    } else if (strcmp(what, "fight") == 0) {
        long n = arg_long(args, "threads", 4, 64);
        double waited;
        if (n < 2) {
            n = 2;
        }
        waited = pprof_test_fight(n, arg_long(args, "ms", 50, 10000));
        if (waited < 0) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
        ap_rprintf(r, "fought %ld waited %.3f ms\n", n, waited);
        return OK;
    } else if (strcmp(what, "backend") == 0) {
        pprof_test_backend_wait(arg_long(args, "ms", 100, 60000));
    } else if (strcmp(what, "thread") == 0) {
        if (pprof_test_spawn(arg_long(args, "ms", 1000, 600000)) != 0) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    } else if (strcmp(what, "dlopen") == 0) {
        const char *lib = apr_table_get(args, "lib");
        void *h = lib ? dlopen(lib, RTLD_NOW) : NULL;
        void *(*retain)(size_t) = h ? (void *(*)(size_t))dlsym(h, "ppt_retain_named") : NULL;
        if (!retain || !retain((size_t)arg_long(args, "bytes", 1 << 20, 1L << 30))) {
            ap_log_rerror(APLOG_MARK, APLOG_ERR, 0, r, "dlopen %s: %s", lib ? lib : "(none)",
                          dlerror());
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    } else if (strcmp(what, "addr") == 0) {
        ap_rprintf(r, "0x%" APR_UINT64_T_HEX_FMT " pprof_test_hot_a\n"
                   "0x%" APR_UINT64_T_HEX_FMT " pprof_test_hot_b\n",
                   (apr_uint64_t)(uintptr_t)pprof_test_hot_a,
                   (apr_uint64_t)(uintptr_t)pprof_test_hot_b);
        return OK;
    } else if (strcmp(what, "claim-signal") == 0) {
        struct sigaction sa;
        memset(&sa, 0, sizeof(sa));
        sa.sa_handler = pprof_test_foreign_handler;
        sigemptyset(&sa.sa_mask);
        if (sigaction(SIGRTMIN + (int)arg_long(args, "rtmin_plus", 6, 20), &sa, NULL) != 0) {
            return HTTP_INTERNAL_SERVER_ERROR;
        }
    } else if (strcmp(what, "spread") == 0) {
        /* The child's last token: one burn per child and token, whichever thread. */
        static long last_token;
        long token = arg_long(args, "token", 0, 1L << 30);
        int burn;
        pprof_test_sleep(arg_long(args, "hold", 0, 60000));
        burn = token && __atomic_exchange_n(&last_token, token, __ATOMIC_ACQ_REL) != token;
        if (burn) {
            pprof_test_burn_cpu(arg_long(args, "cpu", 20, 60000));
        }
        ap_rprintf(r, "spread pid=%ld burned=%d\n", (long)getpid(), burn);
        return OK;
    } else if (strcmp(what, "pid") == 0) {
        ap_rprintf(r, "%ld\n", (long)getpid());
        return OK;
    } else if (strcmp(what, "extended") == 0) {
        ap_rprintf(r, "extended %d\n", ap_extended_status);
        return OK;
    } else {
        return HTTP_NOT_FOUND;
    }
    ap_rprintf(r, "ok %s pid=%ld\n", what, (long)getpid());
    return OK;
}

/* A child that crashes says where, in error_log (a child's stderr), where the tests look
 * ("mod_pprof_test: crash" fails a run, as "exit signal" does): the thread, the signal's
 * code, address and sender, the PC, and the stack (glibc's backtrace, through the signal
 * frame). Then the handler that was there (httpd's sig_coredump) takes it. Test servers
 * dump no core: their children are not dumpable, as in production (the sysfd helper's
 * path is tested that way). Under ASan (allow_user_segv_handler=0) ASan keeps SIGSEGV
 * and reports it itself. */

static const int fatal_sigs[] = { SIGSEGV, SIGBUS, SIGILL, SIGFPE };
static struct sigaction fatal_old[sizeof(fatal_sigs) / sizeof(fatal_sigs[0])];

static void crash_write(const char *s, size_t n)
{
    while (n > 0) {
        ssize_t w = write(2, s, n);
        if (w <= 0) {
            return;
        }
        s += w;
        n -= (size_t)w;
    }
}

static void crash_report(int sig, siginfo_t *si, void *ucv)
{
    const ucontext_t *uc = ucv;
    char line[320], comm[32] = "?";
    void *frames[48];
    int fd, n, i;
    size_t k;

    if ((fd = open("/proc/thread-self/comm", O_RDONLY)) >= 0) {
        ssize_t len = read(fd, comm, sizeof(comm) - 1);
        comm[len > 0 ? len - 1 : 0] = '\0';
        close(fd);
    }
    if (si && si->si_code <= 0) {     /* sent: by whom */
        n = snprintf(line, sizeof(line), "mod_pprof_test: crash: pid %ld tid %ld (%s): "
                     "signal %d sent by pid %ld, pc 0x%llx\n", (long)getpid(),
                     (long)syscall(SYS_gettid), comm, sig, (long)si->si_pid,
                     uc ? (unsigned long long)uc->uc_mcontext.gregs[REG_RIP] : 0ULL);
    } else {                            /* a fault: where */
        n = snprintf(line, sizeof(line), "mod_pprof_test: crash: pid %ld tid %ld (%s): "
                     "signal %d code %d at address %p, pc 0x%llx\n", (long)getpid(),
                     (long)syscall(SYS_gettid), comm, sig, si ? si->si_code : 0,
                     si ? si->si_addr : NULL,
                     uc ? (unsigned long long)uc->uc_mcontext.gregs[REG_RIP] : 0ULL);
    }
    crash_write(line, (size_t)n);
    n = backtrace(frames, (int)(sizeof(frames) / sizeof(frames[0])));
    for (i = 0; i < n; i++) {
        int m = snprintf(line, sizeof(line), "mod_pprof_test: crash:   #%d ", i);
        crash_write(line, (size_t)m);
        backtrace_symbols_fd(&frames[i], 1, 2);
    }
    for (k = 0; k < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); k++) {
        if (fatal_sigs[k] == sig) {
            sigaction(sig, &fatal_old[k], NULL);
        }
    }
    /* A fault happens again on return, under the old handler; a sent signal is sent
     * again (blocked until this handler returns). */
    if (!si || si->si_code <= 0) {
        raise(sig);
    }
}

static void crash_reporter(apr_pool_t *pchild, server_rec *s)
{
    struct sigaction sa;
    void *warm[2];
    size_t k;

    backtrace(warm, 2);         /* loads libgcc_s now, not in the handler */
    memset(&sa, 0, sizeof(sa));
    sa.sa_sigaction = crash_report;
    sa.sa_flags = SA_SIGINFO;
    sigemptyset(&sa.sa_mask);
    for (k = 0; k < sizeof(fatal_sigs) / sizeof(fatal_sigs[0]); k++) {
        sigaction(fatal_sigs[k], &sa, &fatal_old[k]);
    }
}

static void register_hooks(apr_pool_t *p)
{
    ap_hook_handler(test_handler, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(crash_reporter, NULL, NULL, APR_HOOK_REALLY_FIRST);
}

AP_DECLARE_MODULE(pprof_test) = {
    STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL, register_hooks
};
