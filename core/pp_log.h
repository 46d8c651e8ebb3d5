/* Logging for libpprofcore: the core never writes to stderr or syslog itself; it hands
 * each message to a callback that the embedding program installs (mod_pprof installs one
 * that calls ap_log_error). Every message carries a unique tag ("PPxxxx") for grepping. */
#ifndef PP_LOG_H
#define PP_LOG_H

typedef enum {
    PP_LOG_ERROR = 0,
    PP_LOG_WARN,
    PP_LOG_INFO,
    PP_LOG_DEBUG
} pp_log_level;

/* Called with a formatted, NUL-terminated message. Must be thread-safe. Never called
 * from a signal handler. */
typedef void pp_log_fn(void *baton, pp_log_level level, const char *tag, const char *msg);

/* Install the callback (NULL: drop messages). Not thread-safe: call at start-up. */
void pp_log_set(pp_log_fn *fn, void *baton);

/* Format and hand a message to the callback. Not async-signal-safe. */
void pp_log(pp_log_level level, const char *tag, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
