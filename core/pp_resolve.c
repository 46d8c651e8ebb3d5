#include "pp_resolve.h"
#include "pp_hash.h"
#include "pp_interp.h"

#include <stdlib.h>
#include <string.h>

#define MAX_INLINE 16

typedef struct {
    uint64_t id;                /* profile mapping id */
    uint64_t start, offset;     /* as the first process that reported it mapped it */
} mapinfo;

struct pp_resolver {
    pp_profile *prof;
    pp_symbolizer *sym;
    pp_hash *mappings;          /* "path\0start-offset-in-file" -> index into maps */
    pp_hash *objects;           /* path -> index into maps of its first mapping */
    mapinfo *maps;
    size_t nmaps, capmaps;
    pp_hash *locations;         /* (object index, file offset) / raw address -> location id */
    uint64_t unknown_mapping;
};

pp_resolver *pp_resolver_new(pp_profile *prof, pp_symbolizer *sym)
{
    pp_resolver *r = calloc(1, sizeof(*r));

    if (!r) {
        return NULL;
    }
    r->prof = prof;
    r->sym = sym;
    r->mappings = pp_hash_new();
    r->objects = pp_hash_new();
    r->locations = pp_hash_new();
    if (!r->mappings || !r->objects || !r->locations) {
        pp_resolver_free(r);
        return NULL;
    }
    return r;
}

void pp_resolver_free(pp_resolver *r)
{
    if (!r) {
        return;
    }
    pp_hash_free(r->mappings);
    pp_hash_free(r->objects);
    pp_hash_free(r->locations);
    free(r->maps);
    free(r);
}

/* The profile mapping for one maps entry; the key is the object and the file offset of
 * the entry, so the same segment of the same file in another process maps to it. */
static long mapping_for(pp_resolver *r, const pp_map_entry *e)
{
    size_t plen = strlen(e->path);
    char key[4096 + 32];
    uint64_t ix = r->nmaps;
    pp_mapping_info mi;
    int rc, lines;

    if (plen > 4096) {
        return -1;
    }
    memcpy(key, e->path, plen);
    key[plen] = '\0';
    memcpy(key + plen + 1, &e->offset, sizeof(e->offset));
    rc = pp_hash_intern(r->mappings, key, plen + 1 + sizeof(e->offset), &ix);
    if (rc == 1) {
        return (long)ix;
    }
    if (rc < 0) {
        return -1;
    }
    if (r->nmaps == r->capmaps) {
        size_t ncap = r->capmaps ? r->capmaps * 2 : 32;
        mapinfo *nm = realloc(r->maps, ncap * sizeof(*nm));
        if (!nm) {
            return -1;
        }
        r->maps = nm;
        r->capmaps = ncap;
    }
    memset(&mi, 0, sizeof(mi));
    mi.memory_start = e->start;
    mi.memory_limit = e->end;
    mi.file_offset = e->offset;
    mi.filename = e->path;
    mi.build_id = pp_symbolizer_build_id(r->sym, e->path);
    lines = pp_symbolizer_has_lines(r->sym, e->path);
    /* We symbolize every frame ourselves; these flags stop pprof from trying again. */
    mi.has_functions = 1;
    mi.has_filenames = lines;
    mi.has_line_numbers = lines;
    mi.has_inline_frames = lines;
    r->maps[r->nmaps].id = pp_profile_add_mapping(r->prof, &mi);
    r->maps[r->nmaps].start = e->start;
    r->maps[r->nmaps].offset = e->offset;
    if (!r->maps[r->nmaps].id) {
        return -1;
    }
    return (long)r->nmaps++;
}

int pp_resolver_add_mappings(pp_resolver *r, const pp_maps *maps)
{
    size_t i;

    for (i = 0; i < pp_maps_count(maps); i++) {
        if (pp_interp_is_path(pp_maps_get(maps, i)->path)) {
            continue;           /* interpreter frames: no object behind them */
        }
        if (mapping_for(r, pp_maps_get(maps, i)) < 0) {
            return -1;
        }
    }
    return 0;
}

/* An interpreter frame (pp_interp.h), named already (frames, n): a location of its own, in
 * no mapping, keyed by what it names (function, file, line), so that the same script line
 * in every child is one location. */
static uint64_t interp_location(pp_resolver *r, const pp_map_entry *e, uint64_t fileoff,
                                const pp_frame *frames, int n)
{
    size_t plen = strlen(e->path);
    char key[sizeof(PP_INTERP_PATH_PREFIX) + PP_INTERP_MAX_NAME + PP_INTERP_MAX_FILE + 32];
    uint32_t line = (uint32_t)(fileoff / PP_INTERP_PC_SPAN);
    uint64_t id = 0;
    pp_frame fr;
    pp_line ln;

    if (plen + 1 + sizeof(line) > sizeof(key)) {
        plen = sizeof(key) - 1 - sizeof(line);
    }
    memcpy(key, e->path, plen);
    key[plen] = '\0';
    memcpy(key + plen + 1, &line, sizeof(line));
    if (pp_hash_find(r->locations, key, plen + 1 + sizeof(line), &id)) {
        return id;
    }
    if (n >= 1) {
        fr = frames[0];
    } else {
        fr.function = "?";
        fr.file = NULL;
        fr.line = 0;
        fr.start_line = 0;
    }
    if (!(ln.function_id = pp_profile_function(r->prof, fr.function, NULL, fr.file,
                                               fr.start_line))) {
        return 0;
    }
    ln.line = fr.line;
    id = pp_profile_add_location(r->prof, 0, 0, &ln, 1);
    if (id && pp_hash_intern(r->locations, key, plen + 1 + sizeof(line), &id) < 0) {
        return 0;
    }
    return id;
}

static uint64_t resolve_pc(pp_resolver *r, const pp_maps *maps, uint64_t pc, int is_return)
{
    pp_frame frames[MAX_INLINE];
    pp_line lines[MAX_INLINE];
    pp_pc_site site;
    struct {
        long mapping;
        uint64_t where;
    } key;
    uint64_t id = 0, address;
    long mi;
    int n = pp_symbolize_pc(r->sym, maps, pc, is_return, frames, MAX_INLINE, &site), i;

    memset(&key, 0, sizeof(key));
    if (!site.map) {
        /* No object: the raw address is all there is. */
        key.mapping = -1;
        key.where = site.pc;
        if (!pp_hash_find(r->locations, &key, sizeof(key), &id)) {
            id = pp_profile_add_location(r->prof, 0, site.pc, NULL, 0);
            if (id && pp_hash_intern(r->locations, &key, sizeof(key), &id) < 0) {
                return 0;
            }
        }
        return id;
    }
    if (pp_interp_is_path(site.map->path)) {
        return interp_location(r, site.map, site.file_offset, frames, n);
    }
    if ((mi = mapping_for(r, site.map)) < 0) {
        return 0;
    }
    key.mapping = mi;
    key.where = site.file_offset;
    if (pp_hash_find(r->locations, &key, sizeof(key), &id)) {
        return id;
    }
    for (i = 0; i < n; i++) {
        lines[i].function_id = pp_profile_function(r->prof, frames[i].function
                                                   ? frames[i].function : "??",
                                                   NULL, frames[i].file,
                                                   frames[i].start_line);
        lines[i].line = frames[i].line;
        if (!lines[i].function_id) {
            return 0;
        }
    }
    /* The address as the mapping's first reporter would see it. */
    address = r->maps[mi].start + (site.file_offset - r->maps[mi].offset);
    id = pp_profile_add_location(r->prof, r->maps[mi].id, address, lines, (size_t)n);
    if (id && pp_hash_intern(r->locations, &key, sizeof(key), &id) < 0) {
        return 0;
    }
    return id;
}

int pp_resolver_stack(pp_resolver *r, const pp_maps *maps, const uint64_t *pcs, size_t n,
                      int first_is_return, uint64_t *out)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (!(out[i] = resolve_pc(r, maps, pcs[i], i > 0 || first_is_return))) {
            return -1;
        }
    }
    return (int)n;
}

uint64_t pp_resolver_synthetic(pp_resolver *r, const char *name)
{
    struct {
        long mapping;
        uint64_t where;
    } key;
    uint64_t id = 0, fn;
    pp_line line;

    memset(&key, 0, sizeof(key));
    key.mapping = -2;
    key.where = pp_hash_bytes(name, strlen(name));
    if (pp_hash_find(r->locations, &key, sizeof(key), &id)) {
        return id;
    }
    if (!(fn = pp_profile_function(r->prof, name, NULL, NULL, 0))) {
        return 0;
    }
    line.function_id = fn;
    line.line = 0;
    id = pp_profile_add_location(r->prof, 0, 0, &line, 1);
    if (id && pp_hash_intern(r->locations, &key, sizeof(key), &id) < 0) {
        return 0;
    }
    return id;
}
