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

/* A reply: a line whose last nblobs fields are the lengths of the blobs that follow. */
#define PPROF_MAX_BLOBS 4
#define PPROF_MAX_BLOB (256u * 1024 * 1024)
typedef struct {
    char line[512];
    char *blob[PPROF_MAX_BLOBS];        /* NUL-terminated for convenience */
    apr_size_t len[PPROF_MAX_BLOBS];
} pprof_reply;

/* Send cmd (a line) to child pid and read its reply with nblobs blobs into out (from
 * pool p). 0: a reply; 1: the child answered NONE or is gone; -1: a broken reply. */
int pprof_ipc_call(apr_pool_t *p, pid_t pid, const char *cmd, int nblobs, pprof_reply *out,
                   apr_time_t deadline);

/* Agent side: the reply line (head, then the blob lengths) and the blobs. */
int pprof_ipc_reply(int fd, const char *head, int nblobs, const void *const *blobs,
                    const apr_size_t *lens, apr_time_t deadline);

#endif
