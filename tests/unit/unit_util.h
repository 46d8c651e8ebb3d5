/* What several Check suites share: clocks, the calling thread's id, and naming the PCs of
 * this process (its maps and a symbolizer). Header-only (static inline): each suite is one
 * program. Include after check.h and the core headers it uses. */
#ifndef UNIT_UTIL_H
#define UNIT_UTIL_H

#include "pp_maps.h"
#include "pp_symbolize.h"

#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static inline int64_t mono_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static inline void sleep_ms(int ms)
{
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };

    nanosleep(&ts, NULL);
}

static inline uint32_t my_tid(void)
{
    return (uint32_t)syscall(SYS_gettid);
}

/* ---- naming PCs ----------------------------------------------------------------------- */

typedef struct {
    pp_maps *maps;
    pp_symbolizer *sym;
} namer;

static inline void namer_init(namer *nm)
{
    nm->maps = pp_maps_read(NULL);
    nm->sym = pp_symbolizer_new();
    ck_assert_ptr_nonnull(nm->maps);
    ck_assert_ptr_nonnull(nm->sym);
}

static inline void namer_free(namer *nm)
{
    pp_maps_free(nm->maps);
    pp_symbolizer_free(nm->sym);
}

/* The function containing pc, or (is_return) calling at return address pc; "" when
 * unknown. */
static inline const char *pc_function(namer *nm, uint64_t pc, int is_return)
{
    pp_frame frames[8];
    int n = pp_symbolize_pc(nm->sym, nm->maps, pc, is_return, frames, 8, NULL);

    return n > 0 && frames[n - 1].function ? frames[n - 1].function : "";
}

#endif
