/* The "trace" kind, /debug/pprof/trace: an execution trace of the whole server in Go's
 * format, a window kind whose collector takes ten times a second from every child that
 * holds something (a quiet child says so in shared memory: FULL_EVERY) and streams as it
 * goes.
 *
 * Agent half: while the window is open the recorder's hooks (pprof_trace_rec) write each
 * worker thread's records into its ring; a tick moves the records of a ring at least half
 * full into its slot's buffer (bounded: AGENT_BUF_MAX), and a CPU profile running at the
 * same time also hands its samples here (pprof_sampler). take hands over what was
 * gathered since the last take: the buffers, then what is in the rings, sent from them in
 * place and consumed once the reply is sent.
 * A child that ends during the window gives its last records in one last take, which the
 * agent leaves for the collector (pprof_handover.h): nothing is lost to an exit.
 *
 * Reply: start: threads (slot, tid, busy: the worker slots in use when tracing started).
 * take: sections (per worker slot, up to four in order: its tid and its pp_tbuf records),
 * samples (CPU samples: time, tid, stack), mappings (only with samples or records that
 * have PCs: name the samples' PCs and the waits' callers), counters
 * "dropped" (records lost to full rings since the last take); a hand-over cut to its
 * bound also has "handover_cut" (sections and samples left out).
 *
 * Collector half: turns every child's records into Go's events (pp_trace), symbolizing the
 * PCs of samples and waits, and streams them to the client after each round. */
#include "pprof_conf.h"
#include "pprof_collect.h"
#include "pprof_kind.h"
#include "pprof_query.h"
#include "pprof_reply.h"
#include "pprof_respond.h"
#include "pprof_sampler.h"
#include "pprof_scoreboard.h"
#include "pprof_shared.h"
#include "pprof_symbols.h"
#include "pprof_trace_rec.h"

#include "http_log.h"
#include "http_protocol.h"
#include "apr_strings.h"

#include "pp_tbuf.h"
#include "pp_trace.h"

#include <stdlib.h>

APLOG_USE_MODULE(pprof);

/* What an agent holds for a collector that falls behind: beyond it the rings fill and
 * their records are counted as lost. */
#define AGENT_BUF_MAX (16 * 1024 * 1024)
#define SAMPLES_MAX (64 * 1024 * 1024)  /* bytes of CPU samples held between takes */
#define ROUND_MS 100                    /* the collector's round: how fast the file grows, and
                                         * how much each child holds for it */
/* Every FULL_EVERY rounds (5 s) every child is asked; in the others only those that have
 * not said they hold nothing (pprof_quiet_say, at their agent's tick; a worker clears it
 * at its next hook). Asking every child every round was most of an unloaded trace's CPU
 * (150 prefork children: each agent woke, answered nothing, and the collector read 150
 * empty replies, ten times a second). What a take sends, the word shows: the full round
 * is a net, and finds what the scoreboard no longer names. */
#define FULL_EVERY 50
#define QUIET_TICK_MS 1000      /* the agent's tick while its child holds nothing */
#define MAX_FRAMES 64

extern const pprof_kind pprof_kind_trace;

/* === The agent half ===================================================================== */

/* One CPU sample, held for the next take. */
typedef struct {
    apr_uint64_t ts;
    apr_uint32_t tid, npcs;
    apr_uint64_t *pcs;
} held_sample;

static struct {
    apr_uint32_t gen;           /* the window recorded, 0 when none */
    apr_uint32_t data_gen;      /* the window whose records are held, until its last take */
    int stopped;                /* recording stopped: the next take is the last */
    pprof_trace_held *held;     /* per worker slot */
    int nslots;
    apr_size_t held_total;
    held_sample *smp;           /* malloc'ed, as their PCs */
    apr_size_t nsmp, capsmp, smp_bytes;
    apr_uint64_t dropped;       /* records lost since the last take */
    int pcs;                    /* a held record has PCs (a wait's callers) */
    int quiet;                  /* the last tick said this child holds nothing */
} tr;

static void trace_register_hooks(apr_pool_t *p)
{
    pprof_trace_rec_register_hooks(p);
}

static void trace_post_config(apr_pool_t *pconf, server_rec *s)
{
    pprof_trace_rec_post_config(s);
}

/* A CPU profile's sample, while this window records (pprof_sampler's sink). */
static void to_trace(void *baton, const pp_cpu_sample *s)
{
    apr_size_t bytes = sizeof(held_sample) + (apr_size_t)s->npcs * 8;
    held_sample *h;

    if (tr.nsmp == tr.capsmp) {
        apr_size_t cap = tr.capsmp ? tr.capsmp * 2 : 1024;
        held_sample *n;
        if (tr.smp_bytes + bytes > SAMPLES_MAX || !(n = realloc(tr.smp, cap * sizeof(*n)))) {
            return;             /* the trace shows fewer samples, nothing worse */
        }
        tr.smp = n;
        tr.capsmp = cap;
    }
    h = &tr.smp[tr.nsmp];
    if (tr.smp_bytes + bytes > SAMPLES_MAX || !(h->pcs = malloc((apr_size_t)s->npcs * 8 + 1))) {
        return;
    }
    memcpy(h->pcs, s->pcs, (apr_size_t)s->npcs * 8);
    h->ts = s->ts;
    h->tid = s->tid;
    h->npcs = s->npcs;
    tr.nsmp++;
    tr.smp_bytes += bytes;
}

static void drop_samples(void)
{
    apr_size_t i;

    for (i = 0; i < tr.nsmp; i++) {
        free(tr.smp[i].pcs);
    }
    tr.nsmp = 0;
    tr.smp_bytes = 0;
}

/* After the last take (or with nobody left to take): the rings' memory goes back and the
 * buffers are freed (a busy server's grow to megabytes). */
static void trace_end(void)
{
    int i;

    if (tr.gen) {
        pprof_trace_rec_stop(tr.gen);
        pprof_sampler_unsubscribe(to_trace, NULL);
    }
    pprof_trace_rec_trim();
    for (i = 0; i < tr.nslots; i++) {
        free(tr.held[i].data);
        memset(&tr.held[i], 0, sizeof(tr.held[i]));
    }
    drop_samples();
    free(tr.smp);
    tr.smp = NULL;
    tr.capsmp = 0;
    tr.held_total = 0;
    tr.dropped = 0;
    tr.pcs = 0;
    tr.quiet = 0;
    tr.gen = tr.data_gen = 0;
    tr.stopped = 0;
}

/* The worker slots as they are now (for the trace's first state), then switch this
 * child's hooks to the window. */
static const char *trace_start(const pp_wire_request *req, pprof_out *out)
{
    const char *err;
    int i;

    if (out) {
        apr_array_header_t *states = pprof_slot_states(out->pool);
        for (i = 0; i < states->nelts; i++) {
            const pprof_slot_state *st = &APR_ARRAY_IDX(states, i, pprof_slot_state);
            pp_wire_thread *t = pprof_out_thread(out);
            t->slot = st->slot;
            t->tid = st->tid;
            t->busy = st->busy;
        }
    }
    if (tr.gen == req->gen) {
        return NULL;            /* joined from child_init already: keep what it has */
    }
    trace_end();
    if (!tr.held) {
        tr.nslots = pprof_slots();
        if (!(tr.held = calloc((apr_size_t)(tr.nslots > 0 ? tr.nslots : 1), sizeof(*tr.held)))) {
            return "out of memory";
        }
    }
    if ((err = pprof_trace_rec_start(req->gen, tr.nslots)) != NULL) {
        return err;
    }
    tr.gen = tr.data_gen = req->gen;
    /* As in Go, the trace carries the CPU samples of a CPU profile that runs at the same
     * time: tracing alone does not start the sampler. */
    pprof_sampler_subscribe(to_trace, NULL);
    return NULL;
}

/* A tick copies out only the rings at least half full, which might fill before the next
 * take; the take sends the others from the ring itself. Copying every ring into the
 * agent's buffers each tick was a second pass over every record, and those buffers were
 * megabytes per child. */
static void trace_tick(apr_uint32_t gen)
{
    int s, held = 0, quiet;

    tr.dropped += pprof_trace_rec_drain(tr.data_gen, tr.held, &tr.held_total, AGENT_BUF_MAX,
                                        1, &tr.pcs);
    for (s = 0; s < tr.nslots && !held; s++) {
        held = tr.held[s].len > 0;
    }
    /* Whether a take would send anything: every part of hand_over's reply is here. The
     * collector asks a quiet child only in its full rounds, and its agent ticks slowly;
     * its workers clear the word at their next hook (armed after the word is set, so the
     * worker that sees the arm sees the word), and a worker whose hook began before the
     * arm and published after the look below has its records found by the next hook or
     * tick: later, never lost. */
    quiet = !held && !tr.nsmp && !tr.dropped && !pprof_trace_rec_pending(tr.data_gen);
    pprof_quiet_say(tr.data_gen, quiet);
    if (quiet && pprof_trace_rec_arm(tr.data_gen)) {
        quiet = 0;
        pprof_quiet_say(tr.data_gen, 0);
    }
    tr.quiet = quiet;
}

/* A quiet child's agent ticks slowly: its workers wake the collector's rounds for it
 * (through the word), and the take that follows wakes the agent. */
static int trace_tick_wait(apr_uint32_t gen)
{
    return tr.quiet && tr.gen == gen ? QUIET_TICK_MS : 0;
}

/* A buffer handed over with a reply comes back when the reply's pool is destroyed (on the
 * agent thread, once the reply is sent): its slot's next records go into it again, rather
 * than into a fresh allocation whose pages the kernel would map and clear again every
 * round (about a third of the page faults a trace added per request). Freed instead if
 * the window has ended meanwhile or the slot has a buffer again. */
typedef struct {
    int slot;
    apr_uint32_t gen;
    unsigned char *data;
    apr_size_t cap;
} given_buf;

static apr_status_t give_back(void *arg)
{
    given_buf *g = arg;
    pprof_trace_held *h = tr.held && g->slot < tr.nslots ? &tr.held[g->slot] : NULL;

    if (h && !h->data && tr.data_gen && tr.data_gen == g->gen) {
        h->data = g->data;
        h->cap = g->cap;
        h->len = 0;
        tr.held_total += g->cap;
    } else {
        free(g->data);
    }
    return APR_SUCCESS;
}

/* A ring's records sent in place: consumed once the reply is sent (the reply's pool). */
typedef struct {
    int slot;
    apr_uint64_t pos;
} sent_ring;

static apr_status_t consume_sent(void *arg)
{
    sent_ring *sr = arg;

    pprof_trace_rec_consume(sr->slot, sr->pos);
    return APR_SUCCESS;
}

static void add_section(pprof_out *out, int slot, apr_uint32_t tid, const void *data,
                        apr_size_t len)
{
    pp_wire_section *sec = pprof_out_section(out);

    sec->slot = (apr_uint32_t)slot;
    sec->tid = tid;
    sec->records.data = (uint8_t *)data;
    sec->records.len = len;
}

/* What is held into out, handed over: the buffers go with the reply and come back to their
 * slots once it is sent (give_back); then what is still in each ring, in place, consumed
 * once it is sent (consume_sent): the records are copied once, into the socket. */
static void hand_over(pprof_out *out)
{
    apr_size_t i;
    int s, k, samples = tr.nsmp > 0;
    /* Where a record that wraps around its ring's end is copied, sent with the reply. */
    unsigned char *room = apr_palloc(out->pool, PP_TB_RECORD_MAX);

    for (s = 0; s < tr.nslots; s++) {
        pprof_trace_held *h = &tr.held[s];
        apr_uint32_t tid = 0;
        pp_tbuf_piece piece[3];
        apr_uint64_t pos;

        if (h->len) {
            tid = pprof_slot_tid(s);
            add_section(out, s, tid, h->data, h->len);
            {
                given_buf *g = apr_palloc(out->pool, sizeof(*g));
                g->slot = s;
                g->gen = tr.data_gen;
                g->data = h->data;
                g->cap = h->cap;
                apr_pool_cleanup_register(out->pool, g, give_back, apr_pool_cleanup_null);
            }
            tr.held_total -= h->cap;
            memset(h, 0, sizeof(*h));
        }
        pos = pprof_trace_rec_peek(s, tr.data_gen, piece, room, &tr.pcs);
        if (!piece[0].len && !piece[1].len && !piece[2].len) {
            continue;
        }
        if (piece[1].len) {
            room = apr_palloc(out->pool, PP_TB_RECORD_MAX);     /* that one is sent */
        }
        if (!tid) {
            tid = pprof_slot_tid(s);
        }
        for (k = 0; k < 3; k++) {
            if (piece[k].len) {
                add_section(out, s, tid, piece[k].data, piece[k].len);
            }
        }
        {
            sent_ring *sr = apr_palloc(out->pool, sizeof(*sr));
            sr->slot = s;
            sr->pos = pos;
            apr_pool_cleanup_register(out->pool, sr, consume_sent, apr_pool_cleanup_null);
        }
    }
    for (i = 0; i < tr.nsmp; i++) {
        pp_wire_sample *smp = pprof_out_sample(out);
        smp->ts = tr.smp[i].ts;
        smp->tid = tr.smp[i].tid;
        smp->n_pcs = tr.smp[i].npcs;
        smp->pcs = pprof_out_pcs(out, tr.smp[i].pcs, tr.smp[i].npcs);
    }
    drop_samples();
    /* The maps name the PCs of CPU samples and of waits' callers, and only those: read
     * and parsed every round by every child, /proc/self/maps was the largest part of the
     * agents' CPU in a trace of static files (no waits, no samples: no PC to name). */
    if (samples || tr.pcs) {
        pprof_out_mappings(out);
    }
    tr.pcs = 0;
    pprof_out_counter(out, "dropped", (apr_int64_t)tr.dropped);
    tr.dropped = 0;
}

static void trace_stop(apr_uint32_t gen, pprof_stop_why why)
{
    if (tr.gen != gen) {
        return;
    }
    if (why == PPROF_STOP_ENDED || why == PPROF_STOP_QUIT) {
        trace_end();            /* the collector is gone (or never asked): unread */
        return;
    }
    /* A CPU profile's samples up to here; the last take (the collector's STOP, or the
     * hand-over of a child that ends) has the rest and lets everything go. */
    pprof_sampler_drain();
    pprof_trace_rec_stop(gen);
    pprof_sampler_unsubscribe(to_trace, NULL);
    tr.gen = 0;
    tr.stopped = 1;
}

/* The last take's end, once its reply is sent: the rings it sent from are trimmed only
 * then. Registered before the reply's other cleanups, it runs after them. */
static apr_status_t end_after_send(void *arg)
{
    apr_uint32_t gen = (apr_uint32_t)(apr_uintptr_t)arg;

    if (tr.data_gen == gen) {
        trace_end();
    }
    return APR_SUCCESS;
}

static int trace_take(const pp_wire_request *req, pprof_out *out)
{
    if (!req->gen || tr.data_gen != req->gen) {
        return PP_WIRE_NONE;
    }
    if (!tr.stopped) {
        pprof_sampler_drain();
    } else {
        apr_pool_cleanup_register(out->pool, (void *)(apr_uintptr_t)tr.data_gen,
                                  end_after_send, apr_pool_cleanup_null);
    }
    tr.dropped += pprof_trace_rec_drain(tr.data_gen, tr.held, &tr.held_total, AGENT_BUF_MAX,
                                        1, &tr.pcs);
    hand_over(out);
    return PP_WIRE_OK;
}

/* === The collector half ================================================================= */

typedef struct {
    request_rec *r;
    pp_trace *tr;
    apr_uint64_t dropped;
    apr_uint64_t cut;           /* parts of hand-overs cut to their bound */
    apr_uint64_t bytes;         /* of the children's records (what the workers wrote) */
    int failed;
    /* While one child's answer is read: its pid, maps, and the symbolizer (held). */
    pid_t maps_pid;
    const pp_maps *maps;
    pp_symbolizer *sym;
    char names[2 * MAX_FRAMES][24];
    unsigned nnames;
} collector;

static const struct {
    const char *name, *function, *file;
} frames[] = {
    { "read_request", "ap_read_request", "server/protocol.c" },
    { "access_auth", "ap_process_request_internal", "server/request.c" },
    { "handler", "ap_invoke_handler", "server/config.c" },
    { "output", "ap_pass_brigade", "server/util_filter.c" },
    { "log", "ap_run_log_transaction", "server/protocol.c" },
    { "task", "ap_process_request", "modules/http/http_request.c" },
    { "idle", "httpd.wait_for_work", NULL },
};

/* The frames of pc in the child being read (c->maps), innermost first. */
static int resolve_pc(collector *c, apr_uint64_t pc, int leaf, pp_trace_frame *out, int max)
{
    pp_frame sf[8];
    pp_pc_site site;
    int k, ns;

    if (!c->maps || !c->sym || max <= 0) {
        return 0;
    }
    /* A return address unless leaf: the call is the byte before. */
    ns = pp_symbolize_pc(c->sym, c->maps, pc, !leaf, sf, 8, &site);
    for (k = 0; k < ns && k < max; k++) {
        out[k].function = sf[k].function ? sf[k].function : "?";
        out[k].file = sf[k].file ? sf[k].file : site.map->path;
        out[k].line = sf[k].line;
    }
    if (ns == 0) {
        char *name = c->names[c->nnames++ % (sizeof(c->names) / sizeof(c->names[0]))];
        apr_snprintf(name, sizeof(c->names[0]), "0x%" APR_UINT64_T_HEX_FMT, pc);
        out[0].function = name;
        out[0].file = site.map ? site.map->path : NULL;
        out[0].line = 0;
        k = 1;
    }
    return k;
}

static int resolver(void *baton, uint32_t pid, uint64_t pc, pp_trace_frame *out, int max)
{
    collector *c = baton;

    return (pid_t)pid == c->maps_pid ? resolve_pc(c, pc, 0, out, max) : 0;
}

/* One child's records and CPU samples, from a take or a leftover file. */
static void feed(collector *c, pid_t pid, const pp_wire_reply *m, const pp_maps *maps)
{
    size_t i;
    apr_uint32_t k;

    c->dropped += (apr_uint64_t)pp_wire_get_counter(m, "dropped", 0);
    c->cut += (apr_uint64_t)pp_wire_get_counter(m, "handover_cut", 0);
    c->maps_pid = pid;
    c->maps = maps;
    c->sym = maps && pp_maps_count(maps) ? pprof_symbols_lock() : NULL;
    for (i = 0; i < m->n_sections; i++) {
        const pp_wire_section *s = m->sections[i];
        int th = pp_trace_thread(c->tr, (apr_uint32_t)pid, s->slot, s->tid, PP_TRACE_NEW);
        c->bytes += s->records.len;
        if (th < 0 || pp_trace_records(c->tr, th, s->records.data, s->records.len) != 0) {
            c->failed = 1;
        }
    }
    for (i = 0; i < m->n_samples; i++) {
        const pp_wire_sample *s = m->samples[i];
        pp_trace_frame fr[MAX_FRAMES];
        int n = 0;
        for (k = 0; k < s->n_pcs && n < MAX_FRAMES; k++) {
            n += resolve_pc(c, s->pcs[k], k == 0, fr + n, MAX_FRAMES - n);
        }
        pp_trace_cpu_sample(c->tr, s->ts, pp_trace_find_tid(c->tr, (apr_uint32_t)pid, s->tid),
                            fr, n);
    }
    if (c->sym) {
        pprof_symbols_unlock();
    }
    c->maps = NULL;
    c->sym = NULL;
}

static void trace_merge(void *answer, const pprof_child *ch)
{
    collector *c = answer;
    size_t i;

    if (ch->op == PP_WIRE_START) {
        /* The threads it had when tracing started. */
        for (i = 0; ch->status == PPROF_CHILD_OK && i < ch->reply->n_threads; i++) {
            const pp_wire_thread *t = ch->reply->threads[i];
            pp_trace_thread(c->tr, (apr_uint32_t)ch->pid, (apr_uint32_t)t->slot, t->tid,
                            t->busy ? PP_TRACE_RUNNING : PP_TRACE_WAITING);
        }
    } else if (ch->op == PP_WIRE_TAKE || ch->op == PP_WIRE_STOP) {
        /* A child that ended during the window left its last take: it comes as OK
         * (pprof_collect reads it). */
        if (ch->status == PPROF_CHILD_OK) {
            feed(c, ch->pid, ch->reply, ch->maps);
        }
    }
}

/* What the writer has made so far, to the client. Non-zero when the client is gone. */
static int send_data(collector *c)
{
    size_t len;
    const unsigned char *data = pp_trace_data(c->tr, &len);
    int rc = 0;

    if (len) {
        rc = ap_rwrite(data, (int)len, c->r) < 0 || ap_rflush(c->r) < 0;
    }
    pp_trace_consume(c->tr);
    return rc;
}

/* Every child started: the answer starts at once (the file grows while tracing). */
static int started(pprof_window_run *w)
{
    collector *c = w->answer;

    pprof_attach(c->r, "trace");
    return send_data(c);
}

static int rounded(pprof_window_run *w)
{
    return send_data(w->answer);
}

/* Go's Trace handler for the whole server. */
static int serve_trace(request_rec *r, apr_table_t *args)
{
    double sec = pprof_seconds_or(args, 1, 0);
    const char *mpm = ap_show_mpm();
    pprof_window_run w;
    collector c;
    pp_trace_stats st;
    size_t k;

    if (pprof_exceeds_timeout(r, sec)) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST,
                                 "profile duration exceeds server's WriteTimeout");
    }
    memset(&c, 0, sizeof(c));
    c.r = r;
    if (!(c.tr = pp_trace_new(pp_tbuf_now()))) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR,
                                 "Could not enable tracing: out of memory");
    }
    pp_trace_set_thread_frame(c.tr, "httpd.worker_thread",
                              apr_psprintf(r->pool, "server/mpm/%s/%s.c", mpm, mpm));
    pp_trace_set_resolver(c.tr, resolver, &c);
    for (k = 0; k < sizeof(frames) / sizeof(frames[0]); k++) {
        pp_trace_set_frame(c.tr, frames[k].name, frames[k].function, frames[k].file);
    }
    for (k = 1; k < PPROF_NAME_MAX; k++) {
        pp_trace_set_name_id(c.tr, (unsigned)k, pprof_trace_names[k]);
    }
    memset(&w, 0, sizeof(w));
    w.kind = &pprof_kind_trace;
    w.answer = &c;
    w.fail = "Could not enable tracing";
    w.busy = "tracing is already enabled";
    w.seconds = sec;
    w.round = apr_time_from_msec(ROUND_MS);
    w.full_every = FULL_EVERY;
    w.started = started;
    w.rounded = rounded;
    if (pprof_run_window(r, &w) == DONE) {
        pp_trace_free(c.tr);
        return OK;
    }
    if (!w.gone) {
        pp_trace_finish(c.tr, pp_tbuf_now());
        send_data(&c);
    }
    pp_trace_get_stats(c.tr, &st);
    ap_log_rerror(APLOG_MARK, w.gone ? APLOG_INFO : APLOG_DEBUG, 0, r,
                  "PP0401: trace %s after %.1f s: %d children, %" APR_UINT64_T_FMT
                  " threads, %" APR_UINT64_T_FMT " tasks, %" APR_UINT64_T_FMT " events, %"
                  APR_UINT64_T_FMT " CPU samples, %" APR_UINT64_T_FMT " records lost, %"
                  APR_UINT64_T_FMT " repaired, %" APR_UINT64_T_FMT " hand-over parts cut, %"
                  APR_UINT64_T_FMT " bytes of records; rounds asked %" APR_UINT64_T_FMT
                  " children, left %" APR_UINT64_T_FMT " quiet ones out",
                  w.gone ? "stopped: client went away" : "done",
                  (double)(apr_time_now() - w.t0) / APR_USEC_PER_SEC, w.nchildren, st.threads,
                  st.tasks, st.events, st.cpu_samples, c.dropped, st.repaired, c.cut,
                  c.bytes, w.asked, w.skipped);
    if (c.failed) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, r,
                      "PP0402: some trace records of the children could not be read");
    }
    pp_trace_free(c.tr);
    return OK;
}

static const pprof_endpoint endpoints[] = {
    { "trace", serve_trace, NULL,
      "A trace of execution of the whole server: every worker thread of every child, each "
      "request as a task with its phases as regions. You can specify the duration in the "
      "seconds GET parameter. After you get the trace file, use the go tool trace command "
      "to investigate the trace." },
    { NULL }
};

const pprof_kind pprof_kind_trace = {
    .name = "trace",
    .endpoints = endpoints,
    .window = 1,
    /* feed turns a reply into Go's events at once (pp_trace copies what it keeps) */
    .merge_keeps_nothing = 1,
    .register_hooks = trace_register_hooks,
    .post_config = trace_post_config,
    .start = trace_start,
    .tick = trace_tick,
    .tick_wait = trace_tick_wait,
    .stop = trace_stop,
    .take = trace_take,
    .merge = trace_merge,
};
