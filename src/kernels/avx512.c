/* avx512.c - AVX-512 F/BW/VL/DQ kernels (compiled with those -m flags plus
 * AVX2/FMA/F16C).
 *
 * Same contract as avx2.c: each kernel computes what its `_ref` defines, up
 * to float summation order, with a scalar tail for sizes that are not a
 * multiple of 16. Only called when the CPU has all four AVX-512 subsets.
 */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../util.h"
#include "kernels.h"

static inline float hmax16(__m512 v) { return _mm512_reduce_max_ps(v); }
static inline float hsum16(__m512 v) { return _mm512_reduce_add_ps(v); }

/* exp(x), Cephes polynomial (see avx2.c exp8). */
static inline __m512 exp16(__m512 x) {
    const __m512 lo = _mm512_set1_ps(-87.33654f), hi = _mm512_set1_ps(88.72283f);
    __mmask16 under = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    __m512 xc = _mm512_min_ps(_mm512_max_ps(x, lo), hi);
    __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(xc, _mm512_set1_ps(1.44269504088896341f)),
                                    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693359375f), xc);
    r = _mm512_fnmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
    __m512 p = _mm512_set1_ps(1.9875691500e-4f);
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
    p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
    __m512 y = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
    __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    y = _mm512_mul_ps(y, _mm512_castsi512_ps(e));
    return _mm512_maskz_mov_ps((__mmask16)~under, y);
}

static float dot_f32(int n, const void *wv, const void *xv) {
    const float *w = wv, *x = xv;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w + i), _mm512_loadu_ps(x + i), a0);
    float s = hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += w[i] * x[i];
    return s;
}

static inline __m512 load_f16(const uint16_t *p) {
    return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p));
}

static inline __m512 load_bf16(const uint16_t *p) {
    __m512i v = _mm512_cvtepu16_epi32(_mm256_loadu_si256((const __m256i *)p));
    return _mm512_castsi512_ps(_mm512_slli_epi32(v, 16));
}

static float dot_f16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv;
    const float *x = xv;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_f16(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_f16(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_f16(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_f16(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load_f16(w + i), _mm512_loadu_ps(x + i), a0);
    float s = hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += pg_f16_to_f32(w[i]) * x[i];
    return s;
}

static float dot_bf16(int n, const void *wv, const void *xv) {
    const uint16_t *w = wv;
    const float *x = xv;
    __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
    int i = 0;
    for (; i + 64 <= n; i += 64) {
        a0 = _mm512_fmadd_ps(load_bf16(w + i), _mm512_loadu_ps(x + i), a0);
        a1 = _mm512_fmadd_ps(load_bf16(w + i + 16), _mm512_loadu_ps(x + i + 16), a1);
        a2 = _mm512_fmadd_ps(load_bf16(w + i + 32), _mm512_loadu_ps(x + i + 32), a2);
        a3 = _mm512_fmadd_ps(load_bf16(w + i + 48), _mm512_loadu_ps(x + i + 48), a3);
    }
    for (; i + 16 <= n; i += 16) a0 = _mm512_fmadd_ps(load_bf16(w + i), _mm512_loadu_ps(x + i), a0);
    float s = hsum16(_mm512_add_ps(_mm512_add_ps(a0, a1), _mm512_add_ps(a2, a3)));
    for (; i < n; i++) s += pg_bf16_to_f32(w[i]) * x[i];
    return s;
}

/* roundf (half away from zero), exactly; see avx2.c round_away. */
static inline __m512i round_away(__m512 v) {
    __m512 t = _mm512_roundscale_ps(v, _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    __m512 frac = _mm512_andnot_ps(sign, _mm512_sub_ps(v, t));
    __m512 step = _mm512_or_ps(_mm512_and_ps(v, sign), _mm512_set1_ps(1.0f));
    __mmask16 m = _mm512_cmp_ps_mask(frac, _mm512_set1_ps(0.5f), _CMP_GE_OQ);
    return _mm512_cvtps_epi32(_mm512_mask_add_ps(t, m, t, step));
}

static void quantize_q8_0(int n, const float *x, block_q8_0 *y) {
    PG_ASSERT(n % PG_QK8_0 == 0);
    for (int ib = 0; ib < n / PG_QK8_0; ib++) {
        const float *xb = x + ib * PG_QK8_0;
        __m512 v0 = _mm512_loadu_ps(xb), v1 = _mm512_loadu_ps(xb + 16);
        const float amax = hmax16(_mm512_max_ps(_mm512_abs_ps(v0), _mm512_abs_ps(v1)));
        const float d = amax / 127.0f;
        const float id = d ? 1.0f / d : 0.0f;
        y[ib].d = pg_f32_to_f16(d);
        const __m512 vid = _mm512_set1_ps(id);
        _mm_storeu_si128((__m128i *)y[ib].qs, _mm512_cvtsepi32_epi8(round_away(_mm512_mul_ps(v0, vid))));
        _mm_storeu_si128((__m128i *)(y[ib].qs + 16), _mm512_cvtsepi32_epi8(round_away(_mm512_mul_ps(v1, vid))));
    }
}

static void f16_to_f32(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_f16(x + i));
    for (; i < n; i++) y[i] = pg_f16_to_f32(x[i]);
}

static void bf16_to_f32(int n, const uint16_t *x, float *y) {
    int i = 0;
    for (; i + 16 <= n; i += 16) _mm512_storeu_ps(y + i, load_bf16(x + i));
    for (; i < n; i++) y[i] = pg_bf16_to_f32(x[i]);
}

static void rmsnorm(int n, const float *x, const float *w, float eps, float *y) {
    __m512 a0 = _mm512_setzero_ps(), a1 = a0;
    int i = 0;
    for (; i + 32 <= n; i += 32) {
        __m512 v0 = _mm512_loadu_ps(x + i), v1 = _mm512_loadu_ps(x + i + 16);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
        a1 = _mm512_fmadd_ps(v1, v1, a1);
    }
    for (; i + 16 <= n; i += 16) {
        __m512 v0 = _mm512_loadu_ps(x + i);
        a0 = _mm512_fmadd_ps(v0, v0, a0);
    }
    double ss = hsum16(_mm512_add_ps(a0, a1));
    for (; i < n; i++) ss += (double)x[i] * x[i];
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    const __m512 vs = _mm512_set1_ps(scale);
    for (i = 0; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_mul_ps(_mm512_loadu_ps(x + i), vs), _mm512_loadu_ps(w + i)));
    for (; i < n; i++) y[i] = x[i] * scale * w[i];
}

static void softmax(int n, float *x) {
    if (n <= 0) return;
    int i = 0;
    __m512 vm = _mm512_set1_ps(x[0]);
    for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(vm, _mm512_loadu_ps(x + i));
    float mx = hmax16(vm);
    for (; i < n; i++)
        if (x[i] > mx) mx = x[i];
    const __m512 vmx = _mm512_set1_ps(mx);
    __m512 vsum = _mm512_setzero_ps();
    for (i = 0; i + 16 <= n; i += 16) {
        __m512 e = exp16(_mm512_sub_ps(_mm512_loadu_ps(x + i), vmx));
        _mm512_storeu_ps(x + i, e);
        vsum = _mm512_add_ps(vsum, e);
    }
    double s = hsum16(vsum);
    for (; i < n; i++) {
        x[i] = expf(x[i] - mx);
        s += x[i];
    }
    const float inv = (float)(1.0 / s);
    const __m512 vinv = _mm512_set1_ps(inv);
    for (i = 0; i + 16 <= n; i += 16) _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), vinv));
    for (; i < n; i++) x[i] *= inv;
}

static void silu_mul(int n, const float *gate, const float *up, float *y) {
    const __m512 one = _mm512_set1_ps(1.0f), sign = _mm512_set1_ps(-0.0f);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_loadu_ps(gate + i);
        __m512 e = exp16(_mm512_xor_ps(g, sign));
        __m512 s = _mm512_div_ps(g, _mm512_add_ps(one, e));
        _mm512_storeu_ps(y + i, _mm512_mul_ps(s, _mm512_loadu_ps(up + i)));
    }
    for (; i < n; i++) {
        const float g = gate[i];
        y[i] = g / (1.0f + expf(-g)) * up[i];
    }
}

/* pg_swiglu_oai_ref's operations in the same order; min/max take the
 * limit first so that a NaN input stays NaN, as in the reference */
static void swiglu_oai(int n, const float *gate, const float *up, float alpha, float limit, float *y) {
    const __m512 one = _mm512_set1_ps(1.0f), lim = _mm512_set1_ps(limit), nlim = _mm512_set1_ps(-limit);
    const __m512 nalpha = _mm512_set1_ps(-alpha);
    int i = 0;
    for (; i + 16 <= n; i += 16) {
        __m512 g = _mm512_min_ps(lim, _mm512_loadu_ps(gate + i));
        __m512 u = _mm512_max_ps(nlim, _mm512_min_ps(lim, _mm512_loadu_ps(up + i)));
        __m512 glu = _mm512_div_ps(g, _mm512_add_ps(one, exp16(_mm512_mul_ps(nalpha, g))));
        _mm512_storeu_ps(y + i, _mm512_mul_ps(_mm512_add_ps(u, one), glu));
    }
    pg_swiglu_oai_ref(n - i, gate + i, up + i, alpha, limit, y + i);
}

static void axpy(int n, float a, const float *x, float *y) {
    const __m512 va = _mm512_set1_ps(a);
    int i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(y + i, _mm512_fmadd_ps(va, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
    for (; i < n; i++) y[i] += a * x[i];
}

void pg_kernels_fill_avx512(pg_kernel_table *t) {
    t->isa = PG_ISA_AVX512;
    t->dot[PG_TYPE_F32] = dot_f32;
    t->dot[PG_TYPE_F16] = dot_f16;
    t->dot[PG_TYPE_BF16] = dot_bf16;
    t->quantize_q8_0 = quantize_q8_0;
    /* the quantized dots (avx512_quants.c, Q8_0 included) and the Q8_1/Q8_K
     * quantizers: with VNNI where the CPU has it, unless PREGATE_VNNI=0
     * (tests and benchmarks compare both) */
    const char *env = getenv("PREGATE_VNNI");
    t->vnni = __builtin_cpu_supports("avx512vnni") && !(env && !strcmp(env, "0"));
    if (t->vnni) pg_kernels_fill_avx512vnni_quants(t);
    else pg_kernels_fill_avx512_quants(t);
    t->f16_to_f32 = f16_to_f32;
    t->bf16_to_f32 = bf16_to_f32;
    t->rmsnorm = rmsnorm;
    t->softmax = softmax;
    t->silu_mul = silu_mul;
    t->axpy = axpy;
    t->swiglu_oai = swiglu_oai;
}
