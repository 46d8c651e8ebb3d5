/* State shared by every process of the server: which profiles run, for which window.
 * It lives in anonymous shared memory made by the parent in post_config, so children of
 * one generation see the same copy. Fields are read and written with atomics only. */
#ifndef PPROF_SHARED_H
#define PPROF_SHARED_H

#include "httpd.h"
#include "apr_shm.h"

typedef struct {
    apr_uint32_t owner;         /* pid of the collecting child, 0 when free */
    apr_uint32_t gen;           /* bumped for every window */
    apr_uint32_t active;        /* gen of the open window, 0 when none */
    apr_uint32_t hz;
    apr_uint32_t only_pid;      /* 0: every child */
    apr_uint32_t pad;
    apr_int64_t deadline;       /* apr_time_t after which children stop by themselves */
} pprof_window;

typedef struct {
    pprof_window cpu;
    pprof_window trace;
} pprof_shared;

/* Create the shared segment for this generation (parent, post_config). */
apr_status_t pprof_shared_create(apr_pool_t *pconf, server_rec *s);

/* This generation's segment, or NULL (for example in a config test run). */
pprof_shared *pprof_shared_get(void);

/* Claim a window for pid: 1 if it was free (or its owner is dead), 0 if busy. */
int pprof_window_claim(pprof_window *w, apr_uint32_t pid);
void pprof_window_release(pprof_window *w, apr_uint32_t pid);

/* Open a window: returns its new generation. */
apr_uint32_t pprof_window_open(pprof_window *w, apr_uint32_t hz, apr_uint32_t only_pid,
                               apr_time_t deadline);
void pprof_window_close(pprof_window *w);

apr_uint32_t pprof_atomic_load32(const apr_uint32_t *p);

#endif
