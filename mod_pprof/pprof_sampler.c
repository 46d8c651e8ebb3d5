#include "pprof_sampler.h"
#include "pprof_kind.h"

#include <unistd.h>

#define MAX_SINKS 4
/* The ring holds what the threads sample between two drains of the agent (every
 * PPROF_SAMPLER_TICK_MS or sooner). Samples come from CPU-time timers, so at most one
 * thread per online core is sampled at a time: hz x cores per second. RING_TICKS of them
 * leave room for an agent that waits for a core. Every slot's page is touched as the ring wraps (a slot is
 * ~1.1 KiB), so it is sized to the machine rather than to the largest one: 4096 slots
 * (4.6 MiB) were private memory in every child of a 2-core VM that never filled 300. */
#define RING_TICKS 2
#define RING_MIN 256
#define RING_MAX 4096

static size_t ring_slots_for(int hz)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t n;

    if (cores < 1) {
        cores = 1;
    }
    n = (size_t)hz * (size_t)cores * RING_TICKS * PPROF_SAMPLER_TICK_MS / 1000;
    return n < RING_MIN ? RING_MIN : n > RING_MAX ? RING_MAX : n;
}

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
/* A thread new to this start served (set by it, taken by the agent's drain): the next
 * check walks the threads, whatever their number (one may have replaced another). */
static volatile int announced;
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
    int rc = pp_cpu_start(hz, ring_slots_for(hz));

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
        pp_cpu_check_threads(__atomic_exchange_n(&announced, 0, __ATOMIC_ACQ_REL));
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
            __atomic_store_n(&announced, 1, __ATOMIC_RELEASE);
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
