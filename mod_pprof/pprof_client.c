#include "pprof_client.h"

#include "util_filter.h"

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

int pprof_sleep_unless_gone(request_rec *r, apr_time_t until)
{
    for (;;) {
        apr_time_t left = until - apr_time_now();
        if (left <= 0) {
            return 0;
        }
        if (pprof_client_gone(r)) {
            return 1;
        }
        apr_sleep(left < apr_time_from_msec(100) ? left : apr_time_from_msec(100));
    }
}
