#include "pp_maps.h"
#include "pp_interp.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

struct pp_maps {
    pp_map_entry *e;            /* sorted by start (the kernel lists them so) */
    size_t n;
};

void pp_maps_free(pp_maps *m)
{
    size_t i;

    if (!m) {
        return;
    }
    for (i = 0; i < m->n; i++) {
        free((char *)m->e[i].path);
    }
    free(m->e);
    free(m);
}

/* One line: "start-end perms offset dev inode   path". Returns 1 and fills e for an
 * executable file (or vdso) mapping, 0 for a line to skip. */
static int parse_line(const char *line, size_t len, pp_map_entry *e, const char **path,
                      size_t *pathlen)
{
    char buf[64], perms[8];
    unsigned long long start, end, off;
    unsigned long inode;
    int consumed = 0;
    size_t head = len < sizeof(buf) * 4 ? len : sizeof(buf) * 4;
    char tmp[sizeof(buf) * 4 + 1];
    const char *p;

    memcpy(tmp, line, head);
    tmp[head] = '\0';
    if (sscanf(tmp, "%llx-%llx %7s %llx %*s %lu %n", &start, &end, perms, &off, &inode,
               &consumed) < 5 || consumed == 0) {
        return 0;
    }
    if (strlen(perms) < 3 || perms[2] != 'x') {
        return 0;
    }
    p = line + consumed;
    while (p < line + len && *p == ' ') {
        p++;
    }
    *path = p;
    *pathlen = (size_t)(line + len - p);
    if (*pathlen == 0) {
        return 0;
    }
    if (**path != '/' && !(*pathlen == 6 && memcmp(*path, "[vdso]", 6) == 0) &&
        !(*pathlen > sizeof(PP_INTERP_PATH_PREFIX) - 1 &&
          memcmp(*path, PP_INTERP_PATH_PREFIX, sizeof(PP_INTERP_PATH_PREFIX) - 1) == 0)) {
        return 0;
    }
    e->start = start;
    e->end = end;
    e->offset = off;
    return 1;
}

pp_maps *pp_maps_parse(const char *text, size_t len)
{
    pp_maps *m = calloc(1, sizeof(*m));
    const char *p = text, *end = text + len;
    size_t cap = 0;

    if (!m) {
        return NULL;
    }
    while (p < end) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *path;
        size_t linelen = nl ? (size_t)(nl - p) : (size_t)(end - p), pathlen;
        pp_map_entry e;

        if (parse_line(p, linelen, &e, &path, &pathlen)) {
            char *copy;
            if (m->n == cap) {
                size_t ncap = cap ? cap * 2 : 32;
                pp_map_entry *ne = realloc(m->e, ncap * sizeof(*ne));
                if (!ne) {
                    goto fail;
                }
                m->e = ne;
                cap = ncap;
            }
            if (!(copy = strndup(path, pathlen))) {
                goto fail;
            }
            e.path = copy;
            m->e[m->n++] = e;
        }
        p += linelen + 1;
    }
    return m;
fail:
    pp_maps_free(m);
    return NULL;
}

static int by_start(const void *a, const void *b)
{
    const pp_map_entry *x = a, *y = b;

    return x->start < y->start ? -1 : x->start > y->start;
}

pp_maps *pp_maps_from_entries(const pp_map_entry *e, size_t n)
{
    pp_maps *m = calloc(1, sizeof(*m));
    size_t i;

    if (!m || (n && !(m->e = calloc(n, sizeof(*m->e))))) {
        free(m);
        return NULL;
    }
    for (i = 0; i < n; i++) {
        if (e[i].start >= e[i].end || !e[i].path || !*e[i].path) {
            continue;
        }
        m->e[m->n] = e[i];
        if (!(m->e[m->n].path = strdup(e[i].path))) {
            pp_maps_free(m);
            return NULL;
        }
        m->n++;
    }
    /* pp_maps_find searches by start. */
    if (m->n > 1) {
        qsort(m->e, m->n, sizeof(*m->e), by_start);
    }
    return m;
}

static int slurp(const char *path, char **out, size_t *outlen)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    size_t cap = 16384, n = 0;
    char *buf;

    if (fd < 0) {
        return -1;
    }
    if (!(buf = malloc(cap + 1))) {
        close(fd);
        return -1;
    }
    for (;;) {
        ssize_t r;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2 + 1);
            if (!nb) {
                free(buf);
                close(fd);
                return -1;
            }
            buf = nb;
            cap *= 2;
        }
        r = read(fd, buf + n, cap - n);
        if (r < 0 && errno == EINTR) {
            continue;
        }
        if (r < 0) {
            free(buf);
            close(fd);
            return -1;
        }
        if (r == 0) {
            break;
        }
        n += (size_t)r;
    }
    close(fd);
    buf[n] = '\0';
    *out = buf;
    *outlen = n;
    return 0;
}

/* The maps file; this process's own (path NULL) with its interpreter frames' records
 * after the kernel's lines (see pp_interp.h): every reader of a process's maps names its
 * synthetic PCs too. */
static int slurp_maps(const char *path, char **text, size_t *len)
{
    size_t cap;

    if (slurp(path ? path : "/proc/self/maps", text, len) != 0) {
        return -1;
    }
    cap = *len + 1;
    if (!path && pp_interp_maps_append(text, len, &cap) != 0) {
        free(*text);
        return -1;
    }
    return 0;
}

pp_maps *pp_maps_read(const char *path)
{
    char *text;
    size_t len;
    pp_maps *m;

    if (slurp_maps(path, &text, &len) != 0) {
        return NULL;
    }
    m = pp_maps_parse(text, len);
    free(text);
    return m;
}

int pp_maps_read_text(const char *path, char **out, size_t *outlen)
{
    char *text, *w;
    const char *p, *end;
    size_t len;

    if (slurp_maps(path, &text, &len) != 0) {
        return -1;
    }
    /* Keep only the lines pp_maps_parse would keep: maps of large servers are long. */
    w = text;
    for (p = text, end = text + len; p < end;) {
        const char *nl = memchr(p, '\n', (size_t)(end - p)), *path_;
        size_t linelen = nl ? (size_t)(nl - p) : (size_t)(end - p), pathlen;
        pp_map_entry e;
        if (parse_line(p, linelen, &e, &path_, &pathlen)) {
            memmove(w, p, linelen);
            w += linelen;
            *w++ = '\n';
        }
        p += linelen + 1;
    }
    *w = '\0';
    *out = text;
    *outlen = (size_t)(w - text);
    return 0;
}

size_t pp_maps_count(const pp_maps *m)
{
    return m->n;
}

const pp_map_entry *pp_maps_get(const pp_maps *m, size_t i)
{
    return i < m->n ? &m->e[i] : NULL;
}

const pp_map_entry *pp_maps_find(const pp_maps *m, uint64_t pc)
{
    size_t lo = 0, hi = m->n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (pc < m->e[mid].start) {
            hi = mid;
        } else if (pc >= m->e[mid].end) {
            lo = mid + 1;
        } else {
            return &m->e[mid];
        }
    }
    return NULL;
}
