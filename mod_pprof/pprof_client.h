/* Whether the client of a request is still there, in httpd's own terms: a failed write,
 * an aborted connection, mod_http2's stream reset, or (HTTP/1.x, plain or TLS) the end of
 * the connection's input. Never by peeking at a socket: HTTP/2 and TLS hide it. */
#ifndef PPROF_CLIENT_H
#define PPROF_CLIENT_H

#include "httpd.h"

/* 1 once the client has gone away (and then c->aborted is set). */
int pprof_client_gone(request_rec *r);

/* Sleep until `until`, looking at the client whenever its connection's socket has
 * something (its close), or every 100 ms once it had bytes that were not a close or
 * where there is no socket of its own (HTTP/2): 1 if it went away. */
int pprof_sleep_unless_gone(request_rec *r, apr_time_t until);

#endif
