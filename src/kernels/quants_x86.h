/* quants_x86.h - 128-bit helpers shared by avx2_quants.c and avx512_quants.c
 * (both compiled with at least AVX2): scale unpacking of the K-quants and
 * MXFP4's E8M0 scale. Static inline, so each file gets its own copy built
 * with its own flags.
 */
#ifndef PG_QUANTS_X86_H
#define PG_QUANTS_X86_H

#include <immintrin.h>
#include <stddef.h>
#include <string.h>

#include "quants.h"

static inline float qx86_f16(uint16_t h) { return _cvtsh_ss(h); }

/* Sum of the 8 floats of v. */
static inline float qx86_hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* Q4_K/Q5_K's eight 6-bit scales (bytes 0..7) and mins (bytes 8..15) from
 * the 12 packed bytes at q, as k4_scale_min_ (quants.c) unpacks them:
 * j < 4: sc = q[j] & 63, m = q[j+4] & 63; j >= 4: sc = q[j+4] & 15 |
 * (q[j-4] >> 6) << 4, m = q[j+4] >> 4 | (q[j] >> 6) << 4. Reads 16 bytes:
 * in both blocks the 4 after the scales are quants of the same block. */
static inline __m128i qx86_k4_scales_mins(const uint8_t *q) {
    const __m128i v = _mm_loadu_si128((const __m128i *)q); /* dwords A B C . */
    const __m128i acbc = _mm_shuffle_epi8(v, _mm_setr_epi8(0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i _a_b = _mm_shuffle_epi8(v, _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 2, 3, -1, -1, -1, -1, 4, 5, 6, 7));
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(acbc, _mm_setr_epi32(0, 0, 0, 4)),
                                     _mm_setr_epi32(0x3F3F3F3F, 0x0F0F0F0F, 0x3F3F3F3F, 0x0F0F0F0F));
    /* bits 6, 7 of A and B to bits 4, 5 */
    return _mm_or_si128(lo, _mm_and_si128(_mm_srli_epi16(_a_b, 2), _mm_set1_epi8(0x30)));
}

/* Q3_K's sixteen 6-bit scales minus 32 as int8, as q3_K_scale_ (quants.c):
 * the low 4 bits of scale s are nibble s/8 of byte s%8, the high 2 bits are
 * bits 2 (s/4) of byte 8 + s%4. Reads the 16 bytes ending with the scales
 * (the 4 before them are quants of the same block). */
static inline __m128i qx86_q3_K_scales(const block_q3_K *b) {
    const __m128i v = _mm_loadu_si128((const __m128i *)((const uint8_t *)b + offsetof(block_q3_K, scales) - 4));
    /* dwords . A B C: A = bytes 0..3, B = 4..7, C = 8..11 of the scales */
    const __m128i abab = _mm_shuffle_epi8(v, _mm_setr_epi8(4, 5, 6, 7, 8, 9, 10, 11, 4, 5, 6, 7, 8, 9, 10, 11));
    const __m128i cccc = _mm_shuffle_epi32(v, 0xFF);
    const __m128i lo = _mm_and_si128(_mm_srlv_epi32(abab, _mm_setr_epi32(0, 0, 4, 4)), _mm_set1_epi8(0x0F));
    const __m128i hi = _mm_and_si128(_mm_srlv_epi32(cccc, _mm_setr_epi32(0, 2, 4, 6)), _mm_set1_epi8(0x03));
    return _mm_sub_epi8(_mm_or_si128(lo, _mm_slli_epi16(hi, 4)), _mm_set1_epi8(32));
}

/* The mins of qx86_k4_scales_mins, each twice (one per 16-element bsum),
 * as int16. */
static inline __m256i qx86_k4_mins16(__m128i scales_mins) {
    const __m128i dup = _mm_setr_epi8(8, 8, 9, 9, 10, 10, 11, 11, 12, 12, 13, 13, 14, 14, 15, 15);
    return _mm256_cvtepu8_epi16(_mm_shuffle_epi8(scales_mins, dup));
}

/* One block of a 256-element format with a min, as the reference adds it:
 * sumf += (d * yd) * isum; sumf -= (dmin * yd) * msum. d and dmin are the
 * two halves at dd, isum and msum lanes 0 and 1 of s: the same float
 * operations, two lanes at a time. */
static inline float qx86_add_min(float sumf, const uint16_t *dd, float yd, __m128i s) {
    uint32_t h;
    memcpy(&h, dd, 4);
    const __m128 scale = _mm_mul_ps(_mm_cvtph_ps(_mm_cvtsi32_si128((int)h)), _mm_set1_ps(yd));
    const __m128 t = _mm_mul_ps(scale, _mm_cvtepi32_ps(s));
    return (sumf + _mm_cvtss_f32(t)) - _mm_cvtss_f32(_mm_movehdup_ps(t));
}

/* 2^(e-128) as float: pg_e8m0_to_f32_half, inline (subnormal below e = 2). */
static inline float qx86_e8m0_half(uint8_t e) {
    const uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

#endif
