#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_heap.h"
#include "pp_got.h"
#include "pp_log.h"
#include "pp_stacktab.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <dlfcn.h>
#include <link.h>
#include <math.h>
#include <malloc.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUCKETS 65536
#define LIVE_CAP (1u << 17)     /* live sampled objects tracked; a power of two */
#define DEPTH 64
#define SKIP 4                  /* at most: our frames above the allocating caller */

#define IE __attribute__((tls_model("initial-exec")))

typedef struct {
    _Atomic uintptr_t ptr;      /* 0: empty; 1: deleted */
    uint32_t bucket;
    uint64_t size;
} live_entry;

static __thread int64_t tls_until IE;   /* bytes left before this thread's next sample */
static __thread uint64_t tls_rng IE;
static __thread int tls_guard IE;       /* >0: never sample (profiler code, re-entry) */

static _Atomic size_t rate = PP_HEAP_DEFAULT_RATE;
static _Atomic uint64_t rate_epoch = 1; /* bumped by set_rate: threads redraw */
static __thread uint64_t tls_epoch IE;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pp_stacktab *buckets;            /* under lock */
static live_entry *_Atomic live;        /* mmap'ed on first sample */
static live_entry *spare;               /* the other table, for rebuilds; under lock */
static _Atomic size_t live_used;        /* entries holding a pointer */
static size_t live_deleted;             /* under lock */
static _Atomic uint64_t dropped;
static int hooked;
static uintptr_t self_lo, self_hi;      /* this object's code: frames to skip */

/* The originals: this object's own GOT is never patched, so these are libc's. */
static void *(*const real_malloc)(size_t) = malloc;
static void *(*const real_calloc)(size_t, size_t) = calloc;
static void *(*const real_realloc)(void *, size_t) = realloc;
static void (*const real_free)(void *) = free;
static int (*const real_posix_memalign)(void **, size_t, size_t) = posix_memalign;
static void *(*const real_aligned_alloc)(size_t, size_t) = aligned_alloc;
static void *(*const real_memalign)(size_t, size_t) = memalign;
static void *(*const real_valloc)(size_t) = valloc;
static void *(*const real_reallocarray)(void *, size_t, size_t) = reallocarray;
static void *(*const real_dlopen)(const char *, int) = dlopen;

void pp_heap_guard_enter(void)
{
    tls_guard++;
}

void pp_heap_guard_leave(void)
{
    tls_guard--;
}

static uint64_t next_random(void)
{
    uint64_t x = tls_rng;

    if (!x) {
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        x = ((uint64_t)syscall(SYS_gettid) << 32) ^ (uint64_t)ts.tv_nsec ^ 0x9e3779b97f4a7c15ULL;
    }
    /* xorshift64* */
    x ^= x >> 12;
    x ^= x << 25;
    x ^= x >> 27;
    tls_rng = x;
    return x * 2685821657736338717ULL;
}

/* Go's nextSample: an exponential variate with mean rate, so sampling is a Poisson
 * process over allocated bytes. */
static int64_t next_sample(size_t r)
{
    double u;

    if (r == 0) {
        return INT64_MAX / 2;
    }
    if (r == 1) {
        return 0;
    }
    u = ((double)(next_random() >> 11) + 0.5) / 9007199254740992.0;
    return (int64_t)(-log(u) * (double)r) + 1;
}

static size_t live_slot(uintptr_t p)
{
    return (size_t)(((uint64_t)p >> 4) * 0x9e3779b97f4a7c15ULL >> 47) & (LIVE_CAP - 1);
}

static live_entry *new_table(void)
{
    void *m = mmap(NULL, LIVE_CAP * sizeof(live_entry), PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    return m == MAP_FAILED ? NULL : m;
}

/* Under lock: copy the live entries into the other table, without the deleted ones, and
 * make it the table. Frees of a long-lived process leave deleted slots behind; without
 * this they would fill the table and every later sample would be dropped. A reader still
 * probing the old table is harmless: untrack confirms under lock in the current one. */
static int live_rebuild(void)
{
    live_entry *old = live, *t = spare ? spare : new_table();
    size_t i;

    if (!t) {
        return -1;
    }
    if (spare) {
        memset(t, 0, LIVE_CAP * sizeof(live_entry));
    }
    for (i = 0; i < LIVE_CAP; i++) {
        uintptr_t p = atomic_load_explicit(&old[i].ptr, memory_order_relaxed);
        if (p > 1) {
            size_t j = live_slot(p);
            while (atomic_load_explicit(&t[j].ptr, memory_order_relaxed)) {
                j = (j + 1) & (LIVE_CAP - 1);
            }
            t[j].bucket = old[i].bucket;
            t[j].size = old[i].size;
            atomic_store_explicit(&t[j].ptr, p, memory_order_relaxed);
        }
    }
    atomic_store_explicit(&live, t, memory_order_release);
    spare = old;
    live_deleted = 0;
    return 0;
}

/* Under lock. */
static int live_insert(uintptr_t p, uint32_t bucket, uint64_t size)
{
    size_t i = live_slot(p), n;
    live_entry *tab;

    if (!live && !(live = new_table())) {
        return -1;
    }
    /* Keep a quarter empty so probes end quickly; deleted slots are reclaimed first. */
    if (atomic_load(&live_used) + live_deleted >= LIVE_CAP - LIVE_CAP / 4 &&
        (live_deleted < LIVE_CAP / 8 || live_rebuild() != 0)) {
        return -1;
    }
    tab = live;
    for (n = 0; n < LIVE_CAP; n++, i = (i + 1) & (LIVE_CAP - 1)) {
        uintptr_t cur = atomic_load_explicit(&tab[i].ptr, memory_order_relaxed);
        if (cur <= 1) {
            if (cur == 1) {
                live_deleted--;
            }
            tab[i].bucket = bucket;
            tab[i].size = size;
            atomic_store_explicit(&tab[i].ptr, p, memory_order_release);
            atomic_fetch_add(&live_used, 1);
            return 0;
        }
    }
    return -1;
}

/* Lock-free probe; the caller confirms under lock. */
static live_entry *live_find(uintptr_t p)
{
    live_entry *tab = atomic_load_explicit(&live, memory_order_acquire);
    size_t i = live_slot(p), n;

    if (!tab) {
        return NULL;
    }
    for (n = 0; n < LIVE_CAP; n++, i = (i + 1) & (LIVE_CAP - 1)) {
        uintptr_t cur = atomic_load_explicit(&tab[i].ptr, memory_order_acquire);
        if (cur == p) {
            return &tab[i];
        }
        if (cur == 0) {
            return NULL;
        }
    }
    return NULL;
}

static __attribute__((noinline)) void *sample(void *p, size_t size)
{
    size_t r = atomic_load_explicit(&rate, memory_order_relaxed);
    void *raw[DEPTH + SKIP];
    uint64_t pcs[DEPTH], values[PP_HEAP_NVALUES] = { 1, size, 0, 0 };
    int n, i;
    long b;

    if (tls_guard) {
        /* Not sampled (the profiler's own), but counted down again: a guarded thread
         * must not come back here on every allocation. */
        tls_until = next_sample(r);
        return p;
    }
    tls_guard++;
    if (tls_epoch != atomic_load_explicit(&rate_epoch, memory_order_relaxed)) {
        /* This thread's first allocation, or the rate changed: the counter it ran down
         * meant nothing. Draw a threshold and let this allocation be the first against it. */
        tls_epoch = atomic_load_explicit(&rate_epoch, memory_order_relaxed);
        tls_until = next_sample(r) - (int64_t)size;
        if (tls_until > 0) {
            tls_guard--;
            return p;
        }
    }
    tls_until = next_sample(r);
    if (r == 0) {
        tls_guard--;
        return p;
    }
    /* unw_step, not unw_backtrace: the latter's fast path keeps a 257 KiB cache in
     * every thread that uses it, and a heap sample is rare enough (one per rate bytes)
     * for the step loop's few microseconds. */
    {
        unw_context_t uc;
        unw_cursor_t cur;
        n = 0;
        if (unw_getcontext(&uc) == 0 && unw_init_local(&cur, &uc) == 0) {
            while (n < DEPTH + SKIP && unw_step(&cur) > 0) {
                unw_word_t ip;
                if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0) {
                    break;
                }
                raw[n++] = (void *)(uintptr_t)ip;
            }
        }
    }
    /* Our own frames (the sampler, the hook; tail calls vary their number) go. */
    for (i = 0; i < n && i < SKIP && (uintptr_t)raw[i] >= self_lo && (uintptr_t)raw[i] < self_hi;
         i++) {
    }
    n -= i;
    memmove(raw, raw + i, (size_t)n * sizeof(void *));
    for (i = 0; i < n && i < DEPTH; i++) {
        pcs[i] = (uint64_t)(uintptr_t)raw[i];
    }
    n = i;
    pthread_mutex_lock(&lock);
    if (!buckets) {
        buckets = pp_stacktab_new_values(MAX_BUCKETS, PP_HEAP_NVALUES);
    }
    b = buckets ? pp_stacktab_addv(buckets, size, pcs, (uint32_t)n, values) : -1;
    if (b < 0 || live_insert((uintptr_t)p, (uint32_t)b, size) != 0) {
        atomic_fetch_add(&dropped, 1);
    }
    pthread_mutex_unlock(&lock);
    tls_guard--;
    return p;
}

static __attribute__((noinline)) void untrack(void *p)
{
    live_entry *e = live_find((uintptr_t)p);
    uint64_t values[PP_HEAP_NVALUES] = { 0, 0, 1, 0 };

    if (!e) {
        return;
    }
    pthread_mutex_lock(&lock);
    e = live_find((uintptr_t)p);        /* again: the table may have been rebuilt */
    if (e && atomic_load(&e->ptr) == (uintptr_t)p) {
        values[PP_HEAP_FREE_BYTES] = e->size;
        pp_stacktab_add_at(buckets, e->bucket, values);
        atomic_store_explicit(&e->ptr, 1, memory_order_release);
        atomic_fetch_sub(&live_used, 1);
        live_deleted++;
    }
    pthread_mutex_unlock(&lock);
}

/* The fast path: one subtraction on a thread-local counter. */
#define AFTER_ALLOC(p, size)                                                        \
    do {                                                                            \
        if (__builtin_expect((tls_until -= (int64_t)(size)) <= 0, 0) && (p)) {      \
            return sample((p), (size));                                             \
        }                                                                           \
        return (p);                                                                 \
    } while (0)

#define BEFORE_FREE(p)                                                              \
    do {                                                                            \
        if ((p) && atomic_load_explicit(&live_used, memory_order_relaxed)) {        \
            untrack(p);                                                             \
        }                                                                           \
    } while (0)

static void *hook_malloc(size_t size)
{
    void *p = real_malloc(size);
    AFTER_ALLOC(p, size);
}

static void *hook_calloc(size_t n, size_t size)
{
    void *p = real_calloc(n, size);
    AFTER_ALLOC(p, n * size);
}

static void *hook_realloc(void *old, size_t size)
{
    void *p;

    BEFORE_FREE(old);
    p = real_realloc(old, size);
    AFTER_ALLOC(p, size);
}

static void *hook_reallocarray(void *old, size_t n, size_t size)
{
    void *p;

    BEFORE_FREE(old);
    p = real_reallocarray(old, n, size);
    AFTER_ALLOC(p, n * size);
}

static void hook_free(void *p)
{
    BEFORE_FREE(p);
    real_free(p);
}

static int hook_posix_memalign(void **out, size_t align, size_t size)
{
    int rc = real_posix_memalign(out, align, size);

    if (rc == 0 && (tls_until -= (int64_t)size) <= 0) {
        sample(*out, size);
    }
    return rc;
}

static void *hook_aligned_alloc(size_t align, size_t size)
{
    void *p = real_aligned_alloc(align, size);
    AFTER_ALLOC(p, size);
}

static void *hook_memalign(size_t align, size_t size)
{
    void *p = real_memalign(align, size);
    AFTER_ALLOC(p, size);
}

static void *hook_valloc(size_t size)
{
    void *p = real_valloc(size);
    AFTER_ALLOC(p, size);
}

/* A library loaded at run time gets the hooks before its code can allocate much. */
static void *hook_dlopen(const char *file, int mode)
{
    void *h = real_dlopen(file, mode);

    if (h) {
        tls_guard++;
        pp_got_refresh();
        tls_guard--;
    }
    return h;
}

static const pp_got_hook hooks[] = {
    { "dlopen", (void *)hook_dlopen },
    { "malloc", (void *)hook_malloc },
    { "calloc", (void *)hook_calloc },
    { "realloc", (void *)hook_realloc },
    { "reallocarray", (void *)hook_reallocarray },
    { "free", (void *)hook_free },
    { "posix_memalign", (void *)hook_posix_memalign },
    { "aligned_alloc", (void *)hook_aligned_alloc },
    { "memalign", (void *)hook_memalign },
    { "valloc", (void *)hook_valloc },
};

int pp_heap_start(size_t r)
{
    int n;

    pp_got_code_range((const void *)&sample, &self_lo, &self_hi);
    pp_heap_set_rate(r);
    n = pp_got_patch(hooks, sizeof(hooks) / sizeof(hooks[0]));
    if (n < 0) {
        return -1;
    }
    hooked = 1;
    return n;
}

void pp_heap_after_fork(void)
{
    tls_rng = 0;                /* reseeded from this thread's tid and the clock */
    atomic_fetch_add(&rate_epoch, 1);
}

void pp_heap_set_rate(size_t r)
{
    atomic_store(&rate, r);
    atomic_fetch_add(&rate_epoch, 1);
}

size_t pp_heap_rate(void)
{
    return atomic_load(&rate);
}

int pp_heap_refresh(void)
{
    return hooked ? pp_got_refresh() : 0;
}

void pp_heap_stop(void)
{
    if (hooked) {
        pp_got_unpatch();
        hooked = 0;
    }
}

void pp_heap_reset(void)
{
    pthread_mutex_lock(&lock);
    pp_stacktab_free(buckets);
    buckets = NULL;
    if (live) {
        memset(live, 0, LIVE_CAP * sizeof(live_entry));
    }
    atomic_store(&live_used, 0);
    live_deleted = 0;
    atomic_store(&dropped, 0);
    pthread_mutex_unlock(&lock);
}

int pp_heap_serialize(unsigned char **out, size_t *outlen)
{
    int rc = 0;

    tls_guard++;
    pthread_mutex_lock(&lock);
    if (buckets) {
        rc = pp_stacktab_serialize(buckets, out, outlen);
    } else if ((*out = malloc(1))) {
        *outlen = 0;
    } else {
        rc = -1;
    }
    pthread_mutex_unlock(&lock);
    tls_guard--;
    return rc;
}

uint64_t pp_heap_dropped(void)
{
    return atomic_load(&dropped);
}

void pp_heap_scale(uint64_t count, uint64_t bytes, size_t r, int64_t *count_out,
                   int64_t *bytes_out)
{
    double avg, scale;

    if (count == 0 || bytes == 0) {
        *count_out = *bytes_out = 0;
        return;
    }
    if (r <= 1) {
        *count_out = (int64_t)count;
        *bytes_out = (int64_t)bytes;
        return;
    }
    avg = (double)bytes / (double)count;
    scale = 1 / (1 - exp(-avg / (double)r));
    *count_out = (int64_t)((double)count * scale);
    *bytes_out = (int64_t)((double)bytes * scale);
}
