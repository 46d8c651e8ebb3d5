/* A shared library for the interposition tests: it calls the allocation functions
 * through its own GOT, as any module or library of a real server does. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE /* mmap64, mremap */
#endif
#include <malloc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

void *ppt_malloc(size_t n);
void *ppt_calloc(size_t n, size_t size);
void *ppt_realloc(void *p, size_t n);
void ppt_free(void *p);
void *ppt_memalign(size_t align, size_t n);
int ppt_posix_memalign(void **out, size_t align, size_t n);
void *ppt_retain_named(size_t n);
int ppt_thread_create(pthread_t *t, void *(*fn)(void *), void *arg);
void *ppt_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *ppt_mmap_named(size_t len);
void *ppt_mmap64_named(size_t len);
int ppt_munmap(void *p, size_t len);
void *ppt_mremap(void *old, size_t old_len, size_t new_len, int flags, void *to);

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

__attribute__((noinline)) void *ppt_mmap(void *addr, size_t len, int prot, int flags, int fd,
                                         off_t off)
{
    void *p = mmap(addr, len, prot, flags, fd, off);
    __asm__ volatile("" ::: "memory");
    return p;
}

/* A named mapping site for stack checks: an anonymous private mapping, as an arena
 * allocator takes its chunks. */
__attribute__((noinline)) void *ppt_mmap_named(size_t len)
{
    void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

/* The same through mmap64, a symbol of its own that objects built with
 * _FILE_OFFSET_BITS=64 import. */
__attribute__((noinline)) void *ppt_mmap64_named(size_t len)
{
    void *p = mmap64(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    __asm__ volatile("" ::: "memory");
    return p;
}

__attribute__((noinline)) int ppt_munmap(void *p, size_t len)
{
    int rc = munmap(p, len);
    __asm__ volatile("" ::: "memory");
    return rc;
}

__attribute__((noinline)) void *ppt_mremap(void *old, size_t old_len, size_t new_len, int flags,
                                           void *to)
{
    void *p = mremap(old, old_len, new_len, flags, to);
    __asm__ volatile("" ::: "memory");
    return p;
}
