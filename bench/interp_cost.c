/* bench/interp_cost: what PHP frames add to one CPU sample.
 *
 * The real capture path (pp_cpu_measure_handler: the sampling signal raised at this
 * thread, unw_backtrace from the signal frame, then pp_interp_splice) runs inside a fake
 * interpreter loop registered as PHP's, with mod_pprof_php's real walk (php_walk.c)
 * reading a PHP frame chain built here with PHP's own types, N frames deep: functions and
 * methods of distinct files, their strings hashed as PHP's interned strings are. Below the
 * loop, noinline frames stand for httpd's (about 20 native frames are unwound in all, as
 * in a PHP request). Configurations, interleaved round by round:
 *
 *   none        no provider registered: the sample as it is without mod_pprof_php
 *   php 0       the provider, a sample in the loop while no script runs (the walk finds
 *               no frame)
 *   php N       the provider, N PHP frames (every one seen before: found by key)
 *   php N (content)  the same chain with PHP's string hashes zeroed: every frame is found
 *               by hashing and comparing its names (PHP never leaves names unhashed; this
 *               is the slow path's bound)
 *
 *   php N (in include)  the same, but the newest frame is an included file's code (PHP
 *               may have freed it: php_walk.c), read in place where the allocator hooks saw
 *               this thread unmap nothing since its last mark (Zend MM, as mod_php runs)
 *   php N (include/rd)  the same frame read through process_vm_readv, as it is when PHP
 *               allocates with malloc (USE_ZEND_ALLOC=0) or the hooks are out
 *   php N (VM stack)  the same functions, but the frames laid out as PHP's VM stack holds
 *               them: one after the other in one block (each 320 bytes: the frame and 15
 *               slots of variables and temporaries), the oldest lowest. In the other
 *               configurations each frame is an allocation of its own among the functions'
 *               (a chain whose next frame is anywhere: the worst case for the cold walk,
 *               which follows the chain one frame at a time).
 *
 * Each line: median, p90 and p99 of the time inside the handler (ns), and the median's
 * difference from `none`. The budget is 2 us more per sample than without PHP frames.
 *
 * Samples come one after the other here, with every cache warm. In a server they are 10 ms
 * of PHP apart, and what a sample reads (PHP's frames and names, the table's records) has
 * left the core's caches: a second table ("cold") sweeps 8 MiB, twice the L2 of the
 * machine this was written on, between samples (outside the time measured).
 *
 * Usage: bench/interp_cost [ITERATIONS [COLD_ITERATIONS]]   (defaults 20000 and 2000 per
 * configuration) */
#include "pp_cpu.h"
#include "pp_heap.h"
#include "pp_interp.h"
#include "php_walk.h"

#include "php.h"
#include "zend_globals.h"
#undef snprintf                 /* php.h's is libphp's; nothing of libphp is linked here */

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NOINLINE __attribute__((noinline))
#define ROUNDS 21
#define NATIVE_BELOW 16         /* frames between main and the loop, as httpd's */

static const int depths[] = { 0, 1, 5, 10, 20, 40 };
#define NDEPTHS (int)(sizeof(depths) / sizeof(depths[0]))

extern char __start_pp_bench_loop[], __stop_pp_bench_loop[];
NOINLINE __attribute__((section("pp_bench_loop"))) int fake_execute_ex(int64_t *out);

/* The interpreter loop: one sample measured from inside it. */
int fake_execute_ex(int64_t *out)
{
    int r = pp_cpu_measure_handler(out, 1);
    __asm__ volatile("" ::: "memory");
    return r;
}

static NOINLINE int below(int n, int64_t *out)
{
    int r;

    if (n <= 0) {
        return fake_execute_ex(out);
    }
    r = below(n - 1, out);
    __asm__ volatile("" ::: "memory");
    return r;
}

static zend_string *zs(const char *s, zend_ulong h)
{
    size_t n = strlen(s);
    zend_string *z = aligned_alloc(8, (_ZSTR_STRUCT_SIZE(n) + 7) & ~(size_t)7);

    memset(z, 0, _ZSTR_STRUCT_SIZE(n));
    z->gc.refcount = 1;
    z->h = h;
    z->len = n;
    memcpy(ZSTR_VAL(z), s, n + 1);
    return z;
}

typedef struct {
    zend_executor_globals eg;
    zend_string *strs[3 * 64];
    zend_ulong hashes[3 * 64];
    int nstrs;
} chain;

static zend_string *str(chain *c, const char *s)
{
    zend_ulong h = 0x9e3779b97f4a7c15ull * (zend_ulong)(c->nstrs + 1);

    c->hashes[c->nstrs] = h;
    return c->strs[c->nstrs++] = zs(s, h);
}

#define VM_FRAME_BYTES 320       /* a frame and 15 slots of 16 bytes, as PHP sizes them */

/* {main} of index.php, then depth - 1 nested calls: methods of App\ModuleK (in
 * src/ModuleK.php) and plain functions alternately, each called from its caller's line.
 * vm_stack: the frames in one block as PHP's VM stack has them, else one allocation each. */
static chain *chain_new(int depth, int vm_stack, int include_top)
{
    chain *c = calloc(1, sizeof(*c));
    zend_execute_data *prev = NULL;
    char *stack = vm_stack ? aligned_alloc(64, (size_t)(depth ? depth : 1) * VM_FRAME_BYTES)
                           : NULL;
    int i;

    if (stack) {
        memset(stack, 0, (size_t)(depth ? depth : 1) * VM_FRAME_BYTES);
    }
    for (i = 0; i < depth; i++) {
        zend_function *f = calloc(1, sizeof(*f));
        zend_execute_data *ex = stack ? (zend_execute_data *)(stack + (size_t)i * VM_FRAME_BYTES)
                                      : calloc(1, sizeof(*ex));
        char name[64], file[128];
        uint32_t k;

        snprintf(file, sizeof(file), "/var/www/app/src/Module%d.php", i);
        f->op_array.type = ZEND_USER_FUNCTION;
        if (i == 0) {
            f->op_array.filename = str(c, "/var/www/app/public/index.php");
            Z_TYPE_INFO(ex->This) = ZEND_CALL_TOP_CODE;
        } else {
            snprintf(name, sizeof(name), i % 2 ? "handleRequest%d" : "helper_function_%d", i);
            f->op_array.function_name = str(c, name);
            f->op_array.filename = str(c, file);
            if (i % 2) {
                zend_class_entry *ce = calloc(1, sizeof(*ce));
                snprintf(name, sizeof(name), "App\\Http\\Module%d", i);
                ce->name = str(c, name);
                f->op_array.scope = ce;
            }
        }
        f->op_array.line_start = 10 + (uint32_t)i;
        f->op_array.last = 32;
        f->op_array.opcodes = calloc(32, sizeof(zend_op));
        for (k = 0; k < 32; k++) {
            f->op_array.opcodes[k].lineno = f->op_array.line_start + k;
        }
        if (include_top && i > 0 && i == depth - 1) {
            /* The newest: the top-level code of an included file. */
            f->op_array.function_name = NULL;
            f->op_array.scope = NULL;
            Z_TYPE_INFO(ex->This) = ZEND_CALL_NESTED_CODE;
        }
        ex->func = f;
        ex->opline = &f->op_array.opcodes[5 + i % 20];
        ex->prev_execute_data = prev;
        prev = ex;
    }
    c->eg.current_execute_data = prev;
    return c;
}

static void set_hashes(chain *c, int on)
{
    int i;

    for (i = 0; i < c->nstrs; i++) {
        c->strs[i]->h = on ? c->hashes[i] : 0;
    }
}

static int cmp_i64(const void *a, const void *b)
{
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int64_t pct(const int64_t *v, int n, double p)
{
    int i = (int)((p / 100.0) * n + 0.999999) - 1;
    return v[i < 0 ? 0 : i >= n ? n - 1 : i];
}

#define SWEEP (8u << 20)
static volatile unsigned char *sweep_buf;

/* Push the caches' contents out: what the next sample reads comes from memory or L3. */
static void sweep(void)
{
    unsigned i;
    unsigned sum = 0;

    for (i = 0; i < SWEEP; i += 64) {
        sweep_buf[i]++;
        sum += sweep_buf[i];
    }
    __asm__ volatile("" : : "r"(sum));
}

typedef struct {
    const char *label;
    int depth;                  /* -1: no provider */
    int hashed;
    int vm_stack;               /* the frames laid out as PHP's VM stack */
    int include_top;            /* the newest frame an included file's code */
    int zend_mm;                /* the walk told PHP allocates with Zend MM */
    int64_t *t;
    int n;
    int captured;
} config;

static pp_interp_provider prov;
static int handle = -1;
static chain *chains[NDEPTHS], *vm_chains[NDEPTHS], *inc_chains[NDEPTHS];

static void use_config(const config *c)
{
    int k;

    if (c->depth < 0) {
        if (handle > 0) {
            pp_interp_unregister(handle);
            handle = -1;
        }
        return;
    }
    for (k = 0; k < NDEPTHS && depths[k] != c->depth; k++) {
    }
    {
        chain *ch = c->vm_stack ? vm_chains[k] : c->include_top ? inc_chains[k] : chains[k];
        set_hashes(ch, c->hashed);
        pprof_php_walk_init(&ch->eg, c->zend_mm);
    }
    if (handle < 0) {
        handle = pp_interp_register(&prov);
    }
}

/* ROUNDS interleaved rounds of iters / ROUNDS samples per configuration; then the table. */
static int run(const char *title, config *cfg, int ncfg, int iters, int cold)
{
    int per_round = iters / ROUNDS, r, i, j;
    int64_t base = 0;

    for (j = 0; j < ncfg; j++) {
        cfg[j].t = calloc((size_t)per_round * ROUNDS, sizeof(int64_t));
        cfg[j].n = 0;
    }
    for (r = 0; r < ROUNDS; r++) {
        for (j = 0; j < ncfg; j++) {
            use_config(&cfg[j]);
            for (i = 0; i < per_round; i++) {
                int d;
                if (cold) {
                    sweep();
                }
                if ((d = below(NATIVE_BELOW, &cfg[j].t[cfg[j].n])) < 0) {
                    fprintf(stderr, "pp_cpu_measure_handler failed\n");
                    return -1;
                }
                cfg[j].captured = d;
                cfg[j].n++;
            }
        }
    }
    printf("%s\n%-17s %6s %6s %8s %8s %8s %10s\n", title, "config", "php", "depth", "median",
           "p90", "p99", "added");
    for (j = 0; j < ncfg; j++) {
        int64_t med;
        qsort(cfg[j].t, (size_t)cfg[j].n, sizeof(int64_t), cmp_i64);
        med = pct(cfg[j].t, cfg[j].n, 50);
        if (j == 0) {
            base = med;
        }
        printf("%-17s %6d %6d %8lld %8lld %8lld %+10lld\n", cfg[j].label,
               cfg[j].depth < 0 ? 0 : cfg[j].depth, cfg[j].captured, (long long)med,
               (long long)pct(cfg[j].t, cfg[j].n, 90), (long long)pct(cfg[j].t, cfg[j].n, 99),
               (long long)(med - base));
        free(cfg[j].t);
    }
    printf("(ns per sample inside the handler; %d samples per configuration in %d "
           "interleaved rounds)\n\n", per_round * ROUNDS, ROUNDS);
    return 0;
}

int main(int argc, char **argv)
{
    int iters = argc > 1 ? atoi(argv[1]) : 20000, cold_iters = argc > 2 ? atoi(argv[2]) : 2000;
    int i, j, ncfg = 0;
    config cfg[1 + 5 * NDEPTHS], cold[10];
    pp_interp_stats st;

    if (iters < 1000 || cold_iters < 100) {
        fprintf(stderr, "usage: %s [ITERATIONS>=1000 [COLD_ITERATIONS>=100]]\n", argv[0]);
        return 2;
    }
    sweep_buf = calloc(1, SWEEP);
    memset(&prov, 0, sizeof(prov));
    prov.name = "php";
    prov.lo[0] = (uint64_t)(uintptr_t)__start_pp_bench_loop;
    prov.hi[0] = (uint64_t)(uintptr_t)__stop_pp_bench_loop;
    prov.nranges = 1;
    prov.walk = pprof_php_walk;
    /* The allocator hooks, as mod_pprof has them (they see this thread's unmappings, which
     * the walk of an include's frame relies on); sampling too rarely to matter. */
    if (pp_heap_start((size_t)1 << 40) < 0) {
        fprintf(stderr, "pp_heap_start failed\n");
        return 1;
    }
    cfg[ncfg++] = (config){ "none", -1, 1, 0, 0, 1, NULL, 0, 0 };
    for (i = 0; i < NDEPTHS; i++) {
        chains[i] = chain_new(depths[i], 0, 0);
        vm_chains[i] = chain_new(depths[i], 1, 0);
        inc_chains[i] = chain_new(depths[i], 0, 1);
        cfg[ncfg++] = (config){ "php", depths[i], 1, 0, 0, 1, NULL, 0, 0 };
    }
    for (i = 1; i < NDEPTHS; i++) {
        cfg[ncfg++] = (config){ "php (content)", depths[i], 0, 0, 0, 1, NULL, 0, 0 };
    }
    for (i = 1; i < NDEPTHS; i++) {
        cfg[ncfg++] = (config){ "php (VM stack)", depths[i], 1, 1, 0, 1, NULL, 0, 0 };
    }
    for (i = 2; i < NDEPTHS; i++) {
        cfg[ncfg++] = (config){ "php (in include)", depths[i], 1, 0, 1, 1, NULL, 0, 0 };
    }
    for (i = 2; i < NDEPTHS; i++) {
        cfg[ncfg++] = (config){ "php (include/rd)", depths[i], 1, 0, 1, 0, NULL, 0, 0 };
    }
    /* Warm: the unwinder's caches, and every frame interned once. */
    for (j = 0; j < ncfg; j++) {
        int64_t t;
        use_config(&cfg[j]);
        for (i = 0; i < 200; i++) {
            below(NATIVE_BELOW, &t);
        }
    }
    if (run("warm caches", cfg, ncfg, iters, 0) != 0) {
        return 1;
    }
    /* none; php 0, 10, 40; php 10, 40 in a VM stack; php 10, 40 in an include, guarded
     * and read through process_vm_readv */
    cold[0] = cfg[0];
    cold[1] = cfg[1];
    cold[2] = cfg[4];
    cold[3] = cfg[6];
    cold[4] = cfg[2 * NDEPTHS + 2];
    cold[5] = cfg[2 * NDEPTHS + 4];
    cold[6] = cfg[3 * NDEPTHS];         /* in include, 10 */
    cold[7] = cfg[3 * NDEPTHS + 2];     /* in include, 40 */
    cold[8] = cfg[4 * NDEPTHS - 2];     /* include/rd, 10 */
    cold[9] = cfg[4 * NDEPTHS];         /* include/rd, 40 */
    if (run("cold caches (8 MiB swept between samples)", cold, 10, cold_iters, 1) != 0) {
        return 1;
    }
    pp_interp_get_stats(&st);
    printf("%llu distinct frames interned, %llu table-full\n", (unsigned long long)st.records,
           (unsigned long long)st.table_full);
    return 0;
}
