#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* REG_R14, REG_R15 */
#endif
#include "php_walk.h"

#include "php.h"
#include "zend_globals.h"

#include <signal.h>
#include <stdint.h>
#include <sys/uio.h>
#include <ucontext.h>
#include <unistd.h>

#ifdef ZTS
#error "mod_pprof_php walks a non-ZTS PHP (one global executor); these headers are ZTS"
#endif

/* Steps along the chain, frames skipped included (zend_call_function's frames without a
 * function): a chain that loops on garbage ends here. */
#define MAX_STEPS (2 * PP_INTERP_MAX_FRAMES)
/* A string longer than this is no name: garbage. */
#define MAX_STRING (1u << 20)

#if defined(__x86_64__)
#define USER_TOP (1ull << 47)
#elif defined(__aarch64__)
#define USER_TOP (1ull << 48)
#else
#define USER_TOP UINTPTR_MAX
#endif

static const zend_executor_globals *volatile eg;
/* PHP allocates with Zend MM (no USE_ZEND_ALLOC=0, no custom heap): what it frees is
 * unmapped only through libphp's own munmap calls, which the allocator hooks see. */
static volatile int zend_mm;

void pprof_php_walk_init(void *executor_globals, int uses_zend_mm)
{
    zend_mm = uses_zend_mm;
    eg = executor_globals;
}

const char *pprof_php_walk_version(void)
{
    return PHP_VERSION;
}

static inline int plausible(const void *p, uintptr_t align)
{
    uintptr_t v = (uintptr_t)p;

    return v >= 4096 && v < USER_TOP && (v & (align - 1)) == 0;
}

#define ALWAYS_INLINE inline __attribute__((always_inline))

/* How a frame is read. IN_PLACE: the thread walked is the caller, stopped in a signal
 * handler or allocating, and its linked frames and what they run stay as they are while
 * it is walked. COPIES: another thread, which may wake up and free what is read: every
 * read goes through ctx->read into copies. CHECKED: the caller's own newest frame when it
 * runs an included file's or eval'd code (see walk): read through process_vm_readv, which
 * fails where a read in place would fault; its strings are used in place once their pages
 * are known to be there (nothing can unmap them before they are interned: the thread is
 * the one walking, inside a handler). GUARDED: the same frame when this thread's
 * unmappings are known (ctx->maybe_unmapped, Zend MM): each read is made in place when no
 * range this thread unmapped since its last mark meets it, else as CHECKED. */
enum { IN_PLACE, COPIES, CHECKED, GUARDED };

/* Our own memory read as another process's would be: a page that is gone fails (EFAULT)
 * instead of faulting. A system call, async-signal-safe. */
static int read_checked(void *dst, const void *src, size_t len)
{
    struct iovec local = { dst, len }, remote = { (void *)(uintptr_t)src, len };

    return process_vm_readv(getpid(), &local, 1, &remote, 1, 0) == (ssize_t)len ? 0 : -1;
}

/* Whether the pages of [p, p + len) are there (len at most a page: its first and last
 * byte cover them), in one system call. */
static int readable(const void *p, size_t len)
{
    char two[2];
    struct iovec local = { two, 2 },
                 remote[2] = { { (void *)(uintptr_t)p, 1 },
                               { (void *)((uintptr_t)p + (len ? len - 1 : 0)), 1 } };

    return process_vm_readv(getpid(), &local, 1, remote, 2, 0) == 2;
}

/* Copy len bytes of the interpreter's memory at src, as mode says. */
static ALWAYS_INLINE int fetch(const pp_interp_ctx *ctx, void *dst, const void *src, size_t len,
                               const int mode)
{
    if (mode == IN_PLACE || (mode == GUARDED && !ctx->maybe_unmapped(src, len))) {
        memcpy(dst, src, len);
        return 0;
    }
    return mode == CHECKED || mode == GUARDED ? read_checked(dst, src, len)
                                              : ctx->read(dst, src, len);
}

/* Where a walk of another thread copies the strings its frames point to. */
typedef struct {
    char *next;
    size_t left;
} scratch;

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v * 0x9e3779b97f4a7c15ull;
    h = (h << 31) | (h >> 33);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

/* A string of the frame: its bytes (at most max), and what identifies its content without
 * reading it: its address, length and the hash PHP keeps in it (interned strings, as names
 * and file names are, always have it; a freed name whose memory holds another string of
 * the same length and hash would be taken for the old one: a 64-bit hash collision).
 * *id is 0 when PHP has no hash in it. -1: no string (garbage). */
static ALWAYS_INLINE int string_of(const pp_interp_ctx *ctx, scratch *sc,
                                   const zend_string *s, size_t max, const char **val,
                                   size_t *len, uint64_t *id, const int mode)
{
    zend_ulong h;
    size_t n;

    if (!plausible(s, 8)) {
        return -1;
    }
    if (mode != IN_PLACE) {
        struct {
            zend_refcounted_h gc;
            zend_ulong h;
            size_t len;
        } head;
        if (fetch(ctx, &head, s, sizeof(head), mode) != 0) {
            return -1;
        }
        h = head.h;
        n = head.len;
    } else {
        h = s->h;
        n = ZSTR_LEN(s);
    }
    if (n >= MAX_STRING) {
        return -1;
    }
    *len = n < max ? n : max;
    *id = h ? mix(mix((uint64_t)(uintptr_t)s, n), h) : 0;
    if (mode == IN_PLACE ||
        (mode == GUARDED && !ctx->maybe_unmapped(ZSTR_VAL(s), *len)) ||
        ((mode == CHECKED || mode == GUARDED) && readable(ZSTR_VAL(s), *len))) {
        *val = ZSTR_VAL(s);
        return 0;
    }
    if (mode == CHECKED || mode == GUARDED || *len > sc->left ||
        fetch(ctx, sc->next, ZSTR_VAL(s), *len, mode) != 0) {
        return -1;
    }
    *val = sc->next;
    sc->next += *len;
    sc->left -= *len;
    return 0;
}

/* CHECKED: in one system call, the line at op (if want_line) and the string s (its head
 * and up to max bytes), whose bytes are then used in place. The string is read in two
 * parts split at a page boundary, so that a string that ends just before an unmapped
 * page still reads (process_vm_readv transfers whole parts, up to the first that fails).
 * Returns what was read: 1 the line, 2 the string (*val, *len, *id set). */
#define CHECK_PAGE 4096u        /* a boundary of every page size */

static int checked_line_and_string(const zend_op *op, int want_line, uint32_t *lineno,
                                   const zend_string *s, size_t max, const char **val,
                                   size_t *len, uint64_t *id)
{
    struct {
        zend_refcounted_h gc;
        zend_ulong h;
        size_t len;
        char val[PP_INTERP_MAX_FILE];
    } copy;
    struct iovec local[3], remote[3];
    uintptr_t at = (uintptr_t)s, want = offsetof(zend_string, val) + (max < sizeof(copy.val)
                                                                    ? max : sizeof(copy.val));
    uintptr_t first = CHECK_PAGE - (at & (CHECK_PAGE - 1));
    size_t n = 0, head_at = 0, got = 0, i;
    ssize_t r;
    int out = 0;

    if (want_line) {
        local[n] = (struct iovec){ lineno, sizeof(*lineno) };
        remote[n++] = (struct iovec){ (void *)(uintptr_t)&op->lineno, sizeof(*lineno) };
    }
    head_at = n;
    if (s && plausible(s, 8)) {
        if (first > want) {
            first = want;
        }
        local[n] = (struct iovec){ &copy, first };
        remote[n++] = (struct iovec){ (void *)at, first };
        if (first < want) {
            local[n] = (struct iovec){ (char *)&copy + first, want - first };
            remote[n++] = (struct iovec){ (void *)(at + first), want - first };
        }
    }
    if (n == 0) {
        return 0;
    }
    r = process_vm_readv(getpid(), local, n, remote, n, 0);
    if (r < 0 && want_line && n > 1) {
        /* The line's memory is gone (freed code): the string alone. */
        return checked_line_and_string(op, 0, lineno, s, max, val, len, id);
    }
    if (r <= 0) {
        return 0;
    }
    if (want_line) {
        out |= 1;
        got = sizeof(*lineno);
    }
    for (i = head_at; i < n && got + remote[i].iov_len <= (size_t)r; i++) {
        got += remote[i].iov_len;
    }
    got -= want_line ? sizeof(*lineno) : 0;     /* bytes of the string read */
    if (n > head_at && got >= offsetof(zend_string, val) && copy.len < MAX_STRING) {
        size_t l = copy.len < max ? copy.len : max;
        if (got >= offsetof(zend_string, val) + l) {
            *val = ZSTR_VAL(s);
            *len = l;
            *id = copy.h ? mix(mix((uint64_t)at, copy.len), copy.h) : 0;
            out |= 2;
        }
    }
    return out;
}

/* The registers of PHP's hybrid VM, when the interrupted PC is in execute_ex itself: GCC
 * builds keep the current frame and opline in global registers there (Zend's
 * ZEND_VM_FP_GLOBAL_REG and ZEND_VM_IP_GLOBAL_REG), and EX(opline) in memory is only
 * saved before calls, so the registers are the only exact line of the newest frame. Used
 * only when they agree with the chain (the frame register is a frame of it, the opline
 * lies in its function's code). */
static void vm_registers(const void *ucv, const zend_execute_data **ex, const zend_op **op)
{
    const ucontext_t *uc = ucv;

#if defined(__x86_64__)
    *ex = (const zend_execute_data *)(uintptr_t)uc->uc_mcontext.gregs[REG_R14];
    *op = (const zend_op *)(uintptr_t)uc->uc_mcontext.gregs[REG_R15];
#elif defined(__aarch64__)
    *ex = (const zend_execute_data *)(uintptr_t)uc->uc_mcontext.regs[27];
    *op = (const zend_op *)(uintptr_t)uc->uc_mcontext.regs[28];
#else
    (void)uc;
    *ex = NULL;
    *op = NULL;
#endif
}

/* op is one of the opcodes [opcodes, opcodes + last) of a function. */
static inline int in_code(const zend_op *opcodes, uint32_t last, const zend_op *op)
{
    uintptr_t base = (uintptr_t)opcodes, p = (uintptr_t)op;

    return plausible(opcodes, 8) && last > 0 && last < (1u << 24) && p >= base &&
           p < base + (uintptr_t)last * sizeof(zend_op) && (p - base) % sizeof(zend_op) == 0;
}

static const char name_main[] = "{main}", name_include[] = "{include}",
                  name_eval[] = "{eval}";
/* Where PHP's own stack traces say a built-in function is. */
static const char file_internal[] = "[internal function]";

/* The part of a function every kind has (zend_function.common), and the part of a user
 * function's op_array up to its first line: copied, so that a walk of another thread reads
 * each once, through ctx->read. */
typedef struct {
    zend_uchar type;
    zend_string *function_name;
    zend_class_entry *scope;
} fn_common;

#define OP_ARRAY_HEAD (offsetof(zend_op_array, line_start) + sizeof(uint32_t))

/* One frame of ex, running f. op_reg: the VM's opline register, when ex is the frame in
 * the frame register. -1: f is no function (garbage), or its memory is gone. mode: how f
 * and what it points to are read (a constant: each kind of walk is its own code). */
static ALWAYS_INLINE int frame_of(const pp_interp_ctx *ctx, scratch *sc, pp_interp_frame *out,
                                  const zend_execute_data *ex, const zend_function *f,
                                  const zend_op *op_reg, const int mode)
{
    union {
        zend_op_array oa;
        char bytes[OP_ARRAY_HEAD];
    } u;
    fn_common c;
    const zend_op_array *oa = NULL;
    const zend_class_entry *scope;
    uint32_t info = Z_TYPE_INFO(ex->This);
    uint64_t key = 1, id;
    int kind = 0, unhashed = 0;

    if (mode != IN_PLACE) {
        /* One read of a user function's head holds the common part too; a built-in's
         * struct is shorter, and its end may be the end of a mapping: then the common
         * part alone. */
        if (fetch(ctx, &u, f, OP_ARRAY_HEAD, mode) == 0) {
            oa = &u.oa;
            c.type = u.oa.type;
            c.function_name = u.oa.function_name;
            c.scope = u.oa.scope;
        } else if (fetch(ctx, &c.type, &f->type, sizeof(c.type), mode) != 0 ||
                   fetch(ctx, &c.function_name, &f->common.function_name,
                         sizeof(c.function_name), mode) != 0 ||
                   fetch(ctx, &c.scope, &f->common.scope, sizeof(c.scope), mode) != 0) {
            return -1;
        }
    } else {
        c.type = f->type;
        c.function_name = f->common.function_name;
        c.scope = f->common.scope;
    }
    if (c.type != ZEND_USER_FUNCTION && c.type != ZEND_INTERNAL_FUNCTION &&
        c.type != ZEND_EVAL_CODE) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (c.function_name) {
        if (string_of(ctx, sc, c.function_name, PP_INTERP_MAX_NAME, &out->name,
                      &out->name_len, &id, mode) != 0) {
            return -1;
        }
        key = mix(key, id);
        unhashed |= !id;
    } else {
        /* Code outside any function: a script's (the first frame of the chain), an
         * included file's, eval'd code's. */
        kind = c.type == ZEND_EVAL_CODE ? 3 : ex->prev_execute_data ? 2 : 1;
        out->name = kind == 3 ? name_eval : kind == 2 ? name_include : name_main;
        out->name_len = strlen(out->name);
        key = mix(key, (uint64_t)kind << 32);
    }
    scope = c.scope;
    if (scope && plausible(scope, 8)) {
        zend_string *cname;
        if (mode != IN_PLACE ? fetch(ctx, &cname, &scope->name, sizeof(cname), mode) == 0
                             : (cname = scope->name, 1)) {
            if (string_of(ctx, sc, cname, PP_INTERP_MAX_NAME, &out->scope, &out->scope_len,
                          &id, mode) == 0) {
                key = mix(key, id);
                unhashed |= !id;
            }
        }
    }
    if (c.type != ZEND_INTERNAL_FUNCTION) {
        const zend_op *op;
        uint32_t lineno;

        if (mode == IN_PLACE) {
            oa = &f->op_array;
        } else if (!oa) {
            return -1;      /* a user function's head that cannot be read */
        }
        op = op_reg && in_code(oa->opcodes, oa->last, op_reg) ? op_reg : ex->opline;
        out->start_line = oa->line_start;
        if (mode == CHECKED) {
            /* The file and the line in one system call. */
            int got = checked_line_and_string(op, in_code(oa->opcodes, oa->last, op),
                                              &lineno, oa->filename, PP_INTERP_MAX_FILE,
                                              &out->file, &out->file_len, &id);
            if (got & 2) {
                key = mix(key, id);
                unhashed |= !id;
            }
            out->line = got & 1 ? lineno : oa->line_start;
        } else {
            if (oa->filename && string_of(ctx, sc, oa->filename, PP_INTERP_MAX_FILE,
                                          &out->file, &out->file_len, &id, mode) == 0) {
                key = mix(key, id);
                unhashed |= !id;
            }
            /* EX(opline) of the newest frame may be stale (saved only before calls) and
             * point anywhere: it is read only when it lies in this function's code. */
            out->line = in_code(oa->opcodes, oa->last, op) &&
                        fetch(ctx, &lineno, &op->lineno, sizeof(lineno), mode) == 0
                            ? lineno : oa->line_start;
        }
        if (info & ZEND_CALL_TOP) {
            out->flags = PP_INTERP_LOOP_END;    /* user code entered by a new execute_ex */
        }
    } else {
        out->file = file_internal;
        out->file_len = sizeof(file_internal) - 1;
    }
    /* The function's, not the line's (that is in the PC); a string PHP has no hash for:
     * found by content. */
    out->key = unhashed ? 0 : mix(key, out->start_line);
    return 0;
}

/* A frame whose function PHP may already have freed while the frame is still current:
 * an included file's or eval'd code's (nested code). PHP's leave helper destroys that
 * op_array (its opcodes freed, the struct itself efree'd) before it unlinks the frame, so
 * a sample taken meanwhile (in destroy_op_array or efree, or between them in the helper)
 * finds the newest frame pointing into freed memory, which may be unmapped (a huge block
 * of Zend MM, or glibc's mmap'ed blocks with USE_ZEND_ALLOC=0). Only the newest frame:
 * an older one is suspended in a call, and what it runs stays alive until it returns.
 * A script's own code (ZEND_CALL_TOP) is destroyed after its frame is unlinked. */
static inline int may_be_freed(const zend_execute_data *ex)
{
    return (Z_TYPE_INFO(ex->This) & (ZEND_CALL_CODE | ZEND_CALL_TOP)) == ZEND_CALL_CODE;
}

static ALWAYS_INLINE int walk(const pp_interp_ctx *ctx, pp_interp_frame *frames, int max,
                              const int mode)
{
    const zend_executor_globals *g = eg;
    const zend_execute_data *at, *ex_reg = NULL;
    const zend_op *op_reg = NULL;
    scratch sc = { ctx->scratch, ctx->scratch ? ctx->scratch_len : 0 };
    int n = 0, steps;

    if (!g || fetch(ctx, &at, &g->current_execute_data, sizeof(at), mode) != 0) {
        return 0;
    }
    if (ctx->ucontext && ctx->leaf_in_loop) {
        vm_registers(ctx->ucontext, &ex_reg, &op_reg);
    }
    for (steps = 0; at && n < max && steps < MAX_STEPS; steps++) {
        zend_execute_data copy;
        const zend_execute_data *ex = at;

        if (!plausible(at, 8)) {
            break;
        }
        if (mode != IN_PLACE) {
            if (fetch(ctx, &copy, at, sizeof(copy), mode) != 0) {
                break;
            }
            ex = &copy;
        }
        /* What comes next is a chain of dependent loads, each likely a cache miss (the
         * samples are 10 ms of PHP apart): start the next frame's and this function's
         * lines now, so that they overlap (a prefetch never faults). */
        __builtin_prefetch(ex->prev_execute_data);
        if (ex->func) {         /* no member address of a NULL function (UBSan) */
            __builtin_prefetch(&ex->func->op_array.filename);
            __builtin_prefetch(&ex->func->op_array.opcodes);
        }
        /* zend_call_function's frames have no function: nothing to show. */
        if (ex->func) {
            const zend_op *op = at == ex_reg ? op_reg : NULL;
            int rc;

            if (!plausible(ex->func, 8)) {
                break;
            }
            if (mode == IN_PLACE && steps == 0 && may_be_freed(ex)) {
                /* Its memory may be gone: guarded or checked reads, and if it is, the
                 * frames below are still there to show. */
                rc = ctx->maybe_unmapped && zend_mm
                         ? frame_of(ctx, &sc, &frames[n], ex, ex->func, op, GUARDED)
                         : frame_of(ctx, &sc, &frames[n], ex, ex->func, op, CHECKED);
                n += rc == 0;
            } else {
                if (mode == IN_PLACE && steps == 0 && ctx->unmaps_mark) {
                    /* Every frame's function is alive, so mapped: what this thread
                     * unmaps from now on is what a later sample must avoid. */
                    ctx->unmaps_mark();
                }
                rc = frame_of(ctx, &sc, &frames[n], ex, ex->func, op, mode);
                if (rc != 0) {
                    break;
                }
                n++;
            }
        }
        at = ex->prev_execute_data;
    }
    return n;
}

int pprof_php_walk(void *baton, const pp_interp_ctx *ctx, pp_interp_frame *frames, int max)
{
    (void)baton;
    return ctx->read ? walk(ctx, frames, max, COPIES) : walk(ctx, frames, max, IN_PLACE);
}
