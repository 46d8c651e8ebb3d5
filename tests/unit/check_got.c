#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* dl_iterate_phdr, RTLD_NOLOAD */
#endif
#include "pp_got.h"

#include <check.h>
#include "unit_main.h"
#include <dlfcn.h>
#include <pthread.h>
#include <stdatomic.h>
#include <elf.h>
#include <link.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

/* The core is linked statically into this executable, so pp_got never patches the
 * executable's own GOT: `malloc` called from here is always libc's. Only shared objects
 * are patched; TEST_ALLOCLIB is one that calls malloc through its own GOT. Every test runs
 * in its own forked process (Check's default), so each starts with the library unloaded
 * and nothing patched. */

#if defined(__x86_64__)
#define R_JUMP_SLOT R_X86_64_JUMP_SLOT
#define R_GLOB_DAT R_X86_64_GLOB_DAT
#elif defined(__aarch64__)
#define R_JUMP_SLOT R_AARCH64_JUMP_SLOT
#define R_GLOB_DAT R_AARCH64_GLOB_DAT
#endif

typedef void *(*malloc_fn)(size_t);
typedef void (*free_fn)(void *);

static unsigned long hook_calls;

static void *counting_malloc(size_t n)
{
    __atomic_add_fetch(&hook_calls, 1, __ATOMIC_RELAXED);
    return malloc(n);
}

static unsigned long calls(void)
{
    return __atomic_load_n(&hook_calls, __ATOMIC_RELAXED);
}

static const pp_got_hook malloc_hook[] = { { "malloc", (void *)counting_malloc } };

typedef struct {
    void *handle;
    malloc_fn ppt_malloc;
    free_fn ppt_free;
} alloclib;

static alloclib load_alloclib(void)
{
    alloclib l;

    l.handle = dlopen(TEST_ALLOCLIB, RTLD_NOW);
    ck_assert_msg(l.handle != NULL, "dlopen %s: %s", TEST_ALLOCLIB, dlerror());
    *(void **)&l.ppt_malloc = dlsym(l.handle, "ppt_malloc");
    *(void **)&l.ppt_free = dlsym(l.handle, "ppt_free");
    ck_assert_ptr_nonnull(l.ppt_malloc);
    ck_assert_ptr_nonnull(l.ppt_free);
    return l;
}

static int alloclib_loaded(void)
{
    void *h = dlopen(TEST_ALLOCLIB, RTLD_NOW | RTLD_NOLOAD);

    if (h) {
        dlclose(h);
        return 1;
    }
    return 0;
}

/* Calls of ppt_malloc that reached the hook, out of n. libc's own calls of malloc go
 * through its GOT too (and get patched), and Check's assertions allocate with strdup:
 * nothing but ppt_malloc may run between the two readings of the counter. */
static unsigned long hooked_calls(const alloclib *l, int n)
{
    unsigned long before = calls(), after;
    int i, nulls = 0;

    for (i = 0; i < n; i++) {
        void *p = l->ppt_malloc(64);
        nulls += p == NULL;
        l->ppt_free(p);
    }
    after = calls();
    ck_assert_int_eq(nulls, 0);
    return after - before;
}

START_TEST(patch_reaches_hook_and_unpatch_restores)
{
    alloclib l = load_alloclib();
    int n;

    ck_assert_uint_eq(hooked_calls(&l, 3), 0);
    n = pp_got_patch(malloc_hook, 1);
    ck_assert_int_gt(n, 0);
    ck_assert_uint_gt(pp_got_patched_slots(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 5), 5);
    /* The executable itself is never patched: this is libc's malloc. */
    {
        unsigned long before = calls();
        free(malloc(16));
        ck_assert_uint_eq(calls() - before, 0);
    }
    /* Patching again with the same hooks finds nothing new. */
    ck_assert_int_eq(pp_got_patch(malloc_hook, 1), 0);
    ck_assert_uint_eq(hooked_calls(&l, 2), 2);
    pp_got_unpatch();
    ck_assert_uint_eq(pp_got_patched_slots(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 5), 0);
    dlclose(l.handle);
}
END_TEST

/* RELRO: what the loader made read-only, and the hooked slots found in it. */

#define MAX_OBJECTS 64
#define MAX_SLOTS 8

typedef struct {
    char name[256];
    uintptr_t ro_lo, ro_hi;     /* the pages the loader protects: both ends rounded down */
    void **slots[MAX_SLOTS];    /* GOT slots (JUMP_SLOT, GLOB_DAT) of "malloc" */
    int nslots;
} object_info;

typedef struct {
    object_info obj[MAX_OBJECTS];
    int n;
} objects_info;

static void find_slots(const struct dl_phdr_info *info, const ElfW(Dyn) *dyn, object_info *o)
{
    const ElfW(Sym) *symtab = NULL;
    const char *strtab = NULL;
    const ElfW(Rela) *tab[2] = { NULL, NULL };
    size_t sz[2] = { 0, 0 }, i;
    int t;

    for (; dyn->d_tag != DT_NULL; dyn++) {
        uintptr_t v = dyn->d_un.d_ptr;
        /* glibc relocates d_ptr in memory; be tolerant like pp_got. */
        if (v < info->dlpi_addr) {
            v += info->dlpi_addr;
        }
        switch (dyn->d_tag) {
        case DT_SYMTAB: symtab = (const ElfW(Sym) *)v; break;
        case DT_STRTAB: strtab = (const char *)v; break;
        case DT_JMPREL: tab[0] = (const ElfW(Rela) *)v; break;
        case DT_PLTRELSZ: sz[0] = dyn->d_un.d_val; break;
        case DT_RELA: tab[1] = (const ElfW(Rela) *)v; break;
        case DT_RELASZ: sz[1] = dyn->d_un.d_val; break;
        default: break;
        }
    }
    if (!symtab || !strtab) {
        return;
    }
    for (t = 0; t < 2; t++) {
        for (i = 0; tab[t] && i < sz[t] / sizeof(ElfW(Rela)); i++) {
            unsigned long type = ELF64_R_TYPE(tab[t][i].r_info);
            const char *name = strtab + symtab[ELF64_R_SYM(tab[t][i].r_info)].st_name;
            if ((type == R_JUMP_SLOT || type == R_GLOB_DAT) &&
                strcmp(name, "malloc") == 0 && o->nslots < MAX_SLOTS) {
                o->slots[o->nslots++] = (void **)(info->dlpi_addr + tab[t][i].r_offset);
            }
        }
    }
}

static int collect_object(struct dl_phdr_info *info, size_t size, void *data)
{
    objects_info *oi = data;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    const ElfW(Dyn) *dyn = NULL;
    object_info *o;
    int i;

    (void)size;
    if (oi->n == MAX_OBJECTS) {
        return 0;
    }
    o = &oi->obj[oi->n];
    memset(o, 0, sizeof(*o));
    snprintf(o->name, sizeof(o->name), "%s", info->dlpi_name ? info->dlpi_name : "");
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type == PT_GNU_RELRO) {
            uintptr_t start = info->dlpi_addr + ph->p_vaddr;
            o->ro_lo = start & ~(page - 1);
            o->ro_hi = (start + ph->p_memsz) & ~(page - 1);
        } else if (ph->p_type == PT_DYNAMIC) {
            dyn = (const ElfW(Dyn) *)(info->dlpi_addr + ph->p_vaddr);
        }
    }
    if (dyn && !strstr(o->name, "linux-vdso")) {
        find_slots(info, dyn, o);
    }
    oi->n++;
    return 0;
}

/* Bytes of [lo, hi) that /proc/self/maps lists as writable; the first such range in *at. */
static size_t writable_bytes(uintptr_t lo, uintptr_t hi, uintptr_t *at)
{
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    size_t n = 0;

    ck_assert_ptr_nonnull(f);
    while (fgets(line, sizeof(line), f)) {
        unsigned long s, e;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &s, &e, perms) != 3) {
            continue;
        }
        if (perms[1] == 'w' && s < hi && e > lo) {
            uintptr_t a = s > lo ? s : lo, b = e < hi ? e : hi;
            if (!n) {
                *at = a;
            }
            n += b - a;
        }
    }
    fclose(f);
    return n;
}

static void assert_relro_read_only(const objects_info *oi, const char *when)
{
    int i;

    for (i = 0; i < oi->n; i++) {
        const object_info *o = &oi->obj[i];
        uintptr_t at = 0;
        size_t w;
        if (o->ro_hi <= o->ro_lo) {
            continue;
        }
        w = writable_bytes(o->ro_lo, o->ro_hi, &at);
        ck_assert_msg(w == 0, "%s: %zu bytes of RELRO of '%s' writable, from %#lx", when, w,
                      o->name, (unsigned long)at);
    }
}

static int in_relro(const object_info *o, void **slot)
{
    return (uintptr_t)slot >= o->ro_lo && (uintptr_t)slot < o->ro_hi;
}

/* Debian 12's toolchain links with -z relro but not -z now: the test library's
 * .got.plt (its JUMP_SLOTs, malloc's among them) lies after its RELRO range and stays
 * writable, so patching it would not exercise the read-only restore. The property is
 * tested where a hooked slot does lie in RELRO: libc.so.6 takes malloc's address through
 * a GLOB_DAT slot inside its RELRO range. Every object's RELRO pages must be read-only
 * after patching and after unpatching, and those slots must hold the hook, then the
 * original. */
START_TEST(relro_pages_are_read_only_again_after_patching)
{
    alloclib l = load_alloclib();
    static objects_info oi;
    void *orig[MAX_OBJECTS][MAX_SLOTS];
    int i, j, relro_slots = 0, lib_seen = 0;

    dl_iterate_phdr(collect_object, &oi);
    ck_assert_int_lt(oi.n, MAX_OBJECTS);
    /* The loader's own work, before we touch anything. */
    assert_relro_read_only(&oi, "before patching");
    for (i = 0; i < oi.n; i++) {
        if (strcmp(oi.obj[i].name, TEST_ALLOCLIB) == 0) {
            lib_seen = 1;
            ck_assert_msg(oi.obj[i].ro_hi > oi.obj[i].ro_lo, "test library has no RELRO");
            ck_assert_int_gt(oi.obj[i].nslots, 0);
        }
        for (j = 0; j < oi.obj[i].nslots; j++) {
            orig[i][j] = *oi.obj[i].slots[j];
        }
    }
    ck_assert(lib_seen);

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    assert_relro_read_only(&oi, "after patching");
    for (i = 0; i < oi.n; i++) {
        const object_info *o = &oi.obj[i];
        if (strstr(o->name, "/ld-linux") || o->name[0] == '\0') {
            continue;           /* never patched: the loader, this executable */
        }
        for (j = 0; j < o->nslots; j++) {
            ck_assert_msg(*o->slots[j] == (void *)counting_malloc,
                          "malloc slot %p of '%s' not patched", (void *)o->slots[j], o->name);
            relro_slots += in_relro(o, o->slots[j]);
        }
    }
    ck_assert_msg(relro_slots > 0, "no loaded object has a malloc GOT slot inside RELRO: "
                  "the read-only restore is not exercised on this system");
    ck_assert_uint_eq(hooked_calls(&l, 1), 1);

    pp_got_unpatch();
    assert_relro_read_only(&oi, "after unpatching");
    for (i = 0; i < oi.n; i++) {
        for (j = 0; j < oi.obj[i].nslots; j++) {
            ck_assert_ptr_eq(*oi.obj[i].slots[j], orig[i][j]);
        }
    }
    dlclose(l.handle);
}
END_TEST

START_TEST(library_loaded_later_is_hooked_by_refresh)
{
    alloclib l;

    ck_assert_msg(!alloclib_loaded(), "test library already loaded: run with CK_FORK=yes");
    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    l = load_alloclib();
    ck_assert_uint_eq(hooked_calls(&l, 3), 0);
    ck_assert_int_gt(pp_got_refresh(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 3), 3);
    /* Nothing loaded since. */
    ck_assert_int_eq(pp_got_refresh(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 1), 1);
    pp_got_unpatch();
    ck_assert_uint_eq(hooked_calls(&l, 3), 0);
    dlclose(l.handle);
}
END_TEST

START_TEST(refresh_without_new_objects_returns_zero)
{
    alloclib l = load_alloclib();
    size_t slots;

    /* Nothing patched yet: nothing to refresh. */
    ck_assert_int_eq(pp_got_refresh(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 1), 0);
    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    slots = pp_got_patched_slots();
    ck_assert_int_eq(pp_got_refresh(), 0);
    ck_assert_int_eq(pp_got_refresh(), 0);
    ck_assert_uint_eq(pp_got_patched_slots(), slots);
    ck_assert_uint_eq(hooked_calls(&l, 2), 2);
    pp_got_unpatch();
    /* Unpatched: refresh does nothing, even after a load. */
    ck_assert_int_eq(pp_got_refresh(), 0);
    dlclose(l.handle);
}
END_TEST

static void *never_called(void)
{
    ck_abort_msg("a hook for a symbol nobody imports was called");
    return NULL;
}

START_TEST(hook_nobody_imports_patches_nothing)
{
    static const pp_got_hook none[] = {
        { "pp_test_no_object_imports_this_symbol", (void *)never_called },
    };
    alloclib l = load_alloclib();

    ck_assert_int_eq(pp_got_patch(none, 1), 0);
    ck_assert_uint_eq(pp_got_patched_slots(), 0);
    ck_assert_int_eq(pp_got_refresh(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 2), 0);
    free(malloc(32));
    pp_got_unpatch();
    ck_assert_uint_eq(pp_got_patched_slots(), 0);
    /* And no hooks at all. */
    ck_assert_int_eq(pp_got_patch(none, 0), 0);
    pp_got_unpatch();
    dlclose(l.handle);
}
END_TEST

/* keep_in: an object holding a listed address keeps its original; the others are
 * patched as before. */
START_TEST(keep_in_leaves_the_holding_object_alone)
{
    alloclib l = load_alloclib();
    const void *keep[2] = { NULL, NULL };
    pp_got_hook h[1];
    size_t all, kept;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    all = pp_got_patched_slots();
    ck_assert_uint_eq(hooked_calls(&l, 3), 3);
    pp_got_unpatch();

    keep[0] = (const void *)l.ppt_malloc;
    h[0] = malloc_hook[0];
    h[0].keep_in = keep;
    ck_assert_int_gt(pp_got_patch(h, 1), 0);      /* libc's own slots still */
    kept = pp_got_patched_slots();
    ck_assert_uint_lt(kept, all);
    ck_assert_uint_eq(hooked_calls(&l, 3), 0);
    pp_got_unpatch();
    dlclose(l.handle);
}
END_TEST

static unsigned long free_hook_calls;

static void counting_free(void *p)
{
    __atomic_add_fetch(&free_hook_calls, 1, __ATOMIC_RELAXED);
    free(p);
}

static const pp_got_hook free_hook[] = { { "free", (void *)counting_free } };

/* A second hook set revisits every object: the slots the first set patched there must
 * stay recorded, or unpatching leaves them leading into code that is about to be
 * unloaded (httpd's graceful restart unloads mod_pprof right after: its parent died
 * so when the visit for a new set forgot them). */
START_TEST(unpatch_restores_every_set_patched_one_after_the_other)
{
    alloclib l = load_alloclib();
    unsigned long before;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    ck_assert_int_gt(pp_got_patch(free_hook, 1), 0);
    ck_assert_uint_eq(hooked_calls(&l, 3), 3);
    before = __atomic_load_n(&free_hook_calls, __ATOMIC_RELAXED);
    l.ppt_free(l.ppt_malloc(8));
    ck_assert_uint_eq(__atomic_load_n(&free_hook_calls, __ATOMIC_RELAXED) - before, 1);
    pp_got_refresh();
    pp_got_unpatch();
    ck_assert_uint_eq(pp_got_patched_slots(), 0);
    ck_assert_uint_eq(hooked_calls(&l, 3), 0);
    before = __atomic_load_n(&free_hook_calls, __ATOMIC_RELAXED);
    l.ppt_free(l.ppt_malloc(8));
    ck_assert_uint_eq(__atomic_load_n(&free_hook_calls, __ATOMIC_RELAXED) - before, 0);
    dlclose(l.handle);
}
END_TEST

START_TEST(reloaded_library_is_patched_again_by_refresh)
{
    alloclib l = load_alloclib();
    void *first = (void *)l.ppt_malloc;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    ck_assert_uint_eq(hooked_calls(&l, 2), 2);
    ck_assert_int_eq(dlclose(l.handle), 0);
    ck_assert_msg(!alloclib_loaded(), "dlclose did not unload the test library");
    l = load_alloclib();
    /* A fresh copy, its GOT freshly relocated to libc's malloc. */
    ck_assert_uint_eq(hooked_calls(&l, 2), 0);
    ck_assert_msg(pp_got_refresh() > 0,
                  "refresh patched nothing in the reloaded library (loaded %s the old address)",
                  (void *)l.ppt_malloc == first ? "at" : "away from");
    ck_assert_uint_eq(hooked_calls(&l, 2), 2);
    pp_got_unpatch();
    ck_assert_uint_eq(hooked_calls(&l, 2), 0);
    dlclose(l.handle);
}
END_TEST

/* The same, with a refresh while the library is unloaded. */
START_TEST(refresh_between_unload_and_reload)
{
    alloclib l = load_alloclib();
    void *first = (void *)l.ppt_malloc;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    ck_assert_uint_eq(hooked_calls(&l, 2), 2);
    ck_assert_int_eq(dlclose(l.handle), 0);
    ck_assert_msg(!alloclib_loaded(), "dlclose did not unload the test library");
    ck_assert_int_eq(pp_got_refresh(), 0);
    l = load_alloclib();
    ck_assert_uint_eq(hooked_calls(&l, 2), 0);
    ck_assert_msg(pp_got_refresh() > 0,
                  "refresh patched nothing in the reloaded library (loaded %s the old address)",
                  (void *)l.ppt_malloc == first ? "at" : "away from");
    ck_assert_uint_eq(hooked_calls(&l, 2), 2);
    pp_got_unpatch();
    ck_assert_uint_eq(hooked_calls(&l, 2), 0);
    dlclose(l.handle);
}
END_TEST

static const object_info *find_object(objects_info *oi, const char *name)
{
    int i;

    oi->n = 0;
    dl_iterate_phdr(collect_object, oi);
    for (i = 0; i < oi->n; i++) {
        if (strcmp(oi->obj[i].name, name) == 0) {
            return &oi->obj[i];
        }
    }
    return NULL;
}

/* dl_iterate_phdr lists an object while the loader is still relocating it (a dlopen in
 * another thread). Patching it then races the loader's own writes, and making its RELRO
 * pages read-only after the patch makes the loader's next write fault: an Apache child
 * died so in libdw's dlopen of libdebuginfod while its agent refreshed. Such an object is
 * left alone until the loader says it is done (_dl_find_object); the next refresh takes
 * it. Here a refresh runs from inside the loader's relocation of TEST_RELOCLIB (its IFUNC
 * resolver calls during_relocation). */
static objects_info reloc_oi;
static int in_reloc_calls, in_reloc_listed, in_reloc_rc;
static size_t in_reloc_writable, in_reloc_relro;

static void during_relocation(void)
{
    const object_info *o = find_object(&reloc_oi, TEST_RELOCLIB);
    uintptr_t at = 0;

    in_reloc_calls++;
    in_reloc_listed = o != NULL;
    in_reloc_rc = pp_got_refresh();
    if (o) {
        in_reloc_relro = o->ro_hi - o->ro_lo;
        in_reloc_writable = writable_bytes(o->ro_lo, o->ro_hi, &at);
    }
}

START_TEST(object_still_being_relocated_is_left_for_later)
{
    char hex[32];
    void *h;
    void *(*m)(size_t);
    void (*f)(void *);
    unsigned long before;
    uintptr_t at = 0;
    const object_info *o;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);      /* libc and others */
    snprintf(hex, sizeof(hex), "%lx", (unsigned long)(uintptr_t)during_relocation);
    ck_assert_int_eq(setenv("PPT_DURING_RELOCATION", hex, 1), 0);
    h = dlopen(TEST_RELOCLIB, RTLD_NOW);
    unsetenv("PPT_DURING_RELOCATION");
    ck_assert_msg(h != NULL, "dlopen %s: %s", TEST_RELOCLIB, dlerror());
    ck_assert_int_eq(in_reloc_calls, 1);
    ck_assert_msg(in_reloc_listed, "the library was not listed while being relocated");
    /* The half-relocated library was not touched: nothing patched, its RELRO pages left
     * as the loader had them (writable until it protects them itself). */
    ck_assert_int_eq(in_reloc_rc, 0);
    ck_assert_uint_gt(in_reloc_relro, 0);
    ck_assert_uint_eq(in_reloc_writable, in_reloc_relro);
    *(void **)&m = dlsym(h, "ppt_reloc_malloc");
    *(void **)&f = dlsym(h, "ppt_reloc_free");
    before = calls();
    f(m(16));
    ck_assert_uint_eq(calls() - before, 0);
    /* The loader is done: the next refresh takes it, and its RELRO is read-only again. */
    ck_assert_int_gt(pp_got_refresh(), 0);
    before = calls();
    f(m(16));
    ck_assert_uint_eq(calls() - before, 1);
    o = find_object(&reloc_oi, TEST_RELOCLIB);
    ck_assert_ptr_nonnull(o);
    ck_assert_uint_eq(writable_bytes(o->ro_lo, o->ro_hi, &at), 0);
    ck_assert_int_eq(pp_got_refresh(), 0);
    pp_got_unpatch();
    dlclose(h);
}
END_TEST

static _Atomic int loader_done;
static _Atomic long beside_refreshes;

/* 300 rounds, and on until 10 refreshes were made meanwhile (3000 at most): on a loaded
 * machine the refreshing thread may not run at all during the 300 (70 ms under ASan). */
static void *load_and_unload(void *arg)
{
    int i;

    (void)arg;
    for (i = 0; i < 3000 && (i < 300 || atomic_load(&beside_refreshes) < 10); i++) {
        void *h = dlopen(TEST_ALLOCLIB_NOW, RTLD_NOW);
        if (h) {
            void *(*m)(size_t) = (void *(*)(size_t))dlsym(h, "ppt_malloc");
            void (*f)(void *) = (void (*)(void *))dlsym(h, "ppt_free");
            if (m && f) {
                f(m(16));
            }
            dlclose(h);
        }
    }
    atomic_store(&loader_done, 1);
    return NULL;
}

/* The real race: one thread loads and unloads a -z now library over and over while
 * another refreshes. Before the fix this died in elf_machine_rela within a few rounds. */
START_TEST(refresh_beside_dlopen_never_breaks_the_loader)
{
    pthread_t t;
    long refreshes = 0;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    atomic_store(&loader_done, 0);
    atomic_store(&beside_refreshes, 0);
    ck_assert_int_eq(pthread_create(&t, NULL, load_and_unload, NULL), 0);
    while (!atomic_load(&loader_done)) {
        pp_got_refresh();
        refreshes++;
        atomic_store(&beside_refreshes, refreshes);
    }
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    /* Refreshes did run beside the loads. */
    ck_assert_int_ge(refreshes, 10);
    pp_got_unpatch();
}
END_TEST

/* The loader's side of that race, at full size: one thread loads and unloads a library
 * whose relocation takes the loader about a hundred microseconds (TEST_RELOCLIB: 32768
 * relative relocations in RELRO before its GOT), another refreshes without pause. It
 * comes back at the address it left, so a look at the process's read-only pages taken
 * before the pass began still shows the last copy's RELRO as read-only while the pass
 * meets the new copy half relocated: a check made on such a picture patched it and made
 * its GOT page read-only under the loader, which then faulted writing the next slot (the
 * soak's crashed children: libdw's dlopen of libdebuginfod beside a heap snapshot). Only
 * an object the loader says it has finished (_dl_find_object) may be patched. */
static _Atomic int reloc_done;
static _Atomic long reloc_loads;

static void *load_and_unload_slowly(void *arg)
{
    struct timespec t0, now;
    int i;

    (void)arg;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0; i < 4000; i++) {
        void *h = dlopen(TEST_RELOCLIB, RTLD_NOW);
        if (h) {
            void *(*m)(size_t) = (void *(*)(size_t))dlsym(h, "ppt_reloc_malloc");
            void (*f)(void *) = (void (*)(void *))dlsym(h, "ppt_reloc_free");
            if (m && f) {
                f(m(16));
            }
            dlclose(h);
            atomic_fetch_add(&reloc_loads, 1);
        }
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - t0.tv_sec >= 2) {
            break;
        }
    }
    atomic_store(&reloc_done, 1);
    return NULL;
}

START_TEST(refresh_beside_a_slow_relocation_never_breaks_the_loader)
{
    pthread_t t;
    long refreshes = 0;
    void *h;
    void *(*m)(size_t);
    void (*f)(void *);
    unsigned long before;

    ck_assert_int_gt(pp_got_patch(malloc_hook, 1), 0);
    atomic_store(&reloc_done, 0);
    ck_assert_int_eq(pthread_create(&t, NULL, load_and_unload_slowly, NULL), 0);
    while (!atomic_load(&reloc_done)) {
        pp_got_refresh();
        refreshes++;
    }
    ck_assert_int_eq(pthread_join(t, NULL), 0);
    ck_assert_int_gt(refreshes, 0);
    ck_assert_int_gt(atomic_load(&reloc_loads), 100);
    /* And a copy the loader has finished is patched, by the next refresh at the latest. */
    h = dlopen(TEST_RELOCLIB, RTLD_NOW);
    ck_assert_ptr_nonnull(h);
    *(void **)&m = dlsym(h, "ppt_reloc_malloc");
    *(void **)&f = dlsym(h, "ppt_reloc_free");
    pp_got_refresh();
    before = calls();
    f(m(16));
    ck_assert_uint_eq(calls() - before, 1);
    dlclose(h);
    pp_got_unpatch();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("pp_got");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 10);      /* the stress tests load for 2 s on a loaded machine */
    tcase_add_test(tc, patch_reaches_hook_and_unpatch_restores);
    tcase_add_test(tc, relro_pages_are_read_only_again_after_patching);
    tcase_add_test(tc, library_loaded_later_is_hooked_by_refresh);
    tcase_add_test(tc, refresh_without_new_objects_returns_zero);
    tcase_add_test(tc, hook_nobody_imports_patches_nothing);
    tcase_add_test(tc, keep_in_leaves_the_holding_object_alone);
    tcase_add_test(tc, unpatch_restores_every_set_patched_one_after_the_other);
    tcase_add_test(tc, reloaded_library_is_patched_again_by_refresh);
    tcase_add_test(tc, refresh_between_unload_and_reload);
    tcase_add_test(tc, object_still_being_relocated_is_left_for_later);
    tcase_add_test(tc, refresh_beside_dlopen_never_breaks_the_loader);
    tcase_add_test(tc, refresh_beside_a_slow_relocation_never_breaks_the_loader);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
