#include "pprof_client.h"

#include "http_core.h"
#include "util_filter.h"
#include "apr_portable.h"

#include <poll.h>

int pprof_client_gone(request_rec *r)
{
    conn_rec *c = r->connection;
    apr_bucket_brigade *bb;
    apr_status_t rv;
    int gone;

    /* httpd's own word: a failed write (any protocol), or mod_http2 marking the stream's
     * connection aborted when the client resets the stream or closes the connection. */
    if (c->aborted || (c->master && c->master->aborted)) {
        return 1;
    }
    if (c->master) {
        /* An HTTP/2 stream owns no socket: its reset reaches us through aborted. */
        return 0;
    }
    /* HTTP/1.x, plain or TLS: ask the connection's input filters (mod_ssl included) for
     * one byte, without waiting and without consuming it. End of stream or an error means
     * the client closed; nothing yet, or pipelined bytes, mean it is still there. */
    bb = apr_brigade_create(r->pool, c->bucket_alloc);
    rv = ap_get_brigade(c->input_filters, bb, AP_MODE_SPECULATIVE, APR_NONBLOCK_READ, 1);
    if (APR_STATUS_IS_EAGAIN(rv)) {
        gone = 0;
    } else if (rv != APR_SUCCESS) {
        gone = 1;
    } else {
        gone = !APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_FIRST(bb));
    }
    apr_brigade_destroy(bb);
    if (gone) {
        c->aborted = 1;
    }
    return gone;
}

/* The descriptor of the client's connection, -1 when it has none of its own (an HTTP/2
 * stream) or it cannot be had. */
static int client_fd(request_rec *r)
{
    conn_rec *c = r->connection;
    apr_socket_t *sock = c->master ? NULL : ap_get_conn_socket(c);
    apr_os_sock_t fd;

    return sock && apr_os_sock_get(&fd, sock) == APR_SUCCESS ? (int)fd : -1;
}

int pprof_sleep_unless_gone(request_rec *r, apr_time_t until)
{
    /* A 10 s profile looked 100 times (a wake-up, a speculative read through the input
     * filters): a tenth of a CPU profile's cost to an idle server. So while nothing
     * arrives from the client, the wait is one poll of its socket until `until`: a client
     * that goes away closes it (or, TLS, sends its close_notify first), which ends the
     * poll, and httpd's filters then say whether it went (the socket only wakes us).
     * Bytes that are not a close (a pipelined request) would end every poll at once:
     * after one such wake-up, look every 100 ms as before. */
    int fd = client_fd(r);

    for (;;) {
        apr_time_t left = until - apr_time_now();
        if (left <= 0) {
            return 0;
        }
        if (pprof_client_gone(r)) {
            return 1;
        }
        if (fd >= 0) {
            struct pollfd p;
            apr_time_t ms = (left + 999) / 1000;
            p.fd = fd;
            p.events = POLLIN | POLLRDHUP;
            p.revents = 0;
            if (poll(&p, 1, ms > 3600000 ? 3600000 : (int)ms) > 0) {
                fd = -1;        /* awake for a reason: the filters tell which, next */
            }
            continue;
        }
        apr_sleep(left < apr_time_from_msec(100) ? left : apr_time_from_msec(100));
    }
}
