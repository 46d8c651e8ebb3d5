/* The channel between a collector and the agents of the other children: one Unix stream
 * socket per child, "<DefaultRuntimeDir>/mod_pprof/<pid>.sock", in a directory of mode
 * 0700 owned by the server's User. Requests are one text line; answers are a text line
 * and, for data, binary blobs whose lengths that line gives. Every call has a deadline. */
#ifndef PPROF_IPC_H
#define PPROF_IPC_H

#include "httpd.h"

/* Parent, post_config: make the directory (as root: chown it to User). */
apr_status_t pprof_ipc_init(apr_pool_t *pconf, server_rec *s);

const char *pprof_ipc_socket_path(apr_pool_t *p, pid_t pid);

/* Child: bind and listen on its socket. The fd, or -1 (logged). */
int pprof_ipc_listen(apr_pool_t *pchild, server_rec *s);

int pprof_ipc_connect(pid_t pid, apr_pool_t *p);
int pprof_ipc_write_all(int fd, const void *buf, apr_size_t len, apr_time_t deadline);
/* A line without its newline, NUL-terminated. 0, or -1 on error, EOF or deadline. */
int pprof_ipc_read_line(int fd, char *buf, apr_size_t cap, apr_time_t deadline);
int pprof_ipc_read_full(int fd, void *buf, apr_size_t len, apr_time_t deadline);

#endif
