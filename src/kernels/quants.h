/* quants.h - GGML's quantized block formats, their scalar references, and
 * which quantized activation each weight format's dot product takes.
 *
 * Every block is byte-compatible with ggml (ggml-common.h), so tensors of
 * a GGUF file are used in place. Halves are stored as uint16_t (IEEE binary16
 * bits, little-endian like the rest of the file); convert with
 * pg_f16_to_f32 (util.h). Each block is defined here once, with its size
 * checked at compile time.
 *
 * Weight formats and the activation their dot product expects
 * (pg_vec_dot_type):
 *   Q8_0                            x Q16_0  (32; 16-bit quants, float d)
 *   Q4_0 Q5_0 MXFP4 IQ4_NL          x Q8_0   (32-element blocks)
 *   Q4_1 Q5_1                       x Q8_1   (32; carries d * sum(q))
 *   Q2_K..Q6_K TQ1_0 TQ2_0 IQ4_XS   x Q8_K   (256; float d, 16-sums)
 *   F32 F16 BF16                    x F32
 *
 * Q16_0 is pregate's own: GGML multiplies Q8_0 weights by Q8_0 activations,
 * whose 8-bit rounding (and half-precision scale) is most of the error of a
 * Q8_0 model. On the demo model, top-1 agreement with the F16 model is
 * 98.4% that way (llama.cpp: 98.3%) and 99.3% with float activations;
 * 16-bit activations keep the integer dot product (int8 x int16 pairs,
 * vpmaddwd / vpdpwssd) at the same speed. The weights are GGML's Q8_0.
 *
 * The `_ref` functions (quants.c) define what each kernel computes: a dot
 * product multiplies integer quants exactly per (sub-)block and applies the
 * float scales per block, in block order. SIMD versions (avx2.c, avx512.c)
 * are checked against them by tests/test_quants.c.
 */
#ifndef PG_QUANTS_H
#define PG_QUANTS_H

#include <stdint.h>

#include "../tensor.h"

#define PG_QK4_0 32
#define PG_QK4_1 32
#define PG_QK5_0 32
#define PG_QK5_1 32
#define PG_QK8_0 32
#define PG_QK8_1 32
#define PG_QK_MXFP4 32
#define PG_QK4_NL 32
#define PG_QK_K 256     /* super-block of the K-quants, TQ*, IQ4_XS */
#define PG_K_SCALE_SIZE 12

/* Q4_0: x = d * (q - 8), q in 0..15; qs[j] holds element j (low nibble)
 * and element j + 16 (high nibble). */
typedef struct {
    uint16_t d;
    uint8_t qs[PG_QK4_0 / 2];
} block_q4_0;
_Static_assert(sizeof(block_q4_0) == 18, "block_q4_0 must be 18 bytes");

/* Q4_1: x = d * q + m, q in 0..15, nibbles as Q4_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qs[PG_QK4_1 / 2];
} block_q4_1;
_Static_assert(sizeof(block_q4_1) == 20, "block_q4_1 must be 20 bytes");

/* Q5_0: x = d * (q - 16), q in 0..31; low 4 bits as Q4_0, bit 4 of
 * element j in bit j of qh (a little-endian uint32). */
typedef struct {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[PG_QK5_0 / 2];
} block_q5_0;
_Static_assert(sizeof(block_q5_0) == 22, "block_q5_0 must be 22 bytes");

/* Q5_1: x = d * q + m, bits as Q5_0. */
typedef struct {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[PG_QK5_1 / 2];
} block_q5_1;
_Static_assert(sizeof(block_q5_1) == 24, "block_q5_1 must be 24 bytes");

/* Q8_0: x = d * q, q in -127..127 (weights and activations). */
typedef struct {
    uint16_t d;
    int8_t qs[PG_QK8_0];
} block_q8_0;
_Static_assert(sizeof(block_q8_0) == 34, "block_q8_0 must be 34 bytes");

/* Q16_0 (activations for Q8_0 weights; not a file format): x = d * q,
 * q in -32767..32767, d = amax / 32767 as a float. */
typedef struct {
    float d;
    int16_t qs[PG_QK8_0];
} block_q16_0;
_Static_assert(sizeof(block_q16_0) == 68, "block_q16_0 must be 68 bytes");

/* Q8_1 (activations for Q4_1/Q5_1): as Q8_0 plus s = d * sum(qs). */
typedef struct {
    uint16_t d;
    uint16_t s;
    int8_t qs[PG_QK8_1];
} block_q8_1;
_Static_assert(sizeof(block_q8_1) == 36, "block_q8_1 must be 36 bytes");

/* Q2_K: 16 sub-blocks of 16; scales[i] = scale (low nibble) | min (high);
 * x = d * sc * q - dmin * m, q 2 bits. Each 128 elements use 32 bytes of qs:
 * element 32*s + l (s = 0..3 within the half) is bits 2s of qs[l]. */
typedef struct {
    uint8_t scales[PG_QK_K / 16];
    uint8_t qs[PG_QK_K / 4];
    uint16_t d;
    uint16_t dmin;
} block_q2_K;
_Static_assert(sizeof(block_q2_K) == 84, "block_q2_K must be 84 bytes");

/* Q3_K: 16 sub-blocks of 16, 6-bit signed scales (minus 32) packed in 12
 * bytes; q = 2 low bits (qs, as Q2_K) minus 4 unless the hmask bit is set;
 * x = d * (sc - 32) * q. */
typedef struct {
    uint8_t hmask[PG_QK_K / 8];
    uint8_t qs[PG_QK_K / 4];
    uint8_t scales[12];
    uint16_t d;
} block_q3_K;
_Static_assert(sizeof(block_q3_K) == 110, "block_q3_K must be 110 bytes");

/* Q4_K: 8 sub-blocks of 32, 6-bit scale and min each packed in 12 bytes;
 * x = d * sc * q - dmin * m, q 4 bits. Each 64 elements use 32 bytes of qs:
 * low nibbles the first 32, high nibbles the next 32. */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[PG_K_SCALE_SIZE];
    uint8_t qs[PG_QK_K / 2];
} block_q4_K;
_Static_assert(sizeof(block_q4_K) == 144, "block_q4_K must be 144 bytes");

/* Q5_K: Q4_K plus a fifth bit per element in qh (bit 2k, 2k+1 for the
 * k-th group of 64). */
typedef struct {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[PG_K_SCALE_SIZE];
    uint8_t qh[PG_QK_K / 8];
    uint8_t qs[PG_QK_K / 2];
} block_q5_K;
_Static_assert(sizeof(block_q5_K) == 176, "block_q5_K must be 176 bytes");

/* Q6_K: 16 sub-blocks of 16, int8 scales; x = d * sc * (q - 32), q 6 bits:
 * 4 low bits in ql, 2 high bits in qh. */
typedef struct {
    uint8_t ql[PG_QK_K / 2];
    uint8_t qh[PG_QK_K / 4];
    int8_t scales[PG_QK_K / 16];
    uint16_t d;
} block_q6_K;
_Static_assert(sizeof(block_q6_K) == 210, "block_q6_K must be 210 bytes");

/* Q8_K (activations for the K-quants): float scale, bsums[i] = sum of
 * qs[16i .. 16i+15]. */
typedef struct {
    float d;
    int8_t qs[PG_QK_K];
    int16_t bsums[PG_QK_K / 16];
} block_q8_K;
_Static_assert(sizeof(block_q8_K) == 292, "block_q8_K must be 292 bytes");

/* TQ1_0: ternary x = d * (t - 1), t in 0..2; 5 trits per byte of qs and 4
 * per byte of qh, stored as ceil(v * 256 / 243) so that digit k (most
 * significant first) is ((uint8_t)(b * 3^k) * 3) >> 8. */
typedef struct {
    uint8_t qs[(PG_QK_K - 4 * PG_QK_K / 64) / 5];
    uint8_t qh[PG_QK_K / 64];
    uint16_t d;
} block_tq1_0;
_Static_assert(sizeof(block_tq1_0) == 54, "block_tq1_0 must be 54 bytes");

/* TQ2_0: ternary x = d * (t - 1), t in 0..2, 2 bits each. */
typedef struct {
    uint8_t qs[PG_QK_K / 4];
    uint16_t d;
} block_tq2_0;
_Static_assert(sizeof(block_tq2_0) == 66, "block_tq2_0 must be 66 bytes");

/* MXFP4 (OCP microscaling, gpt-oss experts): e is an E8M0 exponent, q a
 * 4-bit E2M1 code; x = 2^(e-127) * fp4(q). Nibbles as Q4_0. */
typedef struct {
    uint8_t e;
    uint8_t qs[PG_QK_MXFP4 / 2];
} block_mxfp4;
_Static_assert(sizeof(block_mxfp4) == 17, "block_mxfp4 must be 17 bytes");

/* IQ4_NL: x = d * kvalues_iq4nl[q], q 4 bits (a non-linear grid). */
typedef struct {
    uint16_t d;
    uint8_t qs[PG_QK4_NL / 2];
} block_iq4_nl;
_Static_assert(sizeof(block_iq4_nl) == 18, "block_iq4_nl must be 18 bytes");

/* IQ4_XS: 8 sub-blocks of 32 with 6-bit scales (minus 32): low 4 bits in
 * scales_l (nibble per sub-block), high 2 bits in scales_h; values as IQ4_NL. */
typedef struct {
    uint16_t d;
    uint16_t scales_h;
    uint8_t scales_l[PG_QK_K / 64];
    uint8_t qs[PG_QK_K / 2];
} block_iq4_xs;
_Static_assert(sizeof(block_iq4_xs) == 136, "block_iq4_xs must be 136 bytes");

/* The non-linear grids: IQ4_NL/IQ4_XS values, and MXFP4's E2M1 values
 * doubled (so they are integers; the scale is halved to match). */
extern const int8_t pg_kvalues_iq4nl[16];
extern const int8_t pg_kvalues_mxfp4[16];
/* 2^(e-128) as float: the MXFP4 block scale, halved to match pg_kvalues_mxfp4. */
float pg_e8m0_to_f32_half(uint8_t e);

/* The type of activation a weight type's dot product expects: F32 for the
 * float types, else Q8_0, Q8_1 or Q8_K (table above). F32 for types that
 * have no dot product. */
pg_type pg_vec_dot_type(pg_type t);

/* n elements (a multiple of the block size) of type t into floats. Any
 * type with a block format here, plus F32/F16/BF16. */
void pg_dequantize_row_ref(pg_type t, int64_t n, const void *x, float *y);
/* n floats into type t (a weight format, or Q8_0/Q8_1/Q8_K, or
 * F32/F16/BF16). Deterministic; K-quants use an iterative scale search
 * (not byte-identical to ggml's, comparable error). Non-finite inputs give
 * unspecified (but memory-safe) output: callers check them first. */
void pg_quantize_row_ref(pg_type t, int64_t n, const float *x, void *y);

/* Activation quantizers (n a multiple of the block size). */
void pg_quantize_q8_1_ref(int n, const float *x, block_q8_1 *y);
void pg_quantize_q16_0_ref(int n, const float *x, block_q16_0 *y);
void pg_quantize_q8_K_ref(int n, const float *x, block_q8_K *y);

/* Dot products, pg_dot_fn signature: n weights of the named format against
 * n activations of its pg_vec_dot_type. */
float pg_dot_q4_0_ref(int n, const void *w, const void *x);   /* x Q8_0 */
float pg_dot_q4_1_ref(int n, const void *w, const void *x);   /* x Q8_1 */
float pg_dot_q5_0_ref(int n, const void *w, const void *x);   /* x Q8_0 */
float pg_dot_q5_1_ref(int n, const void *w, const void *x);   /* x Q8_1 */
/* pg_dot_q8_0_ref: kernels.h (Q8_0 x Q16_0) */
float pg_dot_q2_K_ref(int n, const void *w, const void *x);   /* x Q8_K */
float pg_dot_q3_K_ref(int n, const void *w, const void *x);   /* x Q8_K */
float pg_dot_q4_K_ref(int n, const void *w, const void *x);   /* x Q8_K */
float pg_dot_q5_K_ref(int n, const void *w, const void *x);   /* x Q8_K */
float pg_dot_q6_K_ref(int n, const void *w, const void *x);   /* x Q8_K */
float pg_dot_tq1_0_ref(int n, const void *w, const void *x);  /* x Q8_K */
float pg_dot_tq2_0_ref(int n, const void *w, const void *x);  /* x Q8_K */
float pg_dot_mxfp4_ref(int n, const void *w, const void *x);  /* x Q8_0 */
float pg_dot_iq4_nl_ref(int n, const void *w, const void *x); /* x Q8_0 */
float pg_dot_iq4_xs_ref(int n, const void *w, const void *x); /* x Q8_K */

#endif
