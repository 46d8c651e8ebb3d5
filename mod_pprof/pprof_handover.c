#include "pprof_handover.h"
#include "pprof_ipc.h"
#include "pprof_kind.h"
#include "pprof_reply.h"

#include "http_log.h"
#include "apr_strings.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

APLOG_USE_MODULE(pprof);

#define OPEN ".hand"
#define SEALED ".closed"

struct pprof_handover {
    apr_pool_t *pool;
    char *dir;                  /* "...OPEN" until sealed, then "...SEALED" */
};

/* A hand-over directory's name: "<kind>-<gen>-<stamp>-<collector pid><suffix>". */
typedef struct {
    char kind[32];
    apr_uint32_t gen;
    apr_int64_t stamp;
    long collector;
    int sealed;
} dir_name;

static int parse_name(const char *name, dir_name *d)
{
    const char *dash = strchr(name, '-');
    char *end;
    unsigned long long v;

    if (!dash || dash == name || (size_t)(dash - name) >= sizeof(d->kind)) {
        return -1;
    }
    memcpy(d->kind, name, (size_t)(dash - name));
    d->kind[dash - name] = '\0';
    errno = 0;
    v = strtoull(dash + 1, &end, 10);
    if (errno || *end != '-' || v > 0xffffffffu) {
        return -1;
    }
    d->gen = (apr_uint32_t)v;
    v = strtoull(end + 1, &end, 10);
    if (errno || *end != '-' || v > (unsigned long long)APR_INT64_MAX) {
        return -1;
    }
    d->stamp = (apr_int64_t)v;
    d->collector = strtol(end + 1, &end, 10);
    if (errno || d->collector <= 0) {
        return -1;
    }
    if (strcmp(end, OPEN) == 0) {
        d->sealed = 0;
    } else if (strcmp(end, SEALED) == 0) {
        d->sealed = 1;
    } else {
        return -1;
    }
    return 0;
}

static int is_pid(const char *name, pid_t *pid)
{
    char *end;
    long v;

    if (*name < '1' || *name > '9') {
        return 0;
    }
    errno = 0;
    v = strtol(name, &end, 10);
    if (errno || *end || v <= 0 || v > INT_MAX) {
        return 0;
    }
    *pid = (pid_t)v;
    return 1;
}

/* A directory and every file in it (hand-overs hold no subdirectories). */
static void remove_tree(const char *dir)
{
    char path[PATH_MAX];
    struct dirent *e;
    DIR *d = opendir(dir);

    if (d) {
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0 &&
                (size_t)apr_snprintf(path, sizeof(path), "%s/%s", dir, e->d_name) <
                    sizeof(path) - 1) {
                unlink(path);
            }
        }
        closedir(d);
    }
    rmdir(dir);
}

static apr_status_t cleanup_handover(void *data)
{
    pprof_handover *h = data;

    if (h->dir) {
        remove_tree(h->dir);
        h->dir = NULL;
    }
    return APR_SUCCESS;
}

/* Hand-over directories of kind (of every kind when kind is NULL) whose collector is
 * gone, or all of them (all): nobody will read them. */
static void sweep(const char *kind, int all)
{
    const char *base = pprof_ipc_dir();
    char path[PATH_MAX];
    struct dirent *e;
    dir_name dn;
    DIR *d;

    if (!base || !(d = opendir(base))) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        if (parse_name(e->d_name, &dn) != 0 || (kind && strcmp(dn.kind, kind) != 0)) {
            continue;
        }
        if (!all && (kill((pid_t)dn.collector, 0) == 0 || errno != ESRCH)) {
            continue;
        }
        if ((size_t)apr_snprintf(path, sizeof(path), "%s/%s", base, e->d_name) <
            sizeof(path) - 1) {
            remove_tree(path);
        }
    }
    closedir(d);
}

void pprof_handover_sweep(apr_pool_t *p)
{
    sweep(NULL, 0);
}

pprof_handover *pprof_handover_open(apr_pool_t *p, const char *kind, apr_uint32_t gen,
                                    apr_int64_t stamp)
{
    const char *base = pprof_ipc_dir();
    pprof_handover *h;

    if (!base) {
        return NULL;
    }
    sweep(kind, 0);
    h = apr_pcalloc(p, sizeof(*h));
    h->pool = p;
    h->dir = apr_psprintf(p, "%s/%s-%u-%" APR_INT64_T_FMT "-%ld" OPEN, base, kind, gen,
                          stamp, (long)getpid());
    if (mkdir(h->dir, 0700) != 0) {
        /* EEXIST: this very collector's, left by a request that did not end cleanly. */
        int exists = errno == EEXIST;
        if (exists) {
            remove_tree(h->dir);
        }
        if (!exists || mkdir(h->dir, 0700) != 0) {
            ap_log_perror(APLOG_MARK, APLOG_WARNING, errno, p, "PP0060: cannot make %s: "
                          "children that end during this window take their data with them",
                          h->dir);
            return NULL;
        }
    }
    /* Whatever way the request ends, the directory goes with it. */
    apr_pool_cleanup_register(p, h, cleanup_handover, apr_pool_cleanup_null);
    return h;
}

static int read_full(int fd, void *buf, size_t len)
{
    char *p = buf;

    while (len > 0) {
        ssize_t n = read(fd, p, len);
        if (n > 0) {
            p += n;
            len -= (size_t)n;
        } else if (n < 0 && errno == EINTR) {
            continue;
        } else {
            return -1;
        }
    }
    return 0;
}

int pprof_handover_read(pprof_handover *h, pid_t pid, unsigned char **body, apr_size_t *len)
{
    char path[PATH_MAX];
    unsigned char head[PP_WIRE_FRAME];
    struct stat st;
    unsigned char *buf = NULL;
    long n = -1;
    int fd, rc = -1;

    if (!h || !h->dir ||
        (size_t)apr_snprintf(path, sizeof(path), "%s/%ld", h->dir, (long)pid) >=
            sizeof(path) - 1 ||
        (fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return -1;
    }
    /* A child wrote it, and it is read as a child's reply is: bounded first. */
    if (fstat(fd, &st) == 0 && read_full(fd, head, sizeof(head)) == 0 &&
        (n = pp_wire_frame_length(head, PPROF_HANDOVER_MAX)) >= 0 &&
        st.st_size == (off_t)(PP_WIRE_FRAME + n) && (buf = malloc((size_t)n + 1)) != NULL &&
        read_full(fd, buf, (size_t)n) == 0) {
        *body = buf;
        *len = (apr_size_t)n;
        rc = 0;
    } else {
        free(buf);
        ap_log_perror(APLOG_MARK, APLOG_WARNING, 0, h->pool,
                      "PP0061: the hand-over %s is unreadable: removed", path);
    }
    close(fd);
    unlink(path);
    return rc;
}

apr_array_header_t *pprof_handover_pids(pprof_handover *h, apr_pool_t *p)
{
    apr_array_header_t *pids = apr_array_make(p, 8, sizeof(pid_t));
    struct dirent *e;
    pid_t pid;
    DIR *d;

    if (!h || !h->dir || !(d = opendir(h->dir))) {
        return pids;
    }
    while ((e = readdir(d)) != NULL) {
        if (is_pid(e->d_name, &pid)) {      /* a whole file: "<pid>.tmp" is being written */
            APR_ARRAY_PUSH(pids, pid_t) = pid;
        }
    }
    closedir(d);
    return pids;
}

void pprof_handover_seal(pprof_handover *h)
{
    char *sealed;
    size_t n;

    if (!h || !h->dir || (n = strlen(h->dir)) < sizeof(OPEN) ||
        strcmp(h->dir + n - (sizeof(OPEN) - 1), OPEN) != 0) {
        return;
    }
    sealed = apr_pstrcat(h->pool, apr_pstrndup(h->pool, h->dir, n - (sizeof(OPEN) - 1)),
                         SEALED, NULL);
    /* A child finds directories by name: from now on it finds none. One that found it
     * before either renamed its reply in already (it is read), or its rename by the old
     * name fails (what it wrote is removed with the directory). */
    if (rename(h->dir, sealed) == 0) {
        h->dir = sealed;
    }
}

void pprof_handover_remove(pprof_handover *h)
{
    if (h) {
        apr_pool_cleanup_run(h->pool, h, cleanup_handover);
    }
}

/* --- a child that ends ------------------------------------------------------------------- */

apr_array_header_t *pprof_handover_find(apr_pool_t *p, const char *kind, apr_uint32_t gen,
                                        apr_int64_t stamp)
{
    apr_array_header_t *dirs = apr_array_make(p, 2, sizeof(const char *));
    const char *base = pprof_ipc_dir();
    struct dirent *e;
    dir_name dn;
    DIR *d;

    if (!base || !(d = opendir(base))) {
        return dirs;
    }
    while ((e = readdir(d)) != NULL) {
        if (parse_name(e->d_name, &dn) != 0 || dn.sealed || strcmp(dn.kind, kind) != 0 ||
            dn.gen != gen || (gen && dn.stamp != stamp)) {
            continue;
        }
        APR_ARRAY_PUSH(dirs, const char *) = apr_pstrcat(p, base, "/", e->d_name, NULL);
    }
    closedir(d);
    return dirs;
}

/* The bytes an element of a repeated message field takes in its parent: tag (fields
 * 1-15: one byte), length, message. */
static size_t field_size(const void *msg)
{
    size_t n = protobuf_c_message_get_packed_size(msg), len = 1;

    while ((n >> (7 * len)) != 0 && len < 5) {
        len++;
    }
    return 1 + len + n;
}

/* Drop elements from the end of one repeated field until the reply fits budget. */
static void cut_tail(size_t *n, void **items, size_t *total, size_t budget,
                     apr_uint64_t *parts, apr_uint64_t *bytes)
{
    while (*total > budget && *n > 0) {
        size_t sz = field_size(items[*n - 1]);
        (*n)--;
        *total -= sz < *total ? sz : *total;
        (*parts)++;
        *bytes += sz;
    }
}

int pprof_handover_leave(apr_pool_t *p, const apr_array_header_t *dirs, pp_wire_reply *reply)
{
    /* Room for the two counters this may add. */
    size_t budget = PPROF_HANDOVER_MAX - PP_WIRE_FRAME - 128, total;
    apr_uint64_t parts = 0, bytes = 0;
    pprof_out out;
    unsigned char *frame = NULL;
    size_t len = 0;
    pid_t self = getpid();
    int i, written = 0;

    if (!dirs->nelts) {
        return 0;
    }
    total = ppwire__reply__get_packed_size(reply);
    if (total > budget) {
        /* What grows with the window goes first: the trace's records and samples, then
         * stacks and threads. Mappings and counters name what stays. */
        cut_tail(&reply->n_sections, (void **)reply->sections, &total, budget, &parts, &bytes);
        cut_tail(&reply->n_samples, (void **)reply->samples, &total, budget, &parts, &bytes);
        cut_tail(&reply->n_stacks, (void **)reply->stacks, &total, budget, &parts, &bytes);
        cut_tail(&reply->n_threads, (void **)reply->threads, &total, budget, &parts, &bytes);
        out.pool = p;
        out.reply = reply;
        pprof_out_counter(&out, "handover_cut", (apr_int64_t)parts);
        pprof_out_counter(&out, "handover_cut_bytes", (apr_int64_t)bytes);
    }
    if (pp_wire_pack_reply(reply, &frame, &len) != 0 || len > PPROF_HANDOVER_MAX) {
        ap_log_perror(APLOG_MARK, APLOG_WARNING, 0, p, "PP0062: a reply of %" APR_SIZE_T_FMT
                      " bytes cannot be handed over", total);
        free(frame);
        return 0;
    }
    for (i = 0; i < dirs->nelts; i++) {
        const char *dir = APR_ARRAY_IDX(dirs, i, const char *);
        char tmp[PATH_MAX], path[PATH_MAX];
        size_t off = 0;
        int fd, ok;

        if ((size_t)apr_snprintf(tmp, sizeof(tmp), "%s/%ld.tmp", dir, (long)self) >=
                sizeof(tmp) - 1 ||
            (size_t)apr_snprintf(path, sizeof(path), "%s/%ld", dir, (long)self) >=
                sizeof(path) - 1 ||
            (fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600)) < 0) {
            continue;           /* sealed meanwhile: nobody reads it any more */
        }
        while (off < len) {
            ssize_t n = write(fd, frame + off, len - off);
            if (n > 0) {
                off += (size_t)n;
            } else if (n < 0 && errno == EINTR) {
                continue;
            } else {
                break;
            }
        }
        ok = off == len;
        if (close(fd) != 0) {
            ok = 0;
        }
        if (ok && rename(tmp, path) == 0) {
            written++;
        } else {
            unlink(tmp);
        }
    }
    free(frame);
    return written;
}
