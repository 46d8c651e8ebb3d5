/* Building a reply in an agent half (pprof_out): the parts of a pp_wire_reply, allocated
 * from out->pool, so that a kind says what it hands over and not how it is encoded. */
#ifndef PPROF_REPLY_H
#define PPROF_REPLY_H

#include "pprof_kind.h"

#include "pp_stacktab.h"

/* Refuse: the reply's status becomes ERROR with why. Returns PP_WIRE_ERROR. */
int pprof_out_error(pprof_out *out, const char *why);

void pprof_out_counter(pprof_out *out, const char *name, apr_int64_t value);

/* This process's executable mappings (/proc/self/maps), which name the PCs it sends.
 * 0, or -1 when they cannot be read. */
int pprof_out_mappings(pprof_out *out);

/* One stack, its values and PCs copied. */
void pprof_out_stack(pprof_out *out, apr_uint64_t key, const apr_uint64_t *values,
                     apr_size_t nvalues, const apr_uint64_t *pcs, apr_size_t npcs);

/* Every entry of t, copied. */
void pprof_out_stacktab(pprof_out *out, const pp_stacktab *t);

/* Every record of a buffer in pp_stacktab's serialized form, copied. -1 if malformed. */
int pprof_out_stacks_serialized(pprof_out *out, const unsigned char *buf, apr_size_t len);

/* What the stacks' tag id stands for: a request's handler and vhost (copied). */
void pprof_out_tag(pprof_out *out, apr_uint32_t id, const char *handler, const char *vhost);

/* A new thread, a new trace section, a new trace sample: zeroed (strings ""), added to
 * the reply, for the caller to fill. PCs are copied by pprof_out_pcs. */
pp_wire_thread *pprof_out_thread(pprof_out *out);
pp_wire_section *pprof_out_section(pprof_out *out);
pp_wire_sample *pprof_out_sample(pprof_out *out);

/* A copy of n PCs in out->pool (for the pcs of the above). */
uint64_t *pprof_out_pcs(pprof_out *out, const uint64_t *pcs, apr_size_t n);

#endif
