/* A shared library for the wait interposition tests: it locks and polls through its own
 * GOT, as any module or library of a real server does (the test executable holds the
 * core, whose object pp_got never patches). */
#include <poll.h>
#include <pthread.h>
#include <semaphore.h>
#include <time.h>

int ppw_mutex_lock(pthread_mutex_t *m);
int ppw_poll(struct pollfd *fds, nfds_t nfds, int timeout);

__attribute__((noinline)) int ppw_mutex_lock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_lock(m);
    __asm__ volatile("" ::: "memory");
    return rc;
}

__attribute__((noinline)) int ppw_poll(struct pollfd *fds, nfds_t nfds, int timeout)
{
    int rc = poll(fds, nfds, timeout);
    __asm__ volatile("" ::: "memory");
    return rc;
}

int ppw_mutex_unlock(pthread_mutex_t *m);

__attribute__((noinline)) int ppw_mutex_unlock(pthread_mutex_t *m)
{
    int rc = pthread_mutex_unlock(m);
    __asm__ volatile("" ::: "memory");
    return rc;
}

int ppw_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m, const struct timespec *until);
int ppw_sem_wait(sem_t *s);

__attribute__((noinline)) int ppw_cond_timedwait(pthread_cond_t *c, pthread_mutex_t *m,
                                                 const struct timespec *until)
{
    int rc = pthread_cond_timedwait(c, m, until);
    __asm__ volatile("" ::: "memory");
    return rc;
}

__attribute__((noinline)) int ppw_sem_wait(sem_t *s)
{
    int rc = sem_wait(s);
    __asm__ volatile("" ::: "memory");
    return rc;
}
