/* The channel between a collector and the agents of the children: one Unix stream socket
 * per child, "<DefaultRuntimeDir>/mod_pprof/<pid>.sock", in a directory of mode 0700
 * owned by the server's User. One request per connection, one reply, each a frame of
 * pp_wire (a u32 length, then the message); this file moves frames and knows nothing of
 * what is in them. Every call has a deadline, and every length read is bounded before
 * anything is allocated for it. */
#ifndef PPROF_IPC_H
#define PPROF_IPC_H

#include "httpd.h"

#include <sys/uio.h>

/* Parent, post_config: make the directory (as root: chown it to User). */
apr_status_t pprof_ipc_init(apr_pool_t *pconf, server_rec *s);

/* "<dir>/<pid><suffix>" (".sock": the agent's socket; others: files an agent leaves for
 * the collector), or NULL before pprof_ipc_init. */
const char *pprof_ipc_path(apr_pool_t *p, pid_t pid, const char *suffix);

/* The directory itself, or NULL. */
const char *pprof_ipc_dir(void);

/* Parent: remove what children that no longer live left in the directory (a child killed
 * before its cleanup ran leaves its socket): every "<pid>.sock" of a dead pid, and, unless
 * keep_files (a window is open: its collector may still come for them), every other
 * "<pid>.*" file of a dead pid too (hand-over files nobody will read). Then, when
 * remove_dir, the directory itself if it is empty (the server stops). */
void pprof_ipc_sweep(int keep_files, int remove_dir);

/* --- the agent's side ------------------------------------------------------------------ */

/* Child: bind and listen on its socket. The fd, or -1 (logged). */
int pprof_ipc_listen(apr_pool_t *pchild, server_rec *s);

/* Read one frame of at most max bytes: *body (from p) and *len. 0, or -1 on error, end of
 * stream, deadline, or a length above max. */
int pprof_ipc_read_frame(int fd, apr_pool_t *p, apr_size_t max, void **body, apr_size_t *len,
                         apr_time_t deadline);

/* Write all of buf (a frame as pp_wire packs it). 0, or -1 on error or deadline. */
int pprof_ipc_write_all(int fd, const void *buf, apr_size_t len, apr_time_t deadline);
/* The same for n pieces (empty ones skipped), with one sendmsg while the socket takes
 * them all; iov is changed. */
int pprof_ipc_writev_all(int fd, struct iovec *iov, int n, apr_time_t deadline);

/* --- the collector's side --------------------------------------------------------------- */

typedef enum {
    PPROF_IPC_OK = 0,           /* a whole reply frame was read */
    PPROF_IPC_UNREACHABLE,      /* no agent listens for that pid (gone, or not yet started) */
    PPROF_IPC_FAILED            /* it did not answer by the deadline, broke off, or its
                                   frame announced more than max */
} pprof_ipc_status;

typedef struct {
    pid_t pid;                  /* in */
    pprof_ipc_status status;    /* out */
    unsigned char *body;        /* out: the reply's message, malloc'ed (the caller frees) */
    apr_size_t len;
} pprof_ipc_call;

/* Send the same request frame to the agent of every call's pid and read each one's reply
 * frame (at most max bytes of message), many at once: the agents prepare their replies in
 * parallel. At most 64 connections are open at a time; each one that ends lets the next
 * call open. One deadline for all: returns when every call has its status, by the
 * deadline at the latest (calls not yet opened by then are FAILED). */
void pprof_ipc_exchange(pprof_ipc_call *calls, int n, const void *frame, apr_size_t framelen,
                        apr_size_t max, apr_time_t deadline);

#endif
