/* threadpool.c - pthread pool with a spin-then-sleep hand-off.
 *
 * One task at a time. pg_pool_run publishes (fn, arg), bumps the atomic
 * generation counter and runs part 0 itself; the workers, which spin on the
 * counter for SPIN_NS after finishing a task before they block on the
 * condition variable, notice the new generation within a few hundred
 * nanoseconds. Completion is an atomic count of the workers still running.
 *
 * Lost wake-ups: a worker about to sleep increments n_sleeping and then
 * re-reads gen under the mutex; the caller bumps gen and then reads
 * n_sleeping (both sequentially consistent). Either the caller sees the
 * sleeper and broadcasts under the mutex, or the worker sees the new gen.
 *
 * pg_pool_run is not reentrant: one caller thread at a time, and a task may
 * not call pg_pool_run on the same pool.
 */
#include "threadpool.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include "util.h"

#define SPIN_NS 100000L       /* how long an idle worker spins before it sleeps */
#define YIELD_AFTER_NS 20000L /* spinning longer than this yields the CPU between checks */

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define cpu_relax() _mm_pause()
#elif defined(__aarch64__)
#define cpu_relax() __asm__ __volatile__("yield")
#else
#define cpu_relax() ((void)0)
#endif

typedef struct {
    pg_pool *pool;
    int ith;
} worker_arg;

struct pg_pool {
    int n;                    /* threads including the caller */
    long spin_ns;             /* SPIN_NS, or 0 when there are more threads than CPUs */
    pthread_t *threads;       /* n - 1 workers */
    worker_arg *wargs;
    pg_task_fn fn;            /* the current task, published by gen */
    void *arg;
    _Atomic unsigned gen;     /* bumped once per run (and at shutdown) */
    _Atomic int pending;      /* workers that have not finished this run */
    _Atomic int n_sleeping;   /* workers blocked (or about to) on cv */
    _Atomic int stop;
    pthread_mutex_t mu;
    pthread_cond_t cv;
};

static long now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000000000L + ts.tv_nsec;
}

/* Spins (pause, then sched_yield so that an oversubscribed machine still
 * makes progress) until *v != seen or `limit_ns` passed; returns *v. */
static unsigned spin_while_eq(_Atomic unsigned *v, unsigned seen, long limit_ns) {
    unsigned g;
    long t0 = 0;
    for (unsigned i = 0;; i++) {
        g = atomic_load_explicit(v, memory_order_acquire);
        if (g != seen || limit_ns <= 0) return g;
        if ((i & 63) == 63) {
            const long t = now_ns();
            if (!t0) t0 = t;
            const long dt = t - t0;
            if (dt > limit_ns) return g;
            if (dt > YIELD_AFTER_NS) sched_yield();
        }
        cpu_relax();
    }
}

/* Waits until gen differs from `seen`; returns the new value. */
static unsigned wait_gen(pg_pool *p, unsigned seen) {
    unsigned g = spin_while_eq(&p->gen, seen, p->spin_ns);
    if (g != seen) return g;
    pthread_mutex_lock(&p->mu);
    atomic_fetch_add(&p->n_sleeping, 1);
    while ((g = atomic_load(&p->gen)) == seen) pthread_cond_wait(&p->cv, &p->mu);
    atomic_fetch_sub(&p->n_sleeping, 1);
    pthread_mutex_unlock(&p->mu);
    return g;
}

static void *worker_main(void *v) {
    worker_arg *wa = v;
    pg_pool *p = wa->pool;
    unsigned seen = 0;
    for (;;) {
        seen = wait_gen(p, seen);
        if (atomic_load_explicit(&p->stop, memory_order_acquire)) break;
        p->fn(p->arg, wa->ith, p->n);
        atomic_fetch_sub_explicit(&p->pending, 1, memory_order_acq_rel);
    }
    return NULL;
}

int pg_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

pg_pool *pg_pool_new(int n_threads) {
    if (n_threads <= 0) n_threads = pg_cpu_count();
    pg_pool *p = xcalloc(1, sizeof *p);
    p->n = n_threads;
    /* Oversubscribed, a spinning worker would keep the CPU from the one that
     * still has work: sleep at once instead. */
    p->spin_ns = n_threads <= pg_cpu_count() ? SPIN_NS : 0;
    atomic_init(&p->gen, 0);
    atomic_init(&p->pending, 0);
    atomic_init(&p->n_sleeping, 0);
    atomic_init(&p->stop, 0);
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->cv, NULL);
    if (n_threads > 1) {
        p->threads = xcalloc((size_t)n_threads - 1, sizeof *p->threads);
        p->wargs = xcalloc((size_t)n_threads - 1, sizeof *p->wargs);
        for (int i = 1; i < n_threads; i++) {
            p->wargs[i - 1].pool = p;
            p->wargs[i - 1].ith = i;
            int rc = pthread_create(&p->threads[i - 1], NULL, worker_main, &p->wargs[i - 1]);
            PG_ASSERT(rc == 0);
        }
    }
    return p;
}

/* Bumps gen, waking any sleeping worker. */
static void publish(pg_pool *p) {
    atomic_fetch_add(&p->gen, 1); /* seq_cst: ordered before the n_sleeping read */
    if (atomic_load(&p->n_sleeping) > 0) {
        pthread_mutex_lock(&p->mu);
        pthread_cond_broadcast(&p->cv);
        pthread_mutex_unlock(&p->mu);
    }
}

void pg_pool_free(pg_pool *p) {
    if (!p) return;
    if (p->n > 1) {
        atomic_store(&p->stop, 1);
        publish(p);
        for (int i = 1; i < p->n; i++) pthread_join(p->threads[i - 1], NULL);
    }
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->cv);
    free(p->threads);
    free(p->wargs);
    free(p);
}

int pg_pool_size(const pg_pool *p) { return p ? p->n : 1; }

void pg_pool_run(pg_pool *p, pg_task_fn fn, void *arg) {
    if (!p || p->n == 1) {
        fn(arg, 0, 1);
        return;
    }
    p->fn = fn;
    p->arg = arg;
    atomic_store_explicit(&p->pending, p->n - 1, memory_order_relaxed);
    publish(p); /* release: fn, arg and pending are visible to the workers */
    fn(arg, 0, p->n);
    /* Wait for the workers: pause-spin, then yield (a worker was descheduled). */
    long t0 = 0;
    for (unsigned i = 0; atomic_load_explicit(&p->pending, memory_order_acquire) != 0; i++) {
        cpu_relax();
        if ((i & 63) == 63) {
            const long t = now_ns();
            if (!t0) t0 = t;
            if (t - t0 > YIELD_AFTER_NS || !p->spin_ns) sched_yield();
        }
    }
}
