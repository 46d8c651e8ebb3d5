#include "pp_tasks.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SELF_TASKS "/proc/self/task"

/* A tid as the kernel names it: 1..PP_TASKS_TID_MAX in decimal, no sign, no leading
 * zero. 0 for anything else. */
static uint32_t parse_tid(const char *s)
{
    uint32_t v = 0;
    size_t i;

    if (s[0] < '1' || s[0] > '9') {
        return 0;
    }
    for (i = 0; s[i]; i++) {
        /* PP_TASKS_TID_MAX has 7 digits: an 8th means too large (and no overflow). */
        if (s[i] < '0' || s[i] > '9' || i >= 7) {
            return 0;
        }
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    return v <= PP_TASKS_TID_MAX ? v : 0;
}

static int by_value(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;

    return x < y ? -1 : x > y;
}

int pp_tasks_list(const char *dir, uint32_t **out, size_t *outn)
{
    DIR *d = opendir(dir ? dir : SELF_TASKS);
    struct dirent *de;
    uint32_t *tids = NULL;
    size_t n = 0, cap = 0, i, j;

    if (!d) {
        return -1;
    }
    for (;;) {
        uint32_t tid;
        errno = 0;
        if (!(de = readdir(d))) {
            break;
        }
        if (!(tid = parse_tid(de->d_name))) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            uint32_t *nt = realloc(tids, ncap * sizeof(*nt));
            if (!nt) {
                free(tids);
                closedir(d);
                errno = ENOMEM;
                return -1;
            }
            tids = nt;
            cap = ncap;
        }
        tids[n++] = tid;
    }
    if (errno != 0) {
        int err = errno;
        free(tids);
        closedir(d);
        errno = err;
        return -1;
    }
    closedir(d);
    /* Ascending, each once: a directory that changes while it is read may list an entry
     * twice. An empty directory leaves tids NULL, which qsort must not be given. */
    if (n > 1) {
        qsort(tids, n, sizeof(*tids), by_value);
    }
    for (i = 0, j = 0; i < n; i++) {
        if (j == 0 || tids[j - 1] != tids[i]) {
            tids[j++] = tids[i];
        }
    }
    if (j == 0) {
        free(tids);
        tids = NULL;
    }
    *out = tids;
    *outn = j;
    return 0;
}

/* Read up to len - 1 bytes of dir/TID/file into buf, NUL-terminated; the count, or -1. */
static ssize_t read_task_file(const char *dir, uint32_t tid, const char *file, char *buf,
                              size_t len)
{
    char path[4096];
    int fd, w;
    ssize_t n;

    w = snprintf(path, sizeof(path), "%s/%u/%s", dir ? dir : SELF_TASKS, tid, file);
    if (w < 0 || (size_t)w >= sizeof(path) || len == 0) {
        return -1;
    }
    if ((fd = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
        return -1;
    }
    do {
        n = read(fd, buf, len - 1);
    } while (n < 0 && errno == EINTR);
    close(fd);
    buf[n > 0 ? n : 0] = '\0';
    return n;
}

char pp_tasks_parse_state(const char *stat, size_t len)
{
    const char *p = NULL;
    size_t i;

    for (i = 0; i < len; i++) {
        if (stat[i] == ')') {
            p = stat + i;
        }
    }
    if (!p || (size_t)(p - stat) + 2 >= len || p[1] != ' ' || p[2] == ' ' || p[2] == '\n' ||
        p[2] == '\0') {
        return '?';
    }
    return p[2];
}

char pp_tasks_state(const char *dir, uint32_t tid)
{
    /* The state is near the start: "TID (NAME) S", NAME at most 64 bytes even for the
     * kernel's own threads. Nothing after NAME holds a ')', so a cut line is fine. */
    char buf[256];
    ssize_t n = read_task_file(dir, tid, "stat", buf, sizeof(buf));

    return n > 0 ? pp_tasks_parse_state(buf, (size_t)n) : '?';
}

int pp_tasks_comm(const char *dir, uint32_t tid, char *buf, size_t len)
{
    ssize_t n;

    if (len == 0) {
        return -1;
    }
    if ((n = read_task_file(dir, tid, "comm", buf, len)) < 0) {
        buf[0] = '\0';
        return -1;
    }
    if (n > 0 && buf[n - 1] == '\n') {
        buf[n - 1] = '\0';
    }
    return 0;
}

int pp_tasks_sig_pending(const char *dir, uint32_t tid, int sig)
{
    /* SigPnd sits about 1 KiB into the file, which is about 1.5 KiB long. */
    char buf[4096];
    const char *p;
    uint64_t mask = 0;
    int digits = 0;

    if (sig < 1 || sig > 64 || read_task_file(dir, tid, "status", buf, sizeof(buf)) <= 0) {
        return -1;
    }
    if (strncmp(buf, "SigPnd:", 7) == 0) {
        p = buf;
    } else if ((p = strstr(buf, "\nSigPnd:"))) {
        p++;
    } else {
        return -1;
    }
    for (p += 7; *p == ' ' || *p == '\t'; p++) {
    }
    /* 16 hex digits: bit sig - 1 stands for sig. */
    for (; digits < 16; p++, digits++) {
        int v;
        if (*p >= '0' && *p <= '9') {
            v = *p - '0';
        } else if (*p >= 'a' && *p <= 'f') {
            v = *p - 'a' + 10;
        } else if (*p >= 'A' && *p <= 'F') {
            v = *p - 'A' + 10;
        } else {
            break;
        }
        mask = mask << 4 | (uint64_t)v;
    }
    if (digits == 0 || (*p != '\n' && *p != '\0')) {
        return -1;
    }
    return (int)(mask >> (sig - 1) & 1);
}

/* One number of a syscall file at *p (decimal, or hex after 0x), then one space or the
 * end of the line. */
static int syscall_field(const char **p, const char *end, int hex, uint64_t *v, int last)
{
    const char *s = *p;
    int neg = 0, digits = 0;
    uint64_t x = 0;

    if (!hex && s < end && *s == '-') {
        neg = 1;
        s++;
    }
    if (hex) {
        if (end - s < 2 || s[0] != '0' || s[1] != 'x') {
            return -1;
        }
        s += 2;
    }
    for (; s < end && digits < 17; s++, digits++) {
        int d;
        if (*s >= '0' && *s <= '9') {
            d = *s - '0';
        } else if (hex && *s >= 'a' && *s <= 'f') {
            d = *s - 'a' + 10;
        } else {
            break;
        }
        x = x * (hex ? 16u : 10u) + (uint64_t)d;
    }
    if (digits == 0 || digits > 16) {
        return -1;
    }
    if (last ? (s < end && !(*s == '\n' && s + 1 == end)) : (s >= end || *s != ' ')) {
        return -1;
    }
    *p = last ? end : s + 1;
    *v = neg ? (uint64_t)-(int64_t)x : x;
    return 0;
}

int pp_tasks_parse_syscall(const char *text, size_t len, pp_tasks_syscall *out)
{
    const char *p = text, *end = text + len;
    uint64_t nr;
    int i;

    memset(out, 0, sizeof(*out));
    if ((len == 7 || len == 8) && memcmp(text, "running", 7) == 0 &&
        (len == 7 || text[7] == '\n')) {
        out->running = 1;
        return 0;
    }
    if (syscall_field(&p, end, 0, &nr, 0) != 0) {
        return -1;
    }
    out->nr = (long)(int64_t)nr;
    if (out->nr < -1 || (out->nr == -1 && nr != (uint64_t)-1)) {
        return -1;
    }
    if (out->nr >= 0) {
        for (i = 0; i < 6; i++) {
            if (syscall_field(&p, end, 1, &out->args[i], 0) != 0) {
                return -1;
            }
        }
    }
    if (syscall_field(&p, end, 1, &out->sp, 0) != 0 ||
        syscall_field(&p, end, 1, &out->pc, 1) != 0) {
        return -1;
    }
    return 0;
}

static int status_count(const char *buf, const char *key, uint64_t *v)
{
    /* At the start of a line: "voluntary_..." is also the tail of "nonvoluntary_...". */
    size_t k = strlen(key);
    const char *p;
    char line[64];
    int digits = 0;

    if (strncmp(buf, key, k) == 0) {
        p = buf + k;
    } else {
        snprintf(line, sizeof(line), "\n%s", key);
        if (!(p = strstr(buf, line))) {
            return -1;
        }
        p += 1 + k;
    }
    for (; *p == ' ' || *p == '\t'; p++) {
    }
    for (*v = 0; *p >= '0' && *p <= '9' && digits < 20; p++, digits++) {
        *v = *v * 10 + (uint64_t)(*p - '0');
    }
    return digits > 0 && (*p == '\n' || *p == '\0') ? 0 : -1;
}

int pp_tasks_switches(const char *dir, uint32_t tid, uint64_t *out)
{
    /* The two lines end the file, about 1.5 KiB in (more with many CPUs: the allowed
     * lists grow), so read it whole. */
    char buf[8192];
    uint64_t vol, nonvol;

    if (read_task_file(dir, tid, "status", buf, sizeof(buf)) <= 0 ||
        status_count(buf, "voluntary_ctxt_switches:", &vol) != 0 ||
        status_count(buf, "nonvoluntary_ctxt_switches:", &nonvol) != 0) {
        return -1;
    }
    *out = vol + nonvol;
    return 0;
}
