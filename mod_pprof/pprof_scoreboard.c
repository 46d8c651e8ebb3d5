#include "pprof_scoreboard.h"
#include "pprof_ipc.h"

#include "ap_mpm.h"
#include "scoreboard.h"

#include "pp_tcreate.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

static int child_num = -1;      /* our process row, -1 until found */
static int threaded;
static int nslots;
static apr_uint32_t *slot_tid;  /* by slot: written by the slot's own thread, or learnt */

/* This thread's slot: -2 until looked up. */
static __thread int tls_slot __attribute__((tls_model("initial-exec"))) = -2;

/* Our process row. Prefork's parent writes our pid there only after the fork, so a child
 * may look before it is there: look again until found. */
static int find_child_num(void)
{
    int limit = 0, i;

    if (child_num >= 0 || !ap_scoreboard_image ||
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) != APR_SUCCESS) {
        return child_num;
    }
    for (i = 0; i < limit; i++) {
        process_score *ps = ap_get_scoreboard_process(i);
        if (ps && ps->pid == getpid()) {
            child_num = i;
            break;
        }
    }
    return child_num;
}

void pprof_scoreboard_child_init(apr_pool_t *pchild)
{
    int is_threaded = 0, threads = 1;

    threaded = ap_mpm_query(AP_MPMQ_IS_THREADED, &is_threaded) == APR_SUCCESS &&
               is_threaded != AP_MPMQ_NOT_SUPPORTED;
    child_num = -1;
    if (ap_scoreboard_image) {
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_THREADS, &threads);
        nslots = threads > 0 ? threads : 1;
        slot_tid = apr_pcalloc(pchild, (apr_size_t)nslots * sizeof(*slot_tid));
        find_child_num();
    }
}

int pprof_is_child(pid_t pid, pid_t parent)
{
    char path[64], buf[512], state;
    const char *rp;
    long ppid;
    ssize_t n;
    int fd;

    if (pid <= 0) {
        return 0;
    }
    snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return errno == ENOENT ? 0 : -1;
    }
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0) {
        return n == 0 || errno == ESRCH ? 0 : -1;
    }
    buf[n] = '\0';
    /* "pid (comm) state ppid ...": comm may hold anything, so from its last ')'. */
    if (!(rp = strrchr(buf, ')')) || sscanf(rp + 1, " %c %ld", &state, &ppid) != 2) {
        return -1;
    }
    return state != 'Z' && state != 'X' && (pid_t)ppid == parent;
}

static int listed(const apr_array_header_t *pids, pid_t pid)
{
    int i;

    for (i = 0; i < pids->nelts; i++) {
        if (APR_ARRAY_IDX(pids, i, pid_t) == pid) {
            return 1;
        }
    }
    return 0;
}

/* Children of our parent whose agents listen, the scoreboard naming them or not. */
static void add_unlisted(apr_array_header_t *pids, pid_t only)
{
    const char *dir = pprof_ipc_dir();
    pid_t parent = getppid();
    struct dirent *e;
    DIR *d;

    if (!dir || !(d = opendir(dir))) {
        return;
    }
    while ((e = readdir(d)) != NULL) {
        char *end;
        long pid = strtol(e->d_name, &end, 10);
        if (pid > 0 && strcmp(end, ".sock") == 0 && (!only || pid == only) &&
            !listed(pids, (pid_t)pid) && pprof_is_child((pid_t)pid, parent) == 1) {
            APR_ARRAY_PUSH(pids, pid_t) = (pid_t)pid;
        }
    }
    closedir(d);
}

/* The live children the scoreboard names that pids lacks (of only `only` when non-zero),
 * added: one system call per child added. Whether this process is among those added. */
static int add_scored(apr_array_header_t *pids, pid_t only)
{
    pid_t self = getpid();
    int limit = 0, i, have_self = 0;

    if (!ap_scoreboard_image ||
        ap_mpm_query(AP_MPMQ_HARD_LIMIT_DAEMONS, &limit) != APR_SUCCESS) {
        return 0;
    }
    for (i = 0; i < limit; i++) {
        process_score *ps = ap_get_scoreboard_process(i);
        pid_t pid = ps ? ps->pid : 0;
        if (pid <= 0 || (only && pid != only) || listed(pids, pid) || kill(pid, 0) != 0) {
            continue;
        }
        have_self |= pid == self;
        APR_ARRAY_PUSH(pids, pid_t) = pid;
    }
    return have_self;
}

apr_array_header_t *pprof_children(apr_pool_t *p, pid_t only)
{
    apr_array_header_t *pids = apr_array_make(p, 16, sizeof(pid_t));
    pid_t self = getpid();

    if (!add_scored(pids, only) && (!only || only == self)) {
        APR_ARRAY_PUSH(pids, pid_t) = self;
    }
    add_unlisted(pids, only);
    return pids;
}

void pprof_children_add_new(apr_array_header_t *pids, pid_t only)
{
    add_scored(pids, only);
}

int pprof_slots(void)
{
    return nslots;
}

int pprof_threaded(void)
{
    return threaded;
}

int pprof_slot_self(void)
{
    int i;

    if (tls_slot != -2 || !slot_tid || find_child_num() < 0) {
        return tls_slot >= 0 ? tls_slot : -1;
    }
    if (!threaded) {
        tls_slot = 0;
    } else {
        pthread_t me = pthread_self();
        tls_slot = -1;
        for (i = 0; i < nslots; i++) {
            worker_score *ws = ap_get_scoreboard_worker_from_indexes(child_num, i);
            if (ws && pthread_equal((pthread_t)ws->tid, me)) {
                tls_slot = i;
                break;
            }
        }
    }
    if (tls_slot >= 0) {
        slot_tid[tls_slot] = (apr_uint32_t)syscall(SYS_gettid);
    }
    return tls_slot;
}

apr_uint32_t pprof_slot_tid(int slot)
{
    return slot_tid && slot >= 0 && slot < nslots ? slot_tid[slot] : 0;
}

int pprof_slot_is_worker(apr_uint32_t tid, apr_uint64_t pthread)
{
    int j;

    if (!threaded) {
        return tid == (apr_uint32_t)getpid();
    }
    for (j = 0; j < nslots && find_child_num() >= 0 && pthread; j++) {
        worker_score *ws = ap_get_scoreboard_worker_from_indexes(child_num, j);
        if (ws && (apr_uint64_t)ws->tid == pthread) {
            return 1;
        }
    }
    return 0;
}

/* The kernel id of the thread in slot j. A thread that has served nothing since the child
 * started has not told it yet: pthread_create's hook knows it by the pthread the
 * scoreboard holds, and prefork's worker is the child's main thread. 0 if not known. */
static apr_uint32_t learn_tid(int j, const worker_score *ws)
{
    if (!slot_tid[j]) {
        if (!threaded) {
            slot_tid[j] = (apr_uint32_t)getpid();
        } else if (ws->tid) {
            slot_tid[j] = pp_tcreate_tid((uint64_t)ws->tid);
        }
    }
    return slot_tid[j];
}

apr_array_header_t *pprof_slot_states(apr_pool_t *p)
{
    apr_array_header_t *out = apr_array_make(p, nslots > 0 ? nslots : 1, sizeof(pprof_slot_state));
    int j;

    for (j = 0; j < nslots && find_child_num() >= 0; j++) {
        worker_score *ws = ap_get_scoreboard_worker_from_indexes(child_num, j);
        pprof_slot_state *st;
        if (!ws || ws->status == SERVER_DEAD || (threaded && !ws->tid)) {
            continue;
        }
        st = apr_array_push(out);
        st->slot = j;
        st->tid = learn_tid(j, ws);
        st->busy = ws->status != SERVER_READY && ws->status != SERVER_BUSY_KEEPALIVE &&
                   ws->status != SERVER_STARTING;
    }
    return out;
}
