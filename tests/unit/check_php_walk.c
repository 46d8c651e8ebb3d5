/* The PHP frame walk (mod_pprof_php/php_walk.c) on frame chains built here with PHP's own
 * types (its headers, as the module is built with): names, files, lines, the VM's
 * registers, loop boundaries, keys, and chains that are torn or garbage. No PHP runs:
 * only its structures are used. Built when configure found PHP's headers. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "php_walk.h"

#include "php.h"
#include "zend_globals.h"

#include <check.h>
#include "unit_main.h"
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#define NOPS 10

/* Every block a test builds is kept here and freed when the test ends (the sanitizer
 * pass runs the suites under LeakSanitizer). */
static void *kept[4096];
static size_t nkept;

static void *keep(void *p)
{
    ck_assert_ptr_nonnull(p);
    ck_assert_uint_lt(nkept, sizeof(kept) / sizeof(kept[0]));
    kept[nkept++] = p;
    return p;
}

static void *tcalloc(size_t n, size_t size)
{
    return keep(calloc(n, size));
}

static void free_kept(void)
{
    while (nkept > 0) {
        free(kept[--nkept]);
    }
}

static zend_string *zs(const char *s, zend_ulong h)
{
    size_t n = strlen(s);
    zend_string *z = keep(aligned_alloc(8, (_ZSTR_STRUCT_SIZE(n) + 7) & ~(size_t)7));

    memset(z, 0, _ZSTR_STRUCT_SIZE(n));
    z->gc.refcount = 1;
    z->h = h;
    z->len = n;
    memcpy(ZSTR_VAL(z), s, n + 1);
    return z;
}

/* A user function whose opcode i is on line first_line + i. */
static zend_function *user_fn(const char *name, const char *file, uint32_t first_line,
                              zend_class_entry *scope)
{
    zend_function *f = tcalloc(1, sizeof(*f));
    uint32_t i;

    f->op_array.type = ZEND_USER_FUNCTION;
    f->op_array.function_name = name ? zs(name, 0x1000 + first_line) : NULL;
    f->op_array.scope = scope;
    f->op_array.filename = zs(file, 0x2000 + strlen(file));
    f->op_array.line_start = first_line;
    f->op_array.last = NOPS;
    f->op_array.opcodes = tcalloc(NOPS, sizeof(zend_op));
    for (i = 0; i < NOPS; i++) {
        f->op_array.opcodes[i].lineno = first_line + i;
    }
    return f;
}

static zend_function *internal_fn(const char *name)
{
    zend_function *f = tcalloc(1, sizeof(*f));

    f->internal_function.type = ZEND_INTERNAL_FUNCTION;
    f->internal_function.function_name = zs(name, 0x3000);
    return f;
}

static zend_class_entry *class_named(const char *name)
{
    zend_class_entry *ce = tcalloc(1, sizeof(*ce));

    ce->name = zs(name, 0x4000);
    return ce;
}

/* Frames are pushed newest last; each one's prev is the one pushed before. */
typedef struct {
    zend_executor_globals *eg;
    zend_execute_data *ex[16];
    int n;
} chain;

static chain *chain_new(void)
{
    chain *c = tcalloc(1, sizeof(*c));

    c->eg = tcalloc(1, sizeof(*c->eg));
    pprof_php_walk_init(c->eg, 0);
    return c;
}

static zend_execute_data *push(chain *c, zend_function *f, int op_index, uint32_t call_info)
{
    zend_execute_data *ex = tcalloc(1, sizeof(*ex));

    ex->func = f;
    if (f && f->type != ZEND_INTERNAL_FUNCTION && op_index >= 0) {
        ex->opline = &f->op_array.opcodes[op_index];
    }
    Z_TYPE_INFO(ex->This) = call_info;
    ex->prev_execute_data = c->n ? c->ex[c->n - 1] : NULL;
    c->ex[c->n++] = ex;
    c->eg->current_execute_data = ex;
    return ex;
}

static int walk(const void *uc, int leaf_in_loop, pp_interp_frame *fr, int max)
{
    pp_interp_ctx ctx = { uc, leaf_in_loop, 1 };

    return pprof_php_walk(NULL, &ctx, fr, max);
}

static void assert_frame(const pp_interp_frame *f, const char *scope, const char *name,
                         const char *file, uint32_t line, uint32_t start, uint32_t flags)
{
    ck_assert_uint_eq(f->name_len, strlen(name));
    ck_assert_int_eq(memcmp(f->name, name, f->name_len), 0);
    if (scope) {
        ck_assert_uint_eq(f->scope_len, strlen(scope));
        ck_assert_int_eq(memcmp(f->scope, scope, f->scope_len), 0);
    } else {
        ck_assert_uint_eq(f->scope_len, 0);
    }
    ck_assert_uint_eq(f->file_len, strlen(file));
    ck_assert_int_eq(memcmp(f->file, file, f->file_len), 0);
    ck_assert_uint_eq(f->line, line);
    ck_assert_uint_eq(f->start_line, start);
    ck_assert_uint_eq(f->flags, flags);
}

/* hot.php: {main} calls php_alpha (on its line 5), which calls strlen (on its line 4). */
static chain *hot(void)
{
    chain *c = chain_new();

    push(c, user_fn(NULL, "/srv/hot.php", 1, NULL), 4, ZEND_CALL_TOP_CODE);
    push(c, user_fn("php_alpha", "/srv/hot.php", 2, NULL), 2, ZEND_CALL_NESTED_FUNCTION);
    push(c, internal_fn("strlen"), -1, ZEND_CALL_NESTED_FUNCTION);
    return c;
}

START_TEST(a_chain_is_named_newest_first_with_files_and_lines)
{
    pp_interp_frame fr[8];

    ck_assert_ptr_nonnull(hot());
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 3);
    assert_frame(&fr[0], NULL, "strlen", "[internal function]", 0, 0, 0);
    assert_frame(&fr[1], NULL, "php_alpha", "/srv/hot.php", 4, 2, 0);
    /* The script's own code, entered by execute_ex from zend_execute: a loop's end. */
    assert_frame(&fr[2], NULL, "{main}", "/srv/hot.php", 5, 1, PP_INTERP_LOOP_END);
    /* max bounds it, newest kept. */
    ck_assert_int_eq(walk(NULL, 0, fr, 2), 2);
    assert_frame(&fr[1], NULL, "php_alpha", "/srv/hot.php", 4, 2, 0);
    ck_assert_int_eq(walk(NULL, 0, fr, 0), 0);
}
END_TEST

START_TEST(without_an_executor_or_a_frame_there_is_nothing)
{
    chain *c = chain_new();
    pp_interp_frame fr[4];

    ck_assert_int_eq(walk(NULL, 0, fr, 4), 0);
    pprof_php_walk_init(NULL, 0);
    push(c, user_fn(NULL, "/a.php", 1, NULL), 0, ZEND_CALL_TOP_CODE);
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 0);
}
END_TEST

#if defined(__x86_64__) || defined(__aarch64__)
static void set_vm_registers(ucontext_t *uc, const void *ex, const void *op)
{
    memset(uc, 0, sizeof(*uc));
#if defined(__x86_64__)
    uc->uc_mcontext.gregs[REG_R14] = (greg_t)(uintptr_t)ex;
    uc->uc_mcontext.gregs[REG_R15] = (greg_t)(uintptr_t)op;
#else
    uc->uc_mcontext.regs[27] = (uint64_t)(uintptr_t)ex;
    uc->uc_mcontext.regs[28] = (uint64_t)(uintptr_t)op;
#endif
}

START_TEST(in_the_loop_the_vm_registers_give_the_newest_line)
{
    chain *c = chain_new();
    zend_function *alpha = user_fn("php_alpha", "/srv/hot.php", 2, NULL);
    zend_execute_data *ex;
    pp_interp_frame fr[4];
    ucontext_t uc;

    push(c, user_fn(NULL, "/srv/hot.php", 1, NULL), 4, ZEND_CALL_TOP_CODE);
    ex = push(c, alpha, 0, ZEND_CALL_NESTED_FUNCTION);
    set_vm_registers(&uc, ex, &alpha->op_array.opcodes[7]);
    ck_assert_int_eq(walk(&uc, 1, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 9);
    ck_assert_uint_eq(fr[1].line, 5);
    /* Outside the loop, the registers are someone else's. */
    ck_assert_int_eq(walk(&uc, 0, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 2);
    /* A frame register that is another frame, or an opline outside the function's code,
     * is not believed. */
    set_vm_registers(&uc, c->ex[0], &alpha->op_array.opcodes[7]);
    ck_assert_int_eq(walk(&uc, 1, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 2);
    ck_assert_uint_eq(fr[1].line, 5);
    set_vm_registers(&uc, ex, &alpha->op_array.opcodes[NOPS]);
    ck_assert_int_eq(walk(&uc, 1, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 2);
    set_vm_registers(&uc, ex, (const char *)&alpha->op_array.opcodes[3] + 4);
    ck_assert_int_eq(walk(&uc, 1, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 2);
}
END_TEST
#endif

START_TEST(a_stale_opline_gives_the_function_first_line)
{
    chain *c = chain_new();
    zend_function *other = user_fn("other", "/srv/b.php", 50, NULL);
    zend_execute_data *ex;
    pp_interp_frame fr[4];

    push(c, user_fn(NULL, "/srv/a.php", 1, NULL), 4, ZEND_CALL_TOP_CODE);
    ex = push(c, user_fn("fresh", "/srv/a.php", 20, NULL), 0, ZEND_CALL_NESTED_FUNCTION);
    /* A frame just entered keeps whatever its stack slot held: another function's opline,
     * or none at all. */
    ex->opline = &other->op_array.opcodes[3];
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    assert_frame(&fr[0], NULL, "fresh", "/srv/a.php", 20, 20, 0);
    ex->opline = (const zend_op *)(uintptr_t)0xdead0000beefull;
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 20);
    ex->opline = NULL;
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    ck_assert_uint_eq(fr[0].line, 20);
}
END_TEST

START_TEST(methods_closures_includes_and_eval_are_named)
{
    chain *c = chain_new();
    zend_class_entry *app = class_named("App\\Kernel");
    zend_function *ev = user_fn(NULL, "/srv/a.php(3) : eval()'d code", 1, NULL);
    pp_interp_frame fr[8];

    ev->type = ZEND_EVAL_CODE;
    push(c, user_fn(NULL, "/srv/index.php", 1, NULL), 2, ZEND_CALL_TOP_CODE);
    push(c, user_fn(NULL, "/srv/app.php", 1, NULL), 3, ZEND_CALL_NESTED_CODE);
    push(c, user_fn("handle", "/srv/app.php", 10, app), 1, ZEND_CALL_NESTED_FUNCTION);
    push(c, user_fn("{closure}", "/srv/app.php", 30, app), 0, ZEND_CALL_NESTED_FUNCTION);
    push(c, ev, 0, ZEND_CALL_NESTED_CODE);
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 5);
    assert_frame(&fr[0], NULL, "{eval}", "/srv/a.php(3) : eval()'d code", 1, 1, 0);
    assert_frame(&fr[1], "App\\Kernel", "{closure}", "/srv/app.php", 30, 30, 0);
    assert_frame(&fr[2], "App\\Kernel", "handle", "/srv/app.php", 11, 10, 0);
    assert_frame(&fr[3], NULL, "{include}", "/srv/app.php", 4, 1, 0);
    assert_frame(&fr[4], NULL, "{main}", "/srv/index.php", 3, 1, PP_INTERP_LOOP_END);
}
END_TEST

START_TEST(a_nested_loop_ends_at_user_code_entered_from_c)
{
    chain *c = chain_new();
    pp_interp_frame fr[8];

    /* {main} -> array_map (built-in) -> closure (called back through zend_call_function:
     * a new execute_ex) -> strlen called back from C too (no execute_ex for a built-in). */
    push(c, user_fn(NULL, "/srv/m.php", 1, NULL), 2, ZEND_CALL_TOP_CODE);
    push(c, internal_fn("array_map"), -1, ZEND_CALL_NESTED_FUNCTION);
    push(c, NULL, -1, ZEND_CALL_TOP_FUNCTION);          /* zend_call_function's own */
    push(c, user_fn("{closure}", "/srv/m.php", 5, NULL), 1, ZEND_CALL_TOP_FUNCTION);
    push(c, internal_fn("strlen"), -1, ZEND_CALL_TOP_FUNCTION);
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 4);
    assert_frame(&fr[0], NULL, "strlen", "[internal function]", 0, 0, 0);
    assert_frame(&fr[1], NULL, "{closure}", "/srv/m.php", 6, 5, PP_INTERP_LOOP_END);
    assert_frame(&fr[2], NULL, "array_map", "[internal function]", 0, 0, 0);
    assert_frame(&fr[3], NULL, "{main}", "/srv/m.php", 3, 1, PP_INTERP_LOOP_END);
}
END_TEST

START_TEST(garbage_ends_the_walk_where_it_starts)
{
    chain *c = hot();
    zend_function *bad = user_fn("bad", "/srv/x.php", 1, NULL);
    pp_interp_frame fr[PP_INTERP_MAX_FRAMES];

    /* Not a function type: nothing from it on. */
    bad->type = 77;
    c->ex[1]->func = bad;
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 1);
    c = hot();
    /* A misaligned or kernel-half pointer is never followed. */
    c->ex[1]->prev_execute_data = (zend_execute_data *)((char *)c->ex[0] + 3);
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 2);
    c->ex[1]->func = (zend_function *)(uintptr_t)0xffff800000001000ull;
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 1);
    c->ex[1]->func = (zend_function *)(uintptr_t)16;
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 1);
    /* A name longer than any name is garbage too. */
    c = hot();
    ((zend_string *)c->ex[1]->func->common.function_name)->len = 1u << 30;
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 1);
    /* A chain that loops ends after a bounded number of steps. */
    c = hot();
    c->ex[0]->prev_execute_data = c->ex[2];
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 8);
    ck_assert_int_eq(walk(NULL, 0, fr, PP_INTERP_MAX_FRAMES), PP_INTERP_MAX_FRAMES);
    c->ex[0]->func = NULL;
    c->ex[1]->func = NULL;
    c->ex[2]->func = NULL;
    ck_assert_int_eq(walk(NULL, 0, fr, 8), 0);
}
END_TEST

START_TEST(keys_tell_frames_apart_and_need_php_hashes)
{
    chain *c = hot();
    pp_interp_frame a[4], b[4];
    zend_string *nohash;

    ck_assert_int_eq(walk(NULL, 0, a, 4), 3);
    ck_assert_int_eq(walk(NULL, 0, b, 4), 3);
    ck_assert_uint_ne(a[0].key, 0);
    ck_assert_uint_eq(a[1].key, b[1].key);
    ck_assert_uint_ne(a[0].key, a[1].key);
    ck_assert_uint_ne(a[1].key, a[2].key);
    /* Another line of the same function: the same key (the line goes in the PC). */
    c->ex[1]->opline++;
    ck_assert_int_eq(walk(NULL, 0, b, 4), 3);
    ck_assert_uint_eq(a[1].key, b[1].key);
    ck_assert_uint_eq(b[1].line, a[1].line + 1);
    /* A name PHP has not hashed: found by content instead. */
    nohash = zs("php_alpha", 0);
    c->ex[1]->func->op_array.function_name = nohash;
    ck_assert_int_eq(walk(NULL, 0, b, 4), 3);
    ck_assert_uint_eq(b[1].key, 0);
    ck_assert_uint_ne(b[2].key, 0);
}
END_TEST

/* A copy of n bytes of p on a page of its own, then unmapped: memory PHP freed and gave
 * back to the system (a huge block of Zend MM, or an mmap'ed one of glibc's malloc with
 * USE_ZEND_ALLOC=0). Its address, which nothing may read any more. */
static void *unmapped_copy(const void *p, size_t n)
{
    size_t page = (size_t)sysconf(_SC_PAGESIZE);
    void *q = mmap(NULL, page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

    ck_assert_ptr_ne(q, MAP_FAILED);
    ck_assert_uint_le(n, page);
    memcpy(q, p, n);
    ck_assert_int_eq(munmap(q, page), 0);
    return q;
}

/* PHP's leave helper destroys an included file's (or eval'd code's) op_array, its opcodes
 * and then the struct itself, before it unlinks the frame: a CPU sample meanwhile finds
 * the newest frame running code that is freed, maybe unmapped. The walk, in place in the
 * signal handler, reads that frame through checked reads: no fault, and what can still be
 * read is shown, with the frames below. */
START_TEST(an_include_being_destroyed_is_walked_without_a_fault)
{
    chain *c = chain_new();
    zend_function *inc = user_fn(NULL, "/srv/inc.php", 1, NULL), *gone_fn;
    zend_op *gone_ops;
    pp_interp_frame fr[4];

    push(c, user_fn(NULL, "/srv/index.php", 1, NULL), 2, ZEND_CALL_TOP_CODE);
    push(c, inc, 3, ZEND_CALL_NESTED_CODE);
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    assert_frame(&fr[0], NULL, "{include}", "/srv/inc.php", 4, 1, 0);
    /* Its opcodes gone, the frame's opline still among them: the function's first line. */
    gone_ops = unmapped_copy(inc->op_array.opcodes, NOPS * sizeof(zend_op));
    inc->op_array.opcodes = gone_ops;
    c->ex[1]->opline = &gone_ops[3];
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    assert_frame(&fr[0], NULL, "{include}", "/srv/inc.php", 1, 1, 0);
    assert_frame(&fr[1], NULL, "{main}", "/srv/index.php", 3, 1, PP_INTERP_LOOP_END);
    /* Its file name's string gone too: no file. */
    inc->op_array.filename =
        unmapped_copy(inc->op_array.filename, _ZSTR_STRUCT_SIZE(ZSTR_LEN(inc->op_array.filename)));
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    ck_assert_uint_eq(fr[0].file_len, 0);
    ck_assert_uint_eq(fr[0].line, 1);
    /* The struct itself gone: that frame is left out, the ones below are shown. */
    gone_fn = unmapped_copy(inc, sizeof(*inc));
    c->ex[1]->func = gone_fn;
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 1);
    assert_frame(&fr[0], NULL, "{main}", "/srv/index.php", 3, 1, PP_INTERP_LOOP_END);
    /* The same for eval'd code. */
    c = chain_new();
    inc = user_fn(NULL, "/srv/a.php(2) : eval()'d code", 1, NULL);
    inc->type = ZEND_EVAL_CODE;
    push(c, user_fn(NULL, "/srv/a.php", 1, NULL), 1, ZEND_CALL_TOP_CODE);
    push(c, inc, 0, ZEND_CALL_NESTED_CODE);
    inc->op_array.opcodes = unmapped_copy(inc->op_array.opcodes, NOPS * sizeof(zend_op));
    c->ex[1]->opline = &inc->op_array.opcodes[0];
    ck_assert_int_eq(walk(NULL, 0, fr, 4), 2);
    assert_frame(&fr[0], NULL, "{eval}", "/srv/a.php(2) : eval()'d code", 1, 1, 0);
}
END_TEST

/* With the allocator hooks' record of this thread's unmappings (Zend MM's are all made
 * through libphp's munmap), the newest include's frame is read in place where none of them
 * meets it, and through checked reads where one does: so a range really unmapped and
 * recorded never faults. A walk marks when its newest frame runs a function (every
 * frame's memory alive), never when the newest may be being freed. Without Zend MM
 * (USE_ZEND_ALLOC=0: malloc unmaps out of the hooks' sight) the record is not used. */
static uintptr_t hull_lo, hull_hi;
static int marks, asked;

static int test_maybe_unmapped(const void *p, size_t len)
{
    uintptr_t lo = (uintptr_t)p;

    asked++;
    return hull_hi && lo < hull_hi && lo + len > hull_lo;
}

static void test_mark(void)
{
    marks++;
    hull_lo = hull_hi = 0;
}

static int guarded_walk(pp_interp_frame *fr, int max)
{
    pp_interp_ctx ctx;

    memset(&ctx, 0, sizeof(ctx));
    ctx.maybe_unmapped = test_maybe_unmapped;
    ctx.unmaps_mark = test_mark;
    ctx.activations = 1;
    return pprof_php_walk(NULL, &ctx, fr, max);
}

static void record_unmapped(const void *p, size_t n)
{
    uintptr_t lo = (uintptr_t)p, hi = lo + n;

    hull_lo = hull_hi == 0 || lo < hull_lo ? lo : hull_lo;
    hull_hi = hi > hull_hi ? hi : hull_hi;
}

START_TEST(an_include_is_read_in_place_where_this_thread_unmapped_nothing)
{
    chain *c = chain_new();
    zend_function *inc = user_fn(NULL, "/srv/inc.php", 1, NULL), *f = user_fn("f", "/srv/f.php", 7, NULL);
    zend_execute_data *top;
    pp_interp_frame fr[4];

    pprof_php_walk_init(c->eg, 1);
    push(c, user_fn(NULL, "/srv/index.php", 1, NULL), 2, ZEND_CALL_TOP_CODE);
    push(c, inc, 3, ZEND_CALL_NESTED_CODE);
    top = push(c, f, 1, ZEND_CALL_NESTED_FUNCTION);
    /* A function newest: a mark. */
    marks = asked = 0;
    hull_lo = 1;
    hull_hi = UINTPTR_MAX;
    ck_assert_int_eq(guarded_walk(fr, 4), 3);
    ck_assert_int_eq(marks, 1);
    ck_assert_int_eq(asked, 0);
    /* The include newest, nothing unmapped since: read through the record, no mark. */
    c->n--;
    c->eg->current_execute_data = c->ex[1];
    ck_assert_int_eq(guarded_walk(fr, 4), 2);
    assert_frame(&fr[0], NULL, "{include}", "/srv/inc.php", 4, 1, 0);
    ck_assert_int_eq(marks, 1);
    ck_assert_int_gt(asked, 0);
    /* Its opcodes unmapped (and recorded): checked reads, the first line. */
    inc->op_array.opcodes = unmapped_copy(inc->op_array.opcodes, NOPS * sizeof(zend_op));
    c->ex[1]->opline = &inc->op_array.opcodes[3];
    record_unmapped(inc->op_array.opcodes, NOPS * sizeof(zend_op));
    ck_assert_int_eq(guarded_walk(fr, 4), 2);
    assert_frame(&fr[0], NULL, "{include}", "/srv/inc.php", 1, 1, 0);
    /* The struct itself: the frame is left out, the one below shown. */
    c->ex[1]->func = unmapped_copy(inc, sizeof(*inc));
    record_unmapped(c->ex[1]->func, sizeof(*inc));
    ck_assert_int_eq(guarded_walk(fr, 4), 1);
    assert_frame(&fr[0], NULL, "{main}", "/srv/index.php", 3, 1, PP_INTERP_LOOP_END);
    ck_assert_int_eq(marks, 1);
    /* Without Zend MM the record is not asked: checked reads. */
    pprof_php_walk_init(c->eg, 0);
    asked = 0;
    ck_assert_int_eq(guarded_walk(fr, 4), 1);
    ck_assert_int_eq(asked, 0);
    (void)top;
}
END_TEST

/* A reader as process_vm_readv is for a thread that may have freed what it reads: here it
 * copies, but fails for one region (memory "gone"), and counts its calls. */
static const void *gone_lo, *gone_hi;
static int reads;

static int test_read(void *dst, const void *src, size_t len)
{
    reads++;
    if ((const char *)src + len > (const char *)gone_lo && (const char *)src < (const char *)gone_hi) {
        return -1;
    }
    memcpy(dst, src, len);
    return 0;
}

static int walk_read(pp_interp_frame *fr, int max, char *scratch, size_t scratch_len)
{
    pp_interp_ctx ctx;

    memset(&ctx, 0, sizeof(ctx));
    ctx.activations = 1;
    ctx.read = test_read;
    ctx.scratch = scratch;
    ctx.scratch_len = scratch_len;
    return pprof_php_walk(NULL, &ctx, fr, max);
}

START_TEST(a_blocked_thread_is_walked_through_copies)
{
    chain *c = hot();
    static char scratch[4096];
    pp_interp_frame fr[8], direct[8];
    int i;

    ck_assert_int_eq(walk(NULL, 0, direct, 8), 3);
    ck_assert_int_eq(walk_read(fr, 8, scratch, sizeof(scratch)), 3);
    ck_assert_int_gt(reads, 10);
    for (i = 0; i < 3; i++) {
        /* The same frames, but every string a copy in the scratch (PHP's memory may be
         * gone by the time the frames are interned). */
        ck_assert_uint_eq(fr[i].key, direct[i].key);
        ck_assert_uint_eq(fr[i].line, direct[i].line);
        ck_assert_uint_eq(fr[i].name_len, direct[i].name_len);
        ck_assert_int_eq(memcmp(fr[i].name, direct[i].name, fr[i].name_len), 0);
        if (fr[i].name != direct[i].name) {
            ck_assert(fr[i].name >= scratch && fr[i].name < scratch + sizeof(scratch));
        }
        ck_assert_int_eq(memcmp(fr[i].file, direct[i].file, fr[i].file_len), 0);
    }
    ck_assert(fr[1].name >= scratch && fr[1].name < scratch + sizeof(scratch));
    ck_assert(fr[1].file >= scratch && fr[1].file < scratch + sizeof(scratch));
    /* Memory that is gone ends the walk there: the function of php_alpha's frame. */
    gone_lo = c->ex[1]->func;
    gone_hi = (const char *)c->ex[1]->func + 1;
    ck_assert_int_eq(walk_read(fr, 8, scratch, sizeof(scratch)), 1);
    /* Its frame itself. */
    gone_lo = c->ex[1];
    gone_hi = (const char *)c->ex[1] + 1;
    ck_assert_int_eq(walk_read(fr, 8, scratch, sizeof(scratch)), 1);
    /* Its name's bytes. */
    gone_lo = ZSTR_VAL(c->ex[1]->func->common.function_name);
    gone_hi = (const char *)gone_lo + 1;
    ck_assert_int_eq(walk_read(fr, 8, scratch, sizeof(scratch)), 1);
    /* The executor's globals. */
    gone_lo = &c->eg->current_execute_data;
    gone_hi = (const char *)gone_lo + 1;
    ck_assert_int_eq(walk_read(fr, 8, scratch, sizeof(scratch)), 0);
    gone_lo = gone_hi = NULL;
    /* No room left to copy names into: the walk ends where it has none. */
    ck_assert_int_eq(walk_read(fr, 8, scratch, 12), 1);
}
END_TEST

int main(void)
{
    Suite *s = suite_create("php_walk");
    TCase *tc = tcase_create("walk");

    tcase_add_checked_fixture(tc, NULL, free_kept);
    tcase_add_test(tc, a_chain_is_named_newest_first_with_files_and_lines);
    tcase_add_test(tc, without_an_executor_or_a_frame_there_is_nothing);
#if defined(__x86_64__) || defined(__aarch64__)
    tcase_add_test(tc, in_the_loop_the_vm_registers_give_the_newest_line);
#endif
    tcase_add_test(tc, a_stale_opline_gives_the_function_first_line);
    tcase_add_test(tc, methods_closures_includes_and_eval_are_named);
    tcase_add_test(tc, a_nested_loop_ends_at_user_code_entered_from_c);
    tcase_add_test(tc, garbage_ends_the_walk_where_it_starts);
    tcase_add_test(tc, keys_tell_frames_apart_and_need_php_hashes);
    tcase_add_test(tc, a_blocked_thread_is_walked_through_copies);
    tcase_add_test(tc, an_include_being_destroyed_is_walked_without_a_fault);
    tcase_add_test(tc, an_include_is_read_in_place_where_this_thread_unmapped_nothing);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
