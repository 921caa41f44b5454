/* threadpool.h - a fixed set of worker threads that run one task at a time.
 *
 * pg_pool_run(pool, fn, arg) calls fn(arg, ith, nth) on every thread of the
 * pool (the calling thread is ith = 0) and returns when all have finished.
 * Workers spin briefly, then sleep on a condition variable, so that the
 * many small tasks of a decoding step do not pay a wake-up each.
 */
#ifndef PG_THREADPOOL_H
#define PG_THREADPOOL_H

typedef struct pg_pool pg_pool;
typedef void (*pg_task_fn)(void *arg, int ith, int nth);

/* n_threads <= 0 means the number of online CPUs. */
pg_pool *pg_pool_new(int n_threads);
void pg_pool_free(pg_pool *p); /* joins the workers; NULL-safe */
int pg_pool_size(const pg_pool *p);
void pg_pool_run(pg_pool *p, pg_task_fn fn, void *arg);
int pg_cpu_count(void);

/* Split [0, n) into nth near-equal contiguous parts: part ith is [*lo, *hi). */
static inline void pg_split(long n, int ith, int nth, long *lo, long *hi) {
    long q = n / nth, r = n % nth;
    *lo = ith * q + (ith < r ? ith : r);
    *hi = *lo + q + (ith < r ? 1 : 0);
}

#endif
