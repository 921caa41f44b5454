/* test_threadpool.c - every part runs exactly once per run, back-to-back runs
 * do not deadlock, and pools of every size shut down cleanly. */
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test.h"
#include "threadpool.h"
#include "util.h"

#define MAXT 8

typedef struct {
    _Atomic int calls[MAXT];
    _Atomic int bad_nth;
    int nth_expected;
    long data[MAXT];  /* plain writes by each part, read by the caller after the run */
    long round;
} count_arg;

static void count_task(void *v, int ith, int nth) {
    count_arg *a = v;
    if (nth != a->nth_expected || ith < 0 || ith >= nth) atomic_fetch_add(&a->bad_nth, 1);
    else {
        atomic_fetch_add(&a->calls[ith], 1);
        a->data[ith] = a->round * 100 + ith;
    }
}

static void test_each_part_once(void) {
    for (int n = 1; n <= 4; n++) {
        pg_pool *p = pg_pool_new(n);
        CHECK(pg_pool_size(p) == n, "size %d", pg_pool_size(p));
        count_arg a;
        memset(&a, 0, sizeof a);
        a.nth_expected = n;
        int stale = 0;
        const int runs = 2000;
        for (int r = 0; r < runs; r++) {
            a.round = r;
            pg_pool_run(p, count_task, &a);
            /* everything a part wrote is visible once pg_pool_run returns */
            for (int i = 0; i < n; i++) stale += a.data[i] != r * 100 + i;
            if (r % 500 == 0) usleep(300); /* let workers fall asleep sometimes */
        }
        CHECK(a.bad_nth == 0, "n=%d: bad ith/nth %d times", n, a.bad_nth);
        CHECK(stale == 0, "n=%d: %d stale results after run", n, stale);
        for (int i = 0; i < n; i++) CHECK(a.calls[i] == runs, "n=%d ith=%d ran %d times", n, i, a.calls[i]);
        pg_pool_free(p);
    }
    CHECK(pg_pool_size(NULL) == 1, "NULL pool has size 1");
    pg_pool_free(NULL);
}

typedef struct {
    _Atomic long sum;
} sum_arg;

static void sum_task(void *v, int ith, int nth) {
    sum_arg *a = v;
    atomic_fetch_add_explicit(&a->sum, ith + 1, memory_order_relaxed);
}

static void test_back_to_back(void) {
    for (int n = 1; n <= 4; n++) {
        pg_pool *p = pg_pool_new(n);
        sum_arg a;
        atomic_init(&a.sum, 0);
        const long runs = 100000;
        double t0 = pg_time_s();
        for (long r = 0; r < runs; r++) pg_pool_run(p, sum_task, &a);
        double dt = pg_time_s() - t0;
        CHECK(a.sum == runs * n * (n + 1) / 2, "n=%d: sum %ld", n, (long)a.sum);
        fprintf(stderr, "  n=%d: %ld runs, %.2f us per run\n", n, runs, dt / runs * 1e6);
        pg_pool_free(p);
    }
}

/* Runs separated by long pauses: workers go to sleep and must be woken. */
static void test_sleep_wake(void) {
    pg_pool *p = pg_pool_new(3);
    count_arg a;
    memset(&a, 0, sizeof a);
    a.nth_expected = 3;
    for (int r = 0; r < 20; r++) {
        usleep(r % 2 ? 1000 : 50);
        a.round = r;
        pg_pool_run(p, count_task, &a);
    }
    for (int i = 0; i < 3; i++) CHECK(a.calls[i] == 20, "ith=%d ran %d times", i, a.calls[i]);
    pg_pool_free(p);
    /* create and free without ever running, and with all workers asleep */
    for (int i = 0; i < 50; i++) pg_pool_free(pg_pool_new(1 + i % 4));
    p = pg_pool_new(2);
    usleep(2000);
    pg_pool_free(p);
}

static void test_default_size(void) {
    pg_pool *p = pg_pool_new(0);
    CHECK(pg_pool_size(p) == pg_cpu_count(), "default size %d vs %d cpus", pg_pool_size(p), pg_cpu_count());
    CHECK(pg_cpu_count() >= 1, "cpu count");
    pg_pool_free(p);
}

static void test_split(void) {
    for (long n = 0; n < 50; n++)
        for (int nth = 1; nth <= 7; nth++) {
            long expect_lo = 0;
            int ok = 1;
            for (int i = 0; i < nth; i++) {
                long lo, hi;
                pg_split(n, i, nth, &lo, &hi);
                ok &= lo == expect_lo && hi >= lo && hi - lo <= n / nth + 1;
                expect_lo = hi;
            }
            CHECK(ok && expect_lo == n, "split n=%ld nth=%d", n, nth);
        }
}

int main(void) {
    TEST_RUN(test_split);
    TEST_RUN(test_each_part_once);
    TEST_RUN(test_back_to_back);
    TEST_RUN(test_sleep_wake);
    TEST_RUN(test_default_size);
    return test_summary("test_threadpool");
}
