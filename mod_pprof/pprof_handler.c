/* Endpoint dispatch and the endpoints that are no kind of profile: the index page,
 * cmdline and symbol. Each follows Go 1.19's net/http/pprof in status, headers and text. */
#include "pprof_conf.h"
#include "pprof_handler.h"
#include "pprof_kinds.h"
#include "pprof_query.h"
#include "pprof_respond.h"
#include "pprof_symbols.h"

#include "http_core.h"
#include "http_log.h"
#include "http_protocol.h"
#include "http_request.h"
#include "util_script.h"
#include "apr_strings.h"

#include "pp_heap.h"
#include "pp_maps.h"
#include "pp_symreq.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

APLOG_USE_MODULE(pprof);

/* pprof sends a few addresses per request; this bounds what a client can make us read. */
#define SYMBOL_BODY_MAX (8 * 1024 * 1024)
/* Go's parsePostForm reads at most 10 MB of a form ("10 MB is a lot of text"). */
#define FORM_BODY_MAX (10 << 20)

static int serve_cmdline(request_rec *r, apr_table_t *args);
static int serve_symbol(request_rec *r, apr_table_t *args);

/* The endpoints that are no kind of profile. */
static const pprof_endpoint own[] = {
    { "cmdline", serve_cmdline, NULL,
      "The command line of the server's parent process, as it was started" },
    { "symbol", serve_symbol, NULL, NULL },
    { NULL }
};

/* Every endpoint, ours and each kind's, sorted by name as Go sorts the index; gathered
 * once (the registry is constant). Names not here answer 404 "Unknown profile". */
#define MAX_ENDPOINTS 64
static const pprof_endpoint *endpoints[MAX_ENDPOINTS];
static int nendpoints;

static int by_name(const void *a, const void *b)
{
    return strcmp((*(const pprof_endpoint *const *)a)->name,
                  (*(const pprof_endpoint *const *)b)->name);
}

static void add_endpoints(const pprof_endpoint *e)
{
    for (; e && e->name && nendpoints < MAX_ENDPOINTS; e++) {
        endpoints[nendpoints++] = e;
    }
}

void pprof_handler_init(void)
{
    int i;

    nendpoints = 0;
    add_endpoints(own);
    for (i = 0; pprof_kinds[i]; i++) {
        add_endpoints(pprof_kinds[i]->endpoints);
    }
    qsort(endpoints, (size_t)nendpoints, sizeof(*endpoints), by_name);
}

/* The parent's argv as it was started: httpd's process->argv has "-k start" and the
 * like rewritten away, but every child is a fork of the parent and /proc keeps it all. */
static int serve_cmdline(request_rec *r, apr_table_t *args)
{
    const process_rec *proc = r->server->process;
    char *buf = NULL;
    apr_size_t len = 0;
    apr_file_t *f;
    int i;

    ap_set_content_type(r, "text/plain; charset=utf-8");
    if (r->header_only) {
        return OK;
    }
    if (apr_file_open(&f, "/proc/self/cmdline", APR_FOPEN_READ, 0, r->pool) == APR_SUCCESS) {
        apr_size_t cap = 65536;
        buf = apr_palloc(r->pool, cap);
        len = cap;
        if (apr_file_read_full(f, buf, cap, &len) != APR_SUCCESS && len == 0) {
            buf = NULL;
        }
        apr_file_close(f);
    }
    if (buf && len > 0) {
        /* The kernel ends each argument with a NUL; Go joins them with NULs. */
        ap_rwrite(buf, (int)(buf[len - 1] == '\0' ? len - 1 : len), r);
        return OK;
    }
    for (i = 0; i < proc->argc; i++) {
        if (i > 0) {
            ap_rwrite("", 1, r);
        }
        ap_rputs(proc->argv[i], r);
    }
    return OK;
}

/* The request body, up to max bytes: OK, HTTP_REQUEST_ENTITY_TOO_LARGE past max, or an
 * error status. */
static int read_body(request_rec *r, apr_size_t max, char **out, apr_size_t *outlen)
{
    apr_size_t cap = 8192, n = 0;
    char *buf = apr_palloc(r->pool, cap);
    int rc;

    if ((rc = ap_setup_client_block(r, REQUEST_CHUNKED_DECHUNK)) != OK) {
        return rc;
    }
    if (ap_should_client_block(r)) {
        for (;;) {
            long got;
            if (n == cap) {
                char *nb;
                if (cap >= max) {
                    /* Full: one byte more says whether the body goes on. */
                    char probe;
                    got = ap_get_client_block(r, &probe, 1);
                    if (got == 0) {
                        break;
                    }
                    return got < 0 ? HTTP_BAD_REQUEST : HTTP_REQUEST_ENTITY_TOO_LARGE;
                }
                nb = apr_palloc(r->pool, cap * 2 < max ? cap * 2 : max);
                memcpy(nb, buf, n);
                buf = nb;
                cap = cap * 2 < max ? cap * 2 : max;
            }
            got = ap_get_client_block(r, buf + n, cap - n);
            if (got < 0) {
                return HTTP_BAD_REQUEST;
            }
            if (got == 0) {
                break;
            }
            n += (apr_size_t)got;
        }
    }
    *out = buf;
    *outlen = n;
    return OK;
}

/* Go's Symbol: "num_symbols: 1", then "0xADDR name" for each '+'-separated address that
 * names code of this process; unknown addresses are left out. */
static int serve_symbol(request_rec *r, apr_table_t *args)
{
    const char *in;
    apr_size_t inlen;
    pp_maps *maps = NULL;
    pp_symbolizer *sym;
    char *body;
    const char *p, *end;
    uint64_t pc;
    int rc;

    if (r->method_number == M_POST) {
        if ((rc = read_body(r, SYMBOL_BODY_MAX, &body, &inlen)) != OK) {
            return rc == HTTP_REQUEST_ENTITY_TOO_LARGE
                ? pprof_serve_error(r, rc, "request body too large")
                : pprof_serve_error(r, rc, "reading request: failed");
        }
        in = body;
    } else {
        in = r->args ? r->args : "";
        inlen = strlen(in);
    }
    ap_set_content_type(r, "text/plain; charset=utf-8");
    /* Buffer the whole answer: Go reads the whole request before it writes. */
    {
        apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
        apr_brigade_puts(bb, NULL, NULL, "num_symbols: 1\n");
        maps = pp_maps_read(NULL);
        sym = maps ? pprof_symbols_lock() : NULL;
        for (p = in, end = in + inlen; sym && pp_symreq_next(&p, end, &pc);) {
            pp_frame fr[8];

            if (pc && pp_symbolize_pc(sym, maps, pc, 0, fr, 8, NULL) > 0 && fr[0].function) {
                apr_brigade_printf(bb, NULL, NULL, "0x%" APR_UINT64_T_HEX_FMT " %s\n",
                                   (apr_uint64_t)pc, fr[0].function);
            }
        }
        if (sym) {
            pprof_symbols_unlock();
        }
        pp_maps_free(maps);
        if (!r->header_only) {
            return ap_pass_brigade(r->output_filters, bb) == APR_SUCCESS ? OK : AP_FILTER_ERROR;
        }
    }
    return OK;
}

static void html_escape_puts(request_rec *r, const char *s)
{
    ap_rputs(ap_escape_html(r->pool, s), r);
}

/* Go's Index page: a table of counts and names linking to name?debug=1, the full
 * goroutine dump link, then the descriptions. */
static int serve_index(request_rec *r)
{
    int i;

    ap_set_content_type(r, "text/html; charset=utf-8");
    if (r->header_only) {
        return OK;
    }
    ap_rputs("<html>\n<head>\n<title>/debug/pprof/</title>\n<style>\n.profile-name{\n"
             "\tdisplay:inline-block;\n\twidth:6rem;\n}\n</style>\n</head>\n<body>\n"
             "/debug/pprof/<br>\n<br>\nTypes of profiles available:\n<table>\n"
             "<thead><td>Count</td><td>Profile</td></thead>\n", r);
    for (i = 0; i < nendpoints; i++) {
        const pprof_endpoint *e = endpoints[i];
        if (!e->desc) {
            continue;
        }
        ap_rprintf(r, "<tr><td>%ld</td><td><a href='%s?debug=1'>", e->count ? e->count(r) : 0,
                   e->name);
        html_escape_puts(r, e->name);
        ap_rputs("</a></td></tr>\n", r);
    }
    ap_rputs("</table>\n<a href=\"goroutine?debug=2\">full goroutine stack dump</a>\n<br>\n"
             "<p>\nProfile Descriptions:\n<ul>\n", r);
    for (i = 0; i < nendpoints; i++) {
        const pprof_endpoint *e = endpoints[i];
        if (!e->desc) {
            continue;
        }
        ap_rputs("<li><div class=profile-name>", r);
        html_escape_puts(r, e->name);
        ap_rputs(": </div> ", r);
        html_escape_puts(r, e->desc);
        ap_rputs("</li>\n", r);
    }
    ap_rputs("</ul>\n</p>\n</body>\n</html>", r);
    return OK;
}

/* The endpoint is what follows the <Location> prefix (Go's Index trims "/debug/pprof/").
 * SetHandler is core's directive, so the section's path is core's per-dir "d"; under a
 * <LocationMatch> or outside a <Location>, the last path segment names the endpoint.
 * NULL: the prefix itself without its slash, which Go's ServeMux redirects. */
static const char *endpoint_name(request_rec *r)
{
    core_dir_config *core = ap_get_core_module_config(r->per_dir_config);
    const char *uri = r->uri, *rest, *loc = core ? core->d : NULL;
    size_t plen;

    if (loc && !core->r && !core->d_is_fnmatch && loc[0] == '/' &&
        (plen = strlen(loc)) > 1 && strncmp(uri, loc, plen) == 0) {
        rest = uri + plen;
        if (*rest == '\0' && loc[plen - 1] != '/') {
            return NULL;
        }
        if (*rest == '/') {
            rest++;
        }
        return rest;
    }
    rest = strrchr(uri, '/');
    return rest ? rest + 1 : uri;
}

/* body[0, len) as a C string: a NUL byte in it (a query cannot hold one) becomes "%00",
 * which pprof_parse_query reads as the NUL it is. */
static char *nul_escaped(apr_pool_t *p, const char *body, apr_size_t len)
{
    char *out, *o;
    apr_size_t i;

    if (!memchr(body, '\0', len)) {
        return apr_pstrmemdup(p, body, len);
    }
    o = out = apr_palloc(p, 3 * len + 1);
    for (i = 0; i < len; i++) {
        if (body[i]) {
            *o++ = body[i];
        } else {
            memcpy(o, "%00", 3);
            o += 3;
        }
    }
    *o = '\0';
    return out;
}

/* Go's Request.ParseForm as FormValue calls it: for a POST, PUT or PATCH whose body is
 * application/x-www-form-urlencoded (Go's mime.ParseMediaType: any case, parameters
 * ignored), the body's values come first, then the query's; a body past 10 MB adds
 * none. Go parses multipart/form-data bodies too, after the query: not done here (see
 * the README). A ';' in the query's pairs drops them, and Go's server logs it. */
static int form_values(request_rec *r, int read_form, apr_table_t **args)
{
    const char *ct = apr_table_get(r->headers_in, "Content-Type");
    char *body;
    apr_size_t len;
    int rc;

    *args = apr_table_make(r->pool, 4);
    if (read_form && ct &&
        (r->method_number == M_POST || r->method_number == M_PUT ||
         r->method_number == M_PATCH) &&
        ap_cstr_casecmp(ap_field_noparam(r->pool, ct), "application/x-www-form-urlencoded") == 0) {
        rc = read_body(r, FORM_BODY_MAX, &body, &len);
        if (rc == OK) {
            pprof_parse_query(r->pool, *args, nul_escaped(r->pool, body, len));
        } else if (rc != HTTP_REQUEST_ENTITY_TOO_LARGE) {
            return rc;
        }
    }
    if (pprof_parse_query(r->pool, *args, r->args) > 0) {
        /* Go's text; info, as httpd logs what a client sent wrong: a client cannot fill
         * error_log at the usual LogLevel. */
        ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                      "PP0050: URL query contains semicolon, which is no longer a supported "
                      "separator; parts of the query may be stripped when parsed; see "
                      "golang.org/issue/25192");
    }
    return OK;
}

int pprof_handler(request_rec *r)
{
    apr_table_t *args = NULL;
    const char *name;
    int i, rc, symbol_post;

    if (!r->handler || strcmp(r->handler, PPROF_HANDLER) != 0) {
        return DECLINED;
    }
    if (!(name = endpoint_name(r))) {
        /* Go's ServeMux redirects "/debug/pprof" to "/debug/pprof/". */
        const char *loc = apr_pstrcat(r->pool, ap_escape_uri(r->pool, r->uri), "/",
                                      r->args ? "?" : "", r->args ? r->args : "", NULL);
        apr_table_setn(r->headers_out, "Location", ap_construct_url(r->pool, loc, r));
        return HTTP_MOVED_PERMANENTLY;
    }
    apr_table_setn(r->headers_out, "X-Content-Type-Options", "nosniff");
    /* Go's Symbol reads a POST's body itself, as addresses. Go's index, cmdline and
     * unknown names read no form: the form is read for them too (not the index), which
     * changes none of their answers and keeps one path. */
    symbol_post = r->method_number == M_POST && strcmp(name, "symbol") == 0;
    pp_heap_guard_enter();
    rc = form_values(r, *name && !symbol_post, &args);
    pp_heap_guard_leave();
    if (rc != OK) {
        return rc;
    }
    if (!symbol_post) {
        if ((rc = ap_discard_request_body(r)) != OK) {
            return rc;
        }
    }
    if (*name == '\0') {
        pp_heap_guard_enter();
        rc = serve_index(r);
        pp_heap_guard_leave();
        return rc;
    }
    for (i = 0; i < nendpoints; i++) {
        if (strcmp(endpoints[i]->name, name) == 0) {
            /* What the profiler allocates to answer is not the server's: keep it out. */
            pp_heap_guard_enter();
            rc = endpoints[i]->serve(r, args);
            pp_heap_guard_leave();
            return rc;
        }
    }
    return pprof_serve_error(r, HTTP_NOT_FOUND, "Unknown profile");
}
