#include "pprof_text.h"

#include "apr_strings.h"

void pprof_text_pcs(apr_bucket_brigade *bb, const apr_uint64_t *pcs, apr_size_t n)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        apr_brigade_printf(bb, NULL, NULL, " 0x%" APR_UINT64_T_HEX_FMT, pcs[i]);
    }
}

void pprof_text_stack(apr_bucket_brigade *bb, pp_symbolizer *sym, const pp_maps *maps,
                      const apr_uint64_t *pcs, apr_size_t n, int first_is_return)
{
    apr_size_t i;

    for (i = 0; i < n; i++) {
        pp_frame fr[16];
        pp_pc_site site;
        int nf = pp_symbolize_pc(sym, maps, pcs[i], i > 0 || first_is_return, fr, 16, &site), j;

        if (nf <= 0) {
            apr_brigade_printf(bb, NULL, NULL, "#\t0x%" APR_UINT64_T_HEX_FMT "\n", site.pc);
            continue;
        }
        for (j = 0; j < nf; j++) {
            apr_brigade_printf(bb, NULL, NULL, "#\t0x%" APR_UINT64_T_HEX_FMT "\t%s+0x%"
                               APR_UINT64_T_HEX_FMT "\t%s:%d\n", site.pc,
                               fr[j].function ? fr[j].function : "??", fr[j].offset,
                               fr[j].file ? fr[j].file : "??", fr[j].line);
        }
    }
    apr_brigade_puts(bb, NULL, NULL, "\n");
}
