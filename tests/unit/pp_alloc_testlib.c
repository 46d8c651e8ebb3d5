/* A shared library for the interposition tests: it calls the allocation functions
 * through its own GOT, as any module or library of a real server does. */
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

void *ppt_malloc(size_t n);
void *ppt_calloc(size_t n, size_t size);
void *ppt_realloc(void *p, size_t n);
void ppt_free(void *p);
void *ppt_memalign(size_t align, size_t n);
int ppt_posix_memalign(void **out, size_t align, size_t n);
void *ppt_retain_named(size_t n);
int ppt_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);

__attribute__((noinline)) void *ppt_malloc(size_t n)
{
    void *p = malloc(n);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void *ppt_calloc(size_t n, size_t size)
{
    void *p = calloc(n, size);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) void *ppt_realloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    __asm__ volatile("" ::: "memory");
    return q;
}

__attribute__((noinline)) void ppt_free(void *p)
{
    free(p);
    __asm__ volatile("" ::: "memory");
}

__attribute__((noinline)) void *ppt_memalign(size_t align, size_t n)
{
    void *p = memalign(align, n);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) int ppt_posix_memalign(void **out, size_t align, size_t n)
{
    int rc = posix_memalign(out, align, n);
    __asm__ volatile("" ::: "memory");
    return rc;
}

/* A named allocation site for stack checks. */
__attribute__((noinline)) void *ppt_retain_named(size_t n)
{
    void *p = malloc(n);
    if (p) {
        memset(p, 3, n);
    }
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) int ppt_thread_create(pthread_t *t, void *(*fn)(void *), void *arg)
{
    int rc = pthread_create(t, NULL, fn, arg);
    __asm__ volatile("" ::: "memory");
    return rc;
}
