#include "pp_tbuf.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

struct pp_tbuf {
    uint64_t head;              /* published end: the reader may read up to here */
    char pad1[56];
    uint64_t tail;              /* consumed: the writer may overwrite up to here */
    char pad2[56];
    /* The writer's own. */
    uint64_t wpos;              /* end of what is written */
    uint64_t tail_seen;         /* tail as last read: a put reads tail's line (the
                                 * reader's, written at each take) only when this says
                                 * the ring may be full */
    uint64_t pcs_end;           /* end of the last record with PCs (read by the reader) */
    uint64_t held;              /* 1 + position of a task record waiting for its type */
    uint64_t dropped;
    size_t cap;
    size_t maplen;
    unsigned char *data;
};

#define ALIGN8(n) (((n) + 7u) & ~(size_t)7u)

uint64_t pp_tbuf_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

pp_tbuf *pp_tbuf_new(size_t capacity)
{
    size_t hdr = ALIGN8(sizeof(pp_tbuf));
    size_t len;
    void *m;
    pp_tbuf *b;

    if (capacity < 4096 || (capacity & (capacity - 1))) {
        return NULL;
    }
    len = hdr + capacity;
    m = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
             -1, 0);
    if (m == MAP_FAILED) {
        return NULL;
    }
    b = m;
    b->cap = capacity;
    b->maplen = len;
    b->data = (unsigned char *)m + hdr;
    return b;
}

void pp_tbuf_free(pp_tbuf *b)
{
    if (b) {
        munmap(b, b->maplen);
    }
}

static void copy_in(pp_tbuf *b, uint64_t pos, const void *src, size_t n)
{
    size_t off = (size_t)(pos & (b->cap - 1)), first = b->cap - off;

    if (n <= first) {
        memcpy(b->data + off, src, n);
    } else {
        memcpy(b->data + off, src, first);
        memcpy(b->data, (const unsigned char *)src + first, n - first);
    }
}

static void zero_in(pp_tbuf *b, uint64_t pos, size_t n)
{
    static const unsigned char zeros[64];

    while (n > 0) {
        size_t k = n < sizeof(zeros) ? n : sizeof(zeros);
        copy_in(b, pos, zeros, k);
        pos += k;
        n -= k;
    }
}

static void copy_out(const pp_tbuf *b, uint64_t pos, void *dst, size_t n)
{
    size_t off = (size_t)(pos & (b->cap - 1)), first = b->cap - off;

    if (n <= first) {
        memcpy(dst, b->data + off, n);
    } else {
        memcpy(dst, b->data + off, first);
        memcpy((unsigned char *)dst + first, b->data, n - first);
    }
}

static void publish(pp_tbuf *b)
{
    __atomic_store_n(&b->head, b->wpos, __ATOMIC_RELEASE);
}

/* The reader's moves of tail: forward only. The writer also moves it, over the space it
 * skips when it rewinds an empty ring (pp_tbuf_rewind), and a reader that read tail and
 * head before that must not take it back. */
static void advance_tail(pp_tbuf *b, uint64_t pos)
{
    uint64_t cur = __atomic_load_n(&b->tail, __ATOMIC_RELAXED);

    while (pos > cur && !__atomic_compare_exchange_n(&b->tail, &cur, pos, 1, __ATOMIC_RELEASE,
                                                     __ATOMIC_RELAXED)) {
    }
}

/* Where a rewind pays: a ring written past this offset since the reader emptied it. */
#define REWIND_MIN 4096u

void pp_tbuf_rewind(pp_tbuf *b)
{
    uint64_t at = b->wpos, next;

    if (b->held || (at & (b->cap - 1)) < REWIND_MIN ||
        __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE) != at) {
        return;                 /* held records, near the start already, or not empty */
    }
    next = (at | (b->cap - 1)) + 1;
    /* tail first, then head: a reader that reads head (it reads head first) at next sees
     * tail there too; one that read the old head may see tail past it: empty. */
    if (!__atomic_compare_exchange_n(&b->tail, &at, next, 0, __ATOMIC_ACQ_REL,
                                     __ATOMIC_ACQUIRE)) {
        return;                 /* the reader moved it meanwhile: not empty any more */
    }
    b->wpos = next;
    b->tail_seen = next;
    publish(b);
}

/* Write a record with room for textcap bytes of text (text copied, rest zeroed). */
static int put(pp_tbuf *b, uint32_t gen, int kind, uint64_t ts, uint64_t a, uint64_t bb,
               const char *text, size_t textlen, size_t textcap)
{
    size_t size = ALIGN8(sizeof(pp_tb_record) + textcap);
    size_t off;

    if (b->wpos + size - b->tail_seen > b->cap) {
        /* tail only grows: an old reading is a bound that errs toward full */
        b->tail_seen = __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE);
        if (b->wpos + size - b->tail_seen > b->cap) {
            __atomic_fetch_add(&b->dropped, 1, __ATOMIC_RELAXED);
            return -1;
        }
    }
    off = (size_t)(b->wpos & (b->cap - 1));
    if (off + size <= b->cap) {
        /* Nearly every record: in one piece, written in place. The header is stored
         * field by field into the ring: built on the stack and copied, its narrow stores
         * were read back by one wide load, which stalls (perf put most of put's time on
         * it). The pad after the text is at most 8 bytes (a held task's type room, 32)
         * and cleared with one memset; the 64-byte copies of zero_in and three copy_in
         * calls were the workers' largest share of a trace in perf (copy_in alone about
         * 1.6 us per request). */
        unsigned char *d = b->data + off;
        pp_tb_record *h = (pp_tb_record *)(void *)d;   /* 8-aligned: every size is */
        h->gen = gen;
        h->kind = (uint16_t)kind;
        h->size = (uint16_t)size;
        h->ts = ts;
        h->a = a;
        h->b = bb;
        if (textlen) {
            memcpy(d + sizeof(*h), text, textlen);
        }
        if (size > sizeof(*h) + textlen) {
            /* the NUL and the pad (a held task's whole type room) */
            memset(d + sizeof(*h) + textlen, 0, size - sizeof(*h) - textlen);
        }
    } else {
        pp_tb_record r;
        r.gen = gen;
        r.kind = (uint16_t)kind;
        r.size = (uint16_t)size;
        r.ts = ts;
        r.a = a;
        r.b = bb;
        copy_in(b, b->wpos, &r, sizeof(r));
        if (textlen) {
            copy_in(b, b->wpos + sizeof(r), text, textlen);
        }
        zero_in(b, b->wpos + sizeof(r) + textlen, size - sizeof(r) - textlen);
    }
    b->wpos += size;
    if (kind == PP_TB_BLOCK && bb) {
        /* the reader learns from this alone whether what it sends has PCs to name */
        __atomic_store_n(&b->pcs_end, b->wpos, __ATOMIC_RELAXED);
    }
    return 0;
}

int pp_tbuf_put(pp_tbuf *b, uint32_t gen, int kind, uint64_t ts, uint64_t a, uint64_t bb,
                const char *text, size_t textlen)
{
    int rc;

    if (!text) {
        textlen = 0;
    }
    if (textlen > PP_TB_STR_MAX - 1) {
        textlen = PP_TB_STR_MAX - 1;
    }
    /* A record without text is its header alone (32 bytes, not 40 with a NUL and its
     * pad): most of a request's records carry none, and the bytes a request writes are
     * what the worker's cache, the agent's copies and the socket pay for. */
    rc = put(b, gen, kind, ts, a, bb, text, textlen, textlen ? textlen + 1 : 0);
    if (rc == 0 && !b->held) {
        publish(b);
    }
    return rc;
}

int pp_tbuf_put_task(pp_tbuf *b, uint32_t gen, uint64_t ts, uint64_t task)
{
    uint64_t at = b->wpos;

    if (b->held) {
        pp_tbuf_publish(b);     /* the earlier task never got a type: it keeps none */
    }
    if (put(b, gen, PP_TB_TASK_BEGIN, ts, task, 0, NULL, 0, PP_TB_TYPE_MAX) != 0) {
        return -1;
    }
    b->held = at + 1;
    return 0;
}

void pp_tbuf_task_type(pp_tbuf *b, const char *type)
{
    if (b->held) {
        size_t n = type ? strlen(type) : 0;
        if (n > PP_TB_TYPE_MAX - 1) {
            n = PP_TB_TYPE_MAX - 1;
        }
        copy_in(b, b->held - 1 + sizeof(pp_tb_record), type, n);
    }
    pp_tbuf_publish(b);
}

void pp_tbuf_publish(pp_tbuf *b)
{
    b->held = 0;
    publish(b);
}

void pp_tbuf_discard_held(pp_tbuf *b)
{
    b->held = 0;
    b->wpos = __atomic_load_n(&b->head, __ATOMIC_RELAXED);
}

size_t pp_tbuf_read(pp_tbuf *b, uint32_t gen, void *out, size_t cap, int *more)
{
    uint64_t head = __atomic_load_n(&b->head, __ATOMIC_ACQUIRE);
    uint64_t pos = __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE);
    size_t n = 0;

    *more = 0;
    while (pos < head) {
        pp_tb_record r;
        copy_out(b, pos, &r, sizeof(r));
        if (r.size < sizeof(r) || (r.size & 7) || r.size > head - pos) {
            pos = head;         /* cannot happen with one writer; never loop on it */
            break;
        }
        if (r.gen == gen) {
            if (n + r.size > cap) {
                *more = 1;
                break;
            }
            copy_out(b, pos, (unsigned char *)out + n, r.size);
            n += r.size;
        }
        pos += r.size;
    }
    advance_tail(b, pos);
    return n;
}

uint64_t pp_tbuf_peek(pp_tbuf *b, uint32_t gen, pp_tbuf_piece piece[3], void *scratch)
{
    uint64_t head = __atomic_load_n(&b->head, __ATOMIC_ACQUIRE);
    uint64_t pos = __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE), start = 0, wrap = 0;
    pp_tb_record r;
    int skipping = 1;

    memset(piece, 0, 3 * sizeof(*piece));
    while (pos < head) {
        size_t off = (size_t)(pos & (b->cap - 1));
        if (off + sizeof(r) <= b->cap) {
            memcpy(&r, b->data + off, sizeof(r));       /* inlined: once per record */
        } else {
            copy_out(b, pos, &r, sizeof(r));
        }
        if (r.size < sizeof(r) || (r.size & 7) || r.size > head - pos ||
            r.size > PP_TB_RECORD_MAX) {
            /* Not a record (one writer never publishes one, but a trim may zero bytes
             * under a writer that publishes them later): never loop on it, never send
             * it, and never stall on it. Met first: it and all after it are dropped, as
             * pp_tbuf_read does. After a run of gen: the run ends before it, and the
             * next peek meets it first. */
            if (skipping) {
                advance_tail(b, head);
                return head;
            }
            break;
        }
        if (r.gen != gen) {
            if (!skipping) {
                break;          /* the run ends here; the next peek skips it */
            }
            pos += r.size;
            advance_tail(b, pos);
            continue;
        }
        if (skipping) {
            skipping = 0;
            start = pos;
        }
        if (off + r.size > b->cap) {
            wrap = pos + 1;     /* this record runs past the ring's end */
        }
        pos += r.size;
    }
    if (skipping) {
        return pos;             /* nothing of gen */
    }
    if (!wrap) {
        size_t off = (size_t)(start & (b->cap - 1)), first = b->cap - off;
        size_t len = (size_t)(pos - start);
        piece[0].data = b->data + off;
        piece[0].len = len < first ? len : first;
        piece[2].data = b->data;
        piece[2].len = len - piece[0].len;
    } else {
        uint64_t at = wrap - 1;
        copy_out(b, at, &r, sizeof(r));
        piece[0].data = b->data + (start & (b->cap - 1));
        piece[0].len = (size_t)(at - start);
        copy_out(b, at, scratch, r.size);
        piece[1].data = scratch;
        piece[1].len = r.size;
        piece[2].data = b->data + ((at + r.size) & (b->cap - 1));
        piece[2].len = (size_t)(pos - at - r.size);
    }
    return pos;
}

void pp_tbuf_consume(pp_tbuf *b, uint64_t pos)
{
    advance_tail(b, pos);
}

void pp_tbuf_trim(pp_tbuf *b)
{
    long page = sysconf(_SC_PAGESIZE);
    uintptr_t from = ((uintptr_t)b->data + (uintptr_t)page - 1) & ~((uintptr_t)page - 1);
    uintptr_t to = (uintptr_t)b + b->maplen;

    advance_tail(b, __atomic_load_n(&b->head, __ATOMIC_ACQUIRE));
    /* madvise wants a page-aligned start, and the data begins after the header: from the
     * first whole page (a ring's pages were never given back, 128 KiB per traced thread). */
    if (page > 0 && to > from) {
        madvise((void *)from, to - from, MADV_DONTNEED);
    }
}

size_t pp_tbuf_pending(const pp_tbuf *b)
{
    uint64_t head = __atomic_load_n(&b->head, __ATOMIC_ACQUIRE);
    uint64_t tail = __atomic_load_n(&b->tail, __ATOMIC_ACQUIRE);

    /* tail passes head for a moment while the writer rewinds */
    return head > tail ? (size_t)(head - tail) : 0;
}

uint64_t pp_tbuf_pcs_end(const pp_tbuf *b)
{
    return __atomic_load_n(&b->pcs_end, __ATOMIC_RELAXED);
}

uint64_t pp_tbuf_dropped(const pp_tbuf *b)
{
    return __atomic_load_n(&b->dropped, __ATOMIC_RELAXED);
}

int pp_tbuf_walk(const void *buf, size_t len,
                 int (*fn)(void *baton, const pp_tb_record *r, const char *text),
                 void *baton)
{
    const unsigned char *p = buf;
    size_t off = 0;

    while (off < len) {
        pp_tb_record r;
        const char *text;
        if (len - off < sizeof(r)) {
            return -1;
        }
        memcpy(&r, p + off, sizeof(r));
        if (r.size < sizeof(r) || (r.size & 7) || r.size > len - off ||
            r.kind == 0 || r.kind >= PP_TB_KIND_MAX) {
            return -1;
        }
        if (r.size == sizeof(r)) {
            text = "";          /* a record without text */
        } else {
            text = (const char *)p + off + sizeof(r);
            if (!memchr(text, '\0', r.size - sizeof(r))) {
                return -1;
            }
        }
        if (fn(baton, &r, text) != 0) {
            break;
        }
        off += r.size;
    }
    return 0;
}
