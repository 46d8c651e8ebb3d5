/* The pprof-handler: picks the endpoint from the URL and answers as Go's net/http/pprof. */
#ifndef PPROF_HANDLER_H
#define PPROF_HANDLER_H

#include "httpd.h"

int pprof_handler(request_rec *r);

/* Go's serveError: the status, text/plain, X-Go-Pprof: 1, the text and a newline. */
int pprof_serve_error(request_rec *r, int status, const char *txt);

/* Encode prof (gzipped profile.proto) and answer it as Go does: octet-stream, attached as
 * filename. A failure answers 500 "failed to encode profile". */
struct pp_profile;
int pprof_send_profile(request_rec *r, struct pp_profile *prof, const char *filename);

#endif
