#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* SCM_CREDENTIALS, struct ucred, setresuid, MSG_CMSG_CLOEXEC */
#endif
#include "pp_sysfd.h"
#include "pp_tasks.h"

#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#define MAGIC 0x50505346u       /* "PPSF" */
#define NOBODY 65534
#define ANSWER_MS 500           /* the helper's answer, at most (it only opens a file) */

typedef struct {
    uint32_t magic;
    uint32_t tid;
} request;

typedef struct {
    uint32_t tid;
    int fd;
} entry;

static int helper_fd = -1;      /* our end of the helper's socket, inherited by children */
static entry *fds;
static size_t nfds, capfds;
static pid_t fds_pid;           /* the process the descriptors were opened for */

/* --- the helper ------------------------------------------------------------------------ */

static void answer(int reply, int err, int fd)
{
    char cbuf[CMSG_SPACE(sizeof(int))];
    int32_t e = err;
    struct iovec iov = { &e, sizeof(e) };
    struct msghdr msg;

    memset(&msg, 0, sizeof(msg));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    if (fd >= 0) {
        struct cmsghdr *c;
        memset(cbuf, 0, sizeof(cbuf));
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);
        c = CMSG_FIRSTHDR(&msg);
        c->cmsg_level = SOL_SOCKET;
        c->cmsg_type = SCM_RIGHTS;
        c->cmsg_len = CMSG_LEN(sizeof(int));
        memcpy(CMSG_DATA(c), &fd, sizeof(int));
    }
    sendmsg(reply, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

static void serve(int sock)
{
    for (;;) {
        request req;
        /* Room for the credentials and a few descriptors (any beyond the first are
         * closed: a client sends one). */
        union {
            char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(8 * sizeof(int))];
            struct cmsghdr align;
        } cb;
        struct iovec iov = { &req, sizeof(req) };
        struct msghdr msg;
        struct cmsghdr *c;
        struct ucred cred;
        int have_cred = 0, reply = -1, fd, err;
        ssize_t n;

        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cb.buf;
        msg.msg_controllen = sizeof(cb.buf);
        n = recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
        if (n == 0) {
            return;             /* every client end is closed */
        }
        if (n < 0) {
            if (errno == EINTR) {
                continue;
            }
            return;
        }
        for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
            if (c->cmsg_level != SOL_SOCKET) {
                continue;
            }
            if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len == CMSG_LEN(sizeof(cred))) {
                memcpy(&cred, CMSG_DATA(c), sizeof(cred));
                have_cred = 1;
            } else if (c->cmsg_type == SCM_RIGHTS) {
                size_t i, k = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
                for (i = 0; i < k; i++) {
                    int got;
                    memcpy(&got, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
                    if (reply < 0) {
                        reply = got;
                    } else {
                        close(got);
                    }
                }
            }
        }
        if (reply < 0) {
            continue;           /* nowhere to answer */
        }
        fd = -1;
        if (!have_cred || n != (ssize_t)sizeof(req) || req.magic != MAGIC || req.tid == 0 ||
            req.tid > PP_TASKS_TID_MAX || cred.pid <= 0 || (msg.msg_flags & MSG_CTRUNC)) {
            err = EINVAL;
        } else {
            /* Only the asking process's own thread (the kernel vouches for cred.pid). */
            char path[64];
            snprintf(path, sizeof(path), "/proc/%d/task/%u/syscall", (int)cred.pid, req.tid);
            fd = open(path, O_RDONLY | O_CLOEXEC);
            err = fd < 0 ? (errno == ENOENT ? ESRCH : errno) : 0;
        }
        answer(reply, err, fd);
        if (fd >= 0) {
            close(fd);
        }
        close(reply);
    }
}

/* Nobody, with the one capability that opens a file whatever its mode. */
static int drop_privileges(void)
{
    struct __user_cap_header_struct head = { _LINUX_CAPABILITY_VERSION_3, 0 };
    struct __user_cap_data_struct data[2];
    gid_t gid = NOBODY;

    if (geteuid() != 0) {
        return 0;
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) != 0 || setgroups(1, &gid) != 0 ||
        setresgid(NOBODY, NOBODY, NOBODY) != 0 || setresuid(NOBODY, NOBODY, NOBODY) != 0) {
        return -1;
    }
    memset(data, 0, sizeof(data));
    data[0].effective = data[0].permitted = 1u << CAP_DAC_READ_SEARCH;
    if (syscall(SYS_capset, &head, data) != 0 || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
        return -1;
    }
    return 0;
}

static void become_helper(int sock)
{
    sigset_t all;
    int sig, fd, one = 1;
    long maxfd;

    setsid();
    for (sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP) {
            signal(sig, SIG_DFL);
        }
    }
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&all);
    sigprocmask(SIG_SETMASK, &all, NULL);
    /* Only the socket (as fd 3) and /dev/null on 0-2: none of the program's files. */
    if (sock != 3) {
        if (dup2(sock, 3) != 3) {
            _exit(1);
        }
        close(sock);
        sock = 3;
    }
    if ((fd = open("/dev/null", O_RDWR)) >= 0) {
        dup2(fd, 0);
        dup2(fd, 1);
        dup2(fd, 2);
        if (fd > 3) {
            close(fd);
        }
    }
    if (syscall(SYS_close_range, 4u, ~0u, 0u) != 0) {
        maxfd = sysconf(_SC_OPEN_MAX);
        for (fd = 4; fd < (maxfd > 0 && maxfd < 65536 ? maxfd : 65536); fd++) {
            close(fd);
        }
    }
    fcntl(sock, F_SETFD, FD_CLOEXEC);
    prctl(PR_SET_NAME, "pprof-sysfd", 0, 0, 0);
    prctl(PR_SET_PDEATHSIG, 0, 0, 0, 0);
    if (drop_privileges() != 0 ||
        setsockopt(sock, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) != 0) {
        _exit(1);
    }
    serve(sock);
    _exit(0);
}

int pp_sysfd_helper_start(void)
{
    int sv[2], status;
    pid_t pid;

    if (geteuid() != 0) {
        return 0;
    }
    if (helper_fd >= 0) {
        close(helper_fd);       /* the earlier generation's helper ends with its users */
        helper_fd = -1;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0) {
        return -1;
    }
    pid = fork();
    if (pid < 0) {
        int err = errno;
        close(sv[0]);
        close(sv[1]);
        errno = err;
        return -1;
    }
    if (pid == 0) {
        /* The intermediate child: the helper is its child, re-parented to init when it
         * exits at once, so the program never has to reap the helper. */
        close(sv[0]);
        if (fork() == 0) {
            become_helper(sv[1]);
        }
        _exit(0);
    }
    close(sv[1]);
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    helper_fd = sv[0];
    return 1;
}

/* A descriptor for tid's syscall file from the helper, or -1 (errno). */
static int ask_helper(uint32_t tid)
{
    int rp[2], fd = -1;
    request req = { MAGIC, tid };
    char cbuf[CMSG_SPACE(sizeof(int))];
    struct iovec iov = { &req, sizeof(req) };
    struct msghdr msg;
    struct cmsghdr *c;
    struct pollfd pfd;
    int32_t err = EIO;
    ssize_t n;

    if (helper_fd < 0) {
        errno = EACCES;
        return -1;
    }
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, rp) != 0) {
        return -1;
    }
    memset(&msg, 0, sizeof(msg));
    memset(cbuf, 0, sizeof(cbuf));
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf;
    msg.msg_controllen = sizeof(cbuf);
    c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &rp[1], sizeof(int));
    n = sendmsg(helper_fd, &msg, MSG_NOSIGNAL);
    close(rp[1]);
    if (n != (ssize_t)sizeof(req)) {
        close(rp[0]);
        errno = EACCES;         /* no helper (any more) */
        return -1;
    }
    pfd.fd = rp[0];
    pfd.events = POLLIN;
    if (poll(&pfd, 1, ANSWER_MS) == 1) {
        iov.iov_base = &err;
        iov.iov_len = sizeof(err);
        memset(&msg, 0, sizeof(msg));
        msg.msg_iov = &iov;
        msg.msg_iovlen = 1;
        msg.msg_control = cbuf;
        msg.msg_controllen = sizeof(cbuf);
        n = recvmsg(rp[0], &msg, MSG_CMSG_CLOEXEC);
        if (n == (ssize_t)sizeof(err)) {
            for (c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
                if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS &&
                    c->cmsg_len == CMSG_LEN(sizeof(int))) {
                    memcpy(&fd, CMSG_DATA(c), sizeof(int));
                }
            }
        } else {
            err = EIO;
        }
    } else {
        err = EACCES;           /* the helper does not answer */
    }
    close(rp[0]);
    if (fd >= 0 && err == 0) {
        return fd;
    }
    if (fd >= 0) {
        close(fd);
    }
    errno = err ? err : EIO;
    return -1;
}

static int open_syscall(uint32_t tid)
{
    char path[64];
    int fd;

    snprintf(path, sizeof(path), "/proc/self/task/%u/syscall", tid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) >= 0) {
        return fd;
    }
    if (errno == ENOENT) {
        errno = ESRCH;
        return -1;
    }
    if (errno != EACCES) {
        return -1;
    }
    return ask_helper(tid);
}

static void forget_all(void)
{
    size_t i;

    for (i = 0; i < nfds; i++) {
        close(fds[i].fd);
    }
    nfds = 0;
}

static entry *find(uint32_t tid)
{
    size_t i;

    for (i = 0; i < nfds; i++) {
        if (fds[i].tid == tid) {
            return &fds[i];
        }
    }
    return NULL;
}

int pp_sysfd_read(uint32_t tid, char *buf, size_t len)
{
    entry *e;
    int attempt;

    if (len < 2) {
        errno = EINVAL;
        return -1;
    }
    if (fds_pid != getpid()) {
        forget_all();           /* a fork: those were the parent's threads */
        fds_pid = getpid();
    }
    for (attempt = 0; attempt < 2; attempt++) {
        ssize_t n;
        if (!(e = find(tid))) {
            int fd = open_syscall(tid);
            if (fd < 0) {
                return -1;
            }
            if (nfds == capfds) {
                size_t ncap = capfds ? capfds * 2 : 64;
                entry *ne = realloc(fds, ncap * sizeof(*ne));
                if (!ne) {
                    close(fd);
                    errno = ENOMEM;
                    return -1;
                }
                fds = ne;
                capfds = ncap;
            }
            e = &fds[nfds++];
            e->tid = tid;
            e->fd = fd;
        }
        do {
            n = pread(e->fd, buf, len - 1, 0);
        } while (n < 0 && errno == EINTR);
        if (n > 0) {
            buf[n] = '\0';
            return (int)n;
        }
        /* The thread this descriptor was opened for is gone (its tid may be another
         * thread's now): open it again, once. */
        close(e->fd);
        *e = fds[--nfds];
        if (n == 0) {
            errno = ESRCH;
        }
    }
    return -1;
}

void pp_sysfd_retain(const uint32_t *tids, size_t n)
{
    size_t i, j;

    if (fds_pid != getpid()) {
        forget_all();
        fds_pid = getpid();
        return;
    }
    for (i = 0, j = 0; i < nfds; i++) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = (lo + hi) / 2;
            if (tids[mid] < fds[i].tid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < n && tids[lo] == fds[i].tid) {
            fds[j++] = fds[i];
        } else {
            close(fds[i].fd);
        }
    }
    nfds = j;
}

/* Unloaded (httpd unloads its modules at each restart): let this generation's helper end. */
__attribute__((destructor)) static void close_helper(void)
{
    if (helper_fd >= 0) {
        close(helper_fd);
        helper_fd = -1;
    }
}
