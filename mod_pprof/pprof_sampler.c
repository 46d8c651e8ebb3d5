#include "pprof_sampler.h"

#define MAX_SINKS 4
#define RING_SLOTS 4096         /* samples between drains: 100 ms at 40 busy cores */

static struct {
    pprof_sample_sink fn;
    void *baton;
} sinks[MAX_SINKS];
volatile int pprof_sampler_on; /* read by request threads */
static volatile unsigned starts; /* bumped at every start: a thread is new to each */
/* Read on every request while a profile runs: initial-exec, as the other per-request
 * thread-locals (no __tls_get_addr call). */
static __thread unsigned seen __attribute__((tls_model("initial-exec")));
static void (*announce)(void);
static uint64_t dropped;

void pprof_sampler_subscribe(pprof_sample_sink fn, void *baton)
{
    int i, free_slot = -1;

    for (i = 0; i < MAX_SINKS; i++) {
        if (sinks[i].fn == fn && sinks[i].baton == baton) {
            return;
        }
        if (!sinks[i].fn && free_slot < 0) {
            free_slot = i;
        }
    }
    if (free_slot >= 0) {
        sinks[free_slot].fn = fn;
        sinks[free_slot].baton = baton;
    }
}

void pprof_sampler_unsubscribe(pprof_sample_sink fn, void *baton)
{
    int i;

    for (i = 0; i < MAX_SINKS; i++) {
        if (sinks[i].fn == fn && sinks[i].baton == baton) {
            sinks[i].fn = NULL;
            sinks[i].baton = NULL;
        }
    }
}

static void fan_out(void *unused, const pp_cpu_sample *s)
{
    int i;

    for (i = 0; i < MAX_SINKS; i++) {
        if (sinks[i].fn) {
            sinks[i].fn(sinks[i].baton, s);
        }
    }
}

const char *pprof_sampler_start(int hz)
{
    int rc = pp_cpu_start(hz, RING_SLOTS);

    if (rc != 0) {
        return rc == -1 ? "another handler owns the CPU sampling signal (see PP0301 in error_log)"
                        : "cpu profiling already in use";
    }
    dropped = 0;
    __atomic_add_fetch(&starts, 1, __ATOMIC_RELEASE);
    pprof_sampler_on = 1;
    return NULL;
}

void pprof_sampler_stop(void)
{
    if (!pprof_sampler_on) {
        return;
    }
    pprof_sampler_on = 0;
    pp_cpu_stop(fan_out, NULL);
    dropped = pp_cpu_dropped();
}

void pprof_sampler_drain(void)
{
    if (pprof_sampler_on) {
        pp_cpu_drain(fan_out, NULL);
        pp_cpu_refresh_threads();
    }
}

uint64_t pprof_sampler_dropped(void)
{
    return pprof_sampler_on ? pp_cpu_dropped() : dropped;
}

void pprof_sampler_thread_ready(void)
{
    if (pprof_sampler_on) {
        unsigned now = __atomic_load_n(&starts, __ATOMIC_ACQUIRE);
        pp_cpu_thread_warm();
        if (seen != now) {
            seen = now;
            if (announce) {
                announce();
            }
        }
    } else {
        pp_cpu_thread_allow();
    }
}

void pprof_sampler_announcer(void (*fn)(void))
{
    announce = fn;
}
