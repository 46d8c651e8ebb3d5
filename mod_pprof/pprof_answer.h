/* A profile answer being built by a collector: the children's stacks merged into one
 * pp_profile, each PC normalized to (object, file offset) and symbolized once (the
 * process's symbolizer is held from pprof_answer_new until the answer is sent or failed),
 * then encoded and answered as Go does. The tail every profile endpoint shares. */
#ifndef PPROF_ANSWER_H
#define PPROF_ANSWER_H

#include "httpd.h"

#include "pp_maps.h"
#include "pp_profile.h"

typedef struct pprof_answer pprof_answer;

/* A new answer for r: an empty profile whose first mappings are this process's own (the
 * main executable is mapping 1, as pprof expects). NULL when out of memory (nothing is
 * held then). Whatever happens, r's pool ends it. */
pprof_answer *pprof_answer_new(request_rec *r);

/* The profile, for its sample types, period, times and comments. */
pp_profile *pprof_answer_profile(pprof_answer *a);

/* One sample: the n PCs (leaf first; all return addresses when first_is_return, else
 * pcs[0] is an exact PC) of a child whose mappings are maps, with values and labels.
 * 0, or -1 (out of memory). */
int pprof_answer_sample(pprof_answer *a, const pp_maps *maps, const uint64_t *pcs, size_t n,
                        int first_is_return, const int64_t *values, const pp_label *labels,
                        size_t nlabels);

/* One sample on a synthetic frame (Go's markers: lost samples, a thread that did not
 * answer). 0, or -1. */
int pprof_answer_synthetic(pprof_answer *a, const char *frame, const int64_t *values,
                           const pp_label *labels, size_t nlabels);

/* Encode and answer (application/octet-stream, attached as filename; NULL: see
 * pprof_send_profile), then end the answer. Returns what the handler returns. */
int pprof_answer_send(pprof_answer *a, const char *filename);

/* Answer 500 "failed to collect profile" (a NULL a included), then end the answer. */
int pprof_answer_fail(request_rec *r, pprof_answer *a);

#endif
