#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* process_vm_readv */
#endif
#include "pp_interp.h"
#include "pp_heap.h"
#include "pp_log.h"
#include "pp_tbuf.h"

#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <unistd.h>

#define PROBES 32                       /* slots looked at before a frame counts as "full" */
#define ARENA_BYTES (4u << 20)          /* names and files of every record */
#define MAX_STACK 256                   /* the longest stack splice works on */
#define TEXT_MAX (PP_INTERP_MAX_NAME + PP_INTERP_MAX_FILE)

enum { EMPTY = 0, BUSY, READY };

/* One interned function (its lines are in the PCs). Written once by the thread that
 * claims it (EMPTY -> BUSY), then published (READY, release); never changed again while
 * the process lives, so a record named by a stack kept for hours (the heap's) still says
 * the same. */
typedef struct {
    _Atomic uint32_t state;
    uint32_t start_line;
    uint16_t name_len, file_len;        /* name bytes, then file bytes, at arena + off */
    uint32_t off;
    uint32_t keyed;                     /* hash is the provider's key mixed, not content's */
    uint64_t hash;
} record;

typedef struct {
    pp_interp_provider p;
    _Atomic int live;
} provider_slot;

static provider_slot providers[PP_INTERP_MAX_PROVIDERS];
static _Atomic int nlive;

/* The table and its arena: one mapping, allocated once, untouched pages cost nothing. */
static record *_Atomic table;
static char *arena;
static _Atomic uint32_t arena_used;
static size_t table_bytes;

static _Atomic uint64_t st_walks, st_frames, st_records, st_full, st_unplaced;
/* What the splice costs the sampled thread: signal samples taken while a provider was
 * registered, and the ticks (pp_interp_ticks) spent splicing them, by bucket. A mean
 * would say little: the ticks are wall time, and a thread preempted inside one splice
 * adds milliseconds to it. */
static _Atomic uint64_t st_samples, st_spliced;
static _Atomic uint64_t st_hist[PP_INTERP_HIST_BUCKETS + 1];

/* The slots of recently seen keyed functions, one page: a sample's frames are mostly the
 * last sample's, and their records, at random slots of the table, are as many pages (a
 * page walk each when the samples are 10 ms of other work apart). Each entry is one word,
 * written and read whole: the hash's bits above the slot's, and the slot (never 0: the
 * "full" record is never kept here). A record never changes once published, so a slot
 * found here stays right. */
#define RECENT 512
#define SLOT_BITS 14
#define SLOT_MASK ((1ull << SLOT_BITS) - 1)
_Static_assert(PP_INTERP_SLOTS == 1u << SLOT_BITS, "a slot fits in the recent entry");
static _Atomic uint64_t recent[RECENT];

static inline _Atomic uint64_t *recent_of(uint64_t h)
{
    return &recent[(h >> 32) & (RECENT - 1)];
}

/* Slot 0 stands for every frame the table has no room for. */
static const char full_name[] = "(interpreter frames table full)";

/* v is spread before it meets h: (key, line) pairs that differ in a few low bits of each
 * must not cancel out. */
static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v * 0x9e3779b97f4a7c15ull;
    h = (h << 31) | (h >> 33);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

static uint64_t hash_bytes(uint64_t h, const char *p, size_t n)
{
    uint64_t v;

    h = mix(h, n);
    for (; n >= 8; n -= 8, p += 8) {
        memcpy(&v, p, 8);
        h = mix(h, v);
    }
    if (n) {
        v = 0;
        memcpy(&v, p, n);
        h = mix(h, v);
    }
    return h;
}

static int table_init(void)
{
    size_t bytes = PP_INTERP_SLOTS * sizeof(record) + ARENA_BYTES;
    record *t;

    if (atomic_load(&table)) {
        return 0;
    }
    t = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (t == MAP_FAILED) {
        return -1;
    }
    arena = (char *)(t + PP_INTERP_SLOTS);
    memcpy(arena, full_name, sizeof(full_name) - 1);
    t[0].name_len = sizeof(full_name) - 1;
    t[0].off = 0;
    atomic_store(&arena_used, sizeof(full_name) - 1);
    atomic_store_explicit(&t[0].state, READY, memory_order_release);
    table_bytes = bytes;
    atomic_store(&table, t);
    return 0;
}

int pp_interp_register(const pp_interp_provider *p)
{
    int i;

    if (!p || !p->walk || p->nranges < 1 || p->nranges > PP_INTERP_MAX_RANGES) {
        return -1;
    }
    if (table_init() != 0) {
        pp_log(PP_LOG_ERROR, "PP0701", "no memory for the interpreter frames table: %s "
               "frames are left out", p->name ? p->name : "interpreter");
        return -1;
    }
    for (i = 0; i < PP_INTERP_MAX_PROVIDERS; i++) {
        if (!atomic_load(&providers[i].live)) {
            providers[i].p = *p;
            atomic_store_explicit(&providers[i].live, 1, memory_order_release);
            atomic_fetch_add(&nlive, 1);
            return i + 1;
        }
    }
    pp_log(PP_LOG_ERROR, "PP0701", "%d interpreter providers already: %s frames are left out",
           PP_INTERP_MAX_PROVIDERS, p->name ? p->name : "interpreter");
    return -1;
}

void pp_interp_unregister(int handle)
{
    if (handle >= 1 && handle <= PP_INTERP_MAX_PROVIDERS &&
        atomic_exchange(&providers[handle - 1].live, 0)) {
        atomic_fetch_sub(&nlive, 1);
    }
}

void pp_interp_reset(void)
{
    record *t;
    int i;

    for (i = 1; i <= PP_INTERP_MAX_PROVIDERS; i++) {
        pp_interp_unregister(i);
    }
    if ((t = atomic_exchange(&table, NULL)) != NULL) {
        munmap(t, table_bytes);
    }
    for (i = 0; i < RECENT; i++) {
        atomic_store(&recent[i], 0);
    }
    arena = NULL;
}

int pp_interp_active(void)
{
    return atomic_load_explicit(&nlive, memory_order_acquire) > 0;
}

/* Copy n bytes of src to dst (room left: *room), making control bytes '?' so that a name
 * can never break the maps line or the tab-separated path it travels in. */
static size_t put(char *dst, size_t room, const char *src, size_t n)
{
    size_t i;

    if (n > room) {
        n = room;
    }
    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)src[i];
        dst[i] = (char)(c < 0x20 || c == 0x7f ? '?' : c);
    }
    return n;
}

/* "scope::name" and the file, as a record keeps them: into buf, lengths out. */
static void compose(const pp_interp_frame *f, char *buf, size_t *name_len, size_t *file_len)
{
    size_t n = 0;

    if (f->scope && f->scope_len) {
        n += put(buf + n, PP_INTERP_MAX_NAME - n, f->scope, f->scope_len);
        n += put(buf + n, PP_INTERP_MAX_NAME - n, "::", 2);
    }
    if (f->name && f->name_len) {
        n += put(buf + n, PP_INTERP_MAX_NAME - n, f->name, f->name_len);
    } else {
        n += put(buf + n, PP_INTERP_MAX_NAME - n, "?", 1);
    }
    *name_len = n;
    *file_len = f->file && f->file_len ? put(buf + n, PP_INTERP_MAX_FILE, f->file, f->file_len)
                                       : 0;
}

static inline uint64_t keyed_hash(const pp_interp_frame *f)
{
    return mix(f->key, f->start_line);
}

/* The slot of the record of f's function, interning it if new; 0 (the "table full"
 * record) when there is no room. Lock-free: a slot is claimed by one compare-and-swap; a reader that meets a
 * slot being written skips it (at worst the frame gets a second, identical record). */
static uint32_t intern(record *t, const pp_interp_frame *f)
{
    char buf[TEXT_MAX];
    size_t name_len = 0, file_len = 0;
    uint64_t h;
    uint32_t keyed = f->key != 0, ix, i, off;
    int composed = 0;

    if (keyed) {
        uint64_t e;
        h = keyed_hash(f) | 1;
        e = atomic_load_explicit(recent_of(h), memory_order_relaxed);
        if (e && (e & ~SLOT_MASK) == (h & ~SLOT_MASK)) {
            return (uint32_t)(e & SLOT_MASK);
        }
    } else {
        compose(f, buf, &name_len, &file_len);
        composed = 1;
        h = hash_bytes(mix(0, f->start_line), buf, name_len + file_len);
        h = mix(h, name_len);
    }
    h |= 1;                             /* never 0 */
    for (i = 0; i < PROBES; i++) {
        record *r;
        uint32_t s;

        ix = (uint32_t)((h + i) & (PP_INTERP_SLOTS - 1));
        if (ix == 0) {
            continue;
        }
        r = &t[ix];
        s = atomic_load_explicit(&r->state, memory_order_acquire);
        if (s == READY) {
            if (r->hash == h && r->keyed == keyed &&
                (keyed || (r->start_line == f->start_line &&
                           r->name_len == name_len && r->file_len == file_len &&
                           memcmp(arena + r->off, buf, name_len + file_len) == 0))) {
                if (keyed) {
                    atomic_store_explicit(recent_of(h), (h & ~SLOT_MASK) | ix,
                                          memory_order_relaxed);
                }
                return ix;
            }
            continue;
        }
        if (s == BUSY) {
            continue;
        }
        if (!composed) {
            compose(f, buf, &name_len, &file_len);
            composed = 1;
        }
        /* Room first, then the slot: arena bytes reserved for a lost race are wasted, a
         * claimed slot never is. */
        off = atomic_load_explicit(&arena_used, memory_order_relaxed);
        do {
            if (off + name_len + file_len > ARENA_BYTES) {
                goto full;
            }
        } while (!atomic_compare_exchange_weak(&arena_used, &off,
                                               off + (uint32_t)(name_len + file_len)));
        s = EMPTY;
        if (!atomic_compare_exchange_strong(&r->state, &s, BUSY)) {
            continue;
        }
        memcpy(arena + off, buf, name_len + file_len);
        r->off = off;
        r->name_len = (uint16_t)name_len;
        r->file_len = (uint16_t)file_len;
        r->start_line = f->start_line;
        r->keyed = keyed;
        r->hash = h;
        atomic_store_explicit(&r->state, READY, memory_order_release);
        atomic_fetch_add_explicit(&st_records, 1, memory_order_relaxed);
        if (keyed) {
            atomic_store_explicit(recent_of(h), (h & ~SLOT_MASK) | ix, memory_order_relaxed);
        }
        return ix;
    }
full:
    atomic_fetch_add_explicit(&st_full, 1, memory_order_relaxed);
    return 0;
}

static inline uint64_t synthetic_pc(uint32_t slot, uint32_t line)
{
    uint64_t lines = PP_INTERP_FN_SPAN / PP_INTERP_PC_SPAN;

    return PP_INTERP_PC_BASE + PP_INTERP_FN_SPAN * slot +
           PP_INTERP_PC_SPAN * (line < lines ? line : lines - 1) + PP_INTERP_PC_SPAN / 2;
}

static int in_ranges(const pp_interp_provider *p, uint64_t pc)
{
    int k;

    for (k = 0; k < p->nranges; k++) {
        if (pc >= p->lo[k] && pc < p->hi[k]) {
            return 1;
        }
    }
    return 0;
}

static size_t splice_one(const pp_interp_provider *p, record *t, uint64_t *pcs, size_t n,
                         size_t cap, const pp_interp_ctx *how, int leaf_exact)
{
    uint32_t act[PP_INTERP_MAX_ACTIVATIONS];
    pp_interp_frame fr[PP_INTERP_MAX_FRAMES];
    uint64_t out[MAX_STACK];
    pp_interp_ctx ctx;
    size_t i, o = 0, room;
    int nact = 0, nf, f = 0, seg = 0;

    for (i = 0; i < n && nact < PP_INTERP_MAX_ACTIVATIONS; i++) {
        /* A return address lies after its call: look one byte back, inside it. */
        uint64_t pc = (i == 0 && leaf_exact) || pcs[i] == 0 ? pcs[i] : pcs[i] - 1;
        if (in_ranges(p, pc)) {
            act[nact++] = (uint32_t)i;
        }
    }
    if (nact == 0 || cap <= n) {
        return n;
    }
    room = cap - n < PP_INTERP_MAX_FRAMES ? cap - n : PP_INTERP_MAX_FRAMES;
    ctx = *how;
    ctx.leaf_in_loop = leaf_exact && act[0] == 0;
    ctx.activations = nact;
    atomic_fetch_add_explicit(&st_walks, 1, memory_order_relaxed);
    nf = p->walk(p->baton, &ctx, fr, (int)room);
    if (nf <= 0) {
        return n;
    }
    if ((size_t)nf > room) {
        nf = (int)room;
    }
    /* Each frame's recent entry: ask for them all at once, so that their cache misses
     * overlap instead of following one another. */
    for (f = 0; f < nf; f++) {
        if (fr[f].key) {
            __builtin_prefetch(recent_of(keyed_hash(&fr[f]) | 1));
        }
    }
    f = 0;
    for (i = 0; i < n; i++) {
        if (seg < nact && i == act[seg]) {
            /* This activation's frames go above it, oldest nearest to it. */
            while (f < nf) {
                int end = (fr[f].flags & PP_INTERP_LOOP_END) != 0;
                out[o++] = synthetic_pc(intern(t, &fr[f]), fr[f].line);
                f++;
                if (end) {
                    break;
                }
            }
            seg++;
        }
        out[o++] = pcs[i];
    }
    atomic_fetch_add_explicit(&st_frames, (uint64_t)f, memory_order_relaxed);
    if (f < nf) {
        /* Frames of activations the native stack does not reach (it was cut short). */
        atomic_fetch_add_explicit(&st_unplaced, (uint64_t)(nf - f), memory_order_relaxed);
    }
    memcpy(pcs, out, o * sizeof(*out));
    return o;
}

static size_t splice(uint64_t *pcs, size_t n, size_t cap, const pp_interp_ctx *how,
                     int leaf_exact)
{
    record *t;
    int i;

    if (atomic_load_explicit(&nlive, memory_order_relaxed) == 0 || n == 0 ||
        !(t = atomic_load_explicit(&table, memory_order_acquire))) {
        return n;
    }
    if (cap > MAX_STACK) {
        cap = MAX_STACK;
    }
    if (n > cap) {
        return n;
    }
    for (i = 0; i < PP_INTERP_MAX_PROVIDERS; i++) {
        if (atomic_load_explicit(&providers[i].live, memory_order_acquire)) {
            n = splice_one(&providers[i].p, t, pcs, n, cap, how, leaf_exact);
        }
    }
    return n;
}

uint64_t pp_interp_ticks(void)
{
#if defined(__x86_64__)
    /* Two reads a sample: the TSC's few cycles, not a clock's tens of nanoseconds. */
    return __builtin_ia32_rdtsc();
#else
    return pp_tbuf_now();
#endif
}

size_t pp_interp_splice(uint64_t *pcs, size_t n, size_t cap, const void *uc, int leaf_exact)
{
    pp_interp_ctx how;
    uint64_t t0;
    size_t out;
    int timed;

    if (atomic_load_explicit(&nlive, memory_order_relaxed) == 0) {
        return n;               /* every sample of a server without an interpreter */
    }
    /* One sample in four is timed: two TSC reads cost about 90 ns on the VM this was
     * written on, and a quarter of the samples give the same quantiles. */
    timed = (atomic_fetch_add_explicit(&st_samples, 1, memory_order_relaxed) & 3) == 0;
    t0 = timed ? pp_interp_ticks() : 0;
    memset(&how, 0, sizeof(how));
    how.ucontext = uc;
    if (pp_heap_unmaps_tracked()) {
        how.maybe_unmapped = pp_heap_maybe_unmapped;
        how.unmaps_mark = pp_heap_unmaps_mark;
    }
    out = splice(pcs, n, cap, &how, leaf_exact);
    if (timed) {
        t0 = (pp_interp_ticks() - t0) / PP_INTERP_HIST_TICKS;
        atomic_fetch_add_explicit(&st_hist[t0 < PP_INTERP_HIST_BUCKETS ? t0
                                                                        : PP_INTERP_HIST_BUCKETS],
                                  1, memory_order_relaxed);
    }
    if (out > n) {
        atomic_fetch_add_explicit(&st_spliced, 1, memory_order_relaxed);
    }
    return out;
}

/* Our own memory, read as another process's would be: a page that is gone fails. */
static int read_self(void *dst, const void *src, size_t len)
{
    struct iovec local = { dst, len }, remote = { (void *)(uintptr_t)src, len };

    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

size_t pp_interp_splice_blocked(uint64_t *pcs, size_t n, size_t cap)
{
    static char scratch[PP_INTERP_MAX_FRAMES * (PP_INTERP_MAX_NAME + PP_INTERP_MAX_FILE)];
    pp_interp_ctx how;

    memset(&how, 0, sizeof(how));
    how.read = read_self;
    how.scratch = scratch;
    how.scratch_len = sizeof(scratch);
    /* pcs[0] is where it entered the kernel: an exact PC, never in a loop's registers. */
    return splice(pcs, n, cap, &how, 1);
}

int pp_interp_is_path(const char *path)
{
    return path && strncmp(path, PP_INTERP_PATH_PREFIX, sizeof(PP_INTERP_PATH_PREFIX) - 1) == 0;
}

int pp_interp_decode(const char *path, uint64_t file_offset, pp_interp_record *out)
{
    const char *name, *tab1, *tab2;

    if (!pp_interp_is_path(path)) {
        return -1;
    }
    name = path + sizeof(PP_INTERP_PATH_PREFIX) - 1;
    if (!(tab1 = strchr(name, '\t')) || !(tab2 = strchr(tab1 + 1, '\t'))) {
        return -1;
    }
    out->function = name;
    out->function_len = (size_t)(tab1 - name);
    out->file = tab1 + 1;
    out->file_len = (size_t)(tab2 - tab1 - 1);
    out->start_line = (uint32_t)strtoul(tab2 + 1, NULL, 10);
    out->line = (uint32_t)(file_offset / PP_INTERP_PC_SPAN);
    return 0;
}

int pp_interp_maps_append(char **buf, size_t *len, size_t *cap)
{
    record *t = atomic_load_explicit(&table, memory_order_acquire);
    uint32_t i;

    if (!t) {
        return 0;
    }
    for (i = 0; i < PP_INTERP_SLOTS; i++) {
        const record *r = &t[i];
        uint64_t start = PP_INTERP_PC_BASE + PP_INTERP_FN_SPAN * i;
        size_t need = 128 + r->name_len + r->file_len;
        int w;

        if (atomic_load_explicit(&((record *)r)->state, memory_order_acquire) != READY) {
            continue;
        }
        if (*len + need > *cap) {
            size_t ncap = (*cap ? *cap : 4096) * 2;
            char *nb;
            while (ncap < *len + need) {
                ncap *= 2;
            }
            if (!(nb = realloc(*buf, ncap))) {
                return -1;
            }
            *buf = nb;
            *cap = ncap;
        }
        w = snprintf(*buf + *len, *cap - *len,
                     "%llx-%llx r-xp 0 00:00 0 " PP_INTERP_PATH_PREFIX "%.*s\t%.*s\t%u\n",
                     (unsigned long long)start, (unsigned long long)(start + PP_INTERP_FN_SPAN),
                     (int)r->name_len,
                     arena + r->off, (int)r->file_len, arena + r->off + r->name_len,
                     r->start_line);
        if (w < 0 || (size_t)w >= *cap - *len) {
            return -1;
        }
        *len += (size_t)w;
    }
    return 0;
}

void pp_interp_get_stats(pp_interp_stats *out)
{
    int i;

    out->walks = atomic_load(&st_walks);
    out->frames = atomic_load(&st_frames);
    out->records = atomic_load(&st_records);
    out->table_full = atomic_load(&st_full);
    out->unplaced = atomic_load(&st_unplaced);
    out->samples = atomic_load(&st_samples);
    out->spliced = atomic_load(&st_spliced);
    for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
        out->hist[i] = atomic_load(&st_hist[i]);
    }
}
