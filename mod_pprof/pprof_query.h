/* Go's parsing of the query the endpoints read (net/url's ParseQuery as Request.FormValue
 * sees it, strconv's rules, Go's texts), and the "pid" restriction of ours. */
#ifndef PPROF_QUERY_H
#define PPROF_QUERY_H

#include "httpd.h"

/* Go's url.ParseQuery(query) as r.FormValue reads it, added to into (strings from p):
 * pairs are split at '&'; a pair holding a ';' is dropped (Go 1.17+) and counted in the
 * result; key and value are unescaped as QueryUnescape does ('+' is a space, "%XX" a
 * byte); a pair whose key or value has a malformed escape is dropped, the others kept;
 * a key without '=' has the empty value. Every value is added in order, so apr_table_get
 * gives the first, as FormValue does. A C string cannot hold the NUL that "%00" decodes
 * to: a key with one names nothing we read and is dropped; in a value it stays "%00",
 * which every number parser below refuses, as Go's refuse the NUL. query may be NULL. */
int pprof_parse_query(apr_pool_t *p, apr_table_t *into, const char *query);

/* Go's strconv.ParseInt(s, 10, 64): optional sign, decimal digits, no overflow. 0 and
 * *out set, or -1. */
int pprof_parse_int(const char *s, apr_int64_t *out);

/* Go's strconv.Atoi(r.FormValue(name)) with the error ignored: 0 unless a whole integer.
 * Go's int has 64 bits: a value beyond an int's range is clamped to it, which keeps its
 * sign and every comparison the handlers make (debug != 0, debug >= 2, gc > 0). */
int pprof_query_int(apr_table_t *args, const char *name);

/* Go's strconv.ParseFloat(s, 64): decimal and hexadecimal ("0x1.8p-2", 'p' exponent
 * required) forms, '_' between digits, "inf", "infinity" (either with a sign) and "nan"
 * in any case; no space. 0 and *out set (a NaN for "nan"; an underflow is 0 or
 * subnormal, as Go's), or -1 (a syntax error, or a finite number beyond a double's
 * range: Go's ErrRange). */
int pprof_parse_float(const char *s, double *out);

/* Go's durationExceedsWriteTimeout, with Apache's Timeout as the WriteTimeout. */
int pprof_exceeds_timeout(request_rec *r, double seconds);

/* Go's checks of "seconds" for a delta profile (serveDeltaProfile): NULL and *sec set,
 * or the 400 text. */
const char *pprof_delta_seconds(request_rec *r, apr_table_t *args, apr_int64_t *sec);

/* Go's "seconds" for the CPU profile (integer) and the trace (float): invalid or <= 0
 * means dflt. */
double pprof_seconds_or(apr_table_t *args, double dflt, int integer);

/* The window a duration of seconds gives, as Go's time.Duration(seconds * 1e9) on amd64
 * gives it: a NaN, or a value past time.Duration's range (an infinity when no Timeout
 * refuses it first), converts to a negative Duration, a window that ends at once: 0. */
apr_interval_time_t pprof_window_length(double seconds);

/* The "pid" parameter: *only = 0 when absent. NULL, or the 400 text when it names no
 * live child of this server. */
const char *pprof_query_pid(request_rec *r, apr_table_t *args, pid_t *only);

#endif
