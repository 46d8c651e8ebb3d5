#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_tcreate.h"
#include "pp_got.h"
#include "pp_heap.h"
#include "pp_tasks.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <link.h>
#include <pthread.h>
#include <semaphore.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

typedef struct known {
    struct known *next;
    uint64_t pthread;           /* the thread's pthread_self() */
    pp_tcreate_record rec;
} known;

typedef struct {
    void *(*fn)(void *);
    void *arg;
    known *k;
    sem_t registered;           /* posted once the new thread is in `live` */
} start_args;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static known *live;                     /* threads created through the hook, alive */
static _Atomic uint64_t total;
static uintptr_t self_lo, self_hi;

static int (*const real_pthread_create)(pthread_t *, const pthread_attr_t *,
                                        void *(*)(void *), void *) = pthread_create;

static void forget(void *arg)
{
    known *k = arg, **pp;

    pthread_mutex_lock(&lock);
    for (pp = &live; *pp; pp = &(*pp)->next) {
        if (*pp == k) {
            *pp = k->next;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    free(k);
}

/* Not instrumented by ASan: a thread cancelled inside fn comes back here through glibc's
 * cancellation longjmp, which ASan does not see, so the stack below keeps the redzones of
 * the frames it skipped, and the __asan_handle_no_return that ASan puts before the
 * cleanup's __pthread_unwind_next then trips on them (its own sigaltstack call is checked
 * against that stale shadow: google/sanitizers#1010). ASan clears a thread's stack shadow
 * when the stack is used again; nothing here touches memory ASan needs to watch. */
__attribute__((no_sanitize_address))
static void *trampoline(void *arg)
{
    start_args *in = arg, sa;
    void *ret;

    sa.fn = in->fn;
    sa.arg = in->arg;
    sa.k = in->k;
    sa.k->rec.tid = (uint32_t)syscall(SYS_gettid);
    sa.k->pthread = (uint64_t)pthread_self();
    pthread_mutex_lock(&lock);
    sa.k->next = live;
    live = sa.k;
    pthread_mutex_unlock(&lock);
    /* From here `in` is the creator's again. */
    sem_post(&in->registered);
    /* Runs on return and on pthread_exit alike. */
    pthread_cleanup_push(forget, sa.k);
    ret = sa.fn(sa.arg);
    pthread_cleanup_pop(1);
    return ret;
}

static int create_recorded(pthread_t *t, const pthread_attr_t *attr, void *(*fn)(void *),
                           void *arg)
{
    start_args *sa;
    known *k;
    unw_context_t uc;
    unw_cursor_t cur;
    int rc;

    pp_heap_guard_enter();
    sa = malloc(sizeof(*sa));
    k = calloc(1, sizeof(*k));
    if (!sa || !k) {
        free(sa);
        free(k);
        pp_heap_guard_leave();
        return real_pthread_create(t, attr, fn, arg);
    }
    /* The creating stack, without our own frames. */
    if (unw_getcontext(&uc) == 0 && unw_init_local(&cur, &uc) == 0) {
        while (k->rec.npcs < PP_TCREATE_MAX_DEPTH && unw_step(&cur) > 0) {
            unw_word_t ip;
            if (unw_get_reg(&cur, UNW_REG_IP, &ip) != 0 || ip == 0) {
                break;
            }
            if (k->rec.npcs == 0 && ip >= self_lo && ip < self_hi) {
                continue;
            }
            k->rec.pcs[k->rec.npcs++] = ip;
        }
    }
    sa->fn = fn;
    sa->arg = arg;
    sa->k = k;
    sem_init(&sa->registered, 0, 0);
    pp_heap_guard_leave();
    rc = real_pthread_create(t, attr, trampoline, sa);
    if (rc != 0) {
        free(k);
    } else {
        /* Like Go, a thread is listed with its creation stack as soon as creating it
         * returns: wait for it to register (its first instructions). */
        while (sem_wait(&sa->registered) != 0) {
        }
        atomic_fetch_add(&total, 1);
    }
    sem_destroy(&sa->registered);
    free(sa);
    return rc;
}

static int hook_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                               void *(*fn)(void *), void *arg)
{
    int cancel_state, rc;

    /* pthread_create is no cancellation point, but what it does here has some (libunwind
     * checks memory with read(), then sem_wait): a pending cancellation must not act in
     * here, unwinding the creator out of pthread_create. The new thread starts with
     * cancellation enabled all the same. */
    pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &cancel_state);
    rc = create_recorded(t, attr, fn, arg);
    pthread_setcancelstate(cancel_state, NULL);
    return rc;
}

static const pp_got_hook hooks[] = {
    { "pthread_create", (void *)hook_pthread_create },
};

int pp_tcreate_start(void)
{
    pp_got_code_range((const void *)&hook_pthread_create, &self_lo, &self_hi);
    return pp_got_patch(hooks, sizeof(hooks) / sizeof(hooks[0]));
}

uint64_t pp_tcreate_total(void)
{
    return atomic_load(&total);
}

uint32_t pp_tcreate_tid(uint64_t pthread)
{
    uint32_t tid = 0;
    known *k;

    pthread_mutex_lock(&lock);
    for (k = live; k; k = k->next) {
        if (k->pthread == pthread) {
            tid = k->rec.tid;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return tid;
}

uint64_t pp_tcreate_pthread(uint32_t tid)
{
    uint64_t pthread = 0;
    known *k;

    pthread_mutex_lock(&lock);
    for (k = live; k; k = k->next) {
        if (k->rec.tid == tid) {
            pthread = k->pthread;
            break;
        }
    }
    pthread_mutex_unlock(&lock);
    return pthread;
}

int pp_tcreate_snapshot(pp_tcreate_record **out, size_t *outn)
{
    pp_tcreate_record *recs;
    uint32_t *tids;
    size_t n, i;
    known *k;

    if (pp_tasks_list(NULL, &tids, &n) != 0) {
        return -1;
    }
    if (!(recs = calloc(n ? n : 1, sizeof(*recs)))) {
        free(tids);
        return -1;
    }
    for (i = 0; i < n; i++) {
        recs[i].tid = tids[i];
    }
    free(tids);
    /* Each live record onto its listed thread (found by bisection: the list ascends). A
     * listed thread without a record was created before we looked. */
    pthread_mutex_lock(&lock);
    for (k = live; k; k = k->next) {
        size_t lo = 0, hi = n;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (recs[mid].tid < k->rec.tid) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        if (lo < n && recs[lo].tid == k->rec.tid) {
            recs[lo] = k->rec;
        }
    }
    pthread_mutex_unlock(&lock);
    *out = recs;
    *outn = n;
    return 0;
}
