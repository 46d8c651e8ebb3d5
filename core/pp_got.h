/* Interposition without LD_PRELOAD: rewrite the GOT entries (PLT slots and data
 * references) of chosen functions in every loaded object, so that their calls reach our
 * replacement. Works for objects linked with -z relro -z now (Debian's default): their
 * GOT is read-only after load, so each page is made writable for the patch and restored.
 *
 * Skipped: the dynamic loader, the vDSO, and the object that holds this code (its own
 * calls must reach the originals). Objects loaded later are patched by pp_got_refresh
 * (cheap when nothing was loaded: it compares the loader's adds counter).
 *
 * Not async-signal-safe. Callers serialize: pp_got_* take an internal lock. */
#ifndef PP_GOT_H
#define PP_GOT_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *name;           /* symbol name, e.g. "malloc" */
    void *replacement;
    /* NULL, or a NULL-terminated list of addresses: an object that holds one of them
     * keeps its original for this symbol (e.g. the allocator's own calls to mmap). */
    const void *const *keep_in;
} pp_got_hook;

/* Add a set of hooks (an array that must stay valid until pp_got_unpatch; up to 8 sets
 * from different users) and install every set into every loaded object. Returns the
 * number of GOT slots rewritten, or -1. Calling it again with the same array patches
 * objects loaded since. */
int pp_got_patch(const pp_got_hook *hooks, size_t nhooks);

/* Patch objects loaded since the last patch; 0 when there were none. */
int pp_got_refresh(void);

/* Restore every slot we rewrote (that still holds our replacement) and forget every set. */
void pp_got_unpatch(void);

/* The executable segment [*lo, *hi) of the loaded object that holds addr: hooks use it
 * to drop their own frames from the stacks they record. 0, or -1 if no object holds it. */
int pp_got_code_range(const void *addr, uintptr_t *lo, uintptr_t *hi);

/* Slots currently patched. */
size_t pp_got_patched_slots(void);

#endif
