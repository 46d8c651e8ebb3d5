#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "pp_reqrec.h"

#include <check.h>
#include "unit_main.h"
#include "unit_util.h"
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

static void fill(pp_reqrec_info *info, uint64_t token, const char *req, const char *handler)
{
    memset(info, 0, sizeof(*info));
    info->token = token;
    info->start_us = 1000;
    pp_reqrec_copy(info->request, sizeof(info->request), req);
    pp_reqrec_copy(info->vhost, sizeof(info->vhost), "www.example.com");
    pp_reqrec_copy(info->client, sizeof(info->client), "192.0.2.1");
    pp_reqrec_copy(info->handler, sizeof(info->handler), handler);
}

/* The view of the calling thread's record, or NULL. */
static const pp_reqrec_view *mine(pp_reqrec_view *views, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++) {
        if (views[i].tid == my_tid()) {
            return &views[i];
        }
    }
    return NULL;
}

START_TEST(begin_handler_end)
{
    pp_reqrec_view v[4];
    pp_reqrec_info info;
    pp_reqrec *rec;
    const pp_reqrec_view *m;
    size_t n;

    ck_assert_ptr_null(pp_reqrec_self());       /* no table yet */
    ck_assert_int_eq(pp_reqrec_init(4), 0);
    ck_assert_uint_eq(pp_reqrec_snapshot(v, 4), 0);
    rec = pp_reqrec_self();
    ck_assert_ptr_nonnull(rec);
    ck_assert_ptr_eq(pp_reqrec_self(), rec);    /* claimed once */
    n = pp_reqrec_snapshot(v, 4);
    ck_assert_uint_eq(n, 1);
    ck_assert_uint_eq(v[0].tid, my_tid());
    ck_assert_int_eq(v[0].busy, 0);
    ck_assert_int_eq(v[0].torn, 0);

    fill(&info, 42, "GET /x HTTP/1.1", "");
    pp_reqrec_begin(rec, &info);
    pp_reqrec_set_handler(rec, "php-fpm");
    n = pp_reqrec_snapshot(v, 4);
    m = mine(v, n);
    ck_assert_ptr_nonnull(m);
    ck_assert_int_eq(m->busy, 1);
    ck_assert_uint_eq(m->info.token, 42);
    ck_assert_int_eq(m->info.start_us, 1000);
    ck_assert_str_eq(m->info.request, "GET /x HTTP/1.1");
    ck_assert_str_eq(m->info.vhost, "www.example.com");
    ck_assert_str_eq(m->info.client, "192.0.2.1");
    ck_assert_str_eq(m->info.handler, "php-fpm");

    pp_reqrec_end(41);                          /* another request's end: no effect */
    n = pp_reqrec_snapshot(v, 4);
    ck_assert_int_eq(mine(v, n)->busy, 1);
    pp_reqrec_end(42);
    n = pp_reqrec_snapshot(v, 4);
    ck_assert_int_eq(mine(v, n)->busy, 0);
    pp_reqrec_fini();
    ck_assert_ptr_null(pp_reqrec_self());
    ck_assert_uint_eq(pp_reqrec_snapshot(v, 4), 0);
}
END_TEST

START_TEST(long_values_are_cut)
{
    char big[1000];
    pp_reqrec_info info;

    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    fill(&info, 1, big, big);
    ck_assert_uint_eq(strlen(info.request), PP_REQREC_REQUEST - 1);
    ck_assert_uint_eq(strlen(info.handler), PP_REQREC_HANDLER - 1);
    pp_reqrec_copy(info.vhost, sizeof(info.vhost), NULL);
    ck_assert_str_eq(info.vhost, "");
}
END_TEST

/* A request that ended on another thread (asynchronous write completion) clears the
 * record only while it still names that request. The ending thread has a record of its
 * own (not the one to clear). */
static pp_reqrec *shared_rec;
static uint64_t end_token;

static void *end_elsewhere(void *arg)
{
    pp_reqrec_info info;

    fill(&info, 1000 + end_token, "GET /own HTTP/1.1", "h");
    pp_reqrec_begin(pp_reqrec_self(), &info);
    pp_reqrec_end(end_token);
    return NULL;
}

START_TEST(end_from_another_thread)
{
    pp_reqrec_view v[2];
    pp_reqrec_info info;
    pthread_t th;
    size_t n;

    ck_assert_int_eq(pp_reqrec_init(3), 0);
    shared_rec = pp_reqrec_self();
    fill(&info, 7, "GET /a HTTP/1.1", "h");
    pp_reqrec_begin(shared_rec, &info);
    fill(&info, 8, "GET /b HTTP/1.1", "h");
    pp_reqrec_begin(shared_rec, &info);         /* /a not yet logged, /b begins */
    end_token = 7;
    ck_assert_int_eq(pthread_create(&th, NULL, end_elsewhere, NULL), 0);
    pthread_join(th, NULL);
    n = pp_reqrec_snapshot(v, 2);
    ck_assert_int_eq(mine(v, n)->busy, 1);
    ck_assert_str_eq(mine(v, n)->info.request, "GET /b HTTP/1.1");
    end_token = 8;
    ck_assert_int_eq(pthread_create(&th, NULL, end_elsewhere, NULL), 0);
    pthread_join(th, NULL);
    n = pp_reqrec_snapshot(v, 2);
    ck_assert_int_eq(mine(v, n)->busy, 0);
    pp_reqrec_end(8);                           /* twice: nothing left to clear */
    pp_reqrec_fini();
}
END_TEST

/* Threads claim records and give them back when they exit. */
static void *claim_and_exit(void *arg)
{
    *(pp_reqrec **)arg = pp_reqrec_self();
    return NULL;
}

typedef struct {
    pthread_mutex_t m;
    pthread_cond_t c;
    int go;
    pp_reqrec *rec;
} holder;

static void *claim_and_hold(void *arg)
{
    holder *h = arg;

    h->rec = pp_reqrec_self();
    pthread_mutex_lock(&h->m);
    while (!h->go) {
        pthread_cond_wait(&h->c, &h->m);
    }
    pthread_mutex_unlock(&h->m);
    return NULL;
}

START_TEST(records_come_back_at_thread_exit)
{
    pp_reqrec_view v[4];
    pp_reqrec *got;
    pthread_t th[3];
    holder h[2];
    int64_t deadline;
    int i;

    ck_assert_int_eq(pp_reqrec_init(2), 0);
    for (i = 0; i < 10; i++) {                  /* many more threads than records */
        got = NULL;
        ck_assert_int_eq(pthread_create(&th[0], NULL, claim_and_exit, &got), 0);
        pthread_join(th[0], NULL);
        ck_assert_ptr_nonnull(got);
    }
    ck_assert_uint_eq(pp_reqrec_snapshot(v, 4), 0);
    /* Two live holders take both records: a third thread gets none. */
    for (i = 0; i < 2; i++) {
        memset(&h[i], 0, sizeof(h[i]));
        pthread_mutex_init(&h[i].m, NULL);
        pthread_cond_init(&h[i].c, NULL);
        ck_assert_int_eq(pthread_create(&th[i], NULL, claim_and_hold, &h[i]), 0);
    }
    /* Until both have run: a deadline that tells slow from never (a loaded machine may
     * start a thread late), not a count of 1 ms sleeps. */
    deadline = mono_ns() + 20000 * 1000000LL;
    while (pp_reqrec_snapshot(v, 4) < 2 && mono_ns() < deadline) {
        usleep(1000);
    }
    ck_assert_uint_eq(pp_reqrec_snapshot(v, 4), 2);
    got = (pp_reqrec *)1;
    ck_assert_int_eq(pthread_create(&th[2], NULL, claim_and_exit, &got), 0);
    pthread_join(th[2], NULL);
    ck_assert_ptr_null(got);
    for (i = 0; i < 2; i++) {
        ck_assert_ptr_nonnull(h[i].rec);
        pthread_mutex_lock(&h[i].m);
        h[i].go = 1;
        pthread_cond_signal(&h[i].c);
        pthread_mutex_unlock(&h[i].m);
        pthread_join(th[i], NULL);
    }
    ck_assert_uint_eq(pp_reqrec_snapshot(v, 4), 0);
    pp_reqrec_fini();
}
END_TEST

/* A writer rewrites its record as fast as it can while a reader copies it: every copy
 * the reader accepts is one request whole (every field made from the same number). */
static atomic_int stop_writing;

static void make(pp_reqrec_info *info, uint64_t k)
{
    char s[64];

    memset(info, 0, sizeof(*info));
    info->token = k;
    info->start_us = (int64_t)k * 3;
    /* Lengths vary with k, so that a mix of two requests shows in the text too. */
    snprintf(s, sizeof(s), "GET /%llu/%.*s HTTP/1.1", (unsigned long long)k, (int)(k % 40),
             "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx");
    pp_reqrec_copy(info->request, sizeof(info->request), s);
    snprintf(s, sizeof(s), "v%llu", (unsigned long long)k);
    pp_reqrec_copy(info->vhost, sizeof(info->vhost), s);
    snprintf(s, sizeof(s), "c%llu", (unsigned long long)k);
    pp_reqrec_copy(info->client, sizeof(info->client), s);
    snprintf(s, sizeof(s), "h%llu", (unsigned long long)k);
    pp_reqrec_copy(info->handler, sizeof(info->handler), s);
}

#define KINDS 64

static void *writer(void *arg)
{
    pp_reqrec *rec = pp_reqrec_self();
    static pp_reqrec_info infos[KINDS];
    uint64_t k;

    /* Made beforehand: the writer spends its time writing, where a reader can catch it. */
    for (k = 0; k < KINDS; k++) {
        make(&infos[k], k + 1);
    }
    *(uint32_t *)arg = my_tid();
    for (k = 0; !atomic_load(&stop_writing); k = (k + 1) % KINDS) {
        pp_reqrec_begin(rec, &infos[k]);
        pp_reqrec_set_handler(rec, infos[k].handler);   /* the same value, rewritten */
        pp_reqrec_end(k + 1);
    }
    return NULL;
}

START_TEST(reader_never_sees_a_mix)
{
    pp_reqrec_view v[4];
    pthread_t th;
    volatile uint32_t wtid = 0;
    long good = 0, torn = 0, i, ms;
    struct timespec t0, t1;

    ck_assert_int_eq(pp_reqrec_init(4), 0);
    atomic_store(&stop_writing, 0);
    ck_assert_int_eq(pthread_create(&th, NULL, writer, (void *)&wtid), 0);
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (i = 0;; i++) {
        size_t n = pp_reqrec_snapshot(v, 4), j;
        for (j = 0; j < n; j++) {
            pp_reqrec_info want;
            if (v[j].tid != wtid || v[j].info.token == 0) {
                continue;
            }
            if (v[j].torn) {
                torn++;
                continue;
            }
            make(&want, v[j].info.token);
            /* The fields as strings: after a NUL, an earlier request's bytes remain. */
            ck_assert_int_eq(v[j].info.start_us, want.start_us);
            ck_assert_str_eq(v[j].info.request, want.request);
            ck_assert_str_eq(v[j].info.vhost, want.vhost);
            ck_assert_str_eq(v[j].info.client, want.client);
            ck_assert_str_eq(v[j].info.handler, want.handler);
            good++;
        }
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* 300 ms of reading at least, and on until 100 whole copies were checked (a
         * loaded machine may give the writer little time): at most 10 s. */
        ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        if ((ms > 300 && good > 100) || ms > 10000) {
            break;
        }
    }
    atomic_store(&stop_writing, 1);
    pthread_join(th, NULL);
    printf("reader_never_sees_a_mix: %ld whole copies, %ld torn, %ld snapshots\n", good, torn,
           i);
    ck_assert_int_gt(good, 100);
    pp_reqrec_fini();
}
END_TEST

int main(void)
{
    Suite *s = suite_create("reqrec");
    TCase *tc = tcase_create("core");

    tcase_set_timeout(tc, 30);
    tcase_add_test(tc, begin_handler_end);
    tcase_add_test(tc, long_values_are_cut);
    tcase_add_test(tc, end_from_another_thread);
    tcase_add_test(tc, records_come_back_at_thread_exit);
    tcase_add_test(tc, reader_never_sees_a_mix);
    suite_add_tcase(s, tc);
    return run_suite(s);
}
