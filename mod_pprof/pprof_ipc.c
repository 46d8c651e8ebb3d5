#include "pprof_ipc.h"

#include "http_log.h"
#include "apr_strings.h"
#include "unixd.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

static const char *sock_dir;

apr_status_t pprof_ipc_init(apr_pool_t *pconf, server_rec *s)
{
    const char *dir = ap_runtime_dir_relative(pconf, "mod_pprof");

    if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     "PP0002: cannot create mod_pprof's socket directory %s", dir);
        return APR_FROM_OS_ERROR(errno);
    }
    /* Children run as User: the directory must be theirs, and only theirs. */
    if (geteuid() == 0 &&
        chown(dir, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     "PP0003: cannot give %s to the server's User", dir);
        return APR_FROM_OS_ERROR(errno);
    }
    chmod(dir, 0700);
    sock_dir = dir;
    return APR_SUCCESS;
}

const char *pprof_ipc_socket_path(apr_pool_t *p, pid_t pid)
{
    return sock_dir ? apr_psprintf(p, "%s/%ld.sock", sock_dir, (long)pid) : NULL;
}

static int fill_addr(struct sockaddr_un *sa, const char *path)
{
    memset(sa, 0, sizeof(*sa));
    sa->sun_family = AF_UNIX;
    if (!path || strlen(path) >= sizeof(sa->sun_path)) {
        return -1;
    }
    strcpy(sa->sun_path, path);
    return 0;
}

int pprof_ipc_listen(apr_pool_t *pchild, server_rec *s)
{
    const char *path = pprof_ipc_socket_path(pchild, getpid());
    struct sockaddr_un sa;
    int fd;

    if (fill_addr(&sa, path) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, s,
                     "PP0004: socket path too long for a Unix socket: %s", path ? path : "");
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    unlink(path);               /* a dead child with our recycled pid */
    if (bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0 || chmod(path, 0600) != 0 ||
        listen(fd, 64) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s, "PP0005: cannot listen on %s", path);
        close(fd);
        return -1;
    }
    return fd;
}

static int wait_fd(int fd, short events, apr_time_t deadline)
{
    struct pollfd pfd;
    int rc;

    for (;;) {
        apr_time_t left = deadline - apr_time_now();
        if (left <= 0) {
            return -1;
        }
        pfd.fd = fd;
        pfd.events = events;
        pfd.revents = 0;
        rc = poll(&pfd, 1, (int)(left / 1000) + 1);
        if (rc > 0) {
            return 0;
        }
        if (rc < 0 && errno != EINTR) {
            return -1;
        }
    }
}

int pprof_ipc_connect(pid_t pid, apr_pool_t *p)
{
    struct sockaddr_un sa;
    int fd;

    if (fill_addr(&sa, pprof_ipc_socket_path(p, pid)) != 0) {
        return -1;
    }
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        return -1;
    }
    /* A Unix connect either succeeds, fails, or (backlog full) says EAGAIN: no waiting. */
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

int pprof_ipc_write_all(int fd, const void *buf, apr_size_t len, apr_time_t deadline)
{
    const char *p = buf;

    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n > 0) {
            p += n;
            len -= (apr_size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 0) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

int pprof_ipc_read_full(int fd, void *buf, apr_size_t len, apr_time_t deadline)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = recv(fd, p, len, 0);
        if (n > 0) {
            p += n;
            len -= (apr_size_t)n;
        } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLIN, deadline) != 0) {
                return -1;
            }
        } else {
            return -1;
        }
    }
    return 0;
}

int pprof_ipc_read_line(int fd, char *buf, apr_size_t cap, apr_time_t deadline)
{
    apr_size_t n = 0;

    /* Byte by byte: lines are short and the blobs that follow must stay unread. */
    while (n + 1 < cap) {
        if (pprof_ipc_read_full(fd, buf + n, 1, deadline) != 0) {
            return -1;
        }
        if (buf[n] == '\n') {
            buf[n] = '\0';
            return 0;
        }
        n++;
    }
    return -1;
}

int pprof_ipc_call(apr_pool_t *p, pid_t pid, const char *cmd, int nblobs, pprof_reply *out,
                   apr_time_t deadline)
{
    int fd = pprof_ipc_connect(pid, p), i, nf = 0, rc = -1;
    char *fields[64], *copy, *tok, *last;

    memset(out, 0, sizeof(*out));
    if (fd < 0) {
        return 1;               /* exited: what it held went with it */
    }
    if (pprof_ipc_write_all(fd, cmd, strlen(cmd), deadline) != 0 ||
        pprof_ipc_write_all(fd, "\n", 1, deadline) != 0 ||
        pprof_ipc_read_line(fd, out->line, sizeof(out->line), deadline) != 0) {
        goto done;
    }
    if (strcmp(out->line, "NONE") == 0) {
        rc = 1;
        goto done;
    }
    copy = apr_pstrdup(p, out->line);
    for (tok = apr_strtok(copy, " ", &last); tok && nf < 64; tok = apr_strtok(NULL, " ", &last)) {
        fields[nf++] = tok;
    }
    if (nblobs > PPROF_MAX_BLOBS || nf < nblobs) {
        goto done;
    }
    for (i = 0; i < nblobs; i++) {
        apr_int64_t len = apr_atoi64(fields[nf - nblobs + i]);
        if (len < 0 || (apr_uint64_t)len > PPROF_MAX_BLOB) {
            goto done;
        }
        out->len[i] = (apr_size_t)len;
        out->blob[i] = apr_palloc(p, out->len[i] + 1);
        if (pprof_ipc_read_full(fd, out->blob[i], out->len[i], deadline) != 0) {
            goto done;
        }
        out->blob[i][out->len[i]] = '\0';
    }
    rc = 0;
done:
    close(fd);
    return rc;
}

int pprof_ipc_reply(int fd, const char *head, int nblobs, const void *const *blobs,
                    const apr_size_t *lens, apr_time_t deadline)
{
    char line[512];
    apr_size_t used = (apr_size_t)apr_snprintf(line, sizeof(line), "%s", head);
    int i;

    for (i = 0; i < nblobs && used < sizeof(line); i++) {
        used += (apr_size_t)apr_snprintf(line + used, sizeof(line) - used, " %" APR_SIZE_T_FMT,
                                         lens[i]);
    }
    if (used + 1 >= sizeof(line)) {
        return -1;
    }
    line[used++] = '\n';
    if (pprof_ipc_write_all(fd, line, used, deadline) != 0) {
        return -1;
    }
    for (i = 0; i < nblobs; i++) {
        if (pprof_ipc_write_all(fd, blobs[i], lens[i], deadline) != 0) {
            return -1;
        }
    }
    return 0;
}
