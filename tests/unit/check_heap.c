#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_heap.h"
#include "pp_maps.h"
#include "pp_stacktab.h"
#include "pp_symbolize.h"

#include <check.h>
#include "unit_main.h"
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

/* The core is linked statically into this executable, whose own calls are never hooked;
 * allocations are made through TEST_ALLOCLIB, a shared library calling libc through its
 * GOT. Each test runs in its own forked process (Check's default) and stops and resets
 * the sampler at its end. Sizes are odd enough that no other allocation of the process
 * falls into the same bucket key. */

typedef struct {
    void *handle;
    void *(*malloc_)(size_t);
    void *(*calloc_)(size_t, size_t);
    void *(*realloc_)(void *, size_t);
    void (*free_)(void *);
    void *(*memalign_)(size_t, size_t);
    int (*posix_memalign_)(void **, size_t, size_t);
    void *(*retain_named)(size_t);
    int (*thread_create)(pthread_t *, void *(*)(void *), void *);
    void *(*mmap_)(void *, size_t, int, int, int, off_t);
    void *(*mmap_named)(size_t);
    void *(*mmap64_named)(size_t);
    int (*munmap_)(void *, size_t);
    void *(*mremap_)(void *, size_t, size_t, int, void *);
} alloclib;

static void *sym(void *handle, const char *name)
{
    void *p = dlsym(handle, name);

    ck_assert_msg(p != NULL, "dlsym %s: %s", name, dlerror());
    return p;
}

static alloclib load_alloclib(void)
{
    alloclib l;

    l.handle = dlopen(TEST_ALLOCLIB, RTLD_NOW);
    ck_assert_msg(l.handle != NULL, "dlopen %s: %s", TEST_ALLOCLIB, dlerror());
    *(void **)&l.malloc_ = sym(l.handle, "ppt_malloc");
    *(void **)&l.calloc_ = sym(l.handle, "ppt_calloc");
    *(void **)&l.realloc_ = sym(l.handle, "ppt_realloc");
    *(void **)&l.free_ = sym(l.handle, "ppt_free");
    *(void **)&l.memalign_ = sym(l.handle, "ppt_memalign");
    *(void **)&l.posix_memalign_ = sym(l.handle, "ppt_posix_memalign");
    *(void **)&l.retain_named = sym(l.handle, "ppt_retain_named");
    *(void **)&l.thread_create = sym(l.handle, "ppt_thread_create");
    *(void **)&l.mmap_ = sym(l.handle, "ppt_mmap");
    *(void **)&l.mmap_named = sym(l.handle, "ppt_mmap_named");
    *(void **)&l.mmap64_named = sym(l.handle, "ppt_mmap64_named");
    *(void **)&l.munmap_ = sym(l.handle, "ppt_munmap");
    *(void **)&l.mremap_ = sym(l.handle, "ppt_mremap");
    return l;
}

/* Start sampling at rate, after loading the library so that it is hooked. The first
 * allocation of a thread after a rate change only draws its threshold: make it here. */
static alloclib start(size_t rate)
{
    alloclib l = load_alloclib();

    ck_assert_int_gt(pp_heap_start(rate), 0);
    l.free_(l.malloc_(1));
    return l;
}

static void finish(alloclib *l)
{
    pp_heap_stop();
    pp_heap_reset();
    dlclose(l->handle);
}

/* The buckets, as pp_heap_serialize hands them out. */

#define MAX_PCS 64

typedef struct {
    uint64_t key;
    uint64_t v[PP_HEAP_NVALUES];
    uint32_t npcs;
    uint64_t pcs[MAX_PCS];
} bucket;

typedef struct {
    bucket *b;
    size_t n, cap;
} snapshot;

static void collect(void *baton, const pp_stack *s)
{
    snapshot *sn = baton;
    bucket *b;
    uint32_t i;

    if (sn->n == sn->cap) {
        sn->cap = sn->cap ? sn->cap * 2 : 64;
        sn->b = realloc(sn->b, sn->cap * sizeof(*sn->b));
        ck_assert_ptr_nonnull(sn->b);
    }
    b = &sn->b[sn->n++];
    memset(b, 0, sizeof(*b));
    b->key = s->key;
    ck_assert_uint_eq(s->nvalues, PP_HEAP_NVALUES);
    for (i = 0; i < PP_HEAP_NVALUES; i++) {
        b->v[i] = s->values[i];
    }
    b->npcs = s->npcs < MAX_PCS ? s->npcs : MAX_PCS;
    for (i = 0; i < b->npcs; i++) {
        b->pcs[i] = s->pcs[i];
    }
}

static snapshot take(void)
{
    snapshot sn = { NULL, 0, 0 };
    unsigned char *buf = NULL;
    size_t len = 0;

    ck_assert_int_eq(pp_heap_serialize(&buf, &len), 0);
    ck_assert_int_eq(pp_stacktab_parse(buf, len, collect, &sn), 0);
    free(buf);
    return sn;
}

/* The values of every bucket of key, summed. */
static void sum_key(const snapshot *sn, uint64_t key, uint64_t v[PP_HEAP_NVALUES])
{
    size_t i;
    int j;

    memset(v, 0, PP_HEAP_NVALUES * sizeof(v[0]));
    for (i = 0; i < sn->n; i++) {
        if (sn->b[i].key == key) {
            for (j = 0; j < PP_HEAP_NVALUES; j++) {
                v[j] += sn->b[i].v[j];
            }
        }
    }
}

/* The bucket of key with the most allocations, or NULL. */
static const bucket *biggest(const snapshot *sn, uint64_t key)
{
    const bucket *best = NULL;
    size_t i;

    for (i = 0; i < sn->n; i++) {
        if (sn->b[i].key == key &&
            (!best || sn->b[i].v[PP_HEAP_ALLOC_OBJECTS] > best->v[PP_HEAP_ALLOC_OBJECTS])) {
            best = &sn->b[i];
        }
    }
    return best;
}

/* The bucket with the same key and stack as b, or NULL. */
static const bucket *same(const snapshot *sn, const bucket *b)
{
    size_t i;

    for (i = 0; i < sn->n; i++) {
        if (sn->b[i].key == b->key && sn->b[i].npcs == b->npcs &&
            memcmp(sn->b[i].pcs, b->pcs, b->npcs * sizeof(b->pcs[0])) == 0) {
            return &sn->b[i];
        }
    }
    return NULL;
}

/* Whether a frame of b's stack is named fn; the names of its first frames in names.
 * Every PC is a return address (the sampler's own frames are skipped): look up pc - 1.
 * The symbolizer's allocations are kept out of the profile. */
static int stack_has(const bucket *b, const char *fn, char *names, size_t namesz)
{
    pp_symbolizer *s;
    pp_maps *m;
    uint32_t i;
    int found = 0, k, n;
    size_t used = 0;

    pp_heap_guard_enter();
    s = pp_symbolizer_new();
    m = pp_maps_read(NULL);
    names[0] = '\0';
    for (i = 0; i < b->npcs; i++) {
        pp_frame fr[8];
        n = pp_symbolize_pc(s, m, b->pcs[i], 1, fr, 8, NULL);
        for (k = 0; k < n; k++) {
            if (fr[k].function && strcmp(fr[k].function, fn) == 0) {
                found = 1;
            }
        }
        if (i < 5 && used < namesz) {
            used += (size_t)snprintf(names + used, namesz - used, "%s%s", i ? " < " : "",
                                     n > 0 && fr[n - 1].function ? fr[n - 1].function : "?");
        }
    }
    pp_maps_free(m);
    pp_symbolizer_free(s);
    pp_heap_guard_leave();
    return found;
}

#define N_RETAINED 100

START_TEST(every_allocation_sampled_at_rate_1_and_frees_matched)
{
    alloclib l = start(1);
    void *p[N_RETAINED];
    const bucket *b;
    bucket before;
    snapshot sn;
    int i;

    for (i = 0; i < N_RETAINED; i++) {
        p[i] = l.retain_named(1000);
        ck_assert_ptr_nonnull(p[i]);
    }
    sn = take();
    b = biggest(&sn, 1000);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_ge(b->v[PP_HEAP_ALLOC_OBJECTS], N_RETAINED - 1);
    ck_assert_uint_le(b->v[PP_HEAP_ALLOC_OBJECTS], N_RETAINED);
    ck_assert_uint_eq(b->v[PP_HEAP_ALLOC_BYTES], b->v[PP_HEAP_ALLOC_OBJECTS] * 1000);
    ck_assert_uint_eq(b->v[PP_HEAP_FREE_OBJECTS], 0);
    ck_assert_uint_eq(b->v[PP_HEAP_FREE_BYTES], 0);
    ck_assert_uint_gt(b->npcs, 0);
    before = *b;
    free(sn.b);

    for (i = 0; i < N_RETAINED / 2; i++) {
        l.free_(p[i]);
    }
    sn = take();
    b = same(&sn, &before);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(b->v[PP_HEAP_ALLOC_OBJECTS], before.v[PP_HEAP_ALLOC_OBJECTS]);
    ck_assert_uint_eq(b->v[PP_HEAP_FREE_OBJECTS] - before.v[PP_HEAP_FREE_OBJECTS], 50);
    ck_assert_uint_eq(b->v[PP_HEAP_FREE_BYTES] - before.v[PP_HEAP_FREE_BYTES], 50000);
    free(sn.b);
    ck_assert_uint_eq(pp_heap_dropped(), 0);

    for (i = N_RETAINED / 2; i < N_RETAINED; i++) {
        l.free_(p[i]);
    }
    finish(&l);
}
END_TEST

/* A long-lived process: far more sampled objects freed than the live table holds. Freed
 * entries must be reclaimed, or every sample after ~98k would be dropped. */
#define N_FREED 200000          /* more than the 98304 the live table may hold at once */
START_TEST(freed_samples_never_fill_the_live_table)
{
    alloclib l = start(1);
    const bucket *b;
    snapshot sn;
    void *keep;
    int i;

    /* Each sampled object at a new address: the chunk it leaves is taken at once by an
     * allocation of this (unhooked) test program, so the next one cannot reuse it. */
    void **stolen = malloc(N_FREED * sizeof(void *));
    ck_assert_ptr_nonnull(stolen);
    for (i = 0; i < N_FREED; i++) {
        l.free_(l.malloc_(24));
        stolen[i] = malloc(24);
    }
    for (i = 0; i < N_FREED; i++) {
        free(stolen[i]);
    }
    free(stolen);
    keep = l.retain_named(1000);
    ck_assert_ptr_nonnull(keep);
    ck_assert_uint_eq(pp_heap_dropped(), 0);
    sn = take();
    b = biggest(&sn, 1000);
    ck_assert_ptr_nonnull(b);
    ck_assert_uint_eq(b->v[PP_HEAP_FREE_OBJECTS], 0);
    free(sn.b);
    l.free_(keep);
    finish(&l);
}
END_TEST

START_TEST(sampled_stack_names_the_allocating_function)
{
    alloclib l = start(1);
    void *p[10], *q = NULL;
    char names_malloc[512], names_memalign[512];
    int i, in_malloc, in_memalign;
    snapshot sn;

    for (i = 0; i < 10; i++) {
        p[i] = l.retain_named(1000);
    }
    ck_assert_int_eq(l.posix_memalign_(&q, 64, 1003), 0);
    sn = take();
    ck_assert_ptr_nonnull(biggest(&sn, 1000));
    ck_assert_ptr_nonnull(biggest(&sn, 1003));
    in_malloc = stack_has(biggest(&sn, 1000), "ppt_retain_named", names_malloc,
                          sizeof(names_malloc));
    in_memalign = stack_has(biggest(&sn, 1003), "ppt_posix_memalign", names_memalign,
                            sizeof(names_memalign));
    ck_assert_msg(in_malloc && in_memalign,
                  "allocating function missing: malloc stack [%s]%s; posix_memalign stack "
                  "[%s]%s", names_malloc, in_malloc ? "" : " lacks ppt_retain_named",
                  names_memalign, in_memalign ? "" : " lacks ppt_posix_memalign");
    free(sn.b);
    for (i = 0; i < 10; i++) {
        l.free_(p[i]);
    }
    l.free_(q);
    finish(&l);
}
END_TEST

static void assert_key(const snapshot *sn, uint64_t key, uint64_t allocs, uint64_t frees)
{
    uint64_t v[PP_HEAP_NVALUES];

    sum_key(sn, key, v);
    ck_assert_msg(v[PP_HEAP_ALLOC_OBJECTS] == allocs && v[PP_HEAP_ALLOC_BYTES] == allocs * key &&
                  v[PP_HEAP_FREE_OBJECTS] == frees && v[PP_HEAP_FREE_BYTES] == frees * key,
                  "size %llu: alloc %llu/%llu free %llu/%llu, expected alloc %llu free %llu",
                  (unsigned long long)key, (unsigned long long)v[PP_HEAP_ALLOC_OBJECTS],
                  (unsigned long long)v[PP_HEAP_ALLOC_BYTES],
                  (unsigned long long)v[PP_HEAP_FREE_OBJECTS],
                  (unsigned long long)v[PP_HEAP_FREE_BYTES], (unsigned long long)allocs,
                  (unsigned long long)frees);
}

START_TEST(realloc_calloc_and_memalign_are_sampled)
{
    alloclib l = start(1);
    void *a, *b, *c, *d, *e = NULL, *f;
    snapshot sn;

    a = l.malloc_(777);
    ck_assert_ptr_nonnull(a);
    b = l.realloc_(a, 7777);            /* a free of 777, an allocation of 7777 */
    ck_assert_ptr_nonnull(b);
    f = l.realloc_(NULL, 555);          /* only an allocation */
    ck_assert_ptr_nonnull(f);
    c = l.calloc_(3, 333);
    ck_assert_ptr_nonnull(c);
    d = l.memalign_(64, 1234);
    ck_assert_ptr_nonnull(d);
    ck_assert_uint_eq((uintptr_t)d % 64, 0);
    ck_assert_int_eq(l.posix_memalign_(&e, 128, 4321), 0);
    ck_assert_uint_eq((uintptr_t)e % 128, 0);
    sn = take();
    assert_key(&sn, 777, 1, 1);
    assert_key(&sn, 7777, 1, 0);
    assert_key(&sn, 555, 1, 0);
    assert_key(&sn, 999, 1, 0);
    assert_key(&sn, 1234, 1, 0);
    assert_key(&sn, 4321, 1, 0);
    free(sn.b);

    l.free_(b);
    l.free_(c);
    l.free_(d);
    l.free_(e);
    f = l.realloc_(f, 5555);            /* a free of 555, an allocation of 5555 */
    l.free_(f);
    sn = take();
    assert_key(&sn, 777, 1, 1);
    assert_key(&sn, 7777, 1, 1);
    assert_key(&sn, 555, 1, 1);
    assert_key(&sn, 5555, 1, 1);
    assert_key(&sn, 999, 1, 1);
    assert_key(&sn, 1234, 1, 1);
    assert_key(&sn, 4321, 1, 1);
    free(sn.b);
    finish(&l);
}
END_TEST

#define TOTAL_BYTES (64u << 20)
#define BLOCK 4096u

START_TEST(default_rate_samples_as_poisson_and_scales_back)
{
    alloclib l = start(PP_HEAP_DEFAULT_RATE);
    uint64_t v[PP_HEAP_NVALUES];
    int64_t count, bytes;
    unsigned i;
    snapshot sn;

    ck_assert_uint_eq(pp_heap_rate(), PP_HEAP_DEFAULT_RATE);
    for (i = 0; i < TOTAL_BYTES / BLOCK; i++) {
        l.free_(l.malloc_(BLOCK));
    }
    sn = take();
    sum_key(&sn, BLOCK, v);
    free(sn.b);
    /* Expected 64 MiB / 512 KiB = 128 samples; sd ~11. */
    ck_assert_uint_ge(v[PP_HEAP_ALLOC_OBJECTS], 70);
    ck_assert_uint_le(v[PP_HEAP_ALLOC_OBJECTS], 200);
    ck_assert_uint_eq(v[PP_HEAP_ALLOC_BYTES], v[PP_HEAP_ALLOC_OBJECTS] * BLOCK);
    ck_assert_uint_eq(v[PP_HEAP_FREE_OBJECTS], v[PP_HEAP_ALLOC_OBJECTS]);
    ck_assert_uint_eq(v[PP_HEAP_FREE_BYTES], v[PP_HEAP_ALLOC_BYTES]);
    pp_heap_scale(v[PP_HEAP_ALLOC_OBJECTS], v[PP_HEAP_ALLOC_BYTES], PP_HEAP_DEFAULT_RATE,
                  &count, &bytes);
    ck_assert_msg(fabs((double)bytes - TOTAL_BYTES) < 0.4 * TOTAL_BYTES,
                  "%llu samples scale to %lld bytes, not ~%u",
                  (unsigned long long)v[PP_HEAP_ALLOC_OBJECTS], (long long)bytes, TOTAL_BYTES);
    ck_assert_msg(fabs((double)count - TOTAL_BYTES / BLOCK) < 0.4 * TOTAL_BYTES / BLOCK,
                  "%lld objects estimated, not ~%u", (long long)count, TOTAL_BYTES / BLOCK);
    finish(&l);
}
END_TEST

START_TEST(rate_0_samples_nothing_more)
{
    alloclib l = start(1);
    void *kept[3], *p;
    snapshot sn;
    int i;

    for (i = 0; i < 3; i++) {
        kept[i] = l.malloc_(1111);
    }
    pp_heap_set_rate(0);
    ck_assert_uint_eq(pp_heap_rate(), 0);
    for (i = 0; i < 1000; i++) {
        p = l.malloc_(2222);
        l.free_(p);
        l.free_(l.calloc_(1, 2223));
        p = l.malloc_(2224);
        l.free_(l.realloc_(p, 2225));
    }
    /* Objects sampled before are still matched when freed. */
    for (i = 0; i < 3; i++) {
        l.free_(kept[i]);
    }
    sn = take();
    assert_key(&sn, 1111, 3, 3);
    assert_key(&sn, 2222, 0, 0);
    assert_key(&sn, 2223, 0, 0);
    assert_key(&sn, 2224, 0, 0);
    assert_key(&sn, 2225, 0, 0);
    free(sn.b);
    finish(&l);
}
END_TEST

START_TEST(guarded_allocations_are_not_sampled)
{
    alloclib l = start(1);
    snapshot sn;
    int i;

    pp_heap_guard_enter();
    for (i = 0; i < 10; i++) {
        l.free_(l.malloc_(3333));
    }
    pp_heap_guard_enter();              /* nests */
    l.free_(l.malloc_(3333));
    pp_heap_guard_leave();
    l.free_(l.malloc_(3333));
    pp_heap_guard_leave();
    for (i = 0; i < 2; i++) {
        l.free_(l.malloc_(4444));
    }
    sn = take();
    assert_key(&sn, 3333, 0, 0);
    assert_key(&sn, 4444, 2, 2);
    free(sn.b);
    finish(&l);
}
END_TEST

START_TEST(scale_unsamples_like_go)
{
    int64_t c, b;
    double e1 = 1 / (1 - exp(-1.0));

    pp_heap_scale(0, 0, PP_HEAP_DEFAULT_RATE, &c, &b);
    ck_assert_int_eq(c, 0);
    ck_assert_int_eq(b, 0);
    c = b = -1;
    pp_heap_scale(0, 100, PP_HEAP_DEFAULT_RATE, &c, &b);
    ck_assert_int_eq(c, 0);
    ck_assert_int_eq(b, 0);
    c = b = -1;
    pp_heap_scale(5, 0, PP_HEAP_DEFAULT_RATE, &c, &b);
    ck_assert_int_eq(c, 0);
    ck_assert_int_eq(b, 0);
    pp_heap_scale(7, 7000, 1, &c, &b);
    ck_assert_int_eq(c, 7);
    ck_assert_int_eq(b, 7000);
    /* avg == rate: scale 1/(1-e^-1) ~ 1.582. */
    pp_heap_scale(1, 524288, 524288, &c, &b);
    ck_assert_int_eq(c, 1);             /* 1.58 objects, truncated */
    ck_assert_double_eq_tol((double)b / 524288.0, e1, 1e-3 * e1);
    pp_heap_scale(1000, 524288000, 524288, &c, &b);
    ck_assert_double_eq_tol((double)c / 1000.0, e1, 1e-3 * e1);
    ck_assert_double_eq_tol((double)b / 524288000.0, e1, 1e-3 * e1);
    /* Small objects: scale ~ rate / avg. */
    pp_heap_scale(10, 10 * 64, 524288, &c, &b);
    ck_assert_double_eq_tol((double)c, 10 * 524288.0 / 64, 10 * 524288.0 / 64 * 1e-3);
}
END_TEST

typedef struct {
    alloclib *l;
    int nulls;
} thread_arg;

static void *thread_body(void *arg)
{
    thread_arg *a = arg;
    void *p[10];
    int i;

    a->l->free_(a->l->malloc_(1));      /* this thread's first draw */
    for (i = 0; i < 10; i++) {
        p[i] = a->l->malloc_(6666);
        a->nulls += p[i] == NULL;
    }
    for (i = 0; i < 10; i++) {
        a->l->free_(p[i]);
    }
    return NULL;
}

START_TEST(other_threads_are_sampled)
{
    alloclib l = start(1);
    thread_arg a = { &l, 0 };
    pthread_t t;
    snapshot sn;

    ck_assert_int_eq(l.thread_create(&t, thread_body, &a), 0);
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_eq(a.nulls, 0);
    sn = take();
    assert_key(&sn, 6666, 10, 10);
    free(sn.b);
    finish(&l);
}
END_TEST

/* Anonymous mappings. Sizes are odd numbers of pages, so that no malloc of the process
 * (libc's own calls are hooked too) shares their bucket key. */

static size_t pg(void)
{
    return (size_t)sysconf(_SC_PAGESIZE);
}

static void assert_values(const snapshot *sn, uint64_t key, uint64_t ao, uint64_t ab,
                          uint64_t fo, uint64_t fb)
{
    uint64_t v[PP_HEAP_NVALUES];

    sum_key(sn, key, v);
    ck_assert_msg(v[PP_HEAP_ALLOC_OBJECTS] == ao && v[PP_HEAP_ALLOC_BYTES] == ab &&
                  v[PP_HEAP_FREE_OBJECTS] == fo && v[PP_HEAP_FREE_BYTES] == fb,
                  "size %llu: alloc %llu/%llu free %llu/%llu, expected alloc %llu/%llu free "
                  "%llu/%llu", (unsigned long long)key,
                  (unsigned long long)v[PP_HEAP_ALLOC_OBJECTS],
                  (unsigned long long)v[PP_HEAP_ALLOC_BYTES],
                  (unsigned long long)v[PP_HEAP_FREE_OBJECTS],
                  (unsigned long long)v[PP_HEAP_FREE_BYTES], (unsigned long long)ao,
                  (unsigned long long)ab, (unsigned long long)fo, (unsigned long long)fb);
}

/* One snapshot, one check. */
#define CHECK_VALUES(key, ao, ab, fo, fb)                                                   \
    do {                                                                                    \
        snapshot sn_ = take();                                                              \
        assert_values(&sn_, (key), (ao), (ab), (fo), (fb));                                 \
        free(sn_.b);                                                                        \
    } while (0)

#define RW (PROT_READ | PROT_WRITE)
#define ANON (MAP_PRIVATE | MAP_ANONYMOUS)

START_TEST(anonymous_mapping_sampled_with_its_stack_and_freed_by_munmap)
{
    alloclib l = start(1);
    size_t P = pg(), size = 37 * P, len = size - 100;   /* a length takes whole pages */
    char names[512], names64[512];
    int named, named64;
    void *p, *q;
    snapshot sn;

    p = l.mmap_named(len);
    ck_assert_ptr_ne(p, MAP_FAILED);
    memset(p, 1, len);
    q = l.mmap64_named(39 * P);
    ck_assert_ptr_ne(q, MAP_FAILED);
    sn = take();
    assert_values(&sn, size, 1, size, 0, 0);
    assert_values(&sn, 39 * P, 1, 39 * P, 0, 0);
    named = stack_has(biggest(&sn, size), "ppt_mmap_named", names, sizeof(names));
    named64 = stack_has(biggest(&sn, 39 * P), "ppt_mmap64_named", names64, sizeof(names64));
    ck_assert_msg(named && named64, "mapping function missing: mmap stack [%s], mmap64 stack "
                  "[%s]", names, names64);
    free(sn.b);

    ck_assert_int_eq(l.munmap_(p, len), 0);
    ck_assert_int_eq(l.munmap_(q, 39 * P), 0);
    sn = take();
    assert_values(&sn, size, 1, size, 1, size);
    assert_values(&sn, 39 * P, 1, 39 * P, 1, 39 * P);
    free(sn.b);
    ck_assert_uint_eq(pp_heap_dropped(), 0);
    finish(&l);
}
END_TEST

START_TEST(only_anonymous_private_mappings_are_sampled)
{
    alloclib l = start(1);
    size_t P = pg();
    char path[] = "/tmp/check_heap_mapXXXXXX";
    int fd = mkstemp(path);
    void *file, *shared, *stack, *none, *anon;
    snapshot sn;

    ck_assert_int_ge(fd, 0);
    unlink(path);
    ck_assert_int_eq(ftruncate(fd, (off_t)(41 * P)), 0);
    file = l.mmap_(NULL, 41 * P, RW, MAP_PRIVATE, fd, 0);
    shared = l.mmap_(NULL, 43 * P, RW, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    stack = l.mmap_(NULL, 47 * P, RW, ANON | MAP_STACK, -1, 0);
    none = l.mmap_(NULL, 53 * P, PROT_NONE, ANON, -1, 0);  /* a reservation */
    anon = l.mmap_(NULL, 59 * P, RW, ANON, -1, 0);
    ck_assert(file != MAP_FAILED && shared != MAP_FAILED && stack != MAP_FAILED &&
              none != MAP_FAILED && anon != MAP_FAILED);
    sn = take();
    assert_values(&sn, 41 * P, 0, 0, 0, 0);
    assert_values(&sn, 43 * P, 0, 0, 0, 0);
    assert_values(&sn, 47 * P, 0, 0, 0, 0);
    assert_values(&sn, 53 * P, 0, 0, 0, 0);
    assert_values(&sn, 59 * P, 1, 59 * P, 0, 0);
    free(sn.b);
    ck_assert_int_eq(l.munmap_(file, 41 * P), 0);
    ck_assert_int_eq(l.munmap_(shared, 43 * P), 0);
    ck_assert_int_eq(l.munmap_(stack, 47 * P), 0);
    ck_assert_int_eq(l.munmap_(none, 53 * P), 0);
    ck_assert_int_eq(l.munmap_(anon, 59 * P), 0);
    close(fd);
    sn = take();
    assert_values(&sn, 41 * P, 0, 0, 0, 0);
    assert_values(&sn, 59 * P, 1, 59 * P, 1, 59 * P);
    free(sn.b);
    finish(&l);
}
END_TEST

/* glibc's malloc maps a large block itself, inside libc (which imports no mmap): the
 * block is one sample, of malloc's size, not a second one of the mapping's. */
START_TEST(large_malloc_is_counted_once)
{
    alloclib l = start(1);
    size_t big = (8u << 20) + 17;
    uint64_t objects = 0;
    void *p = l.malloc_(big);
    snapshot sn;
    size_t i;

    ck_assert_ptr_nonnull(p);
    sn = take();
    for (i = 0; i < sn.n; i++) {
        if (sn.b[i].key >= big) {
            objects += sn.b[i].v[PP_HEAP_ALLOC_OBJECTS];
        }
    }
    assert_values(&sn, big, 1, big, 0, 0);
    ck_assert_uint_eq(objects, 1);
    free(sn.b);
    l.free_(p);
    CHECK_VALUES(big, 1, big, 1, big);
    finish(&l);
}
END_TEST

/* A munmap frees the bytes it covers; the mapping counts as a freed object with its last
 * byte. Zend MM maps more than a chunk and gives back the head and tail around the
 * aligned chunk: the chunk stays in use. */
START_TEST(partial_munmap_frees_bytes_and_the_last_piece_the_object)
{
    alloclib l = start(1);
    size_t P = pg(), size = 16 * P;
    char *p = l.mmap_named(size), *r, *a, *b;

    ck_assert_ptr_ne(p, MAP_FAILED);
    ck_assert_int_eq(l.munmap_(p, 3 * P), 0);                 /* head */
    ck_assert_int_eq(l.munmap_(p + 11 * P, 5 * P), 0);        /* tail */
    CHECK_VALUES(size, 1, size, 0, 8 * P);
    ck_assert_int_eq(l.munmap_(p + 5 * P, 2 * P), 0);         /* a hole: two pieces */
    CHECK_VALUES(size, 1, size, 0, 10 * P);
    ck_assert_int_eq(l.munmap_(p + 3 * P, 2 * P), 0);         /* the first piece */
    CHECK_VALUES(size, 1, size, 0, 12 * P);
    ck_assert_int_eq(l.munmap_(p + 6 * P, 5 * P), 0);         /* the last (and a gap) */
    CHECK_VALUES(size, 1, size, 1, size);

    /* One munmap over two sampled mappings placed in an unsampled reservation. */
    r = l.mmap_(NULL, 20 * P, PROT_NONE, ANON, -1, 0);
    ck_assert_ptr_ne(r, MAP_FAILED);
    a = l.mmap_(r, 7 * P, RW, ANON | MAP_FIXED, -1, 0);
    b = l.mmap_(r + 9 * P, 9 * P, RW, ANON | MAP_FIXED, -1, 0);
    ck_assert(a == r && b == r + 9 * P);
    CHECK_VALUES(7 * P, 1, 7 * P, 0, 0);
    ck_assert_int_eq(l.munmap_(r, 20 * P), 0);
    {
        snapshot sn = take();
        assert_values(&sn, 7 * P, 1, 7 * P, 1, 7 * P);
        assert_values(&sn, 9 * P, 1, 9 * P, 1, 9 * P);
        assert_values(&sn, 20 * P, 0, 0, 0, 0);
        free(sn.b);
    }
    ck_assert_uint_eq(pp_heap_dropped(), 0);
    finish(&l);
}
END_TEST

/* MAP_FIXED replaces what was mapped there: those bytes are freed. */
START_TEST(map_fixed_over_a_sampled_mapping_frees_what_it_replaces)
{
    alloclib l = start(1);
    size_t P = pg(), size = 27 * P;
    char *p = l.mmap_named(size), *q;

    ck_assert_ptr_ne(p, MAP_FAILED);
    q = l.mmap_(p + 2 * P, 3 * P, RW, MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    ck_assert_ptr_eq(q, p + 2 * P);
    CHECK_VALUES(size, 1, size, 0, 3 * P);
    ck_assert_int_eq(l.munmap_(p, size), 0);
    CHECK_VALUES(size, 1, size, 1, size);
    finish(&l);
}
END_TEST

/* mremap of a sampled mapping is a realloc: the old range freed, the result sampled as
 * a new mapping. A failed mremap changes nothing. A mapping never sampled is not
 * followed. */
START_TEST(mremap_of_a_sampled_mapping_is_a_realloc)
{
    alloclib l = start(1);
    size_t P = pg();
    char *r, *a, *q, *s2, *m;
    char names[512];
    snapshot sn;

    /* Room to grow in place only into a reservation: it must fail without MAYMOVE. */
    r = l.mmap_(NULL, 31 * P, PROT_NONE, ANON, -1, 0);
    ck_assert_ptr_ne(r, MAP_FAILED);
    a = l.mmap_(r, 23 * P, RW, ANON | MAP_FIXED, -1, 0);
    ck_assert_ptr_eq(a, r);
    a[0] = 1;
    errno = 0;
    ck_assert_ptr_eq(l.mremap_(a, 23 * P, 25 * P, 0, NULL), MAP_FAILED);
    ck_assert_int_eq(errno, ENOMEM);
    CHECK_VALUES(23 * P, 1, 23 * P, 0, 0);

    q = l.mremap_(a, 23 * P, 29 * P, MREMAP_MAYMOVE, NULL);
    ck_assert_ptr_ne(q, MAP_FAILED);
    ck_assert_int_eq(q[0], 1);
    sn = take();
    assert_values(&sn, 23 * P, 1, 23 * P, 1, 23 * P);
    assert_values(&sn, 29 * P, 1, 29 * P, 0, 0);
    ck_assert_msg(stack_has(biggest(&sn, 29 * P), "ppt_mremap", names, sizeof(names)),
                  "stack [%s] lacks ppt_mremap", names);
    free(sn.b);

    s2 = l.mremap_(q, 29 * P, 13 * P, 0, NULL);              /* shrinks in place */
    ck_assert_ptr_eq(s2, q);
    sn = take();
    assert_values(&sn, 29 * P, 1, 29 * P, 1, 29 * P);
    assert_values(&sn, 13 * P, 1, 13 * P, 0, 0);
    free(sn.b);
    ck_assert_int_eq(l.munmap_(s2, 13 * P), 0);
    CHECK_VALUES(13 * P, 1, 13 * P, 1, 13 * P);
    ck_assert_int_eq(l.munmap_(r + 23 * P, 8 * P), 0);

    pp_heap_guard_enter();
    m = l.mmap_named(19 * P);
    pp_heap_guard_leave();
    ck_assert_ptr_ne(m, MAP_FAILED);
    m = l.mremap_(m, 19 * P, 21 * P, MREMAP_MAYMOVE, NULL);
    ck_assert_ptr_ne(m, MAP_FAILED);
    ck_assert_int_eq(l.munmap_(m, 21 * P), 0);
    sn = take();
    assert_values(&sn, 19 * P, 0, 0, 0, 0);
    assert_values(&sn, 21 * P, 0, 0, 0, 0);
    free(sn.b);
    ck_assert_uint_eq(pp_heap_dropped(), 0);
    finish(&l);
}
END_TEST

/* The hooks never change a result or errno: failures keep the kernel's errno, and a
 * sampled call (which unwinds, locks and may map tables) leaves errno as it found it. */
START_TEST(mapping_hooks_keep_errno)
{
    alloclib l = start(1);
    size_t P = pg();
    char *keep = l.mmap_named(17 * P), *p;
    int rc;

    ck_assert_ptr_ne(keep, MAP_FAILED);                        /* something is tracked */
    errno = 0;
    ck_assert_ptr_eq(l.mmap_(NULL, 0, RW, ANON, -1, 0), MAP_FAILED);
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_eq(l.mmap_(NULL, (size_t)1 << 62, RW, ANON, -1, 0), MAP_FAILED);
    ck_assert_int_eq(errno, ENOMEM);
    errno = 0;
    ck_assert_int_eq(l.munmap_(keep + 1, P), -1);              /* unaligned */
    ck_assert_int_eq(errno, EINVAL);
    errno = 0;
    ck_assert_ptr_eq(l.mremap_(keep + 1, P, 2 * P, MREMAP_MAYMOVE, NULL), MAP_FAILED);
    ck_assert_int_eq(errno, EINVAL);
    CHECK_VALUES(17 * P, 1, 17 * P, 0, 0);

    errno = 4242;
    p = l.mmap_named(71 * P);                                  /* sampled: rate 1 */
    ck_assert_int_eq(errno, 4242);
    ck_assert_ptr_ne(p, MAP_FAILED);
    errno = 4343;
    p = l.mremap_(p, 71 * P, 73 * P, MREMAP_MAYMOVE, NULL);
    ck_assert_int_eq(errno, 4343);
    ck_assert_ptr_ne(p, MAP_FAILED);
    errno = 4444;
    rc = l.munmap_(p, 73 * P);
    ck_assert_int_eq(errno, 4444);
    ck_assert_int_eq(rc, 0);
    CHECK_VALUES(73 * P, 1, 73 * P, 1, 73 * P);
    ck_assert_int_eq(l.munmap_(keep, 17 * P), 0);
    finish(&l);
}
END_TEST

START_TEST(guarded_mappings_are_not_sampled)
{
    alloclib l = start(1);
    size_t P = pg();
    void *p;

    pp_heap_guard_enter();
    p = l.mmap_named(67 * P);
    pp_heap_guard_leave();
    ck_assert_ptr_ne(p, MAP_FAILED);
    ck_assert_int_eq(l.munmap_(p, 67 * P), 0);
    CHECK_VALUES(67 * P, 0, 0, 0, 0);
    finish(&l);
}
END_TEST

#define CHUNK (2u << 20)        /* Zend MM's chunk */
#define NCHUNKS 32
#define SMALL_PAGES 7
#define NSMALL 2048

START_TEST(default_rate_samples_mappings_like_allocations)
{
    alloclib l = start(PP_HEAP_DEFAULT_RATE);
    size_t P = pg();
    void *chunk[NCHUNKS];
    uint64_t v[PP_HEAP_NVALUES];
    int64_t count, bytes;
    snapshot sn;
    int i;

    for (i = 0; i < NCHUNKS; i++) {
        chunk[i] = l.mmap_named(CHUNK);
        ck_assert_ptr_ne(chunk[i], MAP_FAILED);
        ((char *)chunk[i])[0] = 1;
    }
    sn = take();
    sum_key(&sn, CHUNK, v);
    free(sn.b);
    /* Each chunk is sampled with p = 1-exp(-4) = 0.98: 32 chunks estimate 64 MiB within
     * a few percent (-15% needs 6 chunks missed: p ~ 5e-5). */
    ck_assert_uint_eq(v[PP_HEAP_FREE_OBJECTS], 0);
    pp_heap_scale(v[PP_HEAP_ALLOC_OBJECTS], v[PP_HEAP_ALLOC_BYTES], PP_HEAP_DEFAULT_RATE, &count,
                  &bytes);
    ck_assert_msg(fabs((double)bytes - (double)NCHUNKS * CHUNK) < 0.15 * NCHUNKS * CHUNK,
                  "%llu chunks sampled scale to %lld bytes, not ~%u",
                  (unsigned long long)v[PP_HEAP_ALLOC_OBJECTS], (long long)bytes,
                  NCHUNKS * CHUNK);
    for (i = 0; i < NCHUNKS; i++) {
        ck_assert_int_eq(l.munmap_(chunk[i], CHUNK), 0);
    }
    sn = take();
    sum_key(&sn, CHUNK, v);
    free(sn.b);
    ck_assert_uint_eq(v[PP_HEAP_FREE_OBJECTS], v[PP_HEAP_ALLOC_OBJECTS]);
    ck_assert_uint_eq(v[PP_HEAP_FREE_BYTES], v[PP_HEAP_ALLOC_BYTES]);

    /* Small mappings count down as small allocations do: 56 MiB in 28 KiB mappings,
     * about 112 samples (sd ~10). */
    for (i = 0; i < NSMALL; i++) {
        void *p = l.mmap_named(SMALL_PAGES * P);
        ck_assert_ptr_ne(p, MAP_FAILED);
        ck_assert_int_eq(l.munmap_(p, SMALL_PAGES * P), 0);
    }
    sn = take();
    sum_key(&sn, SMALL_PAGES * P, v);
    free(sn.b);
    ck_assert_uint_ge(v[PP_HEAP_ALLOC_OBJECTS], 60);
    ck_assert_uint_le(v[PP_HEAP_ALLOC_OBJECTS], 180);
    ck_assert_uint_eq(v[PP_HEAP_FREE_OBJECTS], v[PP_HEAP_ALLOC_OBJECTS]);
    pp_heap_scale(v[PP_HEAP_ALLOC_OBJECTS], v[PP_HEAP_ALLOC_BYTES], PP_HEAP_DEFAULT_RATE, &count,
                  &bytes);
    ck_assert_msg(fabs((double)bytes - (double)NSMALL * SMALL_PAGES * P) <
                      0.4 * NSMALL * SMALL_PAGES * P,
                  "%llu samples scale to %lld bytes, not ~%zu",
                  (unsigned long long)v[PP_HEAP_ALLOC_OBJECTS], (long long)bytes,
                  NSMALL * SMALL_PAGES * P);
    ck_assert_uint_eq(pp_heap_dropped(), 0);
    finish(&l);
}
END_TEST

/* What this thread unmaps through a hooked object is in its hull until its next mark
 * (pp_interp's walks read possibly freed memory in place only outside it): munmap, the
 * old range of an mremap, what a MAP_FIXED mapping replaces. Another thread's unmappings
 * are not this thread's; without the hooks, everything may have been unmapped. */
static void *unmap_elsewhere(void *arg)
{
    alloclib *l = arg;
    void *p = l->mmap_(NULL, pg(), RW, ANON, -1, 0);

    ck_assert_ptr_ne(p, MAP_FAILED);
    ck_assert_int_eq(l->munmap_(p, pg()), 0);
    return p;
}

START_TEST(this_threads_unmappings_are_seen_until_its_mark)
{
    alloclib l = start((size_t)1 << 40);
    size_t P = pg();
    char *a = l.mmap_(NULL, 8 * P, RW, ANON, -1, 0), *b, *c, *d;
    void *other;
    pthread_t t;

    ck_assert_ptr_ne(a, MAP_FAILED);
    ck_assert_int_eq(pp_heap_unmaps_tracked(), 1);
    pp_heap_unmaps_mark();
    ck_assert_int_eq(pp_heap_maybe_unmapped(a, 8 * P), 0);
    ck_assert_int_eq(l.munmap_(a + 2 * P, P), 0);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + 2 * P + 100, 8), 1);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + P, 2 * P), 1);  /* overlaps its start */
    ck_assert_int_eq(pp_heap_maybe_unmapped(a, P), 0);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + 3 * P, P), 0);
    pp_heap_unmaps_mark();
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + 2 * P, P), 0);
    /* A MAP_FIXED mapping over a range, and the old range of an mremap. */
    b = l.mmap_(a + 4 * P, P, RW, ANON | MAP_FIXED, -1, 0);
    ck_assert_ptr_eq(b, a + 4 * P);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + 4 * P, 1), 1);
    pp_heap_unmaps_mark();
    c = l.mremap_(a + 5 * P, P, 2 * P, MREMAP_MAYMOVE, NULL);
    ck_assert_ptr_ne(c, MAP_FAILED);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + 5 * P, 1), 1);
    /* The hull of two ranges covers what lies between them: on the safe side. */
    pp_heap_unmaps_mark();
    d = a + 7 * P;
    ck_assert_int_eq(l.munmap_(a, P), 0);
    ck_assert_int_eq(l.munmap_(d, P), 0);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a + 3 * P, 1), 1);
    /* Another thread's unmapping is not in this thread's hull. */
    pp_heap_unmaps_mark();
    ck_assert_int_eq(pthread_create(&t, NULL, unmap_elsewhere, &l), 0);
    ck_assert_int_eq(pthread_join(t, &other), 0);
    ck_assert_int_eq(pp_heap_maybe_unmapped(other, P), 0);
    l.munmap_(a, 8 * P);
    l.munmap_(c, 2 * P);
    finish(&l);
    ck_assert_int_eq(pp_heap_unmaps_tracked(), 0);
    ck_assert_int_eq(pp_heap_maybe_unmapped(a, 1), 1);
}
END_TEST

/* glibc starts its allocator at its first call, and not thread-safely (pp_heap.h): where
 * another allocator serves malloc (this suite's sanitizer build: ASan's), the first
 * malloc_trim of threads at once faulted at address 8 in 54 of 2000 processes (a little
 * program, four threads). After pp_heap_malloc_ready none may, in 400 fresh processes.
 * Where glibc's malloc is the program's, its first malloc started it long before: this
 * can fail only in the sanitizer build (it does without the call: checked). */
#define TRIM_THREADS 4
static pthread_barrier_t trim_start;

static void *trim_at_once(void *unused)
{
    pthread_barrier_wait(&trim_start);
    malloc_trim(0);
    return NULL;
}

START_TEST(glibc_allocator_is_ready_before_threads_trim)
{
    int i, j, failed = 0;

    for (i = 0; i < 400; i++) {
        pid_t pid = fork();
        int status;

        ck_assert_int_ge(pid, 0);
        if (pid == 0) {
            pthread_t t[TRIM_THREADS];
            pp_heap_malloc_ready();
            pthread_barrier_init(&trim_start, NULL, TRIM_THREADS);
            for (j = 0; j < TRIM_THREADS; j++) {
                if (pthread_create(&t[j], NULL, trim_at_once, NULL) != 0) {
                    _exit(2);
                }
            }
            for (j = 0; j < TRIM_THREADS; j++) {
                pthread_join(t[j], NULL);
            }
            _exit(0);
        }
        ck_assert_int_eq(waitpid(pid, &status, 0), pid);
        failed += !(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    }
    ck_assert_int_eq(failed, 0);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_heap");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, every_allocation_sampled_at_rate_1_and_frees_matched);
    tcase_add_test(tc, freed_samples_never_fill_the_live_table);
    tcase_add_test(tc, sampled_stack_names_the_allocating_function);
    tcase_add_test(tc, realloc_calloc_and_memalign_are_sampled);
    tcase_add_test(tc, default_rate_samples_as_poisson_and_scales_back);
    tcase_add_test(tc, rate_0_samples_nothing_more);
    tcase_add_test(tc, guarded_allocations_are_not_sampled);
    tcase_add_test(tc, scale_unsamples_like_go);
    tcase_add_test(tc, other_threads_are_sampled);
    tcase_add_test(tc, glibc_allocator_is_ready_before_threads_trim);
    suite_add_tcase(s, tc);
    tc = tcase_create("mappings");
    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, anonymous_mapping_sampled_with_its_stack_and_freed_by_munmap);
    tcase_add_test(tc, only_anonymous_private_mappings_are_sampled);
    tcase_add_test(tc, large_malloc_is_counted_once);
    tcase_add_test(tc, partial_munmap_frees_bytes_and_the_last_piece_the_object);
    tcase_add_test(tc, map_fixed_over_a_sampled_mapping_frees_what_it_replaces);
    tcase_add_test(tc, mremap_of_a_sampled_mapping_is_a_realloc);
    tcase_add_test(tc, mapping_hooks_keep_errno);
    tcase_add_test(tc, guarded_mappings_are_not_sampled);
    tcase_add_test(tc, default_rate_samples_mappings_like_allocations);
    tcase_add_test(tc, this_threads_unmappings_are_seen_until_its_mark);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
