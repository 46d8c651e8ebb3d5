/* A shared library for the wait interposition tests: it locks and polls through its own
 * GOT, as any module or library of a real server does (the test executable holds the
 * core, whose object pp_got never patches). */
#include <poll.h>
#include <pthread.h>

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
