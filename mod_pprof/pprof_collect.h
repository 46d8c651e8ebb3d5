/* The collector's side: who the children are, whether the client is still there, and
 * Go's parsing of the query values every endpoint shares. */
#ifndef PPROF_COLLECT_H
#define PPROF_COLLECT_H

#include "httpd.h"

#include "pprof_ipc.h"
#include "pp_maps.h"

/* The live children of the server (pids from the scoreboard; this process is always
 * among them), or only `only` when non-zero. */
apr_array_header_t *pprof_children(request_rec *r, pid_t only);

/* The "pid" query parameter: *only = 0 when absent. NULL, or the 400 text to answer. */
const char *pprof_query_pid(request_rec *r, apr_table_t *args, pid_t *only);

/* Send cmd to child pid; its reply carries nblobs blobs, the first of them its maps,
 * parsed into *maps (freed with r->pool). 0; 1 when the child is gone or has nothing;
 * -1 when the reply is broken. */
int pprof_call_child(request_rec *r, pid_t pid, const char *cmd, int nblobs,
                     pprof_reply *rep, pp_maps **maps);

/* 1 once the client has closed its side of the connection. */
int pprof_client_gone(request_rec *r);

/* Sleep until `until`, waking every 100 ms to check the client: 1 if it went away. */
int pprof_sleep_unless_gone(request_rec *r, apr_time_t until);

/* Go's strconv.ParseInt(s, 10, 64): optional sign, decimal digits, no overflow. */
int pprof_parse_int(const char *s, apr_int64_t *out);

/* Go's strconv.Atoi(r.FormValue(name)) with the error ignored: 0 unless a whole integer. */
int pprof_query_int(apr_table_t *args, const char *name);

/* Go's strconv.ParseFloat(s, 64) for what matters here: 0 on success. */
int pprof_parse_float(const char *s, double *out);

/* Go's durationExceedsWriteTimeout with Apache's Timeout as the WriteTimeout. */
int pprof_exceeds_timeout(request_rec *r, double seconds);

/* Go's checks of "seconds" for a delta profile (serveDeltaProfile): NULL and *sec set,
 * or the 400 text. */
const char *pprof_delta_seconds(request_rec *r, apr_table_t *args, apr_int64_t *sec);

/* Go's "seconds" for the CPU profile and the trace: invalid or <= 0 means dflt. */
double pprof_seconds_or(apr_table_t *args, double dflt, int integer);

#endif
