/* The "cpu" kind, /debug/pprof/profile: a CPU profile of the whole server, a window kind.
 *
 * Agent half: while the window is open the child's sampler (pprof_sampler) samples every
 * thread; each tick moves its samples into a bounded table of (request tag, flags, stack)
 * counts. take hands over the table, what its tags stand for, and the counters below.
 * Request threads tag themselves with their request's (handler, vhost) while sampling.
 * A child that ends during the window keeps its table for one last take, which the agent
 * leaves for the collector (pprof_handover.h): recycled children's samples are not lost.
 *
 * Reply: stacks (key = tag | flags << 32, values[0] = samples), tags, mappings, counters
 * "dropped" (lost to a full ring or table), "leaf_only" (samples of unwarmed threads),
 * "started_us" and "stopped_us"; where an interpreter's frames provider is registered,
 * "interp_samples" (samples taken with one registered), "interp_stacks" (of them, those
 * that got interpreter frames), "interp_ps_per_tick" (the rate of pp_interp_ticks) and
 * "interp_hN" (samples whose splice took bucket N of pp_interp_stats.hist; nonzero
 * buckets only).
 *
 * Collector half: merges every child's stacks into one profile, labelled with the child's
 * pid and, for tagged samples, handler and vhost; a child that could not be sampled is
 * named in a comment, never silently missing. */
#include "pprof_conf.h"
#include "pprof_answer.h"
#include "pprof_collect.h"
#include "pprof_kind.h"
#include "pprof_query.h"
#include "pprof_reply.h"
#include "pprof_request.h"
#include "pprof_respond.h"
#include "pprof_sampler.h"

#include "http_connection.h"
#include "http_log.h"
#include "http_request.h"
#include "apr_strings.h"
#include "apr_thread_mutex.h"

#include "pp_hash.h"
#include "pp_heap.h"
#include "pp_interp.h"
#include "pp_stacktab.h"
#include "pp_tbuf.h"

#include <stdlib.h>

APLOG_USE_MODULE(pprof);

#define MAX_STACKS 65536        /* distinct stacks a child keeps per window */
#define MAX_TAGS 1024           /* distinct (handler, vhost) pairs a child labels */

extern const pprof_kind pprof_kind_cpu;

/* === The agent half ===================================================================== */

/* Request tags: "handler\tvhost" -> id, shared with request threads under the mutex.
 * Bounded: a server with more distinct pairs labels the rest "(other)" (no tag). */
static apr_thread_mutex_t *tag_mutex;
static pp_hash *tag_ix;
static char *tags[MAX_TAGS + 1];
static apr_uint32_t ntags;

/* The agent thread's. */
static apr_uint32_t sampling;           /* the window sampled, 0 when none */
static apr_uint32_t data_gen;           /* the window whose data the table holds */
static pp_stacktab *tab;
static apr_uint64_t leaf_only, dropped;
static apr_time_t started, stopped;
/* The interpreter splice's counters and clocks at the window's start. */
static pp_interp_stats interp0;
static apr_uint64_t interp0_ticks, interp0_ns;

/* Each request thread's last few tags, so that the usual request (a handler and vhost this
 * thread has served before) is tagged without a lock, an allocation or a pool cleanup.
 * An entry is the server_rec (lives as long as the process) and the interned
 * "handler\tvhost" string, which is never freed: comparing the handler's text with its
 * head is exact, whatever pool r->handler was copied into. */
#define TAG_CACHE 4
typedef struct {
    const server_rec *s;
    const char *key;            /* tags[id] */
    apr_uint32_t id;
} tag_entry;
static __thread tag_entry tag_cache[TAG_CACHE] __attribute__((tls_model("initial-exec")));
static __thread unsigned int tag_next __attribute__((tls_model("initial-exec")));

/* Whether key ("handler\tvhost") starts with handler and a tab. */
static int same_handler(const char *key, const char *handler)
{
    while (*handler && *key == *handler) {
        key++;
        handler++;
    }
    return !*handler && *key == '\t';
}

/* The slow path, once per thread and pair: intern under the mutex. */
static apr_uint32_t intern_tag(request_rec *r, const char *handler)
{
    const char *vhost = r->server->server_hostname ? r->server->server_hostname : "";
    size_t hl = strlen(handler), vl = strlen(vhost);
    char key[512];
    apr_uint64_t id = 0;

    if (hl + 1 + vl + 1 > sizeof(key)) {
        return 0;               /* "(other)": no label rather than a cut one */
    }
    memcpy(key, handler, hl);
    key[hl] = '\t';
    memcpy(key + hl + 1, vhost, vl + 1);
    pp_heap_guard_enter();
    apr_thread_mutex_lock(tag_mutex);
    if (!pp_hash_find(tag_ix, key, hl + 1 + vl, &id) && ntags < MAX_TAGS) {
        id = ntags + 1;
        if (pp_hash_intern(tag_ix, key, hl + 1 + vl, &id) == 0 && (tags[id] = strdup(key))) {
            __atomic_store_n(&ntags, (apr_uint32_t)id, __ATOMIC_RELEASE);
        } else {
            id = 0;
        }
    }
    apr_thread_mutex_unlock(tag_mutex);
    pp_heap_guard_leave();
    return (apr_uint32_t)id;
}

/* First of all handlers (pprof_request_handler): label the thread with the request it
 * now serves. The label is cleared when the thread begins its next request or connection
 * (pprof_cpu_untag); a subrequest's handler keeps its main request's label (the request
 * being served). */
void pprof_cpu_tag(request_rec *r)
{
    const char *handler = r->handler ? r->handler : "(none)";
    apr_uint32_t id;
    unsigned int i;

    if (r->main || !pprof_sampler_running() || !tag_mutex) {
        return;
    }
    for (i = 0; i < TAG_CACHE; i++) {
        tag_entry *e = &tag_cache[i];
        if (e->s == r->server && e->key && same_handler(e->key, handler)) {
            pp_cpu_set_tag(e->id);
            return;
        }
    }
    if ((id = intern_tag(r, handler)) != 0) {
        tag_entry *e = &tag_cache[tag_next++ % TAG_CACHE];
        e->s = r->server;
        e->key = tags[id];
        e->id = id;
    }
    pp_cpu_set_tag(id);
}

/* A thread that begins a request (not a subrequest: it serves its main request's handler)
 * or a connection serves nothing labelled until its handler runs. Cheaper than a pool
 * cleanup per request, and it clears the thread that was tagged: with the event MPM the
 * request's pool may be destroyed on another thread. */
void pprof_cpu_untag(void)
{
    pp_cpu_set_tag(0);
}

static void cpu_child_init(apr_pool_t *pchild, server_rec *s)
{
    if (apr_thread_mutex_create(&tag_mutex, APR_THREAD_MUTEX_DEFAULT, pchild) != APR_SUCCESS ||
        !(tag_ix = pp_hash_new())) {
        tag_mutex = NULL;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s, "PP0014: no memory for request tags: CPU "
                     "samples carry no handler and vhost labels");
    }
}

static void to_table(void *baton, const pp_cpu_sample *smp)
{
    if (smp->flags & PP_CPU_LEAF_ONLY) {
        leaf_only++;
    }
    if (pp_stacktab_add(tab, smp->tag, smp->flags, smp->pcs, smp->npcs,
                        smp->weight ? smp->weight : 1) != 0) {
        dropped++;
    }
}

static const char *cpu_start(const pp_wire_request *req, pprof_out *out)
{
    const char *err;

    if (sampling == req->gen) {
        return NULL;            /* joined from child_init already */
    }
    if (!tab && !(tab = pp_stacktab_new(MAX_STACKS))) {
        return "out of memory";
    }
    pp_stacktab_clear(tab);
    leaf_only = dropped = 0;
    pp_interp_get_stats(&interp0);
    interp0_ticks = pp_interp_ticks();
    interp0_ns = pp_tbuf_now();
    started = apr_time_now();
    stopped = 0;
    pprof_sampler_subscribe(to_table, NULL);
    if ((err = pprof_sampler_start((int)req->hz)) != NULL) {
        pprof_sampler_unsubscribe(to_table, NULL);
        data_gen = 0;
        return err;
    }
    sampling = data_gen = req->gen;
    return NULL;
}

static void cpu_tick(apr_uint32_t gen)
{
    pprof_sampler_drain();
}

static void cpu_stop(apr_uint32_t gen, pprof_stop_why why)
{
    if (sampling != gen) {
        return;
    }
    /* What is left goes to the table and, while a trace runs, to the trace. */
    pprof_sampler_stop();
    pprof_sampler_unsubscribe(to_table, NULL);
    dropped += pprof_sampler_dropped() + pp_stacktab_overflow(tab);
    stopped = apr_time_now();
    sampling = 0;
    if (why == PPROF_STOP_QUIT) {
        data_gen = 0;           /* nobody will read it */
    }
}

/* Every bucket a counter, beside the reply's others (nine, and room for more): within
 * what a reply may hold. */
_Static_assert(PP_INTERP_HIST_BUCKETS + 1 + 32 <= PP_WIRE_MAX_COUNTERS,
               "the splice's histogram fits a reply's counters");

/* What the interpreter splice cost in this window: its histogram, and the rate of its
 * ticks against CLOCK_MONOTONIC over the window (the TSC's frequency, measured rather
 * than assumed). */
static void out_interp_counters(pprof_out *out)
{
    pp_interp_stats now;
    apr_uint64_t ticks = pp_interp_ticks(), ns = pp_tbuf_now();
    int i;

    pp_interp_get_stats(&now);
    if (now.samples == interp0.samples || ticks <= interp0_ticks) {
        return;
    }
    pprof_out_counter(out, "interp_samples", (apr_int64_t)(now.samples - interp0.samples));
    pprof_out_counter(out, "interp_stacks", (apr_int64_t)(now.spliced - interp0.spliced));
    pprof_out_counter(out, "interp_ps_per_tick",
                      (apr_int64_t)(1000.0 * (double)(ns - interp0_ns) /
                                    (double)(ticks - interp0_ticks)));
    for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
        if (now.hist[i] != interp0.hist[i]) {
            pprof_out_counter(out, apr_psprintf(out->pool, "interp_h%d", i),
                              (apr_int64_t)(now.hist[i] - interp0.hist[i]));
        }
    }
}

static int cpu_take(const pp_wire_request *req, pprof_out *out)
{
    apr_uint32_t i;

    if (!req->gen || data_gen != req->gen || !tab) {
        return PP_WIRE_NONE;
    }
    pprof_out_mappings(out);    /* without them every PC shows as an address */
    if (tag_mutex) {
        apr_thread_mutex_lock(tag_mutex);
    }
    for (i = 1; i <= ntags; i++) {
        const char *sep = strchr(tags[i], '\t');
        pprof_out_tag(out, i, apr_pstrndup(out->pool, tags[i], (apr_size_t)(sep - tags[i])),
                      sep + 1);
    }
    if (tag_mutex) {
        apr_thread_mutex_unlock(tag_mutex);
    }
    pprof_out_stacktab(out, tab);
    pprof_out_counter(out, "dropped", (apr_int64_t)dropped);
    pprof_out_counter(out, "leaf_only", (apr_int64_t)leaf_only);
    pprof_out_counter(out, "started_us", started);
    pprof_out_counter(out, "stopped_us", stopped);
    out_interp_counters(out);
    /* Handed over (or lost with the collector): either way, not sent twice. */
    data_gen = 0;
    pp_stacktab_clear(tab);
    return PP_WIRE_OK;
}

/* === The collector half ================================================================= */

typedef struct {
    request_rec *r;
    pprof_answer *ans;          /* made at the first child's data: the symbolizer is held
                                   while merging, not during the window */
    int failed;                 /* out of memory: the answer is a 500 */
    int64_t period;
    apr_array_header_t *absent; /* "mod_pprof: pid N absent: why", a comment each */
    apr_uint64_t total;
    /* The interpreter splice's counters, every child's summed. */
    apr_int64_t interp_samples, interp_stacks, interp_ps_per_tick;
    apr_int64_t interp_hist[PP_INTERP_HIST_BUCKETS + 1];
} cpu_answer;

static pprof_answer *answer_of(cpu_answer *c)
{
    pp_profile *prof;

    if (!c->ans && !c->failed) {
        if (!(c->ans = pprof_answer_new(c->r))) {
            c->failed = 1;
            return NULL;
        }
        prof = pprof_answer_profile(c->ans);
        pp_profile_add_sample_type(prof, "samples", "count");
        pp_profile_add_sample_type(prof, "cpu", "nanoseconds");
        pp_profile_set_period(prof, "cpu", "nanoseconds", c->period);
    }
    return c->ans;
}

/* A child that could not be sampled is never silently missing from a 200 profile: the
 * profile says so in a comment (`go tool pprof -comments`), and error_log in a warning.
 * Once per child. */
static void note_absent(cpu_answer *c, pid_t pid, const char *why)
{
    const char *head = apr_psprintf(c->r->pool, "mod_pprof: pid %ld absent: ", (long)pid);
    int i;

    for (i = 0; i < c->absent->nelts; i++) {
        if (strncmp(APR_ARRAY_IDX(c->absent, i, const char *), head, strlen(head)) == 0) {
            return;
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, c->r,
                  "PP0103: child %ld is absent from the CPU profile: %s", (long)pid, why);
    APR_ARRAY_PUSH(c->absent, const char *) = apr_pstrcat(c->r->pool, head, why, NULL);
}

/* One child's window: its stacks, labelled; its lost samples on Go's synthetic frame. */
static void merge_data(cpu_answer *c, const pprof_child *ch)
{
    const pp_wire_reply *m = ch->reply;
    const char *handler[MAX_TAGS + 1], *vhost[MAX_TAGS + 1];
    apr_uint64_t samples = 0, lost = (apr_uint64_t)pp_wire_get_counter(m, "dropped", 0);
    pprof_answer *ans = answer_of(c);
    int ok = 1;
    size_t i;

    if (!ans) {
        return;
    }
    memset(handler, 0, sizeof(handler));
    memset(vhost, 0, sizeof(vhost));
    for (i = 0; i < m->n_tags; i++) {
        if (m->tags[i]->id >= 1 && m->tags[i]->id <= MAX_TAGS) {
            handler[m->tags[i]->id] = m->tags[i]->handler;
            vhost[m->tags[i]->id] = m->tags[i]->vhost;
        }
    }
    for (i = 0; i < m->n_stacks; i++) {
        const pp_wire_stack *st = m->stacks[i];
        apr_uint64_t count = st->n_values ? st->values[0] : 0;
        apr_uint32_t tag = (apr_uint32_t)st->key;
        int64_t values[2] = { (int64_t)count, (int64_t)count * c->period };
        pp_label labels[3] = { { "pid", NULL, ch->pid, NULL } };
        size_t nl = 1;

        if (tag && tag <= MAX_TAGS && handler[tag]) {
            labels[1].key = "handler";
            labels[1].str = handler[tag];
            labels[2].key = "vhost";
            labels[2].str = vhost[tag];
            nl = 3;
        }
        if (pprof_answer_sample(ans, ch->maps, st->pcs, st->n_pcs, 0, values, labels, nl) != 0) {
            ok = 0;
        }
        samples += count;
    }
    if (!ok) {
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, c->r,
                      "PP0104: could not merge the CPU data of child %ld", (long)ch->pid);
        note_absent(c, ch->pid, "its samples could not be merged");
    }
    if (lost > 0) {
        /* As Go does for samples its buffer could not take: a synthetic frame. */
        int64_t values[2] = { (int64_t)lost, (int64_t)lost * c->period };
        pp_label pidl = { "pid", NULL, ch->pid, NULL };
        pprof_answer_synthetic(ans, "mod_pprof.lostProfileEvent", values, &pidl, 1);
    }
    if (pp_wire_get_counter(m, "handover_cut", 0) > 0) {
        /* It ended during the window and its stacks did not fit the hand-over's bound:
         * the profile says so, as for a child that could not be sampled. */
        const char *why = apr_psprintf(c->r->pool, "%" APR_INT64_T_FMT " of its stacks were "
                                       "cut from its hand-over",
                                       pp_wire_get_counter(m, "handover_cut", 0));
        ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, c->r, "PP0106: child %ld: %s",
                      (long)ch->pid, why);
        APR_ARRAY_PUSH(c->absent, const char *) =
            apr_psprintf(c->r->pool, "mod_pprof: pid %ld partly absent: %s", (long)ch->pid, why);
    }
    c->total += samples;
    if (pp_wire_get_counter(m, "interp_samples", 0) > 0) {
        c->interp_samples += pp_wire_get_counter(m, "interp_samples", 0);
        c->interp_stacks += pp_wire_get_counter(m, "interp_stacks", 0);
        c->interp_ps_per_tick = pp_wire_get_counter(m, "interp_ps_per_tick", 0);
        for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
            c->interp_hist[i] += pp_wire_get_counter(m, apr_psprintf(c->r->pool, "interp_h%d",
                                                                     (int)i), 0);
        }
    }
    ap_log_rerror(APLOG_MARK, APLOG_DEBUG, 0, c->r,
                  "PP0105: child %ld: %" APR_UINT64_T_FMT " samples, %" APR_UINT64_T_FMT
                  " dropped, %" APR_INT64_T_FMT " leaf-only", (long)ch->pid, samples, lost,
                  pp_wire_get_counter(m, "leaf_only", 0));
}

static void cpu_merge(void *answer, const pprof_child *ch)
{
    cpu_answer *c = answer;

    if (ch->op == PP_WIRE_START) {
        /* One not listening yet joins by itself from child_init; a gone one has nothing. */
        if (ch->status != PPROF_CHILD_OK && ch->status != PPROF_CHILD_GONE) {
            note_absent(c, ch->pid, ch->why);
        }
    } else if (ch->op == PP_WIRE_STOP) {
        if (ch->status == PPROF_CHILD_OK) {
            merge_data(c, ch);
        } else if (ch->status == PPROF_CHILD_FAILED || ch->status == PPROF_CHILD_REFUSED) {
            ap_log_rerror(APLOG_MARK, APLOG_WARNING, 0, c->r,
                          "PP0102: child %ld did not hand over its CPU samples", (long)ch->pid);
            note_absent(c, ch->pid, "did not hand over its samples");
        }
    }
}

/* The ns of a quantile q of the splice's histogram: the middle of its bucket. -1: in the
 * last bucket (longer than the histogram measures). */
static double interp_quantile(const cpu_answer *c, double q)
{
    apr_int64_t n = 0, seen = 0;
    int i;

    for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
        n += c->interp_hist[i];
    }
    for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
        seen += c->interp_hist[i];
        if (seen > 0 && (double)seen >= q * (double)n) {
            break;
        }
    }
    if (i >= PP_INTERP_HIST_BUCKETS) {
        return -1;
    }
    return (i + 0.5) * PP_INTERP_HIST_TICKS * (double)c->interp_ps_per_tick / 1000.0;
}

/* What an interpreter's frames cost (mod_pprof_php), measured in the sampled threads
 * around the splice only (the native unwind is the same without it): its median and p90
 * over the samples taken with a provider registered. */
static const char *interp_ns_text(cpu_answer *c, double q)
{
    double ns = interp_quantile(c, q);

    if (ns < 0) {
        return apr_psprintf(c->r->pool, "over %.0f ns", PP_INTERP_HIST_BUCKETS *
                            PP_INTERP_HIST_TICKS * (double)c->interp_ps_per_tick / 1000.0);
    }
    return apr_psprintf(c->r->pool, "%.0f ns", ns);
}

static void log_interp_cost(cpu_answer *c)
{
    apr_int64_t timed = 0;
    int i;

    for (i = 0; i <= PP_INTERP_HIST_BUCKETS; i++) {
        timed += c->interp_hist[i];
    }
    if (c->interp_samples <= 0 || c->interp_ps_per_tick <= 0 || timed == 0) {
        return;                 /* a few samples, none of them timed: nothing to say */
    }
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, c->r, "PP0107: interpreter frames: %"
                  APR_INT64_T_FMT " of %" APR_INT64_T_FMT " samples had some; the splice took "
                  "%s (median), %s (p90)", c->interp_stacks, c->interp_samples,
                  interp_ns_text(c, 0.5), interp_ns_text(c, 0.9));
}

/* Go's Profile handler for the whole server. */
static int serve_profile(request_rec *r, apr_table_t *args)
{
    pprof_server_conf *conf = pprof_conf(r->server);
    double sec = pprof_seconds_or(args, 30, 1);
    pprof_window_run w;
    cpu_answer c;
    const char *err;
    pid_t only;
    int i;

    if (pprof_exceeds_timeout(r, sec)) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST,
                                 "profile duration exceeds server's WriteTimeout");
    }
    if ((err = pprof_query_pid(r, args, &only)) != NULL) {
        return pprof_serve_error(r, HTTP_BAD_REQUEST, err);
    }
    memset(&c, 0, sizeof(c));
    c.r = r;
    c.period = pp_cpu_period_ns(conf->cpu_hz);
    c.absent = apr_array_make(r->pool, 4, sizeof(const char *));
    memset(&w, 0, sizeof(w));
    w.kind = &pprof_kind_cpu;
    w.answer = &c;
    w.fail = "Could not enable CPU profiling";
    w.busy = "cpu profiling already in use";
    w.only = only;
    w.hz = (apr_uint32_t)conf->cpu_hz;
    w.seconds = sec;
    if (pprof_run_window(r, &w) == DONE) {
        return OK;
    }
    if (w.gone) {
        /* Nobody to answer: every child was told to stop and drop its data. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "PP0101: client went away; CPU profiling stopped");
        return OK;
    }
    if (!answer_of(&c)) {
        return pprof_answer_fail(r, c.ans);
    }
    for (i = 0; i < c.absent->nelts; i++) {
        pp_profile_add_comment(pprof_answer_profile(c.ans), APR_ARRAY_IDX(c.absent, i, const char *));
    }
    pp_profile_set_time(pprof_answer_profile(c.ans), (int64_t)w.t0 * 1000,
                        (int64_t)(w.t1 - w.t0) * 1000);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  "PP0100: CPU profile: %d children, %" APR_UINT64_T_FMT " samples in %.1f s",
                  w.nchildren, c.total, (double)(w.t1 - w.t0) / APR_USEC_PER_SEC);
    log_interp_cost(&c);
    return pprof_answer_send(c.ans, "profile");
}

static const pprof_endpoint endpoints[] = {
    { "profile", serve_profile, NULL,
      "CPU profile of every child of the server. You can specify the duration in the "
      "seconds GET parameter (and one child with pid). After you get the profile file, use "
      "the go tool pprof command to investigate the profile." },
    { NULL }
};

const pprof_kind pprof_kind_cpu = {
    .name = "cpu",
    .endpoints = endpoints,
    .window = 1,
    .child_init = cpu_child_init,
    .start = cpu_start,
    .tick = cpu_tick,
    .tick_ms = PPROF_SAMPLER_TICK_MS,
    .stop = cpu_stop,
    .take = cpu_take,
    .merge = cpu_merge,
};
