#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* process_vm_readv, dl_iterate_phdr */
#endif
#include "pp_regunwind.h"
#include "pp_cpu.h"
#include "pp_threads.h"

#if defined(__x86_64__)

/* The remote (generic) interface: unw_* name the _Ux86_64_* functions here. */
#include <libunwind.h>

#include <elf.h>
#include <link.h>
#include <pthread.h>
#include <signal.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

/* libunwind's binary search of an eh_frame_hdr table, exported by libunwind-generic (its
 * ptrace and core-dump accessors call it) but declared in no public header. */
extern int UNW_OBJ(dwarf_search_unwind_table)(unw_addr_space_t as, unw_word_t ip,
                                              unw_dyn_info_t *di, unw_proc_info_t *pi,
                                              int need_unwind_info, void *arg);

/* A small cache of pages read with process_vm_readv, valid for one walk: libunwind reads
 * word by word, mostly from a few pages (the stack, the CFI of a few functions). */
#define PAGE 4096u
#define CACHED 16u

typedef struct {
    uint64_t page;              /* page address + 1; 0: empty */
    unsigned char data[PAGE];
} cached_page;

typedef struct {
    uint64_t sp, pc;
} walk;

static cached_page cache[CACHED];
static pid_t self_pid;
static unw_addr_space_t space;

static int read_page(uint64_t page, const unsigned char **out)
{
    cached_page *c = &cache[(page / PAGE) % CACHED];

    if (c->page != page + 1) {
        struct iovec local = { c->data, PAGE }, remote = { (void *)(uintptr_t)page, PAGE };
        c->page = 0;
        if (process_vm_readv(self_pid, &local, 1, &remote, 1, 0) != (ssize_t)PAGE) {
            return -1;
        }
        c->page = page + 1;
    }
    *out = c->data;
    return 0;
}

static int access_mem(unw_addr_space_t as, unw_word_t addr, unw_word_t *val, int write,
                      void *arg)
{
    uint64_t page = addr & ~(uint64_t)(PAGE - 1), off = addr - page;
    const unsigned char *d;
    unsigned char word[sizeof(unw_word_t)];

    (void)as;
    (void)arg;
    if (write) {
        return -UNW_EINVAL;
    }
    if (read_page(page, &d) != 0) {
        return -UNW_EINVAL;
    }
    if (off + sizeof(word) <= PAGE) {
        memcpy(word, d + off, sizeof(word));
    } else {
        size_t first = PAGE - off;
        memcpy(word, d + off, first);
        if (read_page(page + PAGE, &d) != 0) {
            return -UNW_EINVAL;
        }
        memcpy(word + first, d, sizeof(word) - first);
    }
    memcpy(val, word, sizeof(word));
    return 0;
}

static int access_reg(unw_addr_space_t as, unw_regnum_t reg, unw_word_t *val, int write,
                      void *arg)
{
    const walk *w = arg;

    (void)as;
    if (write) {
        return -UNW_EINVAL;
    }
    if (reg == UNW_X86_64_RIP) {
        *val = w->pc;
    } else if (reg == UNW_X86_64_RSP) {
        *val = w->sp;
    } else {
        return -UNW_EBADREG;    /* not known: a frame that needs it ends the walk */
    }
    return 0;
}

static int access_fpreg(unw_addr_space_t as, unw_regnum_t reg, unw_fpreg_t *val, int write,
                        void *arg)
{
    (void)as;
    (void)reg;
    (void)val;
    (void)write;
    (void)arg;
    return -UNW_EBADREG;
}

static int resume(unw_addr_space_t as, unw_cursor_t *c, void *arg)
{
    (void)as;
    (void)c;
    (void)arg;
    return -UNW_EINVAL;
}

static int get_proc_name(unw_addr_space_t as, unw_word_t addr, char *buf, size_t len,
                         unw_word_t *off, void *arg)
{
    (void)as;
    (void)addr;
    (void)buf;
    (void)len;
    (void)off;
    (void)arg;
    return -UNW_ENOINFO;        /* names come from pp_symbolize, later */
}

static int get_dyn_info_list_addr(unw_addr_space_t as, unw_word_t *addr, void *arg)
{
    (void)as;
    (void)addr;
    (void)arg;
    return -UNW_ENOINFO;
}

static void put_unwind_info(unw_addr_space_t as, unw_proc_info_t *pi, void *arg)
{
    /* libunwind frees what its table search allocated itself. */
    (void)as;
    (void)pi;
    (void)arg;
}

/* DWARF pointer encodings, as far as an eh_frame_hdr uses them. */
#define PE_OMIT 0xff
#define PE_DATAREL_SDATA4 0x3b

/* The size of a value of encoding enc, 0 if not one we read. */
static size_t enc_size(unsigned char enc)
{
    switch (enc & 0x0f) {
    case 0x00:
    case 0x04:
    case 0x0c:
        return 8;
    case 0x03:
    case 0x0b:
        return 4;
    case 0x02:
    case 0x0a:
        return 2;
    default:
        return 0;
    }
}

typedef struct {
    uint64_t ip;
    int found;
    unw_dyn_info_t di;
} lookup;

/* The object holding ip, and its eh_frame_hdr search table. Runs under the loader's lock:
 * the object cannot go away while its headers are read here. */
static int find_object(struct dl_phdr_info *info, size_t size, void *data)
{
    lookup *lk = data;
    const ElfW(Phdr) *hdr = NULL;
    uint64_t lo = UINT64_MAX, hi = 0;
    int holds = 0, i;
    const unsigned char *h, *p;
    size_t s;
    uint64_t count = 0;

    (void)size;
    for (i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uint64_t start = info->dlpi_addr + ph->p_vaddr, end = start + ph->p_memsz;
        if (ph->p_type == PT_LOAD) {
            if (lk->ip >= start && lk->ip < end) {
                holds = 1;
            }
            if (ph->p_flags & PF_X) {
                lo = start < lo ? start : lo;
                hi = end > hi ? end : hi;
            }
        } else if (ph->p_type == PT_GNU_EH_FRAME) {
            hdr = ph;
        }
    }
    if (!holds) {
        return 0;
    }
    lk->found = -1;             /* the object is found; its table may still be unusable */
    if (!hdr) {
        return 1;
    }
    /* version, eh_frame_ptr encoding, fde_count encoding, table encoding */
    h = (const unsigned char *)(uintptr_t)(info->dlpi_addr + hdr->p_vaddr);
    if (h[0] != 1 || h[3] != PE_DATAREL_SDATA4 || h[2] == PE_OMIT || h[1] == PE_OMIT ||
        !(s = enc_size(h[1])) || (h[2] & 0x70) != 0 || !enc_size(h[2])) {
        return 1;
    }
    p = h + 4 + s;
    switch (enc_size(h[2])) {
    case 2: {
        uint16_t v;
        memcpy(&v, p, 2);
        count = v;
        break;
    }
    case 4: {
        uint32_t v;
        memcpy(&v, p, 4);
        count = v;
        break;
    }
    default:
        memcpy(&count, p, 8);
        break;
    }
    p += enc_size(h[2]);
    memset(&lk->di, 0, sizeof(lk->di));
    lk->di.format = UNW_INFO_FORMAT_REMOTE_TABLE;
    lk->di.start_ip = lo;
    lk->di.end_ip = hi;
    lk->di.u.rti.segbase = (unw_word_t)(uintptr_t)h;
    /* In words, as libunwind counts it: two 4-byte entries per FDE. */
    lk->di.u.rti.table_len = (unw_word_t)(count * 8 / sizeof(unw_word_t));
    lk->di.u.rti.table_data = (unw_word_t)(uintptr_t)p;
    lk->found = 1;
    return 1;
}

static int find_proc_info(unw_addr_space_t as, unw_word_t ip, unw_proc_info_t *pi,
                          int need_unwind_info, void *arg)
{
    sigset_t ours, old;
    lookup lk;

    memset(&lk, 0, sizeof(lk));
    lk.ip = ip;
    /* With our own signals blocked, as pp_got's passes: a CPU sample taken here would
     * unwind and wait for libunwind's cache lock, whose holder (a worker's sample, in
     * libunwind's own dl_iterate_phdr) waits for the loader's lock that this iteration
     * holds. Found by the PHP soak: a child hung for good, its agent in this callback and
     * its worker in a sample. */
    sigemptyset(&ours);
    sigaddset(&ours, pp_cpu_signal());
    sigaddset(&ours, pp_threads_signal());
    pthread_sigmask(SIG_BLOCK, &ours, &old);
    dl_iterate_phdr(find_object, &lk);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (lk.found != 1 || ip < lk.di.start_ip || ip >= lk.di.end_ip) {
        return -UNW_ENOINFO;
    }
    return UNW_OBJ(dwarf_search_unwind_table)(as, ip, &lk.di, pi, need_unwind_info, arg);
}

static unw_accessors_t accessors = {
    .find_proc_info = find_proc_info,
    .put_unwind_info = put_unwind_info,
    .get_dyn_info_list_addr = get_dyn_info_list_addr,
    .access_mem = access_mem,
    .access_reg = access_reg,
    .access_fpreg = access_fpreg,
    .resume = resume,
    .get_proc_name = get_proc_name,
};

static void make_space(void)
{
    if ((space = unw_create_addr_space(&accessors, 0))) {
        /* Nothing kept between walks: objects come and go (dlopen, dlclose). */
        unw_set_caching_policy(space, UNW_CACHE_NONE);
    }
}

int pp_regunwind(uint64_t sp, uint64_t pc, uint64_t *pcs, int max)
{
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    unw_cursor_t cur;
    walk w = { sp, pc };
    unsigned i;
    int n = 0;

    if (max < 1 || pc == 0) {
        return 0;
    }
    pcs[n++] = pc;
    pthread_once(&once, make_space);
    if (!space) {
        return n;
    }
    /* After a fork the pid is another: read the process we are. */
    self_pid = getpid();
    for (i = 0; i < CACHED; i++) {
        cache[i].page = 0;
    }
    if (unw_init_remote(&cur, space, &w) != 0) {
        return n;
    }
    while (n < max && unw_step(&cur) > 0) {
        unw_word_t ip;
        if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0) {
            break;
        }
        pcs[n++] = (uint64_t)ip;
    }
    return n;
}

#else

int pp_regunwind(uint64_t sp, uint64_t pc, uint64_t *pcs, int max)
{
    (void)sp;
    if (max < 1 || pc == 0) {
        return 0;
    }
    pcs[0] = pc;
    return 1;
}

#endif
