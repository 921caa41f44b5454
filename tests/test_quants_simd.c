/* test_quants_simd.c - the SIMD quantized kernels (avx2_quants.c,
 * avx512_quants.c without and with VNNI) against the scalar references, for
 * every kernel variant this CPU runs: scalar, avx2, avx512 without VNNI
 * (PREGATE_VNNI=0) and avx512 with VNNI.
 *
 * Weights are quantized floats, blocks of random bytes (every bit pattern,
 * scales made finite) and edge blocks (make_weights_); activations are
 * Gaussian, all +-127 (the int16 limits of maddubs), zero, tiny and large. Rows of 1, 3, 7, 33 and 128/1024 blocks;
 * weight rows start at an odd address where the block allows it.
 *
 * Expectations:
 *  - 256-element formats (Q2_K..Q6_K, TQ1_0, TQ2_0, IQ4_XS): bit-identical
 *    to the reference (exact integer sum per block, same float steps).
 *  - 32-element formats: the integer part of each block is exact; float
 *    sums differ in order (8 or 16 lanes per block, scaled then added):
 *    |simd - ref| <= 2 (nb + 16) eps M + nb 2^-140, M = sum_b |d_b| sum_j
 *    |qw_j qx_j| (+ |m_b| (sum_j |x_j| + |s_b|) for Q4_1/Q5_1), bounded here
 *    from the dequantized rows; the last term covers subnormal products.
 *    test_kernels.c uses the same bound for Q8_0.
 *  - quantize_q8_1 / quantize_q8_K: bit-identical, including ties, signed
 *    ties of the largest magnitude, subnormals, and (Q8_1) NaN and inf.
 *  - pg_matmul of every variant equals pg_matmul_ref bit for bit for the
 *    256-element formats, within the bound above for the others.
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "test.h"
#include "threadpool.h"
#include "util.h"

static const double EPS = 5.9604644775390625e-08; /* 2^-24 */

static double rnd_unit(void) { return (double)(test_rng_u64() >> 11) / 9007199254740992.0; }
static float gauss(void) {
    double u = rnd_unit() + 1e-300, v = rnd_unit();
    return (float)(sqrt(-2.0 * log(u)) * cos(2 * M_PI * v));
}

/* ---- kernel variants ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    pg_isa isa;
    int novnni;
} variant;

static const variant VARIANTS[] = {
    {"scalar", PG_ISA_SCALAR, 0},
    {"avx2", PG_ISA_AVX2, 0},
    {"avx512-novnni", PG_ISA_AVX512, 1},
    {"avx512", PG_ISA_AVX512, 0},
};
#define NVARIANTS (int)(sizeof VARIANTS / sizeof VARIANTS[0])

/* Selects variant v; 0 if this CPU (or PREGATE_ISA) does not run it, or it
 * would repeat another (avx512 without VNNI on a CPU that has none). */
static int variant_init(int v) {
    if (VARIANTS[v].novnni) setenv("PREGATE_VNNI", "0", 1);
    else unsetenv("PREGATE_VNNI");
    const pg_isa got = pg_kernels_init(VARIANTS[v].isa);
    unsetenv("PREGATE_VNNI");
    if (got != VARIANTS[v].isa) return 0;
    if (VARIANTS[v].isa == PG_ISA_AVX512 && !VARIANTS[v].novnni && !pgk.vnni) return 0;
    return 1;
}

/* ---- formats -------------------------------------------------------------------------- */

/* Each weight format, whether its SIMD dots are bit-identical to the
 * reference, and where its half-float scales sit in a block (-1: none). */
static const struct {
    pg_type t;
    int exact;
    int d_off, m_off;
} FORMATS[] = {
    {PG_TYPE_Q4_0, 0, offsetof(block_q4_0, d), -1},
    {PG_TYPE_Q4_1, 0, offsetof(block_q4_1, d), offsetof(block_q4_1, m)},
    {PG_TYPE_Q5_0, 0, offsetof(block_q5_0, d), -1},
    {PG_TYPE_Q5_1, 0, offsetof(block_q5_1, d), offsetof(block_q5_1, m)},
    {PG_TYPE_Q8_0, 0, offsetof(block_q8_0, d), -1},
    {PG_TYPE_MXFP4, 0, -1, -1},
    {PG_TYPE_IQ4_NL, 0, offsetof(block_iq4_nl, d), -1},
    {PG_TYPE_Q2_K, 1, offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)},
    {PG_TYPE_Q3_K, 1, offsetof(block_q3_K, d), -1},
    {PG_TYPE_Q4_K, 1, offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)},
    {PG_TYPE_Q5_K, 1, offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)},
    {PG_TYPE_Q6_K, 1, offsetof(block_q6_K, d), -1},
    {PG_TYPE_TQ1_0, 1, offsetof(block_tq1_0, d), -1},
    {PG_TYPE_TQ2_0, 1, offsetof(block_tq2_0, d), -1},
    {PG_TYPE_IQ4_XS, 1, offsetof(block_iq4_xs, d), -1},
};
#define NFORMATS (int)(sizeof FORMATS / sizeof FORMATS[0])

static int blck_(pg_type t) { return pg_type_info(t)->blck; }
static size_t bsize_(pg_type t) { return pg_type_info(t)->type_size; }

/* Alignment of the block struct: 1 for MXFP4 (all bytes), else 2 (halves). */
static size_t balign_(pg_type t) { return t == PG_TYPE_MXFP4 ? 1 : 2; }

static void put_half_(uint8_t *blk, int off, uint16_t h) {
    if (off >= 0) memcpy(blk + off, &h, 2);
}

/* A random finite half of magnitude 2^-12 .. 2^3, either sign. */
static uint16_t rnd_half_(void) {
    const float v = (float)ldexp(1.0 + rnd_unit(), (int)(test_rng_u64() % 16) - 12);
    return pg_f32_to_f16(test_rng_u64() & 1 ? -v : v);
}

/* Weight rows, by kind:
 *  0 quantized Gaussian floats (scales varying per block)
 *  1 random bytes, scales random finite halves
 *  2 edge blocks in turn: zero; zero scale; all bits set (Q6_K: scales
 *    127 and -128); the largest half; the smallest subnormal half; bytes
 *    0x88; -2^-14; bytes 0x80 (Q8_0: all -128); bytes 0 (IQ4: all -127).
 *    MXFP4 exponents 0, 1, 127, 200 among them. */
enum { W_QUANT, W_BYTES, W_EDGE, W_KINDS };

static void make_weights_(int fi, int kind, int nb, float *tmp, uint8_t *w) {
    const pg_type t = FORMATS[fi].t;
    const int b = blck_(t);
    const size_t bs = bsize_(t);
    if (kind == W_QUANT) {
        for (int i = 0; i < nb * b; i++) {
            const int blk = i / b;
            tmp[i] = gauss() * (blk % 3 == 0 ? 1.0f : blk % 3 == 1 ? 0.01f : 30.0f) + (blk % 4 == 3 ? 0.3f : 0);
        }
        pg_quantize_row_ref(t, nb * b, tmp, w);
        return;
    }
    for (int k = 0; k < nb; k++) {
        uint8_t *blk = w + (size_t)k * bs;
        for (size_t j = 0; j < bs; j++) blk[j] = (uint8_t)test_rng_u64();
        uint16_t d = rnd_half_(), m = rnd_half_();
        uint8_t e = (uint8_t)(110 + test_rng_u64() % 30);
        if (kind == W_EDGE) {
            switch (k % 9) {
            case 0: memset(blk, 0, bs), d = m = 0, e = 0; break;
            case 1: d = 0, m = 0, e = 0; break;
            case 2:
                memset(blk, 0xFF, bs), d = 0x3C00, m = 0xBC00, e = 127;
                if (t == PG_TYPE_Q6_K)
                    for (int s = 0; s < 16; s++) ((block_q6_K *)blk)->scales[s] = (int8_t)(s % 2 ? -128 : 127);
                break;
            case 3: d = 0x7BFF, m = 0xFBFF, e = 200; break; /* +-65504, 2^72 */
            case 4: d = 0x0001, m = 0x8001, e = 1; break;   /* +-2^-24 */
            case 5: memset(blk, 0x88, bs), d = 0xFBFF; break;
            case 6: d = 0x8400, e = 0; break; /* -2^-14 */
            case 7: memset(blk, 0x80, bs), d = 0x3C00, e = 128; break;
            case 8: memset(blk, 0, bs), d = 0xBC00, m = 0x3C00, e = 126; break;
            }
        }
        if (t == PG_TYPE_MXFP4) blk[0] = e;
        put_half_(blk, FORMATS[fi].d_off, d);
        put_half_(blk, FORMATS[fi].m_off, m);
    }
}

/* Activation rows: 0 Gaussian of varying scale, 1 all +-127 (+-1 in a
 * pattern; the int16 limits of maddubs), 2 zero, 3 tiny (1e-30: Q8_0's half
 * scale underflows to 0, Q8_K's float one does not), 4 large (1e5, as far
 * as Q8_0's half scale reaches). */
enum { X_GAUSS, X_EXTREME, X_ZERO, X_TINY, X_LARGE, X_KINDS };

static void make_x_(int kind, int n, float *x) {
    for (int i = 0; i < n; i++) {
        switch (kind) {
        case X_GAUSS: x[i] = gauss() * (float)(1 + (i / 32) % 5); break;
        case X_EXTREME: x[i] = ((i / 16) % 2 ? -1.0f : 1.0f) * ((i / 7) % 3 ? 1.0f : -1.0f); break;
        case X_ZERO: x[i] = 0; break;
        case X_TINY: x[i] = gauss() * 1e-30f; break;
        case X_LARGE: x[i] = gauss() * 1e5f; break;
        }
    }
}

/* The bound of the header for the 32-element formats. */
static double dot_tol_(pg_type t, int n, const void *w, const void *xq, float *wd, float *xd) {
    const pg_type vt = pg_vec_dot_type(t);
    pg_dequantize_row_ref(t, n, w, wd);
    pg_dequantize_row_ref(vt, n, xq, xd);
    const int nb = n / blck_(t);
    double M = 0;
    for (int i = 0; i < n; i++) M += fabs((double)wd[i] * xd[i]);
    if (t == PG_TYPE_Q4_1 || t == PG_TYPE_Q5_1) {
        const block_q8_1 *x = xq;
        for (int b = 0; b < nb; b++) {
            const uint16_t m = t == PG_TYPE_Q4_1 ? ((const block_q4_1 *)w)[b].m : ((const block_q5_1 *)w)[b].m;
            double sx = fabs(pg_f16_to_f32(x[b].s));
            for (int j = 0; j < 32; j++) sx += fabs(xd[32 * b + j]);
            M += fabs(pg_f16_to_f32(m)) * sx;
        }
    }
    return 2.0 * (nb + 16) * EPS * M + nb * ldexp(1.0, -140);
}

static int same_(float a, float b) { return memcmp(&a, &b, 4) == 0; }

static void test_dots(void) {
    static const int NBLOCKS_K[] = {1, 3, 7, 33, 128};   /* 256-element formats */
    static const int NBLOCKS_32[] = {1, 3, 7, 33, 1024}; /* 32-element formats: the same large row */
    const int NMAX = 128 * 256;
    float *xf = xmalloc(NMAX * 4), *tmp = xmalloc(NMAX * 4), *wd = xmalloc(NMAX * 4), *xd = xmalloc(NMAX * 4);
    /* weights <= 36 / 32 bytes per element, activations <= 68 / 32 (Q16_0) */
    uint8_t *wbuf = xmalloc(NMAX * 2 + 64), *xbuf = xmalloc(NMAX * 3 + 64);
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type t = FORMATS[fi].t, vt = pg_vec_dot_type(t);
        const int is_k = blck_(t) == PG_QK_K;
        uint8_t *w = wbuf + balign_(t);        /* odd (or 2 mod 4) addresses */
        void *xq = xbuf + (vt == PG_TYPE_Q8_K || vt == PG_TYPE_Q16_0 ? 4 : 2); /* float or half scales */
        int worst_ulps = 0, checked = 0, bad = 0;
        double worst_rel = 0;
        for (int v = 0; v < NVARIANTS; v++) {
            if (!variant_init(v)) continue;
            const pg_dot_fn dot = pgk.dot[t];
            CHECK(dot != NULL, "%s: no %s dot", VARIANTS[v].name, pg_type_name(t));
            if (!dot) continue;
            uint64_t seed = 0x1234567u + (uint64_t)fi * 7919u;
            for (int si = 0; si < 5; si++) {
                const int nb = is_k ? NBLOCKS_K[si] : NBLOCKS_32[si], n = nb * blck_(t);
                for (int wk = 0; wk < W_KINDS; wk++)
                    for (int xk = 0; xk < X_KINDS; xk++) {
                        /* the same data for every variant */
                        test_rng_state = seed++;
                        make_weights_(fi, wk, nb, tmp, w);
                        make_x_(xk, n, xf);
                        pg_quantize_row_ref(vt, n, xf, xq);
                        const float r = pg_dot_ref(t)(n, w, xq), s = dot(n, w, xq);
                        checked++;
                        int ok;
                        if (same_(r, s)) {
                            ok = 1;
                        } else if (FORMATS[fi].exact && v > 0) {
                            ok = 0;
                        } else {
                            const double tol = dot_tol_(t, n, w, xq, wd, xd);
                            ok = isfinite(r) && isfinite(s) && fabs((double)s - r) <= tol;
                            if (ok && tol > 0 && fabs((double)s - r) / tol > worst_rel) worst_rel = fabs((double)s - r) / tol;
                            int32_t ir, is;
                            memcpy(&ir, &r, 4), memcpy(&is, &s, 4);
                            if (ok && abs(ir - is) > worst_ulps) worst_ulps = abs(ir - is);
                        }
                        if (!ok && bad++ < 5)
                            fprintf(stderr, "  %s %s nb=%d weights %d x %d: %.9g, ref %.9g\n", VARIANTS[v].name,
                                    pg_type_name(t), nb, wk, xk, s, r);
                    }
            }
        }
        CHECK(bad == 0, "%s: %d of %d dots off (%s)", pg_type_name(t), bad, checked,
              FORMATS[fi].exact ? "bit-identical expected" : "tolerance");
        fprintf(stderr, "  %-7s %4d dots, %s", pg_type_name(t), checked,
                FORMATS[fi].exact ? "bit-identical to the reference\n" : "");
        if (!FORMATS[fi].exact) fprintf(stderr, "worst %d ulp, %.3f of the bound\n", worst_ulps, worst_rel);
    }
    pg_kernels_init(-1);
    free(xf), free(tmp), free(wd), free(xd), free(wbuf), free(xbuf);
}

/* ---- activation quantizers -------------------------------------------------------------- */

static void fill_x_mode_(float *x, int n, int mode) {
    for (int i = 0; i < n; i++) {
        switch (mode) {
        case 0: x[i] = gauss() * (float)ldexp(1.0, (int)((i / 32) % 9) - 4); break;
        case 1: x[i] = (float)((int)(test_rng_u64() % 255) - 127) * 0.5f; break; /* ties at amax 127 */
        case 2: x[i] = (float)((int)(test_rng_u64() % 9) - 4); break;            /* many equal magnitudes */
        case 3: x[i] = gauss() * 1e-41f; break;                              /* subnormal */
        case 4: x[i] = gauss() * 1e30f; break;
        case 5: x[i] = i % 97 == 0 ? gauss() : 0.0f; break;                  /* mostly zero */
        }
    }
}

static void test_activation_quantizers(void) {
    const int n = 33 * 256;
    float *x = xmalloc((n + 1) * 4);
    block_q8_1 *a1 = xmalloc(n / 32 * sizeof *a1), *b1 = xmalloc(n / 32 * sizeof *b1);
    block_q8_K *aK = xmalloc(n / 256 * sizeof *aK), *bK = xmalloc(n / 256 * sizeof *bK);
    for (int mode = 0; mode < 8; mode++) {
        float *xx = x + 1; /* unaligned */
        if (mode < 6) {
            fill_x_mode_(xx, n, mode);
        } else {
            /* signed ties of the largest magnitude (the first one sets the
             * sign of the Q8_K scale), exact halves after scaling */
            fill_x_mode_(xx, n, 1);
            for (int b = 0; b < n / 256; b++) {
                const int i0 = 256 * b + (int)(test_rng_u64() % 128), i1 = i0 + 1 + (int)(test_rng_u64() % 127);
                xx[i0] = (b % 2 ? 80.0f : -80.0f);
                xx[i1] = -xx[i0];
            }
            if (mode == 7) { /* Q8_1 only: NaN and inf are defined there */
                xx[5] = NAN, xx[40] = INFINITY, xx[77] = -INFINITY, xx[100] = NAN;
            }
        }
        pg_quantize_q8_1_ref(n, xx, a1);
        if (mode < 7) pg_quantize_q8_K_ref(n, xx, aK);
        for (int v = 1; v < NVARIANTS; v++) {
            if (!variant_init(v)) continue;
            memset(b1, 0x55, n / 32 * sizeof *b1);
            memset(bK, 0x55, n / 256 * sizeof *bK);
            pgk.quantize_q8_1(n, xx, b1);
            CHECK(memcmp(a1, b1, n / 32 * sizeof *a1) == 0, "%s quantize_q8_1 mode %d differs",
                  VARIANTS[v].name, mode);
            if (mode < 7) {
                pgk.quantize_q8_K(n, xx, bK);
                CHECK(memcmp(aK, bK, n / 256 * sizeof *aK) == 0, "%s quantize_q8_K mode %d differs",
                      VARIANTS[v].name, mode);
            }
        }
    }
    /* every whole-block count from 1 */
    for (int nb = 1; nb <= 9; nb++) {
        fill_x_mode_(x, nb * 256, 0);
        pg_quantize_q8_K_ref(nb * 256, x, aK);
        pg_quantize_q8_1_ref(nb * 32, x, a1);
        for (int v = 1; v < NVARIANTS; v++) {
            if (!variant_init(v)) continue;
            pgk.quantize_q8_K(nb * 256, x, bK);
            pgk.quantize_q8_1(nb * 32, x, b1);
            CHECK(memcmp(aK, bK, nb * sizeof *aK) == 0, "%s quantize_q8_K nb=%d", VARIANTS[v].name, nb);
            CHECK(memcmp(a1, b1, nb * sizeof *a1) == 0, "%s quantize_q8_1 nb=%d", VARIANTS[v].name, nb);
        }
    }
    pg_kernels_init(-1);
    free(x), free(a1), free(b1), free(aK), free(bK);
}

/* ---- matmul ------------------------------------------------------------------------------ */

static void test_matmul(void) {
    pg_pool *pool = pg_pool_new(2);
    const int rows = 19, T = 3;
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type t = FORMATS[fi].t;
        const int cols = 3 * (blck_(t) == PG_QK_K ? 256 : 64);
        const size_t rb = pg_row_bytes(t, cols);
        uint8_t *W = xmalloc(rb * rows);
        float *tmp = xmalloc((size_t)cols * 4), *X = xmalloc((size_t)T * cols * 4);
        float *Y = xmalloc((size_t)T * rows * 4), *Yr = xmalloc((size_t)T * rows * 4);
        float *wd = xmalloc((size_t)cols * 4), *xd = xmalloc((size_t)cols * 4);
        test_rng_state = 0xabcdef12u + (uint64_t)fi;
        for (int r = 0; r < rows; r++) make_weights_(fi, r % 2 ? W_BYTES : W_QUANT, cols / blck_(t), tmp, W + rb * r);
        for (int i = 0; i < T * cols; i++) X[i] = gauss();
        pg_mat M = {.type = t, .rows = rows, .cols = cols, .row_bytes = rb, .data = W};
        pg_matmul_ref(&M, T, X, cols, Yr, rows);
        const pg_type vt = pg_vec_dot_type(t);
        void *xq = xmalloc(pg_row_bytes(vt, cols));
        for (int v = 0; v < NVARIANTS; v++) {
            if (!variant_init(v)) continue;
            pg_matmul(pool, &M, T, X, cols, Y, rows, NULL);
            int bad = 0;
            for (int tt = 0; tt < T; tt++) {
                pg_quantize_row_ref(vt, cols, X + (size_t)tt * cols, xq);
                for (int r = 0; r < rows; r++) {
                    const float a = Y[tt * rows + r], b = Yr[tt * rows + r];
                    if (same_(a, b)) continue;
                    if (FORMATS[fi].exact) bad++;
                    else bad += !(fabs((double)a - b) <= dot_tol_(t, cols, W + rb * r, xq, wd, xd));
                }
            }
            CHECK(bad == 0, "%s %s: %d of %d matmul outputs differ from pg_matmul_ref", VARIANTS[v].name,
                  pg_type_name(t), bad, T * rows);
        }
        free(xq), free(W), free(tmp), free(X), free(Y), free(Yr), free(wd), free(xd);
    }
    pg_kernels_init(-1);
    pg_pool_free(pool);
}

static void test_variants(void) {
    int n = 0;
    for (int v = 0; v < NVARIANTS; v++)
        if (variant_init(v)) fprintf(stderr, "%s%s", n++ ? ", " : "  variants: ", VARIANTS[v].name);
    fprintf(stderr, "\n");
    pg_kernels_init(-1);
    CHECK(n >= 1, "at least the scalar variant runs");
}

int main(void) {
    test_rng_state = 0x853c49e6748fea9bull;
    TEST_RUN(test_variants);
    TEST_RUN(test_dots);
    TEST_RUN(test_activation_quantizers);
    TEST_RUN(test_matmul);
    return test_summary("test_quants_simd");
}
