/* libFuzzer target: /proc/PID/maps text (core/pp_maps.c), as a collector gets it from a
 * child. Checks what the parser promises (executable file or [vdso] mappings, paths
 * owned and whole) and that pp_maps_read_text, which keeps only the lines the parser
 * keeps, gives text that parses to the very same entries. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_maps.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check(const pp_maps *m)
{
    size_t i, n = pp_maps_count(m);

    for (i = 0; i < n; i++) {
        const pp_map_entry *e = pp_maps_get(m, i);
        /* Kept: executable file mappings, the vDSO, and interpreter records
         * ("[pp-interp] ...", pp_interp's pseudo-mappings). */
        if (!e || !e->path || (e->path[0] != '/' && strcmp(e->path, "[vdso]") != 0 &&
                               strncmp(e->path, "[pp-interp] ", 12) != 0)) {
            fprintf(stderr, "entry %zu is no executable file mapping\n", i);
            abort();
        }
        (void)pp_maps_find(m, e->start);
        (void)pp_maps_find(m, e->end - 1);
    }
    if (pp_maps_get(m, n) != NULL) {
        abort();
    }
}

static int same(const pp_maps *a, const pp_maps *b)
{
    size_t i;

    if (pp_maps_count(a) != pp_maps_count(b)) {
        return 0;
    }
    for (i = 0; i < pp_maps_count(a); i++) {
        const pp_map_entry *x = pp_maps_get(a, i), *y = pp_maps_get(b, i);
        if (x->start != y->start || x->end != y->end || x->offset != y->offset ||
            strcmp(x->path, y->path) != 0) {
            return 0;
        }
    }
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    pp_maps *m = pp_maps_parse((const char *)data, size), *m2;
    char path[64], *text = NULL;
    size_t len = 0;
    int fd;

    if (!m) {
        return 0;               /* out of memory only */
    }
    check(m);
    /* The same bytes as a file, through pp_maps_read_text and back. */
    fd = memfd_create("maps", MFD_CLOEXEC);
    if (fd >= 0 && write(fd, data, size) == (ssize_t)size) {
        snprintf(path, sizeof(path), "/proc/self/fd/%d", fd);
        if (pp_maps_read_text(path, &text, &len) == 0) {
            if (!(m2 = pp_maps_parse(text, len))) {
                abort();
            }
            check(m2);
            if (!same(m, m2)) {
                fprintf(stderr, "pp_maps_read_text's text parses to other entries\n");
                abort();
            }
            pp_maps_free(m2);
            free(text);
        }
    }
    if (fd >= 0) {
        close(fd);
    }
    pp_maps_free(m);
    return 0;
}
