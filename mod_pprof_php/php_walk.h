/* The PHP frame walk: mod_php's call stack, read in place from the interpreter's own
 * memory on the thread being sampled (Debian's libphp is non-ZTS: one global executor,
 * `executor_globals`, whose current_execute_data starts the frame chain). Compiled against
 * PHP's own headers (php-config --includes), so every offset is the one of the PHP it is
 * built for; mod_pprof_php checks at start-up that the loaded PHP is that version.
 *
 * No httpd or APR header here: the walk is what the unit tests and the benchmark run on
 * frame chains they build themselves. */
#ifndef PPROF_PHP_WALK_H
#define PPROF_PHP_WALK_H

#include "pp_interp.h"

/* Walk the chain of this executor_globals (a zend_executor_globals *, as dlsym finds it);
 * NULL stops every walk. uses_zend_mm: PHP allocates with Zend MM (is_zend_mm()), whose
 * unmappings the allocator hooks see (pp_heap.h): the newest frame's possibly freed memory
 * is then read in place where this thread has unmapped nothing since (see GUARDED in
 * php_walk.c). Call it before any sampler runs. */
void pprof_php_walk_init(void *executor_globals, int uses_zend_mm);

/* The pp_interp walk: fills up to max frames, newest first, of the PHP stack of the
 * calling (interrupted) thread. Async-signal-safe; reads only; bounded; every pointer is
 * checked for plausibility (alignment, user-space range) and every opline for lying in
 * its function's opcodes before it is followed. The newest frame, when it runs an
 * included file's or eval'd code (which PHP frees before it unlinks the frame), is read
 * in place only where none of this thread's unmappings since the last sample whose
 * frames were all alive meets it (ctx->maybe_unmapped), else through process_vm_readv,
 * which fails where a read would fault; with ctx->read every read goes through it. No signal handler of ours is needed. PP_INTERP_LOOP_END marks
 * user code that a new activation of the interpreter loop (execute_ex) entered. */
int pprof_php_walk(void *baton, const pp_interp_ctx *ctx, pp_interp_frame *frames, int max);

/* The version of the PHP headers the walk was built with ("8.2.36"). */
const char *pprof_php_walk_version(void);

#endif
