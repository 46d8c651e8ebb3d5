/* The collector: the child that serves a profile request asks every child's agent, and
 * each kind merges the answers (pprof_kind.h). One loop asks for any kind; two drivers on
 * top of it give Go's two shapes of endpoint: a snapshot (or the delta of two), and a
 * window that every child samples between a start and a stop. */
#ifndef PPROF_COLLECT_H
#define PPROF_COLLECT_H

#include "httpd.h"

#include "pprof_kind.h"

/* Ask every child in pids (all at once: each agent prepares its answer in parallel) for
 * req of kind k, then hand each answer to k->merge(answer, ...) in the order of pids.
 * Replies and their maps live as long as pool. Children that did not answer OK and are no
 * longer alive are taken out of pids (they answer no more). Returns how many answered
 * OK; *why (when non-NULL) is set to the last reason one did not (NULL when all did). */
int pprof_collect(apr_pool_t *pool, const pprof_kind *k, const pp_wire_request *req,
                  apr_array_header_t *pids, apr_interval_time_t timeout, void *answer,
                  const char **why);

/* The index page's count for snapshot kind k: the sum over every child of the records
 * it holds (a TAKE with PPROF_TAKE_COUNT: a counter, no stacks, no mappings), which is
 * the number of records a plain TAKE would merge. Asked once per request and kind (heap
 * and allocs share one answer). Children that do not answer count 0. */
long pprof_collect_count(request_rec *r, const pprof_kind *k);

/* A merge's note that child ch gave nothing of what (e.g. "heap samples"): a child that
 * has ended or is ending (recycled, trimmed, an older generation's) is the server's
 * ordinary life, logged at info (PP0202); one still alive that did not answer, at
 * warning (PP0201). */
void pprof_collect_missing(request_rec *r, const pprof_child *ch, const char *what);

/* --- snapshot kinds ---------------------------------------------------------------------- */

/* Go's handler.ServeHTTP for a snapshot kind, up to the answer: the "pid" restriction,
 * then one TAKE from every child merged into s->now; or, for a non-empty "seconds" (Go's
 * serveDeltaProfile, its texts), a TAKE into s->before, a wait, and a TAKE into s->now. */
typedef struct {
    const pprof_kind *kind;
    apr_uint32_t flags;         /* the request's flags for a plain snapshot */
    const char *gone_tag;       /* logged ("TAG: client went away") if the client leaves */
    void *before, *now;         /* the kind's answers */
    /* out */
    int delta;                  /* 1: before holds the start of the window */
    apr_time_t t0, t1;          /* the window (t0 == t1 for a plain snapshot) */
} pprof_snapshots;

/* OK: the takes are merged, answer them. Otherwise the status of what was answered
 * already (a 400 with Go's text) or -1: the client went away (nothing to answer). */
int pprof_take_snapshots(request_rec *r, apr_table_t *args, pprof_snapshots *s);

/* Go's serveDeltaProfile subtracts two takes record by record. What tells a child's
 * records apart; a snapshot kind's record type begins with it. */
typedef struct {
    long pid;
    apr_uint64_t key;           /* the stack's key (pp_wire_stack): the kind's meaning */
    apr_uint32_t npcs;
    const apr_uint64_t *pcs;
} pprof_rec_id;

/* Each record of end (an array of a kind's records, each beginning with a pprof_rec_id)
 * that start has too (same pid, key and PCs) keeps what accumulated in between: for each
 * index i of which[0..nwhich), its value ((apr_uint64_t *)((char *)rec + values_at))[i]
 * less start's, never below 0. Values not named (the heap's in-use ones) stay as they are
 * at the end; records of end that start lacks (a child born in between) stay whole. */
void pprof_delta_subtract(apr_pool_t *p, apr_array_header_t *end,
                          const apr_array_header_t *start, apr_size_t values_at,
                          const int *which, int nwhich);

/* --- window kinds ------------------------------------------------------------------------ */

typedef struct pprof_window_run {
    const pprof_kind *kind;
    void *answer;               /* merged: START, each round's TAKE, then STOP or QUIT */
    const char *fail;           /* Go's prefix of the 500 texts, e.g. "Could not enable
                                   CPU profiling" */
    const char *busy;           /* the text after it when a window of the kind is open */
    pid_t only;                 /* 0: every child */
    apr_uint32_t hz;
    double seconds;
    apr_interval_time_t round;  /* 0: no take before the end; else take this often */
    /* With round: 0 asks every child every round; N > 0 asks every child every Nth round
     * only, and in the others only the children whose agent did not say it holds nothing
     * (pprof_quiet_is; the kind's tick says it). The full rounds also find children that
     * ended (their hand-overs are read every round). */
    int full_every;
    /* Called once every child was asked to start (the trace sends its header), and after
     * each round's takes; non-zero when the client is gone. Either may be NULL. */
    int (*started)(struct pprof_window_run *w);
    int (*rounded)(struct pprof_window_run *w);
    /* out */
    apr_uint32_t gen;           /* the window's generation */
    apr_time_t t0, t1;          /* the window's start (every child asked has started),
                                   and when the wait ended */
    int gone;                   /* the client went away (children were told QUIT) */
    int nchildren;              /* the children asked at the end */
    apr_uint64_t asked, skipped;        /* rounds' takes: children asked, and left out
                                           as quiet */
} pprof_window_run;

/* Run a window: claim the kind's window slot, open it, START every child (only, or all),
 * wait (taking every round), then STOP (QUIT if the client left) every child that was or
 * now is in the window, close and release. Returns OK once the window ran, else the
 * status of the 500 answered (mod_pprof not initialized, another window open, no child
 * started). */
int pprof_run_window(request_rec *r, pprof_window_run *w);

#endif
