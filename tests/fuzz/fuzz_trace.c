/* libFuzzer target: the per-thread trace records (core/pp_tbuf.c pp_tbuf_walk and
 * core/pp_trace.c pp_trace_records), which a collector takes from each child's agent
 * and turns into a Go execution trace. The first byte picks the first thread's state when
 * the trace began; the records go to that thread, then again to a thread of another
 * process that appears later, and the trace is finished and taken like the endpoint does. */
#include "pp_trace.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int resolve(void *baton, uint32_t pid, uint64_t pc, pp_trace_frame *out, int max)
{
    (void)baton;
    (void)pid;
    if (max < 1 || (pc & 3) == 0) {
        return 0;               /* some PCs are unknown */
    }
    out[0].function = (pc & 1) ? "ap_queue_pop_something" : "apr_thread_cond_wait";
    out[0].file = (pc & 2) ? "server/mpm/event/fdqueue.c" : NULL;
    out[0].line = (int)(pc % 1000);
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_trace *t;
    const unsigned char *out;
    size_t len;
    int a, b;
    const pp_trace_frame frames[2] = {
        { "php_execute_script", "main/main.c", 2500 }, { "ap_run_handler", NULL, 0 },
    };

    if (size < 1 || !(t = pp_trace_new(1000))) {
        return 0;
    }
    pp_trace_set_thread_frame(t, "httpd.worker_thread", "server/mpm/event/event.c");
    pp_trace_set_frame(t, "handler", "ap_invoke_handler", "server/config.c");
    pp_trace_set_resolver(t, resolve, NULL);
    a = pp_trace_thread(t, 100, 0, 4242, data[0] % 3);
    (void)pp_trace_cpu_sample(t, 1500, a, frames, 2);
    (void)pp_trace_records(t, a, data + 1, size - 1);
    b = pp_trace_thread(t, 200, 1, 0, PP_TRACE_NEW);
    (void)pp_trace_records(t, b, data + 1, size - 1);
    (void)pp_trace_thread(t, 200, 1, 4343, PP_TRACE_NEW);
    (void)pp_trace_cpu_sample(t, 2000, b, frames, 1);
    out = pp_trace_data(t, &len);
    if (len && !out) {
        abort();
    }
    pp_trace_consume(t);
    (void)pp_trace_finish(t, 5000);
    (void)pp_trace_data(t, &len);
    pp_trace_free(t);
    return 0;
}
