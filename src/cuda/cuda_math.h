/* cuda_math.h - the per-element arithmetic of the CUDA backend
 * (dev_cuda.cu): dequantising the weight formats, RoPE, SiLU and gpt-oss's
 * SwiGLU.
 *
 * Written in the common subset of C11 and CUDA C++: the kernels call these
 * functions on the GPU, and tests/test_cuda_math.c calls the very same ones
 * from C on the CPU and compares them, bit for bit, with the CPU references
 * (pg_dequantize_row_ref, pg_rope_cache_freqs + pg_rope_apply,
 * pg_silu_mul_ref, pg_swiglu_oai_ref). Only the bit casts differ between
 * the two compilations (pg_cm_bits_f32), and products that must not fuse
 * with an add (pg_cm_mul). Library calls (cos, sin, expf) are CUDA's on the
 * GPU and libm's on the CPU: they may differ in the last bit.
 *
 * A matrix row is read in groups of PG_CM_GROUP consecutive elements, so
 * that a block's scales are decoded once per group: pg_cm_<format>(b, j0, y)
 * writes elements j0 .. j0+7 of block b (j0 a multiple of 8) into y[0..7].
 */
#ifndef PG_CUDA_MATH_H
#define PG_CUDA_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __cplusplus
#ifndef _Static_assert
#define _Static_assert static_assert /* quants.h is C11; C++ spells it static_assert */
#endif
extern "C" {
#endif
#include "../kernels/quants.h"
#ifdef __cplusplus
}
#endif

#ifdef __CUDACC__
#define PG_HD __host__ __device__ static inline
#else
#define PG_HD static inline
#endif

#define PG_CM_GROUP 8 /* elements per pg_cm_<format> call */

/* The float with bit pattern u. */
PG_HD float pg_cm_bits_f32(uint32_t u) {
#ifdef __CUDA_ARCH__
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, 4);
    return f;
#endif
}

/* a * b, rounded on its own: nvcc fuses a * b + c into one FMA by default,
 * which rounds once where the CPU references (compiled without contraction)
 * round twice. Used where dequantised values must equal the CPU's. */
PG_HD float pg_cm_mul(float a, float b) {
#ifdef __CUDA_ARCH__
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

/* IEEE half to float, as pg_f16_to_f32: the exponent and mantissa moved
 * into float's place read as the half's magnitude times 2^-112 (subnormal
 * halves become subnormal floats), so one exact product rescales them.
 * Infinities and NaNs (exponent 31) keep their mantissa. */
PG_HD float pg_cm_f16(uint16_t h) {
    const uint32_t em = (uint32_t)(h & 0x7fff) << 13;
    const float mag = (h & 0x7c00) == 0x7c00 ? pg_cm_bits_f32(0x7f800000u | em) : pg_cm_bits_f32(em) * 0x1p112f;
    return (h & 0x8000) ? -mag : mag;
}

PG_HD float pg_cm_bf16(uint16_t h) { return pg_cm_bits_f32((uint32_t)h << 16); }

/* MXFP4's block scale 2^(e-128) (pg_e8m0_to_f32_half): subnormal for e < 2. */
PG_HD float pg_cm_e8m0_half(uint8_t e) {
    return pg_cm_bits_f32(e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23);
}

/* Nibble j (0..31) of a 32-element block's qs: element j is the low nibble
 * of qs[j], element j + 16 the high one. */
PG_HD int pg_cm_nibble32(const uint8_t *qs, int j) { return j < 16 ? qs[j] & 0xF : qs[j - 16] >> 4; }

PG_HD void pg_cm_q4_0(const block_q4_0 *b, int j0, float *y) {
    const float d = pg_cm_f16(b->d);
    for (int i = 0; i < PG_CM_GROUP; i++) y[i] = (pg_cm_nibble32(b->qs, j0 + i) - 8) * d;
}

/* Bit j of Q5_0/Q5_1's qh (a little-endian uint32). */
PG_HD int pg_cm_q5_hbit(const uint8_t *qh, int j) { return (qh[j >> 3] >> (j & 7)) & 1; }

PG_HD void pg_cm_q5_0(const block_q5_0 *b, int j0, float *y) {
    const float d = pg_cm_f16(b->d);
    for (int i = 0; i < PG_CM_GROUP; i++) {
        const int j = j0 + i;
        y[i] = ((pg_cm_nibble32(b->qs, j) | pg_cm_q5_hbit(b->qh, j) << 4) - 16) * d;
    }
}

PG_HD void pg_cm_q5_1(const block_q5_1 *b, int j0, float *y) {
    const float d = pg_cm_f16(b->d), m = pg_cm_f16(b->m);
    for (int i = 0; i < PG_CM_GROUP; i++) {
        const int j = j0 + i;
        y[i] = pg_cm_mul((float)(pg_cm_nibble32(b->qs, j) | pg_cm_q5_hbit(b->qh, j) << 4), d) + m;
    }
}

PG_HD void pg_cm_q8_0(const block_q8_0 *b, int j0, float *y) {
    const float d = pg_cm_f16(b->d);
    for (int i = 0; i < PG_CM_GROUP; i++) y[i] = b->qs[j0 + i] * d;
}

/* An E2M1 code's value doubled (pg_kvalues_mxfp4): sign, 2-bit exponent e,
 * 1-bit mantissa m; e = 0 is subnormal (m), else (2 + m) << (e - 1). */
PG_HD int pg_cm_e2m1x2(int c) {
    const int e = (c >> 1) & 3, m = c & 1;
    const int v = e ? (2 + m) << (e - 1) : m;
    return (c & 8) ? -v : v;
}

PG_HD void pg_cm_mxfp4(const block_mxfp4 *b, int j0, float *y) {
    const float d = pg_cm_e8m0_half(b->e);
    for (int i = 0; i < PG_CM_GROUP; i++) y[i] = pg_cm_e2m1x2(pg_cm_nibble32(b->qs, j0 + i)) * d;
}

/* Q4_K/Q5_K: the 6-bit scale and min of sub-block j (0..7) of 32 elements. */
PG_HD void pg_cm_k4_scale_min(const uint8_t *q, int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Q4_K/Q5_K: each 64 elements use 32 bytes of qs, low nibbles for the first
 * 32, high nibbles for the next 32. The low 4 bits of element j0 + i. */
PG_HD int pg_cm_k4_nibble(const uint8_t *qs, int j0, int i) {
    const int byte = 32 * (j0 >> 6) + (j0 & 31) + i;
    return (j0 & 32) ? qs[byte] >> 4 : qs[byte] & 0xF;
}

PG_HD void pg_cm_q4_K(const block_q4_K *b, int j0, float *y) {
    int sc, m;
    pg_cm_k4_scale_min(b->scales, j0 >> 5, &sc, &m);
    const float dl = pg_cm_f16(b->d) * sc, ml = pg_cm_f16(b->dmin) * m;
    for (int i = 0; i < PG_CM_GROUP; i++) y[i] = pg_cm_mul(dl, (float)pg_cm_k4_nibble(b->qs, j0, i)) - ml;
}

/* Q5_K's fifth bit of element 64c + 32h + l is bit 2c + h of qh[l]. */
PG_HD void pg_cm_q5_K(const block_q5_K *b, int j0, float *y) {
    int sc, m;
    pg_cm_k4_scale_min(b->scales, j0 >> 5, &sc, &m);
    const float dl = pg_cm_f16(b->d) * sc, ml = pg_cm_f16(b->dmin) * m;
    const int shift = j0 >> 5, l = j0 & 31;
    for (int i = 0; i < PG_CM_GROUP; i++) {
        const int q = pg_cm_k4_nibble(b->qs, j0, i) | ((b->qh[l + i] >> shift) & 1) << 4;
        y[i] = pg_cm_mul(dl, (float)q) - ml;
    }
}

/* Q6_K: each 128 elements use 64 bytes of ql and 32 of qh; element 32s + l
 * of the half has nibble s/2 of ql[l + 32(s%2)] and bits 2s of qh[l]. */
PG_HD void pg_cm_q6_K(const block_q6_K *b, int j0, float *y) {
    const int half = j0 >> 7, s = (j0 >> 5) & 3, l = j0 & 31;
    const uint8_t *ql = b->ql + 64 * half + 32 * (s & 1) + l, *qh = b->qh + 32 * half + l;
    const float dl = pg_cm_f16(b->d) * b->scales[j0 >> 4];
    for (int i = 0; i < PG_CM_GROUP; i++) {
        const int q = ((ql[i] >> (4 * (s >> 1))) & 0xF) | ((qh[i] >> (2 * s)) & 3) << 4;
        y[i] = dl * (float)(q - 32);
    }
}

/* RoPE (pg_rope_cache_freqs): the cosine and sine of pair i at position
 * pos, times attn_factor, computed in double as the CPU does. */
PG_HD void pg_cm_rope_cs(int pos, float inv_freq, float attn_factor, float *c, float *s) {
    const double theta = (double)pos * inv_freq;
    *c = (float)(attn_factor * cos(theta));
    *s = (float)(attn_factor * sin(theta));
}

/* Rotates the pair (x0, x1) in place (pg_rope_apply). */
PG_HD void pg_cm_rope_pair(float *x0, float *x1, float c, float s) {
    const float a = *x0, b = *x1;
    *x0 = pg_cm_mul(a, c) - pg_cm_mul(b, s);
    *x1 = pg_cm_mul(a, s) + pg_cm_mul(b, c);
}

/* silu(g) * u (pg_silu_mul_ref). */
PG_HD float pg_cm_silu_mul(float g, float u) { return g / (1.0f + expf(-g)) * u; }

/* gpt-oss's clamped SwiGLU (pg_swiglu_oai_ref): the gate capped at limit,
 * the up projection clamped to [-limit, limit] (a NaN stays NaN). */
PG_HD float pg_cm_swiglu_oai(float g, float u, float alpha, float limit) {
    g = g > limit ? limit : g;
    u = u > limit ? limit : u < -limit ? -limit : u;
    return (u + 1.0f) * (g / (1.0f + expf(-alpha * g)));
}

/* The shared experts' gate (forward.c). */
PG_HD float pg_cm_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* x clamped to [-c, c]; a NaN stays NaN (forward.c's clamp_). */
PG_HD float pg_cm_clamp(float x, float c) { return x > c ? c : x < -c ? -c : x; }

#endif
