/* What the contention hooks add to an uncontended pthread_mutex_lock+unlock pair. A
 * shared library (tests/unit/pp_wait_testlib.c, loaded with dlopen) locks and unlocks
 * through its own GOT, as any module does; we time pairs with the GOT pointing at glibc
 * (plain), at pp_wait's hooks with nothing observing (both profiles' rates 0: the
 * branch the trace's hooks already pay), and at the hooks with the mutex profile on
 * (PprofMutexProfileFraction 100: pp_wait_contention), in interleaved rounds, and print
 * the median ns per pair and the differences. */
#include "pp_got.h"
#include "pp_wait.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ROUNDS 15

static int (*lib_lock)(pthread_mutex_t *);
static int (*lib_unlock)(pthread_mutex_t *);
static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

static double pairs(long n)
{
    double t0 = now_ns();
    long i;

    for (i = 0; i < n; i++) {
        lib_lock(&mu);
        lib_unlock(&mu);
    }
    return (now_ns() - t0) / (double)n;
}

static void contended(uint64_t delay, const uint64_t *pcs, int npcs)
{
    (void)delay;
    (void)pcs;
    (void)npcs;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *lib = argc > 1 ? argv[1] : "tests/unit/.libs/libppwaittest.so";
    long n = argc > 2 ? atol(argv[2]) : 5000000;
    double plain[ROUNDS], off[ROUNDS], on[ROUNDS];
    void *h = dlopen(lib, RTLD_NOW);
    int r;

    if (!h || !(*(void **)&lib_lock = dlsym(h, "ppw_mutex_lock")) ||
        !(*(void **)&lib_unlock = dlsym(h, "ppw_mutex_unlock"))) {
        fprintf(stderr, "cannot load %s: %s (run from the build directory after make check)\n",
                lib, dlerror());
        return 1;
    }
    pairs(n / 4);                                       /* warm-up */
    for (r = 0; r < ROUNDS; r++) {
        plain[r] = pairs(n);
        if (pp_wait_install() < 0 || pp_wait_install_unlock() < 0) {
            fprintf(stderr, "cannot hook pthread_mutex_lock/unlock\n");
            return 1;
        }
        off[r] = pairs(n);
        pp_wait_contention(contended, 100);
        on[r] = pairs(n);
        pp_wait_contention(NULL, 0);
        pp_got_unpatch();
    }
    qsort(plain, ROUNDS, sizeof(double), cmp);
    qsort(off, ROUNDS, sizeof(double), cmp);
    qsort(on, ROUNDS, sizeof(double), cmp);
    printf("uncontended pthread_mutex_lock+unlock pairs through a module's GOT, median of %d "
           "interleaved rounds of %ld\n", ROUNDS, n);
    printf("glibc alone:                      %6.2f ns/pair\n", plain[ROUNDS / 2]);
    printf("hooked, both profiles off:        %6.2f ns/pair  (+%.2f ns)\n", off[ROUNDS / 2],
           off[ROUNDS / 2] - plain[ROUNDS / 2]);
    printf("hooked, MutexProfileFraction 100: %6.2f ns/pair  (+%.2f ns)\n", on[ROUNDS / 2],
           on[ROUNDS / 2] - plain[ROUNDS / 2]);
    return 0;
}
