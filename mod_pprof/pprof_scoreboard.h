/* Who is who, from httpd's scoreboard: the live children of the server, this child's row,
 * and which worker slot of that row each thread of this child fills. Reads the scoreboard
 * (and, for children it no longer names, the agents' sockets and /proc); writes nothing
 * there (and needs nothing of ExtendedStatus). */
#ifndef PPROF_SCOREBOARD_H
#define PPROF_SCOREBOARD_H

#include "httpd.h"

/* child_init: this child's shape (threaded or not, worker slots per child). */
void pprof_scoreboard_child_init(apr_pool_t *pchild);

/* The pids of the live children of the server (this process always among them), or of
 * only `only` when non-zero, allocated from p: those of the scoreboard, and children of
 * older generations it no longer names. (After a graceful restart, worker gives the row of
 * a child that is going away to a new child as soon as some of its threads have ended:
 * the old child may still serve for long, a collector among its requests. Its agent's
 * socket names it: a live child of our parent with a socket is ours.) */
apr_array_header_t *pprof_children(apr_pool_t *p, pid_t only);

/* Add to pids the children the scoreboard names that pids lacks and that are alive (of
 * only `only` when non-zero): what pprof_children would add, but for children it no
 * longer names, for a system call per child added rather than per child. */
void pprof_children_add_new(apr_array_header_t *pids, pid_t only);

/* Whether pid is a live child (not a zombie) of parent: 1 yes, 0 no, -1 cannot tell (no
 * /proc). */
int pprof_is_child(pid_t pid, pid_t parent);

/* Worker slots per child (ThreadLimit; 1 for prefork). */
int pprof_slots(void);

/* 1 under a threaded MPM; under prefork a child's one worker is its main thread. */
int pprof_threaded(void);

/* The calling thread's worker slot in this child's row, or -1 for a thread that is no
 * worker. Found once per thread (the MPM stamps each worker score with the pthread that
 * fills it; prefork's worker is the main thread), when it also learns the thread's kernel
 * id for pprof_slot_tid. Then a thread-local read: callable from every request hook. */
int pprof_slot_self(void);

/* The kernel id of the thread in worker slot, 0 until known. */
apr_uint32_t pprof_slot_tid(int slot);

/* Whether the thread (kernel id tid, pthread id pthread or 0) is one of this child's MPM
 * workers, by the scoreboard's stamp: for the role of a worker that has served nothing. */
int pprof_slot_is_worker(apr_uint32_t tid, apr_uint64_t pthread);

/* The worker slots in use now, for a trace's first state: each with its thread's kernel
 * id (learnt here from pthread_create's hook when the thread has not told it yet) and
 * whether it is busy (anything but waiting for a connection or request). */
typedef struct {
    int slot;
    apr_uint32_t tid;
    int busy;
} pprof_slot_state;
apr_array_header_t *pprof_slot_states(apr_pool_t *p);

#endif
