#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_tcreate.h"
#include "pp_got.h"
#include "pp_heap.h"

#define UNW_LOCAL_ONLY
#include <libunwind.h>

#include <dirent.h>
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

static int hook_pthread_create(pthread_t *t, const pthread_attr_t *attr,
                               void *(*fn)(void *), void *arg)
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

int pp_tcreate_snapshot(pp_tcreate_record **out, size_t *outn)
{
    pp_tcreate_record *recs = NULL;
    size_t n = 0, cap = 0;
    DIR *d = opendir("/proc/self/task");
    struct dirent *de;

    if (!d) {
        return -1;
    }
    while ((de = readdir(d))) {
        long tid = atol(de->d_name);
        known *k;
        if (tid <= 0) {
            continue;
        }
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            pp_tcreate_record *nr = realloc(recs, ncap * sizeof(*nr));
            if (!nr) {
                free(recs);
                closedir(d);
                return -1;
            }
            recs = nr;
            cap = ncap;
        }
        memset(&recs[n], 0, sizeof(recs[n]));
        recs[n].tid = (uint32_t)tid;
        pthread_mutex_lock(&lock);
        for (k = live; k; k = k->next) {
            if (k->rec.tid == (uint32_t)tid) {
                recs[n] = k->rec;
                break;
            }
        }
        pthread_mutex_unlock(&lock);
        n++;
    }
    closedir(d);
    *out = recs;
    *outn = n;
    return 0;
}
