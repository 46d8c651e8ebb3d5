#include "pprof_ipc.h"

#include "http_log.h"
#include "apr_strings.h"
#include "unixd.h"

#include "pp_wire.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

/* Connections open at once in an exchange: a server with more children has the rest
 * asked as earlier ones end (file descriptors are a child's to share with its requests). */
#define EXCHANGE_BATCH 64

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

const char *pprof_ipc_dir(void)
{
    return sock_dir;
}

void pprof_ipc_sweep(int keep_files, int remove_dir)
{
    DIR *d;
    struct dirent *e;

    if (!sock_dir || !(d = opendir(sock_dir))) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (pid <= 0 || *end != '.' || (keep_files && strcmp(end, ".sock") != 0) ||
            kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
            continue;
        }
        unlinkat(dirfd(d), e->d_name, 0);
    }
    closedir(d);
    if (remove_dir) {
        rmdir(sock_dir);        /* fails, as it should, while anything is left */
    }
}

const char *pprof_ipc_path(apr_pool_t *p, pid_t pid, const char *suffix)
{
    return sock_dir ? apr_psprintf(p, "%s/%ld%s", sock_dir, (long)pid, suffix) : NULL;
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
    const char *path = pprof_ipc_path(pchild, getpid(), ".sock");
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
        listen(fd, SOMAXCONN) != 0) {
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

static int connect_to(pid_t pid)
{
    struct sockaddr_un sa;
    char path[sizeof(sa.sun_path) + 1];
    int fd;

    if (!sock_dir ||
        (apr_size_t)apr_snprintf(path, sizeof(path), "%s/%ld.sock", sock_dir, (long)pid) >=
            sizeof(sa.sun_path) ||
        fill_addr(&sa, path) != 0 ||
        (fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0)) < 0) {
        return -1;
    }
    /* A Unix connect either succeeds, fails, or (backlog full: the agent is busy with
     * other collectors) says EAGAIN: that is retried for up to 200 ms, so a busy child is
     * not taken for one that does not listen. */
    {
        int tries = 0;
        while (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
            if (errno != EAGAIN || ++tries > 20) {
                close(fd);
                return -1;
            }
            apr_sleep(apr_time_from_msec(10));
        }
    }
    return fd;
}

int pprof_ipc_writev_all(int fd, struct iovec *iov, int n, apr_time_t deadline)
{
    for (;;) {
        struct msghdr mh;
        ssize_t w;

        while (n > 0 && iov->iov_len == 0) {
            iov++;              /* an empty piece: nothing to send, and sendmsg's 0 for it
                                 * would read as a failure */
            n--;
        }
        if (n == 0) {
            return 0;
        }
        memset(&mh, 0, sizeof(mh));
        mh.msg_iov = iov;
        mh.msg_iovlen = (size_t)n;
        w = sendmsg(fd, &mh, MSG_NOSIGNAL);
        if (w > 0) {
            /* past the pieces sent whole, then into the one sent in part */
            while (n > 0 && (size_t)w >= iov->iov_len) {
                w -= (ssize_t)iov->iov_len;
                iov++;
                n--;
            }
            if (n > 0) {
                iov->iov_base = (char *)iov->iov_base + w;
                iov->iov_len -= (size_t)w;
            }
        } else if (w < 0 && (errno == EAGAIN || errno == EINTR)) {
            if (wait_fd(fd, POLLOUT, deadline) != 0) {
                return -1;
            }
        } else {
            return -1;
        }
    }
}

int pprof_ipc_write_all(int fd, const void *buf, apr_size_t len, apr_time_t deadline)
{
    struct iovec one = { (void *)(uintptr_t)buf, len };

    return pprof_ipc_writev_all(fd, &one, 1, deadline);
}

static int read_full(int fd, void *buf, apr_size_t len, apr_time_t deadline)
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

int pprof_ipc_read_frame(int fd, apr_pool_t *p, apr_size_t max, void **body, apr_size_t *len,
                         apr_time_t deadline)
{
    unsigned char head[PP_WIRE_FRAME];
    long n;

    if (read_full(fd, head, sizeof(head), deadline) != 0 ||
        (n = pp_wire_frame_length(head, max)) < 0) {
        return -1;
    }
    *len = (apr_size_t)n;
    *body = apr_palloc(p, *len + 1);
    return read_full(fd, *body, *len, deadline);
}

/* One call of an exchange while it reads: the frame head, then the message. */
typedef struct {
    int fd;
    unsigned char head[PP_WIRE_FRAME];
    apr_size_t got;             /* bytes of head and message read */
    long want;                  /* the message's length, -1 until the head is read */
    apr_size_t cap;
} reading;

/* Read what is there for call c. 1: done (status set), 0: more to come. */
static int read_some(pprof_ipc_call *c, reading *rd, apr_size_t max)
{
    for (;;) {
        ssize_t n;
        if (rd->want < 0) {
            n = recv(rd->fd, rd->head + rd->got, PP_WIRE_FRAME - rd->got, 0);
        } else {
            apr_size_t have = rd->got - PP_WIRE_FRAME;
            if (have == (apr_size_t)rd->want) {
                c->status = PPROF_IPC_OK;
                return 1;
            }
            if (have == rd->cap) {
                /* Grow with what arrives, not with what the head claims. */
                apr_size_t ncap = rd->cap ? rd->cap * 2 : 65536;
                unsigned char *nb;
                ncap = ncap < (apr_size_t)rd->want ? ncap : (apr_size_t)rd->want;
                if (!(nb = realloc(c->body, ncap))) {
                    return 1;
                }
                c->body = nb;
                rd->cap = ncap;
            }
            n = recv(rd->fd, c->body + have, rd->cap - have, 0);
        }
        if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
            return 0;
        }
        if (n <= 0) {
            return 1;           /* broke off: FAILED */
        }
        rd->got += (apr_size_t)n;
        if (rd->want < 0 && rd->got == PP_WIRE_FRAME &&
            (rd->want = pp_wire_frame_length(rd->head, max)) < 0) {
            return 1;
        }
        if (rd->want >= 0) {
            c->len = rd->got - PP_WIRE_FRAME;
        }
    }
}

/* Open call c (its connection, then the request written); 0, or -1 with its status set. */
static int open_call(pprof_ipc_call *c, reading *rd, const void *frame, apr_size_t framelen,
                     apr_time_t deadline)
{
    memset(rd, 0, sizeof(*rd));
    rd->want = -1;
    if ((rd->fd = connect_to(c->pid)) < 0) {
        c->status = PPROF_IPC_UNREACHABLE;     /* exited, or not listening yet */
        return -1;
    }
    /* A request is a few dozen bytes: it fits in an empty socket buffer at once. */
    if (pprof_ipc_write_all(rd->fd, frame, framelen, deadline) != 0) {
        close(rd->fd);
        rd->fd = -1;
        return -1;
    }
    return 0;
}

void pprof_ipc_exchange(pprof_ipc_call *calls, int n, const void *frame, apr_size_t framelen,
                        apr_size_t max, apr_time_t deadline)
{
    /* A sliding window: EXCHANGE_BATCH calls at most are open at once, and the next one
     * opens as soon as any ends, so a slow child delays nobody but itself (in batches,
     * each batch waited for its slowest). Every call shares the one deadline: the whole
     * exchange ends by then, however many children there are. */
    reading rd[EXCHANGE_BATCH];
    struct pollfd pfd[EXCHANGE_BATCH];
    int at[EXCHANGE_BATCH];         /* the call each slot holds, -1 when free */
    int i, next = 0, open = 0;

    for (i = 0; i < n; i++) {
        calls[i].status = PPROF_IPC_FAILED;
        calls[i].body = NULL;
        calls[i].len = 0;
    }
    for (i = 0; i < EXCHANGE_BATCH; i++) {
        at[i] = -1;
        rd[i].fd = -1;
    }
    for (;;) {
        int np = 0, ix[EXCHANGE_BATCH], rc;
        apr_time_t left;

        /* Fill the free slots (a child that does not listen takes none). */
        for (i = 0; i < EXCHANGE_BATCH && next < n; i++) {
            while (at[i] < 0 && next < n && apr_time_now() < deadline) {
                int k = next++;
                if (open_call(&calls[k], &rd[i], frame, framelen, deadline) == 0) {
                    at[i] = k;
                    open++;
                }
            }
        }
        left = deadline - apr_time_now();
        if (open == 0 || left <= 0) {
            break;              /* the rest did not answer in time: FAILED */
        }
        for (i = 0; i < EXCHANGE_BATCH; i++) {
            if (at[i] >= 0) {
                pfd[np].fd = rd[i].fd;
                pfd[np].events = POLLIN;
                pfd[np].revents = 0;
                ix[np++] = i;
            }
        }
        rc = poll(pfd, (nfds_t)np, (int)(left / 1000) + 1);
        if (rc < 0 && errno != EINTR) {
            break;
        }
        for (i = 0; i < np && rc > 0; i++) {
            int sl = ix[i];
            if (pfd[i].revents && read_some(&calls[at[sl]], &rd[sl], max)) {
                close(rd[sl].fd);
                rd[sl].fd = -1;
                at[sl] = -1;
                open--;
            }
        }
    }
    for (i = 0; i < EXCHANGE_BATCH; i++) {
        if (at[i] >= 0) {
            close(rd[i].fd);
        }
    }
    for (i = 0; i < n; i++) {
        if (calls[i].status != PPROF_IPC_OK) {
            free(calls[i].body);
            calls[i].body = NULL;
            calls[i].len = 0;
        }
    }
}
