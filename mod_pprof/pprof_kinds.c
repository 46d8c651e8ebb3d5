#include "pprof_kinds.h"
#include "pprof_shared.h"

#include <string.h>

/* One line per kind: X(name) for `const pprof_kind pprof_kind_<name>` in its file. The
 * order is the order of their post_config (what they interpose in the parent) and of
 * their hooks among hooks of the same place. */
#define PPROF_KINDS(X) \
    X(cpu)             \
    X(heap)            \
    X(trace)           \
    X(threadcreate)    \
    X(goroutine)       \
    X(block)           \
    X(mutex)

#define DECLARE(name) extern const pprof_kind pprof_kind_##name;
#define ENTRY(name) &pprof_kind_##name,

PPROF_KINDS(DECLARE)

const pprof_kind *const pprof_kinds[] = { PPROF_KINDS(ENTRY) NULL };

_Static_assert(sizeof(pprof_kinds) / sizeof(pprof_kinds[0]) - 1 <= PPROF_MAX_WINDOWS,
               "each kind has a window slot in pprof_shared, whether it uses it or not");

const pprof_kind *pprof_kind_named(const char *name)
{
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        if (strcmp(pprof_kinds[i]->name, name) == 0) {
            return pprof_kinds[i];
        }
    }
    return NULL;
}

int pprof_kind_index(const pprof_kind *k)
{
    int i;

    for (i = 0; pprof_kinds[i]; i++) {
        if (pprof_kinds[i] == k) {
            return i;
        }
    }
    return -1;
}
