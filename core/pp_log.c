#include "pp_log.h"

#include <stdarg.h>
#include <stdio.h>

static pp_log_fn *log_fn;
static void *log_baton;

void pp_log_set(pp_log_fn *fn, void *baton)
{
    log_fn = fn;
    log_baton = baton;
}

void pp_log(pp_log_level level, const char *tag, const char *fmt, ...)
{
    char msg[1024];
    va_list ap;

    if (!log_fn) {
        return;
    }
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    log_fn(log_baton, level, tag, msg);
}
