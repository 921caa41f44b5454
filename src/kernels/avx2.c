/* avx2.c - AVX2 + FMA + F16C kernels (compiled with -mavx2 -mfma -mf16c).
 *
 * Each kernel computes what its `_ref` in ref.c defines; float sums are
 * kept in several vector accumulators, so they differ from the reference
 * only by summation order. Sizes that are not a multiple of the vector
 * width finish with a scalar tail. Only called when the CPU has AVX2.
 */
#include <immintrin.h>
#include <math.h>

#include "../util.h"
#include "kernels.h"
#include "quants_x86.h"

static inline float hmax8(__m256 v) {
    __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_max_ps(s, _mm_movehl_ps(s, s));
    s = _mm_max_ss(s, _mm_shuffle_ps(s, s, 1));
    return _mm_cvtss_f32(s);
}

/* exp(x), Cephes polynomial, about 1 ulp; below -87.3 it returns 0
 * (expf gives a subnormal < 1.2e-38 there), above 88.72 about FLT_MAX/inf. */
static inline __m256 exp8(__m256 x) {
    const __m256 lo = _mm256_set1_ps(-87.33654f), hi = _mm256_set1_ps(88.72283f);
    __m256 under = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    __m256 xc = _mm256_min_ps(_mm256_max_ps(x, lo), hi);
    __m256 n = _mm256_round_ps(_mm256_mul_ps(xc, _mm256_set1_ps(1.44269504088896341f)),
                               _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), xc);
    r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
    __m256 p = _mm256_set1_ps(1.9875691500e-4f);
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.3981999507e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(8.3334519073e-3f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(4.1665795894e-2f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.6666665459e-1f));
    p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(5.0000001201e-1f));
    __m256 y = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
    __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    y = _mm256_mul_ps(y, _mm256_castsi256_ps(e));
    return _mm256_andnot_ps(under, y);
}

static float dot_f32(int n, const void *wv, const void *xv) {
    const float *w = wv, *x = xv;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w + i), _mm256_loadu_ps(x + i), a0);
    float s = qx86_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static inline __m256 load_f16(const uint16_t *p) {
    return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p));
}

static inline __m256 load_bf16(const uint16_t *p) {
    __m256i v = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p));
    return _mm256_castsi256_ps(_mm256_slli_epi32(v, 16));
}

static float dot_f16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv;
    const float *x = xv;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_f16(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_f16(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_f16(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_f16(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_f16(w + i), _mm256_loadu_ps(x + i), a0);
    float s = qx86_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += pg_f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv;
    const float *x = xv;
    __m256 a0 = _mm256_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        a0 = _mm256_fmadd_ps(load_bf16(w + i), _mm256_loadu_ps(x + i), a0);
        a1 = _mm256_fmadd_ps(load_bf16(w + i + 8), _mm256_loadu_ps(x + i + 8), a1);
        a2 = _mm256_fmadd_ps(load_bf16(w + i + 16), _mm256_loadu_ps(x + i + 16), a2);
        a3 = _mm256_fmadd_ps(load_bf16(w + i + 24), _mm256_loadu_ps(x + i + 24), a3);
    }
    for (; i + 8 <= n; i += 8) a0 = _mm256_fmadd_ps(load_bf16(w + i), _mm256_loadu_ps(x + i), a0);
    float s = qx86_hsum8(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
    for (; i < n; i++) s += pg_bf16_to_f32(w[i]) * x[i];
    return s;
}

/* The scales of 4 consecutive blocks as floats (one 64-bit move and one
 * conversion instead of four scalar half conversions). */
static inline __m128 scales4(const block_q8_0 *x) {
    const uint64_t v = (uint64_t)x[0].d | (uint64_t)x[1].d << 16 | (uint64_t)x[2].d << 32 | (uint64_t)x[3].d << 48;
    return _mm_cvtph_ps(_mm_cvtsi64_si128((long long)v));
}

/* Q8_0 weights x Q16_0 activations, one block as 8 int32 partial sums:
 * the weights widened to int16, pairs multiplied and added by vpmaddwd
 * (|pair| <= 2 * 127 * 32767 < 2^31, and the 8 lanes' sum too). */
static inline __m256i block_dot16(const int8_t *a, const int16_t *b) {
    const __m256i lo = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)a)),
                                         _mm256_loadu_si256((const __m256i *)b));
    const __m256i hi = _mm256_madd_epi16(_mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)(a + 16))),
                                         _mm256_loadu_si256((const __m256i *)(b + 16)));
    return _mm256_add_epi32(lo, hi);
}

static float dot_q8_0(int n, const void *wv, const void *xv) {
    const block_q8_0 *a = wv;
    const block_q16_0 *b = xv;
    const int nb = n / PG_QK8_0;
    __m256 acc0 = _mm256_setzero_ps(), acc1 = acc0;
    int ib = 0;
    for (; ib + 4 <= nb; ib += 4) {
        /* d[k] = f16(a.d) * b.d for blocks ib..ib+3, as the reference rounds it */
        const __m128 db = _mm_setr_ps(b[ib].d, b[ib + 1].d, b[ib + 2].d, b[ib + 3].d);
        const __m256 d = _mm256_castps128_ps256(_mm_mul_ps(scales4(a + ib), db));
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot16(a[ib].qs, b[ib].qs)),
                               _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(0)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot16(a[ib + 1].qs, b[ib + 1].qs)),
                               _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(1)), acc1);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot16(a[ib + 2].qs, b[ib + 2].qs)),
                               _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(2)), acc0);
        acc1 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot16(a[ib + 3].qs, b[ib + 3].qs)),
                               _mm256_permutevar8x32_ps(d, _mm256_set1_epi32(3)), acc1);
    }
    for (; ib < nb; ib++) {
        __m256 d0 = _mm256_set1_ps(_cvtsh_ss(a[ib].d) * b[ib].d);
        acc0 = _mm256_fmadd_ps(_mm256_cvtepi32_ps(block_dot16(a[ib].qs, b[ib].qs)), d0, acc0);
    }
    return qx86_hsum8(_mm256_add_ps(acc0, acc1));
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

static void quantize_q8_0(int n, const float *x, block_q8_0 *y) {
    PG_ASSERT(n % PG_QK8_0 == 0);
    const __m256 sign = _mm256_set1_ps(-0.0f);
    for (int ib = 0; ib < n / PG_QK8_0; ib++) {
        const float *xb = x + ib * PG_QK8_0;
        __m256 v0 = _mm256_loadu_ps(xb), v1 = _mm256_loadu_ps(xb + 8);
        __m256 v2 = _mm256_loadu_ps(xb + 16), v3 = _mm256_loadu_ps(xb + 24);
        __m256 m = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v0), _mm256_andnot_ps(sign, v1)),
                                 _mm256_max_ps(_mm256_andnot_ps(sign, v2), _mm256_andnot_ps(sign, v3)));
        const float amax = hmax8(m);
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[ib].d = pg_f32_to_f16(d);
        const __m256 vid = _mm256_set1_ps(id);
        __m256i i0 = round_away(_mm256_mul_ps(v0, vid)), i1 = round_away(_mm256_mul_ps(v1, vid));
        __m256i i2 = round_away(_mm256_mul_ps(v2, vid)), i3 = round_away(_mm256_mul_ps(v3, vid));
        i0 = _mm256_packs_epi32(i0, i1);
        i2 = _mm256_packs_epi32(i2, i3);
        i0 = _mm256_packs_epi16(i0, i2);
        i0 = _mm256_permutevar8x32_epi32(i0, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
        _mm256_storeu_si256((__m256i *)y[ib].qs, i0);
    }
}

static void f16_to_f32(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_f16(x + i));
    for (; i < n; i++) y[i] = pg_f16_to_f32(x[i]);
}

static void bf16_to_f32(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, load_bf16(x + i));
    for (; i < n; i++) y[i] = pg_bf16_to_f32(x[i]);
}

static void rmsnorm(int n, const float *x, const float *w, float eps, float *y) {
    __m256 a0 = _mm256_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m256 v0 = _mm256_loadu_ps(x + i), v1 = _mm256_loadu_ps(x + i + 8);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
        a1 = _mm256_fmadd_ps(v1, v1, a1);
    }
    for (; i + 8 <= n; i += 8) {
        __m256 v0 = _mm256_loadu_ps(x + i);
        a0 = _mm256_fmadd_ps(v0, v0, a0);
    }
    double ss = qx86_hsum8(_mm256_add_ps(a0, a1));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    const __m256 vs = _mm256_set1_ps(scale);
    for (i = 0; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = x[i] * scale * w[i];
}

static void softmax(int n, float *x) {
    if (n <= 0) return;
    int i = 0;
    __m256 vm = _mm256_set1_ps(x[0]);
    for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(vm, _mm256_loadu_ps(x + i));
    float mx = hmax8(vm);
    for (; i < n; i++)
        if (x[i] > mx) mx = x[i];
    const __m256 vmx = _mm256_set1_ps(mx);
    __m256 vsum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n; i += 8) {
        __m256 e = exp8(_mm256_sub_ps(_mm256_loadu_ps(x + i), vmx));
        _mm256_storeu_ps(x + i, e);
        vsum = _mm256_add_ps(vsum, e);
    }
    double s = qx86_hsum8(vsum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    const float inv = (float)(1.0 / s);
    const __m256 vinv = _mm256_set1_ps(inv);
    for (i = 0; i + 8 <= n; i += 8) _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_loadu_ps(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
}

static void silu_mul(int n, const float *gate, const float *up, float *y) {
    const __m256 one = _mm256_set1_ps(1.0f), sign = _mm256_set1_ps(-0.0f);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_loadu_ps(gate + i);
        __m256 e = exp8(_mm256_xor_ps(g, sign));
        __m256 s = _mm256_div_ps(g, _mm256_add_ps(one, e));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* pg_swiglu_oai_ref's operations in the same order; min/max take the
 * limit first so that a NaN input stays NaN, as in the reference */
static void swiglu_oai(int n, const float *gate, const float *up, float alpha, float limit, float *y) {
    const __m256 one = _mm256_set1_ps(1.0f), lim = _mm256_set1_ps(limit), nlim = _mm256_set1_ps(-limit);
    const __m256 nalpha = _mm256_set1_ps(-alpha);
    int i = 0;
    for (; i + 8 <= n; i += 8) {
        __m256 g = _mm256_min_ps(lim, _mm256_loadu_ps(gate + i));
        __m256 u = _mm256_max_ps(nlim, _mm256_min_ps(lim, _mm256_loadu_ps(up + i)));
        __m256 glu = _mm256_div_ps(g, _mm256_add_ps(one, exp8(_mm256_mul_ps(nalpha, g))));
        _mm256_storeu_ps(y + i, _mm256_mul_ps(_mm256_add_ps(u, one), glu));
    }
    pg_swiglu_oai_ref(n - i, gate + i, up + i, alpha, limit, y + i);
}

static void axpy(int n, float a, const float *x, float *y) {
    const __m256 va = _mm256_set1_ps(a);
    int i = 0;
    for (; i + 8 <= n; i += 8)
        _mm256_storeu_ps(y + i, _mm256_fmadd_ps(va, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

void pg_kernels_fill_avx2(pg_kernel_table *t) {
    t->isa = PG_ISA_AVX2;
    t->dot[PG_TYPE_F32] = dot_f32;
    t->dot[PG_TYPE_F16] = dot_f16;
    t->dot[PG_TYPE_BF16] = dot_bf16;
    t->dot[PG_TYPE_Q8_0] = dot_q8_0;
    t->quantize_q8_0 = quantize_q8_0;
    pg_kernels_fill_avx2_quants(t); /* the other quantized formats: avx2_quants.c */
    t->f16_to_f32 = f16_to_f32;
    t->bf16_to_f32 = bf16_to_f32;
    t->rmsnorm = rmsnorm;
    t->softmax = softmax;
    t->silu_mul = silu_mul;
    t->axpy = axpy;
    t->swiglu_oai = swiglu_oai;
}
