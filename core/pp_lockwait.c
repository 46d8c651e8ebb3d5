#include "pp_lockwait.h"
#include "pp_got.h"

#include <errno.h>
#include <pthread.h>

static pp_lockwait_fn observer;

static int (*const real_lock)(pthread_mutex_t *) = pthread_mutex_lock;

static int hook_lock(pthread_mutex_t *m)
{
    pp_lockwait_fn fn = __atomic_load_n(&observer, __ATOMIC_ACQUIRE);
    int rc;

    if (__builtin_expect(fn == NULL, 1)) {
        return real_lock(m);
    }
    rc = pthread_mutex_trylock(m);
    if (rc != EBUSY) {
        /* Taken, or an error the real call would report the same way (EINVAL, EDEADLK
         * for an error-checking mutex held by this thread, EOWNERDEAD...). */
        return rc == 0 || rc == EOWNERDEAD ? rc : real_lock(m);
    }
    fn(1, m);
    rc = real_lock(m);
    fn(0, m);
    return rc;
}

static const pp_got_hook hooks[] = {
    { "pthread_mutex_lock", (void *)hook_lock },
};

int pp_lockwait_install(void)
{
    return pp_got_patch(hooks, sizeof(hooks) / sizeof(hooks[0]));
}

void pp_lockwait_observe(pp_lockwait_fn fn)
{
    __atomic_store_n(&observer, fn, __ATOMIC_RELEASE);
}
