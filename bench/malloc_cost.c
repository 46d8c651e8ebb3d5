/* What the heap hooks add to malloc+free, and to mmap+munmap. A shared library
 * (tests/unit/pp_alloc_testlib.c, loaded with dlopen) calls them through its own GOT, as
 * any module does; we time pairs of those calls with the GOT pointing at glibc (plain),
 * at our hooks with sampling off (rate 0) and at our hooks sampling at Go's default rate
 * (512 KiB), in interleaved rounds, and print the median ns per pair and the
 * differences. */
#include "pp_heap.h"

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define ROUNDS 15

static void *(*lib_malloc)(size_t);
static void (*lib_free)(void *);
static void *(*lib_mmap)(size_t);
static int (*lib_munmap)(void *, size_t);

static double now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* ns per malloc+free pair over n pairs of size bytes. */
static double pairs(long n, size_t size)
{
    double t0 = now_ns();
    long i;

    for (i = 0; i < n; i++) {
        void *p = lib_malloc(size);
        __asm__ volatile("" : : "r"(p) : "memory");
        lib_free(p);
    }
    return (now_ns() - t0) / (double)n;
}

/* ns per anonymous mmap+munmap pair over n pairs of size bytes. */
static double map_pairs(long n, size_t size)
{
    double t0 = now_ns();
    long i;

    for (i = 0; i < n; i++) {
        void *p = lib_mmap(size);
        __asm__ volatile("" : : "r"(p) : "memory");
        lib_munmap(p, size);
    }
    return (now_ns() - t0) / (double)n;
}

static int cmp(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    const char *lib = argc > 1 ? argv[1] : "tests/unit/.libs/libppalloctest.so";
    long n = argc > 2 ? atol(argv[2]) : 2000000;
    size_t size = argc > 3 ? (size_t)atol(argv[3]) : 64;
    long nmap = n / 100;
    size_t mapsize = 64 * 1024;
    double plain[ROUNDS], off[ROUNDS], on[ROUNDS], live[ROUNDS];
    double mplain[ROUNDS], moff[ROUNDS], mon[ROUNDS], mlive[ROUNDS];
    void *kept[1000];
    int k;
    void *h = dlopen(lib, RTLD_NOW);
    int r;

    if (!h || !(lib_malloc = (void *(*)(size_t))dlsym(h, "ppt_malloc")) ||
        !(lib_free = (void (*)(void *))dlsym(h, "ppt_free")) ||
        !(lib_mmap = (void *(*)(size_t))dlsym(h, "ppt_mmap_named")) ||
        !(lib_munmap = (int (*)(void *, size_t))dlsym(h, "ppt_munmap"))) {
        fprintf(stderr, "cannot load %s: %s (run from the build directory after make check)\n",
                lib, dlerror());
        return 1;
    }
    pairs(n / 4, size);                                 /* warm-up */
    map_pairs(nmap / 4, mapsize);
    for (r = 0; r < ROUNDS; r++) {
        plain[r] = pairs(n, size);
        mplain[r] = map_pairs(nmap, mapsize);
        pp_heap_start(0);
        off[r] = pairs(n, size);
        moff[r] = map_pairs(nmap, mapsize);
        pp_heap_set_rate(PP_HEAP_DEFAULT_RATE);
        on[r] = pairs(n, size);
        mon[r] = map_pairs(nmap, mapsize);
        /* A real server holds sampled objects: then every free probes the live table. */
        pp_heap_set_rate(1);
        for (k = 0; k < 1000; k++) {
            kept[k] = lib_malloc(size);
        }
        pp_heap_set_rate(PP_HEAP_DEFAULT_RATE);
        live[r] = pairs(n, size);
        for (k = 0; k < 1000; k++) {
            lib_free(kept[k]);
        }
        /* Sampled mappings live: then every munmap looks them up under the lock. */
        pp_heap_set_rate(1);
        for (k = 0; k < 1000; k++) {
            kept[k] = lib_mmap(mapsize);
        }
        pp_heap_set_rate(PP_HEAP_DEFAULT_RATE);
        mlive[r] = map_pairs(nmap, mapsize);
        for (k = 0; k < 1000; k++) {
            lib_munmap(kept[k], mapsize);
        }
        pp_heap_stop();
        pp_heap_reset();
    }
    qsort(plain, ROUNDS, sizeof(double), cmp);
    qsort(off, ROUNDS, sizeof(double), cmp);
    qsort(on, ROUNDS, sizeof(double), cmp);
    qsort(live, ROUNDS, sizeof(double), cmp);
    qsort(mplain, ROUNDS, sizeof(double), cmp);
    qsort(moff, ROUNDS, sizeof(double), cmp);
    qsort(mon, ROUNDS, sizeof(double), cmp);
    qsort(mlive, ROUNDS, sizeof(double), cmp);
    printf("malloc(%zu)+free pairs through a module's GOT, median of %d interleaved rounds of %ld\n",
           size, ROUNDS, n);
    printf("glibc alone:                %6.2f ns/pair\n", plain[ROUNDS / 2]);
    printf("hooked, sampling off:       %6.2f ns/pair  (+%.2f ns)\n", off[ROUNDS / 2],
           off[ROUNDS / 2] - plain[ROUNDS / 2]);
    printf("hooked, rate 512 KiB:       %6.2f ns/pair  (+%.2f ns)\n", on[ROUNDS / 2],
           on[ROUNDS / 2] - plain[ROUNDS / 2]);
    printf("same, 1000 sampled objects live: %6.2f ns/pair  (+%.2f ns)\n", live[ROUNDS / 2],
           live[ROUNDS / 2] - plain[ROUNDS / 2]);
    printf("anonymous mmap(%zu)+munmap pairs, median of %d interleaved rounds of %ld\n",
           mapsize, ROUNDS, nmap);
    printf("glibc alone:                %8.1f ns/pair\n", mplain[ROUNDS / 2]);
    printf("hooked, sampling off:       %8.1f ns/pair  (%+.1f ns)\n", moff[ROUNDS / 2],
           moff[ROUNDS / 2] - mplain[ROUNDS / 2]);
    printf("hooked, rate 512 KiB:       %8.1f ns/pair  (%+.1f ns)\n", mon[ROUNDS / 2],
           mon[ROUNDS / 2] - mplain[ROUNDS / 2]);
    printf("same, 1000 sampled mappings live: %8.1f ns/pair  (%+.1f ns)\n", mlive[ROUNDS / 2],
           mlive[ROUNDS / 2] - mplain[ROUNDS / 2]);
    printf("samples taken: %s\n", pp_heap_dropped() == 0 ? "all recorded" : "some dropped");
    return 0;
}
