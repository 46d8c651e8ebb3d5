/* bench/handler_cost: what one CPU sample costs the sampled thread.
 *
 * pp_cpu_measure_handler() raises the sampling signal (SIGRTMIN+6) at this thread; its handler runs the real
 * capture path (unw_backtrace from the signal frame into a sample) and times itself.
 * We call it at the bottom of a recursion of noinline frames, so that the unwinder walks
 * a stack about as deep as a request's in httpd (~30 frames), and with no extra frames
 * for contrast.
 *
 * One sample per call: pp_cpu_measure_handler(out, n) with n > 1 reports the same stale
 * value n times when the compiler keeps its static measured_ns in a register across the
 * raise() loop (GCC -O2 does). With n == 1 each value is a real handler duration at this
 * depth: this call's, or the previous call's if the load was hoisted before raise().
 * The batch call is still used for the round trip (raise + kernel signal delivery +
 * handler + sigreturn): the median over ROUNDS batches of a batch's wall time divided by
 * its n. A round trip with an empty handler of the sampling signal is printed as the kernel-only floor.
 * Everything is interleaved round by round, so drift affects every figure alike.
 *
 * Usage: bench/handler_cost [ITERATIONS [DEPTH]]   (defaults 20000 and 30)
 * Output: one line per depth, times in ns; see bench/README.md. */
#include "pp_cpu.h"

#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define NOINLINE __attribute__((noinline))
#define ROUNDS 21                   /* interleaved rounds; round trips are their median */

static int64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

/* n extra frames, then measure at the bottom: iters samples, one call each, into out
 * (batch == 0), or one batch of iters raises (batch != 0; out[] is then unreliable).
 * The empty asm after the recursive call keeps it from being a tail call, so every
 * level stays on the stack. Returns the captured depth, -1 on failure. */
static NOINLINE int recurse(int n, int64_t *out, int iters, int batch)
{
    int r, i;

    if (n <= 0) {
        if (batch) {
            return pp_cpu_measure_handler(out, iters);
        }
        r = -1;
        for (i = 0; i < iters; i++) {
            if ((r = pp_cpu_measure_handler(&out[i], 1)) < 0) {
                break;
            }
        }
        return r;
    }
    r = recurse(n - 1, out, iters, batch);
    __asm__ volatile("" ::: "memory");
    return r;
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

/* Nearest-rank percentile of a sorted array. */
static int64_t pct(const int64_t *v, int n, double p)
{
    int i = (int)((p / 100.0) * n + 0.999999) - 1;
    if (i < 0) {
        i = 0;
    }
    return v[i >= n ? n - 1 : i];
}

static int64_t median_of(int64_t *v, int n)
{
    qsort(v, (size_t)n, sizeof(*v), cmp_i64);
    return v[n / 2];
}

static void on_empty(int sig)
{
    (void)sig;
}

/* ns per raise(pp_cpu_signal()), over m raises, with a handler that does nothing: the kernel's
 * part of a sample. */
static int64_t empty_batch(int m)
{
    struct sigaction sa, old;
    int64_t t0, t1;
    int i;

    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_empty;
    sigemptyset(&sa.sa_mask);
    if (sigaction(pp_cpu_signal(), &sa, &old) != 0) {
        return -1;
    }
    t0 = now_ns();
    for (i = 0; i < m; i++) {
        raise(pp_cpu_signal());
    }
    t1 = now_ns();
    sigaction(pp_cpu_signal(), &old, NULL);
    return (t1 - t0) / m;
}

/* ns per raise(pp_cpu_signal()), over a batch of m, with the real handler at `extra` frames. */
static int64_t real_batch(int extra, int64_t *scratch, int m)
{
    int64_t t0 = now_ns();
    int depth = recurse(extra, scratch, m, 1);
    return depth < 0 ? -1 : (now_ns() - t0) / m;
}

struct level {
    const char *label;
    int extra, depth;
    int64_t *out;               /* handler durations, one per sample */
    int64_t rt[ROUNDS];         /* round trip per round */
};

static void report(struct level *l, int iters)
{
    qsort(l->out, (size_t)iters, sizeof(*l->out), cmp_i64);
    printf("%-8s depth %2d, median %lld ns, p90 %lld ns, p99 %lld ns, max %lld ns "
           "(n=%d); round trip %lld ns/sample\n", l->label, l->depth,
           (long long)pct(l->out, iters, 50), (long long)pct(l->out, iters, 90),
           (long long)pct(l->out, iters, 99), (long long)l->out[iters - 1], iters,
           (long long)median_of(l->rt, ROUNDS));
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20000;
    int target = argc > 2 ? atoi(argv[2]) : 30;
    int base, k, i, d, chunk;
    int64_t *scratch, empty[ROUNDS];
    struct level lv[2] = { { "shallow:", 0, -1, NULL, { 0 } },
                           { "deep:", 0, -1, NULL, { 0 } } };

    if (iters < 1000 || target < 1 || target > PP_CPU_MAX_DEPTH) {
        fprintf(stderr, "usage: %s [ITERATIONS>=1000 [DEPTH 1..%d]]\n", argv[0],
                PP_CPU_MAX_DEPTH);
        return 2;
    }
    chunk = iters / ROUNDS;
    scratch = calloc((size_t)iters, sizeof(*scratch));
    lv[0].out = calloc((size_t)iters, sizeof(int64_t));
    lv[1].out = calloc((size_t)iters, sizeof(int64_t));
    if (!scratch || !lv[0].out || !lv[1].out) {
        perror("calloc");
        return 1;
    }
    /* The frames below us (libc start-up, main, raise) set the shallowest depth;
     * learn it, then add enough frames to reach the target. */
    base = recurse(0, scratch, 10, 0);
    if (base < 0) {
        goto fail;
    }
    lv[1].extra = target > base ? target - base : 0;

    /* Warm-up: the unwinder's caches, page faults, the CPU's predictors. */
    for (i = 0; i < 2; i++) {
        if (recurse(lv[i].extra, scratch, iters / 10, 0) < 0 ||
            recurse(lv[i].extra, scratch, iters / 10, 1) < 0 || empty_batch(100) < 0) {
            goto fail;
        }
    }
    /* Per round: a chunk of one-per-call samples at each depth, then a batch round trip
     * at each depth and one with the empty handler. */
    for (k = 0; k < ROUNDS; k++) {
        int from = k * chunk, n = k == ROUNDS - 1 ? iters - from : chunk;
        for (i = 0; i < 2; i++) {
            if ((d = recurse(lv[i].extra, lv[i].out + from, n, 0)) < 0) {
                goto fail;
            }
            lv[i].depth = d;
        }
        for (i = 0; i < 2; i++) {
            if ((lv[i].rt[k] = real_batch(lv[i].extra, scratch, chunk)) < 0) {
                goto fail;
            }
        }
        if ((empty[k] = empty_batch(chunk)) < 0) {
            goto fail;
        }
    }
    printf("Sampling-signal handler cost (unw_backtrace from the signal frame), CLOCK_MONOTONIC\n");
    report(&lv[0], iters);
    report(&lv[1], iters);
    printf("%-8s round trip %lld ns/sample with an empty handler (kernel delivery only)\n",
           "empty:", (long long)median_of(empty, ROUNDS));
    free(scratch);
    free(lv[0].out);
    free(lv[1].out);
    return 0;
fail:
    fprintf(stderr, "handler_cost: pp_cpu_measure_handler failed\n");
    return 1;
}
