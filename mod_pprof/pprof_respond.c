#include "pprof_respond.h"

#include "http_protocol.h"
#include "apr_strings.h"
#include "util_filter.h"

#include "pp_profile.h"

#include <stdlib.h>

int pprof_serve_error(request_rec *r, int status, const char *txt)
{
    r->status = status;
    ap_set_content_type(r, "text/plain; charset=utf-8");
    apr_table_setn(r->headers_out, "X-Go-Pprof", "1");
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    apr_table_unset(r->headers_out, "Content-Disposition");
    if (!r->header_only) {
        ap_rvputs(r, txt, "\n", NULL);
    }
    return OK;
}

void pprof_attach(request_rec *r, const char *filename)
{
    ap_set_content_type(r, "application/octet-stream");
    apr_table_setn(r->headers_out, "Content-Disposition",
                   apr_psprintf(r->pool, "attachment; filename=\"%s\"", filename));
}

int pprof_send_profile(request_rec *r, pp_profile *prof, const char *filename)
{
    unsigned char *buf = NULL;
    size_t len = 0;

    if (pp_profile_encode(prof, 1, &buf, &len) != 0) {
        return pprof_serve_error(r, HTTP_INTERNAL_SERVER_ERROR, "failed to encode profile");
    }
    if (filename) {
        pprof_attach(r, filename);
    } else {
        /* Go's handler with a negative debug: text/plain is set for a debug != 0, and
         * the profile's WriteTo, taking debug <= 0 as its binary form, writes that. */
        ap_set_content_type(r, "text/plain; charset=utf-8");
    }
    ap_set_content_length(r, (apr_off_t)len);
    if (!r->header_only) {
        ap_rwrite(buf, (int)len, r);
    }
    free(buf);
    return OK;
}

int pprof_send_text(request_rec *r, apr_bucket_brigade *bb)
{
    ap_set_content_type(r, "text/plain; charset=utf-8");
    if (r->header_only) {
        return OK;
    }
    return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
}
