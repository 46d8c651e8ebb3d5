#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* REG_RIP, pthread_getattr_np */
#endif
#include "pp_funwind.h"
#include "pp_heap.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>

#if defined(__x86_64__)

/* 16384 entries of 16 bytes: 256 KiB per process, what libunwind kept per thread. httpd's
 * stacks visit a few thousand PCs (mod_php's more); a full cache steps the rest. */
#define CACHE_BITS 14
#define CACHE_SIZE (1u << CACHE_BITS)
#define MAX_PROBES 32

/* A key is a PC; an exact one (the interrupted PC, or the one a signal frame saved) has
 * the top bit set: its rule is the rule at that instruction, a return address's the rule
 * at its call (they differ where a call ends a function or a CFI region). */
#define EXACT_BIT (1ull << 63)

/* A rule, never 0 once written (0: not written yet). */
#define R_STANDARD 1ull
#define R_STOP 2ull
#define R_SIGRETURN 3ull
#define R_TYPE(r) ((r) & 3ull)
#define R_CFA_RBP 4ull                          /* CFA is RBP + offset, else RSP + offset */
#define R_RBP_OFF(r) ((int16_t)(uint16_t)((r) >> 16))   /* saved RBP at CFA + off; 0: kept */
#define R_CFA_OFF(r) ((int32_t)(uint32_t)((r) >> 32))

typedef struct {
    _Atomic uint64_t key;
    _Atomic uint64_t rule;
} entry;

static entry *_Atomic cache;
static pthread_mutex_t map_lock = PTHREAD_MUTEX_INITIALIZER;
static _Atomic uint64_t n_entries, n_fills, n_uncached, n_full;

/* Initial-exec TLS: read in the handler without __tls_get_addr. */
static __thread uint64_t tls_lo __attribute__((tls_model("initial-exec")));
static __thread uint64_t tls_hi __attribute__((tls_model("initial-exec")));
static __thread int tls_prepared __attribute__((tls_model("initial-exec")));

static inline uint32_t slot_of(uint64_t key)
{
    return (uint32_t)((key * 0x9E3779B97F4A7C15ull) >> (64 - CACHE_BITS));
}

static uint64_t lookup(entry *c, uint64_t key)
{
    uint32_t i = slot_of(key), p;

    for (p = 0; p < MAX_PROBES; p++, i = (i + 1) & (CACHE_SIZE - 1)) {
        uint64_t k = atomic_load_explicit(&c[i].key, memory_order_acquire);
        if (k == key) {
            return atomic_load_explicit(&c[i].rule, memory_order_acquire);
        }
        if (k == 0) {
            return 0;
        }
    }
    return 0;
}

/* Lock-free: a key is claimed by compare-and-swap, its rule published after it. Two
 * threads that fill the same PC store the same rule. */
static void insert(entry *c, uint64_t key, uint64_t rule)
{
    uint32_t i = slot_of(key), p;

    for (p = 0; p < MAX_PROBES; p++, i = (i + 1) & (CACHE_SIZE - 1)) {
        uint64_t k = atomic_load_explicit(&c[i].key, memory_order_acquire);
        if (k == 0) {
            if (atomic_compare_exchange_strong_explicit(&c[i].key, &k, key,
                                                        memory_order_acq_rel,
                                                        memory_order_acquire)) {
                atomic_store_explicit(&c[i].rule, rule, memory_order_release);
                atomic_fetch_add_explicit(&n_entries, 1, memory_order_relaxed);
                return;
            }
        }
        if (k == key) {
            atomic_store_explicit(&c[i].rule, rule, memory_order_release);
            return;
        }
    }
    atomic_fetch_add_explicit(&n_full, 1, memory_order_relaxed);
}

/* The executable segments of every loaded object, as dl_iterate_phdr gave them when
 * last read. A return address read from the stack is handed to libunwind only if it lies
 * in one: libunwind reads the code at a PC it has no unwind information for (its PLT and
 * signal-frame checks) and would fault on an address that is not code. Replaced, never
 * changed in place: the handler reads whichever it loaded; the old ones are kept (one per
 * change of the loaded objects, a few KiB). */
typedef struct {
    size_t n;
    struct {
        uint64_t lo, hi;
    } r[];
} code_map;

static code_map *_Atomic code;
static unsigned long long code_adds = ~0ull, code_subs = ~0ull;

typedef struct {
    code_map *m;                /* NULL: only count */
    size_t cap, count;
    unsigned long long adds, subs;
} code_walk;

static int code_segment(struct dl_phdr_info *info, size_t size, void *arg)
{
    code_walk *w = arg;
    int i;

    (void)size;
    w->adds = info->dlpi_adds;
    w->subs = info->dlpi_subs;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_LOAD || !(ph->p_flags & PF_X)) {
            continue;
        }
        /* Nothing is allocated in here (the loader's lock is held): the map was made
         * before, from a count. */
        if (w->m && w->m->n < w->cap) {
            w->m->r[w->m->n].lo = info->dlpi_addr + ph->p_vaddr;
            w->m->r[w->m->n].hi = info->dlpi_addr + ph->p_vaddr + ph->p_memsz;
            w->m->n++;
        }
        w->count++;
    }
    return 0;
}

/* Under map_lock. */
static void refresh_code(void)
{
    code_walk w = { NULL, 0, 0, 0, 0 };
    code_map *m;
    size_t len;

    dl_iterate_phdr(code_segment, &w);
    if (atomic_load(&code) && w.adds == code_adds && w.subs == code_subs) {
        return;
    }
    w.cap = w.count + 16;       /* objects loaded between the two walks */
    len = sizeof(code_map) + w.cap * sizeof(m->r[0]);
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (m == MAP_FAILED) {
        return;
    }
    w.m = m;
    w.count = 0;
    dl_iterate_phdr(code_segment, &w);
    code_adds = w.adds;
    code_subs = w.subs;
    atomic_store_explicit(&code, m, memory_order_release);
}

static int is_code(uint64_t pc)
{
    const code_map *m = atomic_load_explicit(&code, memory_order_acquire);
    size_t i;

    for (i = 0; m && i < m->n; i++) {
        if (pc >= m->r[i].lo && pc < m->r[i].hi) {
            return 1;
        }
    }
    return 0;
}

typedef struct {
    uint64_t rip, rsp, rbp;
    int exact;
} regs;

/* A word-aligned range of the thread's stack: only such words are read (a wrong rule
 * must not make an unaligned or out-of-stack read). */
static inline int in_stack(uint64_t addr, uint64_t len, uint64_t lo, uint64_t hi)
{
    return addr >= lo && addr <= hi && hi - addr >= len && (addr & 7) == 0;
}

/* The walk and the fill read the stack's words as the unwinder they are: return
 * addresses and saved registers in other functions' frames, which AddressSanitizer would
 * take for overflows of those frames' objects (libunwind, which did it before, is not
 * instrumented). */
#define STACK_READER __attribute__((no_sanitize_address))

/* One libunwind step of frame f. The registers libunwind is not told (we only know RIP,
 * RSP and RBP past the first frame) point into the stack, so that a rule that wrongly
 * used one reads the stack rather than address 0. Returns unw_step's result; the
 * caller's registers in out, and where RBP was saved (0: kept) in rbp_at. */
static int step_once(const regs *f, const ucontext_t *full, int bump, regs *out,
                     uint64_t *rbp_at, int *signal_frame)
{
    ucontext_t ctx;
    unw_cursor_t cur;
    unw_save_loc_t loc;
    unw_word_t v;
    int i, rc;

    if (full) {
        memcpy(&ctx, full, sizeof(ctx));
    } else {
        memset(&ctx, 0, sizeof(ctx));
        for (i = 0; i < NGREG; i++) {
            ctx.uc_mcontext.gregs[i] = (greg_t)f->rsp;
        }
        ctx.uc_mcontext.gregs[REG_EFL] = 0;
        ctx.uc_mcontext.gregs[REG_CSGSFS] = 0;
        ctx.uc_mcontext.gregs[REG_ERR] = 0;
        ctx.uc_mcontext.gregs[REG_TRAPNO] = 0;
        ctx.uc_mcontext.gregs[REG_OLDMASK] = 0;
        ctx.uc_mcontext.gregs[REG_CR2] = 0;
        ctx.uc_mcontext.fpregs = NULL;
    }
    ctx.uc_mcontext.gregs[REG_RIP] = (greg_t)f->rip;
    ctx.uc_mcontext.gregs[REG_RSP] = (greg_t)f->rsp;
    ctx.uc_mcontext.gregs[REG_RBP] = (greg_t)(f->rbp + (uint64_t)bump);
    if ((f->exact ? unw_init_local2(&cur, &ctx, UNW_INIT_SIGNAL_FRAME)
                  : unw_init_local(&cur, &ctx)) != 0) {
        return -1;
    }
    if ((rc = unw_step(&cur)) <= 0) {
        return rc;
    }
    /* libunwind knows a signal frame from its CIE, as it steps it: asked after. */
    *signal_frame = unw_is_signal_frame(&cur) > 0;
    if (unw_get_reg(&cur, UNW_REG_IP, &v) != 0) {
        return -1;
    }
    out->rip = v;
    if (unw_get_reg(&cur, UNW_REG_SP, &v) != 0) {
        return -1;
    }
    out->rsp = v;
    if (unw_get_reg(&cur, UNW_X86_64_RBP, &v) != 0) {
        return -1;
    }
    out->rbp = v;
    out->exact = 0;
    *rbp_at = 0;
    if (unw_get_save_loc(&cur, UNW_X86_64_RBP, &loc) == 0 && loc.type == UNW_SLT_MEMORY &&
        !(loc.u.addr >= (unw_word_t)(uintptr_t)&ctx &&
          loc.u.addr < (unw_word_t)(uintptr_t)(&ctx + 1))) {
        *rbp_at = loc.u.addr;   /* in the stack; else still our context's: kept */
    }
    return rc;
}

/* The rule of frame f from libunwind, cached when it is one of ours. Returns 1 with the
 * caller's registers in next, 0 at the end of the stack, -1 when libunwind cannot step. */
static STACK_READER int fill(entry *c, const regs *f, const ucontext_t *full, regs *next)
{
    regs a, b;
    uint64_t at_a = 0, at_b = 0, rule = 0, key = f->rip | (f->exact ? EXACT_BIT : 0);
    int sig = 0, sig_b = 0, rc;

    rc = step_once(f, full, 0, &a, &at_a, &sig);
    if (rc == 0) {
        insert(c, key, R_STOP);
        atomic_fetch_add_explicit(&n_fills, 1, memory_order_relaxed);
        return 0;
    }
    if (rc < 0) {
        return -1;
    }
    *next = a;
    if (sig) {
        /* Linux x86-64: the trampoline's RSP points at the ucontext the kernel saved,
         * whose PC is exact (interrupted, not a return address). */
        const ucontext_t *uc = (const ucontext_t *)(uintptr_t)f->rsp;
        next->exact = 1;
        if ((f->rsp & 7) == 0 && (uint64_t)uc->uc_mcontext.gregs[REG_RIP] == a.rip &&
            (uint64_t)uc->uc_mcontext.gregs[REG_RSP] == a.rsp &&
            (uint64_t)uc->uc_mcontext.gregs[REG_RBP] == a.rbp) {
            rule = R_SIGRETURN;
        }
    } else if (a.rsp > f->rsp && a.rsp - f->rsp < (1ull << 31) && (a.rsp & 7) == 0 &&
               *(const uint64_t *)(uintptr_t)(a.rsp - 8) == a.rip) {
        int64_t rbp_off = at_a ? (int64_t)(at_a - a.rsp) : 0;
        /* RBP kept (0), or saved below the CFA within reach of the entry's 16 bits. */
        if (rbp_off == 0 || (rbp_off >= INT16_MIN && rbp_off < 0)) {
            /* The same PC with RBP moved by 16: an RSP-based CFA stays, an RBP-based one
             * moves with it. */
            if (step_once(f, full, 16, &b, &at_b, &sig_b) > 0 && !sig_b) {
                if (b.rsp == a.rsp && at_b == at_a) {
                    rule = R_STANDARD | ((uint64_t)(uint32_t)(int32_t)(a.rsp - f->rsp) << 32);
                } else if (b.rsp == a.rsp + 16 && (at_a ? at_b == at_a + 16 : at_b == 0) &&
                           (int64_t)(a.rsp - f->rbp) > INT32_MIN &&
                           (int64_t)(a.rsp - f->rbp) < INT32_MAX) {
                    rule = R_STANDARD | R_CFA_RBP |
                           ((uint64_t)(uint32_t)(int32_t)(int64_t)(a.rsp - f->rbp) << 32);
                }
                if (rule) {
                    rule |= (uint64_t)(uint16_t)(int16_t)rbp_off << 16;
                }
            }
        }
    }
    if (rule) {
        insert(c, key, rule);
        atomic_fetch_add_explicit(&n_fills, 1, memory_order_relaxed);
    } else {
        atomic_fetch_add_explicit(&n_uncached, 1, memory_order_relaxed);
    }
    return 1;
}

static STACK_READER int walk(const ucontext_t *uc, uint64_t *pcs, int max)
{
    entry *c = atomic_load_explicit(&cache, memory_order_acquire);
    uint64_t lo = tls_lo, hi = tls_hi;
    regs f, next;
    int n = 0;

    if (!c || !hi || max <= 0) {
        return -1;
    }
    f.rip = (uint64_t)uc->uc_mcontext.gregs[REG_RIP];
    f.rsp = (uint64_t)uc->uc_mcontext.gregs[REG_RSP];
    f.rbp = (uint64_t)uc->uc_mcontext.gregs[REG_RBP];
    f.exact = 1;
    if (!in_stack(f.rsp, 0, lo, hi)) {
        return -1;
    }
    while (n < max && f.rip) {
        uint64_t rule;
        pcs[n++] = f.rip;
        rule = lookup(c, f.rip | (f.exact ? EXACT_BIT : 0));
        if (!rule) {
            /* Only the first frame's other registers are known: libunwind gets them all.
             * The first PC was running; a later one must be code before libunwind reads
             * it (a JIT's code is not: the stack ends there). */
            if ((n > 1 && !is_code(f.rip)) || fill(c, &f, n == 1 ? uc : NULL, &next) <= 0) {
                break;
            }
        } else if (R_TYPE(rule) == R_STOP) {
            break;
        } else if (R_TYPE(rule) == R_SIGRETURN) {
            const ucontext_t *sc = (const ucontext_t *)(uintptr_t)f.rsp;
            if (!in_stack(f.rsp, sizeof(*sc), lo, hi)) {
                break;
            }
            next.rip = (uint64_t)sc->uc_mcontext.gregs[REG_RIP];
            next.rsp = (uint64_t)sc->uc_mcontext.gregs[REG_RSP];
            next.rbp = (uint64_t)sc->uc_mcontext.gregs[REG_RBP];
            next.exact = 1;
        } else {
            uint64_t cfa = ((rule & R_CFA_RBP) ? f.rbp : f.rsp) + (uint64_t)(int64_t)R_CFA_OFF(rule);
            int off = R_RBP_OFF(rule);
            if (!in_stack(cfa - 8, 8, lo, hi) || cfa - 8 < f.rsp) {
                break;
            }
            next.rip = *(const uint64_t *)(uintptr_t)(cfa - 8);
            next.rsp = cfa;
            next.rbp = f.rbp;
            if (off) {
                uint64_t at = cfa + (uint64_t)(int64_t)off;
                if (!in_stack(at, 8, lo, hi) || at < f.rsp) {
                    break;
                }
                next.rbp = *(const uint64_t *)(uintptr_t)at;
            }
            next.exact = 0;
        }
        /* Every caller's frame is above its callee's: a wrong rule cannot loop. A signal
         * frame's saved RSP is below the trampoline's when the handler ran on the same
         * stack, above it never: it only has to be in the stack. */
        if (!in_stack(next.rsp, 0, lo, hi) ||
            (!(rule && R_TYPE(rule) == R_SIGRETURN) && !(!rule && next.exact) &&
             next.rsp <= f.rsp)) {
            break;
        }
        f = next;
    }
    return n;
}

int pp_funwind_bounds(void)
{
    pthread_attr_t attr;
    void *addr = NULL;
    size_t size = 0;

    if (tls_hi) {
        return 0;
    }
    /* glibc's pthread_getattr_np allocates (the affinity mask): the profiler's, not the
     * program's. */
    pp_heap_guard_enter();
    if (pthread_getattr_np(pthread_self(), &attr) == 0) {
        if (pthread_attr_getstack(&attr, &addr, &size) != 0) {
            size = 0;
        }
        pthread_attr_destroy(&attr);
    }
    pp_heap_guard_leave();
    if (!size) {
        return -1;
    }
    tls_lo = (uint64_t)(uintptr_t)addr;
    tls_hi = (uint64_t)(uintptr_t)addr + size;
    return 0;
}

int pp_funwind_prepare(void)
{
    /* Not tls_hi: a thread may have its bounds (pp_funwind_bounds) before it is
     * prepared, and the cache or the objects' code ranges be older than it. */
    if (tls_prepared) {
        return 0;
    }
    if (!atomic_load_explicit(&cache, memory_order_acquire)) {
        pthread_mutex_lock(&map_lock);
        if (!atomic_load(&cache)) {
            /* Pages are touched as entries land, never before. */
            void *m = mmap(NULL, CACHE_SIZE * sizeof(entry), PROT_READ | PROT_WRITE,
                           MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (m != MAP_FAILED) {
                atomic_store(&cache, (entry *)m);
            }
        }
        pthread_mutex_unlock(&map_lock);
        if (!atomic_load(&cache)) {
            return -1;
        }
    }
    pp_funwind_refresh();
    if (pp_funwind_bounds() != 0) {
        return -1;
    }
    tls_prepared = 1;
    return 0;
}

void pp_funwind_refresh(void)
{
    pthread_mutex_lock(&map_lock);
    refresh_code();
    pthread_mutex_unlock(&map_lock);
}

int pp_funwind(const void *uc, uint64_t *pcs, int max)
{
    return walk(uc, pcs, max);
}

int pp_funwind_here(uint64_t *pcs, int max)
{
    ucontext_t uc;

    if (getcontext(&uc) != 0) {
        return -1;
    }
    return walk(&uc, pcs, max);
}

#else /* not x86-64: the caller uses libunwind's unw_backtrace */

void pp_funwind_refresh(void)
{
}

int pp_funwind_prepare(void)
{
    return -1;
}

int pp_funwind_bounds(void)
{
    return -1;
}

int pp_funwind(const void *uc, uint64_t *pcs, int max)
{
    (void)uc;
    (void)pcs;
    (void)max;
    return -1;
}

int pp_funwind_here(uint64_t *pcs, int max)
{
    (void)pcs;
    (void)max;
    return -1;
}

static _Atomic uint64_t n_entries, n_fills, n_uncached, n_full;
#define CACHE_SIZE 0u
typedef struct { uint64_t key, rule; } entry;

#endif

void pp_funwind_get_stats(pp_funwind_stats *st)
{
    st->entries = atomic_load(&n_entries);
    st->fills = atomic_load(&n_fills);
    st->uncached = atomic_load(&n_uncached);
    st->full = atomic_load(&n_full);
    st->bytes = CACHE_SIZE * sizeof(entry);
}
