#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* REG_R14, REG_R15 */
#endif
#include "php_walk.h"

#include "php.h"
#include "zend_globals.h"

#include <signal.h>
#include <stdint.h>
#include <ucontext.h>

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

void pprof_php_walk_init(void *executor_globals)
{
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

/* A zend_string we may read len bytes of; 0 if it is none. */
static inline int string_ok(const zend_string *s)
{
    return plausible(s, 8) && ZSTR_LEN(s) < MAX_STRING;
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

/* op is one of the op_array's opcodes (or no opline at all). */
static inline int in_code(const zend_op_array *oa, const zend_op *op)
{
    uintptr_t base = (uintptr_t)oa->opcodes, p = (uintptr_t)op;

    return plausible(oa->opcodes, 8) && oa->last > 0 && oa->last < (1u << 24) && p >= base &&
           p < base + (uintptr_t)oa->last * sizeof(zend_op) && (p - base) % sizeof(zend_op) == 0;
}

static inline uint64_t mix(uint64_t h, uint64_t v)
{
    h ^= v * 0x9e3779b97f4a7c15ull;
    h = (h << 31) | (h >> 33);
    h *= 0xbf58476d1ce4e5b9ull;
    return h ^ (h >> 29);
}

/* What identifies a string's content without reading it: its address, length and the
 * hash PHP keeps in it (interned strings, as names and file names are, always have it).
 * A freed name whose memory holds another string of the same length and hash would be
 * taken for the old one: a 64-bit hash collision. 0 when PHP has no hash in it. */
static inline uint64_t string_id(const zend_string *s)
{
    zend_ulong h = s->h;

    return h ? mix(mix((uint64_t)(uintptr_t)s, ZSTR_LEN(s)), h) : 0;
}

static const char name_main[] = "{main}", name_include[] = "{include}",
                  name_eval[] = "{eval}";
/* Where PHP's own stack traces say a built-in function is. */
static const char file_internal[] = "[internal function]";

/* One frame of ex, running f. op_reg: the VM's opline register, when ex is the frame in
 * the frame register. -1: f is no function (garbage): the walk stops. */
static int frame_of(pp_interp_frame *out, const zend_execute_data *ex, const zend_function *f,
                    const zend_op *op_reg)
{
    const zend_string *name = f->common.function_name, *file = NULL, *scope_name = NULL;
    const zend_class_entry *scope = f->common.scope;
    uint32_t info = Z_TYPE_INFO(ex->This);
    uint64_t key = 1;
    int kind = 0;

    __builtin_prefetch(name);
    __builtin_prefetch(scope);
    if (f->type != ZEND_INTERNAL_FUNCTION) {
        __builtin_prefetch(f->op_array.filename);
    }
    if (f->type != ZEND_USER_FUNCTION && f->type != ZEND_INTERNAL_FUNCTION &&
        f->type != ZEND_EVAL_CODE) {
        return -1;
    }
    memset(out, 0, sizeof(*out));
    if (name) {
        if (!string_ok(name)) {
            return -1;
        }
        out->name = ZSTR_VAL(name);
        out->name_len = ZSTR_LEN(name);
        key = mix(key, string_id(name));
    } else {
        /* Code outside any function: a script's (the first frame of the chain), an
         * included file's, eval'd code's. */
        kind = f->type == ZEND_EVAL_CODE ? 3 : ex->prev_execute_data ? 2 : 1;
        out->name = kind == 3 ? name_eval : kind == 2 ? name_include : name_main;
        out->name_len = strlen(out->name);
        key = mix(key, (uint64_t)kind << 32);
    }
    if (scope && plausible(scope, 8) && string_ok(scope->name)) {
        scope_name = scope->name;
        out->scope = ZSTR_VAL(scope_name);
        out->scope_len = ZSTR_LEN(scope_name);
        key = mix(key, string_id(scope_name));
    }
    if (f->type != ZEND_INTERNAL_FUNCTION) {
        const zend_op_array *oa = &f->op_array;
        const zend_op *op = op_reg && in_code(oa, op_reg) ? op_reg : ex->opline;
        file = oa->filename;
        if (file && string_ok(file)) {
            out->file = ZSTR_VAL(file);
            out->file_len = ZSTR_LEN(file);
            key = mix(key, string_id(file));
        }
        out->start_line = oa->line_start;
        /* EX(opline) of the newest frame may be stale (saved only before calls) and point
         * anywhere: it is read only when it lies in this function's code. */
        out->line = in_code(oa, op) ? op->lineno : oa->line_start;
        if (info & ZEND_CALL_TOP) {
            out->flags = PP_INTERP_LOOP_END;    /* user code entered by a new execute_ex */
        }
    } else {
        out->file = file_internal;
        out->file_len = sizeof(file_internal) - 1;
    }
    if ((name && !string_id(name)) || (scope_name && !string_id(scope_name)) ||
        (file && out->file && !string_id(file))) {
        out->key = 0;           /* a string PHP has no hash for: found by content */
    } else {
        out->key = mix(mix(key, out->line), out->start_line);
    }
    return 0;
}

int pprof_php_walk(void *baton, const pp_interp_ctx *ctx, pp_interp_frame *frames, int max)
{
    const zend_executor_globals *g = eg;
    const zend_execute_data *ex, *ex_reg = NULL;
    const zend_op *op_reg = NULL;
    int n = 0, steps;

    (void)baton;
    if (!g) {
        return 0;
    }
    if (ctx->ucontext && ctx->leaf_in_loop) {
        vm_registers(ctx->ucontext, &ex_reg, &op_reg);
    }
    ex = *(const zend_execute_data *const volatile *)&g->current_execute_data;
    for (steps = 0; ex && n < max && steps < MAX_STEPS; steps++) {
        const zend_function *f;

        if (!plausible(ex, 8)) {
            break;
        }
        f = ex->func;
        /* What comes next is a chain of dependent loads, each likely a cache miss (the
         * samples are 10 ms of PHP apart): start the next frame's and this function's
         * lines now, so that they overlap (a prefetch never faults). */
        __builtin_prefetch(ex->prev_execute_data);
        __builtin_prefetch(&f->op_array.filename);
        __builtin_prefetch(&f->op_array.opcodes);
        /* zend_call_function's frames have no function: nothing to show. */
        if (f) {
            if (!plausible(f, 8) ||
                frame_of(&frames[n], ex, f, ex == ex_reg ? op_reg : NULL) != 0) {
                break;
            }
            n++;
        }
        ex = ex->prev_execute_data;
    }
    return n;
}
