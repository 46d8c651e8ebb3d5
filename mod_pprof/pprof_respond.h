/* Go's net/http/pprof answers, in httpd terms: its error answer, a profile attached as a
 * file, a text page. Every endpoint answers through these, so statuses and headers are
 * Go's in one place. Each returns what the handler returns (OK, or a filter error). */
#ifndef PPROF_RESPOND_H
#define PPROF_RESPOND_H

#include "httpd.h"
#include "apr_buckets.h"

struct pp_profile;

/* Go's serveError: the status, text/plain, X-Go-Pprof: 1, the text and a newline. */
int pprof_serve_error(request_rec *r, int status, const char *txt);

/* The headers of a binary answer: application/octet-stream, attached as filename. */
void pprof_attach(request_rec *r, const char *filename);

/* Encode prof (gzipped profile.proto) and answer it, attached as filename; with no
 * filename, as text/plain and not attached (what Go answers a negative debug of the
 * goroutine, threadcreate, block and mutex profiles). A failure to encode answers 500
 * "failed to encode profile". prof stays the caller's. */
int pprof_send_profile(request_rec *r, struct pp_profile *prof, const char *filename);

/* A text answer (text/plain; charset=utf-8): bb is passed on, unless r is a HEAD. */
int pprof_send_text(request_rec *r, apr_bucket_brigade *bb);

#endif
