/* One shape for every profile: a kind of profile is one pprof_kind, a table of functions
 * with an agent half (what every child does: start, tick, stop, take) and a collector
 * half (merge one child's answer into the answer being built), plus what it serves and
 * the hooks it needs. Everything else is shared: the agent thread answers requests for
 * any kind by name (pprof_agent), the collector asks every child in one loop for any
 * kind (pprof_collect), and agent and collector speak one wire format (pp_wire).
 *
 * Two shapes of kind:
 *  - a snapshot kind (heap, goroutine, threadcreate) only answers TAKE: what the child
 *    holds right now. pprof_take_snapshots serves Go's plain and delta (seconds=N) forms.
 *  - a window kind (cpu, trace) captures between START and STOP in every child, in a
 *    window that the collector opens in shared memory (pprof_shared): children born
 *    during the window join it, each child stops by itself at the window's deadline or
 *    when the window closes, a child that ends during it hands over its last take
 *    (pprof_handover.h), and one window of a kind is open at a time, server-wide.
 *    pprof_run_window drives one: START every child, wait (taking every round if asked),
 *    STOP and take (or QUIT when the client left), close.
 *
 * Threads and order. The agent half runs on the agent thread of each child, one call at a
 * time; and before that thread starts (start, for a child born during a window, with out
 * NULL) and after it ended (stop with PPROF_STOP_EXIT), on the child's main thread. So a
 * kind's agent state needs no lock against itself, only against its own request hooks.
 * The collector half runs on the request thread of the collecting child.
 *
 * How to add a kind (for example a mutex-contention profile with Go's delta semantics):
 *  1. Write pprof_<name>.c defining `const pprof_kind pprof_kind_<name>`: its endpoint(s),
 *     its agent half, its merge. A window kind fed by interposed hooks in every child:
 *       - post_config: pprof_waits_install (lock and poll waits, pprof_waits.h), or its own
 *         interposition through pp_got;
 *       - start: a bounded table of its own (pp_stacktab, key and values its choice),
 *         cleared; pprof_waits_observe(its observer) - the observer records each wait it
 *         asks for (stack, then the time it lasted) into per-thread or locked storage;
 *       - tick: moves what the observer recorded into the table;
 *       - stop: pprof_waits_unobserve; drop the table unless why is PPROF_STOP_TAKE
 *         or PPROF_STOP_EXIT (a take follows: the child's hand-over);
 *       - take: pprof_out_mappings, pprof_out_stacktab, pprof_out_counter("dropped", ..),
 *         then clear the table: each take is the delta since the last (Go's delta
 *         semantics: what happened during the window);
 *       - merge: each child's stacks into a pprof_answer (pprof_answer_sample with the
 *         child's maps and a "pid" label; pprof_answer_synthetic for what was dropped);
 *       - serve: Go's checks of the query (pprof_query.h), then pprof_run_window, then
 *         pprof_answer_send(..., "<name>-delta" or "<name>") - or pprof_serve_error.
 *     A snapshot kind needs only take and merge, and serves through pprof_take_snapshots.
 *  2. Add one line `X(<name>)` to PPROF_KINDS in pprof_kinds.c (and the file to
 *     Makefile.am's sources). The agent then answers for it, the collector loop asks for
 *     it, its hooks are registered, its endpoints are served and listed on the index,
 *     and its window has a slot in shared memory.
 * Nothing in proto/ changes: a Reply carries stacks, threads, counters, tags and trace
 * records for any kind; a kind says in its file what it puts there. */
#ifndef PPROF_KIND_H
#define PPROF_KIND_H

#include "httpd.h"

#include "pp_maps.h"
#include "pp_wire.h"

/* An endpoint, /debug/pprof/<name>, answered as Go's net/http/pprof answers it. */
typedef struct {
    const char *name;
    int (*serve)(request_rec *r, apr_table_t *args);
    long (*count)(request_rec *r);      /* the index page's count; NULL shows 0 */
    const char *desc;                   /* the index page's text; NULL: not listed */
} pprof_endpoint;

/* Why a window stops in a child: what becomes of what it captured. */
typedef enum {
    PPROF_STOP_TAKE,    /* the collector stops it and takes the rest at once (STOP) */
    PPROF_STOP_ENDED,   /* it ended without the collector (deadline passed, or the window
                           closed or reopened in shared memory): nobody may come for what
                           is held; drop what costs memory */
    PPROF_STOP_QUIT,    /* the collector gave up (its client left): drop everything */
    PPROF_STOP_EXIT     /* the child ends: keep what is held, as for TAKE. The agent
                           takes it at once (op STOP) and leaves the reply for the
                           collector (pprof_handover.h); after that take, drop everything */
} pprof_stop_why;

/* A TAKE with this flag asks only how many records the kind holds now, for the index
 * page's count (pprof_collect_count): the kind's take answers the counter "records" and
 * nothing else, no stacks and no mappings, so the index costs every child next to
 * nothing. Kinds never use this bit for flags of their own. */
#define PPROF_TAKE_COUNT 0x80000000u

/* A reply being built by an agent half. */
typedef struct {
    apr_pool_t *pool;           /* freed once the reply is sent: the reply's parts live here */
    pp_wire_reply *reply;       /* status OK and pid set; the kind adds its data
                                   (pprof_reply.h helps) */
} pprof_out;

/* One child's answer, as the collector half is handed it. */
typedef enum {
    PPROF_CHILD_OK,             /* reply (and maps) hold its answer */
    PPROF_CHILD_NONE,           /* it answered that it has nothing for this request */
    PPROF_CHILD_GONE,           /* no agent listens for it: exited, or not started yet */
    PPROF_CHILD_FAILED,         /* no (whole, well-formed) answer by the deadline */
    PPROF_CHILD_REFUSED         /* it refused; why says why */
} pprof_child_status;

typedef struct {
    pid_t pid;                  /* the child asked */
    int op;                     /* what it was asked: PP_WIRE_START, _TAKE, _STOP, _QUIT */
    pprof_child_status status;
    const char *why;            /* REFUSED: the child's reason; FAILED: what went wrong */
    const pp_wire_reply *reply; /* OK: checked against pp_wire's bounds */
    const pp_maps *maps;        /* OK: its mappings, for pp_symbolize_pc and pp_resolver */
    int handed_over;            /* OK: the reply it left when it ended (pprof_handover.h),
                                   merged as its answer */
} pprof_child;

typedef struct pprof_kind {
    const char *name;                   /* on the wire; unique */
    const pprof_endpoint *endpoints;    /* ended by { NULL } */
    int window;                         /* 1: a window kind; 0: a snapshot kind */
    /* A snapshot kind: 1 when a child that ends during a delta (seconds=N) hands over its
     * last take, so the delta keeps what it did in the window (pprof_take_snapshots).
     * Window kinds always hand over (PPROF_STOP_EXIT). */
    int handover;
    /* 1 when merge keeps nothing of a child's reply or maps once it returns (it copies
     * what it needs): the collector frees each reply right after its merge instead of
     * holding every child's until the round or the collection ends. */
    int merge_keeps_nothing;

    /* The module's life; each may be NULL. A hook that runs on every request costs every
     * request, profiled or not: at a place mod_pprof.c already hooks, call the kind's
     * function from there (pprof_request.h) rather than register another. */
    void (*register_hooks)(apr_pool_t *p);
    void (*post_config)(apr_pool_t *pconf, server_rec *s);    /* parent, before forking */
    void (*child_init)(apr_pool_t *pchild, server_rec *s);    /* before the agent starts */

    /* --- the agent half (see "Threads and order" above) --- */

    /* Window kinds: open window req->gen (req->hz, req->deadline_us, req->flags) in this
     * child. Called again for a gen already open (a child born during the window joined
     * it from child_init, out NULL then): keep what it has. May add what the window
     * starts with to out (the trace: its threads). NULL, or why not (sent as REFUSED). */
    const char *(*start)(const pp_wire_request *req, pprof_out *out);

    /* Window kinds: every tick_ms while window gen is open here: empty bounded
     * buffers into what the window holds. May be NULL. */
    void (*tick)(apr_uint32_t gen);
    /* Window kinds: how often tick must run, in ms; 0 for PPROF_TICK_MS. The agent wakes
     * at the shortest of its open windows' (and runs every open window's tick then): a
     * kind whose buffers hold longer lets an agent wake less, which every child pays for
     * as long as the window is open. */
    int tick_ms;
    /* Window kinds, may be NULL: how long the agent may wait now for window gen's next
     * tick, in ms (0: tick_ms), asked after each tick: a kind whose window holds nothing
     * in this child lets its agent sleep longer. */
    int (*tick_wait)(apr_uint32_t gen);

    /* Window kinds: stop capturing for gen (see pprof_stop_why). The agent calls it once
     * per window, and no tick follows; after PPROF_STOP_EXIT, one take of gen (op STOP)
     * whose reply the agent hands over. */
    void (*stop)(apr_uint32_t gen, pprof_stop_why why);

    /* Hand over: a snapshot kind its snapshot; a window kind what window req->gen holds
     * since the last take (after stop, the rest). Returns PP_WIRE_OK with out filled,
     * PP_WIRE_NONE (nothing for req->gen), or PP_WIRE_ERROR (pprof_out_error). */
    int (*take)(const pp_wire_request *req, pprof_out *out);

    /* --- the collector half --- */

    /* Merge one child's answer to a request of this kind into answer (the kind's own
     * type, passed through pprof_collect). Called for every child asked, in order,
     * whatever its status; then for every child that ended during the window and left
     * its reply (handed_over: op STOP for a window kind's, TAKE for a snapshot's; a
     * child's reply is merged once, whether it answered or left it). */
    void (*merge)(void *answer, const pprof_child *child);
} pprof_kind;

/* How often a window's tick runs in each child, unless its kind says (tick_ms). */
#define PPROF_TICK_MS 100

#endif
