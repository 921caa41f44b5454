/* avx2_quants.c - AVX2 dot products of the quantized weight formats against
 * their quantized activations, and the Q8_1 / Q8_K activation quantizers
 * (compiled with -mavx2 -mfma -mf16c like avx2.c; only called when the CPU
 * has AVX2).
 *
 * Each dot computes what its `_ref` in quants.c defines. n is always a whole
 * number of blocks: none of these formats has partial blocks (a quantized
 * row is whole blocks; pg_row_bytes gives 0 for any other length), so no
 * kernel has an element tail, only a tail of blocks.
 *
 *  - The integer part is exact per block. Unsigned quants times signed
 *    activations go through _mm256_maddubs_epi16, which sums pairs in int16
 *    with saturation; each kernel notes why its pairs stay below 32767.
 *    Signed weights (Q8_0, IQ4, MXFP4) use the sign trick
 *    |w| * (x * sign(w)).
 *  - Offsets (Q4_0's -8, Q5_0's -16, Q3_K's -4, Q6_K's -32, the ternary -1)
 *    come out as offset * sum(x): per 32-block for Q8_0 activations, from
 *    the bsums of Q8_K activations (the 16-element sums that every Q8_K
 *    quantizer writes).
 *  - 256-element formats reduce each block's integer sum exactly and scale
 *    it in scalar float in the reference's order, so they are bit-identical
 *    to the reference. 32-element formats keep 8 float lanes per block
 *    (cheaper); they differ from the reference only by float summation
 *    order (tests/test_quants_simd.c states the tolerance).
 *  - The activation quantizers are bit-identical to the references.
 */
#include <immintrin.h>
#include <string.h>

#include "../util.h"
#include "kernels.h"
#include "quants_x86.h"

/* ---- helpers --------------------------------------------------------------- */

#define f16 qx86_f16

static inline int hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_unpackhi_epi64(s, s));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 1));
    return _mm_cvtsi128_si32(s);
}

/* The exact sums of two vectors of int32 partials, in lanes 0 and 1. */
static inline __m128i hsum2_epi32(__m256i a, __m256i b) {
    __m256i h = _mm256_hadd_epi32(a, b); /* [a a b b | a a b b] */
    h = _mm256_hadd_epi32(h, h);          /* [a b a b | a b a b] */
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

static inline __m256i loadu(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }

/* int16 pairs summed to int32: the second step after maddubs. */
static inline __m256i sum_pairs(__m256i p16) { return _mm256_madd_epi16(p16, _mm256_set1_epi16(1)); }

/* Signed w times signed x, pairs summed in int16: |w| * (x * sign(w)).
 * |w| <= 128 and |x| <= 127 keep each pair within int16. */
static inline __m256i mul_s8(__m256i w, __m256i x) {
    return _mm256_maddubs_epi16(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

/* 16 bytes of nibbles to 32 bytes: the low nibbles, then the high ones
 * (element j and j + 16 of the 32-element formats). */
static inline __m256i nibbles32(const uint8_t *qs) {
    const __m128i v = _mm_loadu_si128((const __m128i *)qs);
    return _mm256_and_si256(_mm256_set_m128i(_mm_srli_epi16(v, 4), v), _mm256_set1_epi8(0x0F));
}

/* 32 bits (4 little-endian bytes) to 32 bytes: 0xFF where bit j is set. */
static inline __m256i bits32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    /* byte j takes source byte j/8, then tests bit j%8 */
    const __m256i spread = _mm256_setr_epi8(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2,
                                            3, 3, 3, 3, 3, 3, 3, 3);
    const __m256i bit = _mm256_set1_epi64x(0x8040201008040201ll);
    const __m256i b = _mm256_shuffle_epi8(_mm256_set1_epi32((int)v), spread);
    return _mm256_cmpeq_epi8(_mm256_and_si256(b, bit), bit);
}

/* Four halves at p, p + stride, ... as floats (one conversion for four). */
static inline __m128 halves4(const void *p, size_t stride) {
    const char *c = p;
    uint16_t h0, h1, h2, h3;
    memcpy(&h0, c, 2), memcpy(&h1, c + stride, 2), memcpy(&h2, c + 2 * stride, 2), memcpy(&h3, c + 3 * stride, 2);
    const uint64_t v = (uint64_t)h0 | (uint64_t)h1 << 16 | (uint64_t)h2 << 32 | (uint64_t)h3 << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* Lane k of d in all eight lanes. */
static inline __m256 lane(__m128 d, int k) {
    return _mm256_permutevar8x32_ps(_mm256_castps128_ps256(d), _mm256_set1_epi32(k));
}

/* The driver of the 32-element formats: acc += float(block_dot) * scale per
 * block, scales taken four blocks at a time. BLOCK_DOT(i) gives the block's
 * 8 int32 partial sums, SCALES4(i) the four float scales of blocks i..i+3,
 * SCALE1(i) one; EXTRA4/EXTRA1 add per-block float terms (Q4_1/Q5_1's min
 * times the activation sum) to the 4-lane accumulator accm. */
#define DOT32_LOOP(nb, BLOCK_DOT, SCALES4, SCALE1, EXTRA4, EXTRA1)                                     \
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;                                                    \
    __m128 accm = _mm_setzero_ps();                                                                    \
    int ib = 0;                                                                                        \
    for (; ib + 4 <= (nb); ib += 4) {                                                                  \
        const __m128 d = SCALES4(ib);                                                                  \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BLOCK_DOT(ib)), lane(d, 0), acc0);                   \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BLOCK_DOT(ib + 1)), lane(d, 1), acc1);               \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BLOCK_DOT(ib + 2)), lane(d, 2), acc0);               \
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BLOCK_DOT(ib + 3)), lane(d, 3), acc1);               \
        accm = EXTRA4(ib, accm);                                                                       \
    }                                                                                                  \
    for (; ib < (nb); ib++) {                                                                          \
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(BLOCK_DOT(ib)), _mm256_set1_ps(SCALE1(ib)), acc0);  \
        accm = EXTRA1(ib, accm);                                                                       \
    }                                                                                                  \
    __m128 m_ = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));                                           \
    m_ = _mm_add_ss(m_, _mm_shuffle_ps(m_, m_, 1));                                                    \
    return qx86_hsum8(_mm256_add_ps(acc0, acc1)) + _mm_cvtss_f32(m_)

#define NO_EXTRA(i, accm) (accm)

/* ---- 32-element formats x Q8_0 / Q8_1 ----------------------------------------- */

/* Q4_0: sum (q - 8) y = sum q y - 8 sum y; q <= 15, so pairs <= 3810. */
static inline __m256i q4_0_block(const block_q4_0 *w, const block_q8_0 *x) {
    const __m256i y = loadu(x->qs);
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(nibbles32(w->qs), y),
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(8), y));
    return sum_pairs(p);
}

static float dot_q4_0(int n, const void *wv, const void *xv) {
    const block_q4_0 *w = wv;
    const block_q8_0 *x = xv;
#define BD(i) q4_0_block(w + (i), x + (i))
#define S4(i) _mm_mul_ps(halves4(&w[i].d, sizeof *w), halves4(&x[i].d, sizeof *x))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
    DOT32_LOOP(n / PG_QK4_0, BD, S4, S1, NO_EXTRA, NO_EXTRA);
#undef BD
#undef S4
#undef S1
}

/* Q4_1: sum (d q + m) dy qy = d dy sum q qy + m s (s = dy sum qy, stored). */
static float dot_q4_1(int n, const void *wv, const void *xv) {
    const block_q4_1 *w = wv;
    const block_q8_1 *x = xv;
#define BD(i) sum_pairs(_mm256_maddubs_epi16(nibbles32(w[i].qs), loadu(x[i].qs)))
#define S4(i) _mm_mul_ps(halves4(&w[i].d, sizeof *w), halves4(&x[i].d, sizeof *x))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
#define E4(i, a) _mm_fmadd_ps(halves4(&w[i].m, sizeof *w), halves4(&x[i].s, sizeof *x), a)
#define E1(i, a) _mm_add_ss(a, _mm_set_ss(f16(w[i].m) * f16(x[i].s)))
    DOT32_LOOP(n / PG_QK4_1, BD, S4, S1, E4, E1);
#undef BD
#undef S4
#undef S1
#undef E4
#undef E1
}

/* The 5-bit quants (0..31) of a Q5_0/Q5_1 block: nibble | bit 4 from qh. */
static inline __m256i q5_quants(const uint8_t qh[4], const uint8_t qs[16]) {
    return _mm256_or_si256(nibbles32(qs), _mm256_and_si256(bits32(qh), _mm256_set1_epi8(0x10)));
}

/* Q5_0: sum (q - 16) y; q <= 31, pairs <= 7874. */
static inline __m256i q5_0_block(const block_q5_0 *w, const block_q8_0 *x) {
    const __m256i y = loadu(x->qs);
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q5_quants(w->qh, w->qs), y),
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(16), y));
    return sum_pairs(p);
}

static float dot_q5_0(int n, const void *wv, const void *xv) {
    const block_q5_0 *w = wv;
    const block_q8_0 *x = xv;
#define BD(i) q5_0_block(w + (i), x + (i))
#define S4(i) _mm_mul_ps(halves4(&w[i].d, sizeof *w), halves4(&x[i].d, sizeof *x))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
    DOT32_LOOP(n / PG_QK5_0, BD, S4, S1, NO_EXTRA, NO_EXTRA);
#undef BD
#undef S4
#undef S1
}

static float dot_q5_1(int n, const void *wv, const void *xv) {
    const block_q5_1 *w = wv;
    const block_q8_1 *x = xv;
#define BD(i) sum_pairs(_mm256_maddubs_epi16(q5_quants(w[i].qh, w[i].qs), loadu(x[i].qs)))
#define S4(i) _mm_mul_ps(halves4(&w[i].d, sizeof *w), halves4(&x[i].d, sizeof *x))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
#define E4(i, a) _mm_fmadd_ps(halves4(&w[i].m, sizeof *w), halves4(&x[i].s, sizeof *x), a)
#define E1(i, a) _mm_add_ss(a, _mm_set_ss(f16(w[i].m) * f16(x[i].s)))
    DOT32_LOOP(n / PG_QK5_1, BD, S4, S1, E4, E1);
#undef BD
#undef S4
#undef S1
#undef E4
#undef E1
}

/* A 16-entry int8 table in both 128-bit lanes, for _mm256_shuffle_epi8. */
static inline __m256i table16(const int8_t t[16]) {
    return _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)t));
}

/* IQ4_NL: table values (|v| <= 127) times y, sign trick. */
static float dot_iq4_nl(int n, const void *wv, const void *xv) {
    const block_iq4_nl *w = wv;
    const block_q8_0 *x = xv;
    const __m256i tab = table16(pg_kvalues_iq4nl);
#define BD(i) sum_pairs(mul_s8(_mm256_shuffle_epi8(tab, nibbles32(w[i].qs)), loadu(x[i].qs)))
#define S4(i) _mm_mul_ps(halves4(&w[i].d, sizeof *w), halves4(&x[i].d, sizeof *x))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
    DOT32_LOOP(n / PG_QK4_NL, BD, S4, S1, NO_EXTRA, NO_EXTRA);
#undef BD
#undef S4
#undef S1
}

/* MXFP4, 8 blocks at a time, the scales computed one group ahead and
 * each broadcast from memory (a load instead of a lane permute). The
 * exponents (byte 17k of the group) fall on distinct bytes of the group's
 * first four 32-byte lines (bytes 2m and 2m + 17 of line m: exponents 2m,
 * 2m + 1), so three blends merge the lines and one in-lane shuffle spreads
 * them to dwords: lane 0 holds the even blocks, lane 1 the odd ones, i.e.
 * block k's scale at position MXFP4_POS(k). The activation halves (bytes
 * 34k) are gathered in integer registers in that order. */
#define MXFP4_POS(k) ((k) % 2 ? 4 + (k) / 2 : (k) / 2)
static const uint8_t mxfp4_sel_[3][32] __attribute__((aligned(32))) = {
    {[2] = 0x80, [19] = 0x80}, {[4] = 0x80, [21] = 0x80}, {[6] = 0x80, [23] = 0x80}};

static inline void mxfp4_scales8(const block_mxfp4 *w, const block_q8_0 *x, float *sc) {
    const char *pw = (const char *)w;
    __m256i e = loadu(pw);
    for (int m = 1; m < 4; m++)
        e = _mm256_blendv_epi8(e, loadu(pw + 32 * m), _mm256_load_si256((const __m256i *)mxfp4_sel_[m - 1]));
    const __m256i ei = _mm256_shuffle_epi8(e, _mm256_setr_epi8(0, -1, -1, -1, 2, -1, -1, -1, 4, -1, -1, -1, 6, -1, -1, -1,
                                                               1, -1, -1, -1, 3, -1, -1, -1, 5, -1, -1, -1, 7, -1, -1, -1));
    /* 2^(e-128) as qx86_e8m0_half: (e - 1) << 23, subnormal (0x00200000 << e) below e = 2 */
    const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(ei, _mm256_set1_epi32(1)), 23);
    const __m256i sub = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), ei);
    const __m256i half = _mm256_blendv_epi8(normal, sub, _mm256_cmpgt_epi32(_mm256_set1_epi32(2), ei));
#define H4(a, b, c, i3) \
    _mm_cvtsi64_si128((long long)((uint64_t)x[a].d | (uint64_t)x[b].d << 16 | (uint64_t)x[c].d << 32 | (uint64_t)x[i3].d << 48))
    const __m256 dx = _mm256_cvtph_ps(_mm_unpacklo_epi64(H4(0, 2, 4, 6), H4(1, 3, 5, 7)));
#undef H4
    _mm256_store_ps(sc, _mm256_mul_ps(_mm256_castsi256_ps(half), dx)); /* one rounding, as the reference */
}

/* MXFP4's doubled E2M1 values plus 12: 0..24, unsigned. */
static const int8_t mxfp4_plus12_[16] = {12, 13, 14, 15, 16, 18, 20, 24, 12, 11, 10, 9, 8, 6, 4, 0};

/* One block's 8 float partial sums: sum v y = sum (v + 12) y - 12 sum y
 * (cheaper than the sign trick: one maddubs instead of two sign ops);
 * v + 12 <= 24, pairs <= 6096. The indices: the 16 bytes in both lanes,
 * the upper lane shifted by 4. */
static inline __m256 mxfp4_block(const block_mxfp4 *w, const block_q8_0 *x, __m256i tab) {
    const __m256i v = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)w->qs));
    const __m256i idx = _mm256_and_si256(_mm256_srlv_epi32(v, _mm256_setr_epi32(0, 0, 0, 0, 4, 4, 4, 4)),
                                         _mm256_set1_epi8(0x0F));
    const __m256i y = loadu(x->qs);
    const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(_mm256_shuffle_epi8(tab, idx), y),
                                       _mm256_maddubs_epi16(_mm256_set1_epi8(12), y));
    return _mm256_cvtepi32_ps(sum_pairs(p));
}

static float dot_mxfp4(int n, const void *wv, const void *xv) {
    const block_mxfp4 *w = wv;
    const block_q8_0 *x = xv;
    const int nb = n / PG_QK_MXFP4, ng = nb / 8;
    const __m256i tab = table16(mxfp4_plus12_);
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    _Alignas(32) float sc[2][8];
    if (ng) mxfp4_scales8(w, x, sc[0]);
    for (int g = 0; g < ng; g++) {
        const block_mxfp4 *wg = w + 8 * g;
        const block_q8_0 *xg = x + 8 * g;
        const float *d = sc[g & 1];
        if (g + 1 < ng) mxfp4_scales8(wg + 8, xg + 8, sc[(g + 1) & 1]);
        __asm__("" : "+m"(sc)); /* broadcast each scale from memory (else: permutes from registers) */
#define B(k, acc) acc = _mm256_fmadd_ps(mxfp4_block(wg + (k), xg + (k), tab), _mm256_broadcast_ss(d + MXFP4_POS(k)), acc)
        B(0, acc0), B(1, acc1), B(2, acc2), B(3, acc3), B(4, acc0), B(5, acc1), B(6, acc2), B(7, acc3);
#undef B
    }
    for (int ib = 8 * ng; ib < nb; ib++)
        acc0 = _mm256_fmadd_ps(mxfp4_block(w + ib, x + ib, tab), _mm256_set1_ps(qx86_e8m0_half(w[ib].e) * f16(x[ib].d)),
                               acc0);
    return qx86_hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}
#undef MXFP4_POS

/* ---- 256-element formats x Q8_K ------------------------------------------------ */

/* The int16 scales of sub-blocks 2s and 2s+1 (16 elements each) of a
 * 128-element half, one per 128-bit lane, from `half` = the half's eight
 * int16 scales in both lanes. */
static inline __m256i scale_pair16(__m256i half, int s) {
    const short lo = (short)((4 * s + 1) << 8 | 4 * s), hi = (short)((4 * s + 3) << 8 | (4 * s + 2));
    return _mm256_shuffle_epi8(half, _mm256_set_m128i(_mm_set1_epi16(hi), _mm_set1_epi16(lo)));
}

/* The int16 scale of sub-block j (32 elements) in all lanes, from the eight
 * int16 scales in both lanes. */
static inline __m256i scale32(__m256i sc, int j) {
    return _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)((2 * j + 1) << 8 | 2 * j)));
}

/* The 16-element-sub-block formats (Q2_K, Q3_K, Q6_K): each 128-element half
 * is four vectors of 32 unsigned quants u[s] (elements 32 s .. 32 s + 31),
 * scaled per 16 elements by sc16 (int16 scales of the 16 sub-blocks). Returns
 * the 8 int32 partials of sum_k sc_k sum u y. */
static inline __m256i sum_scaled16(const __m256i u[4], const int8_t *y, __m256i half_scales) {
    __m256i s = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++)
        s = _mm256_add_epi32(s, _mm256_madd_epi16(_mm256_maddubs_epi16(u[k], loadu(y + 32 * k)),
                                                  scale_pair16(half_scales, k)));
    return s;
}

/* Eight int16 scales of half h (0, 1) of the 16 in sc16, in both lanes. */
static inline __m256i half_scales(__m256i sc16, int h) {
    return h ? _mm256_permute4x64_epi64(sc16, 0xEE) : _mm256_permute4x64_epi64(sc16, 0x44);
}

/* Q2_K: u = 2 bits (<= 3: pairs <= 762), scale 4 bits, min 4 bits via bsums. */
static float dot_q2_K(int n, const void *wv, const void *xv) {
    const block_q2_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m3 = _mm256_set1_epi8(3);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m128i sm = _mm_loadu_si128((const __m128i *)w[i].scales);
        const __m256i sc16 = _mm256_cvtepu8_epi16(_mm_and_si128(sm, _mm_set1_epi8(0x0F)));
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(0x0F)));
        const __m256i mprod = _mm256_madd_epi16(m16, loadu(x[i].bsums));
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu(w[i].qs + 32 * h);
            const __m256i u[4] = {_mm256_and_si256(q, m3), _mm256_and_si256(_mm256_srli_epi16(q, 2), m3),
                                  _mm256_and_si256(_mm256_srli_epi16(q, 4), m3),
                                  _mm256_and_si256(_mm256_srli_epi16(q, 6), m3)};
            acc = _mm256_add_epi32(acc, sum_scaled16(u, x[i].qs + 128 * h, half_scales(sc16, h)));
        }
        sumf = qx86_add_min(sumf, &w[i].d, x[i].d, hsum2_epi32(acc, mprod));
    }
    return sumf;
}

/* Q3_K: q = u - 4 with u = 2 low bits | hmask bit << 2 (<= 7: pairs <= 1778);
 * the -4 comes out as 4 sum_k sc_k bsums_k. */
static float dot_q3_K(int n, const void *wv, const void *xv) {
    const block_q3_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m3 = _mm256_set1_epi8(3), m4 = _mm256_set1_epi8(4);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(qx86_q3_K_scales(w + i));
        /* bit 4h + s of hmask[l] is the high bit of element 128 h + 32 s + l;
         * shifting right one bit per group brings it to bit 0 */
        __m256i hm = loadu(w[i].hmask);
        __m256i acc = _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu(x[i].bsums)), 2);
        acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu(w[i].qs + 32 * h);
            __m256i u[4];
            for (int s = 0; s < 4; s++) {
                const __m256i lo = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m3);
                u[s] = _mm256_or_si256(lo, _mm256_and_si256(_mm256_slli_epi16(hm, 2), m4));
                hm = _mm256_srli_epi16(hm, 1);
            }
            acc = _mm256_add_epi32(acc, sum_scaled16(u, x[i].qs + 128 * h, half_scales(sc16, h)));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* Q4_K: u = 4 bits (<= 15: pairs <= 3810), 6-bit scales and mins. */
static float dot_q4_K(int n, const void *wv, const void *xv) {
    const block_q4_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m128i sm = qx86_k4_scales_mins(w[i].scales);
        const __m256i mprod = _mm256_madd_epi16(qx86_k4_mins16(sm), loadu(x[i].bsums));
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        const int8_t *y = x[i].qs;
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i q = loadu(w[i].qs + 32 * j);
            const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), loadu(y + 64 * j));
            const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), loadu(y + 64 * j + 32));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(lo, scale32(sc, 2 * j)));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(hi, scale32(sc, 2 * j + 1)));
        }
        sumf = qx86_add_min(sumf, &w[i].d, x[i].d, hsum2_epi32(acc, mprod));
    }
    return sumf;
}

/* Q5_K: Q4_K with a fifth bit, u <= 31 (pairs <= 7874). Bit 2j (2j+1) of
 * qh[l] belongs to element 64 j + l (64 j + 32 + l). */
static float dot_q5_K(int n, const void *wv, const void *xv) {
    const block_q5_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m128i sm = qx86_k4_scales_mins(w[i].scales);
        const __m256i mprod = _mm256_madd_epi16(qx86_k4_mins16(sm), loadu(x[i].bsums));
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        const int8_t *y = x[i].qs;
        __m256i hb = loadu(w[i].qh); /* shifted right 2 bits per j: bits 0, 1 are 2j, 2j+1 */
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i q = loadu(w[i].qs + 32 * j);
            const __m256i ul = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), b4));
            const __m256i uh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 3), b4));
            hb = _mm256_srli_epi16(hb, 2);
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(ul, loadu(y + 64 * j)), scale32(sc, 2 * j)));
            acc = _mm256_add_epi32(acc,
                                   _mm256_madd_epi16(_mm256_maddubs_epi16(uh, loadu(y + 64 * j + 32)), scale32(sc, 2 * j + 1)));
        }
        sumf = qx86_add_min(sumf, &w[i].d, x[i].d, hsum2_epi32(acc, mprod));
    }
    return sumf;
}

/* Q6_K: q = u - 32 with u = 4 low bits | 2 high bits << 4 (<= 63: pairs
 * <= 16002); int8 scales; the -32 comes out as 32 sum_k sc_k bsums_k. */
static float dot_q6_K(int n, const void *wv, const void *xv) {
    const block_q6_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), m2 = _mm256_set1_epi8(0x30);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m256i sc16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)w[i].scales));
        __m256i acc = _mm256_slli_epi32(_mm256_madd_epi16(sc16, loadu(x[i].bsums)), 5);
        acc = _mm256_sub_epi32(_mm256_setzero_si256(), acc);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* element 128 h + 32 s + l: nibble s/2 of ql[64 h + 32 (s%2) + l], bits 2s of qh[32 h + l] */
            const __m256i l0 = loadu(w[i].ql + 64 * h), l1 = loadu(w[i].ql + 64 * h + 32);
            const __m256i qh = loadu(w[i].qh + 32 * h);
            const __m256i u[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m2)),
                _mm256_or_si256(_mm256_and_si256(l1, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4), _mm256_and_si256(qh, m2)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
                                _mm256_and_si256(_mm256_srli_epi16(qh, 2), m2)),
            };
            acc = _mm256_add_epi32(acc, sum_scaled16(u, x[i].qs + 128 * h, half_scales(sc16, h)));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* Ternary digit of bytes already multiplied by 3^k (mod 256): (v * 3) >> 8,
 * which is (v >= 86) + (v >= 171), compared as signed bytes after v ^ 0x80. */
static inline __m256i trit(__m256i v) {
    const __m256i s = _mm256_xor_si256(v, _mm256_set1_epi8((char)0x80));
    const __m256i ge86 = _mm256_cmpgt_epi8(s, _mm256_set1_epi8(85 - 128));
    const __m256i ge171 = _mm256_cmpgt_epi8(s, _mm256_set1_epi8(170 - 128));
    return _mm256_sub_epi8(_mm256_setzero_si256(), _mm256_add_epi8(ge86, ge171));
}

static inline __m256i times3(__m256i v) { return _mm256_add_epi8(v, _mm256_add_epi8(v, v)); }
static inline __m128i times3_128(__m128i v) { return _mm_add_epi8(v, _mm_add_epi8(v, v)); }

/* TQ1_0: t - 1, trits t <= 2 (pairs <= 508); the -1 is sum(bsums).
 * Layout as unpack_tq1_0_ (quants.c): qs[0..32) trit k of byte j is element
 * 32 k + j; qs[32..48) element 160 + 16 k + j; qh[0..4) element 240 + 4 k + j. */
static float dot_tq1_0(int n, const void *wv, const void *xv) {
    const block_tq1_0 *w = wv;
    const block_q8_K *x = xv;
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const int8_t *y = x[i].qs;
        __m256i acc16 = _mm256_sub_epi16(_mm256_setzero_si256(), loadu(x[i].bsums));
        /* elements 0..159: five digits of 32 bytes */
        __m256i v = loadu(w[i].qs);
        for (int k = 0; k < 5; k++, v = times3(v))
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(trit(v), loadu(y + 32 * k)));
        /* elements 160..239: five digits of 16 bytes, two per vector */
        __m128i b[6];
        b[0] = _mm_loadu_si128((const __m128i *)(w[i].qs + 32));
        for (int k = 1; k < 5; k++) b[k] = times3_128(b[k - 1]);
        /* elements 240..255: digit k of qh[j] at 4 k + j */
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        const __m128i h0 = _mm_set1_epi32((int)qh), h1 = times3_128(h0), h2 = times3_128(h1), h3 = times3_128(h2);
        b[5] = _mm_blend_epi32(_mm_blend_epi32(h0, h1, 0x2), _mm_blend_epi32(h2, h3, 0x8), 0xC);
        for (int k = 0; k < 3; k++)
            acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(trit(_mm256_set_m128i(b[2 * k + 1], b[2 * k])),
                                                                 loadu(y + 160 + 32 * k)));
        /* acc16 lanes: at most 8 pairs of 2 * 2 * 127, minus bsums: within int16 */
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(sum_pairs(acc16));
    }
    return sumf;
}

/* TQ2_0: t - 1, t the 2-bit field (<= 3: pairs <= 762), laid out as Q2_K;
 * the -1 is sum(bsums). */
static float dot_tq2_0(int n, const void *wv, const void *xv) {
    const block_tq2_0 *w = wv;
    const block_q8_K *x = xv;
    const __m256i m3 = _mm256_set1_epi8(3);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const int8_t *y = x[i].qs;
        __m256i acc16 = _mm256_sub_epi16(_mm256_setzero_si256(), loadu(x[i].bsums));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m256i q = loadu(w[i].qs + 32 * h);
            for (int s = 0; s < 4; s++) {
                const __m256i u = _mm256_and_si256(_mm256_srli_epi16(q, 2 * s), m3);
                acc16 = _mm256_add_epi16(acc16, _mm256_maddubs_epi16(u, loadu(y + 128 * h + 32 * s)));
            }
        }
        /* acc16 lanes: 8 pairs of at most 2 * 3 * 128, minus bsums: within int16 */
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(sum_pairs(acc16));
    }
    return sumf;
}

/* IQ4_XS: IQ4_NL values in 8 sub-blocks of 32, 6-bit scales minus 32. */
static float dot_iq4_xs(int n, const void *wv, const void *xv) {
    const block_iq4_xs *w = wv;
    const block_q8_K *x = xv;
    const __m256i tab = table16(pg_kvalues_iq4nl);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        /* scale ib: nibble ib of scales_l | bits 2 ib of scales_h << 4, minus 32 */
        uint32_t sl;
        memcpy(&sl, w[i].scales_l, 4);
        const __m128i slv = _mm_cvtsi32_si128((int)sl);
        const __m128i lo = _mm_unpacklo_epi8(_mm_and_si128(slv, _mm_set1_epi8(0x0F)),
                                             _mm_and_si128(_mm_srli_epi16(slv, 4), _mm_set1_epi8(0x0F)));
        const __m256i hi = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(w[i].scales_h),
                                                              _mm256_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14)),
                                            _mm256_set1_epi32(3));
        const __m256i ls = _mm256_sub_epi32(_mm256_or_si256(_mm256_cvtepu8_epi32(lo), _mm256_slli_epi32(hi, 4)),
                                            _mm256_set1_epi32(32));
        const __m128i ls16 = _mm_packs_epi32(_mm256_castsi256_si128(ls), _mm256_extracti128_si256(ls, 1));
        const __m256i sc = _mm256_broadcastsi128_si256(ls16);
        __m256i acc = _mm256_setzero_si256();
#pragma GCC unroll 8
        for (int ib = 0; ib < 8; ib++) {
            const __m256i v = _mm256_shuffle_epi8(tab, nibbles32(w[i].qs + 16 * ib));
            acc = _mm256_add_epi32(acc, _mm256_madd_epi16(mul_s8(v, loadu(x[i].qs + 32 * ib)), scale32(sc, ib)));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* ---- activation quantizers --------------------------------------------------------- */

static inline float hmax_ps(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* roundf (half away from zero), exactly: trunc, then step away if |frac| >= 0.5. */
static inline __m256i round_away(__m256 v) {
    __m256 t = _mm256_round_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 frac = _mm256_andnot_ps(sign, _mm256_sub_ps(v, t));
    __m256 step = _mm256_or_ps(_mm256_and_ps(v, sign), _mm256_set1_ps(1.0f));
    __m256 m = _mm256_cmp_ps(frac, _mm256_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm256_cvtps_epi32(_mm256_add_ps(t, _mm256_and_ps(m, step)));
}

/* Four vectors of 8 int32 (each within int8) to 32 int8 in element order. */
static inline __m256i pack_i8(__m256i a, __m256i b, __m256i c, __m256i d) {
    const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
    return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static void quantize_q8_1(int n, const float *x, block_q8_1 *y) {
    PG_ASSERT(n % PG_QK8_1 == 0);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < n / PG_QK8_1; i++, x += PG_QK8_1) {
        __m256 v[4], m = _mm256_setzero_ps();
        for (int k = 0; k < 4; k++) {
            v[k] = _mm256_loadu_ps(x + 8 * k);
            m = _mm256_max_ps(_mm256_andnot_ps(sign, v[k]), m); /* NaN is skipped, as fmaxf */
        }
        const float amax = hmax_ps(m);
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        const __m256 vid = _mm256_set1_ps(id), lo = _mm256_set1_ps(-127.0f), hi = _mm256_set1_ps(127.0f);
        __m256i q[4];
        for (int k = 0; k < 4; k++) /* round_clamp_: clamp first (NaN -> -127), then roundf */
            q[k] = round_away(_mm256_min_ps(_mm256_max_ps(_mm256_mul_ps(v[k], vid), lo), hi));
        const int sum = hsum_epi32(_mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3])));
        _mm256_storeu_si256((__m256i *)y[i].qs, pack_i8(q[0], q[1], q[2], q[3]));
        y[i].d = pg_f32_to_f16(d);
        y[i].s = pg_f32_to_f16(sum * d);
    }
}

/* Sums of each 16 bytes of four vectors of 32 int8 quants (sub-blocks
 * 0..7 of the 128 elements they hold), as int32: low lane 0, 2, 4, 6 and
 * high lane 1, 3, 5, 7. */
static inline __m256i sums16(const __m256i q[4]) {
    const __m256i ones8 = _mm256_set1_epi8(1);
    __m256i t[4];
    for (int k = 0; k < 4; k++) t[k] = sum_pairs(_mm256_maddubs_epi16(ones8, q[k]));
    return _mm256_hadd_epi32(_mm256_hadd_epi32(t[0], t[1]), _mm256_hadd_epi32(t[2], t[3]));
}

static void quantize_q8_K(int n, const float *x, block_q8_K *y) {
    PG_ASSERT(n % PG_QK_K == 0);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int i = 0; i < n / PG_QK_K; i++, x += PG_QK_K) {
        __m256 m = _mm256_setzero_ps();
        for (int j = 0; j < PG_QK_K; j += 8) m = _mm256_max_ps(_mm256_andnot_ps(sign, _mm256_loadu_ps(x + j)), m);
        const float amax = hmax_ps(m);
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0) continue;
        /* the first element of largest magnitude, as the reference picks it */
        float max = amax;
        for (int j = 0; j < PG_QK_K; j += 8) {
            const __m256 a = _mm256_andnot_ps(sign, _mm256_loadu_ps(x + j));
            const int hit = _mm256_movemask_ps(_mm256_cmp_ps(a, _mm256_set1_ps(amax), _CMP_EQ_OQ));
            if (hit) {
                max = x[j + __builtin_ctz((unsigned)hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m256 vs = _mm256_set1_ps(iscale), lo = _mm256_set1_ps(-128.0f), hi = _mm256_set1_ps(127.0f);
        __m256i q8[8];
        for (int c = 0; c < 8; c++) {
            __m256i q[4];
            for (int k = 0; k < 4; k++) { /* rintf (half to even), then clamp to -128..127 */
                const __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + 32 * c + 8 * k), vs),
                                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                q[k] = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));
            }
            q8[c] = pack_i8(q[0], q[1], q[2], q[3]);
            _mm256_storeu_si256((__m256i *)(y[i].qs + 32 * c), q8[c]);
        }
        /* lanes: [0 2 4 6 | 1 3 5 7] and [8 10 12 14 | 9 11 13 15] */
        const __m256i s = _mm256_packs_epi32(sums16(q8), sums16(q8 + 4));
        const __m128i slo = _mm256_castsi256_si128(s), shi = _mm256_extracti128_si256(s, 1);
        _mm_storeu_si128((__m128i *)y[i].bsums, _mm_unpacklo_epi16(slo, shi));
        _mm_storeu_si128((__m128i *)(y[i].bsums + 8), _mm_unpackhi_epi16(slo, shi));
        y[i].d = 1.0f / iscale;
    }
}

void pg_kernels_fill_avx2_quants(pg_kernel_table *t) {
    t->dot[PG_TYPE_Q4_0] = dot_q4_0;
    t->dot[PG_TYPE_Q4_1] = dot_q4_1;
    t->dot[PG_TYPE_Q5_0] = dot_q5_0;
    t->dot[PG_TYPE_Q5_1] = dot_q5_1;
    t->dot[PG_TYPE_Q2_K] = dot_q2_K;
    t->dot[PG_TYPE_Q3_K] = dot_q3_K;
    t->dot[PG_TYPE_Q4_K] = dot_q4_K;
    t->dot[PG_TYPE_Q5_K] = dot_q5_K;
    t->dot[PG_TYPE_Q6_K] = dot_q6_K;
    t->dot[PG_TYPE_TQ1_0] = dot_tq1_0;
    t->dot[PG_TYPE_TQ2_0] = dot_tq2_0;
    t->dot[PG_TYPE_MXFP4] = dot_mxfp4;
    t->dot[PG_TYPE_IQ4_NL] = dot_iq4_nl;
    t->dot[PG_TYPE_IQ4_XS] = dot_iq4_xs;
    t->quantize_q8_1 = quantize_q8_1;
    t->quantize_q8_K = quantize_q8_K;
}
