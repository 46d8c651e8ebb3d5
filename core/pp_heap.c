#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_heap.h"
#include "pp_interp.h"
#include "pp_got.h"
#include "pp_log.h"
#include "pp_stacktab.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <dlfcn.h>
#include <errno.h>
#include <link.h>
#include <math.h>
#include <malloc.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#define MAX_BUCKETS 65536
#define LIVE_CAP (1u << 17)     /* live sampled objects tracked; a power of two */
#define MAPPED_CAP 16384        /* pieces of sampled mappings tracked */
#define DEPTH 64                /* native frames unwound */
#define MAX_DEPTH 96            /* with interpreter frames spliced in (pp_interp.h) */
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
static __thread int tls_locked IE;      /* this thread holds lock */

static _Atomic size_t rate = PP_HEAP_DEFAULT_RATE;
static _Atomic uint64_t rate_epoch = 1; /* bumped by set_rate: threads redraw */
static __thread uint64_t tls_epoch IE;

/* What this thread unmapped through the hooks since its last pp_heap_unmaps_mark: the hull
 * [lo, hi) of those ranges, none while hi is 0. Written before the unmapping, lo then hi,
 * so a signal handler that interrupts the hook finds the range covered or not yet gone. */
static __thread uintptr_t tls_unmap_lo IE, tls_unmap_hi IE;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pp_stacktab *buckets;            /* under lock */
static live_entry *_Atomic live;        /* mmap'ed on first sample */
static live_entry *spare;               /* the other table, for rebuilds; under lock */
static _Atomic size_t live_used;        /* entries holding a pointer */
static size_t live_deleted;             /* under lock */
static _Atomic uint64_t dropped;
static int hooked;
static uintptr_t self_lo, self_hi;      /* this object's code: frames to skip */
static uintptr_t page_mask;             /* page size - 1 */

/* The still-mapped pieces of sampled anonymous mappings, sorted by lo and disjoint, all
 * under lock. A mapping is one piece until a munmap punches a hole in it; its pieces
 * share its id. */
typedef struct {
    uintptr_t lo, hi;
    uint64_t id;
    uint32_t bucket;
    uint32_t split;             /* another piece of the same mapping may be tracked */
} mapped_piece;

static mapped_piece *mapped;            /* mmap'ed on first sampled mapping */
static size_t nmapped;
static uint64_t mapped_ids;
static _Atomic size_t mapped_live;      /* nmapped, for the hooks' lock-free look */
/* [mapped_low, mapped_high): a range covering every sampled mapping (wider after some are
 * gone; reset when none is left), for munmap's lock-free look: httpd maps and unmaps each
 * static file it serves (EnableMMAP), and while one sampled mapping lived anywhere every
 * such munmap took the lock to search the table. Written under the lock. */
static _Atomic uintptr_t mapped_low = UINTPTR_MAX, mapped_high;

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
static void *(*const real_mmap)(void *, size_t, int, int, int, off_t) = mmap;
static int (*const real_munmap)(void *, size_t) = munmap;
static void *(*const real_mremap)(void *, size_t, size_t, int, ...) = mremap;

void pp_heap_guard_enter(void)
{
    tls_guard++;
}

void pp_heap_guard_leave(void)
{
    tls_guard--;
}

/* The lock, unless this thread holds it already: a signal handler that maps or frees
 * while its thread was inside would wait for itself. Inside, nothing is sampled. */
static int heap_lock(void)
{
    if (tls_locked) {
        return -1;
    }
    tls_guard++;
    pthread_mutex_lock(&lock);
    tls_locked = 1;
    return 0;
}

static void heap_unlock(void)
{
    tls_locked = 0;
    pthread_mutex_unlock(&lock);
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

    if (!atomic_load(&live)) {
        /* In two steps: clang 14 refuses '!' on the value of an assignment to an atomic. */
        live_entry *t = new_table();
        if (!t) {
            return -1;
        }
        atomic_store(&live, t);
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

/* Mappings. [lo, hi) are page-aligned: what the kernel maps and unmaps. */

static uintptr_t page_end(uintptr_t lo, size_t len)
{
    return len > UINTPTR_MAX - lo - page_mask ? UINTPTR_MAX & ~page_mask
                                              : (lo + len + page_mask) & ~page_mask;
}

/* Under lock: the first piece that ends after a. */
static size_t mapped_search(uintptr_t a)
{
    size_t lo = 0, hi = nmapped;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (mapped[mid].hi <= a) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

/* Under lock: a tracked piece of mapping id other than piece except? */
static int mapped_has_piece(uint64_t id, size_t except)
{
    size_t i;

    for (i = 0; i < nmapped; i++) {
        if (i != except && mapped[i].id == id) {
            return 1;
        }
    }
    return 0;
}

/* Under lock: [lo, hi) is no longer mapped. Its bytes of sampled mappings count as
 * freed; a mapping counts as a freed object when its last piece goes. A hole in a piece
 * splits it; when the table is full the far side of the hole counts as freed too. */
static void mapped_remove(uintptr_t lo, uintptr_t hi)
{
    size_t i = mapped_search(lo);

    while (i < nmapped && mapped[i].lo < hi) {
        mapped_piece *e = &mapped[i];
        uintptr_t a = e->lo > lo ? e->lo : lo, b = e->hi < hi ? e->hi : hi;
        uint64_t values[PP_HEAP_NVALUES] = { 0, 0, 0, b - a };

        if (a == e->lo && b == e->hi) {
            if (!e->split || !mapped_has_piece(e->id, i)) {
                values[PP_HEAP_FREE_OBJECTS] = 1;
            }
            pp_stacktab_add_at(buckets, e->bucket, values);
            memmove(e, e + 1, (nmapped - i - 1) * sizeof(*e));
            nmapped--;
            continue;
        }
        if (a == e->lo) {
            e->lo = b;
        } else if (b == e->hi) {
            e->hi = a;
        } else if (nmapped < MAPPED_CAP) {
            memmove(e + 2, e + 1, (nmapped - i - 1) * sizeof(*e));
            e[1] = *e;
            e[1].lo = b;
            e->hi = a;
            e->split = e[1].split = 1;
            nmapped++;
            i++;
        } else {
            values[PP_HEAP_FREE_BYTES] += e->hi - b;
            e->hi = a;
            atomic_fetch_add(&dropped, 1);
        }
        pp_stacktab_add_at(buckets, e->bucket, values);
        i++;
    }
    if (nmapped == 0) {
        atomic_store_explicit(&mapped_low, UINTPTR_MAX, memory_order_relaxed);
        atomic_store_explicit(&mapped_high, 0, memory_order_relaxed);
    }
    atomic_store_explicit(&mapped_live, nmapped, memory_order_relaxed);
}

/* Under lock: room for a new mapping at [lo, hi). Pieces still tracked there were
 * unmapped behind our back (by an object we do not hook, or a raw system call). */
static int mapped_reserve(uintptr_t lo, uintptr_t hi)
{
    if (!mapped) {
        void *m = mmap(NULL, MAPPED_CAP * sizeof(mapped_piece), PROT_READ | PROT_WRITE,
                       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
        if (m == MAP_FAILED) {
            return -1;
        }
        mapped = m;
    }
    mapped_remove(lo, hi);
    return nmapped < MAPPED_CAP ? 0 : -1;
}

/* Under lock, after mapped_reserve. */
static void mapped_insert(uintptr_t lo, uintptr_t hi, uint32_t bucket)
{
    size_t i = mapped_search(lo);

    memmove(&mapped[i + 1], &mapped[i], (nmapped - i) * sizeof(mapped[0]));
    mapped[i].lo = lo;
    mapped[i].hi = hi;
    mapped[i].id = ++mapped_ids;
    mapped[i].bucket = bucket;
    mapped[i].split = 0;
    nmapped++;
    /* Widened before the mapping is published: a thread that learns its address after
     * this (its only way to unmap it) sees the bounds that cover it. */
    if (lo < atomic_load_explicit(&mapped_low, memory_order_relaxed)) {
        atomic_store_explicit(&mapped_low, lo, memory_order_relaxed);
    }
    if (hi > atomic_load_explicit(&mapped_high, memory_order_relaxed)) {
        atomic_store_explicit(&mapped_high, hi, memory_order_relaxed);
    }
    atomic_store_explicit(&mapped_live, nmapped, memory_order_release);
}

/* Under lock: does [lo, hi) hold a piece of a sampled mapping? */
static int mapped_overlaps(uintptr_t lo, uintptr_t hi)
{
    size_t i = mapped_search(lo);

    return i < nmapped && mapped[i].lo < hi;
}

/* p: the allocation, or for a mapping its start (size is then its page-rounded length). */
static __attribute__((noinline)) void *sample(void *p, size_t size, int mapping)
{
    size_t r = atomic_load_explicit(&rate, memory_order_relaxed);
    void *raw[DEPTH + SKIP];
    uint64_t pcs[MAX_DEPTH], values[PP_HEAP_NVALUES] = { 1, size, 0, 0 };
    int n, i, saved_errno = errno;
    long b;

    if (tls_guard) {
        /* Not sampled (the profiler's own), but counted down again: a guarded thread
         * must not come back here on every allocation. */
        tls_until = next_sample(r);
        errno = saved_errno;
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
            errno = saved_errno;
            return p;
        }
    }
    tls_until = next_sample(r);
    if (r == 0) {
        tls_guard--;
        errno = saved_errno;
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
    n = (int)pp_interp_splice(pcs, (size_t)i, MAX_DEPTH, NULL, 0);
    heap_lock();                        /* not held: tls_guard was 0 */
    if (!buckets) {
        buckets = pp_stacktab_new_values(MAX_BUCKETS, PP_HEAP_NVALUES);
    }
    if (mapping) {
        /* A mapping the table has no room for is not recorded at all: never followed,
         * it would stay in use forever. */
        uintptr_t lo = (uintptr_t)p;
        b = buckets && mapped_reserve(lo, lo + size) == 0
                ? pp_stacktab_addv(buckets, size, pcs, (uint32_t)n, values) : -1;
        if (b >= 0) {
            mapped_insert(lo, lo + size, (uint32_t)b);
        } else {
            atomic_fetch_add(&dropped, 1);
        }
    } else {
        b = buckets ? pp_stacktab_addv(buckets, size, pcs, (uint32_t)n, values) : -1;
        if (b < 0 || live_insert((uintptr_t)p, (uint32_t)b, size) != 0) {
            atomic_fetch_add(&dropped, 1);
        }
    }
    heap_unlock();
    tls_guard--;
    errno = saved_errno;
    return p;
}

static __attribute__((noinline)) void untrack(void *p)
{
    live_entry *e = live_find((uintptr_t)p);
    uint64_t values[PP_HEAP_NVALUES] = { 0, 0, 1, 0 };

    if (!e || heap_lock() != 0) {
        return;
    }
    e = live_find((uintptr_t)p);        /* again: the table may have been rebuilt */
    if (e && atomic_load(&e->ptr) == (uintptr_t)p) {
        values[PP_HEAP_FREE_BYTES] = e->size;
        pp_stacktab_add_at(buckets, e->bucket, values);
        atomic_store_explicit(&e->ptr, 1, memory_order_release);
        atomic_fetch_sub(&live_used, 1);
        live_deleted++;
    }
    heap_unlock();
}

/* The fast path: one subtraction on a thread-local counter. */
#define AFTER_ALLOC(p, size)                                                        \
    do {                                                                            \
        if (__builtin_expect((tls_until -= (int64_t)(size)) <= 0, 0) && (p)) {      \
            return sample((p), (size), 0);                                          \
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
        sample(*out, size, 0);
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

/* Anonymous mappings. Only private, readable or writable ones that are not stacks are
 * memory a program allocates; shared ones, files, stacks and PROT_NONE reservations are
 * not sampled (mprotect of a reservation later is not followed). */
static int allocates(int prot, int flags)
{
    return (flags & (MAP_TYPE | MAP_ANONYMOUS | MAP_STACK | MAP_GROWSDOWN)) ==
               (MAP_PRIVATE | MAP_ANONYMOUS) && prot != PROT_NONE;
}

/* [p, p+len) was unmapped, or is about to be. */
static __attribute__((noinline)) void unmapped(void *p, size_t len)
{
    int saved_errno = errno;

    if (heap_lock() == 0) {
        mapped_remove((uintptr_t)p, page_end((uintptr_t)p, len));
        heap_unlock();
    }
    errno = saved_errno;
}

/* [lo, hi) is about to be unmapped (or replaced) by this thread. */
static inline void note_unmap(uintptr_t lo, uintptr_t hi)
{
    uintptr_t ulo = tls_unmap_lo, uhi = tls_unmap_hi;

    tls_unmap_lo = uhi == 0 || lo < ulo ? lo : ulo;
    atomic_signal_fence(memory_order_seq_cst);
    tls_unmap_hi = hi > uhi ? hi : uhi;
    atomic_signal_fence(memory_order_seq_cst);
}

int pp_heap_unmaps_tracked(void)
{
    return hooked;
}

void pp_heap_unmaps_mark(void)
{
    tls_unmap_hi = 0;
    tls_unmap_lo = 0;
}

int pp_heap_maybe_unmapped(const void *p, size_t len)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + (len ? len : 1), uhi = tls_unmap_hi;

    return !hooked || (uhi != 0 && lo < uhi && hi > tls_unmap_lo) || hi < lo;
}

/* The unsampled path: the mapping's result, one test of the flags and the subtraction
 * malloc makes. */
static void *hook_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
    void *p;

    if (__builtin_expect((flags & MAP_FIXED) != 0, 0)) {
        note_unmap((uintptr_t)addr, (uintptr_t)addr + len);
    }
    p = real_mmap(addr, len, prot, flags, fd, off);

    if (__builtin_expect(p == MAP_FAILED, 0)) {
        return p;
    }
    if ((flags & MAP_FIXED) && atomic_load_explicit(&mapped_live, memory_order_relaxed)) {
        unmapped(p, len);               /* what was there is gone */
    }
    if (allocates(prot, flags) &&
        __builtin_expect((tls_until -= (int64_t)(page_end((uintptr_t)p, len) - (uintptr_t)p))
                             <= 0, 0)) {
        sample(p, page_end((uintptr_t)p, len) - (uintptr_t)p, 1);
    }
    return p;
}

/* Accounted before the call, as free is: once the range is unmapped another thread's
 * mapping may take it. Arguments munmap rejects (an unaligned start, a zero length) are
 * never accounted; its one other failure, ENOMEM when a hole would pass the process's
 * limit of mappings, leaves those bytes counted as freed. */
static int hook_munmap(void *p, size_t len)
{
    note_unmap((uintptr_t)p, (uintptr_t)p + len);
    if (atomic_load_explicit(&mapped_live, memory_order_acquire) && len &&
        !((uintptr_t)p & page_mask) &&
        (uintptr_t)p < atomic_load_explicit(&mapped_high, memory_order_relaxed) &&
        page_end((uintptr_t)p, len) > atomic_load_explicit(&mapped_low, memory_order_relaxed)) {
        unmapped(p, len);
    }
    return real_munmap(p, len);
}

/* mremap of a sampled mapping is a realloc: the old range counts as unmapped, the result
 * as a new mapping of new_len at the caller, sampled as any other (it is anonymous: the
 * old one was). Under the lock across the call, so that no other thread's new mapping in
 * the range it gives up is taken for part of the old one. A range we never sampled is
 * not followed: it may be a file's, which mremap does not tell. */
static __attribute__((noinline)) void *remap_sampled(void *old, size_t old_len, size_t new_len,
                                                     int flags, void *to)
{
    uintptr_t lo = (uintptr_t)old, hi = page_end(lo, old_len);
    void *p;
    int saved_errno;

    if (heap_lock() != 0) {
        return real_mremap(old, old_len, new_len, flags, to);
    }
    if (!mapped_overlaps(lo, hi)) {
        heap_unlock();
        return real_mremap(old, old_len, new_len, flags, to);
    }
    p = real_mremap(old, old_len, new_len, flags, to);
    saved_errno = errno;
    if (p != MAP_FAILED) {
        mapped_remove(lo, hi);
        if (p != old) {
            mapped_remove((uintptr_t)p, page_end((uintptr_t)p, new_len));
        }
    }
    heap_unlock();
    if (p != MAP_FAILED &&
        (tls_until -= (int64_t)(page_end((uintptr_t)p, new_len) - (uintptr_t)p)) <= 0) {
        sample(p, page_end((uintptr_t)p, new_len) - (uintptr_t)p, 1);
    }
    errno = saved_errno;
    return p;
}

static void *hook_mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
    void *to = NULL;

    if (flags & MREMAP_FIXED) {
        va_list ap;
        va_start(ap, flags);
        to = va_arg(ap, void *);
        va_end(ap);
    }
    /* The old range may move (or shrink); a fixed target is replaced. */
    note_unmap((uintptr_t)old, (uintptr_t)old + old_len);
    if (to) {
        note_unmap((uintptr_t)to, (uintptr_t)to + new_len);
    }
    if (__builtin_expect(atomic_load_explicit(&mapped_live, memory_order_relaxed) != 0, 0) &&
        old_len && !((uintptr_t)old & page_mask)) {
        return remap_sampled(old, old_len, new_len, flags, to);
    }
    return real_mremap(old, old_len, new_len, flags, to);
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

/* The objects whose mapping calls stay unhooked: the malloc in use (glibc's calls its
 * mmap inside libc, which imports none, but an allocator linked or preloaded in its place
 * maps what its malloc hands out: counted twice) and the unwinder (its pools grow with
 * mmap under its own lock, and sampling unwinds). */
static const void *const mapping_keep_in[] = { (const void *)malloc, (const void *)unw_step,
                                               NULL };

static const pp_got_hook hooks[] = {
    { "dlopen", (void *)hook_dlopen },
    { "mmap", (void *)hook_mmap, mapping_keep_in },
    { "mmap64", (void *)hook_mmap, mapping_keep_in },
    { "munmap", (void *)hook_munmap, mapping_keep_in },
    { "mremap", (void *)hook_mremap, mapping_keep_in },
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

    /* A program that starts the sampler usually does so before its threads: glibc's
     * allocator is then started safely for it too (pp_heap_malloc_ready). */
    pp_heap_malloc_ready();
    pp_got_code_range((const void *)&sample, &self_lo, &self_hi);
    page_mask = (uintptr_t)sysconf(_SC_PAGESIZE) - 1;
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
    if (heap_lock() != 0) {
        return;
    }
    pp_stacktab_free(buckets);
    buckets = NULL;
    if (live) {
        memset(live, 0, LIVE_CAP * sizeof(live_entry));
    }
    atomic_store(&live_used, 0);
    live_deleted = 0;
    nmapped = 0;
    atomic_store(&mapped_live, 0);
    atomic_store(&mapped_low, UINTPTR_MAX);
    atomic_store(&mapped_high, 0);
    atomic_store(&dropped, 0);
    heap_unlock();
}

int pp_heap_serialize(unsigned char **out, size_t *outlen)
{
    int rc = 0;

    if (heap_lock() != 0) {
        return -1;
    }
    if (buckets) {
        rc = pp_stacktab_serialize(buckets, out, outlen);
    } else if ((*out = malloc(1))) {
        *outlen = 0;
    } else {
        rc = -1;
    }
    heap_unlock();
    return rc;
}

size_t pp_heap_records(void)
{
    size_t n = 0;

    if (heap_lock() != 0) {
        return 0;
    }
    if (buckets) {
        n = pp_stacktab_count(buckets);
    }
    heap_unlock();
    return n;
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

void pp_heap_malloc_ready(void)
{
    struct mallinfo2 mi = mallinfo2();

    (void)mi;
}
