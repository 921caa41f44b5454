/* avx512_quants.c - AVX-512 (F/BW/VL/DQ) dot products of the quantized
 * weight formats against their quantized activations, and the Q8_1 / Q8_K
 * activation quantizers.
 *
 * Compiled twice: as itself with the AVX-512 flags of avx512.c, and through
 * avx512vnni_quants.c with -mavx512vnni as well. Only dpbusd(), dpwssd()
 * and dpwssd256() below differ: with VNNI they are one instruction
 * (vpdpbusd: four u8 x s8 products into int32, no intermediate saturation;
 * vpdpwssd: two int16 products into int32); without it maddubs + madd + add.
 * pg_kernels_fill_avx512 (avx512.c) registers the VNNI build only when the
 * CPU has AVX512_VNNI.
 *
 * Contract and tricks as in avx2_quants.c: n is a whole number of blocks
 * (no format here has partial blocks, so there is no element tail), integer
 * parts are exact per block (maddubs pairs stay within int16, noted per
 * kernel; both builds then give the same integers), offsets come out
 * through the activation sums, the 256-element formats are bit-identical to
 * the reference and the 32-element ones differ only in float summation
 * order. The activation quantizers are bit-identical to the references.
 *
 * A zmm holds two 32-element blocks, or 64 elements of a 256-element block;
 * Q4_K, Q5_K and MXFP4 use 256-bit vectors instead (see there: faster on
 * Zen 4, which runs a 512-bit op as two 256-bit halves).
 */
#include <immintrin.h>
#include <string.h>

#include "../util.h"
#include "kernels.h"
#include "quants_x86.h"

#ifdef __AVX512VNNI__
#define FILL_QUANTS pg_kernels_fill_avx512vnni_quants
#else
#define FILL_QUANTS pg_kernels_fill_avx512_quants
#endif

/* ---- helpers --------------------------------------------------------------- */

/* acc + sums of four u8 x s8 products per int32 lane (without VNNI the
 * pairs are summed in int16 first: callers keep them below 32768). */
static inline __m512i dpbusd(__m512i acc, __m512i u, __m512i s) {
#ifdef __AVX512VNNI__
    return _mm512_dpbusd_epi32(acc, u, s);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(_mm512_maddubs_epi16(u, s), _mm512_set1_epi16(1)));
#endif
}

/* acc + sums of two int16 x int16 products per int32 lane. */
static inline __m512i dpwssd(__m512i acc, __m512i a, __m512i b) {
#ifdef __AVX512VNNI__
    return _mm512_dpwssd_epi32(acc, a, b);
#else
    return _mm512_add_epi32(acc, _mm512_madd_epi16(a, b));
#endif
}

/* The same on 256-bit vectors (AVX512VL). */
static inline __m256i dpwssd256(__m256i acc, __m256i a, __m256i b) {
#ifdef __AVX512VNNI__
    return _mm256_dpwssd_epi32(acc, a, b);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
#endif
}

#define f16 qx86_f16
static inline __m512i loadu512(const void *p) { return _mm512_loadu_si512(p); }
static inline __m256i loadu256(const void *p) { return _mm256_loadu_si256((const __m256i *)p); }
static inline __m128i loadu128(const void *p) { return _mm_loadu_si128((const __m128i *)p); }

/* 32 bytes in both halves of a zmm. */
static inline __m512i dup256(const void *p) { return _mm512_broadcast_i64x4(loadu256(p)); }

/* Two 32-byte arrays (quants of two blocks): [a b]; b = NULL gives zeros. */
static inline __m512i pair32(const int8_t *a, const int8_t *b) {
    const __m512i lo = _mm512_castsi256_si512(loadu256(a));
    return b ? _mm512_inserti64x4(lo, loadu256(b), 1) : _mm512_zextsi256_si512(loadu256(a));
}

/* The nibbles of two 16-byte quant arrays: [lo(a) hi(a) lo(b) hi(b)], i.e.
 * elements 0..31 of a and of b in the 32-element formats' order. */
static inline __m512i nibbles_pair(const uint8_t *a, const uint8_t *b) {
    const __m512i v = _mm512_mask_broadcast_i32x4(_mm512_broadcast_i32x4(loadu128(a)), 0xFF00, loadu128(b));
    /* shift the second and fourth 128-bit lanes (int16 lanes 8..15, 24..31) */
    return _mm512_and_si512(_mm512_mask_srli_epi16(v, 0xFF00FF00u, v, 4), _mm512_set1_epi8(0x0F));
}

/* Four halves at p, p + stride, ... as floats (scalar loads and one
 * conversion: cheaper here than word permutes of vector loads). */
static inline __m128 halves4(const void *p, size_t stride) {
    const char *c = p;
    uint16_t h0, h1, h2, h3;
    memcpy(&h0, c, 2), memcpy(&h1, c + stride, 2), memcpy(&h2, c + 2 * stride, 2), memcpy(&h3, c + 3 * stride, 2);
    const uint64_t v = (uint64_t)h0 | (uint64_t)h1 << 16 | (uint64_t)h2 << 32 | (uint64_t)h3 << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}
#define Q8_0_D(x, i) halves4(&(x)[i].d, sizeof *(x))
#define Q8_1_D(x, i) halves4(&(x)[i].d, sizeof *(x))
#define Q8_1_S(x, i) halves4(&(x)[i].s, sizeof *(x))
#define W_D(w, i) halves4(&(w)[i].d, sizeof *(w))
#define W_M(w, i) halves4(&(w)[i].m, sizeof *(w))

/* A 16-entry table in every 128-bit lane, for _mm512_shuffle_epi8. */
static inline __m512i table16(const int8_t t[16]) { return _mm512_broadcast_i32x4(loadu128(t)); }

/* The driver of the 32-element formats, two blocks per zmm: acc += float(
 * PAIR(i, j)) * scale (PAIR(i, NO_BLOCK) pairs block i with zeros); scales
 * four blocks at a time (SCALES4) or one (SCALE1); EXTRA4/EXTRA1 add per-block
 * float terms (Q4_1/Q5_1's min times the activation sum) to accm. */
#define NO_BLOCK (-1)
#define DOT32_LOOP(nb, PAIR, SCALES4, SCALE1, EXTRA4, EXTRA1)                                              \
    const __m512i lanes01_ = _mm512_setr_epi32(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1);            \
    const __m512i lanes23_ = _mm512_setr_epi32(2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);            \
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;                                                        \
    __m128 accm = _mm_setzero_ps();                                                                        \
    int ib = 0;                                                                                            \
    for (; ib + 4 <= (nb); ib += 4) {                                                                      \
        const __m512 d = _mm512_castps128_ps512(SCALES4(ib));                                              \
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(PAIR(ib, ib + 1)), _mm512_permutexvar_ps(lanes01_, d), acc0); \
        acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(PAIR(ib + 2, ib + 3)), _mm512_permutexvar_ps(lanes23_, d), acc1); \
        accm = EXTRA4(ib, accm);                                                                           \
    }                                                                                                      \
    for (; ib < (nb); ib++) { /* the upper half is zero */                                                 \
        const __m512 d = _mm512_maskz_mov_ps(0x00FF, _mm512_set1_ps(SCALE1(ib)));                          \
        acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(PAIR(ib, NO_BLOCK)), d, acc0);                            \
        accm = EXTRA1(ib, accm);                                                                           \
    }                                                                                                      \
    __m128 m_ = _mm_add_ps(accm, _mm_movehl_ps(accm, accm));                                               \
    m_ = _mm_add_ss(m_, _mm_shuffle_ps(m_, m_, 1));                                                        \
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1)) + _mm_cvtss_f32(m_)

#define NO_EXTRA(i, accm) (accm)
#define BLK(p, j) ((j) < 0 ? NULL : (p) + (j)) /* block j of p, or none */
#define QS(p, j) ((j) < 0 ? NULL : (p)[j].qs)

/* ---- 32-element formats x Q8_0 / Q8_1 ----------------------------------------- */

/* Q8_0 weights x Q16_0 activations: one block per zmm, the weights widened
 * to int16 and multiplied pairwise by vpdpwssd (|pair| <= 2 * 127 * 32767,
 * a lane's sum of 2 pairs < 2^31). */
static inline __m512 q8_0_block(const block_q8_0 *a, const block_q16_0 *b) {
    const __m512i w = _mm512_cvtepi8_epi16(loadu256(a->qs));
    return _mm512_cvtepi32_ps(dpwssd(_mm512_setzero_si512(), w, loadu512(b->qs)));
}

static float dot_q8_0(int n, const void *wv, const void *xv) {
    const block_q8_0 *w = wv;
    const block_q16_0 *x = xv;
    const int nb = n / PG_QK8_0;
    __m512 acc0 = _mm512_setzero_ps(), acc1 = acc0;
    int ib = 0;
    for (; ib + 2 <= nb; ib += 2) {
        acc0 = _mm512_fmadd_ps(q8_0_block(w + ib, x + ib), _mm512_set1_ps(f16(w[ib].d) * x[ib].d), acc0);
        acc1 = _mm512_fmadd_ps(q8_0_block(w + ib + 1, x + ib + 1), _mm512_set1_ps(f16(w[ib + 1].d) * x[ib + 1].d),
                               acc1);
    }
    if (ib < nb) acc0 = _mm512_fmadd_ps(q8_0_block(w + ib, x + ib), _mm512_set1_ps(f16(w[ib].d) * x[ib].d), acc0);
    return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

/* Q4_0: sum (q - 8) y = sum q y - 8 sum y; q <= 15 (pairs <= 3810). */
static inline __m512i q4_0_pair(const block_q4_0 *a, const block_q4_0 *b, __m512i y) {
    const __m512i q = nibbles_pair(a->qs, (b ? b : a)->qs);
    return _mm512_sub_epi32(dpbusd(_mm512_setzero_si512(), q, y),
                            dpbusd(_mm512_setzero_si512(), _mm512_set1_epi8(8), y));
}

static float dot_q4_0(int n, const void *wv, const void *xv) {
    const block_q4_0 *w = wv;
    const block_q8_0 *x = xv;
#define PAIR(i, j) q4_0_pair(w + (i), BLK(w, j), pair32(x[i].qs, QS(x, j)))
#define S4(i) _mm_mul_ps(W_D(w, i), Q8_0_D(x, i))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
    DOT32_LOOP(n / PG_QK4_0, PAIR, S4, S1, NO_EXTRA, NO_EXTRA);
#undef PAIR
#undef S4
#undef S1
}

/* Q4_1: d dy sum q qy + m s. */
static float dot_q4_1(int n, const void *wv, const void *xv) {
    const block_q4_1 *w = wv;
    const block_q8_1 *x = xv;
#define PAIR(i, j) \
    dpbusd(_mm512_setzero_si512(), nibbles_pair(w[i].qs, w[(j) < 0 ? (i) : (j)].qs), pair32(x[i].qs, QS(x, j)))
#define S4(i) _mm_mul_ps(W_D(w, i), Q8_1_D(x, i))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
#define E4(i, a) _mm_fmadd_ps(W_M(w, i), Q8_1_S(x, i), a)
#define E1(i, a) _mm_add_ss(a, _mm_set_ss(f16(w[i].m) * f16(x[i].s)))
    DOT32_LOOP(n / PG_QK4_1, PAIR, S4, S1, E4, E1);
#undef PAIR
#undef S4
#undef S1
#undef E4
#undef E1
}

/* The 5-bit quants of two Q5 blocks: nibbles, plus 16 where qh has the bit
 * (qh bit j is element j; block b's bits are the upper 32 of the mask). */
static inline __m512i q5_pair(const uint8_t *qh_a, const uint8_t *qs_a, const uint8_t *qh_b, const uint8_t *qs_b) {
    uint32_t ha, hb;
    memcpy(&ha, qh_a, 4);
    memcpy(&hb, qh_b, 4);
    const __m512i q = nibbles_pair(qs_a, qs_b);
    return _mm512_mask_add_epi8(q, _cvtu64_mask64((uint64_t)hb << 32 | ha), q, _mm512_set1_epi8(16));
}

/* Q5_0: sum (q - 16) y; q <= 31 (pairs <= 7874). */
static inline __m512i q5_0_pair(const block_q5_0 *a, const block_q5_0 *b, __m512i y) {
    const __m512i q = q5_pair(a->qh, a->qs, (b ? b : a)->qh, (b ? b : a)->qs);
    return _mm512_sub_epi32(dpbusd(_mm512_setzero_si512(), q, y),
                            dpbusd(_mm512_setzero_si512(), _mm512_set1_epi8(16), y));
}

static float dot_q5_0(int n, const void *wv, const void *xv) {
    const block_q5_0 *w = wv;
    const block_q8_0 *x = xv;
#define PAIR(i, j) q5_0_pair(w + (i), BLK(w, j), pair32(x[i].qs, QS(x, j)))
#define S4(i) _mm_mul_ps(W_D(w, i), Q8_0_D(x, i))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
    DOT32_LOOP(n / PG_QK5_0, PAIR, S4, S1, NO_EXTRA, NO_EXTRA);
#undef PAIR
#undef S4
#undef S1
}

static inline __m512i q5_1_pair(const block_q5_1 *a, const block_q5_1 *b, __m512i y) {
    const __m512i q = q5_pair(a->qh, a->qs, (b ? b : a)->qh, (b ? b : a)->qs);
    return dpbusd(_mm512_setzero_si512(), q, y);
}

static float dot_q5_1(int n, const void *wv, const void *xv) {
    const block_q5_1 *w = wv;
    const block_q8_1 *x = xv;
#define PAIR(i, j) q5_1_pair(w + (i), BLK(w, j), pair32(x[i].qs, QS(x, j)))
#define S4(i) _mm_mul_ps(W_D(w, i), Q8_1_D(x, i))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
#define E4(i, a) _mm_fmadd_ps(W_M(w, i), Q8_1_S(x, i), a)
#define E1(i, a) _mm_add_ss(a, _mm_set_ss(f16(w[i].m) * f16(x[i].s)))
    DOT32_LOOP(n / PG_QK5_1, PAIR, S4, S1, E4, E1);
#undef PAIR
#undef S4
#undef S1
#undef E4
#undef E1
}

/* A table format (IQ4_NL; MXFP4 below): |value| from one table, the sign from the
 * index (neg: the indices of negative values), so that the product is
 * |v| * (+-y), unsigned x signed (|v| <= 127: pairs <= 32258). */
static inline __m512i table_dot(__m512i idx, __m512i abs_tab, __mmask64 neg, __m512i acc, __m512i y) {
    const __m512i sy = _mm512_mask_sub_epi8(y, neg, _mm512_setzero_si512(), y);
    return dpbusd(acc, _mm512_shuffle_epi8(abs_tab, idx), sy);
}

static const int8_t iq4nl_abs_[16] = {127, 104, 83, 65, 49, 35, 22, 10, 1, 13, 25, 38, 53, 69, 89, 113};
static const int8_t mxfp4_abs_[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, 1, 2, 3, 4, 6, 8, 12};

/* IQ4_NL: indices 0..7 are the negative values. */
static inline __m512i iq4_nl_pair(const block_iq4_nl *a, const block_iq4_nl *b, __m512i tab, __m512i y) {
    const __m512i idx = nibbles_pair(a->qs, (b ? b : a)->qs);
    return table_dot(idx, tab, _mm512_testn_epi8_mask(idx, _mm512_set1_epi8(8)), _mm512_setzero_si512(), y);
}

static float dot_iq4_nl(int n, const void *wv, const void *xv) {
    const block_iq4_nl *w = wv;
    const block_q8_0 *x = xv;
    const __m512i tab = table16(iq4nl_abs_);
#define PAIR(i, j) iq4_nl_pair(w + (i), BLK(w, j), tab, pair32(x[i].qs, QS(x, j)))
#define S4(i) _mm_mul_ps(W_D(w, i), Q8_0_D(x, i))
#define S1(i) (f16(w[i].d) * f16(x[i].d))
    DOT32_LOOP(n / PG_QK4_NL, PAIR, S4, S1, NO_EXTRA, NO_EXTRA);
#undef PAIR
#undef S4
#undef S1
}

/* MXFP4, in 256-bit vectors: one block per ymm (its nibble split and its
 * activations need no cross-lane shuffle there, unlike two blocks per zmm,
 * and Zen 4 runs a zmm op as two ymm ones anyway), the scales of 16 blocks
 * at a time, computed one group ahead, each broadcast from memory by its
 * FMA (a load instead of a permute). MXFP4 has the smallest blocks (17
 * bytes), so the decode needs the most blocks per second from it: on Zen 4
 * this takes 2.45 TSC ticks per block (one core, L2-resident) against 3.2
 * for the DOT32_LOOP form, which fell short of the memory bandwidth with
 * two threads. */

/* MXFP4's scale times the activation's of four blocks: dx * 2^(e-128) in
 * one vscalefps, which rounds once like the reference's product (also where
 * 2^(e-128) or the product is subnormal). */
static inline __m128 mxfp4_scales4(const block_mxfp4 *w, const block_q8_0 *x) {
    const __m128i e = _mm_setr_epi32(w[0].e, w[1].e, w[2].e, w[3].e);
    return _mm_scalef_ps(Q8_0_D(x, 0), _mm_cvtepi32_ps(_mm_sub_epi32(e, _mm_set1_epi32(128))));
}

/* The same for 16 blocks, to sc[16], block k's at sc[MXFP4_POS(k)]. The
 * exponents (byte 17k of the group) fall on distinct bytes of the four
 * 64-byte lines of the group's first 256 bytes: line m holds exponents
 * 4m + L at byte 4m + 17L, i.e. byte 4m + L of 128-bit lane L. Three
 * selects merge the lines and one in-lane shuffle spreads exponent L + 4j
 * to dword j of lane L: position 4L + j. The activation halves (bytes 34k)
 * are gathered in integer registers (4 per register, in that order): as
 * vector selects too they would cost more shuffles than they save. */
#define MXFP4_POS(k) (4 * ((k) % 4) + (k) / 4)
#define MXFP4_SEL(m) {[4 * (m)] = 0xFF, [4 * (m) + 17] = 0xFF, [4 * (m) + 34] = 0xFF, [4 * (m) + 51] = 0xFF}
static const uint8_t mxfp4_sel_[3][64] __attribute__((aligned(64))) = {MXFP4_SEL(1), MXFP4_SEL(2), MXFP4_SEL(3)};
#undef MXFP4_SEL

/* a with the bytes of b where selector i is set (ternary logic c ? b : a) */
static inline __m512i mxfp4_select(__m512i a, __m512i b, int i) {
    return _mm512_ternarylogic_epi32(a, b, _mm512_load_si512(mxfp4_sel_[i]), 0xD8);
}

static inline __attribute__((always_inline)) void mxfp4_scales16(const block_mxfp4 *w, const block_q8_0 *x,
                                                                 float *sc) {
    const char *pw = (const char *)w;
    __m512i e = loadu512(pw);
    e = mxfp4_select(e, loadu512(pw + 64), 0);
    e = mxfp4_select(e, loadu512(pw + 128), 1);
    e = mxfp4_select(e, loadu512(pw + 192), 2);
    const __m512i spread = _mm512_setr_epi32(
        (int)0x80808000, (int)0x80808004, (int)0x80808008, (int)0x8080800C, (int)0x80808001, (int)0x80808005,
        (int)0x80808009, (int)0x8080800D, (int)0x80808002, (int)0x80808006, (int)0x8080800A, (int)0x8080800E,
        (int)0x80808003, (int)0x80808007, (int)0x8080800B, (int)0x8080800F);
    const __m512i ei = _mm512_sub_epi32(_mm512_shuffle_epi8(e, spread), _mm512_set1_epi32(128));
#define H4(a, b, c, i3) \
    _mm_cvtsi64_si128((long long)((uint64_t)x[a].d | (uint64_t)x[b].d << 16 | (uint64_t)x[c].d << 32 | (uint64_t)x[i3].d << 48))
    const __m128i h0 = _mm_unpacklo_epi64(H4(0, 4, 8, 12), H4(1, 5, 9, 13));
    const __m128i h1 = _mm_unpacklo_epi64(H4(2, 6, 10, 14), H4(3, 7, 11, 15));
#undef H4
    const __m512 dx = _mm512_cvtph_ps(_mm256_inserti128_si256(_mm256_castsi128_si256(h0), h1, 1));
    _mm512_store_ps(sc, _mm512_scalef_ps(dx, _mm512_cvtepi32_ps(ei)));
}

/* acc + dpbusd on 256-bit vectors (AVX512VL; without VNNI the pairs stay
 * within int16 as for dpbusd). */
static inline __m256i dpbusd256(__m256i acc, __m256i u, __m256i s) {
#ifdef __AVX512VNNI__
    return _mm256_dpbusd_epi32(acc, u, s);
#else
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
#endif
}

/* One MXFP4 block's 8 float partial sums: indices [lo nibbles | hi
 * nibbles], index bit 3 is the sign, |v| * (+-y) (|v| <= 12: pairs <= 3072). */
static inline __m256 mxfp4_block(const block_mxfp4 *w, const block_q8_0 *x, __m256i tab) {
    const __m256i v = _mm256_broadcastsi128_si256(loadu128(w->qs));
    const __m256i idx = _mm256_and_si256(_mm256_mask_srli_epi16(v, 0xFF00, v, 4), _mm256_set1_epi8(0x0F));
    const __m256i y = loadu256(x->qs);
    const __m256i sy =
        _mm256_mask_sub_epi8(y, _mm256_test_epi8_mask(idx, _mm256_set1_epi8(8)), _mm256_setzero_si256(), y);
    return _mm256_cvtepi32_ps(dpbusd256(_mm256_setzero_si256(), _mm256_shuffle_epi8(tab, idx), sy));
}

static float dot_mxfp4(int n, const void *wv, const void *xv) {
    const block_mxfp4 *w = wv;
    const block_q8_0 *x = xv;
    const int nb = n / PG_QK_MXFP4, ng = nb / 16;
    const __m256i tab = _mm256_broadcastsi128_si256(loadu128(mxfp4_abs_));
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0, acc2 = acc0, acc3 = acc0;
    _Alignas(64) float sc[2][16];
    if (ng) mxfp4_scales16(w, x, sc[0]);
    for (int g = 0; g < ng; g++) {
        const block_mxfp4 *wg = w + 16 * g;
        const block_q8_0 *xg = x + 16 * g;
        const float *d = sc[g & 1];
        if (g + 1 < ng) mxfp4_scales16(wg + 16, xg + 16, sc[(g + 1) & 1]);
        __asm__("" : "+m"(sc)); /* the FMAs read the scales from memory (else: shuffles from registers) */
#define B(k, acc) acc = _mm256_fmadd_ps(mxfp4_block(wg + (k), xg + (k), tab), _mm256_set1_ps(d[MXFP4_POS(k)]), acc)
        B(0, acc0), B(1, acc1), B(2, acc2), B(3, acc3), B(4, acc0), B(5, acc1), B(6, acc2), B(7, acc3);
        B(8, acc0), B(9, acc1), B(10, acc2), B(11, acc3), B(12, acc0), B(13, acc1), B(14, acc2), B(15, acc3);
#undef B
    }
    int ib = 16 * ng;
    for (; ib + 4 <= nb; ib += 4) {
        _Alignas(16) float d4[4];
        _mm_store_ps(d4, mxfp4_scales4(w + ib, x + ib));
        __asm__("" : "+m"(d4));
        acc0 = _mm256_fmadd_ps(mxfp4_block(w + ib, x + ib, tab), _mm256_set1_ps(d4[0]), acc0);
        acc1 = _mm256_fmadd_ps(mxfp4_block(w + ib + 1, x + ib + 1, tab), _mm256_set1_ps(d4[1]), acc1);
        acc2 = _mm256_fmadd_ps(mxfp4_block(w + ib + 2, x + ib + 2, tab), _mm256_set1_ps(d4[2]), acc2);
        acc3 = _mm256_fmadd_ps(mxfp4_block(w + ib + 3, x + ib + 3, tab), _mm256_set1_ps(d4[3]), acc3);
    }
    for (; ib < nb; ib++)
        acc0 = _mm256_fmadd_ps(mxfp4_block(w + ib, x + ib, tab), _mm256_set1_ps(qx86_e8m0_half(w[ib].e) * f16(x[ib].d)),
                               acc0);
    return qx86_hsum8(_mm256_add_ps(_mm256_add_ps(acc0, acc1), _mm256_add_ps(acc2, acc3)));
}
#undef MXFP4_POS

/* ---- 256-element formats x Q8_K ------------------------------------------------ */

/* The exact sum of 16 int32 lanes. */
static inline int hsum_epi32(__m512i v) { return _mm512_reduce_add_epi32(v); }

/* The exact sums of a zmm (isum) and a ymm (msum) of int32 partials, in
 * lanes 0 and 1. */
static inline __m128i hsum2(__m512i a, __m256i b) {
    const __m256i a8 = _mm256_add_epi32(_mm512_castsi512_si256(a), _mm512_extracti64x4_epi64(a, 1));
    __m256i h = _mm256_hadd_epi32(a8, b); /* [a a b b | a a b b] */
    h = _mm256_hadd_epi32(h, h);          /* [a b a b | a b a b] */
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* int16 scales for a zmm of 64 elements in sub-blocks of 16 (Q2_K, Q3_K,
 * Q6_K): scale of sub-block 4g + k in the 128-bit lane k, from the sixteen
 * int16 scales in sc16. */
static inline __m512i scales16_group(__m512i sc16, int g) {
    const __m512i idx = _mm512_add_epi16(_mm512_set1_epi16((short)(4 * g)),
                                         _mm512_setr_epi64(0, 0, 0x0001000100010001ll, 0x0001000100010001ll,
                                                           0x0002000200020002ll, 0x0002000200020002ll,
                                                           0x0003000300030003ll, 0x0003000300030003ll));
    return _mm512_permutexvar_epi16(idx, sc16);
}

/* int16 scales for a zmm of 64 elements in sub-blocks of 32 (Q4_K, Q5_K,
 * IQ4_XS): scale 2g in the lower half, 2g + 1 in the upper, from eight int16
 * scales in the low lanes of sc. */
static inline __m512i scales32_group(__m512i sc, int g) {
    const __m512i idx = _mm512_inserti64x4(_mm512_set1_epi16((short)(2 * g)), _mm256_set1_epi16((short)(2 * g + 1)), 1);
    return _mm512_permutexvar_epi16(idx, sc);
}

/* Per-lane 16-bit shift counts: a in the lower 256 bits, b in the upper. */
static inline __m512i counts(int a, int b) {
    return _mm512_inserti64x4(_mm512_set1_epi16((short)a), _mm256_set1_epi16((short)b), 1);
}

/* Q2_K: u = 2 bits (<= 3: pairs <= 762), scale 4 bits, min 4 bits via bsums. */
static float dot_q2_K(int n, const void *wv, const void *xv) {
    const block_q2_K *w = wv;
    const block_q8_K *x = xv;
    const __m512i m3 = _mm512_set1_epi8(3);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m128i sm = loadu128(w[i].scales);
        const __m512i sc16 = _mm512_zextsi256_si512(_mm256_cvtepu8_epi16(_mm_and_si128(sm, _mm_set1_epi8(0x0F))));
        const __m256i m16 = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(sm, 4), _mm_set1_epi8(0x0F)));
        const __m256i mprod = _mm256_madd_epi16(m16, loadu256(x[i].bsums));
        __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* element 128 h + 32 s + l is bits 2s of qs[32 h + l] */
            const __m512i q = dup256(w[i].qs + 32 * h);
            const __m512i u01 = _mm512_and_si512(_mm512_srlv_epi16(q, counts(0, 2)), m3);
            const __m512i u23 = _mm512_and_si512(_mm512_srlv_epi16(q, counts(4, 6)), m3);
            const int8_t *y = x[i].qs + 128 * h;
            acc = dpwssd(acc, _mm512_maddubs_epi16(u01, loadu512(y)), scales16_group(sc16, 2 * h));
            acc = dpwssd(acc, _mm512_maddubs_epi16(u23, loadu512(y + 64)), scales16_group(sc16, 2 * h + 1));
        }
        sumf = qx86_add_min(sumf, &w[i].d, x[i].d, hsum2(acc, mprod));
    }
    return sumf;
}

/* Q3_K: q = u - 4, u = 2 low bits | hmask bit << 2 (<= 7: pairs <= 1778);
 * the -4 is 4 sum_k sc_k bsums_k. */
static float dot_q3_K(int n, const void *wv, const void *xv) {
    const block_q3_K *w = wv;
    const block_q8_K *x = xv;
    const __m512i m3 = _mm512_set1_epi8(3), four = _mm512_set1_epi8(4);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m256i sc = _mm256_cvtepi8_epi16(qx86_q3_K_scales(w + i));
        const __m512i sc16 = _mm512_zextsi256_si512(sc);
        __m512i acc = _mm512_zextsi256_si512(_mm256_slli_epi32(_mm256_madd_epi16(sc, loadu256(x[i].bsums)), 2));
        acc = _mm512_sub_epi32(_mm512_setzero_si512(), acc);
        const __m512i hm = dup256(w[i].hmask); /* bit 4h + s of hmask[l]: element 128 h + 32 s + l */
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i q = dup256(w[i].qs + 32 * h);
            const __m512i bit01 = _mm512_inserti64x4(_mm512_set1_epi8((char)(1 << 4 * h)),
                                                     _mm256_set1_epi8((char)(2 << 4 * h)), 1);
            const __m512i bit23 = _mm512_slli_epi16(bit01, 2);
            __m512i u01 = _mm512_and_si512(_mm512_srlv_epi16(q, counts(0, 2)), m3);
            __m512i u23 = _mm512_and_si512(_mm512_srlv_epi16(q, counts(4, 6)), m3);
            u01 = _mm512_mask_add_epi8(u01, _mm512_test_epi8_mask(hm, bit01), u01, four);
            u23 = _mm512_mask_add_epi8(u23, _mm512_test_epi8_mask(hm, bit23), u23, four);
            const int8_t *y = x[i].qs + 128 * h;
            acc = dpwssd(acc, _mm512_maddubs_epi16(u01, loadu512(y)), scales16_group(sc16, 2 * h));
            acc = dpwssd(acc, _mm512_maddubs_epi16(u23, loadu512(y + 64)), scales16_group(sc16, 2 * h + 1));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* Q4_K and Q5_K run on 256-bit vectors: a zmm of 64 of their elements is
 * the low and high nibbles of 32 bytes, which takes a cross-lane insert per
 * 64 elements; on Zen 4 (512-bit ops as two 256-bit halves) that costs
 * more than the wider ops save (Q4_K: 6.7 ns per 256 elements this way
 * against 7.9 in zmm and 7.3 for the AVX2 kernel). */

/* The int16 scale of sub-block j (32 elements) in all lanes, from the
 * eight int16 scales in both 128-bit lanes of sc. */
static inline __m256i scale32_256(__m256i sc, int j) {
    return _mm256_shuffle_epi8(sc, _mm256_set1_epi16((short)((2 * j + 1) << 8 | 2 * j)));
}

/* The exact sums of two vectors of int32 partials, in lanes 0 and 1. */
static inline __m128i hsum2_256(__m256i a, __m256i b) {
    __m256i h = _mm256_hadd_epi32(a, b); /* [a a b b | a a b b] */
    h = _mm256_hadd_epi32(h, h);          /* [a b a b | a b a b] */
    return _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
}

/* Q4_K: u = 4 bits (<= 15: pairs <= 3810), 6-bit scales and mins. */
static float dot_q4_K(int n, const void *wv, const void *xv) {
    const block_q4_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m128i sm = qx86_k4_scales_mins(w[i].scales);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        const int8_t *y = x[i].qs;
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0; /* two chains of dpwssd */
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) { /* elements 64 j ..: low nibbles of qs[32 j ..], then high */
            const __m256i q = loadu256(w[i].qs + 32 * j);
            const __m256i lo = _mm256_maddubs_epi16(_mm256_and_si256(q, m4), loadu256(y + 64 * j));
            const __m256i hi = _mm256_maddubs_epi16(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4), loadu256(y + 64 * j + 32));
            acc0 = dpwssd256(acc0, lo, scale32_256(sc, 2 * j));
            acc1 = dpwssd256(acc1, hi, scale32_256(sc, 2 * j + 1));
        }
        const __m256i mprod = _mm256_madd_epi16(qx86_k4_mins16(sm), loadu256(x[i].bsums));
        sumf = qx86_add_min(sumf, &w[i].d, x[i].d, hsum2_256(_mm256_add_epi32(acc0, acc1), mprod));
    }
    return sumf;
}

/* Q5_K: Q4_K plus a fifth bit: bit 2j (2j+1) of qh[l] for element 64 j + l
 * (64 j + 32 + l); u <= 31 (pairs <= 7874). */
static float dot_q5_K(int n, const void *wv, const void *xv) {
    const block_q5_K *w = wv;
    const block_q8_K *x = xv;
    const __m256i m4 = _mm256_set1_epi8(0x0F), b4 = _mm256_set1_epi8(0x10);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m128i sm = qx86_k4_scales_mins(w[i].scales);
        const __m256i sc = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(sm));
        const int8_t *y = x[i].qs;
        __m256i hb = loadu256(w[i].qh); /* shifted right 2 bits per j: bits 0, 1 are 2j, 2j+1 */
        __m256i acc0 = _mm256_setzero_si256(), acc1 = acc0;
#pragma GCC unroll 4
        for (int j = 0; j < 4; j++) {
            const __m256i q = loadu256(w[i].qs + 32 * j);
            const __m256i ul = _mm256_or_si256(_mm256_and_si256(q, m4), _mm256_and_si256(_mm256_slli_epi16(hb, 4), b4));
            const __m256i uh = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(q, 4), m4),
                                               _mm256_and_si256(_mm256_slli_epi16(hb, 3), b4));
            hb = _mm256_srli_epi16(hb, 2);
            acc0 = dpwssd256(acc0, _mm256_maddubs_epi16(ul, loadu256(y + 64 * j)), scale32_256(sc, 2 * j));
            acc1 = dpwssd256(acc1, _mm256_maddubs_epi16(uh, loadu256(y + 64 * j + 32)), scale32_256(sc, 2 * j + 1));
        }
        const __m256i mprod = _mm256_madd_epi16(qx86_k4_mins16(sm), loadu256(x[i].bsums));
        sumf = qx86_add_min(sumf, &w[i].d, x[i].d, hsum2_256(_mm256_add_epi32(acc0, acc1), mprod));
    }
    return sumf;
}

/* Q6_K: q = u - 32, u = 4 low bits | 2 high bits << 4 (<= 63: pairs
 * <= 16002); int8 scales; the -32 is 32 sum_k sc_k bsums_k. */
static float dot_q6_K(int n, const void *wv, const void *xv) {
    const block_q6_K *w = wv;
    const block_q8_K *x = xv;
    const __m512i m4 = _mm512_set1_epi8(0x0F), m2 = _mm512_set1_epi8(0x30);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m256i sc = _mm256_cvtepi8_epi16(loadu128(w[i].scales));
        const __m512i sc16 = _mm512_zextsi256_si512(sc);
        __m512i acc = _mm512_zextsi256_si512(_mm256_slli_epi32(_mm256_madd_epi16(sc, loadu256(x[i].bsums)), 5));
        acc = _mm512_sub_epi32(_mm512_setzero_si512(), acc);
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            /* element 128 h + 32 s + l: nibble s/2 of ql[64 h + 32 (s%2) + l], bits 2s of qh[32 h + l];
             * the zmm of ql holds s = 0, 1 (low nibbles) and s = 2, 3 (high) */
            const __m512i l = loadu512(w[i].ql + 64 * h);
            const __m512i qh = dup256(w[i].qh + 32 * h);
            const __m512i u01 = _mm512_or_si512(_mm512_and_si512(l, m4),
                                                _mm512_and_si512(_mm512_sllv_epi16(qh, counts(4, 2)), m2));
            const __m512i u23 = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(l, 4), m4),
                                                _mm512_and_si512(_mm512_srlv_epi16(qh, counts(0, 2)), m2));
            const int8_t *y = x[i].qs + 128 * h;
            acc = dpwssd(acc, _mm512_maddubs_epi16(u01, loadu512(y)), scales16_group(sc16, 2 * h));
            acc = dpwssd(acc, _mm512_maddubs_epi16(u23, loadu512(y + 64)), scales16_group(sc16, 2 * h + 1));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* Ternary digit of bytes already multiplied by 3^k (mod 256): (v * 3) >> 8
 * = (v >= 86) + (v >= 171). */
static inline __m512i trit(__m512i v) {
    const __m512i one = _mm512_set1_epi8(1);
    const __m512i t = _mm512_maskz_mov_epi8(_mm512_cmpge_epu8_mask(v, _mm512_set1_epi8(86)), one);
    return _mm512_mask_add_epi8(t, _mm512_cmpge_epu8_mask(v, _mm512_set1_epi8((char)171)), t, one);
}

static inline __m512i times3(__m512i v) { return _mm512_add_epi8(v, _mm512_add_epi8(v, v)); }
static inline __m256i times3_256(__m256i v) { return _mm256_add_epi8(v, _mm256_add_epi8(v, v)); }
static inline __m128i times3_128(__m128i v) { return _mm_add_epi8(v, _mm_add_epi8(v, v)); }

static inline __m512i join256(__m256i lo, __m256i hi) {
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

/* TQ1_0: t - 1, t <= 2 (pairs <= 508); the -1 is sum(bsums). Elements
 * (unpack_tq1_0_ in quants.c): digit k of qs[j] (j < 32) is 32 k + j, of
 * qs[32 + j] is 160 + 16 k + j, of qh[j] is 240 + 4 k + j. */
static float dot_tq1_0(int n, const void *wv, const void *xv) {
    const block_tq1_0 *w = wv;
    const block_q8_K *x = xv;
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m256i q = loadu256(w[i].qs);
        const __m512i z0 = join256(q, times3_256(q));   /* digits 0, 1: elements 0..63 */
        const __m512i z1 = times3(times3(z0));           /* digits 2, 3: 64..127 */
        const __m512i z2 = times3(times3(z1));           /* digit 4 (lower half): 128..159 */
        const __m128i b0 = loadu128(w[i].qs + 32);
        const __m256i b01 = _mm256_inserti128_si256(_mm256_castsi128_si256(b0), times3_128(b0), 1);
        const __m256i b23 = times3_256(times3_256(b01));
        const __m256i b4 = times3_256(times3_256(b23)); /* digit 4 in the lower half */
        uint32_t qh;
        memcpy(&qh, w[i].qh, 4);
        const __m128i h0 = _mm_set1_epi32((int)qh), h1 = times3_128(h0), h2 = times3_128(h1), h3 = times3_128(h2);
        const __m128i hk = _mm_blend_epi32(_mm_blend_epi32(h0, h1, 0x2), _mm_blend_epi32(h2, h3, 0x8), 0xC);
        const __m512i z2b = _mm512_inserti64x4(z2, b01, 1);                                    /* 128..191 */
        const __m512i z3 = join256(b23, _mm256_inserti128_si256(b4, hk, 1));                    /* 192..255 */
        const int8_t *y = x[i].qs;
        __m512i acc = dpbusd(_mm512_setzero_si512(), trit(z0), loadu512(y));
        acc = dpbusd(acc, trit(z1), loadu512(y + 64));
        acc = dpbusd(acc, trit(z2b), loadu512(y + 128));
        acc = dpbusd(acc, trit(z3), loadu512(y + 192));
        const __m256i bs = _mm256_madd_epi16(loadu256(x[i].bsums), _mm256_set1_epi16(1));
        acc = _mm512_sub_epi32(acc, _mm512_zextsi256_si512(bs));
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* TQ2_0: t - 1, t the 2-bit field laid out as Q2_K (<= 3: pairs <= 762);
 * the -1 is sum(bsums). */
static float dot_tq2_0(int n, const void *wv, const void *xv) {
    const block_tq2_0 *w = wv;
    const block_q8_K *x = xv;
    const __m512i m3 = _mm512_set1_epi8(3);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        const __m256i bs = _mm256_madd_epi16(loadu256(x[i].bsums), _mm256_set1_epi16(1));
        __m512i acc = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_zextsi256_si512(bs));
#pragma GCC unroll 2
        for (int h = 0; h < 2; h++) {
            const __m512i q = dup256(w[i].qs + 32 * h);
            const int8_t *y = x[i].qs + 128 * h;
            acc = dpbusd(acc, _mm512_and_si512(_mm512_srlv_epi16(q, counts(0, 2)), m3), loadu512(y));
            acc = dpbusd(acc, _mm512_and_si512(_mm512_srlv_epi16(q, counts(4, 6)), m3), loadu512(y + 64));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* IQ4_XS: IQ4_NL values in 8 sub-blocks of 32 with 6-bit scales minus 32;
 * |v| * (+-y) (pairs <= 32258), scaled per sub-block. */
static float dot_iq4_xs(int n, const void *wv, const void *xv) {
    const block_iq4_xs *w = wv;
    const block_q8_K *x = xv;
    const __m512i tab = table16(iq4nl_abs_), eight = _mm512_set1_epi8(8);
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        /* scale ib: nibble ib of scales_l | bits 2 ib of scales_h << 4, minus 32 */
        uint32_t sl;
        memcpy(&sl, w[i].scales_l, 4);
        const __m128i slv = _mm_cvtsi32_si128((int)sl);
        const __m128i lo = _mm_unpacklo_epi8(_mm_and_si128(slv, _mm_set1_epi8(0x0F)),
                                             _mm_and_si128(_mm_srli_epi16(slv, 4), _mm_set1_epi8(0x0F)));
        const __m128i hi = _mm_and_si128(_mm_srlv_epi16(_mm_set1_epi16((short)w[i].scales_h),
                                                        _mm_setr_epi16(0, 2, 4, 6, 8, 10, 12, 14)),
                                         _mm_set1_epi16(3));
        const __m128i ls = _mm_sub_epi16(_mm_or_si128(_mm_cvtepu8_epi16(lo), _mm_slli_epi16(hi, 4)), _mm_set1_epi16(32));
        const __m512i sc = _mm512_castsi128_si512(ls);
        __m512i acc = _mm512_setzero_si512();
#pragma GCC unroll 4
        for (int g = 0; g < 4; g++) { /* sub-blocks 2g, 2g + 1 */
            const __m512i idx = nibbles_pair(w[i].qs + 32 * g, w[i].qs + 32 * g + 16);
            const __m512i y = loadu512(x[i].qs + 64 * g);
            const __m512i sy = _mm512_mask_sub_epi8(y, _mm512_testn_epi8_mask(idx, eight), _mm512_setzero_si512(), y);
            acc = dpwssd(acc, _mm512_maddubs_epi16(_mm512_shuffle_epi8(tab, idx), sy), scales32_group(sc, g));
        }
        sumf += (f16(w[i].d) * x[i].d) * (float)hsum_epi32(acc);
    }
    return sumf;
}

/* ---- activation quantizers --------------------------------------------------------- */

/* roundf (half away from zero), exactly; see avx2.c round_away. */
static inline __m512i round_away(__m512 v) {
    const __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    const __m512 step = _mm512_or_ps(_mm512_and_ps(v, sign), _mm512_set1_ps(1.0f));
    const __mmask16 m = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm512_cvtps_epi32(_mm512_mask_add_ps(t, m, t, step));
}

static void quantize_q8_1(int n, const float *x, block_q8_1 *y) {
    PG_ASSERT(n % PG_QK8_1 == 0);
    const __m512 lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (int i = 0; i < n / PG_QK8_1; i++, x += PG_QK8_1) {
        const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
        /* max(|v|, acc) keeps acc where |v| is NaN, as fmaxf skips NaN */
        const __m512 m = _mm512_max_ps(_mm512_abs_ps(v1), _mm512_max_ps(_mm512_abs_ps(v0), _mm512_setzero_ps()));
        const float amax = _mm512_reduce_max_ps(m);
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        const __m512 vid = _mm512_set1_ps(id);
        /* round_clamp_: clamp first (NaN -> -127), then roundf */
        const __m512i q0 = round_away(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v0, vid), lo), hi));
        const __m512i q1 = round_away(_mm512_min_ps(_mm512_max_ps(_mm512_mul_ps(v1, vid), lo), hi));
        _mm_storeu_si128((__m128i *)y[i].qs, _mm512_cvtsepi32_epi8(q0));
        _mm_storeu_si128((__m128i *)(y[i].qs + 16), _mm512_cvtsepi32_epi8(q1));
        const int sum = _mm512_reduce_add_epi32(_mm512_add_epi32(q0, q1));
        y[i].d = pg_f32_to_f16(d);
        y[i].s = pg_f32_to_f16(sum * d);
    }
}

static void quantize_q8_K(int n, const float *x, block_q8_K *y) {
    PG_ASSERT(n % PG_QK_K == 0);
    for (int i = 0; i < n / PG_QK_K; i++, x += PG_QK_K) {
        __m512 m = _mm512_setzero_ps();
        for (int j = 0; j < PG_QK_K; j += 16) m = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + j)), m);
        const float amax = _mm512_reduce_max_ps(m);
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0) continue;
        /* the first element of largest magnitude, as the reference picks it */
        float max = amax;
        for (int j = 0; j < PG_QK_K; j += 16) {
            const __mmask16 hit =
                _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(x + j)), _mm512_set1_ps(amax), _CMP_EQ_OQ);
            if (hit) {
                max = x[j + __builtin_ctz(hit)];
                break;
            }
        }
        const float iscale = -127.0f / max;
        const __m512 vs = _mm512_set1_ps(iscale), lo = _mm512_set1_ps(-128.0f), hi = _mm512_set1_ps(127.0f);
        __m512i q4[4]; /* the 256 quants, 64 per zmm */
        for (int c = 0; c < 4; c++) {
            __m128i b[4];
            for (int k = 0; k < 4; k++) { /* rintf (half to even), then clamp to -128..127 */
                const __m512 v = _mm512_roundscale_ps(_mm512_mul_ps(_mm512_loadu_ps(x + 64 * c + 16 * k), vs),
                                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
                b[k] = _mm512_cvtsepi32_epi8(_mm512_cvtps_epi32(_mm512_min_ps(_mm512_max_ps(v, lo), hi)));
            }
            q4[c] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_set_m128i(b[1], b[0])), _mm256_set_m128i(b[3], b[2]), 1);
            _mm512_storeu_si512(y[i].qs + 64 * c, q4[c]);
        }
        /* bsums: per zmm, 16 int32 sums of 4 quants, sub-block 4 c + k in 128-bit lane k;
         * then sum the four of each sub-block: lane k of r = sub-blocks k, 4 + k, 8 + k, 12 + k */
        __m512i s[4];
        for (int c = 0; c < 4; c++)
            s[c] = _mm512_madd_epi16(_mm512_maddubs_epi16(_mm512_set1_epi8(1), q4[c]), _mm512_set1_epi16(1));
        const __m512i s01 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[0], s[1]), _mm512_unpackhi_epi32(s[0], s[1]));
        const __m512i s23 = _mm512_add_epi32(_mm512_unpacklo_epi32(s[2], s[3]), _mm512_unpackhi_epi32(s[2], s[3]));
        const __m512i r = _mm512_add_epi32(_mm512_unpacklo_epi64(s01, s23), _mm512_unpackhi_epi64(s01, s23));
        const __m256i r16 = _mm512_cvtepi32_epi16(r); /* sub-blocks 0 4 8 12 1 5 9 13 2 6 10 14 3 7 11 15 */
        const __m256i order = _mm256_setr_epi16(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
        _mm256_storeu_si256((__m256i *)y[i].bsums, _mm256_permutexvar_epi16(order, r16));
        y[i].d = 1.0f / iscale;
    }
}

void FILL_QUANTS(pg_kernel_table *t) {
    t->dot[PG_TYPE_Q8_0] = dot_q8_0;
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
