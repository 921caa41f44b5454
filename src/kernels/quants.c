/* quants.c - scalar references of the quantized formats: dequantize,
 * quantize, and dot products against quantized activations.
 *
 * The 256-element formats (K-quants, TQ*, IQ4_XS) are first unpacked into one
 * common form, `kblock_`: a signed integer quant per element and an integer
 * scale and min per 16 elements, x = (d * sc) * q - (dmin * m). Dequantize
 * and dot product share that unpacking, so the fixtures that check one
 * (tests/fixtures/quant/, from gguf-py) check the bit layout of both.
 *
 * Quantizers of the 32-element formats Q4_0..Q8_0 follow ggml's reference
 * arithmetic (byte-identical output); the others search scales their own way
 * (weighted least squares over a few candidate scales, see fit_*_), which
 * gives errors comparable to ggml's quantizers (tests/test_quants.c states
 * the RMS error per format).
 */
#include "quants.h"

#include <math.h>
#include <string.h>

#include "../util.h"
#include "kernels.h"

const int8_t pg_kvalues_iq4nl[16] = {-127, -104, -83, -65, -49, -35, -22, -10,
                                     1,    13,   25,  38,  53,  69,  89,  113};
/* E2M1 values 0, .5, 1, 1.5, 2, 3, 4, 6 and their negatives, times two */
const int8_t pg_kvalues_mxfp4[16] = {0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12};

float pg_e8m0_to_f32_half(uint8_t e) {
    /* 2^(e-128): a subnormal float for e < 2 */
    uint32_t bits = e < 2 ? 0x00200000u << e : (uint32_t)(e - 1) << 23;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline float h2f_(uint16_t h) { return pg_f16_to_f32(h); }

/* roundf(v) (half away from zero) clamped to [lo, hi]; NaN gives lo. Inline
 * (roundf is a library call without SSE4.1): floor plus the fraction test,
 * exact for the clamped range. */
static inline int round_clamp_(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    const float a = v < 0 ? -v : v;
    int r = (int)a;
    r += a - (float)r >= 0.5f;
    return v < 0 ? -r : r;
}

static inline float max_(float a, float b) { return a > b ? a : b; }
static inline float min_(float a, float b) { return a < b ? a : b; }

/* ---- 32-element formats ----------------------------------------------------------- */

static void dequant_q4_0_(int64_t nb, const void *vx, float *y) {
    const block_q4_0 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d);
        for (int j = 0; j < 16; j++) {
            y[j] = ((x[i].qs[j] & 0xF) - 8) * d;
            y[j + 16] = ((x[i].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequant_q4_1_(int64_t nb, const void *vx, float *y) {
    const block_q4_1 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d), m = h2f_(x[i].m);
        for (int j = 0; j < 16; j++) {
            y[j] = (x[i].qs[j] & 0xF) * d + m;
            y[j + 16] = (x[i].qs[j] >> 4) * d + m;
        }
    }
}

static inline uint32_t load_u32_(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* The 5-bit quants (0..31) of a Q5_0/Q5_1 block, minus `offset`. */
static inline void unpack_q5_(const uint8_t qh4[4], const uint8_t qs[16], int offset, int8_t q[32]) {
    const uint32_t qh = load_u32_(qh4);
    for (int j = 0; j < 16; j++) {
        q[j] = (int8_t)(((qs[j] & 0xF) | (int)((qh >> j) & 1) << 4) - offset);
        q[j + 16] = (int8_t)(((qs[j] >> 4) | (int)((qh >> (j + 16)) & 1) << 4) - offset);
    }
}

static void dequant_q5_0_(int64_t nb, const void *vx, float *y) {
    const block_q5_0 *x = vx;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d);
        unpack_q5_(x[i].qh, x[i].qs, 16, q);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d;
    }
}

static void dequant_q5_1_(int64_t nb, const void *vx, float *y) {
    const block_q5_1 *x = vx;
    int8_t q[32];
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d), m = h2f_(x[i].m);
        unpack_q5_(x[i].qh, x[i].qs, 0, q);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d + m;
    }
}

static void dequant_q8_0_(int64_t nb, const void *vx, float *y) {
    const block_q8_0 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = x[i].qs[j] * d;
    }
}

static void dequant_q16_0_(int64_t nb, const void *vx, float *y) {
    const block_q16_0 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32)
        for (int j = 0; j < 32; j++) y[j] = x[i].qs[j] * x[i].d;
}

static void dequant_q8_1_(int64_t nb, const void *vx, float *y) {
    const block_q8_1 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d);
        for (int j = 0; j < 32; j++) y[j] = x[i].qs[j] * d;
    }
}

/* 32 values of a 4-bit lookup format (MXFP4, IQ4_NL, IQ4_XS): element j in
 * the low nibble of qs[j], element j + 16 in the high one. */
static void unpack_lut4_(const uint8_t qs[16], const int8_t lut[16], int8_t q[32]) {
    for (int j = 0; j < 16; j++) {
        q[j] = lut[qs[j] & 0xF];
        q[j + 16] = lut[qs[j] >> 4];
    }
}

static void dequant_mxfp4_(int64_t nb, const void *vx, float *y) {
    const block_mxfp4 *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = pg_e8m0_to_f32_half(x[i].e);
        int8_t q[32];
        unpack_lut4_(x[i].qs, pg_kvalues_mxfp4, q);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d;
    }
}

static void dequant_iq4_nl_(int64_t nb, const void *vx, float *y) {
    const block_iq4_nl *x = vx;
    for (int64_t i = 0; i < nb; i++, y += 32) {
        const float d = h2f_(x[i].d);
        int8_t q[32];
        unpack_lut4_(x[i].qs, pg_kvalues_iq4nl, q);
        for (int j = 0; j < 32; j++) y[j] = q[j] * d;
    }
}

/* ---- 256-element formats: the common unpacked form ------------------------------ */

typedef struct {
    float d, dmin;
    int has_min;
    int8_t q[PG_QK_K];  /* signed quant of each element */
    int16_t sc[16];     /* per 16 elements: x = (d * sc) * q - (dmin * m) */
    int16_t m[16];
} kblock_;

/* The 2-bit fields of Q2_K/Q3_K/TQ2_0 minus `offset`: each 128 elements
 * use 32 bytes; element 32*s + l of the half is bits 2s..2s+1 of byte l.
 * (Loops written so that the compiler vectorizes them.) */
static inline void unpack_2bit_(const uint8_t *qs, int offset, int8_t *q) {
    for (int half = 0; half < 2; half++)
        for (int s = 0; s < 4; s++)
            for (int l = 0; l < 32; l++) q[128 * half + 32 * s + l] = (int8_t)(((qs[32 * half + l] >> (2 * s)) & 3) - offset);
}

static void unpack_q2_K_(const void *vb, kblock_ *k) {
    const block_q2_K *b = vb;
    k->d = h2f_(b->d);
    k->dmin = h2f_(b->dmin);
    k->has_min = 1;
    for (int s = 0; s < 16; s++) {
        k->sc[s] = b->scales[s] & 0xF;
        k->m[s] = b->scales[s] >> 4;
    }
    unpack_2bit_(b->qs, 0, k->q);
}

/* Q3_K's 6-bit scale of sub-block s (0..15): low 4 bits in the nibble s/8 of
 * byte s%8, high 2 bits at bit 2*(s/4) of byte 8 + s%4; stored plus 32. */
static inline int q3_K_scale_(const uint8_t sc[12], int s) {
    const int lo = (sc[s % 8] >> (4 * (s / 8))) & 0xF;
    const int hi = (sc[8 + s % 4] >> (2 * (s / 4))) & 3;
    return (lo | hi << 4) - 32;
}

static void unpack_q3_K_(const void *vb, kblock_ *k) {
    const block_q3_K *b = vb;
    k->d = h2f_(b->d);
    k->dmin = 0;
    k->has_min = 0;
    for (int s = 0; s < 16; s++) {
        k->sc[s] = (int16_t)q3_K_scale_(b->scales, s);
        k->m[s] = 0;
    }
    /* the high bit of element e is bit e/32 of hmask[e%32]; clear means -4 */
    unpack_2bit_(b->qs, 0, k->q);
    for (int g = 0; g < 8; g++)
        for (int l = 0; l < 32; l++) k->q[32 * g + l] -= (int8_t)((~b->hmask[l] >> g) & 1) << 2;
}

/* Q4_K/Q5_K's 6-bit scale and min of sub-block j (0..7) of 32. */
static inline void k4_scale_min_(const uint8_t q[12], int j, int *sc, int *m) {
    if (j < 4) {
        *sc = q[j] & 63;
        *m = q[j + 4] & 63;
    } else {
        *sc = (q[j + 4] & 0xF) | (q[j - 4] >> 6) << 4;
        *m = (q[j + 4] >> 4) | (q[j] >> 6) << 4;
    }
}

/* Q4_K and Q5_K share their header: d, dmin and eight 6-bit scale/min
 * pairs, each pair covering two 16-element sub-blocks of the unpacked form. */
static void k4_header_(uint16_t d, uint16_t dmin, const uint8_t scales[12], kblock_ *k) {
    k->d = h2f_(d);
    k->dmin = h2f_(dmin);
    k->has_min = 1;
    for (int j = 0; j < 8; j++) {
        int sc, m;
        k4_scale_min_(scales, j, &sc, &m);
        k->sc[2 * j] = k->sc[2 * j + 1] = (int16_t)sc;
        k->m[2 * j] = k->m[2 * j + 1] = (int16_t)m;
    }
}

static void unpack_q4_K_(const void *vb, kblock_ *k) {
    const block_q4_K *b = vb;
    k4_header_(b->d, b->dmin, b->scales, k);
    /* each 64 elements: 32 bytes, low nibbles then high nibbles */
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * c + l] = (int8_t)(b->qs[32 * c + l] & 0xF);
            k->q[64 * c + 32 + l] = (int8_t)(b->qs[32 * c + l] >> 4);
        }
}

static void unpack_q5_K_(const void *vb, kblock_ *k) {
    const block_q5_K *b = vb;
    k4_header_(b->d, b->dmin, b->scales, k);
    /* nibbles as Q4_K; the fifth bit of element e: bit (e/32) of qh[e%32] */
    for (int c = 0; c < 4; c++)
        for (int l = 0; l < 32; l++) {
            k->q[64 * c + l] = (int8_t)((b->qs[32 * c + l] & 0xF) | ((b->qh[l] >> (2 * c)) & 1) << 4);
            k->q[64 * c + 32 + l] = (int8_t)((b->qs[32 * c + l] >> 4) | ((b->qh[l] >> (2 * c + 1)) & 1) << 4);
        }
}

static void unpack_q6_K_(const void *vb, kblock_ *k) {
    const block_q6_K *b = vb;
    k->d = h2f_(b->d);
    k->dmin = 0;
    k->has_min = 0;
    for (int s = 0; s < 16; s++) {
        k->sc[s] = b->scales[s];
        k->m[s] = 0;
    }
    /* each 128 elements: 64 bytes of ql, 32 of qh. Element 32*s + l of the
     * half: nibble s/2 of ql[l + 32*(s%2)], and bits 2s of qh[l]. */
    for (int half = 0; half < 2; half++) {
        const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
        int8_t *q = k->q + 128 * half;
        for (int l = 0; l < 32; l++) {
            q[l] = (int8_t)(((ql[l] & 0xF) | ((qh[l] >> 0) & 3) << 4) - 32);
            q[l + 32] = (int8_t)(((ql[l + 32] & 0xF) | ((qh[l] >> 2) & 3) << 4) - 32);
            q[l + 64] = (int8_t)(((ql[l] >> 4) | ((qh[l] >> 4) & 3) << 4) - 32);
            q[l + 96] = (int8_t)(((ql[l + 32] >> 4) | ((qh[l] >> 6) & 3) << 4) - 32);
        }
    }
}

static const uint8_t pow3_[6] = {1, 3, 9, 27, 81, 243};

/* Trit k (0 = most significant) of a TQ1_0 byte. */
static inline int tq1_trit_(uint8_t b, int k) {
    const uint8_t v = (uint8_t)(b * pow3_[k]);
    return (v * 3) >> 8;
}

static void unpack_tq1_0_(const void *vb, kblock_ *k) {
    const block_tq1_0 *b = vb;
    k->d = h2f_(b->d);
    k->dmin = 0;
    k->has_min = 0;
    for (int s = 0; s < 16; s++) k->sc[s] = 1, k->m[s] = 0;
    int e = 0;
    /* qs[0..32): 5 trits each, trit t of byte j is element 32t + j; then
     * qs[32..48): element 160 + 16t + j; then qh: element 240 + 4t + j */
    for (int t = 0; t < 5; t++)
        for (int j = 0; j < 32; j++) k->q[e++] = (int8_t)(tq1_trit_(b->qs[j], t) - 1);
    for (int t = 0; t < 5; t++)
        for (int j = 0; j < 16; j++) k->q[e++] = (int8_t)(tq1_trit_(b->qs[32 + j], t) - 1);
    for (int t = 0; t < 4; t++)
        for (int j = 0; j < 4; j++) k->q[e++] = (int8_t)(tq1_trit_(b->qh[j], t) - 1);
}

static void unpack_tq2_0_(const void *vb, kblock_ *k) {
    const block_tq2_0 *b = vb;
    k->d = h2f_(b->d);
    k->dmin = 0;
    k->has_min = 0;
    for (int s = 0; s < 16; s++) k->sc[s] = 1, k->m[s] = 0;
    /* each 128 elements: 32 bytes; element 32*t + m is bits 2t of byte m */
    unpack_2bit_(b->qs, 1, k->q);
}

static void unpack_iq4_xs_(const void *vb, kblock_ *k) {
    const block_iq4_xs *b = vb;
    k->d = h2f_(b->d);
    k->dmin = 0;
    k->has_min = 0;
    for (int ib = 0; ib < 8; ib++) {
        const int ls = ((b->scales_l[ib / 2] >> (4 * (ib % 2))) & 0xF) | ((b->scales_h >> (2 * ib)) & 3) << 4;
        k->sc[2 * ib] = k->sc[2 * ib + 1] = (int16_t)(ls - 32);
        k->m[2 * ib] = k->m[2 * ib + 1] = 0;
        unpack_lut4_(b->qs + 16 * ib, pg_kvalues_iq4nl, k->q + 32 * ib);
    }
}

typedef void (*unpack_fn_)(const void *block, kblock_ *k);

static void kblock_to_f32_(const kblock_ *k, float *y) {
    for (int s = 0; s < 16; s++) {
        const float dl = k->d * k->sc[s];
        const float ml = k->dmin * k->m[s];
        for (int j = 0; j < 16; j++)
            y[16 * s + j] = k->has_min ? dl * k->q[16 * s + j] - ml : dl * k->q[16 * s + j];
    }
}

static void dequant_k_(int64_t nb, const void *x, size_t bsize, unpack_fn_ unpack, float *y) {
    kblock_ k;
    for (int64_t i = 0; i < nb; i++) {
        unpack((const char *)x + (size_t)i * bsize, &k);
        kblock_to_f32_(&k, y + i * PG_QK_K);
    }
}

/* Dot of n/256 unpacked blocks with Q8_K: exact integer sums per block, then
 * d_x * d_y * isum - dmin_x * d_y * msum in float. */
static float dot_k_(int n, const void *w, size_t bsize, unpack_fn_ unpack, const block_q8_K *y) {
    kblock_ k;
    float sumf = 0;
    for (int i = 0; i < n / PG_QK_K; i++) {
        unpack((const char *)w + (size_t)i * bsize, &k);
        int32_t isum = 0, msum = 0;
        for (int s = 0; s < 16; s++) {
            int32_t sub = 0;
            for (int j = 0; j < 16; j++) sub += k.q[16 * s + j] * y[i].qs[16 * s + j];
            isum += sub * k.sc[s];
            msum += k.m[s] * y[i].bsums[s];
        }
        sumf += (k.d * y[i].d) * (float)isum;
        if (k.has_min) sumf -= (k.dmin * y[i].d) * (float)msum;
    }
    return sumf;
}


float pg_dot_q2_K_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_q2_K), unpack_q2_K_, x);
}
float pg_dot_q3_K_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_q3_K), unpack_q3_K_, x);
}
float pg_dot_q4_K_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_q4_K), unpack_q4_K_, x);
}
float pg_dot_q5_K_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_q5_K), unpack_q5_K_, x);
}
float pg_dot_q6_K_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_q6_K), unpack_q6_K_, x);
}
float pg_dot_tq1_0_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_tq1_0), unpack_tq1_0_, x);
}
float pg_dot_tq2_0_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_tq2_0), unpack_tq2_0_, x);
}
float pg_dot_iq4_xs_ref(int n, const void *w, const void *x) {
    return dot_k_(n, w, sizeof(block_iq4_xs), unpack_iq4_xs_, x);
}

/* ---- dot products of the 32-element formats ------------------------------------------ */

/* Exact sum of q[j] * y[j] over one 32-block (vectorizes). */
static inline int dot32_i8_(const int8_t *q, const int8_t *y) {
    int sumi = 0;
    for (int j = 0; j < 32; j++) sumi += q[j] * y[j];
    return sumi;
}

float pg_dot_q4_0_ref(int n, const void *w, const void *x) {
    const block_q4_0 *a = w;
    const block_q8_0 *b = x;
    float s = 0;
    int8_t q[32];
    for (int i = 0; i < n / 32; i++) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)((a[i].qs[j] & 0xF) - 8);
            q[j + 16] = (int8_t)((a[i].qs[j] >> 4) - 8);
        }
        s += dot32_i8_(q, b[i].qs) * (h2f_(a[i].d) * h2f_(b[i].d));
    }
    return s;
}

float pg_dot_q4_1_ref(int n, const void *w, const void *x) {
    const block_q4_1 *a = w;
    const block_q8_1 *b = x;
    float s = 0;
    int8_t q[32];
    for (int i = 0; i < n / 32; i++) {
        for (int j = 0; j < 16; j++) {
            q[j] = (int8_t)(a[i].qs[j] & 0xF);
            q[j + 16] = (int8_t)(a[i].qs[j] >> 4);
        }
        /* sum (d q + m) dy qy = d dy sumi + m (dy sum qy) */
        s += dot32_i8_(q, b[i].qs) * (h2f_(a[i].d) * h2f_(b[i].d)) + h2f_(a[i].m) * h2f_(b[i].s);
    }
    return s;
}

float pg_dot_q5_0_ref(int n, const void *w, const void *x) {
    const block_q5_0 *a = w;
    const block_q8_0 *b = x;
    int8_t q[32];
    float s = 0;
    for (int i = 0; i < n / 32; i++) {
        unpack_q5_(a[i].qh, a[i].qs, 16, q);
        s += dot32_i8_(q, b[i].qs) * (h2f_(a[i].d) * h2f_(b[i].d));
    }
    return s;
}

float pg_dot_q5_1_ref(int n, const void *w, const void *x) {
    const block_q5_1 *a = w;
    const block_q8_1 *b = x;
    int8_t q[32];
    float s = 0;
    for (int i = 0; i < n / 32; i++) {
        unpack_q5_(a[i].qh, a[i].qs, 0, q);
        s += dot32_i8_(q, b[i].qs) * (h2f_(a[i].d) * h2f_(b[i].d)) + h2f_(a[i].m) * h2f_(b[i].s);
    }
    return s;
}

float pg_dot_mxfp4_ref(int n, const void *w, const void *x) {
    const block_mxfp4 *a = w;
    const block_q8_0 *b = x;
    float s = 0;
    int8_t q[32];
    for (int i = 0; i < n / 32; i++) {
        unpack_lut4_(a[i].qs, pg_kvalues_mxfp4, q);
        s += dot32_i8_(q, b[i].qs) * (pg_e8m0_to_f32_half(a[i].e) * h2f_(b[i].d));
    }
    return s;
}

float pg_dot_iq4_nl_ref(int n, const void *w, const void *x) {
    const block_iq4_nl *a = w;
    const block_q8_0 *b = x;
    float s = 0;
    int8_t q[32];
    for (int i = 0; i < n / 32; i++) {
        unpack_lut4_(a[i].qs, pg_kvalues_iq4nl, q);
        s += dot32_i8_(q, b[i].qs) * (h2f_(a[i].d) * h2f_(b[i].d));
    }
    return s;
}

/* ---- activation quantizers -------------------------------------------------------------- */

void pg_quantize_q8_1_ref(int n, const float *x, block_q8_1 *y) {
    PG_ASSERT(n % PG_QK8_1 == 0);
    for (int i = 0; i < n / PG_QK8_1; i++, x += PG_QK8_1) {
        float amax = 0;
        for (int j = 0; j < PG_QK8_1; j++) amax = max_(amax, fabsf(x[j]));
        const float d = amax / 127.0f, id = d ? 1.0f / d : 0.0f;
        int sum = 0;
        for (int j = 0; j < PG_QK8_1; j++) {
            y[i].qs[j] = (int8_t)round_clamp_(x[j] * id, -127, 127);
            sum += y[i].qs[j];
        }
        y[i].d = pg_f32_to_f16(d);
        y[i].s = pg_f32_to_f16(sum * d);
    }
}

void pg_quantize_q8_K_ref(int n, const float *x, block_q8_K *y) {
    PG_ASSERT(n % PG_QK_K == 0);
    for (int i = 0; i < n / PG_QK_K; i++, x += PG_QK_K) {
        /* the element of largest magnitude maps to -127 (its sign flipped),
         * so the positive side keeps one step of headroom: q <= 127 */
        float amax = 0, max = 0;
        for (int j = 0; j < PG_QK_K; j++)
            if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
        memset(&y[i], 0, sizeof y[i]);
        if (amax == 0) continue;
        const float iscale = -127.0f / max;
        for (int j = 0; j < PG_QK_K; j++) {
            const float v = rintf(iscale * x[j]); /* half to even, as ggml */
            y[i].qs[j] = (int8_t)(v >= 127 ? 127 : v <= -128 ? -128 : v);
        }
        for (int s = 0; s < PG_QK_K / 16; s++) {
            int sum = 0;
            for (int j = 0; j < 16; j++) sum += y[i].qs[16 * s + j];
            y[i].bsums[s] = (int16_t)sum;
        }
        y[i].d = 1.0f / iscale;
    }
}

/* ---- weight quantizers: 32-element formats (ggml's arithmetic) --------------------------- */

/* Truncate toward zero after clamping to [lo, hi] (NaN gives lo): ggml's
 * (int)(v + 0.5)-style rounding of non-negative values. */
static inline int trunc_clamp_(float v, int lo, int hi) {
    if (!(v >= (float)lo)) return lo;
    if (v >= (float)hi) return hi;
    return (int)v;
}

/* The value of largest magnitude (first one on ties), and that magnitude. */
static inline float absmax_signed_(int n, const float *x, float *amax_out) {
    float amax = 0, max = 0;
    for (int j = 0; j < n; j++)
        if (fabsf(x[j]) > amax) amax = fabsf(x[j]), max = x[j];
    *amax_out = amax;
    return max;
}

static void quant_q4_0_(int64_t nb, const float *x, void *vy) {
    block_q4_0 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax;
        /* the extreme value maps to -8, the end of the range with one more step */
        const float d = absmax_signed_(32, x, &amax) / -8.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_f16(d);
        for (int j = 0; j < 16; j++)
            y[i].qs[j] = (uint8_t)(trunc_clamp_(x[j] * id + 8.5f, 0, 15) |
                                   trunc_clamp_(x[j + 16] * id + 8.5f, 0, 15) << 4);
    }
}

static void minmax_(int n, const float *x, float *lo, float *hi) {
    *lo = INFINITY, *hi = -INFINITY;
    for (int j = 0; j < n; j++) *lo = min_(*lo, x[j]), *hi = max_(*hi, x[j]);
}

static void quant_q4_1_(int64_t nb, const float *x, void *vy) {
    block_q4_1 *y = vy;
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float lo, hi;
        minmax_(32, x, &lo, &hi);
        const float d = (hi - lo) / 15.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_f16(d);
        y[i].m = pg_f32_to_f16(lo);
        for (int j = 0; j < 16; j++)
            y[i].qs[j] = (uint8_t)(trunc_clamp_((x[j] - lo) * id + 0.5f, 0, 15) |
                                   trunc_clamp_((x[j + 16] - lo) * id + 0.5f, 0, 15) << 4);
    }
}

/* Packs 5-bit quants q[32] into a Q5 block's qs and qh. */
static void pack_q5_(const int q[32], uint8_t qh4[4], uint8_t qs[16]) {
    uint32_t qh = 0;
    for (int j = 0; j < 16; j++) {
        qs[j] = (uint8_t)((q[j] & 0xF) | (q[j + 16] & 0xF) << 4);
        qh |= (uint32_t)(q[j] >> 4) << j | (uint32_t)(q[j + 16] >> 4) << (j + 16);
    }
    for (int k = 0; k < 4; k++) qh4[k] = (uint8_t)(qh >> (8 * k));
}

static void quant_q5_0_(int64_t nb, const float *x, void *vy) {
    block_q5_0 *y = vy;
    int q[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax;
        const float d = absmax_signed_(32, x, &amax) / -16.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_f16(d);
        for (int j = 0; j < 32; j++) q[j] = trunc_clamp_(x[j] * id + 16.5f, 0, 31);
        pack_q5_(q, y[i].qh, y[i].qs);
    }
}

static void quant_q5_1_(int64_t nb, const float *x, void *vy) {
    block_q5_1 *y = vy;
    int q[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float lo, hi;
        minmax_(32, x, &lo, &hi);
        const float d = (hi - lo) / 31.0f, id = d ? 1.0f / d : 0.0f;
        y[i].d = pg_f32_to_f16(d);
        y[i].m = pg_f32_to_f16(lo);
        for (int j = 0; j < 32; j++) q[j] = trunc_clamp_((x[j] - lo) * id + 0.5f, 0, 31);
        pack_q5_(q, y[i].qh, y[i].qs);
    }
}

static void quant_q8_0_(int64_t nb, const float *x, void *y) {
    pg_quantize_q8_0_ref((int)(nb * 32), x, y);
}
static void quant_q16_0_(int64_t nb, const float *x, void *y) {
    pg_quantize_q16_0_ref((int)(nb * 32), x, y);
}
static void quant_q8_1_(int64_t nb, const float *x, void *y) {
    pg_quantize_q8_1_ref((int)(nb * 32), x, y);
}
static void quant_q8_K_(int64_t nb, const float *x, void *y) {
    pg_quantize_q8_K_ref((int)(nb * PG_QK_K), x, y);
}

/* ---- scale searches ---------------------------------------------------------------------- */

/* Importance of each element in a least-squares fit: the big ones matter
 * more, but not only they (ggml weighs its K-quant fits the same way). */
static void fit_weights_(int n, const float *x, float *w) {
    float s2 = 0;
    for (int j = 0; j < n; j++) s2 += x[j] * x[j];
    const float av = sqrtf(s2 / n);
    for (int j = 0; j < n; j++) w[j] = av + fabsf(x[j]);
}

/* Fits x ~ a * L + b with integer L in 0..nmax, a >= 0 and b <= 0 (the
 * K-quants subtract a non-negative min). Tries nstep + 1 grid spacings
 * around (max - min) / nmax, refits a and b by weighted least squares for
 * each, and keeps the best. */
static void fit_affine_(int n, int nmax, const float *x, const float *w, float *a_out, float *b_out) {
    float lo, hi;
    minmax_(n, x, &lo, &hi);
    if (lo > 0) lo = 0;
    *a_out = 0;
    *b_out = lo;
    if (!(hi > lo)) return;
    float best = INFINITY;
    for (int k = -1; k <= 20; k++) {
        /* k = -1: the plain grid; then nmax - 1 .. nmax + 1 in steps of 0.1 */
        const float steps = k < 0 ? (float)nmax : nmax - 1.0f + 0.1f * k;
        const float iscale = steps / (hi - lo);
        /* branch-free so that it vectorizes: the argument is >= 0, so
         * truncating v + 0.5 rounds (ties up; this is only the search) */
        float sw = 0, sl = 0, sl2 = 0, sx = 0, slx = 0, L[32];
        for (int j = 0; j < n; j++) {
            const int l = (int)(iscale * (x[j] - lo) + 0.5f);
            L[j] = (float)(l < nmax ? l : nmax);
            sw += w[j], sl += w[j] * L[j], sl2 += w[j] * L[j] * L[j];
            sx += w[j] * x[j], slx += w[j] * L[j] * x[j];
        }
        const float D = sw * sl2 - sl * sl;
        if (!(D > 0)) continue;
        float a = (sw * slx - sx * sl) / D, b = (sl2 * sx - sl * slx) / D;
        if (b > 0) b = 0, a = slx / sl2;
        if (!(a > 0)) continue;
        float err = 0;
        for (int j = 0; j < n; j++) {
            const float e = a * L[j] + b - x[j];
            err += w[j] * e * e;
        }
        if (err < best) best = err, *a_out = a, *b_out = b;
    }
}

/* Fits x ~ a * L with integer L in -nmax..nmax-1 (a of either sign): the
 * value of largest magnitude goes to -nmax, the end with one more step;
 * tries spacings around it and keeps the best least-squares fit. */
static float fit_symmetric_(int n, int nmax, const float *x, const float *w) {
    float amax;
    const float max = absmax_signed_(n, x, &amax);
    if (amax == 0) return 0;
    float best = -1, a = 0;
    for (int k = -9; k <= 9; k++) {
        const float iscale = -(nmax + 0.1f * k) / max;
        float slx = 0, sl2 = 0;
        for (int j = 0; j < n; j++) {
            /* round half to even with the 1.5 * 2^23 trick (|v| <= nmax + 1, so
             * exact), clamp: branch-free, so that it vectorizes */
            float l = (iscale * x[j] + 12582912.0f) - 12582912.0f;
            l = l < -nmax ? -nmax : l > nmax - 1 ? nmax - 1 : l;
            slx += w[j] * l * x[j];
            sl2 += w[j] * l * l;
        }
        /* the weighted error is sum w x^2 - slx^2 / sl2 at the best a */
        if (sl2 > 0 && slx * slx / sl2 > best) best = slx * slx / sl2, a = slx / sl2;
    }
    return a;
}

/* Index of the grid value (16 sorted int8) nearest v. */
static inline int nearest_index_(const int8_t grid[16], float v) {
    if (!(v > grid[0])) return 0; /* also NaN */
    if (v >= grid[15]) return 15;
    int lo = 0, hi = 15; /* grid[lo] < v <= grid[hi] */
    while (hi - lo > 1) {
        const int mid = (lo + hi) / 2;
        if (v > grid[mid]) lo = mid;
        else hi = mid;
    }
    return v - grid[lo] < grid[hi] - v ? lo : hi;
}

/* Fits x ~ d * grid[L] for a non-linear grid (IQ4_NL values): tries scales
 * mapping the extreme value near the grid's end, refits d per try. */
static float fit_grid_(int n, const int8_t grid[16], const float *x, const float *w) {
    float amax;
    const float max = absmax_signed_(n, x, &amax);
    if (amax == 0) return 0;
    /* the nearest grid value of u is grid[0] plus the steps whose midpoint
     * lies below u: branch-free, so that it vectorizes */
    float mid[15], step[15];
    for (int k = 0; k < 15; k++) mid[k] = 0.5f * (grid[k] + grid[k + 1]), step[k] = (float)(grid[k + 1] - grid[k]);
    float best = -1, d = max / grid[0];
    for (int k = -7; k <= 7; k++) {
        const float id = (grid[0] + k) / max;
        float sxv = 0, sv2 = 0;
        for (int j = 0; j < n; j++) {
            const float u = id * x[j];
            float v = grid[0];
            for (int m = 0; m < 15; m++) v += u > mid[m] ? step[m] : 0.0f;
            sxv += w[j] * v * x[j];
            sv2 += w[j] * v * v;
        }
        if (sv2 > 0 && sxv * sxv / sv2 > best) best = sxv * sxv / sv2, d = sxv / sv2;
    }
    return d;
}

/* ---- weight quantizers: 256-element formats ------------------------------------------------- */

/* Q2_K/Q3_K's 2-bit packing of L[256] (0..3 each) into qs[64]. */
static void pack_2bit_(const uint8_t L[256], uint8_t qs[64]) {
    for (int half = 0; half < 2; half++)
        for (int l = 0; l < 32; l++) {
            const uint8_t *p = L + 128 * half + l;
            qs[32 * half + l] = (uint8_t)((p[0] & 3) | (p[32] & 3) << 2 | (p[64] & 3) << 4 | (p[96] & 3) << 6);
        }
}

/* Sub-block scales a[] >= 0 to nbits-bit integers relative to a half-precision
 * super-scale; returns that super-scale as stored. */
static uint16_t quant_scales_(int n, const float *a, int nbits, uint8_t *ls) {
    const int lmax = (1 << nbits) - 1;
    float amax = 0;
    for (int j = 0; j < n; j++) amax = max_(amax, a[j]);
    const uint16_t dh = pg_f32_to_f16(amax / lmax);
    const float d = h2f_(dh), id = d > 0 ? 1.0f / d : 0.0f;
    for (int j = 0; j < n; j++) ls[j] = (uint8_t)round_clamp_(a[j] * id, 0, lmax);
    return dh;
}

/* Requantizes n elements x ~ dl * L - ml with L in 0..nmax. */
static void requant_affine_(int n, int nmax, const float *x, float dl, float ml, uint8_t *L) {
    const float id = dl != 0 ? 1.0f / dl : 0.0f;
    for (int j = 0; j < n; j++) L[j] = (uint8_t)(dl != 0 ? round_clamp_((x[j] + ml) * id, 0, nmax) : 0);
}

/* Q2_K, Q4_K, Q5_K: affine sub-blocks (sub elements, nmax levels), scales
 * and mins as sbits-bit integers; fills L[256], ls[], lm[], d, dmin. */
static void quant_affine_k_(const float *x, int sub, int nmax, int sbits, uint8_t *L, uint8_t *ls,
                            uint8_t *lm, uint16_t *d, uint16_t *dmin) {
    const int ns = PG_QK_K / sub;
    float a[16], m[16], w[32];
    for (int s = 0; s < ns; s++) {
        fit_weights_(sub, x + sub * s, w);
        float b;
        fit_affine_(sub, nmax, x + sub * s, w, &a[s], &b);
        m[s] = -b;
    }
    *d = quant_scales_(ns, a, sbits, ls);
    *dmin = quant_scales_(ns, m, sbits, lm);
    const float df = h2f_(*d), dminf = h2f_(*dmin);
    for (int s = 0; s < ns; s++)
        requant_affine_(sub, nmax, x + sub * s, df * ls[s], dminf * lm[s], L + sub * s);
}

static void quant_q2_K_(int64_t nb, const float *x, void *vy) {
    block_q2_K *y = vy;
    uint8_t L[PG_QK_K], ls[16], lm[16];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        quant_affine_k_(x, 16, 3, 4, L, ls, lm, &y[i].d, &y[i].dmin);
        for (int s = 0; s < 16; s++) y[i].scales[s] = (uint8_t)(ls[s] | lm[s] << 4);
        pack_2bit_(L, y[i].qs);
    }
}

/* Q4_K/Q5_K's 12-byte packing of eight 6-bit scales and mins (the inverse
 * of k4_scale_min_). */
static void pack_k4_scales_(const uint8_t ls[8], const uint8_t lm[8], uint8_t q[12]) {
    memset(q, 0, 12);
    for (int j = 0; j < 8; j++) {
        if (j < 4) {
            q[j] |= ls[j];
            q[j + 4] |= lm[j];
        } else {
            q[j + 4] = (uint8_t)((ls[j] & 0xF) | (lm[j] & 0xF) << 4);
            q[j - 4] |= (uint8_t)((ls[j] >> 4) << 6);
            q[j] |= (uint8_t)((lm[j] >> 4) << 6);
        }
    }
}

static void quant_q4_K_(int64_t nb, const float *x, void *vy) {
    block_q4_K *y = vy;
    uint8_t L[PG_QK_K], ls[8], lm[8];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        quant_affine_k_(x, 32, 15, 6, L, ls, lm, &y[i].d, &y[i].dmin);
        pack_k4_scales_(ls, lm, y[i].scales);
        for (int e = 0; e < PG_QK_K; e += 64)
            for (int l = 0; l < 32; l++) y[i].qs[e / 2 + l] = (uint8_t)(L[e + l] | L[e + l + 32] << 4);
    }
}

static void quant_q5_K_(int64_t nb, const float *x, void *vy) {
    block_q5_K *y = vy;
    uint8_t L[PG_QK_K], ls[8], lm[8];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        quant_affine_k_(x, 32, 31, 6, L, ls, lm, &y[i].d, &y[i].dmin);
        pack_k4_scales_(ls, lm, y[i].scales);
        memset(y[i].qh, 0, sizeof y[i].qh);
        for (int e = 0; e < PG_QK_K; e++) y[i].qh[e % 32] |= (uint8_t)((L[e] >> 4) << (e / 32));
        for (int e = 0; e < PG_QK_K; e += 64)
            for (int l = 0; l < 32; l++)
                y[i].qs[e / 2 + l] = (uint8_t)((L[e + l] & 0xF) | (L[e + l + 32] & 0xF) << 4);
    }
}

/* Q3_K, Q6_K: symmetric sub-blocks of 16 with L in -nmax..nmax-1, signed
 * scales as integers in -smax..smax-1 of a float super-scale d (returned). */
static float quant_symmetric_k_(const float *x, int nmax, int smax, int8_t *L, int8_t *ls) {
    float a[16], w[16];
    for (int s = 0; s < 16; s++) {
        fit_weights_(16, x + 16 * s, w);
        a[s] = fit_symmetric_(16, nmax, x + 16 * s, w);
    }
    float amax;
    const float amaxs = absmax_signed_(16, a, &amax);
    if (amax == 0) {
        memset(L, 0, PG_QK_K);
        memset(ls, 0, 16);
        return 0;
    }
    const float iscale = -smax / amaxs;
    const float d = h2f_(pg_f32_to_f16(1.0f / iscale));
    for (int s = 0; s < 16; s++) {
        ls[s] = (int8_t)round_clamp_(iscale * a[s], -smax, smax - 1);
        const float dl = d * ls[s], id = dl != 0 ? 1.0f / dl : 0.0f;
        for (int j = 0; j < 16; j++)
            L[16 * s + j] = (int8_t)(dl != 0 ? round_clamp_(x[16 * s + j] * id, -nmax, nmax - 1) : 0);
    }
    return d;
}

static void quant_q3_K_(int64_t nb, const float *x, void *vy) {
    block_q3_K *y = vy;
    int8_t L[PG_QK_K], ls[16];
    uint8_t U[PG_QK_K];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        y[i].d = pg_f32_to_f16(quant_symmetric_k_(x, 4, 32, L, ls));
        memset(y[i].scales, 0, 12);
        for (int s = 0; s < 16; s++) {
            const int l = ls[s] + 32;
            y[i].scales[s % 8] |= (uint8_t)((l & 0xF) << (4 * (s / 8)));
            y[i].scales[8 + s % 4] |= (uint8_t)((l >> 4) << (2 * (s / 4)));
        }
        memset(y[i].hmask, 0, sizeof y[i].hmask);
        for (int e = 0; e < PG_QK_K; e++) {
            U[e] = (uint8_t)(L[e] + 4);
            if (U[e] > 3) y[i].hmask[e % 32] |= (uint8_t)(1 << (e / 32));
        }
        pack_2bit_(U, y[i].qs);
    }
}

static void quant_q6_K_(int64_t nb, const float *x, void *vy) {
    block_q6_K *y = vy;
    int8_t L[PG_QK_K], ls[16];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        y[i].d = pg_f32_to_f16(quant_symmetric_k_(x, 32, 128, L, ls));
        memcpy(y[i].scales, ls, 16);
        for (int half = 0; half < 2; half++) {
            uint8_t *ql = y[i].ql + 64 * half, *qh = y[i].qh + 32 * half;
            for (int l = 0; l < 32; l++) {
                uint8_t u[4];
                for (int s = 0; s < 4; s++) u[s] = (uint8_t)(L[128 * half + 32 * s + l] + 32);
                ql[l] = (uint8_t)((u[0] & 0xF) | (u[2] & 0xF) << 4);
                ql[l + 32] = (uint8_t)((u[1] & 0xF) | (u[3] & 0xF) << 4);
                qh[l] = (uint8_t)((u[0] >> 4) | (u[1] >> 4) << 2 | (u[2] >> 4) << 4 | (u[3] >> 4) << 6);
            }
        }
    }
}

/* Ternary: d = max |x|, t = round(x / d) + 1 in 0..2. */
static float ternary_(const float *x, uint8_t *t) {
    float amax = 0;
    for (int j = 0; j < PG_QK_K; j++) amax = max_(amax, fabsf(x[j]));
    const float id = amax ? 1.0f / amax : 0.0f;
    for (int j = 0; j < PG_QK_K; j++) t[j] = (uint8_t)(round_clamp_(x[j] * id, -1, 1) + 1);
    return amax;
}

/* Packs k trits (most significant first) into a byte b with
 * digit i = ((uint8_t)(b * 3^i) * 3) >> 8: b = ceil(v * 256 / 243), v the
 * base-3 number padded to five digits. */
static uint8_t pack_trits_(const uint8_t *t, int k, int stride) {
    int v = 0;
    for (int i = 0; i < 5; i++) v = v * 3 + (i < k ? t[i * stride] : 0);
    return (uint8_t)((v * 256 + 242) / 243);
}

static void quant_tq1_0_(int64_t nb, const float *x, void *vy) {
    block_tq1_0 *y = vy;
    uint8_t t[PG_QK_K];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        y[i].d = pg_f32_to_f16(ternary_(x, t));
        /* element layout as unpack_tq1_0_ */
        for (int j = 0; j < 32; j++) y[i].qs[j] = pack_trits_(t + j, 5, 32);
        for (int j = 0; j < 16; j++) y[i].qs[32 + j] = pack_trits_(t + 160 + j, 5, 16);
        for (int j = 0; j < 4; j++) y[i].qh[j] = pack_trits_(t + 240 + j, 4, 4);
    }
}

static void quant_tq2_0_(int64_t nb, const float *x, void *vy) {
    block_tq2_0 *y = vy;
    uint8_t t[PG_QK_K];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        y[i].d = pg_f32_to_f16(ternary_(x, t));
        pack_2bit_(t, y[i].qs);
    }
}

/* MXFP4: a power-of-two scale per 32; of the two exponents that bring the
 * block's largest value near the top of the E2M1 range (6), keep the one
 * with the smaller squared error. */
static void quant_mxfp4_(int64_t nb, const float *x, void *vy) {
    block_mxfp4 *y = vy;
    static const int8_t pos[16] = {0, 1, 2, 3, 4, 6, 8, 12, 12, 12, 12, 12, 12, 12, 12, 12};
    for (int64_t i = 0; i < nb; i++, x += 32) {
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = max_(amax, fabsf(x[j]));
        memset(&y[i], 0, sizeof y[i]);
        if (!(amax > 0) || !isfinite(amax)) continue;
        /* 2^(e-127) * 6 >= amax for e = floor(log2 amax) - 2 + 127 + {0, 1} */
        const int e0 = (int)floorf(log2f(amax)) - 2 + 127;
        float best = INFINITY;
        for (int e = e0; e <= e0 + 1; e++) {
            if (e < 0 || e > 254) continue;
            const float d = pg_e8m0_to_f32_half((uint8_t)e), id = 1.0f / d;
            uint8_t q[32];
            float err = 0;
            for (int j = 0; j < 32; j++) {
                const int k0 = nearest_index_(pos, fabsf(x[j]) * id), k = k0 > 7 ? 7 : k0;
                q[j] = (uint8_t)(k | (x[j] < 0 && k ? 8 : 0));
                const float r = pg_kvalues_mxfp4[q[j]] * d - x[j];
                err += r * r;
            }
            if (err < best) {
                best = err;
                y[i].e = (uint8_t)e;
                for (int j = 0; j < 16; j++) y[i].qs[j] = (uint8_t)(q[j] | q[j + 16] << 4);
            }
        }
    }
}

static void quant_iq4_nl_(int64_t nb, const float *x, void *vy) {
    block_iq4_nl *y = vy;
    float w[32];
    for (int64_t i = 0; i < nb; i++, x += 32) {
        fit_weights_(32, x, w);
        y[i].d = pg_f32_to_f16(fit_grid_(32, pg_kvalues_iq4nl, x, w));
        const float d = h2f_(y[i].d), id = d != 0 ? 1.0f / d : 0.0f;
        for (int j = 0; j < 16; j++)
            y[i].qs[j] = (uint8_t)(nearest_index_(pg_kvalues_iq4nl, x[j] * id) |
                                   nearest_index_(pg_kvalues_iq4nl, x[j + 16] * id) << 4);
    }
}

static void quant_iq4_xs_(int64_t nb, const float *x, void *vy) {
    block_iq4_xs *y = vy;
    float a[8], w[32];
    for (int64_t i = 0; i < nb; i++, x += PG_QK_K) {
        for (int ib = 0; ib < 8; ib++) {
            fit_weights_(32, x + 32 * ib, w);
            a[ib] = fit_grid_(32, pg_kvalues_iq4nl, x + 32 * ib, w);
        }
        float amax;
        const float amaxs = absmax_signed_(8, a, &amax);
        const uint16_t dh = pg_f32_to_f16(amax ? -amaxs / 32 : 0.0f);
        const float d = h2f_(dh), id = d != 0 ? 1.0f / d : 0.0f;
        y[i].d = dh;
        y[i].scales_h = 0;
        memset(y[i].scales_l, 0, sizeof y[i].scales_l);
        for (int ib = 0; ib < 8; ib++) {
            const int l = round_clamp_(a[ib] * id, -32, 31);
            const int ls = l + 32;
            y[i].scales_l[ib / 2] |= (uint8_t)((ls & 0xF) << (4 * (ib % 2)));
            y[i].scales_h |= (uint16_t)((ls >> 4) << (2 * ib));
            const float dl = d * l, idl = dl != 0 ? 1.0f / dl : 0.0f;
            const float *xb = x + 32 * ib;
            for (int j = 0; j < 16; j++)
                y[i].qs[16 * ib + j] = (uint8_t)(nearest_index_(pg_kvalues_iq4nl, xb[j] * idl) |
                                                 nearest_index_(pg_kvalues_iq4nl, xb[j + 16] * idl) << 4);
        }
    }
}

/* ---- float types and the table ----------------------------------------------------------- */

static void dequant_f32_(int64_t n, const void *x, float *y) { memcpy(y, x, (size_t)n * 4); }
static void dequant_f16_(int64_t n, const void *x, float *y) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = pg_f16_to_f32(h[i]);
}
static void dequant_bf16_(int64_t n, const void *x, float *y) {
    const uint16_t *h = x;
    for (int64_t i = 0; i < n; i++) y[i] = pg_bf16_to_f32(h[i]);
}
static void quant_f32_(int64_t n, const float *x, void *y) { memcpy(y, x, (size_t)n * 4); }
static void quant_f16_(int64_t n, const float *x, void *y) {
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = pg_f32_to_f16(x[i]);
}
static void quant_bf16_(int64_t n, const float *x, void *y) {
    uint16_t *h = y;
    for (int64_t i = 0; i < n; i++) h[i] = pg_f32_to_bf16(x[i]);
}

static void dequant_q2_K_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_q2_K), unpack_q2_K_, y); }
static void dequant_q3_K_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_q3_K), unpack_q3_K_, y); }
static void dequant_q4_K_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_q4_K), unpack_q4_K_, y); }
static void dequant_q5_K_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_q5_K), unpack_q5_K_, y); }
static void dequant_q6_K_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_q6_K), unpack_q6_K_, y); }
static void dequant_tq1_0_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_tq1_0), unpack_tq1_0_, y); }
static void dequant_tq2_0_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_tq2_0), unpack_tq2_0_, y); }
static void dequant_iq4_xs_(int64_t nb, const void *x, float *y) { dequant_k_(nb, x, sizeof(block_iq4_xs), unpack_iq4_xs_, y); }
static void dequant_q8_K_(int64_t nb, const void *vx, float *y) {
    const block_q8_K *x = vx;
    for (int64_t i = 0; i < nb; i++)
        for (int j = 0; j < PG_QK_K; j++) y[i * PG_QK_K + j] = x[i].d * x[i].qs[j];
}

/* Per type: block to float, float to block (counts are in blocks), and the
 * activation type of its dot product. */
typedef struct {
    void (*to_float)(int64_t nb, const void *x, float *y);
    void (*from_float)(int64_t nb, const float *x, void *y);
    pg_type vec_dot_type;
} qtraits_;

static const qtraits_ qtraits_tab_[PG_TYPE_COUNT] = {
    [PG_TYPE_F32] = {dequant_f32_, quant_f32_, PG_TYPE_F32},
    [PG_TYPE_F16] = {dequant_f16_, quant_f16_, PG_TYPE_F32},
    [PG_TYPE_BF16] = {dequant_bf16_, quant_bf16_, PG_TYPE_F32},
    [PG_TYPE_Q4_0] = {dequant_q4_0_, quant_q4_0_, PG_TYPE_Q8_0},
    [PG_TYPE_Q4_1] = {dequant_q4_1_, quant_q4_1_, PG_TYPE_Q8_1},
    [PG_TYPE_Q5_0] = {dequant_q5_0_, quant_q5_0_, PG_TYPE_Q8_0},
    [PG_TYPE_Q5_1] = {dequant_q5_1_, quant_q5_1_, PG_TYPE_Q8_1},
    [PG_TYPE_Q8_0] = {dequant_q8_0_, quant_q8_0_, PG_TYPE_Q16_0},
    [PG_TYPE_Q16_0] = {dequant_q16_0_, quant_q16_0_, PG_TYPE_F32},
    [PG_TYPE_Q8_1] = {dequant_q8_1_, quant_q8_1_, PG_TYPE_F32},
    [PG_TYPE_Q2_K] = {dequant_q2_K_, quant_q2_K_, PG_TYPE_Q8_K},
    [PG_TYPE_Q3_K] = {dequant_q3_K_, quant_q3_K_, PG_TYPE_Q8_K},
    [PG_TYPE_Q4_K] = {dequant_q4_K_, quant_q4_K_, PG_TYPE_Q8_K},
    [PG_TYPE_Q5_K] = {dequant_q5_K_, quant_q5_K_, PG_TYPE_Q8_K},
    [PG_TYPE_Q6_K] = {dequant_q6_K_, quant_q6_K_, PG_TYPE_Q8_K},
    [PG_TYPE_Q8_K] = {dequant_q8_K_, quant_q8_K_, PG_TYPE_F32},
    [PG_TYPE_TQ1_0] = {dequant_tq1_0_, quant_tq1_0_, PG_TYPE_Q8_K},
    [PG_TYPE_TQ2_0] = {dequant_tq2_0_, quant_tq2_0_, PG_TYPE_Q8_K},
    [PG_TYPE_MXFP4] = {dequant_mxfp4_, quant_mxfp4_, PG_TYPE_Q8_0},
    [PG_TYPE_IQ4_NL] = {dequant_iq4_nl_, quant_iq4_nl_, PG_TYPE_Q8_0},
    [PG_TYPE_IQ4_XS] = {dequant_iq4_xs_, quant_iq4_xs_, PG_TYPE_Q8_K},
};

static const qtraits_ *qtraits_of_(pg_type t) {
    return t >= 0 && t < PG_TYPE_COUNT && qtraits_tab_[t].to_float ? &qtraits_tab_[t] : NULL;
}

pg_type pg_vec_dot_type(pg_type t) {
    const qtraits_ *q = qtraits_of_(t);
    return q ? q->vec_dot_type : PG_TYPE_F32;
}

void pg_dequantize_row_ref(pg_type t, int64_t n, const void *x, float *y) {
    const qtraits_ *q = qtraits_of_(t);
    const pg_type_traits *tt = pg_type_info(t);
    PG_ASSERT(q && tt && n >= 0 && n % tt->blck == 0);
    q->to_float(n / tt->blck, x, y);
}

void pg_quantize_row_ref(pg_type t, int64_t n, const float *x, void *y) {
    const qtraits_ *q = qtraits_of_(t);
    const pg_type_traits *tt = pg_type_info(t);
    PG_ASSERT(q && tt && n >= 0 && n % tt->blck == 0);
    q->from_float(n / tt->blck, x, y);
}
