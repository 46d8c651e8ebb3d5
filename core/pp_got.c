#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dl_iterate_phdr */
#endif
#include "pp_got.h"
#include "pp_log.h"
#include "pp_cpu.h"
#include "pp_threads.h"

#include <elf.h>
#include <fcntl.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#else
#error "pp_got: unsupported architecture"
#endif

typedef struct {
    void **slot;
    void *original;
    void *replacement;
    int listed;                 /* mark: its object was listed by the current pass */
} patched_slot;

typedef struct {
    uintptr_t base;
    uint64_t name_hash;         /* of its path: no copy, see "Nothing allocated" below */
    int seen;                   /* mark for the sweep of unloaded objects */
} patched_object;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
/* Hook sets from several users (heap, thread creation), each kept as given. */
#define MAX_SETS 8
static const pp_got_hook *sets[MAX_SETS];
static size_t setlen[MAX_SETS];
static size_t nsets;
static patched_slot *slots;
static size_t nslots, capslots;
static patched_object *objects;
static size_t nobjects, capobjects;
static unsigned long long last_adds, last_subs;
/* Nothing is allocated or freed inside a dl_iterate_phdr callback: it holds the loader's
 * lock, and a thread interrupted inside malloc (holding its arena's lock) by a CPU sample
 * waits for that lock in the unwinder's own dl_iterate_phdr: a patch pass that waited for
 * malloc then was a deadlock for good (a soak's hung child: the agent's refresh in
 * remember_object's realloc, the worker in libdw's dlopen of libdebuginfod, sampled inside
 * a constructor's calloc). The tables are grown before a pass (reserve); a pass that runs
 * out of room leaves the rest for the next one (out_of_room), which grows them first. */
static int out_of_room;
/* An object was passed over because the loader was still relocating it: the next
 * refresh looks again even if no object was added or removed since. */
static int retry_pending;

/* An object the loader has not finished must not be touched. dl_iterate_phdr lists an
 * object as soon as a dlopen in another thread has mapped it, while the loader still
 * relocates it (with only its own lock held, not the one dl_iterate_phdr takes): patching
 * it then races the loader's writes of the same GOT, and making a RELRO page read-only
 * after the patch makes the loader's next write there fault. Such an object is left for
 * a later pass (retry_pending).
 *
 * glibc 2.35+ says itself which objects it has finished: _dl_find_object knows an object
 * only once dlopen has relocated it (it is published after relocation, for unwinders)
 * and no longer once dlclose has begun. Asked inside our dl_iterate_phdr callback, whose
 * lock keeps the object from being unmapped, the answer holds for the whole patch of it.
 *
 * Without it, the RELRO pages must have been read-only when the pass began (from
 * /proc/self/maps): a weaker test, since that picture is older than the pass. A copy of
 * a library unloaded and loaded again at the same address meanwhile (or a read-only
 * file mapping there that was unmapped) passes it half relocated: the soak's crashed
 * children, and check_got's slow relocation test, on that check alone. */
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 35))
#define HAVE_DL_FIND_OBJECT 1
#endif

#ifndef HAVE_DL_FIND_OBJECT
typedef struct {
    uintptr_t start, end;
} ro_range;
static ro_range *ro_pages;
static size_t nro_pages, capro_pages;
#endif

/* Within [start, end) of one of the object's loaded segments? */
/* dl_iterate_phdr with our own signals (the CPU sampler's, the thread dump's) blocked in
 * this thread: their handlers unwind, and libunwind's global cache lock is taken by
 * threads that then wait for the loader's lock that dl_iterate_phdr holds here. A handler
 * run here would wait for that cache lock: a deadlock (found by the soak). Blocked, the
 * signal waits until the iteration is done. */
static int iterate_objects(int (*cb)(struct dl_phdr_info *, size_t, void *), void *data)
{
    sigset_t ours, old;
    int rc;

    sigemptyset(&ours);
    sigaddset(&ours, pp_cpu_signal());
    sigaddset(&ours, pp_threads_signal());
    pthread_sigmask(SIG_BLOCK, &ours, &old);
    rc = dl_iterate_phdr(cb, data);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rc;
}

static int object_contains(const struct dl_phdr_info *info, uintptr_t addr)
{
    int i;

    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t start = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && addr >= start && addr < start + ph->p_memsz) {
            return 1;
        }
    }
    return 0;
}

static uint64_t hash_name(const char *name)
{
    uint64_t h = 0xcbf29ce484222325ull;         /* FNV-1a */

    for (; *name; name++) {
        h = (h ^ (unsigned char)*name) * 0x100000001b3ull;
    }
    return h;
}

static int already_patched(uintptr_t base, const char *name)
{
    uint64_t h = hash_name(name);
    size_t i;

    for (i = 0; i < nobjects; i++) {
        if (objects[i].base == base && objects[i].name_hash == h) {
            objects[i].seen = 1;
            return 1;
        }
    }
    return 0;
}

/* Forget objects the loader no longer lists (dlclose'd): a library loaded again at the
 * same address has a fresh GOT to patch, and the old slots are gone with the old pages. */
static void sweep_unloaded(void)
{
    size_t i, j;

    for (i = 0, j = 0; i < nobjects; i++) {
        if (objects[i].seen) {
            objects[j++] = objects[i];
        }
    }
    nobjects = j;
    for (i = 0; i < nobjects; i++) {
        objects[i].seen = 0;
    }
}

/* Mark the slots recorded inside a listed object. */
static void mark_listed_slots(const struct dl_phdr_info *info)
{
    size_t i;

    for (i = 0; i < nslots; i++) {
        if (!slots[i].listed && object_contains(info, (uintptr_t)slots[i].slot)) {
            slots[i].listed = 1;
        }
    }
}

/* Forget the slots whose object the pass did not list (dlclose'd). Swept from the same
 * pass as the objects (sweep_unloaded): a look of its own, later, could miss an object
 * unloaded in between and keep its record alone, and a new copy at its address would
 * then be taken for the one already patched (known, nothing stale) and left unpatched. */
static void sweep_slots(void)
{
    size_t i, j;

    for (i = 0, j = 0; i < nslots; i++) {
        if (slots[i].listed) {
            slots[i].listed = 0;
            slots[j++] = slots[i];
        }
    }
    nslots = j;
}

static int remember_object(uintptr_t base, const char *name)
{
    if (nobjects == capobjects) {
        out_of_room = 1;
        return -1;
    }
    objects[nobjects].name_hash = hash_name(name);
    objects[nobjects].seen = 1;
    objects[nobjects++].base = base;
    return 0;
}

static int count_object(struct dl_phdr_info *info, size_t size, void *data)
{
    (void)info;
    (void)size;
    (*(size_t *)data)++;
    return 0;
}

/* Room for every listed object and more slots than a pass usually records, grown before
 * the pass (outside the loader's lock); twice as many slots after a pass ran out. */
static int reserve(void)
{
    size_t listed = 0, want_slots = nslots + 256;

    iterate_objects(count_object, &listed);
    if (nobjects + listed + 16 > capobjects) {
        size_t ncap = nobjects + listed + 64;
        patched_object *no = realloc(objects, ncap * sizeof(*no));
        if (!no) {
            return -1;
        }
        objects = no;
        capobjects = ncap;
    }
    if (out_of_room && want_slots < 2 * capslots) {
        want_slots = 2 * capslots;
    }
    if (want_slots > capslots) {
        patched_slot *ns = realloc(slots, want_slots * sizeof(*ns));
        if (!ns) {
            return -1;
        }
        slots = ns;
        capslots = want_slots;
    }
    out_of_room = 0;
    return 0;
}

/* The RELRO range of the object, where the loader left the GOT read-only. */
/* The pages the loader makes read-only after relocating the object, as it computes them:
 * the RELRO segment's bounds both rounded down to pages (empty when that leaves nothing). */
static void relro_range(const struct dl_phdr_info *info, uintptr_t *start, uintptr_t *end)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    int i;

    *start = *end = 0;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            *start = (info->dlpi_addr + ph->p_vaddr) & ~(page - 1);
            *end = (info->dlpi_addr + ph->p_vaddr + ph->p_memsz) & ~(page - 1);
        }
    }
}

#ifdef HAVE_DL_FIND_OBJECT
#define READ_RO_PAGES() 0
#else
#define READ_RO_PAGES() read_ro_pages()
/* Fill ro_pages from /proc/self/maps: every mapping without write permission. */
static int read_ro_pages(void)
{
    char buf[8192], line[512];
    size_t ll = 0;
    ssize_t n;
    int fd = open("/proc/self/maps", O_RDONLY | O_CLOEXEC);

    nro_pages = 0;
    if (fd < 0) {
        return -1;
    }
    while ((n = read(fd, buf, sizeof(buf))) > 0) {
        ssize_t i;
        for (i = 0; i < n; i++) {
            if (buf[i] != '\n') {
                if (ll < sizeof(line) - 1) {
                    line[ll++] = buf[i];
                }
                continue;
            }
            line[ll] = '\0';
            ll = 0;
            {
                unsigned long lo, hi;
                char perms[8];
                if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) != 3 || perms[1] == 'w') {
                    continue;
                }
                if (nro_pages == capro_pages) {
                    size_t ncap = capro_pages ? capro_pages * 2 : 256;
                    ro_range *nr = realloc(ro_pages, ncap * sizeof(*nr));
                    if (!nr) {
                        close(fd);
                        return -1;
                    }
                    ro_pages = nr;
                    capro_pages = ncap;
                }
                ro_pages[nro_pages].start = lo;
                ro_pages[nro_pages].end = hi;
                nro_pages++;
            }
        }
    }
    close(fd);
    return 0;
}

/* Whether [start, end) was read-only when the pass began. */
static int was_read_only(uintptr_t start, uintptr_t end)
{
    size_t i;

    while (start < end) {
        for (i = 0; i < nro_pages && !(ro_pages[i].start <= start && start < ro_pages[i].end);
             i++) {
        }
        if (i == nro_pages) {
            return 0;
        }
        start = ro_pages[i].end;
    }
    return 1;
}

#endif

/* Whether the loader is done with the object (see HAVE_DL_FIND_OBJECT above). Called
 * inside dl_iterate_phdr's callback. */
static int loader_finished(const struct dl_phdr_info *info, const ElfW(Dyn) *dynamic,
                           uintptr_t ro_start, uintptr_t ro_end)
{
#ifdef HAVE_DL_FIND_OBJECT
    struct dl_find_object fo;

    (void)ro_start;
    (void)ro_end;
    /* Known, and as this very copy: a new copy at an old copy's address has its own
     * link map. */
    return _dl_find_object((void *)(uintptr_t)dynamic, &fo) == 0 && fo.dlfo_link_map &&
           fo.dlfo_link_map->l_addr == info->dlpi_addr && fo.dlfo_link_map->l_ld == dynamic;
#else
    (void)info;
    (void)dynamic;
    return ro_start >= ro_end || was_read_only(ro_start, ro_end);
#endif
}

static int write_slot(void **slot, void *value, uintptr_t ro_start, uintptr_t ro_end)
{
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), a = (uintptr_t)slot;
    int readonly = a >= ro_start && a < ro_end;
    void *pg = (void *)(a & ~(page - 1));

    if (readonly && mprotect(pg, page, PROT_READ | PROT_WRITE) != 0) {
        return -1;
    }
    __atomic_store_n(slot, value, __ATOMIC_RELEASE);
    if (readonly) {
        mprotect(pg, page, PROT_READ);
    }
    return 0;
}

static int record_slot(void **slot, void *original, void *replacement)
{
    if (nslots == capslots) {
        out_of_room = 1;        /* not recorded, so not written: the next pass does it */
        return -1;
    }
    slots[nslots].slot = slot;
    slots[nslots].original = original;
    slots[nslots].replacement = replacement;
    slots[nslots].listed = 1;   /* recorded in a pass, inside an object it lists */
    nslots++;
    return 0;
}

/* Forget the slots we recorded inside the object's range that no longer hold our
 * replacement (an earlier copy's at this address, unloaded since: the new copy's GOT is
 * fresh) and say how many. A slot that still holds it stays recorded whatever else
 * happened: unpatching must find every slot that leads into our code. */
static size_t forget_stale_in(const struct dl_phdr_info *info)
{
    size_t i, j, n;

    for (i = 0, j = 0; i < nslots; i++) {
        if (!object_contains(info, (uintptr_t)slots[i].slot) ||
            *slots[i].slot == slots[i].replacement) {
            slots[j++] = slots[i];
        }
    }
    n = nslots - j;
    nslots = j;
    return n;
}

static const pp_got_hook *hook_for(const char *name)
{
    size_t i, j;

    for (i = 0; i < nsets; i++) {
        for (j = 0; j < setlen[i]; j++) {
            if (strcmp(sets[i][j].name, name) == 0) {
                return &sets[i][j];
            }
        }
    }
    return NULL;
}

/* d_ptr values are relocated in memory by glibc on most targets; not on all. */
static uintptr_t dyn_addr(const struct dl_phdr_info *info, uintptr_t v)
{
    return v < info->dlpi_addr ? v + info->dlpi_addr : v;
}

/* Whether the object holds one of the addresses of a NULL-terminated list. */
static int holds_any(const struct dl_phdr_info *info, const void *const *addrs)
{
    for (; addrs && *addrs; addrs++) {
        if (object_contains(info, (uintptr_t)*addrs)) {
            return 1;
        }
    }
    return 0;
}

static void patch_relocs(const struct dl_phdr_info *info, const ElfW(Rela) *rel, size_t n,
                         const ElfW(Sym) *symtab, const char *strtab, uintptr_t ro_start,
                         uintptr_t ro_end, int *count)
{
    size_t i;

    for (i = 0; i < n; i++) {
        unsigned long type = ELF64_R_TYPE(rel[i].r_info);
        const pp_got_hook *h;
        void **slot;

        if (type != R_JUMP_SLOT && type != R_GLOB_DAT) {
            continue;
        }
        h = hook_for(strtab + symtab[ELF64_R_SYM(rel[i].r_info)].st_name);
        if (!h || holds_any(info, h->keep_in)) {
            continue;
        }
        slot = (void **)(info->dlpi_addr + rel[i].r_offset);
        if (*slot == h->replacement) {
            continue;
        }
        if (record_slot(slot, *slot, h->replacement) == 0 &&
            write_slot(slot, h->replacement, ro_start, ro_end) == 0) {
            (*count)++;
        } else if (nslots > 0 && slots[nslots - 1].slot == slot) {
            nslots--;
        }
    }
}

static int patch_object(struct dl_phdr_info *info, size_t size, void *data)
{
    int *count = data, i;
    const ElfW(Dyn) *dyn = NULL, *dynamic = NULL;
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL, *name = info->dlpi_name ? info->dlpi_name : "";
    const ElfW(Rela) *jmprel = NULL, *rela = NULL;
    size_t jmprelsz = 0, relasz = 0;
    uintptr_t ro_start, ro_end;

    int known;

    (void)size;
    last_adds = info->dlpi_adds;
    last_subs = info->dlpi_subs;
    mark_listed_slots(info);
    if (strstr(name, "/ld-linux") || strstr(name, "linux-vdso") ||
        object_contains(info, (uintptr_t)&pp_got_patch)) {
        return 0;
    }
    for (i = 0; i < info->dlpi_phnum; i++) {
        if (info->dlpi_phdr[i].p_type == PT_DYNAMIC) {
            dynamic = (const ElfW(Dyn) *)(info->dlpi_addr + info->dlpi_phdr[i].p_vaddr);
        }
    }
    if (!dynamic) {
        return 0;
    }
    /* Before anything else of it is read or remembered: a copy being loaded is not the
     * copy we may have patched at this address before (that one is gone), and it is not
     * marked seen, so the next pass takes it as new. */
    relro_range(info, &ro_start, &ro_end);
    if (!loader_finished(info, dynamic, ro_start, ro_end)) {
        retry_pending = 1;
        return 0;
    }
    /* Known and as we left it: done. A known object whose slots do not hold our
     * replacements any more is a new copy at the old address; an object not known is new,
     * or known to other hook sets only (pp_got_patch of a new set forgets every object). */
    known = already_patched(info->dlpi_addr, name);
    if (forget_stale_in(info) == 0 && known) {
        return 0;
    }
    for (dyn = dynamic; dyn->d_tag != DT_NULL; dyn++) {
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_STRTAB: strtab = (const char *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_JMPREL: jmprel = (const ElfW(Rela) *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_PLTRELSZ: jmprelsz = dyn->d_un.d_val; break;
        case DT_RELA: rela = (const ElfW(Rela) *)dyn_addr(info, dyn->d_un.d_ptr); break;
        case DT_RELASZ: relasz = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (!symtab || !strtab) {
        return 0;
    }
    if (jmprel) {
        patch_relocs(info, jmprel, jmprelsz / sizeof(ElfW(Rela)), symtab, strtab, ro_start,
                     ro_end, count);
    }
    if (rela) {
        patch_relocs(info, rela, relasz / sizeof(ElfW(Rela)), symtab, strtab, ro_start,
                     ro_end, count);
    }
    if (!known) {
        remember_object(info->dlpi_addr, name);
    }
    return 0;
}

/* A patch pass over every listed object, under lock; again (up to 4 times) with larger
 * tables while one ran out of room. 0, or -1 (out of memory, or /proc unreadable). */
static int run_passes(int *count)
{
    int i;

    for (i = 0; i < 4; i++) {
        if (reserve() != 0) {
            return -1;
        }
        retry_pending = 0;
        if (READ_RO_PAGES() != 0) {
            return -1;
        }
        iterate_objects(patch_object, count);
        sweep_unloaded();
        sweep_slots();
        if (!out_of_room) {
            return 0;
        }
    }
    retry_pending = 1;
    return 0;
}

int pp_got_patch(const pp_got_hook *h, size_t n)
{
    int count = 0;
    size_t i;

    pthread_mutex_lock(&lock);
    for (i = 0; i < nsets && sets[i] != h; i++) {
    }
    if (i == nsets) {
        if (nsets == MAX_SETS) {
            pthread_mutex_unlock(&lock);
            return -1;
        }
        sets[nsets] = h;
        setlen[nsets++] = n;
        /* Objects already patched for other sets must be visited again for this one. */
        nobjects = 0;
    }
    if (run_passes(&count) != 0) {
        pthread_mutex_unlock(&lock);
        return -1;
    }
    pthread_mutex_unlock(&lock);
    pp_log(PP_LOG_DEBUG, "PP0023", "patched %d GOT slots in %zu objects", count, nobjects);
    return count;
}

static int read_counters(struct dl_phdr_info *info, size_t size, void *data)
{
    unsigned long long *c = data;

    (void)size;
    c[0] = info->dlpi_adds;
    c[1] = info->dlpi_subs;
    return 1;
}

int pp_got_refresh(void)
{
    unsigned long long c[2] = { 0, 0 };
    int count = 0;

    if (!nsets) {
        return 0;
    }
    /* Loads and unloads both count: a dlclose and a dlopen may reuse an address. */
    iterate_objects(read_counters, c);
    if (c[0] == __atomic_load_n(&last_adds, __ATOMIC_RELAXED) &&
        c[1] == __atomic_load_n(&last_subs, __ATOMIC_RELAXED) &&
        !__atomic_load_n(&retry_pending, __ATOMIC_RELAXED)) {
        return 0;
    }
    pthread_mutex_lock(&lock);
    if (nsets && run_passes(&count) != 0) {
        retry_pending = 1;
        pthread_mutex_unlock(&lock);
        return -1;
    }
    pthread_mutex_unlock(&lock);
    return count;
}

static int restore_object(struct dl_phdr_info *info, size_t size, void *data)
{
    uintptr_t ro_start, ro_end;
    size_t i;

    (void)size;
    (void)data;
    relro_range(info, &ro_start, &ro_end);
    for (i = 0; i < nslots; i++) {
        if (slots[i].slot && object_contains(info, (uintptr_t)slots[i].slot)) {
            /* Only our own value goes back: someone else may have patched it since. */
            if (*slots[i].slot == slots[i].replacement) {
                write_slot(slots[i].slot, slots[i].original, ro_start, ro_end);
            }
            slots[i].slot = NULL;
        }
    }
    return 0;
}

void pp_got_unpatch(void)
{
    pthread_mutex_lock(&lock);
    /* Through the loader's list: a slot of an object unloaded since is not touched. */
    iterate_objects(restore_object, NULL);
    free(slots);
    slots = NULL;
    nslots = capslots = 0;
    free(objects);
    objects = NULL;
    nobjects = capobjects = 0;
    nsets = 0;
    last_adds = last_subs = 0;
    pthread_mutex_unlock(&lock);
}

size_t pp_got_patched_slots(void)
{
    size_t n;

    pthread_mutex_lock(&lock);
    n = nslots;
    pthread_mutex_unlock(&lock);
    return n;
}

typedef struct {
    uintptr_t addr, lo, hi;
} code_range;

static int find_code(struct dl_phdr_info *info, size_t size, void *data)
{
    code_range *c = data;
    int i;

    (void)size;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        if (ph->p_type == PT_LOAD && (ph->p_flags & PF_X) && c->addr >= lo &&
            c->addr < lo + ph->p_memsz) {
            c->lo = lo;
            c->hi = lo + ph->p_memsz;
            return 1;
        }
    }
    return 0;
}

int pp_got_code_range(const void *addr, uintptr_t *lo, uintptr_t *hi)
{
    code_range c = { (uintptr_t)addr, 0, 0 };

    if (!iterate_objects(find_code, &c)) {
        return -1;
    }
    *lo = c.lo;
    *hi = c.hi;
    return 0;
}
