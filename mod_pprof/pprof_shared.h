/* State shared by every process of the server: which window of each window kind is open,
 * and who owns it.
 *
 * One segment for the parent's whole life: the parent makes it (anonymous shared memory)
 * in its first post_config and finds it again in every later one through httpd's retained
 * data, so every generation of children (a graceful restart leaves old children serving
 * beside new ones) sees the same windows. Hence one CPU profile and one trace at a time
 * across generations, and window generations that never repeat: an old child can never
 * take a new window for its own. Fields are read and written with atomics only. */
#ifndef PPROF_SHARED_H
#define PPROF_SHARED_H

#include "httpd.h"

/* Window slots: one per kind of the registry (pprof_kinds.h), by its index. */
#define PPROF_MAX_WINDOWS 16

typedef struct {
    apr_uint32_t owner;         /* pid of the collecting child, 0 when free */
    apr_uint32_t gen;           /* the last window opened here */
    apr_uint32_t active;        /* gen of the open window, 0 when none */
    apr_uint32_t hz;
    apr_uint32_t only_pid;      /* 0: every child */
    apr_uint32_t pad;
    apr_int64_t deadline;       /* apr_time_t after which children stop by themselves */
} pprof_window;

/* Parent, post_config of every generation: make the segment the first time, find it
 * again later. A window whose owner died meanwhile (a restart that killed the children)
 * is closed and freed here, so that children of the new generation do not join it. */
apr_status_t pprof_shared_create(apr_pool_t *pconf, server_rec *s);

/* The window slot at index, or NULL (no shared segment, e.g. a config test, or an index
 * out of range). */
pprof_window *pprof_shared_window(int index);

/* Claim a window for pid: 1 if it was free (or its owner is gone), 0 if busy. An owner
 * is gone once it is no longer a live child of this server's parent (a zombie is gone,
 * a recycled pid is not an owner): a window claimed by a child of an older generation
 * stays owned while that child collects. */
int pprof_window_claim(pprof_window *w, apr_uint32_t pid);
void pprof_window_release(pprof_window *w, apr_uint32_t pid);

/* Whether any window is claimed now (by a live owner). */
int pprof_windows_busy(void);

/* Open a window: returns its generation, never 0 and never one of an earlier window of
 * any kind during the parent's life. */
apr_uint32_t pprof_window_open(pprof_window *w, apr_uint32_t hz, apr_uint32_t only_pid,
                               apr_time_t deadline);
void pprof_window_close(pprof_window *w);

/* Quiet words: a child's agent says here that it holds nothing for window gen, so that
 * the collector's rounds need not ask it (the trace: an idle child's agent woke, answered
 * nothing, and the collector read that, every 100 ms for every child). A word holds the
 * (gen, pid) of a quiet child; anything else means "ask". Words are found by pid modulo
 * their number: two children on one word only displace each other, so the worst a
 * collision (or a child of another window, a recycled pid of another gen) does is make
 * a child be asked. A child's agent sets and clears its word, its workers only clear it
 * (pprof_quiet_wake), and only the collector reads it. */
#define PPROF_QUIET_WORDS 4096

/* Agent: this child holds nothing (quiet) or something (!quiet) for window gen. Saying
 * it has something clears the word only if it is this child's: another child's is left
 * (this child is then asked anyway). */
void pprof_quiet_say(apr_uint32_t gen, int quiet);

/* A worker of this child: it holds something again for window gen. No system call; the
 * word is cleared only if this child's agent had said it is quiet (a rare store). */
void pprof_quiet_wake(apr_uint32_t gen);

/* Collector: whether child pid said it is quiet in window gen (and nothing since). */
int pprof_quiet_is(apr_uint32_t gen, pid_t pid);

/* The open window's generation (0: none), and its fields once it is seen open. */
apr_uint32_t pprof_window_active(const pprof_window *w);
apr_uint32_t pprof_window_hz(const pprof_window *w);
apr_uint32_t pprof_window_only(const pprof_window *w);
apr_time_t pprof_window_deadline(const pprof_window *w);

#endif
