/* The symbolizer: names code by (object path, file offset), so that it works for PCs
 * from any process that maps the same file. Function names come from the ELF symbol
 * table (.symtab, else .dynsym, else a separate debug file); file:line and inlined calls
 * come from DWARF where the object (or its debug file) has it. Backed by elfutils' libdw,
 * which reads both, finds /usr/lib/debug files by build id, and is a Debian package.
 *
 * Not thread-safe: one caller at a time (mod_pprof serializes with a mutex). Never use it
 * from a signal handler. Objects are opened once and cached until pp_symbolizer_free. */
#ifndef PP_SYMBOLIZE_H
#define PP_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

typedef struct pp_symbolizer pp_symbolizer;

typedef struct {
    const char *function;       /* NULL when unknown; owned by the symbolizer */
    const char *file;           /* NULL without DWARF */
    int line;                   /* 0 without DWARF */
    int start_line;             /* the function's declaration line, 0 when unknown */
    uint64_t offset;            /* from the start of the symbol (Go's PC - Entry) */
} pp_frame;

pp_symbolizer *pp_symbolizer_new(void);
void pp_symbolizer_free(pp_symbolizer *s);

/* The frames at file_offset of path, innermost inlined call first: fills up to max and
 * returns how many (0: no symbol covers it, or the object cannot be read). A path of an
 * interpreter frame's pseudo-mapping (pp_interp.h) is that one frame: its function, its
 * script file (NULL for a built-in) and the line the offset encodes. */
int pp_symbolize(pp_symbolizer *s, const char *path, uint64_t file_offset,
                 pp_frame *frames, int max);

/* The object's GNU build id as lowercase hex, or NULL. Owned by the symbolizer. */
const char *pp_symbolizer_build_id(pp_symbolizer *s, const char *path);

/* 1 if the object has DWARF line information (its own or a debug file's). */
int pp_symbolizer_has_lines(pp_symbolizer *s, const char *path);

#endif
