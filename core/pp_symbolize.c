#include "pp_symbolize.h"
#include "pp_hash.h"
#include "pp_interp.h"
#include "pp_log.h"

#include <elfutils/libdw.h>
#include <elfutils/libdwfl.h>
#include <dwarf.h>
#include <fcntl.h>
#include <gelf.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

/* What dwfl_module_addrinfo answered for every address of [start, end): the symbol it
 * chose (its name and address), or none (name NULL). */
typedef struct {
    GElf_Addr start, end;
    GElf_Addr value;            /* the symbol's address: an offset is addr - value */
    const char *name;           /* libdw's, valid while the object's Dwfl lives */
} sym_range;

typedef struct {
    Dwfl *dwfl;                 /* NULL: the object could not be opened */
    Dwfl_Module *mod;
    int closed;                 /* by pp_symbolizer_close_light: reopened at first use */
    char *build_id;
    int has_lines;
    /* dwfl_module_addrinfo scans the whole symbol table for each address (gelf_getsym,
     * gelf_getshdr per symbol): in a busy server's profiles every scrape brings new leaf
     * PCs, and that scan was most of the collector's symbolization. Its answer depends
     * only on which symbols start at or below the address and which end above it, so it
     * is the same for every address between two consecutive bounds (the starts and ends
     * of every defined symbol, sorted): what it answered for one address is kept for
     * that interval, and an address inside a kept interval is named from it. */
    GElf_Addr *bounds;
    size_t nbounds;
    int bounds_state;           /* 0: not read yet; 1: read; -1: unreadable, keep no range */
    sym_range *ranges;          /* sorted by start, disjoint */
    size_t nranges, capranges;
} object;

/* One symbolized (object, offset): frames[first, first + n) of the frame pool. */
typedef struct {
    uint32_t first;
    uint32_t n;
} cached_site;

struct pp_symbolizer {
    pp_hash *ix;                /* path -> index in objs */
    object *objs;
    size_t n, cap;
    pp_hash *names;             /* interned strings handed out as const char * */
    char **strs;
    size_t nstrs, capstrs;
    /* The site cache: (object index, file offset) -> index in sites. Bounded: started
     * over when PP_SYMBOLIZE_CACHE_SITES sites are known. */
    pp_hash *site_ix;
    cached_site *sites;
    size_t nsites;
    pp_frame *pool;             /* PP_SYMBOLIZE_MAX_FRAMES per site at most */
    size_t npool, cappool;
    int no_ranges;              /* pp_symbolizer_no_ranges */
};

static char *debuginfo_path;

/* Does the file at fd have the CRC-32 that .gnu_debuglink names (zlib's CRC-32)? */
static int crc_matches(int fd, GElf_Word want)
{
    unsigned char buf[65536];
    uLong crc = crc32(0L, Z_NULL, 0);
    ssize_t n;

    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        crc = crc32(crc, buf, (uInt)n);
    }
    return n == 0 && (GElf_Word)crc == want;
}

/* The debug information installed on this machine, found where
 * dwfl_standard_find_debuginfo looks (by build id under /usr/lib/debug/.build-id, then by
 * .gnu_debuglink next to the object, in its .debug/ and under /usr/lib/debug), but never
 * through debuginfod: that step gives every Dwfl (one per object here) a client of its
 * own, a libcurl multi handle holding two sockets until the Dwfl ends, even with no
 * DEBUGINFOD_URLS set (elfutils 0.188). A collector then held 40 sockets more after its
 * first profile, and paid for the clients' set-up; a profiler asks no server anyway. */
static int find_local_debuginfo(Dwfl_Module *mod, void **userdata, const char *modname,
                                Dwarf_Addr base, const char *file_name,
                                const char *debuglink_file, GElf_Word debuglink_crc,
                                char **debuginfo_file_name)
{
    static const char *const formats[] = { "%s/%s", "%s/.debug/%s", "/usr/lib/debug%s/%s" };
    char dir[4096], cand[4096 + 512];
    const char *slash;
    size_t i;
    int fd = dwfl_build_id_find_debuginfo(mod, userdata, modname, base, file_name,
                                          debuglink_file, debuglink_crc, debuginfo_file_name);

    if (fd >= 0 || !file_name || !debuglink_file || !(slash = strrchr(file_name, '/')) ||
        (size_t)(slash - file_name) >= sizeof(dir) || strchr(debuglink_file, '/')) {
        return fd >= 0 ? fd : -1;
    }
    memcpy(dir, file_name, (size_t)(slash - file_name));
    dir[slash - file_name] = '\0';
    for (i = 0; i < sizeof(formats) / sizeof(formats[0]); i++) {
        snprintf(cand, sizeof(cand), formats[i], dir, debuglink_file);
        if (strcmp(cand, file_name) == 0 || (fd = open(cand, O_RDONLY | O_CLOEXEC)) < 0) {
            continue;
        }
        if (crc_matches(fd, debuglink_crc) && lseek(fd, 0, SEEK_SET) == 0 &&
            (*debuginfo_file_name = strdup(cand)) != NULL) {
            return fd;
        }
        close(fd);
    }
    return -1;
}

static const Dwfl_Callbacks callbacks = {
    .find_elf = dwfl_build_id_find_elf,
    .find_debuginfo = find_local_debuginfo,
    .section_address = dwfl_offline_section_address,
    .debuginfo_path = &debuginfo_path,
};

pp_symbolizer *pp_symbolizer_new(void)
{
    pp_symbolizer *s = calloc(1, sizeof(*s));

    if (!s) {
        return NULL;
    }
    s->ix = pp_hash_new();
    s->names = pp_hash_new();
    s->site_ix = pp_hash_new();
    s->sites = malloc(PP_SYMBOLIZE_CACHE_SITES * sizeof(cached_site));
    if (!s->ix || !s->names || !s->site_ix || !s->sites) {
        pp_symbolizer_free(s);
        return NULL;
    }
    return s;
}

void pp_symbolizer_free(pp_symbolizer *s)
{
    size_t i;

    if (!s) {
        return;
    }
    for (i = 0; i < s->n; i++) {
        if (s->objs[i].dwfl) {
            dwfl_end(s->objs[i].dwfl);
        }
        free(s->objs[i].build_id);
        free(s->objs[i].bounds);
        free(s->objs[i].ranges);
    }
    for (i = 0; i < s->nstrs; i++) {
        free(s->strs[i]);
    }
    free(s->strs);
    free(s->objs);
    pp_hash_free(s->ix);
    pp_hash_free(s->names);
    pp_hash_free(s->site_ix);
    free(s->sites);
    free(s->pool);
    free(s);
}

/* Strings from libdw live as long as the Dwfl; we copy to keep a stable, deduplicated
 * pointer that outlives nothing the caller can see. */
static const char *intern(pp_symbolizer *s, const char *str)
{
    uint64_t ix = s->nstrs;
    int rc;

    if (!str) {
        return NULL;
    }
    rc = pp_hash_intern(s->names, str, strlen(str), &ix);
    if (rc == 1) {
        return s->strs[ix];
    }
    if (rc < 0) {
        return NULL;
    }
    if (s->nstrs == s->capstrs) {
        size_t ncap = s->capstrs ? s->capstrs * 2 : 256;
        char **ns = realloc(s->strs, ncap * sizeof(char *));
        if (!ns) {
            return NULL;
        }
        s->strs = ns;
        s->capstrs = ncap;
    }
    if (!(s->strs[s->nstrs] = strdup(str))) {
        return NULL;
    }
    return s->strs[s->nstrs++];
}

static void read_bounds(object *o);

/* libdw's handle of the object at path (offline: placed at its link-time addresses, bias
 * 0, so an address is the file offset translated through the program headers). 0, or
 * -1 with none. */
static int report(object *o, const char *path)
{
    if (!(o->dwfl = dwfl_begin(&callbacks))) {
        return -1;
    }
    o->mod = dwfl_report_offline(o->dwfl, path, path, -1);
    dwfl_report_end(o->dwfl, NULL, NULL);
    if (!o->mod) {
        pp_log(PP_LOG_DEBUG, "PP0030", "cannot read %s: %s", path, dwfl_errmsg(-1));
        dwfl_end(o->dwfl);
        o->dwfl = NULL;
        return -1;
    }
    return 0;
}

/* The module's GNU build id as lowercase hex (malloc'ed), or NULL. */
static char *build_id_of(Dwfl_Module *mod)
{
    const unsigned char *bits;
    GElf_Addr vaddr;
    int len = dwfl_module_build_id(mod, &bits, &vaddr), i;
    char *hex;

    if (len <= 0 || !(hex = malloc((size_t)len * 2 + 1))) {
        return NULL;
    }
    for (i = 0; i < len; i++) {
        static const char digits[] = "0123456789abcdef";
        hex[2 * i] = digits[bits[i] >> 4];
        hex[2 * i + 1] = digits[bits[i] & 15];
    }
    hex[2 * len] = '\0';
    return hex;
}

static void open_object(pp_symbolizer *s, object *o, const char *path)
{
    Dwarf_Addr bias;

    memset(o, 0, sizeof(*o));
    if (path[0] != '/' || report(o, path) != 0) {
        return;
    }
    o->build_id = build_id_of(o->mod);
    o->has_lines = dwfl_module_getdwarf(o->mod, &bias) != NULL;
    /* Now rather than at the first lookup: objects opened in httpd's parent before the
     * fork (pprof_symbols_post_config) keep their bounds in pages every child shares,
     * instead of a copy in each child that collects. */
    read_bounds(o);
}

static object *get_object(pp_symbolizer *s, const char *path)
{
    uint64_t ix = s->n;
    int rc = pp_hash_intern(s->ix, path, strlen(path), &ix);

    if (rc == 1) {
        return &s->objs[ix];
    }
    if (rc < 0) {
        return NULL;
    }
    if (s->n == s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 32;
        object *no = realloc(s->objs, ncap * sizeof(object));
        if (!no) {
            return NULL;
        }
        s->objs = no;
        s->cap = ncap;
    }
    open_object(s, &s->objs[s->n], path);
    return &s->objs[s->n++];
}

/* An object pp_symbolizer_close_light closed: only libdw's handle is made again; its
 * build id, line flag and bounds were kept. A file replaced since (a package upgrade
 * while httpd runs) is not the object mapped: left unnamed rather than named from it. */
static void reopen_object(object *o, const char *path)
{
    char *id;

    o->closed = 0;
    if (report(o, path) != 0 || !o->build_id) {
        return;
    }
    id = build_id_of(o->mod);
    if (!id || strcmp(id, o->build_id) != 0) {
        pp_log(PP_LOG_DEBUG, "PP0030", "cannot read %s: its build id changed", path);
        dwfl_end(o->dwfl);
        o->dwfl = NULL;
        o->mod = NULL;
    }
    free(id);
}

/* File offset to link-time virtual address, through the PT_LOAD that holds it. */
static int offset_to_vaddr(Dwfl_Module *mod, uint64_t off, GElf_Addr *vaddr)
{
    GElf_Addr bias;
    Elf *elf = dwfl_module_getelf(mod, &bias);
    size_t phnum, i;

    if (!elf || elf_getphdrnum(elf, &phnum) != 0) {
        return -1;
    }
    for (i = 0; i < phnum; i++) {
        GElf_Phdr ph;
        if (gelf_getphdr(elf, (int)i, &ph) && ph.p_type == PT_LOAD &&
            off >= ph.p_offset && off < ph.p_offset + ph.p_filesz) {
            *vaddr = off - ph.p_offset + ph.p_vaddr + bias;
            return 0;
        }
    }
    return -1;
}

/* ELF symbol names may carry a version ("__libc_start_main@@GLIBC_2.34"); people and
 * pprof's regexps want the plain name. */
static const char *plain_symbol(pp_symbolizer *s, const char *name)
{
    const char *at = name ? strchr(name, '@') : NULL;
    char buf[512];
    size_t len;

    if (!at || at == name) {
        return intern(s, name);
    }
    len = (size_t)(at - name) < sizeof(buf) - 1 ? (size_t)(at - name) : sizeof(buf) - 1;
    memcpy(buf, name, len);
    buf[len] = '\0';
    return intern(s, buf);
}

static const char *die_name(Dwarf_Die *die)
{
    Dwarf_Attribute attr;
    const char *name = dwarf_formstring(dwarf_attr_integrate(die, DW_AT_name, &attr));

    return name;
}

static int decl_line(Dwarf_Die *die)
{
    int line = 0;

    if (dwarf_decl_line(die, &line) != 0) {
        Dwarf_Attribute attr;
        Dwarf_Word w;
        if (dwarf_formudata(dwarf_attr_integrate(die, DW_AT_decl_line, &attr), &w) == 0) {
            line = (int)w;
        }
    }
    return line;
}

/* Inline chain from DWARF scopes: the innermost function is at the line table's
 * file:line; each enclosing function is at the call site of the one inside it. */
static int dwarf_frames(pp_symbolizer *s, object *o, GElf_Addr addr, const char *symname,
                        pp_frame *frames, int max)
{
    Dwarf_Addr bias;
    Dwarf_Die *cudie = dwfl_module_addrdie(o->mod, addr, &bias), *scopes = NULL;
    Dwfl_Line *dl = dwfl_module_getsrc(o->mod, addr);
    Dwarf_Files *files = NULL;
    const char *file = NULL;
    int line = 0, n = 0, nscopes, i;

    if (dl) {
        file = dwfl_lineinfo(dl, NULL, &line, NULL, NULL, NULL);
    }
    if (!cudie) {
        goto fallback;
    }
    /* dwarf_getscopes follows an inlined instance into its abstract definition; the
     * concrete chain of callers comes from dwarf_getscopes_die on the innermost scope. */
    nscopes = dwarf_getscopes(cudie, addr - bias, &scopes);
    if (nscopes > 0) {
        Dwarf_Die inner = scopes[0];
        free(scopes);
        scopes = NULL;
        nscopes = dwarf_getscopes_die(&inner, &scopes);
    }
    dwarf_getsrcfiles(cudie, &files, NULL);
    for (i = 0; i < nscopes && n < max; i++) {
        int tag = dwarf_tag(&scopes[i]);
        Dwarf_Attribute attr;
        Dwarf_Word w;

        if (tag != DW_TAG_inlined_subroutine && tag != DW_TAG_subprogram) {
            continue;
        }
        frames[n].function = intern(s, die_name(&scopes[i]));
        frames[n].file = intern(s, file);
        frames[n].line = line;
        frames[n].start_line = decl_line(&scopes[i]);
        if (tag == DW_TAG_subprogram) {
            /* The symbol table's name is the one people grep for. */
            if (symname) {
                frames[n].function = plain_symbol(s, symname);
            }
            n++;
            break;
        }
        n++;
        /* The next enclosing function is at this inlined call's site. */
        file = NULL;
        line = 0;
        if (files && dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_file, &attr), &w) == 0) {
            file = dwarf_filesrc(files, w, NULL, NULL);
        }
        if (dwarf_formudata(dwarf_attr(&scopes[i], DW_AT_call_line, &attr), &w) == 0) {
            line = (int)w;
        }
    }
    free(scopes);
    if (n > 0) {
        return n;
    }
fallback:
    if (!symname && !file) {
        return 0;
    }
    frames[0].function = plain_symbol(s, symname);
    frames[0].file = intern(s, file);
    frames[0].line = line;
    frames[0].start_line = 0;
    return 1;
}

/* An interpreter frame's record: all it says is in its pseudo-mapping's path, and its
 * line in the offset (pp_interp.h). */
static int interp_frame(pp_symbolizer *s, const char *path, uint64_t file_offset,
                        pp_frame *frame)
{
    pp_interp_record rec;
    char buf[PP_INTERP_MAX_NAME + PP_INTERP_MAX_FILE + 1];
    size_t n;

    if (pp_interp_decode(path, file_offset, &rec) != 0) {
        return 0;
    }
    n = rec.function_len < sizeof(buf) - 1 ? rec.function_len : sizeof(buf) - 1;
    memcpy(buf, rec.function, n);
    buf[n] = '\0';
    frame->function = intern(s, buf);
    n = rec.file_len < sizeof(buf) - 1 ? rec.file_len : sizeof(buf) - 1;
    memcpy(buf, rec.file, n);
    buf[n] = '\0';
    frame->file = n ? intern(s, buf) : NULL;
    frame->line = (int)rec.line;
    frame->start_line = (int)rec.start_line;
    frame->offset = 0;
    return frame->function ? 1 : 0;
}

static int by_addr(const void *a, const void *b)
{
    GElf_Addr x = *(const GElf_Addr *)a, y = *(const GElf_Addr *)b;

    return x < y ? -1 : x > y;
}

/* Every defined symbol's start and end, once per object: one pass over the table, what a
 * single dwfl_module_addrinfo costs. */
static void read_bounds(object *o)
{
    int nsyms = dwfl_module_getsymtab(o->mod), i;
    size_t n = 0, j;

    o->bounds_state = -1;
    if (nsyms <= 0 || !(o->bounds = malloc((size_t)nsyms * 2 * sizeof(GElf_Addr)))) {
        return;
    }
    for (i = 1; i < nsyms; i++) {
        GElf_Sym sym;
        GElf_Addr addr;
        GElf_Word shndx;
        const char *name = dwfl_module_getsym_info(o->mod, i, &sym, &addr, &shndx, NULL, NULL);
        if (!name || sym.st_shndx == SHN_UNDEF) {
            continue;
        }
        o->bounds[n++] = addr;
        o->bounds[n++] = addr + sym.st_size;
    }
    qsort(o->bounds, n, sizeof(GElf_Addr), by_addr);
    for (i = 0, j = 0; (size_t)i < n; i++) {
        if (j == 0 || o->bounds[j - 1] != o->bounds[i]) {
            o->bounds[j++] = o->bounds[i];
        }
    }
    o->nbounds = j;
    o->bounds_state = 1;
}

/* Index of the first element of v[0, n) greater than key. */
static size_t upper_bound(const GElf_Addr *v, size_t stride, size_t n, GElf_Addr key)
{
    size_t lo = 0, hi = n;

    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (*(const GElf_Addr *)((const char *)v + mid * stride) <= key) {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    return lo;
}

static const sym_range *range_at(const object *o, GElf_Addr addr)
{
    size_t i;

    if (!o->nranges) {
        return NULL;
    }
    i = upper_bound(&o->ranges[0].start, sizeof(sym_range), o->nranges, addr);
    return i > 0 && addr < o->ranges[i - 1].end ? &o->ranges[i - 1] : NULL;
}

/* Keep what libdw answered for addr (the sized symbol at value that holds it) for the
 * interval between the bounds around addr. */
static void keep_range(object *o, GElf_Addr addr, const char *name, GElf_Addr value)
{
    GElf_Addr start, end;
    size_t i;

    if (!o->bounds_state) {
        read_bounds(o);
    }
    if (o->bounds_state < 0 || o->nranges >= PP_SYMBOLIZE_CACHE_SITES || !o->nbounds) {
        return;
    }
    i = upper_bound(o->bounds, sizeof(GElf_Addr), o->nbounds, addr);
    if (i == 0 || i == o->nbounds) {
        return;                 /* below or above every symbol: no interval to keep */
    }
    start = o->bounds[i - 1];
    end = o->bounds[i];
    i = o->nranges ? upper_bound(&o->ranges[0].start, sizeof(sym_range), o->nranges, start) : 0;
    if ((i > 0 && o->ranges[i - 1].end > start) || (i < o->nranges && o->ranges[i].start < end)) {
        return;                 /* overlaps a kept one: cannot be, but never two answers */
    }
    if (o->nranges == o->capranges) {
        size_t ncap = o->capranges ? o->capranges * 2 : 64;
        sym_range *nr = realloc(o->ranges, ncap * sizeof(*nr));
        if (!nr) {
            return;
        }
        o->ranges = nr;
        o->capranges = ncap;
    }
    memmove(o->ranges + i + 1, o->ranges + i, (o->nranges - i) * sizeof(*o->ranges));
    o->ranges[i].start = start;
    o->ranges[i].end = end;
    o->ranges[i].value = value;
    o->ranges[i].name = name;
    o->nranges++;
}

/* dwfl_module_addrinfo's name and offset for addr, from a kept interval when one holds
 * it. */
static const char *symbol_at(pp_symbolizer *s, object *o, GElf_Addr addr, GElf_Off *off)
{
    const sym_range *r = s->no_ranges ? NULL : range_at(o, addr);
    GElf_Sym sym;
    const char *name;

    if (r) {
        *off = r->name ? addr - r->value : 0;
        return r->name;
    }
    name = dwfl_module_addrinfo(o->mod, addr, off, &sym, NULL, NULL, NULL);
    /* Only a sized symbol holding addr is the answer anywhere in the interval: the sized
     * symbols holding a point change only at bounds, and libdw prefers them. Where it
     * answered a sizeless symbol, or none, its answer also depends on the sections and on
     * the exact address (a sizeless _init before .plt): asked again each time. */
    if (!s->no_ranges && name && sym.st_size > 0 && *off < sym.st_size) {
        keep_range(o, addr, name, addr - *off);
    }
    return name;
}

static int symbolize_object(pp_symbolizer *s, object *o, uint64_t file_offset,
                            pp_frame *frames, int max)
{
    GElf_Addr addr;
    GElf_Off symoff = 0;
    const char *symname;
    int n = 0, i;

    if (offset_to_vaddr(o->mod, file_offset, &addr) != 0) {
        return 0;
    }
    symname = symbol_at(s, o, addr, &symoff);
    if (o->has_lines) {
        n = dwarf_frames(s, o, addr, symname, frames, max);
    } else if (symname) {
        frames[0].function = plain_symbol(s, symname);
        frames[0].file = NULL;
        frames[0].line = 0;
        frames[0].start_line = 0;
        n = 1;
    }
    for (i = 0; i < n; i++) {
        frames[i].offset = symname ? symoff : 0;
    }
    return n;
}

/* Forget every site (the cache is full): the next lookups fill it again. */
static int restart_cache(pp_symbolizer *s)
{
    pp_hash *fresh = pp_hash_new();

    if (!fresh) {
        return -1;
    }
    pp_hash_free(s->site_ix);
    s->site_ix = fresh;
    s->nsites = 0;
    s->npool = 0;
    return 0;
}

/* Remember the n frames of key; a failure only means it is not remembered. */
static void remember(pp_symbolizer *s, const void *key, size_t keylen, const pp_frame *frames,
                     int n)
{
    uint64_t ix;

    if (s->nsites == PP_SYMBOLIZE_CACHE_SITES && restart_cache(s) != 0) {
        return;
    }
    if (s->npool + (size_t)n > s->cappool) {
        size_t ncap = s->cappool ? s->cappool * 2 : 1024;
        pp_frame *np;
        while (ncap < s->npool + (size_t)n) {
            ncap *= 2;
        }
        if (!(np = realloc(s->pool, ncap * sizeof(*np)))) {
            return;
        }
        s->pool = np;
        s->cappool = ncap;
    }
    ix = s->nsites;
    if (pp_hash_intern(s->site_ix, key, keylen, &ix) != 0) {
        return;                 /* present already, or out of memory */
    }
    s->sites[ix].first = (uint32_t)s->npool;
    s->sites[ix].n = (uint32_t)n;
    if (n > 0) {                /* a site with no frames: frames may be NULL */
        memcpy(s->pool + s->npool, frames, (size_t)n * sizeof(*frames));
    }
    s->npool += (size_t)n;
    s->nsites++;
}

int pp_symbolize(pp_symbolizer *s, const char *path, uint64_t file_offset,
                 pp_frame *frames, int max)
{
    object *o;
    pp_frame all[PP_SYMBOLIZE_MAX_FRAMES];
    uint64_t key[2], ix;
    int n;

    if (pp_interp_is_path(path)) {
        return max > 0 ? interp_frame(s, path, file_offset, frames) : 0;
    }
    o = get_object(s, path);
    if (o && o->closed) {
        reopen_object(o, path);
    }
    if (!o || !o->dwfl || max <= 0) {
        return 0;
    }
    key[0] = (uint64_t)(o - s->objs);
    key[1] = file_offset;
    if (pp_hash_find(s->site_ix, key, sizeof(key), &ix)) {
        n = (int)s->sites[ix].n;
        n = n < max ? n : max;
        memcpy(frames, s->pool + s->sites[ix].first, (size_t)n * sizeof(*frames));
        return n;
    }
    /* Always the whole chain (up to the cache's depth): a later caller may want more. */
    n = symbolize_object(s, o, file_offset, all, PP_SYMBOLIZE_MAX_FRAMES);
    remember(s, key, sizeof(key), all, n);
    n = n < max ? n : max;
    memcpy(frames, all, (size_t)n * sizeof(*frames));
    return n;
}

int pp_symbolize_pc(pp_symbolizer *s, const pp_maps *maps, uint64_t pc, int is_return,
                    pp_frame *frames, int max, pp_pc_site *site)
{
    pp_pc_site where;

    where.pc = is_return && pc ? pc - 1 : pc;
    where.map = maps ? pp_maps_find(maps, where.pc) : NULL;
    where.file_offset = where.map ? where.pc - where.map->start + where.map->offset : 0;
    if (site) {
        *site = where;
    }
    return where.map ? pp_symbolize(s, where.map->path, where.file_offset, frames, max) : 0;
}

void pp_symbolizer_no_ranges(pp_symbolizer *s)
{
    s->no_ranges = 1;
}

const char *pp_symbolizer_build_id(pp_symbolizer *s, const char *path)
{
    object *o = get_object(s, path);

    return o ? o->build_id : NULL;
}

int pp_symbolizer_has_lines(pp_symbolizer *s, const char *path)
{
    object *o = get_object(s, path);

    return o ? o->has_lines : 0;
}

void pp_symbolizer_close_light(pp_symbolizer *s)
{
    size_t i;

    for (i = 0; i < s->n; i++) {
        object *o = &s->objs[i];
        if (!o->dwfl || o->has_lines) {
            continue;
        }
        dwfl_end(o->dwfl);
        o->dwfl = NULL;
        o->mod = NULL;
        o->closed = 1;
        /* The kept answers name strings of the Dwfl just ended. */
        free(o->ranges);
        o->ranges = NULL;
        o->nranges = o->capranges = 0;
    }
}
