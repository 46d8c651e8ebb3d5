#include "pp_trace.h"
#include "pp_varint.h"
#include "pp_hash.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Event types of the Go 1.19 format. */
enum {
    EV_BATCH = 1, EV_FREQUENCY = 2, EV_STACK = 3, EV_GOMAXPROCS = 4, EV_PROC_START = 5,
    EV_PROC_STOP = 6, EV_GO_CREATE = 13, EV_GO_START = 14, EV_GO_SCHED = 17,
    EV_GO_UNBLOCK = 21, EV_GO_BLOCK_SYNC = 25, EV_GO_BLOCK_NET = 27, EV_GO_WAITING = 31,
    EV_STRING = 37, EV_TASK_CREATE = 45, EV_TASK_END = 46, EV_REGION = 47, EV_LOG = 48,
    EV_CPU_SAMPLE = 49
};

#define MAX_ARGS 8
#define MAX_REGIONS 32          /* open regions per goroutine */
#define MAX_FRAMES 100          /* frames of a stack: stays well below 2048 bytes */
#define STACK_LIMIT 2048        /* newer readers refuse longer argument blocks */
/* A frame is four varints of at most 5 bytes each (PCs, string ids and lines stay below
 * 2^35); the id and the count take 11 more: a stack's record always fits. */
_Static_assert(MAX_FRAMES * 20 + 11 <= STACK_LIMIT, "stack records must fit in 2048 bytes");
#define DUMP_BEFORE 1000000u    /* the initial dump is timed this many ns before t0 */
#define NAME_MAX_LEN 128
#define FILE_MAX_LEN 256
#define NO_P UINT64_MAX

enum { G_RUNNABLE = 1, G_RUNNING, G_WAITING };

typedef struct {
    uint64_t key, val;          /* key 0 = empty */
} slot64;

typedef struct {
    slot64 *s;
    size_t cap, n;
} map64;

typedef struct {
    uint64_t task, name, stack; /* global task id, string id, stack id */
} open_region;

typedef struct {
    uint32_t pid, tid;          /* tid 0: not known (yet) */
    int state;                  /* 0: not created yet */
    int started;                /* ProcStart written */
    uint64_t created;           /* when its goroutine was created (0: not yet) */
    uint64_t wait_stk;          /* the stack of the wait it is in, while waiting */
    uint64_t seq;
    uint64_t last_ts;           /* of its P */
    int nregions;
    open_region regions[MAX_REGIONS];
    uint64_t tc_local, tc_gid, tc_epoch;        /* its last task lookup (task_of) */
} thread;

typedef struct {
    unsigned char *b;
    size_t len, cap;
} bytes;

/* A frame set by name (pp_trace_set_frame, or "region.<name>" by default). */
typedef struct {
    char function[NAME_MAX_LEN], file[FILE_MAX_LEN];
    uint64_t stack;             /* the frame alone: regions, tasks, logs */
    uint64_t wait;              /* then the thread's frame: a goroutine's state change */
} named_frame;

/* A name records give by number (pp_trace_set_name_id). */
typedef struct {
    char name[NAME_MAX_LEN];    /* "" when the number is not set */
    uint64_t sid, stack;        /* its string and stack ids, looked up at first use */
} numbered_name;

struct pp_trace {
    bytes out, dict;
    int oom;
    uint64_t t0;
    uint64_t dump_ts;           /* the initial dump's GoCreates: the trace's earliest tick */
    uint64_t cur_p;             /* P of the chunk being written, NO_P before any */
    uint64_t cur_ts;
    uint64_t p0_last;
    int gomaxprocs_done, finished;

    pp_hash *strings;           /* text -> id */
    uint64_t next_string;
    pp_hash *frames;            /* function\0file\0line -> pc */
    uint64_t next_pc;
    pp_hash *stacks;            /* pcs -> id */
    uint64_t next_stack;
    pp_hash *named;             /* name -> index in names */
    named_frame *names;
    size_t nnames, cap_names;
    char thread_fn[NAME_MAX_LEN], thread_file[FILE_MAX_LEN];
    uint64_t thread_stack;      /* the thread's start function alone */
    uint64_t task_stack, idle_wait;     /* named_stack("task"), named_wait_stack("idle") */
    numbered_name name_id[PP_TRACE_NAME_IDS];

    thread *threads;
    size_t nthreads, cap_threads;
    map64 by_slot, by_tid, tasks;
    uint64_t tasks_epoch;       /* counts the changes of tasks: a thread's cached lookup
                                 * holds while it is unchanged */
    pp_trace_resolve_fn resolve;
    void *resolve_baton;
    uint64_t next_task;
    pp_trace_stats stats;
};

/* --- small helpers ------------------------------------------------------------------ */

static void put_bytes(pp_trace *t, bytes *o, const void *p, size_t n)
{
    if (t->oom) {
        return;
    }
    if (__builtin_expect(o->len + n > o->cap, 0)) {
        size_t cap = o->cap ? o->cap : 65536;
        unsigned char *nb;
        while (cap < o->len + n) {
            cap *= 2;
        }
        if (!(nb = realloc(o->b, cap))) {
            t->oom = 1;
            return;
        }
        o->b = nb;
        o->cap = cap;
    }
    if (n <= 16) {
        /* Most pieces are a few bytes (a varint, an event): a call to memcpy for each was
         * the collector's largest share in perf. */
        unsigned char *d = o->b + o->len;
        const unsigned char *q = p;
        size_t i;
        for (i = 0; i < n; i++) {
            d[i] = q[i];
        }
    } else {
        memcpy(o->b + o->len, p, n);
    }
    o->len += n;
}

static void put_varint(pp_trace *t, bytes *o, uint64_t v)
{
    unsigned char tmp[10];
    put_bytes(t, o, tmp, pp_varint_put(tmp, v));
}

static uint64_t mix(uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdULL;
    k ^= k >> 33;
    return k;
}

/* Keys must not be 0 (callers add 1 or set a high bit). */
static int map_put(map64 *m, uint64_t key, uint64_t val)
{
    size_t i;

    if ((m->n + 1) * 2 > m->cap) {
        size_t ncap = m->cap ? m->cap * 2 : 256, j;
        slot64 *ns = calloc(ncap, sizeof(*ns));
        if (!ns) {
            return -1;
        }
        for (j = 0; j < m->cap; j++) {
            if (m->s[j].key) {
                size_t k = mix(m->s[j].key) & (ncap - 1);
                while (ns[k].key) {
                    k = (k + 1) & (ncap - 1);
                }
                ns[k] = m->s[j];
            }
        }
        free(m->s);
        m->s = ns;
        m->cap = ncap;
    }
    for (i = mix(key) & (m->cap - 1); m->s[i].key && m->s[i].key != key;
         i = (i + 1) & (m->cap - 1)) {
    }
    if (!m->s[i].key) {
        m->n++;
    }
    m->s[i].key = key;
    m->s[i].val = val;
    return 0;
}

static int map_get(const map64 *m, uint64_t key, uint64_t *val)
{
    size_t i;

    if (!m->cap) {
        return 0;
    }
    for (i = mix(key) & (m->cap - 1); m->s[i].key; i = (i + 1) & (m->cap - 1)) {
        if (m->s[i].key == key) {
            *val = m->s[i].val;
            return 1;
        }
    }
    return 0;
}

/* Remove key, shifting the following run back so that probes stay unbroken. */
static void map_del(map64 *m, uint64_t key)
{
    size_t i, j;

    if (!m->cap) {
        return;
    }
    for (i = mix(key) & (m->cap - 1); m->s[i].key != key; i = (i + 1) & (m->cap - 1)) {
        if (!m->s[i].key) {
            return;
        }
    }
    m->s[i].key = 0;
    m->n--;
    for (j = (i + 1) & (m->cap - 1); m->s[j].key; j = (j + 1) & (m->cap - 1)) {
        size_t home = mix(m->s[j].key) & (m->cap - 1);
        /* Move j back to the hole i unless its home lies cyclically in (i, j]. */
        if ((j > i && (home <= i || home > j)) || (j < i && home <= i && home > j)) {
            m->s[i] = m->s[j];
            m->s[j].key = 0;
            i = j;
        }
    }
}

/* (pid, id) as one key, one-to-one: pids stay below 2^23 (Linux's limit is 2^22) and ids
 * (slots, thread ids, a process's task ids) below 2^40; never 0. */
static uint64_t key2(uint32_t pid, uint64_t id)
{
    return ((uint64_t)(pid & 0x7fffff) << 40) | (id & 0xffffffffffULL) | (1ULL << 63);
}

/* --- dictionaries ------------------------------------------------------------------- */

static uint64_t string_id(pp_trace *t, const char *s)
{
    size_t n = s ? strlen(s) : 0;
    uint64_t id;
    int rc;

    if (n == 0) {
        return 0;               /* the empty string cannot be defined: id 0 means it */
    }
    if (n > 1000000) {
        n = 1000000;
    }
    id = t->next_string;
    rc = pp_hash_intern(t->strings, s, n, &id);
    if (rc < 0) {
        t->oom = 1;
        return 0;
    }
    if (rc == 0) {
        t->next_string++;
        put_varint(t, &t->dict, EV_STRING);
        put_varint(t, &t->dict, id);
        put_varint(t, &t->dict, n);
        put_bytes(t, &t->dict, s, n);
    }
    return id;
}

/* One PC per (function, file, line), for the whole file. */
static uint64_t frame_pc(pp_trace *t, const pp_trace_frame *f)
{
    char key[1024];
    int n = snprintf(key, sizeof(key), "%s%c%s%c%d", f->function ? f->function : "?", 0,
                     f->file ? f->file : "", 0, f->line);
    uint64_t pc = t->next_pc;
    int rc;

    if (n < 0 || (size_t)n >= sizeof(key)) {
        n = (int)sizeof(key) - 1;
    }
    rc = pp_hash_intern(t->frames, key, (size_t)n, &pc);
    if (rc < 0) {
        t->oom = 1;
        return 0;
    }
    if (rc == 0) {
        t->next_pc += 0x10;
    }
    return pc;
}

static uint64_t stack_id(pp_trace *t, const pp_trace_frame *frames, int n)
{
    uint64_t pcs[MAX_FRAMES], id;
    unsigned char body[STACK_LIMIT + 64], tmp[16];
    size_t blen;
    int i, rc;

    if (n <= 0) {
        return 0;
    }
    if (n > MAX_FRAMES) {
        n = MAX_FRAMES;
    }
    for (i = 0; i < n; i++) {
        pcs[i] = frame_pc(t, &frames[i]);
    }
    id = t->next_stack;
    rc = pp_hash_intern(t->stacks, pcs, (size_t)n * sizeof(pcs[0]), &id);
    if (rc < 0) {
        t->oom = 1;
        return 0;
    }
    if (rc == 1) {
        return id;
    }
    t->next_stack++;
    blen = pp_varint_put(body, id);
    blen += pp_varint_put(body + blen, (uint64_t)n);
    for (i = 0; i < n; i++) {
        blen += pp_varint_put(body + blen, pcs[i]);
        blen += pp_varint_put(body + blen, string_id(t, frames[i].function ? frames[i].function : "?"));
        blen += pp_varint_put(body + blen, string_id(t, frames[i].file));
        blen += pp_varint_put(body + blen, (uint64_t)(frames[i].line > 0 ? frames[i].line : 0));
    }
    tmp[0] = EV_STACK | 3 << 6;
    put_bytes(t, &t->dict, tmp, 1);
    put_varint(t, &t->dict, blen);
    put_bytes(t, &t->dict, body, blen);
    return id;
}

static void copy_str(char *dst, size_t cap, const char *src)
{
    snprintf(dst, cap, "%s", src ? src : "");
}

/* The entry of a name, adding it (frame function, or "region.<name>") if new. NULL only
 * when out of memory. */
static named_frame *named_entry(pp_trace *t, const char *name, const char *function,
                                const char *file)
{
    uint64_t ix = t->nnames;
    named_frame *nf;
    int rc = pp_hash_intern(t->named, name, strlen(name), &ix);

    if (rc < 0) {
        t->oom = 1;
        return NULL;
    }
    if (rc == 1) {
        /* The first definition of a name stays. (An index never filled: out of memory.) */
        return ix < t->nnames ? &t->names[ix] : NULL;
    }
    if (t->nnames == t->cap_names) {
        size_t cap = t->cap_names ? t->cap_names * 2 : 16;
        named_frame *nn = realloc(t->names, cap * sizeof(*nn));
        if (!nn) {
            t->oom = 1;         /* the name stays interned: its index is never read */
            return NULL;
        }
        t->names = nn;
        t->cap_names = cap;
    }
    nf = &t->names[t->nnames++];
    memset(nf, 0, sizeof(*nf));
    if (function) {
        copy_str(nf->function, sizeof(nf->function), function);
    } else {
        snprintf(nf->function, sizeof(nf->function), "region.%s", name);
    }
    copy_str(nf->file, sizeof(nf->file), file);
    return nf;
}

/* The thread's start function, outermost in every stack of a goroutine's state change
 * (as a Go stack ends in its goroutine's function): Go 1.23+ name a goroutine that
 * existed before the trace by the outermost frame of its first such stack. */
static uint64_t transition_stack(pp_trace *t, const pp_trace_frame *frames, int n)
{
    pp_trace_frame fr[MAX_FRAMES];

    if (n > MAX_FRAMES - 1) {
        n = MAX_FRAMES - 1;
    }
    if (n > 0) {
        memcpy(fr, frames, (size_t)n * sizeof(fr[0]));
    }
    fr[n].function = t->thread_fn;
    fr[n].file = t->thread_file[0] ? t->thread_file : NULL;
    fr[n].line = 0;
    return stack_id(t, fr, n + 1);
}

static uint64_t named_stack(pp_trace *t, const char *name)
{
    named_frame *nf = named_entry(t, name, NULL, NULL);
    pp_trace_frame f;

    if (!nf) {
        return 0;
    }
    if (!nf->stack) {
        f.function = nf->function;
        f.file = nf->file[0] ? nf->file : NULL;
        f.line = 0;
        nf->stack = stack_id(t, &f, 1);
    }
    return nf->stack;
}

/* A named frame as the stack of a goroutine's state change. */
static uint64_t named_wait_stack(pp_trace *t, const char *name)
{
    named_frame *nf = named_entry(t, name, NULL, NULL);
    pp_trace_frame f;

    if (!nf) {
        return 0;
    }
    if (!nf->wait) {
        f.function = nf->function;
        f.file = nf->file[0] ? nf->file : NULL;
        f.line = 0;
        nf->wait = transition_stack(t, &f, 1);
    }
    return nf->wait;
}

/* --- events ------------------------------------------------------------------------- */

/* A timed event on P p at ts (already stamped), args after the delta. */
static void event(pp_trace *t, uint64_t p, uint64_t ts, int type, const uint64_t *args,
                  int nargs, const char *trailer, size_t tlen)
{
    unsigned char body[(MAX_ARGS + 1) * 10], ev[1 + 10 + sizeof(body)];
    size_t blen = 0, elen = 0;
    int i;

    if (t->cur_p != p) {
        unsigned char b[24];
        size_t n = 0;
        b[n++] = EV_BATCH | 1 << 6;
        n += pp_varint_put(b + n, p);
        n += pp_varint_put(b + n, ts);
        put_bytes(t, &t->out, b, n);
        t->cur_p = p;
        t->cur_ts = ts;
    }
    blen = pp_varint_put(body, ts - t->cur_ts);
    t->cur_ts = ts;
    for (i = 0; i < nargs; i++) {
        blen += pp_varint_put(body + blen, args[i]);
    }
    /* The event whole, then one put. */
    if (nargs >= 3) {           /* four or more arguments with the delta: length-prefixed */
        ev[elen++] = (unsigned char)(type | 3 << 6);
        elen += pp_varint_put(ev + elen, blen);
    } else {
        ev[elen++] = (unsigned char)(type | nargs << 6);
    }
    memcpy(ev + elen, body, blen);
    elen += blen;
    put_bytes(t, &t->out, ev, elen);
    if (type == EV_LOG) {
        put_varint(t, &t->out, tlen);
        put_bytes(t, &t->out, trailer, tlen);
    }
    t->stats.events++;
}

/* The next timestamp of thread th's P: never before ts, always after its last one. */
static uint64_t stamp(thread *th, uint64_t ts)
{
    if (ts <= th->last_ts) {
        ts = th->last_ts + 1;
    }
    th->last_ts = ts;
    return ts;
}

/* A thread's goroutine id, which is also its P's id (P 0 is the trace's own). */
static uint64_t g_of(const pp_trace *t, const thread *th)
{
    return (uint64_t)(th - t->threads) + 1;
}

static void ev_thread(pp_trace *t, thread *th, uint64_t ts, int type, const uint64_t *args,
                      int nargs)
{
    event(t, g_of(t, th), stamp(th, ts), type, args, nargs, NULL, 0);
}

static void gomaxprocs(pp_trace *t)
{
    uint64_t args[2];

    if (t->gomaxprocs_done) {
        return;
    }
    t->gomaxprocs_done = 1;
    args[0] = t->nthreads + 1;
    args[1] = 0;
    event(t, 0, t->p0_last, EV_GOMAXPROCS, args, 2, NULL, 0);
}

/* Start th's P, on the thread's kernel id (the M of newer viewers). A thread whose id is
 * not known (yet) runs on a P that is not started: never on a made-up "thread 0". */
static void start_proc(pp_trace *t, thread *th, uint64_t ts)
{
    uint64_t a = th->tid;

    if (!th->started && th->tid) {
        ev_thread(t, th, ts, EV_PROC_START, &a, 1);
        th->started = 1;
    }
}

/* Create th's goroutine at ts (a thread seen first during the trace: its P starts first). */
static void create(pp_trace *t, thread *th, uint64_t ts)
{
    uint64_t a[3];

    start_proc(t, th, ts);
    a[0] = g_of(t, th);
    a[1] = t->thread_stack;
    a[2] = 0;
    ev_thread(t, th, ts, EV_GO_CREATE, a, 3);
    th->created = th->last_ts;
    th->state = G_RUNNABLE;
    th->seq = 0;
}

static void run(pp_trace *t, thread *th, uint64_t ts)
{
    uint64_t a[3];

    if (!th->state) {
        create(t, th, ts);
    }
    if (th->state != G_RUNNING) {
        start_proc(t, th, ts);  /* its id may have become known since; not under it */
    }
    if (th->state == G_WAITING) {
        /* A thread only ever wakes itself: from G 0 on its own P, where it waited. A
         * stack of its own: Go 1.23+'s blocking profiles end a wait only at a state
         * change that has one (else the wait lasts to the thread's next stop). */
        a[0] = g_of(t, th);
        a[1] = ++th->seq;
        a[2] = th->wait_stk;
        ev_thread(t, th, ts, EV_GO_UNBLOCK, a, 3);
        th->state = G_RUNNABLE;
    }
    if (th->state == G_RUNNABLE) {
        a[0] = g_of(t, th);
        a[1] = ++th->seq;
        ev_thread(t, th, ts, EV_GO_START, a, 2);
        th->state = G_RUNNING;
    }
}

static void block(pp_trace *t, thread *th, uint64_t ts, int type, uint64_t stk)
{
    if (th->state == G_RUNNABLE || !th->state) {
        run(t, th, ts);
    }
    if (th->state == G_RUNNING) {
        ev_thread(t, th, ts, type, &stk, 1);
        th->state = G_WAITING;
        th->wait_stk = stk;
    }
}

static void region_end_top(pp_trace *t, thread *th, uint64_t ts)
{
    open_region *r = &th->regions[--th->nregions];
    uint64_t a[4];

    a[0] = r->task;
    a[1] = 1;
    a[2] = r->name;
    a[3] = r->stack;
    ev_thread(t, th, ts, EV_REGION, a, 4);
}

static void close_regions(pp_trace *t, thread *th, uint64_t ts, size_t keep)
{
    while ((size_t)th->nregions > keep) {
        region_end_top(t, th, ts);
        t->stats.repaired++;
    }
}

/* --- the public side ---------------------------------------------------------------- */

pp_trace *pp_trace_new(uint64_t t0)
{
    static const char header[16] = "go 1.19 trace\0\0\0";
    pp_trace *t = calloc(1, sizeof(*t));

    if (!t) {
        return NULL;
    }
    t->strings = pp_hash_new();
    t->frames = pp_hash_new();
    t->stacks = pp_hash_new();
    t->named = pp_hash_new();
    if (!t->strings || !t->frames || !t->stacks || !t->named) {
        pp_trace_free(t);
        return NULL;
    }
    t->t0 = t0 > DUMP_BEFORE * 2 ? t0 : DUMP_BEFORE * 2;
    t->dump_ts = t->t0 - DUMP_BEFORE;
    t->p0_last = t->t0;         /* P 0 (EvGomaxprocs, CPU samples) never before t0 */
    t->cur_p = NO_P;
    t->next_string = 1;
    t->next_pc = 0x401000;
    t->next_stack = 1;
    t->next_task = 1;
    put_bytes(t, &t->out, header, sizeof(header));
    if (pp_trace_set_thread_frame(t, "thread", NULL) != 0) {
        pp_trace_free(t);
        return NULL;
    }
    return t;
}

void pp_trace_free(pp_trace *t)
{
    if (!t) {
        return;
    }
    free(t->out.b);
    free(t->dict.b);
    pp_hash_free(t->strings);
    pp_hash_free(t->frames);
    pp_hash_free(t->stacks);
    pp_hash_free(t->named);
    free(t->names);
    free(t->threads);
    free(t->by_slot.s);
    free(t->by_tid.s);
    free(t->tasks.s);
    free(t);
}

int pp_trace_set_thread_frame(pp_trace *t, const char *function, const char *file)
{
    pp_trace_frame f;
    size_t i;

    if (t->nthreads > 0 || !function || !function[0]) {
        return -1;              /* goroutines already named by the old one */
    }
    copy_str(t->thread_fn, sizeof(t->thread_fn), function);
    copy_str(t->thread_file, sizeof(t->thread_file), file);
    f.function = t->thread_fn;
    f.file = t->thread_file[0] ? t->thread_file : NULL;
    f.line = 0;
    t->thread_stack = stack_id(t, &f, 1);
    for (i = 0; i < t->nnames; i++) {
        t->names[i].wait = 0;   /* made again with the new frame when used */
    }
    return t->oom ? -1 : 0;
}

int pp_trace_set_frame(pp_trace *t, const char *name, const char *function,
                       const char *file)
{
    /* The first definition of a name stays (names are set once, before use). */
    named_entry(t, name, function ? function : "?", file);
    return t->oom ? -1 : 0;
}

int pp_trace_set_name_id(pp_trace *t, unsigned id, const char *name)
{
    if (id == 0 || id >= PP_TRACE_NAME_IDS || !name || !name[0]) {
        return -1;
    }
    copy_str(t->name_id[id].name, sizeof(t->name_id[id].name), name);
    t->name_id[id].sid = t->name_id[id].stack = 0;
    return 0;
}

int pp_trace_thread(pp_trace *t, uint32_t pid, uint32_t slot, uint32_t tid, int state)
{
    uint64_t idx;
    thread *th;

    if (map_get(&t->by_slot, key2(pid, slot), &idx)) {
        th = &t->threads[idx];
        if (tid && th->tid != tid) {
            th->tid = tid;
            if (map_put(&t->by_tid, key2(pid, tid), idx) != 0) {
                t->oom = 1;
            }
        }
        return (int)idx;
    }
    if (t->finished) {
        return -1;
    }
    if (t->nthreads == t->cap_threads) {
        size_t cap = t->cap_threads ? t->cap_threads * 2 : 64;
        thread *nt = realloc(t->threads, cap * sizeof(*nt));
        if (!nt) {
            t->oom = 1;
            return -1;
        }
        t->threads = nt;
        t->cap_threads = cap;
    }
    idx = t->nthreads;
    if (map_put(&t->by_slot, key2(pid, slot), idx) != 0 ||
        (tid && map_put(&t->by_tid, key2(pid, tid), idx) != 0)) {
        t->oom = 1;
        return -1;
    }
    t->nthreads++;
    th = &t->threads[idx];
    memset(th, 0, sizeof(*th));
    th->pid = pid;
    th->tid = tid;
    t->stats.threads++;
    if (state != PP_TRACE_NEW && !t->gomaxprocs_done) {
        /* The initial dump, before t0 and EvGomaxprocs. Its GoCreates, all on the same
         * tick, are the trace's earliest events, and they alone: Go 1.23+ drop them and
         * take the next event's time as the trace's start, to which a goroutine shown
         * running is back-dated; at 0 their viewer panics (startRunningTime). */
        uint64_t a[3];
        a[0] = g_of(t, th);
        a[1] = t->thread_stack;
        a[2] = 0;
        ev_thread(t, th, t->dump_ts, EV_GO_CREATE, a, 3);
        th->created = th->last_ts;
        th->state = G_RUNNABLE;
        start_proc(t, th, t->dump_ts);
        if (state == PP_TRACE_WAITING) {
            a[0] = g_of(t, th);
            ev_thread(t, th, t->dump_ts, EV_GO_WAITING, a, 1);
            th->seq++;
            th->state = G_WAITING;
            th->wait_stk = named_wait_stack(t, "idle");     /* waiting for work */
        } else {
            run(t, th, t->dump_ts);
        }
    }
    return t->oom ? -1 : (int)idx;
}

int pp_trace_find_tid(const pp_trace *t, uint32_t pid, uint32_t tid)
{
    uint64_t idx;

    return map_get(&t->by_tid, key2(pid, tid), &idx) ? (int)idx : -1;
}

void pp_trace_set_resolver(pp_trace *t, pp_trace_resolve_fn fn, void *baton)
{
    t->resolve = fn;
    t->resolve_baton = baton;
}

/* The stack of a wait recorded as "function 0xPC 0xPC ...". */
static uint64_t wait_stack(pp_trace *t, const thread *th, const char *text)
{
    pp_trace_frame fr[MAX_FRAMES - 1];
    char fn[128];
    const char *p = text;
    size_t n = strcspn(p, " ");
    int nf = 1;

    snprintf(fn, sizeof(fn), "%.*s", (int)(n ? n : 4), n ? p : "wait");
    fr[0].function = fn;
    fr[0].file = NULL;
    fr[0].line = 0;
    for (p += n; *p == ' ' && nf < MAX_FRAMES - 1; p += strcspn(p, " ")) {
        char *end;
        uint64_t pc = strtoull(p + 1, &end, 16);
        p = end;
        if (pc && t->resolve) {
            int k = t->resolve(t->resolve_baton, th->pid, pc, fr + nf, MAX_FRAMES - 1 - nf);
            nf += k > 0 ? k : 0;
        }
    }
    return transition_stack(t, fr, nf);
}

typedef struct {
    pp_trace *t;
    thread *th;
} rec_ctx;

static uint64_t task_of(pp_trace *t, thread *th, uint64_t local)
{
    uint64_t gid = 0;

    /* A request's dozen records name the same task: one lookup, while no task began or
     * ended anywhere (map_get's hashing and probes were a tenth of the conversion). */
    if (th->tc_epoch == t->tasks_epoch + 1 && th->tc_local == local) {
        return th->tc_gid;
    }
    map_get(&t->tasks, key2(th->pid, local), &gid);
    th->tc_local = local;
    th->tc_gid = gid;
    th->tc_epoch = t->tasks_epoch + 1;
    return gid;
}

/* The stack of tasks and their logs, and the wait of an idle thread: asked at nearly
 * every record, looked up by name once. */
static uint64_t task_stack(pp_trace *t)
{
    if (!t->task_stack) {
        t->task_stack = named_stack(t, "task");
    }
    return t->task_stack;
}

static uint64_t idle_wait(pp_trace *t)
{
    if (!t->idle_wait) {
        t->idle_wait = named_wait_stack(t, "idle");
    }
    return t->idle_wait;
}

/* The entry of a record's name given by number (b), or NULL. */
static numbered_name *name_by_id(pp_trace *t, const pp_tb_record *r)
{
    return r->b > 0 && r->b < PP_TRACE_NAME_IDS && t->name_id[r->b].name[0]
           ? &t->name_id[r->b] : NULL;
}

/* A region record's name: its text, or its number's (pp_trace_set_name_id), or "region".
 * *sid its string id; *stack (if asked) the stack of its frame. */
static void region_of(pp_trace *t, const pp_tb_record *r, const char *text, uint64_t *sid,
                      uint64_t *stack)
{
    const char *name = text[0] ? text : "region";
    numbered_name *ni = text[0] ? NULL : name_by_id(t, r);

    if (ni) {
        if (!ni->sid) {
            ni->sid = string_id(t, ni->name);
        }
        *sid = ni->sid;
        if (stack) {
            if (!ni->stack) {
                ni->stack = named_stack(t, ni->name);
            }
            *stack = ni->stack;
        }
        return;
    }
    *sid = string_id(t, name);
    if (stack) {
        *stack = named_stack(t, name);
    }
}

static int one_record(void *baton, const pp_tb_record *r, const char *text)
{
    rec_ctx *c = baton;
    pp_trace *t = c->t;
    thread *th = c->th;
    uint64_t ts = r->ts > t->t0 ? r->ts : t->t0 + 1;
    uint64_t a[4];
    int i;

    gomaxprocs(t);
    switch (r->kind) {
    case PP_TB_WAKE:
    case PP_TB_UNBLOCK:
        run(t, th, ts);
        break;
    case PP_TB_IDLE:
        if (th->state == G_RUNNING) {
            close_regions(t, th, ts, 0);
        }
        block(t, th, ts, EV_GO_BLOCK_NET, idle_wait(t));
        break;
    case PP_TB_BLOCK:
        if (th->state != G_WAITING) {
            block(t, th, ts, r->a == PP_TB_BLOCK_SYNC ? EV_GO_BLOCK_SYNC : EV_GO_BLOCK_NET,
                  wait_stack(t, th, text));
        }
        break;
    case PP_TB_TASK_BEGIN: {
        uint64_t old = task_of(t, th, r->a);
        run(t, th, ts);
        if (old) {
            t->stats.repaired++;        /* begun twice: the second is another task */
        }
        a[0] = t->next_task++;
        a[1] = 0;
        a[2] = string_id(t, text[0] ? text : "request");
        a[3] = task_stack(t);
        t->tasks_epoch++;
        if (map_put(&t->tasks, key2(th->pid, r->a), a[0]) != 0) {
            t->oom = 1;
        }
        ev_thread(t, th, ts, EV_TASK_CREATE, a, 4);
        t->stats.tasks++;
        break;
    }
    case PP_TB_TASK_END: {
        uint64_t gid = task_of(t, th, r->a);
        if (!gid) {
            break;              /* begun before the trace: Go ignores unknown ids too */
        }
        run(t, th, ts);
        /* Regions of the task still open on this goroutine end with it. */
        for (i = th->nregions - 1; i >= 0 && th->regions[i].task != gid; i--) {
        }
        if (i >= 0) {
            close_regions(t, th, ts, (size_t)i);
        }
        a[0] = gid;
        a[1] = task_stack(t);
        ev_thread(t, th, ts, EV_TASK_END, a, 2);
        map_del(&t->tasks, key2(th->pid, r->a));
        t->tasks_epoch++;
        break;
    }
    case PP_TB_REGION_BEGIN:
        run(t, th, ts);
        if (th->nregions == MAX_REGIONS) {
            t->stats.repaired++;
            break;
        }
        {
            open_region *o = &th->regions[th->nregions++];
            o->task = task_of(t, th, r->a);
            region_of(t, r, text, &o->name, &o->stack);
            a[0] = o->task;
            a[1] = 0;
            a[2] = o->name;
            a[3] = o->stack;
            ev_thread(t, th, ts, EV_REGION, a, 4);
            t->stats.regions++;
        }
        break;
    case PP_TB_REGION_END: {
        uint64_t task = task_of(t, th, r->a), name;
        if (th->state != G_RUNNING) {
            t->stats.repaired++;        /* its start was before the thread's last wait */
            break;
        }
        region_of(t, r, text, &name, NULL);
        for (i = th->nregions - 1;
             i >= 0 && !(th->regions[i].task == task && th->regions[i].name == name); i--) {
        }
        if (i < 0) {
            t->stats.repaired++;        /* begun before the trace, or dropped */
            break;
        }
        close_regions(t, th, ts, (size_t)i + 1);
        region_end_top(t, th, ts);
        break;
    }
    case PP_TB_LOG: {
        /* "key\0value", both within the record's text: pp_tbuf_walk vouches for the key's
         * NUL only, so the value ends at its NUL or at the record's end. Or the key by
         * number (b) and the text the value alone. */
        numbered_name *ni = name_by_id(t, r);
        size_t room = r->size - sizeof(*r), klen = ni ? 0 : strlen(text);
        const char *value = ni ? text : text + klen + 1;
        size_t vlen = ni ? strlen(text) : klen + 1 < room ? strnlen(value, room - klen - 1) : 0;
        uint64_t gid = task_of(t, th, r->a);
        run(t, th, ts);
        a[0] = gid;
        if (ni) {
            if (!ni->sid) {
                ni->sid = string_id(t, ni->name);
            }
            a[1] = ni->sid;
        } else {
            a[1] = string_id(t, text);
        }
        a[2] = task_stack(t);
        event(t, g_of(t, th), stamp(th, ts), EV_LOG, a, 3, value, vlen);
        break;
    }
    default:
        break;
    }
    return t->oom ? -1 : 0;
}

int pp_trace_records(pp_trace *t, int thread_ix, const void *recs, size_t len)
{
    rec_ctx c;

    if (t->finished || thread_ix < 0 || (size_t)thread_ix >= t->nthreads) {
        return -1;
    }
    c.t = t;
    c.th = &t->threads[thread_ix];
    if (pp_tbuf_walk(recs, len, one_record, &c) != 0) {
        return -1;
    }
    return t->oom ? -1 : 0;
}

int pp_trace_cpu_sample(pp_trace *t, uint64_t ts, int thread_ix, const pp_trace_frame *frames,
                        int nframes)
{
    uint64_t a[4];

    if (t->finished) {
        return -1;
    }
    gomaxprocs(t);
    a[0] = ts > t->t0 ? ts : t->t0;
    if (thread_ix >= 0 && (size_t)thread_ix < t->nthreads) {
        const thread *th = &t->threads[thread_ix];
        /* Only a goroutine (and P) that exists at the sample's time: a sample naming a
         * goroutine before its creation makes the reader create it twice. */
        int exists = th->state && th->created && a[0] > th->created;
        a[1] = exists ? g_of(t, th) : UINT64_MAX;
        a[2] = exists ? g_of(t, th) : 0;
    } else {
        a[1] = UINT64_MAX;      /* no P: a thread that is no goroutine */
        a[2] = 0;
    }
    a[3] = stack_id(t, frames, nframes);
    /* Samples are placed by their own time; their chunk's times only have to grow. */
    event(t, 0, ++t->p0_last, EV_CPU_SAMPLE, a, 4, NULL, 0);
    t->stats.cpu_samples++;
    return t->oom ? -1 : 0;
}

int pp_trace_finish(pp_trace *t, uint64_t t_end)
{
    size_t i;

    if (t->finished) {
        return -1;
    }
    gomaxprocs(t);
    if (t_end < t->t0) {
        t_end = t->t0;
    }
    for (i = 0; i < t->nthreads; i++) {
        thread *th = &t->threads[i];
        uint64_t stk = t->thread_stack;
        if (th->state == G_RUNNING) {
            /* Every goroutine still running is stopped, as the runtime does. */
            ev_thread(t, th, t_end, EV_GO_SCHED, &stk, 1);
            th->state = G_RUNNABLE;
        }
        if (th->started) {
            ev_thread(t, th, t_end, EV_PROC_STOP, NULL, 0);
            th->started = 0;
        }
    }
    put_bytes(t, &t->dict, (const unsigned char[]){ EV_FREQUENCY }, 1);
    put_varint(t, &t->dict, 1000000000u);     /* ticks are nanoseconds */
    t->finished = 1;
    return t->oom ? -1 : 0;
}

const unsigned char *pp_trace_data(const pp_trace *t, size_t *len)
{
    pp_trace *m = (pp_trace *)t;

    /* Dictionary records may go anywhere after the first chunk: put them out now. */
    if (m->dict.len && m->cur_p != NO_P) {
        put_bytes(m, &m->out, m->dict.b, m->dict.len);
        m->dict.len = 0;
    }
    *len = m->oom ? 0 : m->out.len;
    return m->out.b;
}

void pp_trace_consume(pp_trace *t)
{
    t->out.len = 0;
}

void pp_trace_get_stats(const pp_trace *t, pp_trace_stats *out)
{
    *out = t->stats;
}
