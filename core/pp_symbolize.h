/* The symbolizer: names code by (object path, file offset), so that it works for PCs
 * from any process that maps the same file. Function names come from the ELF symbol
 * table (.symtab, else .dynsym, else a separate debug file); file:line and inlined calls
 * come from DWARF where the object (or its debug file) has it. Backed by elfutils' libdw,
 * which reads both, finds /usr/lib/debug files by build id, and is a Debian package.
 *
 * Not thread-safe: one caller at a time (mod_pprof serializes with a mutex). Never use it
 * from a signal handler. Objects are opened once and cached until pp_symbolizer_free.
 * What each (object, offset) symbolized to is cached too: a busy server's stacks repeat
 * the same few thousand PCs, and a DWARF lookup costs tens of microseconds. That cache is
 * bounded (PP_SYMBOLIZE_CACHE_SITES sites); when full it starts over. */
#ifndef PP_SYMBOLIZE_H
#define PP_SYMBOLIZE_H

#include <stddef.h>
#include <stdint.h>

#include "pp_maps.h"

/* Sites remembered at most, and frames kept for each (the deepest inline chain any
 * caller may ask for: pp_symbolize with a larger max returns at most this many). */
#define PP_SYMBOLIZE_CACHE_SITES 16384
#define PP_SYMBOLIZE_MAX_FRAMES 16

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

/* For tests and benchmarks: every symbol lookup of s asks libdw, none is answered from the
 * symbol ranges s keeps (each object's symbols found so far, where that is exact; bounded
 * by PP_SYMBOLIZE_CACHE_SITES per object and by its symbol table). Call before the first
 * lookup. */
void pp_symbolizer_no_ranges(pp_symbolizer *s);

/* The frames at file_offset of path, innermost inlined call first: fills up to max (at
 * most PP_SYMBOLIZE_MAX_FRAMES) and returns how many (0: no symbol covers it, or the
 * object cannot be read). The strings are owned by the symbolizer and stay valid until
 * pp_symbolizer_free. A path of an interpreter frame's pseudo-mapping (pp_interp.h) is
 * that one frame: its function, its script file (NULL for a built-in) and the line the
 * offset encodes. */
int pp_symbolize(pp_symbolizer *s, const char *path, uint64_t file_offset,
                 pp_frame *frames, int max);

/* Where a PC of some process lies, as pp_symbolize_pc found it. */
typedef struct {
    uint64_t pc;                /* the address looked up: pc, or pc - 1 for a return address */
    const pp_map_entry *map;    /* the mapping holding it (owned by the maps), NULL if none */
    uint64_t file_offset;       /* pc's offset in map->path; 0 without a mapping */
} pp_pc_site;

/* The one way to name a PC of a process whose executable mappings are maps (any process:
 * raw stacks cross processes as PCs plus maps): find its mapping, turn it into (object,
 * file offset), symbolize that (cached as pp_symbolize). A return address (is_return, and
 * pc non-zero) is looked up one byte back, inside its call instruction, so that its line
 * is the call's, as Go's CallersFrames does. maps may be NULL (nothing is found). Fills
 * *site when non-NULL; returns the frames written, as pp_symbolize. */
int pp_symbolize_pc(pp_symbolizer *s, const pp_maps *maps, uint64_t pc, int is_return,
                    pp_frame *frames, int max, pp_pc_site *site);

/* Closes every object opened so far that has no DWARF line information: libdw's handle
 * of it goes, and with it a mapping of its file and libdw's tables; its build id, line
 * flag and symbol bounds stay, and its first lookup opens it again (reading it costs
 * little: no DWARF to inflate). For a process about to fork workers that may symbolize
 * (httpd's parent): they inherit what is costly to rebuild, the objects with DWARF, and
 * not a mapping per object in every worker, where each mapping lengthens the kernel's
 * work on every mmap and munmap. */
void pp_symbolizer_close_light(pp_symbolizer *s);

/* The object's GNU build id as lowercase hex, or NULL. Owned by the symbolizer. */
const char *pp_symbolizer_build_id(pp_symbolizer *s, const char *path);

/* 1 if the object has DWARF line information (its own or a debug file's). */
int pp_symbolizer_has_lines(pp_symbolizer *s, const char *path);

#endif
