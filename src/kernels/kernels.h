/* kernels.h - CPU compute kernels.
 *
 * Three tiers, as ggml does it: a scalar reference (`_ref`, in ref.c and
 * quants.c, the definition of what each kernel computes), and AVX2 /
 * AVX-512 versions (avx2.c, avx512.c; the quantized formats in
 * avx2_quants.c and avx512_quants.c, the latter also built with VNNI;
 * each file compiled with its own -m flags) chosen at run time by
 * pg_kernels_init() through the table `pgk`. Every table entry has a test
 * against its reference (tests/test_kernels.c, tests/test_quants_simd.c).
 *
 * Shapes: a matrix W of `rows` x `cols` stores each row contiguously
 * (cols elements, pg_row_bytes(type, cols) bytes); y = W x means
 * y[r] = sum_c W[r][c] x[c]. Activations are always float32.
 */
#ifndef PG_KERNELS_H
#define PG_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#include "../tensor.h"
#include "quants.h"
#include "../threadpool.h"

/* A weight matrix: rows x cols of `type`, row r at data + r * row_bytes. */
typedef struct {
    pg_type type;
    int rows, cols;
    size_t row_bytes;
    const void *data;
} pg_mat;

typedef enum { PG_ISA_SCALAR = 0, PG_ISA_AVX2 = 1, PG_ISA_AVX512 = 2 } pg_isa;

/* Dot products of one weight row with prepared activations. For F32, F16
 * and BF16 the activation is float32 (n any size >= 0); for a quantized
 * format it is a row quantized to pg_vec_dot_type(format) (quants.h) and
 * n is a multiple of the block size. */
typedef float (*pg_dot_fn)(int n, const void *w, const void *x);

typedef struct {
    pg_isa isa;
    int vnni; /* the AVX-512 quantized dots use VNNI (CPU has it, PREGATE_VNNI is not 0) */
    pg_dot_fn dot[PG_TYPE_COUNT];           /* NULL where the type has no kernel */
    void (*quantize_q8_0)(int n, const float *x, block_q8_0 *y); /* n % 32 == 0 */
    void (*quantize_q8_1)(int n, const float *x, block_q8_1 *y); /* n % 32 == 0 */
    void (*quantize_q16_0)(int n, const float *x, block_q16_0 *y); /* n % 32 == 0 */
    void (*quantize_q8_K)(int n, const float *x, block_q8_K *y); /* n % 256 == 0 */
    void (*f16_to_f32)(int n, const uint16_t *x, float *y);
    void (*bf16_to_f32)(int n, const uint16_t *x, float *y);
    void (*rmsnorm)(int n, const float *x, const float *w, float eps, float *y);
    void (*softmax)(int n, float *x);       /* in place, max-subtracted */
    void (*silu_mul)(int n, const float *gate, const float *up, float *y); /* y = silu(gate)*up */
    void (*axpy)(int n, float a, const float *x, float *y);               /* y += a*x */
    /* gpt-oss's clamped SwiGLU (pg_swiglu_oai_ref) */
    void (*swiglu_oai)(int n, const float *gate, const float *up, float alpha, float limit, float *y);
} pg_kernel_table;

extern pg_kernel_table pgk;

/* Picks the best ISA the CPU supports, or `force` if >= 0 (capped to what
 * the CPU has). Returns the ISA chosen. Idempotent; call before any kernel. */
pg_isa pg_kernels_init(int force);
const char *pg_isa_name(pg_isa isa);
/* The best ISA this CPU supports (ignores PREGATE_ISA). */
pg_isa pg_cpu_isa(void);
/* F16C and AVX (the F16 conversion instructions) on this CPU. */
bool pg_cpu_has_f16c(void);
/* Overwrite the entries that have SIMD versions (avx2.c, avx512.c); call
 * only when the CPU supports the ISA. pg_kernels_init uses them. */
void pg_kernels_fill_avx2(pg_kernel_table *t);
void pg_kernels_fill_avx512(pg_kernel_table *t);
/* Their quantized-format parts: avx2_quants.c (dots of every weight format
 * but Q8_0, which avx2.c has; the Q8_1/Q8_K quantizers), and
 * avx512_quants.c (every quantized dot, the Q8_1/Q8_K quantizers) compiled
 * twice, without and with AVX-512 VNNI (avx512vnni_quants.c; call only when
 * the CPU has it). pg_kernels_fill_avx2/avx512 call them. */
void pg_kernels_fill_avx2_quants(pg_kernel_table *t);
void pg_kernels_fill_avx512_quants(pg_kernel_table *t);
void pg_kernels_fill_avx512vnni_quants(pg_kernel_table *t);

/* Scalar references (also the portable fallback); quants.h has those of the
 * other quantized formats. pg_dot_ref(t): the reference dot of weight type t
 * (NULL if none). */
pg_dot_fn pg_dot_ref(pg_type t);
float pg_dot_f32_ref(int n, const void *w, const void *x);
float pg_dot_f16_ref(int n, const void *w, const void *x);
float pg_dot_bf16_ref(int n, const void *w, const void *x);
float pg_dot_q8_0_ref(int n, const void *w, const void *x); /* x: Q16_0 (quants.h) */
void pg_quantize_q8_0_ref(int n, const float *x, block_q8_0 *y);
void pg_dequantize_q8_0_ref(int n, const block_q8_0 *x, float *y);
void pg_rmsnorm_ref(int n, const float *x, const float *w, float eps, float *y);
void pg_softmax_ref(int n, float *x);
void pg_silu_mul_ref(int n, const float *gate, const float *up, float *y);
/* y = max(x, 0) (T5 / Switch FFNs); y may be x. Memory-bound and left to
 * the compiler's vectoriser: no SIMD version in the table. */
void pg_relu_ref(int n, const float *x, float *y);
void pg_axpy_ref(int n, float a, const float *x, float *y);
/* gpt-oss experts: g = min(gate, limit), u = clamp(up, -limit, limit),
 * y = (u + 1) * g * sigmoid(alpha * g). */
void pg_swiglu_oai_ref(int n, const float *gate, const float *up, float alpha, float limit, float *y);

/* Row r of W as float32 (dequantised) into y[cols]: embedding lookups. */
void pg_mat_row_f32(const pg_mat *W, int r, float *y);


/* Y[t][r] = W[r] . X[t] for t < T, r < W->rows, run on the pool (NULL: one thread).
 * X is T rows of W->cols floats (stride ldx floats); Y is T rows with
 * stride ldy floats. Weights are streamed once per call, whatever T is.
 * `scratch` must hold pg_matmul_scratch_bytes(W, T) bytes (or be NULL to
 * let the call allocate). */
size_t pg_matmul_scratch_bytes(const pg_mat *W, int T);
/* Enough scratch for any weight type with at most `cols` columns. */
size_t pg_matmul_scratch_max_bytes(int cols, int T);
void pg_matmul(pg_pool *pool, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy,
               void *scratch);
/* The same, one thread, scalar reference (for tests). */
void pg_matmul_ref(const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy);

/* RoPE on one token's heads in place: n_heads heads of head_dim values at
 * stride head_dim. neox=false rotates adjacent pairs (2i, 2i+1) (GGUF llama);
 * neox=true rotates (i, i+n_rot/2) (Hugging Face rotate_half). Uses the
 * first n_rot dims (n_rot <= head_dim, even). theta_i = pos * base^(-2i/n_rot). */
void pg_rope_ref(float *x, int n_heads, int head_dim, int n_rot, int pos, float base, int neox);

/* Causal attention of one query token over n_kv cached positions for all
 * heads: q [n_head*hd], K/V cache rows of n_head_kv*hd floats at stride
 * kv_stride floats, out [n_head*hd]. Scale 1/sqrt(hd). GQA: head h uses kv
 * head h / (n_head / n_head_kv). `att` is scratch of n_kv floats. */
void pg_attention_ref(const float *q, const float *k, const float *v, int kv_stride, int n_kv,
                      int n_head, int n_head_kv, int hd, float *att, float *out);
/* Same contract, SIMD dot products, heads split over the pool; scratch of
 * pool_size * n_kv floats. */
void pg_attention(pg_pool *pool, const float *q, const float *k, const float *v, int kv_stride,
                  int n_kv, int n_head, int n_head_kv, int hd, float *scratch, float *out);
/* The same over the window first..n_kv-1 of the cache rows (0 <= first <
 * n_kv; sliding-window layers), with an optional sink per head: sinks
 * (NULL: none) holds n_head logits that join each head's softmax
 * denominator and carry no value (gpt-oss). `att` holds n_kv + 1 floats;
 * the pool version's scratch pool_size * (n_kv + 1). With first = 0 and no
 * sinks they compute exactly what pg_attention_ref / pg_attention do. */
void pg_attention_ext_ref(const float *q, const float *k, const float *v, int kv_stride, int first, int n_kv,
                          int n_head, int n_head_kv, int hd, const float *sinks, float *att, float *out);
void pg_attention_ext(pg_pool *pool, const float *q, const float *k, const float *v, int kv_stride, int first,
                      int n_kv, int n_head, int n_head_kv, int hd, const float *sinks, float *scratch, float *out);



/* RoPE with precomputed angles (forward.c): cs holds n_rot/2 (cos, sin)
 * pairs for one position; pg_rope_apply rotates like pg_rope_ref. */
void pg_rope_cache(int pos, int n_rot, float base, float *cs);
void pg_rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cs, int neox);

/* YaRN (Peng et al., "YaRN: Efficient Context Window Extension of Large
 * Language Models", 2023; transformers' "yarn" rope type, ggml's rope with
 * ext_factor 1). Frequencies: dimension pair i keeps its original frequency
 * base^(-2i/n_rot) below the ramp [lo, hi], takes it divided by `factor`
 * above it, and blends linearly between; lo and hi are the pair indices
 * that turn beta_fast and beta_slow times over orig_ctx positions (floored
 * and ceiled if truncate, as llama.cpp always does), clipped to [0, n_rot -
 * 1]. Magnitudes: mscale(s, m) = 0.1 m ln(s) + 1 (1 when s <= 1); cos and
 * sin are multiplied by attn_factor (transformers' attention_factor: by
 * default mscale(factor, 1), mscale(factor, mscale) / mscale(factor,
 * mscale_all_dim) when DeepSeek's config gives both), which scales every
 * q.k by its square; DeepSeek's softmax scale is multiplied by
 * mscale(factor, mscale_all_dim)^2 as well (mla.c). */
typedef struct {
    float factor;               /* > 0; 0: no YaRN */
    float beta_fast, beta_slow; /* ramp bounds in rotations (32, 1) */
    int orig_ctx;               /* original_max_position_embeddings */
    int truncate;               /* floor/ceil the ramp bounds */
    float attn_factor;          /* multiplies cos and sin */
    float mscale_all_dim;       /* DeepSeek's softmax scale correction; 0: none */
} pg_yarn;
float pg_yarn_mscale(float scale, float m);
/* inv_freq[n_rot/2] of YaRN (the model computes them once). */
void pg_yarn_inv_freq(int n_rot, float base, const pg_yarn *y, float *inv_freq);
/* cs[2i], cs[2i+1] = attn_factor * (cos, sin)(pos * inv_freq[i]) for i <
 * n_rot/2: pg_rope_cache's layout from given frequencies. */
void pg_rope_cache_freqs(int pos, int n_rot, const float *inv_freq, float attn_factor, float *cs);

#endif
