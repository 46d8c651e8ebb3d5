/* A process's executable file mappings, as /proc/PID/maps lists them. Raw stacks cross
 * processes as PCs plus the text of their process's maps; this turns a PC into
 * (object path, file offset), which is the same for identical code in every process.
 * Not async-signal-safe. */
#ifndef PP_MAPS_H
#define PP_MAPS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

typedef struct {
    uint64_t start, end;        /* [start, end) in the process's address space */
    uint64_t offset;            /* file offset of start */
    const char *path;           /* owned by the pp_maps */
} pp_map_entry;

typedef struct pp_maps pp_maps;

/* Parse maps text (the format of /proc/PID/maps). Keeps executable mappings of regular
 * files; "[vdso]" is kept too so that its frames can be named, and so are the
 * pseudo-mappings of interpreter frames ("[pp-interp] ...", see pp_interp.h). NULL on out
 * of memory. */
pp_maps *pp_maps_parse(const char *text, size_t len);

/* A pp_maps of the n entries (paths copied), sorted by start, for maps that arrive as
 * entries (pp_wire) rather than text. Entries with start >= end or without a path are
 * left out. NULL on out of memory. */
pp_maps *pp_maps_from_entries(const pp_map_entry *e, size_t n);

/* Read and parse a maps file; path NULL means "/proc/self/maps" (the test seam), followed
 * by this process's interpreter frame records (pp_interp_maps_append). */
pp_maps *pp_maps_read(const char *path);

/* The executable lines of a maps file, as text for pp_maps_parse in another process.
 * *out is malloc'ed. path NULL: /proc/self/maps and this process's interpreter frame
 * records. */
int pp_maps_read_text(const char *path, char **out, size_t *outlen);

void pp_maps_free(pp_maps *m);

size_t pp_maps_count(const pp_maps *m);
const pp_map_entry *pp_maps_get(const pp_maps *m, size_t i);

/* The entry containing pc, or NULL. */
const pp_map_entry *pp_maps_find(const pp_maps *m, uint64_t pc);

#endif
