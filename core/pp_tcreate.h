/* Where threads come from: pthread_create is interposed (pp_got) so that each new thread
 * carries the stack that created it, kept while the thread lives. Threads that existed
 * before pp_tcreate_start are listed with an empty stack, as Go does for threads it did
 * not see created. Not async-signal-safe; thread-safe. */
#ifndef PP_TCREATE_H
#define PP_TCREATE_H

#include <stddef.h>
#include <stdint.h>

#define PP_TCREATE_MAX_DEPTH 64

typedef struct {
    uint32_t tid;
    uint32_t npcs;              /* 0: created before we looked */
    uint64_t pcs[PP_TCREATE_MAX_DEPTH];   /* return addresses, the creator's caller first */
} pp_tcreate_record;

/* Hook pthread_create in every loaded object. -1 on failure. */
int pp_tcreate_start(void);

/* The creation stacks of the live threads of this process (every thread in
 * /proc/self/task), ordered by tid. *out is malloc'ed (the caller frees it). 0, or -1. */
int pp_tcreate_snapshot(pp_tcreate_record **out, size_t *n);

/* The kernel id of the live thread whose pthread_self() is pthread, if it was created
 * through the hook; 0 otherwise. */
uint32_t pp_tcreate_tid(uint64_t pthread);

/* The reverse: the pthread_self() of the live thread tid, if it was created through the
 * hook (and has started); 0 otherwise. */
uint64_t pp_tcreate_pthread(uint32_t tid);

/* Threads created through the hook since the process started (a cumulative count). */
uint64_t pp_tcreate_total(void);

#endif
