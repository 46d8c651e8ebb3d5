/* The resolver: turns raw stacks (PCs as seen by one process, plus that process's maps)
 * into locations of a pp_profile. PCs are normalized to (object, file offset), so the same
 * code in different processes becomes one location, symbolized once. Non-leaf PCs are
 * return addresses; they are moved back one byte into the call instruction, so their line
 * is the call's. Not thread-safe; never use it from a signal handler. */
#ifndef PP_RESOLVE_H
#define PP_RESOLVE_H

#include "pp_maps.h"
#include "pp_profile.h"
#include "pp_symbolize.h"

#include <stddef.h>
#include <stdint.h>

typedef struct pp_resolver pp_resolver;

/* Both prof and sym must outlive the resolver; neither is owned. */
pp_resolver *pp_resolver_new(pp_profile *prof, pp_symbolizer *sym);
void pp_resolver_free(pp_resolver *r);

/* Add a mapping for every object in maps, in order: call it first with the collecting
 * process's own maps so the main executable is mapping 1, as pprof expects. */
int pp_resolver_add_mappings(pp_resolver *r, const pp_maps *maps);

/* Resolve n PCs (leaf first) of a process with the given maps. Writes location ids to
 * out (capacity n) and returns how many were written, or -1 on out of memory. A PC in no
 * mapping still gets a location (an unknown address, as pprof shows it). If
 * first_is_return is 0, pcs[0] is the exact interrupted PC (a signal sample). */
int pp_resolver_stack(pp_resolver *r, const pp_maps *maps, const uint64_t *pcs, size_t n,
                      int first_is_return, uint64_t *out);

/* A location for a synthetic frame (for example Go's "runtime._LostExternalCode" style
 * markers for dropped samples), deduplicated by name. */
uint64_t pp_resolver_synthetic(pp_resolver *r, const char *name);

#endif
