/* bench/thread_end_cpu: how much of a thread's CPU time the CPU sampler (pp_cpu) accounts
 * for when the thread ends while sampling, as the worker threads of a recycled child do.
 *
 * A per-thread CPU-time timer expires when the thread's CPU time crosses the next period,
 * but the kernel looks at it only at a scheduler tick that finds the thread running
 * (every 4 ms at HZ=250): the signal comes at that tick, the sample is the code running
 * then. A crossing in a thread's last moments on a CPU (after the last tick that found it
 * running) is never looked at again once the thread ends: that sample is lost. With the
 * random first expiry the sampler is unbiased while a thread runs; the loss is per thread
 * that ends, whatever its CPU.
 *
 * THREADS threads are created and armed (pp_cpu_refresh_threads) while parked, then each
 * burns BURN_MS of its own CPU time in slices of SLICE_MS (sleeping 1 ms between, as a
 * worker between requests) and ends. Printed per BURN_MS: the threads' CPU since they were
 * armed, the samples of their tids, and the samples short of CPU/period per thread.
 *
 * Build and run:
 *   make bench && bench/thread_end_cpu THREADS HZ SLICE_MS BURN_MS...   (40 100 40 20 100 400) */
#define _GNU_SOURCE
#include "pp_cpu.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAXT 256

typedef struct {
    _Atomic uint32_t tid;
    _Atomic int ready, go;
    double burn_ms, slice_ms;
    double cpu_ms;              /* since armed (it was parked then) */
    uint64_t samples;
} bthread;

static bthread th[MAXT];
static int nthreads;
static volatile uint64_t sink;

static double thread_cpu_ms(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void *burner(void *arg)
{
    bthread *b = arg;
    struct timespec nap = { 0, 1000000 };
    double c0, s0;
    uint64_t x = sink;
    int i;

    atomic_store(&b->tid, (uint32_t)syscall(SYS_gettid));
    pp_cpu_thread_warm();
    atomic_store(&b->ready, 1);
    while (!atomic_load(&b->go)) {
        nanosleep(&nap, NULL);
    }
    c0 = thread_cpu_ms();
    while (thread_cpu_ms() - c0 < b->burn_ms) {
        s0 = thread_cpu_ms();
        while (thread_cpu_ms() - s0 < b->slice_ms && thread_cpu_ms() - c0 < b->burn_ms) {
            for (i = 0; i < 1000; i++) {
                x = x * 6364136223846793005ull + 1442695040888963407ull;
            }
        }
        nanosleep(&nap, NULL);
    }
    sink = x;
    b->cpu_ms = thread_cpu_ms() - c0;
    return NULL;
}

static void count(void *baton, const pp_cpu_sample *s)
{
    int i;

    (void)baton;
    for (i = 0; i < nthreads; i++) {
        if (atomic_load(&th[i].tid) == s->tid) {
            th[i].samples += s->weight ? s->weight : 1;
        }
    }
}

static void run(int hz, double slice_ms, double burn_ms)
{
    pthread_t pt[MAXT];
    struct timespec nap = { 0, 20000000 };
    double cpu = 0, period_ms = 1000.0 / hz;
    uint64_t samples = 0;
    int i;

    memset(th, 0, sizeof(th));
    if (pp_cpu_start(hz, 4096) != 0) {
        fprintf(stderr, "pp_cpu_start failed\n");
        exit(1);
    }
    for (i = 0; i < nthreads; i++) {
        th[i].burn_ms = burn_ms;
        th[i].slice_ms = slice_ms;
        pthread_create(&pt[i], NULL, burner, &th[i]);
    }
    for (i = 0; i < nthreads; i++) {
        while (!atomic_load(&th[i].ready)) {
            nanosleep(&nap, NULL);
        }
    }
    /* Armed while parked: what they burn from go on is all sampled. */
    pp_cpu_refresh_threads();
    for (i = 0; i < nthreads; i++) {
        atomic_store(&th[i].go, 1);
    }
    for (i = 0; i < nthreads; i++) {
        while (pthread_tryjoin_np(pt[i], NULL) != 0) {
            pp_cpu_drain(count, NULL);
            nanosleep(&nap, NULL);
        }
    }
    pp_cpu_stop(count, NULL);
    for (i = 0; i < nthreads; i++) {
        cpu += th[i].cpu_ms;
        samples += th[i].samples;
    }
    printf("burn %6.0f ms x %d threads (slices of %.0f ms): CPU %8.1f ms, samples %6llu of "
           "%8.1f expected: %.3f accounted, %.2f periods short per thread\n",
           burn_ms, nthreads, slice_ms, cpu, (unsigned long long)samples, cpu / period_ms,
           samples * period_ms / cpu, (cpu / period_ms - (double)samples) / nthreads);
}

int main(int argc, char **argv)
{
    int hz, i;
    double slice_ms;

    nthreads = argc > 1 ? atoi(argv[1]) : 40;
    hz = argc > 2 ? atoi(argv[2]) : 100;
    slice_ms = argc > 3 ? atof(argv[3]) : 40;
    if (nthreads < 1 || nthreads > MAXT || hz < 1 || hz > 1000 || slice_ms <= 0) {
        fprintf(stderr, "usage: %s THREADS HZ SLICE_MS BURN_MS...\n", argv[0]);
        return 2;
    }
    if (argc <= 4) {
        run(hz, slice_ms, 20);
        run(hz, slice_ms, 100);
        run(hz, slice_ms, 400);
    }
    for (i = 4; i < argc; i++) {
        run(hz, slice_ms, atof(argv[i]));
    }
    return 0;
}
