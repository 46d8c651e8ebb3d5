/* Go's parsing of the query values the endpoints share (strconv's rules, Go's texts), and
 * the "pid" restriction of ours. */
#ifndef PPROF_QUERY_H
#define PPROF_QUERY_H

#include "httpd.h"

/* Go's strconv.ParseInt(s, 10, 64): optional sign, decimal digits, no overflow. 0 and
 * *out set, or -1. */
int pprof_parse_int(const char *s, apr_int64_t *out);

/* Go's strconv.Atoi(r.FormValue(name)) with the error ignored: 0 unless a whole integer. */
int pprof_query_int(apr_table_t *args, const char *name);

/* Go's strconv.ParseFloat(s, 64) for what matters here: 0 and *out set, or -1. */
int pprof_parse_float(const char *s, double *out);

/* Go's durationExceedsWriteTimeout, with Apache's Timeout as the WriteTimeout. */
int pprof_exceeds_timeout(request_rec *r, double seconds);

/* Go's checks of "seconds" for a delta profile (serveDeltaProfile): NULL and *sec set,
 * or the 400 text. */
const char *pprof_delta_seconds(request_rec *r, apr_table_t *args, apr_int64_t *sec);

/* Go's "seconds" for the CPU profile (integer) and the trace (float): invalid or <= 0
 * means dflt. */
double pprof_seconds_or(apr_table_t *args, double dflt, int integer);

/* The "pid" parameter: *only = 0 when absent. NULL, or the 400 text when it names no
 * live child of this server. */
const char *pprof_query_pid(request_rec *r, apr_table_t *args, pid_t *only);

#endif
