/* The registry of profile kinds (pprof_kind.h): the one list that the agent dispatches
 * on, the collector asks for, the module registers hooks of and the handler serves. */
#ifndef PPROF_KINDS_H
#define PPROF_KINDS_H

#include "pprof_kind.h"

/* Every kind, in registration order, ended by NULL. */
extern const pprof_kind *const pprof_kinds[];

/* The kind called name, or NULL. */
const pprof_kind *pprof_kind_named(const char *name);

/* A kind's place in the list: its window slot in pprof_shared. */
int pprof_kind_index(const pprof_kind *k);

#endif
