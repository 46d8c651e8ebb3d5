/* State shared by every process of the server: which window of each window kind is open.
 * It lives in anonymous shared memory made by the parent in post_config, so children of
 * one generation see the same copy. Fields are read and written with atomics only. */
#ifndef PPROF_SHARED_H
#define PPROF_SHARED_H

#include "httpd.h"

/* Window slots: one per kind of the registry (pprof_kinds.h), by its index. */
#define PPROF_MAX_WINDOWS 16

typedef struct {
    apr_uint32_t owner;         /* pid of the collecting child, 0 when free */
    apr_uint32_t gen;           /* bumped for every window */
    apr_uint32_t active;        /* gen of the open window, 0 when none */
    apr_uint32_t hz;
    apr_uint32_t only_pid;      /* 0: every child */
    apr_uint32_t pad;
    apr_int64_t deadline;       /* apr_time_t after which children stop by themselves */
} pprof_window;

/* Create the shared segment for this generation (parent, post_config). */
apr_status_t pprof_shared_create(apr_pool_t *pconf, server_rec *s);

/* The window slot at index, or NULL (no shared segment, e.g. a config test, or an index
 * out of range). */
pprof_window *pprof_shared_window(int index);

/* Claim a window for pid: 1 if it was free (or its owner is dead), 0 if busy. */
int pprof_window_claim(pprof_window *w, apr_uint32_t pid);
void pprof_window_release(pprof_window *w, apr_uint32_t pid);

/* Open a window: returns its new generation (never 0). */
apr_uint32_t pprof_window_open(pprof_window *w, apr_uint32_t hz, apr_uint32_t only_pid,
                               apr_time_t deadline);
void pprof_window_close(pprof_window *w);

/* The open window's generation (0: none), and its fields once it is seen open. */
apr_uint32_t pprof_window_active(const pprof_window *w);
apr_uint32_t pprof_window_hz(const pprof_window *w);
apr_uint32_t pprof_window_only(const pprof_window *w);
apr_time_t pprof_window_deadline(const pprof_window *w);

#endif
