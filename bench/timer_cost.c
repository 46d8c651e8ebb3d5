/* bench/timer_cost: what armed CPU-time timers cost the kernel paths of a busy process,
 * apart from the samples they deliver. Issue 13's hypothesis: a per-thread timer
 * (timer_create on the thread's CPU clock, SIGEV_THREAD_ID: what pp_cpu arms on every
 * thread) adds kernel work on every tick or context switch of every thread, even idle ones.
 *
 * The work: two threads ping-pong one byte through a pair of pipes (two syscalls and a
 * context switch each way, as an httpd worker woken by its listener), beside IDLE threads
 * blocked in read() the whole time. Configurations, interleaved round by round so that
 * drift hits all alike:
 *   none      no timer
 *   thread    a timer per thread (workers and idle ones), CLOCK of each thread, HZ
 *   process   one process-wide timer (CLOCK_PROCESS_CPUTIME_ID, SIGEV_SIGNAL), HZ
 * Each prints the median over rounds of the process's CPU time per round trip (ns), and its
 * ratio to none. The signal handler does nothing: the samples' own cost is not measured.
 *
 * Build and run:
 *   make bench && taskset -c 0 bench/timer_cost ROUNDS TRIPS IDLE HZ   (15 20000 32 100) */
#define _GNU_SOURCE
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAXT 256

static int ping[2], pong[2], idle_pipe[2];
static pid_t tids[MAXT];
static int ntids;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static volatile long fired;

static void on_signal(int sig)
{
    (void)sig;
    fired++;
}

static void register_self(void)
{
    pthread_mutex_lock(&lock);
    tids[ntids++] = (pid_t)syscall(SYS_gettid);
    pthread_mutex_unlock(&lock);
}

static void *idle_main(void *arg)
{
    char c;

    (void)arg;
    register_self();
    while (read(idle_pipe[0], &c, 1) != 1) {
    }
    return NULL;
}

static void *echo_main(void *arg)
{
    char c;

    (void)arg;
    register_self();
    for (;;) {
        if (read(ping[0], &c, 1) != 1) {
            continue;
        }
        if (c == 'q') {
            return NULL;
        }
        if (write(pong[1], &c, 1) != 1) {
            abort();
        }
    }
}

static int64_t process_cpu_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static int arm(clockid_t clk, int thread_id, timer_t *t, int hz)
{
    struct sigevent sev;
    struct itimerspec its;
    long period = 1000000000L / hz;

    memset(&sev, 0, sizeof(sev));
    sev.sigev_signo = SIGRTMIN + 6;
    if (thread_id) {
        sev.sigev_notify = SIGEV_THREAD_ID;
        sev._sigev_un._tid = thread_id;
    } else {
        sev.sigev_notify = SIGEV_SIGNAL;
    }
    if (timer_create(clk, &sev, t) != 0) {
        return -1;
    }
    its.it_value.tv_sec = 0;
    its.it_value.tv_nsec = 1 + rand() % period;
    its.it_interval.tv_sec = 0;
    its.it_interval.tv_nsec = period;
    return timer_settime(*t, 0, &its, NULL);
}

/* The kernel's MAKE_THREAD_CPUCLOCK(tid, CPUCLOCK_SCHED), as pp_cpu uses. */
static clockid_t thread_clock(pid_t tid)
{
    return (clockid_t)((~(unsigned int)tid << 3) | 6);
}

static double one_round(int mode, int trips, int hz)
{
    timer_t timers[MAXT];
    int n = 0, i;
    int64_t t0, t1;
    char c = 'x';

    if (mode == 1) {
        for (i = 0; i < ntids; i++) {
            if (arm(thread_clock(tids[i]), tids[i], &timers[n], hz) == 0) {
                n++;
            }
        }
    } else if (mode == 2) {
        if (arm(CLOCK_PROCESS_CPUTIME_ID, 0, &timers[n], hz) == 0) {
            n++;
        }
    }
    t0 = process_cpu_ns();
    for (i = 0; i < trips; i++) {
        if (write(ping[1], &c, 1) != 1 || read(pong[0], &c, 1) != 1) {
            abort();
        }
    }
    t1 = process_cpu_ns();
    for (i = 0; i < n; i++) {
        timer_delete(timers[i]);
    }
    return (double)(t1 - t0) / trips;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    int rounds = argc > 1 ? atoi(argv[1]) : 15, trips = argc > 2 ? atoi(argv[2]) : 20000;
    int idle = argc > 3 ? atoi(argv[3]) : 32, hz = argc > 4 ? atoi(argv[4]) : 100;
    static const char *names[3] = { "none", "thread", "process" };
    double res[3][1024], med[3];
    pthread_t th;
    struct sigaction sa;
    int r, m, i;

    if (rounds < 1 || rounds > 1024 || trips < 1 || idle < 0 || idle > MAXT - 3 || hz < 1 ||
        hz > 1000) {
        fprintf(stderr, "usage: timer_cost [ROUNDS<=1024 TRIPS IDLE<=%d HZ<=1000]\n", MAXT - 3);
        return 2;
    }
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESTART;
    sigaction(SIGRTMIN + 6, &sa, NULL);
    if (pipe(ping) || pipe(pong) || pipe(idle_pipe)) {
        return 1;
    }
    register_self();
    pthread_create(&th, NULL, echo_main, NULL);
    for (i = 0; i < idle; i++) {
        pthread_t t;
        pthread_create(&t, NULL, idle_main, NULL);
    }
    while (ntids < idle + 2) {
        usleep(1000);
    }
    one_round(0, trips, hz);    /* warm */
    for (r = 0; r < rounds; r++) {
        for (m = 0; m < 3; m++) {
            int mode = (m + r) % 3;     /* rotate the order */
            res[mode][r] = one_round(mode, trips, hz);
        }
    }
    for (m = 0; m < 3; m++) {
        qsort(res[m], (size_t)rounds, sizeof(double), cmp);
        med[m] = res[m][rounds / 2];
    }
    printf("%d threads (2 busy, %d idle), %d round trips per round, %d rounds, %d Hz; "
           "%ld signals\n", ntids, idle, trips, rounds, hz, (long)fired);
    for (m = 0; m < 3; m++) {
        printf("%-8s %8.0f ns CPU per round trip (p25 %.0f, p75 %.0f)  %+6.2f%%\n", names[m],
               med[m], res[m][rounds / 4], res[m][3 * rounds / 4],
               100.0 * (med[m] / med[0] - 1));
    }
    return 0;
}
