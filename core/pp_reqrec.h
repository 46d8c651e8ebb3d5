/* Per-thread request records: what each thread of the process is serving right now, for
 * a thread dump taken by another thread.
 *
 * A thread claims one record of a fixed, process-wide table on first use (and gives it
 * back when it exits). Only that thread writes its record's fields: no lock, no
 * allocation, a bounded copy into fixed buffers framed by a sequence counter (a seqlock).
 * A reader (any other thread) copies a record between two reads of the counter and
 * retries while it changes; a record that keeps changing under every try is reported as
 * torn, never as a mix of two requests. The request's end may be noted from another
 * thread (an asynchronous MPM logs a request on whichever thread finished writing it):
 * it only clears the busy token of the record that still names that request.
 *
 * Not async-signal-safe. */
#ifndef PP_REQREC_H
#define PP_REQREC_H

#include <stddef.h>
#include <stdint.h>

/* Field sizes, terminating NUL included: longer values are cut. */
#define PP_REQREC_REQUEST 256
#define PP_REQREC_VHOST 64
#define PP_REQREC_CLIENT 64
#define PP_REQREC_HANDLER 32

typedef struct {
    uint64_t token;             /* the request described (nonzero), e.g. its address */
    int64_t start_us;           /* when it began, microseconds since the epoch */
    char request[PP_REQREC_REQUEST];    /* "GET /x HTTP/1.1" */
    char vhost[PP_REQREC_VHOST];
    char client[PP_REQREC_CLIENT];
    char handler[PP_REQREC_HANDLER];
} pp_reqrec_info;

typedef struct pp_reqrec pp_reqrec;

/* A reader's copy of one claimed record. */
typedef struct {
    uint32_t tid;               /* the owner's kernel thread id */
    int busy;                   /* info describes the request it serves now */
    int torn;                   /* changed under every try: info unusable */
    pp_reqrec_info info;
} pp_reqrec_view;

/* Make the process-wide table of `capacity` records (a later call replaces it: threads
 * then claim again). Call before the threads that use it start. 0, or -1 out of memory. */
int pp_reqrec_init(size_t capacity);

/* Drop the table (records of live threads are forgotten; their next pp_reqrec_self
 * returns NULL). Call only when no other thread uses the table. */
void pp_reqrec_fini(void);

/* The calling thread's record, claimed on the first call; NULL without a table, or when
 * every record is taken (the thread then never gets one). A thread-local test once
 * claimed. */
pp_reqrec *pp_reqrec_self(void);

/* Copy src into dst of size n (n > 0), cut to n - 1 bytes, NUL-terminated. */
void pp_reqrec_copy(char *dst, size_t n, const char *src);

/* Owner only: rec now serves info's request (info->token nonzero). Each string field is
 * copied up to its NUL only: a reader's copy has the fields' strings, and after each NUL
 * whatever an earlier request left. */
void pp_reqrec_begin(pp_reqrec *rec, const pp_reqrec_info *info);

/* Owner only: the handler running for the request in progress. */
void pp_reqrec_set_handler(pp_reqrec *rec, const char *handler);

/* Any thread: the request `token` is over. The record serving it, if any still does, is
 * no longer busy: the caller's own is tried first (one compare-and-swap), the others are
 * looked through only when it is not there. */
void pp_reqrec_end(uint64_t token);

/* Copies of the claimed records into out (at most max); their number. */
size_t pp_reqrec_snapshot(pp_reqrec_view *out, size_t max);

/* The table's capacity (0 without one). */
size_t pp_reqrec_capacity(void);

#endif
