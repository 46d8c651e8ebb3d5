/* The trace's recorder, in every child: each worker thread writes what it does into a
 * ring of its own (pp_tbuf) from request hooks: it starts work, a request (a task named
 * by its handler) goes through its phases (regions read_request, access_auth, handler,
 * output, log), it waits for a held lock or the network, it goes idle. While no trace
 * runs each hook costs one load and one predictable branch.
 *
 * The rings are read by the trace kind's agent half (pprof_trace.c) on the agent thread:
 * start, stop, trim and drain are its, never called concurrently. */
#ifndef PPROF_TRACE_REC_H
#define PPROF_TRACE_REC_H

#include "httpd.h"

#include "pp_tbuf.h"

/* The names a request's records give by number (pp_trace_set_name_id): its regions and
 * its logs' keys. A name as text cost the ring, the agent's copies and the collector's
 * hashing at every record. */
enum {
    PPROF_NAME_READ_REQUEST = 1,        /* regions */
    PPROF_NAME_ACCESS_AUTH,
    PPROF_NAME_HANDLER,
    PPROF_NAME_OUTPUT,
    PPROF_NAME_LOG,
    PPROF_NAME_METHOD,                  /* log keys */
    PPROF_NAME_URI,
    PPROF_NAME_VHOST,
    PPROF_NAME_STATUS,
    PPROF_NAME_BYTES,
    PPROF_NAME_MAX
};

/* Their names, by number (index 0 unused). */
extern const char *const pprof_trace_names[PPROF_NAME_MAX];

/* register_hooks: the request hooks and the output filter. */
void pprof_trace_rec_register_hooks(apr_pool_t *p);

/* post_config (parent): interpose pthread_mutex_lock and poll for the waits. */
void pprof_trace_rec_post_config(server_rec *s);

/* Make the rings (one per worker slot, once per child; they stay) and switch the hooks
 * to trace gen. NULL, or why not. */
const char *pprof_trace_rec_start(apr_uint32_t gen, int nslots);

/* Switch the hooks off (if gen is still on). */
void pprof_trace_rec_stop(apr_uint32_t gen);

/* After the last read of a trace: the rings' memory goes back to the system. */
void pprof_trace_rec_trim(void);

/* The records read from one slot's ring and not yet handed over (malloc'ed). */
typedef struct {
    unsigned char *data;
    apr_size_t len, cap;
} pprof_trace_held;

/* Append the rings' published records of gen to held[slot] (one per slot given to
 * start), growing the buffers while their capacities together stay within max (*total
 * tracks it); what does not fit stays in the rings, which count what they then lose.
 * With half_full only the rings at least half full (the others wait for the take, which
 * sends them from the ring). Sets *pcs when a record read holds PCs (a wait's callers:
 * the reply then needs the child's maps). Returns the records lost to full rings since
 * the last call. Only the rings of threads that wrote for gen are read. */
apr_uint64_t pprof_trace_rec_drain(apr_uint32_t gen, pprof_trace_held *held,
                                   apr_size_t *total, apr_size_t max, int half_full,
                                   int *pcs);

/* Slot's records of gen (none if its thread wrote none for gen), in place in its ring
 * (pp_tbuf_peek: three pieces, scratch of
 * PP_TB_RECORD_MAX bytes); sets *pcs as drain does. Returns the position to consume once
 * the pieces are sent: until then the worker cannot overwrite them. */
apr_uint64_t pprof_trace_rec_peek(int slot, apr_uint32_t gen, pp_tbuf_piece piece[3],
                                  void *scratch, int *pcs);
void pprof_trace_rec_consume(int slot, apr_uint64_t pos);

/* Whether a ring written for trace gen holds published records not yet consumed: one
 * load of each ring's head, which its worker writes only when it publishes. */
int pprof_trace_rec_pending(apr_uint32_t gen);

/* The agent is about to say its child holds nothing (after pprof_quiet_say(gen, 1)): each
 * slot's worker, at its next hook, clears the child's quiet word (pprof_quiet_wake). Then
 * looks at the rings again: 1 when one holds records (a worker wrote them in a hook
 * begun before), and the child is not quiet after all. */
int pprof_trace_rec_arm(apr_uint32_t gen);

#endif
