/* Go's text layouts (debug=1): stack frames as "#\t0xPC\tfunction+0xOFF\tfile:line". */
#ifndef PPROF_TEXT_H
#define PPROF_TEXT_H

#include "httpd.h"
#include "apr_buckets.h"

#include "pp_maps.h"
#include "pp_symbolize.h"

/* One frame line per PC (inlined calls expanded, innermost first), then a blank line.
 * Non-leaf PCs (and the first when first_is_return) are return addresses: the PC shown
 * and symbolized is one byte back, inside the call, as Go's CallersFrames does. */
void pprof_text_stack(apr_bucket_brigade *bb, pp_symbolizer *sym, const pp_maps *maps,
                      const apr_uint64_t *pcs, apr_size_t n, int first_is_return);

/* " 0xPC 0xPC ..." as Go prints a record's stack on its header line. */
void pprof_text_pcs(apr_bucket_brigade *bb, const apr_uint64_t *pcs, apr_size_t n);

#endif
