/* ref.c - scalar reference kernels, the dispatch table, and the parallel
 * drivers (matmul, attention) that call through it.
 *
 * The `_ref` functions define what each kernel computes:
 *  - F32/F16/BF16 dots accumulate in double, in index order, and round once.
 *  - Q8_0 follows GGML exactly: per 32-block d = amax/127 stored as IEEE half,
 *    q = roundf(x/d); a dot sums int products per block exactly and adds
 *    sumi * (f16(dw) * f16(dx)) in float, in block order.
 *  - rmsnorm and softmax accumulate their sums in double.
 */
#include <stdatomic.h>

#include "kernels.h"

#include <math.h>
#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <string.h>

#include "../util.h"

/* ---- scalar references ---------------------------------------------------- */

float pg_dot_f32_ref(int n, const void *w, const void *x) {
    const float *a = w, *b = x;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return (float)s;
}

float pg_dot_f16_ref(int n, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)pg_f16_to_f32(a[i]) * b[i];
    return (float)s;
}

float pg_dot_bf16_ref(int n, const void *w, const void *x) {
    const uint16_t *a = w;
    const float *b = x;
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)pg_bf16_to_f32(a[i]) * b[i];
    return (float)s;
}

float pg_dot_q8_0_ref(int n, const void *w, const void *x) {
    const block_q8_0 *a = w;
    const block_q16_0 *b = x;
    float s = 0;
    for (int ib = 0; ib < n / PG_QK8_0; ib++) {
        int32_t sumi = 0; /* |sum| <= 32 * 127 * 32767 < 2^31 */
        for (int j = 0; j < PG_QK8_0; j++) sumi += a[ib].qs[j] * b[ib].qs[j];
        s += (float)sumi * (pg_f16_to_f32(a[ib].d) * b[ib].d);
    }
    return s;
}

void pg_quantize_q16_0_ref(int n, const float *x, block_q16_0 *y) {
    PG_ASSERT(n % PG_QK8_0 == 0);
    for (int ib = 0; ib < n / PG_QK8_0; ib++) {
        const float *xb = x + ib * PG_QK8_0;
        float amax = 0;
        for (int j = 0; j < PG_QK8_0; j++) amax = fmaxf(amax, fabsf(xb[j]));
        const float d = amax / 32767.0f, id = d ? 32767.0f / amax : 0.0f;
        y[ib].d = d;
        for (int j = 0; j < PG_QK8_0; j++) y[ib].qs[j] = (int16_t)lrintf(fminf(fmaxf(xb[j] * id, -32767.0f), 32767.0f));
    }
}

void pg_quantize_q8_0_ref(int n, const float *x, block_q8_0 *y) {
    PG_ASSERT(n % PG_QK8_0 == 0);
    for (int ib = 0; ib < n / PG_QK8_0; ib++) {
        const float *xb = x + ib * PG_QK8_0;
        float amax = 0;
        for (int j = 0; j < PG_QK8_0; j++) {
            float v = fabsf(xb[j]);
            if (v > amax) amax = v;
        }
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[ib].d = pg_f32_to_f16(d);
        for (int j = 0; j < PG_QK8_0; j++) y[ib].qs[j] = (int8_t)roundf(xb[j] * id);
    }
}

void pg_dequantize_q8_0_ref(int n, const block_q8_0 *x, float *y) {
    PG_ASSERT(n % PG_QK8_0 == 0);
    for (int ib = 0; ib < n / PG_QK8_0; ib++) {
        const float d = pg_f16_to_f32(x[ib].d);
        for (int j = 0; j < PG_QK8_0; j++) y[ib * PG_QK8_0 + j] = x[ib].qs[j] * d;
    }
}

void pg_rmsnorm_ref(int n, const float *x, const float *w, float eps, float *y) {
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = 0; i < n; i++) y[i] = x[i] * scale * w[i];
}

void pg_softmax_ref(int n, float *x) {
    if (n <= 0) return;
    float mx = x[0];
    for (int i = 1; i < n; i++)
        if (x[i] > mx) mx = x[i];
    double s = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    const float inv = (float)(1.0 / s);
    for (int i = 0; i < n; i++) x[i] *= inv;
}

void pg_silu_mul_ref(int n, const float *gate, const float *up, float *y) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

void pg_relu_ref(int n, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void pg_swiglu_oai_ref(int n, const float *gate, const float *up, float alpha, float limit, float *y) {
    for (int i = 0; i < n; i++) {
        const float g = gate[i] > limit ? limit : gate[i]; /* a NaN stays NaN, as torch.clamp */
        const float u = up[i] > limit ? limit : up[i] < -limit ? -limit : up[i];
        y[i] = (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
    }
}

void pg_axpy_ref(int n, float a, const float *x, float *y) {
    for (int i = 0; i < n; i++) y[i] += a * x[i];
}

static void f16_to_f32_ref(int n, const uint16_t *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = pg_f16_to_f32(x[i]);
}

static void bf16_to_f32_ref(int n, const uint16_t *x, float *y) {
    for (int i = 0; i < n; i++) y[i] = pg_bf16_to_f32(x[i]);
}

/* ---- dispatch -------------------------------------------------------------- */

/* The scalar dot product of every weight type, as designated initializers
 * (used twice: the reference table and pgk's static initial value). */
#define PG_DOT_REFS_                                                                        \
    [PG_TYPE_F32] = pg_dot_f32_ref, [PG_TYPE_F16] = pg_dot_f16_ref,                         \
    [PG_TYPE_BF16] = pg_dot_bf16_ref, [PG_TYPE_Q8_0] = pg_dot_q8_0_ref,                     \
    [PG_TYPE_Q4_0] = pg_dot_q4_0_ref, [PG_TYPE_Q4_1] = pg_dot_q4_1_ref,                     \
    [PG_TYPE_Q5_0] = pg_dot_q5_0_ref, [PG_TYPE_Q5_1] = pg_dot_q5_1_ref,                     \
    [PG_TYPE_Q2_K] = pg_dot_q2_K_ref, [PG_TYPE_Q3_K] = pg_dot_q3_K_ref,                     \
    [PG_TYPE_Q4_K] = pg_dot_q4_K_ref, [PG_TYPE_Q5_K] = pg_dot_q5_K_ref,                     \
    [PG_TYPE_Q6_K] = pg_dot_q6_K_ref, [PG_TYPE_TQ1_0] = pg_dot_tq1_0_ref,                   \
    [PG_TYPE_TQ2_0] = pg_dot_tq2_0_ref, [PG_TYPE_MXFP4] = pg_dot_mxfp4_ref,                 \
    [PG_TYPE_IQ4_NL] = pg_dot_iq4_nl_ref, [PG_TYPE_IQ4_XS] = pg_dot_iq4_xs_ref

static const pg_dot_fn dot_ref_[PG_TYPE_COUNT] = {PG_DOT_REFS_};

pg_dot_fn pg_dot_ref(pg_type t) { return t >= 0 && t < PG_TYPE_COUNT ? dot_ref_[t] : NULL; }

static void fill_scalar(pg_kernel_table *t) {
    memset(t, 0, sizeof *t);
    t->isa = PG_ISA_SCALAR;
    memcpy(t->dot, dot_ref_, sizeof t->dot);
    t->quantize_q8_0 = pg_quantize_q8_0_ref;
    t->quantize_q8_1 = pg_quantize_q8_1_ref;
    t->quantize_q16_0 = pg_quantize_q16_0_ref;
    t->quantize_q8_K = pg_quantize_q8_K_ref;
    t->f16_to_f32 = f16_to_f32_ref;
    t->bf16_to_f32 = bf16_to_f32_ref;
    t->rmsnorm = pg_rmsnorm_ref;
    t->softmax = pg_softmax_ref;
    t->silu_mul = pg_silu_mul_ref;
    t->axpy = pg_axpy_ref;
    t->swiglu_oai = pg_swiglu_oai_ref;
}

/* Usable before pg_kernels_init: the scalar kernels. */
pg_kernel_table pgk = {
    .isa = PG_ISA_SCALAR,
    .dot = {PG_DOT_REFS_},
    .quantize_q8_0 = pg_quantize_q8_0_ref,
    .quantize_q8_1 = pg_quantize_q8_1_ref,
    .quantize_q8_K = pg_quantize_q8_K_ref,
    .f16_to_f32 = f16_to_f32_ref,
    .bf16_to_f32 = bf16_to_f32_ref,
    .rmsnorm = pg_rmsnorm_ref,
    .softmax = pg_softmax_ref,
    .silu_mul = pg_silu_mul_ref,
    .axpy = pg_axpy_ref,
    .swiglu_oai = pg_swiglu_oai_ref,
};

/* F16C by CPUID: clang before 15 does not know __builtin_cpu_supports("f16c"),
 * and the fuzz targets are built with clang */
bool pg_cpu_has_f16c(void) {
#if defined(__x86_64__) || defined(__i386__)
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & bit_F16C) && (c & bit_AVX);
#else
    return false;
#endif
}

pg_isa pg_cpu_isa(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && pg_cpu_has_f16c();
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    return avx512 ? PG_ISA_AVX512 : avx2 ? PG_ISA_AVX2 : PG_ISA_SCALAR;
#else
    return PG_ISA_SCALAR;
#endif
}

pg_isa pg_kernels_init(int force) {
    pg_isa isa = pg_cpu_isa();
    const char *env = getenv("PREGATE_ISA");
    if (env) {
        int lvl = !strcmp(env, "scalar") ? PG_ISA_SCALAR
                  : !strcmp(env, "avx2") ? PG_ISA_AVX2
                  : !strcmp(env, "avx512") ? PG_ISA_AVX512
                                           : -1;
        if (lvl >= 0 && lvl < (int)isa) isa = (pg_isa)lvl;
    }
    if (force >= 0 && force < (int)isa) isa = (pg_isa)force;
    pg_kernel_table t;
    fill_scalar(&t);
#if defined(__x86_64__) || defined(__i386__)
    if (isa == PG_ISA_AVX2) pg_kernels_fill_avx2(&t);
    if (isa == PG_ISA_AVX512) pg_kernels_fill_avx512(&t);
#endif
    pgk = t;
    return pgk.isa;
}

const char *pg_isa_name(pg_isa isa) {
    switch (isa) {
    case PG_ISA_SCALAR: return "scalar";
    case PG_ISA_AVX2: return "avx2";
    case PG_ISA_AVX512: return "avx512";
    }
    return "?";
}

/* ---- rows, matmul ------------------------------------------------------------ */

void pg_mat_row_f32(const pg_mat *W, int r, float *y) {
    PG_ASSERT(r >= 0 && r < W->rows);
    const char *row = (const char *)W->data + (size_t)r * W->row_bytes;
    switch (W->type) {
    case PG_TYPE_F32: memcpy(y, row, (size_t)W->cols * sizeof(float)); break;
    case PG_TYPE_F16: pgk.f16_to_f32(W->cols, (const uint16_t *)row, y); break;
    case PG_TYPE_BF16: pgk.bf16_to_f32(W->cols, (const uint16_t *)row, y); break;
    default: pg_dequantize_row_ref(W->type, W->cols, row, y); break;
    }
}

size_t pg_matmul_scratch_bytes(const pg_mat *W, int T) {
    const pg_type vt = pg_vec_dot_type(W->type);
    if (vt == PG_TYPE_F32) return 0;
    return (size_t)T * pg_row_bytes(vt, W->cols);
}

size_t pg_matmul_scratch_max_bytes(int cols, int T) {
    /* Q16_0 is the widest activation format per element (68 bytes per 32) */
    const int64_t c = ((int64_t)cols + PG_QK_K - 1) / PG_QK_K * PG_QK_K;
    return (size_t)T * pg_row_bytes(PG_TYPE_Q16_0, c);
}

/* One row of n floats into activation type vt through the table (vt is
 * Q8_0, Q8_1, Q8_K or Q16_0). */
static void quantize_act_(pg_type vt, int n, const float *x, void *y) {
    switch (vt) {
    case PG_TYPE_Q8_0: pgk.quantize_q8_0(n, x, y); break;
    case PG_TYPE_Q8_1: pgk.quantize_q8_1(n, x, y); break;
    case PG_TYPE_Q8_K: pgk.quantize_q8_K(n, x, y); break;
    case PG_TYPE_Q16_0: pgk.quantize_q16_0(n, x, y); break;
    default: PG_ASSERT(!"quantize_act_: not an activation type");
    }
}

void pg_matmul_ref(const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    const pg_type vt = pg_vec_dot_type(W->type);
    const size_t xb = vt == PG_TYPE_F32 ? 0 : pg_row_bytes(vt, W->cols);
    char *xq = NULL;
    if (xb) {
        xq = xmalloc((size_t)T * xb);
        for (int t = 0; t < T; t++) pg_quantize_row_ref(vt, W->cols, X + (size_t)t * ldx, xq + (size_t)t * xb);
    }
    pg_dot_fn dot = pg_dot_ref(W->type);
    PG_ASSERT(dot);
    for (int r = 0; r < W->rows; r++) {
        const void *row = (const char *)W->data + (size_t)r * W->row_bytes;
        for (int t = 0; t < T; t++) {
            const void *xt = xq ? (const void *)(xq + (size_t)t * xb) : (const void *)(X + (size_t)t * ldx);
            Y[(size_t)t * ldy + r] = dot(W->cols, row, xt);
        }
    }
    free(xq);
}

typedef struct {
    const pg_mat *W;
    int T;
    const float *X;
    int ldx;
    float *Y;
    int ldy;
    const char *xv;   /* prepared activations (quantized rows) or NULL: use X */
    pg_type xv_type;  /* their type (Q8_0, Q8_1, Q8_K, Q16_0) */
    size_t xv_bytes;  /* bytes per prepared row */
    pg_dot_fn dot;
    long chunk;       /* rows taken at a time */
    _Atomic long next; /* first row not yet taken */
} matmul_task;

static void quantize_task(void *v, int ith, int nth) {
    matmul_task *m = v;
    long lo, hi;
    pg_split(m->T, ith, nth, &lo, &hi);
    for (long t = lo; t < hi; t++)
        quantize_act_(m->xv_type, m->W->cols, m->X + (size_t)t * m->ldx, (char *)m->xv + (size_t)t * m->xv_bytes);
}

/* Threads take rows in chunks from a shared counter, so that a thread
 * slowed by something else on its core (an I/O thread, another process)
 * leaves its share to the others. Which thread computes a row never
 * changes the row's value. */
static void matmul_task_fn(void *v, int ith, int nth) {
    matmul_task *m = v;
    const pg_mat *W = m->W;
    const int cols = W->cols, T = m->T;
    const char *base = (const char *)W->data;
    (void)ith;
    (void)nth;
    for (;;) {
        long lo = atomic_fetch_add_explicit(&m->next, m->chunk, memory_order_relaxed);
        if (lo >= W->rows) break;
        long hi = lo + m->chunk < W->rows ? lo + m->chunk : W->rows;
        for (long r = lo; r < hi; r++) {
            const void *row = base + (size_t)r * W->row_bytes;
            /* Each weight row is read from memory once and reused from L1 for all T tokens. */
            for (int t = 0; t < T; t++) {
                const void *xt = m->xv ? (const void *)(m->xv + (size_t)t * m->xv_bytes)
                                       : (const void *)(m->X + (size_t)t * m->ldx);
                m->Y[(size_t)t * m->ldy + r] = m->dot(cols, row, xt);
            }
        }
    }
}

void pg_matmul(pg_pool *pool, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy,
               void *scratch) {
    pg_dot_fn dot = (W->type >= 0 && W->type < PG_TYPE_COUNT) ? pgk.dot[W->type] : NULL;
    PG_ASSERT(dot && "pg_matmul: unsupported weight type");
    if (T <= 0 || W->rows <= 0) return;
    matmul_task m = {.W = W, .T = T, .X = X, .ldx = ldx, .Y = Y, .ldy = ldy, .dot = dot};
    void *owned = NULL;
    const int nth = pg_pool_size(pool);
    /* about 8 chunks per thread, at least 16 rows (or 64 KiB of weights) each */
    long chunk = W->rows / (8L * nth);
    long min_rows = (long)(65536 / (W->row_bytes ? W->row_bytes : 1));
    if (min_rows < 16) min_rows = 16;
    m.chunk = chunk > min_rows ? chunk : min_rows;
    atomic_init(&m.next, 0);
    const pg_type vt = pg_vec_dot_type(W->type);
    if (vt != PG_TYPE_F32) {
        if (!scratch) scratch = owned = xmalloc(pg_matmul_scratch_bytes(W, T));
        m.xv = scratch;
        m.xv_type = vt;
        m.xv_bytes = pg_row_bytes(vt, W->cols);
        if (T >= 2 && nth > 1) pg_pool_run(pool, quantize_task, &m);
        else quantize_task(&m, 0, 1);
    }
    if (nth > 1 && W->rows >= 2 * nth) pg_pool_run(pool, matmul_task_fn, &m);
    else matmul_task_fn(&m, 0, 1);
    free(owned);
}

/* ---- RoPE -------------------------------------------------------------------- */

void pg_rope_ref(float *x, int n_heads, int head_dim, int n_rot, int pos, float base, int neox) {
    PG_ASSERT(n_rot <= head_dim && n_rot % 2 == 0);
    const int half = n_rot / 2;
    for (int i = 0; i < half; i++) {
        /* As Hugging Face computes it: inv_freq in float32, then pos * inv_freq. */
        const float inv_freq = 1.0f / powf(base, (float)(2 * i) / (float)n_rot);
        const float ang = (float)pos * inv_freq;
        const float c = cosf(ang), s = sinf(ang);
        for (int h = 0; h < n_heads; h++) {
            float *xh = x + (size_t)h * head_dim;
            const int i0 = neox ? i : 2 * i, i1 = neox ? i + half : 2 * i + 1;
            const float a = xh[i0], b = xh[i1];
            xh[i0] = a * c - b * s;
            xh[i1] = a * s + b * c;
        }
    }
}

/* ---- attention ----------------------------------------------------------------- */

/* One head over the visible positions first..n_kv-1. A sink (gpt-oss) is
 * one more logit in the softmax that carries no value: it takes its share
 * of the probability mass away from the positions. */
static void attention_head(const float *q, const float *k, const float *v, int kv_stride, int first, int n_kv,
                           int n_head, int n_head_kv, int hd, const float *sinks, int h, float *att, float *out,
                           pg_dot_fn dot, void (*softmax)(int, float *),
                           void (*axpy)(int, float, const float *, float *)) {
    const int kvh = h / (n_head / n_head_kv), n = n_kv - first;
    const float scale = 1.0f / sqrtf((float)hd);
    const float *qh = q + (size_t)h * hd;
    const float *kh = k + (size_t)first * kv_stride + (size_t)kvh * hd;
    const float *vh = v + (size_t)first * kv_stride + (size_t)kvh * hd;
    for (int j = 0; j < n; j++) att[j] = dot(hd, kh + (size_t)j * kv_stride, qh) * scale;
    if (sinks) att[n] = sinks[h];
    softmax(n + (sinks != NULL), att);
    float *oh = out + (size_t)h * hd;
    memset(oh, 0, (size_t)hd * sizeof(float));
    for (int j = 0; j < n; j++) axpy(hd, att[j], vh + (size_t)j * kv_stride, oh);
}

void pg_attention_ref(const float *q, const float *k, const float *v, int kv_stride, int n_kv,
                      int n_head, int n_head_kv, int hd, float *att, float *out) {
    pg_attention_ext_ref(q, k, v, kv_stride, 0, n_kv, n_head, n_head_kv, hd, NULL, att, out);
}

void pg_attention_ext_ref(const float *q, const float *k, const float *v, int kv_stride, int first, int n_kv,
                          int n_head, int n_head_kv, int hd, const float *sinks, float *att, float *out) {
    PG_ASSERT(n_head_kv > 0 && n_head % n_head_kv == 0);
    PG_ASSERT(first >= 0 && first < n_kv);
    for (int h = 0; h < n_head; h++)
        attention_head(q, k, v, kv_stride, first, n_kv, n_head, n_head_kv, hd, sinks, h, att, out,
                       pg_dot_f32_ref, pg_softmax_ref, pg_axpy_ref);
}

typedef struct {
    const float *q, *k, *v;
    int kv_stride, first, n_kv, n_head, n_head_kv, hd;
    const float *sinks;
    size_t att_stride; /* scratch floats per thread */
    float *scratch, *out;
} attention_task;

static void attention_task_fn(void *p, int ith, int nth) {
    attention_task *a = p;
    long lo, hi;
    pg_split(a->n_head, ith, nth, &lo, &hi);
    float *att = a->scratch + (size_t)ith * a->att_stride;
    for (long h = lo; h < hi; h++)
        attention_head(a->q, a->k, a->v, a->kv_stride, a->first, a->n_kv, a->n_head, a->n_head_kv, a->hd,
                       a->sinks, (int)h, att, a->out, pgk.dot[PG_TYPE_F32], pgk.softmax, pgk.axpy);
}

static void attention_run_(pg_pool *pool, attention_task *a) {
    PG_ASSERT(a->n_head_kv > 0 && a->n_head % a->n_head_kv == 0);
    PG_ASSERT(a->first >= 0 && a->first < a->n_kv);
    if (pg_pool_size(pool) > 1 && a->n_head > 1) pg_pool_run(pool, attention_task_fn, a);
    else attention_task_fn(a, 0, 1);
}

void pg_attention(pg_pool *pool, const float *q, const float *k, const float *v, int kv_stride,
                  int n_kv, int n_head, int n_head_kv, int hd, float *scratch, float *out) {
    attention_task a = {q, k, v, kv_stride, 0, n_kv, n_head, n_head_kv, hd, NULL, (size_t)n_kv, scratch, out};
    attention_run_(pool, &a);
}

void pg_attention_ext(pg_pool *pool, const float *q, const float *k, const float *v, int kv_stride, int first,
                      int n_kv, int n_head, int n_head_kv, int hd, const float *sinks, float *scratch, float *out) {
    attention_task a = {q, k, v, kv_stride, first, n_kv, n_head, n_head_kv, hd, sinks, (size_t)n_kv + 1,
                        scratch, out};
    attention_run_(pool, &a);
}
