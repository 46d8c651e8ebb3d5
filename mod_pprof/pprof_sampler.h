/* This child's CPU sampler (pp_cpu), shared by the kinds that want its samples: the CPU
 * profile starts and stops it; a trace running beside it receives the same samples, as
 * Go's traces carry a CPU profile's. Each kind subscribes a sink; every drain hands each
 * sample to every sink.
 *
 * Everything here but pprof_sampler_running and pprof_sampler_thread_ready runs on the
 * agent thread (pp_cpu's controlling thread), or before it starts and after it ended. */
#ifndef PPROF_SAMPLER_H
#define PPROF_SAMPLER_H

#include "httpd.h"

#include "pp_cpu.h"

typedef void (*pprof_sample_sink)(void *baton, const pp_cpu_sample *s);

/* Add or remove a sink (at most 4). Adding one twice keeps one. */
void pprof_sampler_subscribe(pprof_sample_sink fn, void *baton);
void pprof_sampler_unsubscribe(pprof_sample_sink fn, void *baton);

/* Start sampling every thread at hz. NULL, or why not (another handler owns the signal,
 * logged as PP0301; or already started). */
const char *pprof_sampler_start(int hz);

/* Stop; what is left in the ring goes to the sinks. Samples lost since the start are in
 * pprof_sampler_dropped until the next start. */
void pprof_sampler_stop(void);

/* How often the agent drains the sampler while only a CPU profile runs (the CPU kind's
 * tick): its ring holds twice that, at the rate of every core. A trace beside it ticks
 * every PPROF_TICK_MS, which drains more often. At 100 Hz a tick moves a few dozen
 * samples at most: waking the agent of every child 10 times a second for them cost more
 * than the samples did. */
#define PPROF_SAMPLER_TICK_MS 250

/* Hand every sample taken since the last drain to the sinks, and follow new threads. */
void pprof_sampler_drain(void);

uint64_t pprof_sampler_dropped(void);

/* Any thread: 1 while sampling. Inline, one load: it is read on every request. */
extern volatile int pprof_sampler_on;

static inline int pprof_sampler_running(void)
{
    return pprof_sampler_on;
}

/* Request threads, at every connection and request: let this thread be sampled, and warm
 * its unwinder (about 257 KiB, libunwind's cache) only while sampling, so that idle
 * servers do not pay for it. Until warmed its samples are leaf-only. The first time a
 * thread comes here while sampling, the announcer (below) is called. */
void pprof_sampler_thread_ready(void);

/* The agent's: called (from any request thread) when a thread serves for the first time
 * while sampling, so that its timer is armed now (pprof_sampler_drain) and not at the
 * next tick: a worker thread of a child born during the window would otherwise burn up
 * to a tick of CPU unseen, and a recycled child's life is a few ticks. Must be
 * async-signal-safe and must not block (a write to a pipe). */
void pprof_sampler_announcer(void (*fn)(void));

#endif
