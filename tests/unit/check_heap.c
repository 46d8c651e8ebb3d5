#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_heap.h"
#include "pp_maps.h"
#include "pp_stacktab.h"
#include "pp_symbolize.h"

#include <check.h>
#include <dlfcn.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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
        const pp_map_entry *e = pp_maps_find(m, b->pcs[i]);
        pp_frame fr[8];
        n = e ? pp_symbolize(s, e->path, b->pcs[i] - 1 - e->start + e->offset, fr, 8) : 0;
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

int main(void)
{
    Suite *s = suite_create("pp_heap");
    TCase *tc = tcase_create("core");
    SRunner *sr;
    int failed;

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
    suite_add_tcase(s, tc);
    sr = srunner_create(s);
    srunner_run_all(sr, CK_NORMAL);
    failed = srunner_ntests_failed(sr);
    srunner_free(sr);
    return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
