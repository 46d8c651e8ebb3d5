#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_reqrec.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define WORDS (sizeof(pp_reqrec_info) / 8)
#define HANDLER_WORD (offsetof(pp_reqrec_info, handler) / 8)
#define HANDLER_WORDS (PP_REQREC_HANDLER / 8)
#define READ_TRIES 200          /* a writer holds a record for well under a microsecond */
#define SPIN_TRIES 16           /* then each try yields first */

_Static_assert(sizeof(pp_reqrec_info) % 8 == 0, "info is copied in 8-byte words");
_Static_assert(offsetof(pp_reqrec_info, request) % 8 == 0 &&
               offsetof(pp_reqrec_info, vhost) % 8 == 0 &&
               offsetof(pp_reqrec_info, client) % 8 == 0, "fields are copied in words");
_Static_assert(offsetof(pp_reqrec_info, handler) % 8 == 0 && PP_REQREC_HANDLER % 8 == 0,
               "the handler is rewritten alone, in whole words");

/* The info travels as 8-byte words, each stored and loaded atomically (relaxed): a reader
 * racing a writer gets some words of each, which the sequence counter then rejects. */
struct pp_reqrec {
    _Atomic uint32_t seq;       /* odd while the owner writes */
    _Atomic uint32_t owner;     /* the owner's tid; 0: free */
    _Atomic uint64_t busy;      /* token of the request in progress; 0: none */
    uint64_t words[WORDS];
} __attribute__((aligned(64)));

typedef struct {
    size_t cap;
    size_t bytes;
    uint64_t gen;
    _Atomic size_t used;        /* records below this index may be claimed */
    struct pp_reqrec recs[];
} table;

static table *_Atomic cur;
static uint64_t last_gen;
static pthread_key_t exit_key;
static int have_key;

static __thread pp_reqrec *tls_rec __attribute__((tls_model("initial-exec")));
static __thread uint64_t tls_gen __attribute__((tls_model("initial-exec")));

static void write_open(pp_reqrec *rec, uint32_t *s)
{
    *s = atomic_load_explicit(&rec->seq, memory_order_relaxed);
    atomic_store_explicit(&rec->seq, *s + 1, memory_order_relaxed);
    atomic_thread_fence(memory_order_release);
}

static void write_close(pp_reqrec *rec, uint32_t s)
{
    atomic_store_explicit(&rec->seq, s + 2, memory_order_release);
}

static void put_words(pp_reqrec *rec, size_t first, const char *src, size_t nwords)
{
    size_t i;

    for (i = 0; i < nwords; i++) {
        uint64_t w;
        memcpy(&w, src + 8 * i, 8);
        __atomic_store_n(&rec->words[first + i], w, __ATOMIC_RELAXED);
    }
}

/* Thread exit: the record goes back to the table. */
static void release(void *p)
{
    pp_reqrec *rec = p;
    uint32_t s;

    write_open(rec, &s);
    atomic_store_explicit(&rec->busy, 0, memory_order_relaxed);
    write_close(rec, s);
    atomic_store_explicit(&rec->owner, 0, memory_order_release);
}

static void drop(table *t)
{
    if (t) {
        munmap(t, t->bytes);
    }
}

int pp_reqrec_init(size_t capacity)
{
    size_t bytes = sizeof(table) + capacity * sizeof(struct pp_reqrec);
    table *t;

    pp_reqrec_fini();
    if (capacity == 0) {
        return -1;
    }
    /* Anonymous memory: zeroed, and pages of records never claimed are never touched. */
    t = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (t == MAP_FAILED) {
        return -1;
    }
    if (pthread_key_create(&exit_key, release) != 0) {
        munmap(t, bytes);
        return -1;
    }
    have_key = 1;
    t->cap = capacity;
    t->bytes = bytes;
    t->gen = ++last_gen;
    atomic_store_explicit(&cur, t, memory_order_release);
    return 0;
}

void pp_reqrec_fini(void)
{
    table *t = atomic_exchange(&cur, NULL);

    if (have_key) {
        /* No destructor may run on a record of a table that is gone. */
        pthread_key_delete(exit_key);
        have_key = 0;
    }
    drop(t);
}

size_t pp_reqrec_capacity(void)
{
    table *t = atomic_load_explicit(&cur, memory_order_acquire);

    return t ? t->cap : 0;
}

pp_reqrec *pp_reqrec_self(void)
{
    table *t = atomic_load_explicit(&cur, memory_order_acquire);
    uint32_t tid;
    size_t i;

    if (!t) {
        return NULL;
    }
    if (__builtin_expect(tls_gen == t->gen, 1)) {
        return tls_rec;
    }
    tls_gen = t->gen;
    tls_rec = NULL;
    tid = (uint32_t)syscall(SYS_gettid);
    for (i = 0; i < t->cap; i++) {
        pp_reqrec *rec = &t->recs[i];
        uint32_t expect = 0;
        uint32_t s;
        size_t used;

        if (atomic_load_explicit(&rec->owner, memory_order_relaxed) != 0 ||
            !atomic_compare_exchange_strong(&rec->owner, &expect, tid)) {
            continue;
        }
        write_open(rec, &s);
        atomic_store_explicit(&rec->busy, 0, memory_order_relaxed);
        write_close(rec, s);
        used = atomic_load(&t->used);
        while (used < i + 1 && !atomic_compare_exchange_weak(&t->used, &used, i + 1)) {
        }
        if (have_key && pthread_setspecific(exit_key, rec) != 0) {
            release(rec);
            return NULL;
        }
        tls_rec = rec;
        break;
    }
    return tls_rec;
}

void pp_reqrec_copy(char *dst, size_t n, const char *src)
{
    size_t len = src ? strnlen(src, n - 1) : 0;

    memcpy(dst, src ? src : "", len);
    dst[len] = '\0';
}

/* A string field's words up to the one holding its NUL: readers take every field as a
 * string, so what follows its NUL is never read. */
static void put_field(pp_reqrec *rec, const pp_reqrec_info *info, size_t off, size_t size)
{
    const char *f = (const char *)info + off;
    size_t used = strnlen(f, size - 1) + 1;

    put_words(rec, off / 8, f, (used + 7) / 8);
}

void pp_reqrec_begin(pp_reqrec *rec, const pp_reqrec_info *info)
{
    uint32_t s;

    /* Only the words that hold something (about 10 for a short request line, not the
     * record's 54): this runs on every request, and each word is a store into a cache
     * line the request would not otherwise touch. */
    write_open(rec, &s);
    put_words(rec, 0, (const char *)info, offsetof(pp_reqrec_info, request) / 8);
    put_field(rec, info, offsetof(pp_reqrec_info, request), PP_REQREC_REQUEST);
    put_field(rec, info, offsetof(pp_reqrec_info, vhost), PP_REQREC_VHOST);
    put_field(rec, info, offsetof(pp_reqrec_info, client), PP_REQREC_CLIENT);
    put_field(rec, info, offsetof(pp_reqrec_info, handler), PP_REQREC_HANDLER);
    write_close(rec, s);
    atomic_store_explicit(&rec->busy, info->token, memory_order_release);
}

void pp_reqrec_set_handler(pp_reqrec *rec, const char *handler)
{
    char buf[PP_REQREC_HANDLER];
    uint32_t s;

    memset(buf, 0, sizeof(buf));
    pp_reqrec_copy(buf, sizeof(buf), handler);
    write_open(rec, &s);
    put_words(rec, HANDLER_WORD, buf, HANDLER_WORDS);
    write_close(rec, s);
}

static int end_in(pp_reqrec *rec, uint64_t token)
{
    uint64_t expect = token;

    return atomic_load_explicit(&rec->busy, memory_order_relaxed) == token &&
           atomic_compare_exchange_strong(&rec->busy, &expect, 0);
}

void pp_reqrec_end(uint64_t token)
{
    table *t = atomic_load_explicit(&cur, memory_order_acquire);
    pp_reqrec *own;
    size_t i, used;

    if (!t || !token) {
        return;
    }
    own = tls_gen == t->gen ? tls_rec : NULL;
    if (own && atomic_load_explicit(&own->busy, memory_order_relaxed) == token) {
        /* The usual end, on the thread that began it: a plain store, no locked
         * instruction. Only this thread stores a token here, and a request ends once, so
         * no other thread can be clearing this one now. */
        atomic_store_explicit(&own->busy, 0, memory_order_release);
        return;
    }
    /* Ended on another thread than the one that began it (or never begun). */
    used = atomic_load(&t->used);
    for (i = 0; i < used; i++) {
        if (&t->recs[i] != own && end_in(&t->recs[i], token)) {
            return;
        }
    }
}

/* One consistent copy of rec into v; 0, or -1 when it changed under every try. */
static int read_one(pp_reqrec *rec, pp_reqrec_view *v)
{
    char *dst = (char *)&v->info;
    int tries;
    size_t i;

    for (tries = 0; tries < READ_TRIES; tries++) {
        uint32_t s1, s2;
        uint64_t busy;

        if (tries >= SPIN_TRIES) {
            sched_yield();      /* let a writer that was preempted mid-copy finish */
        }
        s1 = atomic_load_explicit(&rec->seq, memory_order_acquire);
        if (s1 & 1) {
            continue;
        }
        v->tid = atomic_load_explicit(&rec->owner, memory_order_relaxed);
        busy = atomic_load_explicit(&rec->busy, memory_order_relaxed);
        for (i = 0; i < WORDS; i++) {
            uint64_t w = __atomic_load_n(&rec->words[i], __ATOMIC_RELAXED);
            memcpy(dst + 8 * i, &w, 8);
        }
        atomic_thread_fence(memory_order_acquire);
        s2 = atomic_load_explicit(&rec->seq, memory_order_relaxed);
        if (s1 == s2) {
            v->busy = busy != 0;
            v->torn = 0;
            return 0;
        }
    }
    return -1;
}

size_t pp_reqrec_snapshot(pp_reqrec_view *out, size_t max)
{
    table *t = atomic_load_explicit(&cur, memory_order_acquire);
    size_t i, n = 0, used;

    if (!t) {
        return 0;
    }
    used = atomic_load(&t->used);
    for (i = 0; i < used && n < max; i++) {
        pp_reqrec *rec = &t->recs[i];
        pp_reqrec_view *v = &out[n];
        uint32_t tid = atomic_load_explicit(&rec->owner, memory_order_acquire);

        if (!tid) {
            continue;
        }
        memset(v, 0, sizeof(*v));
        if (read_one(rec, v) != 0) {
            v->tid = tid;
            v->busy = 0;
            v->torn = 1;
            memset(&v->info, 0, sizeof(v->info));
        }
        if (v->tid) {
            n++;
        }
    }
    return n;
}
