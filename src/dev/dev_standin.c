/* dev_standin.c - the CPU stand-in device (dev.h).
 *
 * Device memory is host memory. The compute stream is a worker thread of
 * its own: every kernel call appends an operation (a function and a copy of
 * its arguments) to a FIFO and returns; the worker runs the operations in
 * order, each followed by usleep(delay_us) when delay_us > 0, so that the
 * stream lags behind the host as a GPU's does and the host-side scheduling
 * (what waits for what) is exercised without a GPU.
 *
 * Progress is counted in sequence numbers: the i-th operation queued has
 * seq i (`queued` is the last one given), and `done` is the seq of the last
 * one finished. sync waits for done == queued; a slot's fence is the value
 * of `queued` when it was set, and a refill of the slot waits for done to
 * reach it.
 *
 * Numbers: each kernel calls the CPU kernel that forward.c calls for the
 * same step, on one thread (pg_matmul and pg_attention_ext with no pool,
 * the `pgk` table), so the device pass on the stand-in computes exactly the
 * numbers of the CPU pass.
 */
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include "dev.h"

typedef struct standin standin;

/* Runs on the worker; args is the copy made when the operation was queued. */
typedef void (*op_fn)(standin *d, const void *args);

typedef struct op {
    struct op *next;
    op_fn run;
    uint64_t seq;
    void *owned;        /* freed once it has run: upload_async's copy of the source */
    max_align_t args[]; /* the argument struct */
} op;

struct standin {
    pg_dev base;              /* first member: a pg_dev * is a standin * */
    int delay_us;             /* slept after each operation */
    pthread_t worker;
    pthread_mutex_t mu;       /* guards every field below but the scratch */
    pthread_cond_t queued_cv; /* an operation was queued, or stop was set */
    pthread_cond_t done_cv;   /* done advanced */
    op *head, *tail;          /* operations not yet started, oldest first */
    uint64_t queued, done;    /* seq of the last operation queued, finished */
    bool stop;                /* destroy: the worker leaves once the queue is empty */
    char err[PG_ERR_MAX];     /* first failure of the stream ("" if none), reported by sync */
    void *scratch;            /* worker only: matmul activations, RoPE angles, attention logits */
    size_t scratch_bytes;
};

static standin *as_(pg_dev *d) { return (standin *)d; }

/* ---- the stream ---------------------------------------------------------------- */

/* Records the stream's first failure; sync and download report it. */
static void fail_(standin *d, const char *what) {
    pthread_mutex_lock(&d->mu);
    if (!d->err[0]) snprintf(d->err, sizeof d->err, "%s: out of host memory for %s", d->base.name, what);
    pthread_mutex_unlock(&d->mu);
}

static void *worker_(void *arg) {
    standin *d = arg;
    /* short sleeps should be short: Linux's default 50 us timer slack made
     * a 5 us delay per kernel cost 20x the test's run time */
    prctl(PR_SET_TIMERSLACK, 1000UL);
    pthread_mutex_lock(&d->mu);
    for (;;) {
        while (!d->head && !d->stop) pthread_cond_wait(&d->queued_cv, &d->mu);
        op *o = d->head;
        if (!o) break; /* stopped, and everything queued has run */
        d->head = o->next;
        if (!d->head) d->tail = NULL;
        pthread_mutex_unlock(&d->mu);
        o->run(d, o->args);
        if (d->delay_us > 0) usleep((useconds_t)d->delay_us);
        uint64_t seq = o->seq;
        free(o->owned);
        free(o);
        pthread_mutex_lock(&d->mu);
        d->done = seq;
        pthread_cond_broadcast(&d->done_cv);
    }
    pthread_mutex_unlock(&d->mu);
    return NULL;
}

/* Queues run(args) with a copy of the `bytes` of args; `owned` (or NULL)
 * is freed after it has run. An operation that cannot be queued is dropped
 * and the failure recorded. */
static void enqueue_(standin *d, op_fn run, const void *args, size_t bytes, void *owned) {
    op *o = malloc(sizeof *o + bytes);
    if (!o) {
        free(owned);
        fail_(d, "a queued operation");
        return;
    }
    o->next = NULL;
    o->run = run;
    o->owned = owned;
    memcpy(o->args, args, bytes);
    pthread_mutex_lock(&d->mu);
    o->seq = ++d->queued;
    if (d->tail) d->tail->next = o;
    else d->head = o;
    d->tail = o;
    pthread_cond_signal(&d->queued_cv);
    pthread_mutex_unlock(&d->mu);
}

/* Waits until everything queued so far has run; -1 if the stream failed. */
static int wait_idle_(standin *d, pg_error *e) {
    pthread_mutex_lock(&d->mu);
    uint64_t target = d->queued;
    while (d->done < target) pthread_cond_wait(&d->done_cv, &d->mu);
    int rc = d->err[0] ? pg_fail(e, "%s", d->err) : 0;
    pthread_mutex_unlock(&d->mu);
    return rc;
}

/* Worker only: makes d->scratch hold at least `bytes`; false (recorded) if it cannot. */
static bool scratch_reserve_(standin *d, size_t bytes) {
    if (bytes <= d->scratch_bytes) return true;
    free(d->scratch);
    d->scratch_bytes = 0;
    if (posix_memalign(&d->scratch, 64, bytes)) {
        d->scratch = NULL;
        fail_(d, "kernel scratch");
        return false;
    }
    d->scratch_bytes = bytes;
    return true;
}

/* ---- memory -------------------------------------------------------------------- */

static void *alloc_(pg_dev *dv, size_t bytes) {
    void *p;
    return posix_memalign(&p, 64, bytes ? bytes : 1) ? NULL : p;
}

static void free_(pg_dev *dv, void *p) { free(p); }
static void *host_alloc_(pg_dev *dv, size_t bytes) { return malloc(bytes ? bytes : 1); }
static void host_free_(pg_dev *dv, void *p) { free(p); }

/* Waits for the queue as well, so that it never overtakes a kernel queued
 * before it that still reads or writes dst (cudaMemcpy on the legacy
 * default stream does not overtake either). */
static int upload_(pg_dev *dv, void *dst, const void *src, size_t n, pg_error *e) {
    if (wait_idle_(as_(dv), e)) return -1;
    memcpy(dst, src, n);
    return 0;
}

static int download_(pg_dev *dv, void *dst, const void *src, size_t n, pg_error *e) {
    if (wait_idle_(as_(dv), e)) return -1;
    memcpy(dst, src, n);
    return 0;
}

typedef struct {
    void *dst;
    const void *src; /* the operation's own copy */
    size_t n;
} copy_args;

static void run_copy_(standin *d, const void *p) {
    const copy_args *a = p;
    memcpy(a->dst, a->src, a->n);
}

static void upload_async_(pg_dev *dv, void *dst, const void *src, size_t n) {
    standin *d = as_(dv);
    if (!n) return;
    void *copy = malloc(n);
    if (!copy) {
        fail_(d, "upload_async's copy");
        return;
    }
    memcpy(copy, src, n);
    copy_args a = {dst, copy, n};
    enqueue_(d, run_copy_, &a, sizeof a, copy);
}

static int sync_(pg_dev *dv, pg_error *e) { return wait_idle_(as_(dv), e); }

/* ---- expert slots -------------------------------------------------------------- */

/* A cache's fences: fence[i] is the seq a refill of slot i waits for (0: none). */
struct pg_dev_slots {
    uint64_t *fence;
    int n_slots, n_io;
};

static pg_dev_slots *slots_new_(pg_dev *dv, int n_slots, int n_io, pg_error *e) {
    if (n_slots < 0 || n_io < 1) {
        pg_fail(e, "%s: %d slots and %d I/O streams", dv->name, n_slots, n_io);
        return NULL;
    }
    pg_dev_slots *s = calloc(1, sizeof *s);
    uint64_t *fence = calloc(n_slots ? (size_t)n_slots : 1, sizeof *fence);
    if (!s || !fence) {
        free(s);
        free(fence);
        pg_fail(e, "%s: out of host memory for %d slot fences", dv->name, n_slots);
        return NULL;
    }
    s->fence = fence;
    s->n_slots = n_slots;
    s->n_io = n_io;
    return s;
}

/* Fences are sequence numbers: nothing is left queued to wait for. */
static void slots_free_(pg_dev *dv, pg_dev_slots *s) {
    (void)dv;
    if (!s) return;
    free(s->fence);
    free(s);
}

/* Queues nothing: the fence is the seq of the last operation queued. */
static void fence_slot_(pg_dev *dv, pg_dev_slots *s, int slot) {
    standin *d = as_(dv);
    PG_ASSERT(slot >= 0 && slot < s->n_slots);
    pthread_mutex_lock(&d->mu);
    s->fence[slot] = d->queued;
    pthread_mutex_unlock(&d->mu);
}

/* The fence read is the slot's last one when the call starts: a later
 * fence belongs to the next refill. */
static int fill_slot_(pg_dev *dv, pg_dev_slots *s, int io, int slot, void *dst, const void *src, size_t n,
                      pg_error *e) {
    standin *d = as_(dv);
    PG_ASSERT(slot >= 0 && slot < s->n_slots && io >= 0 && io < s->n_io);
    pthread_mutex_lock(&d->mu);
    uint64_t fence = s->fence[slot];
    while (d->done < fence) pthread_cond_wait(&d->done_cv, &d->mu);
    pthread_mutex_unlock(&d->mu);
    memcpy(dst, src, n);
    return 0;
}

/* ---- kernels: each a struct of arguments, the worker's run_*, the queuing call -- */

typedef struct {
    pg_mat W;
    int T;
    const int32_t *tokens;
    float *x;
} embed_args;

static void run_embed_(standin *d, const void *p) {
    const embed_args *a = p;
    for (int t = 0; t < a->T; t++) pg_mat_row_f32(&a->W, a->tokens[t], a->x + (size_t)t * a->W.cols);
}

static void embed_(pg_dev *dv, const pg_mat *W, int T, const int32_t *tokens, float *x) {
    embed_args a = {*W, T, tokens, x};
    enqueue_(as_(dv), run_embed_, &a, sizeof a, NULL);
}

typedef struct {
    int rows, n;
    const float *x, *w;
    float eps;
    float *y;
} rmsnorm_args;

static void run_rmsnorm_(standin *d, const void *p) {
    const rmsnorm_args *a = p;
    for (int r = 0; r < a->rows; r++) pgk.rmsnorm(a->n, a->x + (size_t)r * a->n, a->w, a->eps, a->y + (size_t)r * a->n);
}

static void rmsnorm_(pg_dev *dv, int rows, int n, const float *x, const float *w, float eps, float *y) {
    rmsnorm_args a = {rows, n, x, w, eps, y};
    enqueue_(as_(dv), run_rmsnorm_, &a, sizeof a, NULL);
}

typedef struct {
    pg_mat W;
    int T;
    const float *X;
    int ldx;
    float *Y;
    int ldy;
} matmul_args;

static void run_matmul_(standin *d, const void *p) {
    const matmul_args *a = p;
    if (!scratch_reserve_(d, pg_matmul_scratch_bytes(&a->W, a->T))) return;
    pg_matmul(NULL, &a->W, a->T, a->X, a->ldx, a->Y, a->ldy, d->scratch);
}

static void matmul_(pg_dev *dv, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    matmul_args a = {*W, T, X, ldx, Y, ldy};
    enqueue_(as_(dv), run_matmul_, &a, sizeof a, NULL);
}

typedef struct {
    int T, n;
    float *x;
    const float *b;
} add_bias_args;

static void run_add_bias_(standin *d, const void *p) {
    const add_bias_args *a = p;
    for (int t = 0; t < a->T; t++)
        for (int i = 0; i < a->n; i++) a->x[(size_t)t * a->n + i] += a->b[i];
}

static void add_bias_(pg_dev *dv, int T, int n, float *x, const float *b) {
    add_bias_args a = {T, n, x, b};
    enqueue_(as_(dv), run_add_bias_, &a, sizeof a, NULL);
}

/* add, clamp, zero: n floats of y (and x) */
typedef struct {
    size_t n;
    float *y;
    const float *x;
    float c;
} elementwise_args;

static void run_add_(standin *d, const void *p) {
    const elementwise_args *a = p;
    for (size_t i = 0; i < a->n; i++) a->y[i] += a->x[i];
}

static void add_(pg_dev *dv, size_t n, float *y, const float *x) {
    elementwise_args a = {n, y, x, 0};
    enqueue_(as_(dv), run_add_, &a, sizeof a, NULL);
}

static void run_clamp_(standin *d, const void *p) {
    const elementwise_args *a = p;
    const float c = a->c;
    for (size_t i = 0; i < a->n; i++) a->y[i] = a->y[i] > c ? c : a->y[i] < -c ? -c : a->y[i];
}

static void clamp_(pg_dev *dv, size_t n, float *x, float c) {
    elementwise_args a = {n, x, NULL, c};
    enqueue_(as_(dv), run_clamp_, &a, sizeof a, NULL);
}

static void run_zero_(standin *d, const void *p) {
    const elementwise_args *a = p;
    memset(a->y, 0, a->n * sizeof(float));
}

static void zero_(pg_dev *dv, size_t n, float *x) {
    elementwise_args a = {n, x, NULL, 0};
    enqueue_(as_(dv), run_zero_, &a, sizeof a, NULL);
}

typedef struct {
    int T;
    float *x;
    int n_heads, hd, n_rot;
    const int *pos;
    const float *inv_freq;
    float attn_factor;
    int neox;
} rope_args;

/* The angles of each row's position, then the rotation, as forward.c does. */
static void run_rope_(standin *d, const void *p) {
    const rope_args *a = p;
    if (!scratch_reserve_(d, (size_t)a->n_rot * sizeof(float))) return;
    float *cs = d->scratch;
    for (int t = 0; t < a->T; t++) {
        pg_rope_cache_freqs(a->pos[t], a->n_rot, a->inv_freq, a->attn_factor, cs);
        pg_rope_apply(a->x + (size_t)t * a->n_heads * a->hd, a->n_heads, a->hd, a->n_rot, cs, a->neox);
    }
}

static void rope_(pg_dev *dv, int T, float *x, int n_heads, int hd, int n_rot, const int *pos, const float *inv_freq,
                  float attn_factor, int neox) {
    rope_args a = {T, x, n_heads, hd, n_rot, pos, inv_freq, attn_factor, neox};
    enqueue_(as_(dv), run_rope_, &a, sizeof a, NULL);
}

/* set_rows, gather_rows, scatter_rows: rows of `width` floats */
typedef struct {
    int n, width;
    const float *src;
    const int *idx;
    float *dst;
} rows_args;

static void run_set_rows_(standin *d, const void *p) {
    const rows_args *a = p;
    const size_t w = (size_t)a->width;
    for (int t = 0; t < a->n; t++) memcpy(a->dst + (size_t)a->idx[t] * w, a->src + t * w, w * sizeof(float));
}

static void set_rows_(pg_dev *dv, int T, int n, const float *src, const int *pos, float *dst) {
    rows_args a = {T, n, src, pos, dst};
    enqueue_(as_(dv), run_set_rows_, &a, sizeof a, NULL);
}

static void run_gather_rows_(standin *d, const void *p) {
    const rows_args *a = p;
    const size_t w = (size_t)a->width;
    for (int i = 0; i < a->n; i++) memcpy(a->dst + i * w, a->src + (size_t)a->idx[i] * w, w * sizeof(float));
}

static void gather_rows_(pg_dev *dv, int n, int D, const float *src, const int *idx, float *dst) {
    rows_args a = {n, D, src, idx, dst};
    enqueue_(as_(dv), run_gather_rows_, &a, sizeof a, NULL);
}

/* scatter is set_rows with other names */
static void scatter_rows_(pg_dev *dv, int n, int D, const float *src, const int *idx, float *dst) {
    rows_args a = {n, D, src, idx, dst};
    enqueue_(as_(dv), run_set_rows_, &a, sizeof a, NULL);
}

typedef struct {
    int T;
    const float *q, *k, *v;
    int kv_stride;
    const int *pos;
    int window, H, KV, hd;
    const float *sinks;
    float *out;
} attention_args;

static void run_attention_(standin *d, const void *p) {
    const attention_args *a = p;
    const size_t qd = (size_t)a->H * a->hd;
    for (int t = 0; t < a->T; t++) {
        int n_kv = a->pos[t] + 1, first = a->window > 0 && n_kv > a->window ? n_kv - a->window : 0;
        if (!scratch_reserve_(d, ((size_t)n_kv + 1) * sizeof(float))) return;
        pg_attention_ext(NULL, a->q + t * qd, a->k, a->v, a->kv_stride, first, n_kv, a->H, a->KV, a->hd, a->sinks,
                         d->scratch, a->out + t * qd);
    }
}

static void attention_(pg_dev *dv, int T, const float *q, const float *k, const float *v, int kv_stride,
                       const int *pos, int window, int H, int KV, int hd, const float *sinks, float *out) {
    attention_args a = {T, q, k, v, kv_stride, pos, window, H, KV, hd, sinks, out};
    enqueue_(as_(dv), run_attention_, &a, sizeof a, NULL);
}

typedef struct {
    size_t n;
    const float *g, *u;
    float *y;
} silu_mul_args;

static void run_silu_mul_(standin *d, const void *p) {
    const silu_mul_args *a = p;
    const size_t chunk = (size_t)1 << 30; /* the kernel counts in int; elementwise, so chunks change nothing */
    for (size_t i = 0; i < a->n; i += chunk) {
        size_t m = a->n - i < chunk ? a->n - i : chunk;
        pgk.silu_mul((int)m, a->g + i, a->u + i, a->y + i);
    }
}

typedef struct {
    size_t n;
    const float *g, *u;
    float alpha, limit;
    float *y;
} swiglu_oai_args;

static void run_swiglu_oai_(standin *d, const void *p) {
    const swiglu_oai_args *a = p;
    const size_t chunk = (size_t)1 << 30;
    for (size_t i = 0; i < a->n; i += chunk) {
        size_t m = a->n - i < chunk ? a->n - i : chunk;
        pgk.swiglu_oai((int)m, a->g + i, a->u + i, a->alpha, a->limit, a->y + i);
    }
}

static void swiglu_oai_(pg_dev *dv, size_t n, const float *g, const float *u, float alpha, float limit, float *y) {
    swiglu_oai_args a = {n, g, u, alpha, limit, y};
    enqueue_(as_(dv), run_swiglu_oai_, &a, sizeof a, NULL);
}

static void silu_mul_(pg_dev *dv, size_t n, const float *g, const float *u, float *y) {
    silu_mul_args a = {n, g, u, y};
    enqueue_(as_(dv), run_silu_mul_, &a, sizeof a, NULL);
}

typedef struct {
    int T, K, D;
    const float *src, *w;
    float *acc;
} moe_combine_args;

/* axpy in slot order, as forward.c combines the experts */
static void run_moe_combine_(standin *d, const void *p) {
    const moe_combine_args *a = p;
    const size_t D = (size_t)a->D;
    for (int t = 0; t < a->T; t++) {
        float *acc = a->acc + t * D;
        memset(acc, 0, D * sizeof(float));
        for (int j = 0; j < a->K; j++) {
            size_t s = (size_t)t * a->K + j;
            pgk.axpy(a->D, a->w[s], a->src + s * D, acc);
        }
    }
}

static void moe_combine_(pg_dev *dv, int T, int K, int D, const float *src, const float *w, float *acc) {
    moe_combine_args a = {T, K, D, src, w, acc};
    enqueue_(as_(dv), run_moe_combine_, &a, sizeof a, NULL);
}

typedef struct {
    int T, D;
    float *acc;
    const float *x, *z;
} gated_add_args;

/* the gate as forward.c computes it for a shared expert */
static void run_gated_add_(standin *d, const void *p) {
    const gated_add_args *a = p;
    const size_t D = (size_t)a->D;
    for (int t = 0; t < a->T; t++) {
        float g = a->z ? 1.0f / (1.0f + expf(-a->z[t])) : 1.0f;
        pgk.axpy(a->D, g, a->x + t * D, a->acc + t * D);
    }
}

static void gated_add_(pg_dev *dv, int T, int D, float *acc, const float *x, const float *z) {
    gated_add_args a = {T, D, acc, x, z};
    enqueue_(as_(dv), run_gated_add_, &a, sizeof a, NULL);
}

/* ---- lifetime ------------------------------------------------------------------- */

/* Runs what is still queued, then stops the worker. */
static void destroy_(pg_dev *dv) {
    standin *d = as_(dv);
    pthread_mutex_lock(&d->mu);
    d->stop = true;
    pthread_cond_signal(&d->queued_cv);
    pthread_mutex_unlock(&d->mu);
    pthread_join(d->worker, NULL);
    pthread_cond_destroy(&d->done_cv);
    pthread_cond_destroy(&d->queued_cv);
    pthread_mutex_destroy(&d->mu);
    free(d->scratch);
    free(d);
}

static const pg_dev_ops standin_ops = {
    .name = "standin",
    .destroy = destroy_,
    .alloc = alloc_,
    .free = free_,
    .host_alloc = host_alloc_,
    .host_free = host_free_,
    .upload = upload_,
    .download = download_,
    .upload_async = upload_async_,
    .sync = sync_,
    .slots_new = slots_new_,
    .slots_free = slots_free_,
    .fence_slot = fence_slot_,
    .fill_slot = fill_slot_,
    .embed = embed_,
    .rmsnorm = rmsnorm_,
    .matmul = matmul_,
    .add_bias = add_bias_,
    .add = add_,
    .clamp = clamp_,
    .zero = zero_,
    .rope = rope_,
    .set_rows = set_rows_,
    .attention = attention_,
    .silu_mul = silu_mul_,
    .swiglu_oai = swiglu_oai_,
    .gather_rows = gather_rows_,
    .scatter_rows = scatter_rows_,
    .moe_combine = moe_combine_,
    .gated_add = gated_add_,
};

pg_dev *pg_dev_standin_new(int delay_us, pg_error *e) {
    if (delay_us < 0) {
        pg_fail(e, "CPU stand-in: delay %d us is negative", delay_us);
        return NULL;
    }
    standin *d = calloc(1, sizeof *d);
    if (!d) {
        pg_fail(e, "CPU stand-in: out of host memory");
        return NULL;
    }
    d->base.ops = &standin_ops;
    snprintf(d->base.name, sizeof d->base.name, "CPU stand-in");
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    d->base.mem_total = pages > 0 && page > 0 ? (size_t)pages * (size_t)page : 0; /* its memory is the host's */
    d->delay_us = delay_us;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->queued_cv, NULL);
    pthread_cond_init(&d->done_cv, NULL);
    if (pthread_create(&d->worker, NULL, worker_, d)) {
        pthread_cond_destroy(&d->done_cv);
        pthread_cond_destroy(&d->queued_cv);
        pthread_mutex_destroy(&d->mu);
        free(d);
        pg_fail(e, "CPU stand-in: cannot start the stream's thread");
        return NULL;
    }
    return &d->base;
}
