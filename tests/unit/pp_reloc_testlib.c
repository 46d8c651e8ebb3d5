/* A -z now library that the loader takes a while to relocate, for the tests of GOT
 * patching beside dlopen: a read-only table of 32768 pointers (.data.rel.ro, in RELRO) is
 * one relative relocation each, which the loader applies before it writes the GOT (its
 * malloc and free slots, on the last RELRO page). An object listed by dl_iterate_phdr
 * but still being relocated is then easy to meet: about a hundred microseconds per load
 * instead of a few. */
#include <stdlib.h>

void *ppt_reloc_malloc(size_t n);
void ppt_reloc_free(void *p);
extern void *const ppt_reloc_table[];

static int anchor;

#define P1 (void *)&anchor,
#define P8 P1 P1 P1 P1 P1 P1 P1 P1
#define P64 P8 P8 P8 P8 P8 P8 P8 P8
#define P512 P64 P64 P64 P64 P64 P64 P64 P64
#define P4096 P512 P512 P512 P512 P512 P512 P512 P512
#define P32768 P4096 P4096 P4096 P4096 P4096 P4096 P4096 P4096

void *const ppt_reloc_table[] = { P32768 };

__attribute__((noinline)) void *ppt_reloc_malloc(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void ppt_reloc_free(void *p)
{
    free(p);
    __asm__ volatile("" ::: "memory");
}

/* A probe the loader resolves while it relocates this library (an IFUNC, whose resolver
 * the loader runs for the IRELATIVE relocation the linker puts after every other one of
 * .rela.dyn): if PPT_DURING_RELOCATION holds a function's address in hex, the resolver
 * calls it, so a test can look at the process while this copy is listed by
 * dl_iterate_phdr but not finished. Only environ is read (its GOT slot is relocated
 * before), no call goes through the PLT (its slots are not). */
extern char **environ;

static void probe_impl(void)
{
}

/* Not instrumented (the sanitizer build): it runs inside the loader's relocation of this
 * library, where only what is relocated already may be used. */
__attribute__((no_sanitize("address", "undefined")))
static void (*resolve_probe(void))(void)
{
    static const char key[] = "PPT_DURING_RELOCATION=";
    char **e;

    for (e = environ; e && *e; e++) {
        const char *s = *e;
        unsigned long v = 0;
        size_t i;

        for (i = 0; key[i] && s[i] == key[i]; i++) {
        }
        if (key[i]) {
            continue;
        }
        for (s += i; *s; s++) {
            int d = *s >= '0' && *s <= '9' ? *s - '0' : *s >= 'a' && *s <= 'f' ? *s - 'a' + 10 : -1;
            if (d < 0) {
                break;
            }
            v = v * 16 + (unsigned long)d;
        }
        if (v) {
            ((void (*)(void))v)();
        }
    }
    return probe_impl;
}

static void ppt_reloc_probe(void) __attribute__((ifunc("resolve_probe"), used));
void (*const ppt_reloc_probe_ptr)(void) = ppt_reloc_probe;
