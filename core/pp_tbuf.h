/* Per-thread trace event buffers: each thread writes the events of an execution trace
 * into a ring of its own, without locks; one reader (mod_pprof: the child's agent) takes
 * them out between writes. A single-producer single-consumer byte ring with monotonic
 * positions, so nothing is ever reset while a writer may be in flight: every record
 * carries the trace generation it was written for, and the reader drops the others.
 *
 * The records are semantic ("this thread started work", "region handler began"), not
 * Go's wire format: pp_trace turns them into a Go execution trace in the collector,
 * where the sequence numbers, processors and dictionaries of the whole server are known.
 *
 * A writer may hold back what it wrote after a task's start until the task's type is
 * known (pp_tbuf_task_type), so that a task can be named by something learned later
 * (mod_pprof: the request's handler) while its start time stays exact. */
#ifndef PP_TBUF_H
#define PP_TBUF_H

#include <stddef.h>
#include <stdint.h>

/* Record kinds. a and b are the record's two numbers; str its text. */
enum {
    PP_TB_WAKE = 1,             /* the thread starts work (a connection, a request) */
    PP_TB_IDLE,                 /* the thread waits for work again */
    PP_TB_BLOCK,                /* blocks inside work: a = PP_TB_BLOCK_NET or _SYNC, str = where,
                                 * b = 1 when str carries PCs */
    PP_TB_UNBLOCK,              /* runs again after PP_TB_BLOCK */
    PP_TB_TASK_BEGIN,           /* a = task id, str = task type (may be set later) */
    PP_TB_TASK_END,             /* a = task id */
    PP_TB_REGION_BEGIN,         /* a = task id, str = region name (or b = its number) */
    PP_TB_REGION_END,           /* a = task id, str = region name (or b = its number) */
    PP_TB_LOG,                  /* a = task id, str = "key\0value" (or b = the key's number,
                                 * str = the value) */
    PP_TB_KIND_MAX
};

enum { PP_TB_BLOCK_NET = 1, PP_TB_BLOCK_SYNC = 2 };

#define PP_TB_TYPE_MAX 32       /* bytes kept of a task type, with its NUL */
#define PP_TB_STR_MAX 512       /* bytes kept of any other text, with its NUL */

/* One record as it sits in the ring (8-byte aligned; size includes the text). A record
 * without text is the header alone; otherwise the text is NUL-terminated, padded to 8. */
typedef struct {
    uint32_t gen;
    uint16_t kind;
    uint16_t size;
    uint64_t ts;                /* CLOCK_MONOTONIC, ns */
    uint64_t a, b;
    /* followed by the text, NUL-terminated, padded to 8 bytes */
} pp_tb_record;

typedef struct pp_tbuf pp_tbuf;

/* A ring of capacity bytes (a power of two, >= 4096), memory mapped so that untouched
 * pages cost nothing. NULL on failure. */
pp_tbuf *pp_tbuf_new(size_t capacity);
void pp_tbuf_free(pp_tbuf *b);

/* Writer side (one thread). Append a record for generation gen; text may be NULL and
 * textlen bytes of it are kept (truncated to PP_TB_STR_MAX - 1). Returns 0, or -1 when
 * the ring is full (the record is dropped and counted). */
int pp_tbuf_put(pp_tbuf *b, uint32_t gen, int kind, uint64_t ts, uint64_t a, uint64_t bb,
                const char *text, size_t textlen);

/* Writer side: a task start whose type is not known yet. Records after it stay
 * unpublished until pp_tbuf_task_type (or pp_tbuf_publish) is called. */
int pp_tbuf_put_task(pp_tbuf *b, uint32_t gen, uint64_t ts, uint64_t task);

/* Writer side: name the held task (truncated to PP_TB_TYPE_MAX - 1) and publish. */
void pp_tbuf_task_type(pp_tbuf *b, const char *type);

/* Writer side: if the reader has taken everything written and the ring was written past
 * its first 4 KiB since, go on from the ring's start (positions stay monotonic: the rest
 * of the lap is skipped). A thread then writes the same few lines again, still in the
 * CPU's cache, instead of walking the whole ring, whose dead lines crowd out the
 * server's own: rings of 512 KiB cost a traced server 4.5 points of CPU per request more
 * than rings of 128 KiB in one bench/cost.sh run. For the writer's quiet moments (the
 * start of a request). */
void pp_tbuf_rewind(pp_tbuf *b);

/* Writer side: publish everything written (a held task keeps the type it has). */
void pp_tbuf_publish(pp_tbuf *b);

/* Writer side: drop what is written but unpublished (a held task and what follows it). */
void pp_tbuf_discard_held(pp_tbuf *b);

/* Reader side (one thread). Copy whole published records of generation gen into out
 * (capacity cap) and consume them; records of other generations are consumed and
 * skipped. Returns the bytes copied; *more is set when records remain. */
size_t pp_tbuf_read(pp_tbuf *b, uint32_t gen, void *out, size_t cap, int *more);

/* The largest record: a header and PP_TB_STR_MAX bytes of text, padded. */
#define PP_TB_RECORD_MAX (sizeof(pp_tb_record) + PP_TB_STR_MAX)

/* A run of whole records in memory. */
typedef struct {
    const void *data;
    size_t len;
} pp_tbuf_piece;

/* Reader side: the published records of generation gen, in place, without copying them
 * out: up to three pieces in order (the ring up to its end, the one record that wraps
 * around it copied into scratch, of PP_TB_RECORD_MAX bytes, then the ring from its
 * start); unused pieces have len 0. Records of other generations before them are consumed
 * and skipped; one after them ends the run (the next peek skips it). Nothing is consumed
 * until pp_tbuf_consume(b, the returned position): until then the writer cannot
 * overwrite the pieces. */
uint64_t pp_tbuf_peek(pp_tbuf *b, uint32_t gen, pp_tbuf_piece piece[3], void *scratch);

/* Reader side: consume up to pos, as pp_tbuf_peek returned it. */
void pp_tbuf_consume(pp_tbuf *b, uint64_t pos);

/* Give the ring's memory back to the system (its records are lost; a writer still in
 * flight at worst leaves a torn record, which the reader skips). For the reader, between
 * traces. */
void pp_tbuf_trim(pp_tbuf *b);

/* Bytes published and not yet read (of any generation). */
size_t pp_tbuf_pending(const pp_tbuf *b);

/* The end position of the last record written of kind PP_TB_BLOCK with b != 0 (a wait
 * with its callers' PCs), 0 if none: a reader whose records began before it may be
 * sending PCs (a bound: the record may lie beyond what it sends, never before). */
uint64_t pp_tbuf_pcs_end(const pp_tbuf *b);

/* Records dropped because the ring was full, since the ring was made. */
uint64_t pp_tbuf_dropped(const pp_tbuf *b);

/* CLOCK_MONOTONIC in ns: the clock of every record (the same in every process). */
uint64_t pp_tbuf_now(void);

/* Walk the records in buf (as pp_tbuf_read returned them). fn returns 0 to go on. The
 * text of each record is NUL-terminated ("" for a record without text). Returns -1 if
 * buf is malformed. */
int pp_tbuf_walk(const void *buf, size_t len,
                 int (*fn)(void *baton, const pp_tb_record *r, const char *text),
                 void *baton);

#endif
