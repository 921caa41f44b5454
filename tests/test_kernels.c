/* test_kernels.c - every kernel table entry, for every ISA this CPU has,
 * against its scalar reference; the references and the drivers (matmul,
 * attention, rope) against straightforward double-precision computations.
 *
 * Tolerances (eps = 2^-24 ~ 6e-8, float rounding):
 *  - float dot products: |simd - ref| <= 1e-5 * sqrt(n) * sum|w_i x_i|
 *    (the SIMD versions sum in float with another order; the reference sums
 *    in double). The actual error is ~ sqrt(n) * eps * sum|w_i x_i|.
 *  - Q8_0 dot: the integer products are exact, so SIMD and reference
 *    differ only in float summation order (the SIMD versions scale 8- or
 *    16-lane partial sums of each block, then add):
 *    |simd - ref| <= 2 (nb + 16) eps sum_b d_b sum_j |qw_j qx_j|.
 *  - quantize_q8_0, f16/bf16 -> f32: bit-identical to the reference.
 *  - rmsnorm, softmax, silu_mul (vector exp, ~1-2 ulp): relative 1e-5 per
 *    element (plus a tiny absolute floor for values that underflow).
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"
#include "test.h"
#include "threadpool.h"
#include "util.h"

static const double EPS = 5.9604644775390625e-08; /* 2^-24 */

static void fill(float *x, int n, float scale) {
    for (int i = 0; i < n; i++) x[i] = test_rnd() * scale;
}

static const int SIZES[] = {0, 1, 3, 17, 31, 33, 63, 100, 257, 1000, 4099};
#define NSIZES (int)(sizeof SIZES / sizeof SIZES[0])
static const int QBLOCKS[] = {1, 2, 3, 4, 5, 7, 33, 128, 129};
#define NQBLOCKS (int)(sizeof QBLOCKS / sizeof QBLOCKS[0])

/* Every level up to the best this CPU has (PREGATE_ISA may cap it). */
static int n_isas(void) { return (int)pg_kernels_init(-1) + 1; }

static int same_float(float a, float b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return memcmp(&a, &b, 4) == 0;
}

/* ---- dot products ---------------------------------------------------------------- */

static void test_dot_float_types(void) {
    const int NMAX = 4099 + 8;
    float *x = xmalloc(NMAX * sizeof(float)), *wf = xmalloc(NMAX * sizeof(float));
    uint16_t *wh = xmalloc(NMAX * 2), *wb = xmalloc(NMAX * 2);
    for (int isa = 0; isa < n_isas(); isa++) {
        CHECK(pg_kernels_init(isa) == (pg_isa)isa, "isa %d", isa);
        for (int si = 0; si < NSIZES; si++) {
            const int n = SIZES[si];
            /* offset 1 element: unaligned loads */
            float *xx = x + 1, *ww = wf + 1;
            fill(xx, n, 1.0f);
            fill(ww, n, 2.0f);
            for (int i = 0; i < n; i++) {
                wh[i + 1] = pg_f32_to_f16(ww[i]);
                wb[i + 1] = pg_f32_to_bf16(ww[i]);
            }
            for (int k = 0; k < 3; k++) {
                const pg_type t = k == 0 ? PG_TYPE_F32 : k == 1 ? PG_TYPE_F16 : PG_TYPE_BF16;
                const void *w = k == 0 ? (const void *)ww : k == 1 ? (const void *)(wh + 1) : (const void *)(wb + 1);
                pg_dot_fn ref = k == 0 ? pg_dot_f32_ref : k == 1 ? pg_dot_f16_ref : pg_dot_bf16_ref;
                double exact = 0, mag = 0;
                for (int i = 0; i < n; i++) {
                    double wi = k == 0 ? ww[i] : k == 1 ? pg_f16_to_f32(wh[i + 1]) : pg_bf16_to_f32(wb[i + 1]);
                    exact += wi * xx[i];
                    mag += fabs(wi * xx[i]);
                }
                const float r = ref(n, w, xx), s = pgk.dot[t](n, w, xx);
                /* the reference sums in double: within one float rounding of exact */
                CHECK(fabs(r - exact) <= 2 * EPS * fabs(exact) + 1e-300, "%s ref n=%d: %g vs %g",
                      pg_type_name(t), n, r, exact);
                const double tol = 1e-5 * sqrt((double)n) * mag;
                CHECK(fabs((double)s - r) <= tol, "%s %s n=%d: %.9g vs ref %.9g (tol %g)",
                      pg_isa_name(pgk.isa), pg_type_name(t), n, s, r, tol);
            }
        }
    }
    free(x);
    free(wf);
    free(wh);
    free(wb);
}

static void test_dot_q8_0(void) {
    const int NMAX = 129 * 32;
    float *xw = xmalloc(NMAX * sizeof(float)), *xx = xmalloc(NMAX * sizeof(float));
    block_q8_0 *qw = xmalloc((NMAX / 32 + 1) * sizeof(block_q8_0));
    block_q16_0 *qx = xmalloc((NMAX / 32 + 1) * sizeof(block_q16_0)); /* Q8_0's activations (quants.h) */
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int bi = 0; bi < NQBLOCKS; bi++) {
            const int nb = QBLOCKS[bi], n = nb * 32;
            fill(xw, n, 3.0f);
            fill(xx, n, 0.5f);
            if (nb > 2) memset(xw + 32, 0, 32 * sizeof(float)); /* an all-zero block: d = 0 */
            pg_quantize_q8_0_ref(n, xw, qw);
            pg_quantize_q16_0_ref(n, xx, qx);
            double exact = 0, mag = 0;
            for (int b = 0; b < nb; b++) {
                int sumi = 0, sumabs = 0;
                for (int j = 0; j < 32; j++) {
                    sumi += qw[b].qs[j] * qx[b].qs[j];
                    sumabs += abs(qw[b].qs[j] * qx[b].qs[j]);
                }
                const double d = (double)pg_f16_to_f32(qw[b].d) * qx[b].d;
                exact += sumi * d;
                mag += sumabs * d;
            }
            const float r = pg_dot_q8_0_ref(n, qw, qx), s = pgk.dot[PG_TYPE_Q8_0](n, qw, qx);
            /* the SIMD versions scale partial sums of a block (8 or 16 lanes) before adding
             * them, so bound by the absolute products: 2 (nb + 16) eps sum_b d_b sum_j |qw qx| */
            const double tol = 2 * (nb + 16) * EPS * mag + 1e-30;
            CHECK(fabs(r - exact) <= tol, "q8_0 ref nb=%d: %.9g vs %.9g", nb, r, exact);
            CHECK(fabs((double)s - r) <= tol, "%s q8_0 nb=%d: %.9g vs ref %.9g (tol %g)",
                  pg_isa_name(pgk.isa), nb, s, r, tol);
        }
    }
    free(xw);
    free(xx);
    free(qw);
    free(qx);
}

/* ---- quantize ------------------------------------------------------------------ */

static void test_quantize_q8_0_known(void) {
    float x[64] = {0};
    /* block 0: amax 127 -> d = 1 exactly; roundf ties go away from zero */
    x[0] = 127.0f; x[1] = -2.5f; x[2] = 2.5f; x[3] = 0.5f; x[4] = -0.5f;
    x[5] = -127.0f; x[6] = 126.49999f; x[7] = 1.4999999f; x[8] = -3.5f; x[9] = 0.49999997f;
    /* block 1: amax 1 -> d = 1/127 (rounded to half), id = 127 */
    for (int j = 0; j < 32; j++) x[32 + j] = (j - 16) / 16.0f;
    const int8_t want0[10] = {127, -3, 3, 1, -1, -127, 126, 1, -4, 0};
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        block_q8_0 y[2];
        memset(y, 0x55, sizeof y);
        pgk.quantize_q8_0(64, x, y);
        CHECK(y[0].d == 0x3c00, "%s d0 = %04x", pg_isa_name(pgk.isa), y[0].d);
        for (int j = 0; j < 10; j++) CHECK(y[0].qs[j] == want0[j], "%s q[%d] = %d", pg_isa_name(pgk.isa), j, y[0].qs[j]);
        for (int j = 10; j < 32; j++) CHECK(y[0].qs[j] == 0, "q[%d] = %d", j, y[0].qs[j]);
        CHECK(y[1].d == pg_f32_to_f16(1.0f / 127.0f), "d1 = %04x", y[1].d);
        CHECK(y[1].d == 0x2008, "d1 = %04x (half of 1/127)", y[1].d);
        for (int j = 0; j < 32; j++) {
            /* (j-16)/16 * 127, exact in float: ties at odd multiples of 8 of j-16... computed by hand */
            double v = (j - 16) / 16.0 * 127.0;
            int want = (int)(v < 0 ? -floor(-v + 0.5) : floor(v + 0.5));
            CHECK(y[1].qs[j] == want, "%s q1[%d] = %d want %d", pg_isa_name(pgk.isa), j, y[1].qs[j], want);
        }
        /* all zero -> d = 0, q = 0 */
        float z[32] = {0};
        pgk.quantize_q8_0(32, z, y);
        CHECK(y[0].d == 0, "zero d");
        int nz = 0;
        for (int j = 0; j < 32; j++) nz += y[0].qs[j] != 0;
        CHECK(nz == 0, "zero q");
    }
    /* dequantize */
    block_q8_0 b;
    b.d = 0x3800; /* 0.5 */
    for (int j = 0; j < 32; j++) b.qs[j] = (int8_t)(j * 8 - 127);
    float y[32];
    pg_dequantize_q8_0_ref(32, &b, y);
    for (int j = 0; j < 32; j++) CHECK(y[j] == (j * 8 - 127) * 0.5f, "dequant %d", j);
}

static void test_quantize_q8_0_random(void) {
    const int NMAX = 129 * 32;
    float *x = xmalloc((NMAX + 1) * sizeof(float));
    block_q8_0 *a = xmalloc(129 * sizeof(block_q8_0)), *b = xmalloc(129 * sizeof(block_q8_0));
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int bi = 0; bi < NQBLOCKS; bi++) {
            const int n = QBLOCKS[bi] * 32;
            float *xx = x + 1;
            for (int i = 0; i < n; i++) {
                /* a mix of scales, and exact ties: multiples of 0.5 with amax 127 */
                int mode = (i / 32) % 3;
                xx[i] = mode == 0 ? test_rnd() * 10.0f : mode == 1 ? (float)((int)(test_rnd() * 254)) * 0.5f : test_rnd() * 1e-6f;
            }
            if (QBLOCKS[bi] > 1) xx[32 + 5] = 127.0f;
            pg_quantize_q8_0_ref(n, xx, a);
            pgk.quantize_q8_0(n, xx, b);
            CHECK(memcmp(a, b, QBLOCKS[bi] * sizeof(block_q8_0)) == 0, "%s quantize nb=%d differs",
                  pg_isa_name(pgk.isa), QBLOCKS[bi]);
        }
    }
    free(x);
    free(a);
    free(b);
}

/* ---- conversions --------------------------------------------------------------- */

static int f16_is_nan(uint16_t h) { return (h & 0x7c00) == 0x7c00 && (h & 0x3ff); }
static int bf16_is_nan(uint16_t h) { return (h & 0x7f80) == 0x7f80 && (h & 0x7f); }

static void test_half_round_trips(void) {
    uint16_t *h = xmalloc(65536 * 2);
    float *f = xmalloc(65536 * sizeof(float));
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    int bad = 0, badb = 0;
    for (int i = 0; i < 65536; i++) {
        uint16_t r = pg_f32_to_f16(pg_f16_to_f32(h[i]));
        if (f16_is_nan(h[i]) ? !f16_is_nan(r) : r != h[i]) bad++;
        uint16_t rb = pg_f32_to_bf16(pg_bf16_to_f32(h[i]));
        if (bf16_is_nan(h[i]) ? !bf16_is_nan(rb) : rb != h[i]) badb++;
    }
    CHECK(bad == 0, "%d f16 values do not round-trip", bad);
    CHECK(badb == 0, "%d bf16 values do not round-trip", badb);
    /* known values */
    CHECK(pg_f32_to_f16(1.0f) == 0x3c00, "1.0");
    CHECK(pg_f32_to_f16(-2.0f) == 0xc000, "-2.0");
    CHECK(pg_f32_to_f16(65504.0f) == 0x7bff, "max half");
    CHECK(pg_f32_to_f16(65520.0f) == 0x7c00, "overflow to inf");
    CHECK(pg_f32_to_f16(5.9604645e-8f) == 0x0001, "smallest subnormal");
    CHECK(pg_f32_to_f16(1.0f + 1.0f / 2048) == 0x3c00, "tie to even (down)");
    CHECK(pg_f32_to_f16(1.0f + 3.0f / 2048) == 0x3c02, "tie to even (up)");
    CHECK(pg_f16_to_f32(0x0001) == 5.9604645e-8f, "subnormal to f32");
    CHECK(pg_f32_to_bf16(1.0f + 1.0f / 256) == 0x3f80, "bf16 tie to even");
    /* the table conversions, every value, every ISA (odd count: tails) */
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        pgk.f16_to_f32(65535, h, f);
        bad = 0;
        for (int i = 0; i < 65535; i++) bad += !same_float(f[i], pg_f16_to_f32(h[i]));
        CHECK(bad == 0, "%s f16_to_f32: %d values differ", pg_isa_name(pgk.isa), bad);
        pgk.bf16_to_f32(65535, h + 1, f);
        bad = 0;
        for (int i = 0; i < 65535; i++) bad += !same_float(f[i], pg_bf16_to_f32(h[i + 1]));
        CHECK(bad == 0, "%s bf16_to_f32: %d values differ", pg_isa_name(pgk.isa), bad);
    }
    free(h);
    free(f);
}

/* ---- elementwise ------------------------------------------------------------------- */

static void test_rmsnorm(void) {
    float *x = xmalloc(4100 * 4), *w = xmalloc(4100 * 4), *y = xmalloc(4100 * 4), *yr = xmalloc(4100 * 4);
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int si = 1; si < NSIZES; si++) {
            const int n = SIZES[si];
            fill(x, n, 3.0f);
            fill(w, n, 1.5f);
            pg_rmsnorm_ref(n, x, w, 1e-6f, yr);
            pgk.rmsnorm(n, x, w, 1e-6f, y);
            double ss = 0;
            for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
            double sc = 1.0 / sqrt(ss / n + 1e-6);
            int bad = 0, badr = 0;
            for (int i = 0; i < n; i++) {
                double e = x[i] * sc * w[i];
                /* ref: three float roundings of exact; table: 1e-5 relative */
                badr += fabs(yr[i] - e) > 4 * EPS * fabs(e) + 1e-30;
                bad += fabs(y[i] - yr[i]) > 1e-5 * fabs(yr[i]) + 1e-30;
            }
            CHECK(badr == 0, "rmsnorm ref n=%d: %d bad", n, badr);
            CHECK(bad == 0, "%s rmsnorm n=%d: %d bad", pg_isa_name(pgk.isa), n, bad);
        }
    }
    free(x); free(w); free(y); free(yr);
}

static void test_softmax(void) {
    float *x = xmalloc(4100 * 4), *y = xmalloc(4100 * 4), *yr = xmalloc(4100 * 4);
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int si = 1; si < NSIZES; si++) {
            const int n = SIZES[si];
            fill(x, n, 20.0f);
            if (n > 10) x[7] = -200.0f; /* underflows to 0 */
            memcpy(y, x, n * 4);
            memcpy(yr, x, n * 4);
            pg_softmax_ref(n, yr);
            pgk.softmax(n, y);
            double mx = x[0], s = 0;
            for (int i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
            for (int i = 0; i < n; i++) s += exp((double)x[i] - mx);
            int bad = 0, badr = 0;
            double tot = 0;
            for (int i = 0; i < n; i++) {
                double e = exp((double)x[i] - mx) / s;
                /* x - max is rounded in float: relative error up to |x - max| * eps */
                badr += fabs(yr[i] - e) > (4 + fabs(x[i] - mx)) * EPS * e + 1e-37;
                bad += fabs(y[i] - yr[i]) > 1e-5 * fabs(yr[i]) + 1e-37;
                tot += y[i];
            }
            CHECK(badr == 0, "softmax ref n=%d: %d bad", n, badr);
            CHECK(bad == 0, "%s softmax n=%d: %d bad", pg_isa_name(pgk.isa), n, bad);
            CHECK(fabs(tot - 1) < 1e-5, "%s softmax n=%d sums to %g", pg_isa_name(pgk.isa), n, tot);
        }
    }
    free(x); free(y); free(yr);
}

static void test_silu_mul(void) {
    float *g = xmalloc(4100 * 4), *u = xmalloc(4100 * 4), *y = xmalloc(4100 * 4), *yr = xmalloc(4100 * 4);
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int si = 1; si < NSIZES; si++) {
            const int n = SIZES[si];
            fill(g, n, 12.0f);
            fill(u, n, 2.0f);
            if (n > 20) { g[3] = -100.0f; g[4] = 100.0f; g[5] = 0.0f; g[17] = -87.5f; }
            pg_silu_mul_ref(n, g, u, yr);
            pgk.silu_mul(n, g, u, y);
            int bad = 0, badr = 0;
            for (int i = 0; i < n; i++) {
                double e = g[i] / (1.0 + exp(-(double)g[i])) * u[i];
                badr += fabs(yr[i] - e) > 1e-6 * fabs(e) + 1e-35;
                bad += fabs(y[i] - yr[i]) > 1e-5 * fabs(yr[i]) + 1e-35;
            }
            CHECK(badr == 0, "silu ref n=%d: %d bad", n, badr);
            CHECK(bad == 0, "%s silu_mul n=%d: %d bad", pg_isa_name(pgk.isa), n, bad);
        }
    }
    free(g); free(u); free(y); free(yr);
}

static void test_axpy(void) {
    float *x = xmalloc(4100 * 4), *y0 = xmalloc(4100 * 4), *y = xmalloc(4100 * 4), *yr = xmalloc(4100 * 4);
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int si = 0; si < NSIZES; si++) {
            const int n = SIZES[si];
            fill(x, n, 1.0f);
            fill(y0, n, 1.0f);
            const float a = 0.75f + test_rnd();
            memcpy(y, y0, n * 4);
            memcpy(yr, y0, n * 4);
            pg_axpy_ref(n, a, x, yr);
            pgk.axpy(n, a, x, y);
            int bad = 0;
            /* fused vs unfused multiply-add: one rounding apart */
            for (int i = 0; i < n; i++) bad += fabs(y[i] - yr[i]) > 2 * EPS * (fabs(y0[i]) + fabs(a * x[i]));
            CHECK(bad == 0, "%s axpy n=%d: %d bad", pg_isa_name(pgk.isa), n, bad);
        }
    }
    free(x); free(y0); free(y); free(yr);
}

/* ---- matmul ------------------------------------------------------------------------ */

static void make_mat(pg_type t, int rows, int cols, const float *wf, void **data, pg_mat *W) {
    W->type = t;
    W->rows = rows;
    W->cols = cols;
    W->row_bytes = pg_row_bytes(t, cols);
    char *d = xmalloc(W->row_bytes * rows + 64);
    for (int r = 0; r < rows; r++) {
        char *row = d + r * W->row_bytes;
        const float *src = wf + (size_t)r * cols;
        if (t == PG_TYPE_F32) memcpy(row, src, cols * 4);
        else if (t == PG_TYPE_F16) for (int c = 0; c < cols; c++) ((uint16_t *)row)[c] = pg_f32_to_f16(src[c]);
        else if (t == PG_TYPE_BF16) for (int c = 0; c < cols; c++) ((uint16_t *)row)[c] = pg_f32_to_bf16(src[c]);
        else pg_quantize_q8_0_ref(cols, src, (block_q8_0 *)row);
    }
    *data = d;
    W->data = d;
}

static void test_matmul(void) {
    const pg_type types[] = {PG_TYPE_F32, PG_TYPE_F16, PG_TYPE_BF16, PG_TYPE_Q8_0};
    const int Ts[] = {1, 3, 7};
    pg_pool *pools[2] = {pg_pool_new(1), pg_pool_new(2)};
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int ti = 0; ti < 4; ti++) {
            const pg_type t = types[ti];
            const int rows = t == PG_TYPE_Q8_0 ? 45 : 37, cols = t == PG_TYPE_Q8_0 ? 160 : 131;
            float *wf = xmalloc((size_t)rows * cols * 4);
            fill(wf, rows * cols, 1.0f);
            void *data;
            pg_mat W;
            make_mat(t, rows, cols, wf, &data, &W);
            for (int r = 0; r < rows; r += 5) { /* pg_mat_row_f32 */
                float row[160];
                pg_mat_row_f32(&W, r, row);
                int bad = 0;
                for (int c = 0; c < cols; c++) {
                    float want = t == PG_TYPE_F32 ? wf[r * cols + c]
                                 : t == PG_TYPE_F16 ? pg_f16_to_f32(pg_f32_to_f16(wf[r * cols + c]))
                                 : t == PG_TYPE_BF16 ? pg_bf16_to_f32(pg_f32_to_bf16(wf[r * cols + c]))
                                 : ((const block_q8_0 *)((char *)data + r * W.row_bytes))[c / 32].qs[c % 32] *
                                       pg_f16_to_f32(((const block_q8_0 *)((char *)data + r * W.row_bytes))[c / 32].d);
                    bad += !same_float(row[c], want);
                }
                CHECK(bad == 0, "%s mat_row_f32 row %d: %d bad", pg_type_name(t), r, bad);
            }
            for (int tt = 0; tt < 3; tt++) {
                const int T = Ts[tt], ldx = cols + 3, ldy = rows + 2;
                float *X = xmalloc((size_t)T * ldx * 4), *Y = xmalloc((size_t)T * ldy * 4),
                      *Yr = xmalloc((size_t)T * ldy * 4);
                fill(X, T * ldx, 1.0f);
                pg_matmul_ref(&W, T, X, ldx, Yr, ldy);
                for (int pi = 0; pi < 2; pi++) {
                    for (int own = 0; own < 2; own++) {
                        for (int i = 0; i < T * ldy; i++) Y[i] = -12345.0f;
                        void *scratch = own ? xmalloc(pg_matmul_scratch_bytes(&W, T) + 1) : NULL;
                        pg_matmul(pools[pi], &W, T, X, ldx, Y, ldy, scratch);
                        free(scratch);
                        int bad = 0, untouched = 0;
                        for (int k = 0; k < T; k++) {
                            for (int r = 0; r < rows; r++) {
                                double mag = 0;
                                for (int c = 0; c < cols; c++) mag += fabs((double)wf[r * cols + c] * X[k * ldx + c]);
                                /* float types: 1e-5 sqrt(n) relative to sum|w x|; Q8_0: same
                                 * quantized X (quantize is bit-exact), float order only */
                                double tol = t == PG_TYPE_Q8_0 ? 2 * (cols / 32 + 16) * EPS * mag * 1.1 : 1e-5 * sqrt(cols) * mag;
                                bad += !(fabs(Y[k * ldy + r] - Yr[k * ldy + r]) <= tol);
                            }
                            for (int r = rows; r < ldy; r++) untouched += Y[k * ldy + r] != -12345.0f;
                        }
                        CHECK(bad == 0, "%s %s T=%d pool=%d: %d bad", pg_isa_name(pgk.isa), pg_type_name(t), T,
                              pi + 1, bad);
                        CHECK(untouched == 0, "matmul wrote outside its rows");
                    }
                }
                /* the reference itself against double (F32/F16/BF16: one rounding) */
                int badr = 0;
                for (int k = 0; k < T && t != PG_TYPE_Q8_0; k++)
                    for (int r = 0; r < rows; r++) {
                        float row[160];
                        double e = 0;
                        pg_mat_row_f32(&W, r, row);
                        for (int c = 0; c < cols; c++) e += (double)row[c] * X[k * ldx + c];
                        badr += !(fabs(Yr[k * ldy + r] - e) <= 2 * EPS * fabs(e) + 1e-300);
                    }
                CHECK(badr == 0, "%s matmul_ref T=%d: %d bad", pg_type_name(t), T, badr);
                free(X);
                free(Y);
                free(Yr);
            }
            free(data);
            free(wf);
        }
    }
    pg_pool_free(pools[0]);
    pg_pool_free(pools[1]);
}

/* ---- rope -------------------------------------------------------------------------- */

static void test_rope(void) {
    const int hds[] = {8, 16, 64, 128};
    const int poss[] = {0, 1, 5, 100, 1000, 4000};
    float x[4 * 128], y[4 * 128];
    for (int neox = 0; neox < 2; neox++)
        for (int hi = 0; hi < 4; hi++)
            for (int partial = 0; partial < 2; partial++)
                for (int pi = 0; pi < 6; pi++) {
                    const int hd = hds[hi], n_rot = partial ? hd / 2 : hd, pos = poss[pi], nh = 3;
                    const float base = hi == 3 ? 1000000.0f : 10000.0f;
                    fill(x, nh * hd, 1.0f);
                    memcpy(y, x, sizeof x);
                    pg_rope_ref(y, nh, hd, n_rot, pos, base, neox);
                    int bad = 0;
                    for (int h = 0; h < nh; h++) {
                        const float *xh = x + h * hd, *yh = y + h * hd;
                        double want[128];
                        for (int i = 0; i < hd; i++) want[i] = xh[i];
                        for (int i = 0; i < n_rot / 2; i++) {
                            double th = pos * pow(base, -2.0 * i / n_rot);
                            int i0 = neox ? i : 2 * i, i1 = neox ? i + n_rot / 2 : 2 * i + 1;
                            want[i0] = xh[i0] * cos(th) - xh[i1] * sin(th);
                            want[i1] = xh[i0] * sin(th) + xh[i1] * cos(th);
                        }
                        /* float angle: error ~ pos * few eps, so the bound grows with pos */
                        const double tol = 4e-7 * (pos + 4);
                        for (int i = 0; i < hd; i++) bad += !(fabs(yh[i] - want[i]) <= tol);
                    }
                    CHECK(bad == 0, "rope neox=%d hd=%d n_rot=%d pos=%d: %d bad", neox, hd, n_rot, pos, bad);
                }
}

/* ---- attention --------------------------------------------------------------------- */

static void attention_double(const float *q, const float *k, const float *v, int kv_stride, int n_kv,
                             int n_head, int n_head_kv, int hd, double *out) {
    double att[64];
    for (int h = 0; h < n_head; h++) {
        int kvh = h / (n_head / n_head_kv);
        double mx = -1e300, s = 0;
        for (int j = 0; j < n_kv; j++) {
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)q[h * hd + i] * k[j * kv_stride + kvh * hd + i];
            att[j] = d / sqrt((double)hd);
            mx = att[j] > mx ? att[j] : mx;
        }
        for (int j = 0; j < n_kv; j++) s += att[j] = exp(att[j] - mx);
        for (int i = 0; i < hd; i++) {
            double o = 0;
            for (int j = 0; j < n_kv; j++) o += att[j] / s * v[j * kv_stride + kvh * hd + i];
            out[h * hd + i] = o;
        }
    }
}

static void test_attention(void) {
    const int n_head = 4, n_head_kv = 2;
    const int hds[] = {20, 64};
    pg_pool *pools[2] = {pg_pool_new(1), pg_pool_new(2)};
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int hi = 0; hi < 2; hi++) {
            const int hd = hds[hi], kv_stride = n_head_kv * hd + 3;
            for (int n_kv = 1; n_kv <= 37; n_kv++) {
                float q[4 * 64], out[4 * 64], outr[4 * 64], att[64], scratch[2 * 64];
                float *k = xmalloc(n_kv * kv_stride * 4), *v = xmalloc(n_kv * kv_stride * 4);
                double want[4 * 64];
                fill(q, n_head * hd, 2.0f);
                fill(k, n_kv * kv_stride, 2.0f);
                fill(v, n_kv * kv_stride, 1.0f);
                attention_double(q, k, v, kv_stride, n_kv, n_head, n_head_kv, hd, want);
                pg_attention_ref(q, k, v, kv_stride, n_kv, n_head, n_head_kv, hd, att, outr);
                int badr = 0;
                /* outputs are convex combinations of v (|v| <= 1): absolute 1e-5 */
                for (int i = 0; i < n_head * hd; i++) badr += !(fabs(outr[i] - want[i]) <= 1e-5);
                CHECK(badr == 0, "attention_ref hd=%d n_kv=%d: %d bad", hd, n_kv, badr);
                for (int pi = 0; pi < 2; pi++) {
                    pg_attention(pools[pi], q, k, v, kv_stride, n_kv, n_head, n_head_kv, hd, scratch, out);
                    int bad = 0;
                    for (int i = 0; i < n_head * hd; i++) bad += !(fabs(out[i] - want[i]) <= 1e-5);
                    CHECK(bad == 0, "%s attention hd=%d n_kv=%d pool=%d: %d bad", pg_isa_name(pgk.isa), hd, n_kv,
                          pi + 1, bad);
                }
                free(k);
                free(v);
            }
        }
    }
    pg_pool_free(pools[0]);
    pg_pool_free(pools[1]);
}

/* ---- gpt-oss: windowed attention with sinks, clamped SwiGLU, YaRN -------------------- */

/* attention_double over positions first..n_kv-1, with an optional sink
 * logit per head in the denominator */
static void attention_ext_double(const float *q, const float *k, const float *v, int kv_stride, int first,
                                 int n_kv, int n_head, int n_head_kv, int hd, const float *sinks, double *out) {
    double att[64];
    for (int h = 0; h < n_head; h++) {
        int kvh = h / (n_head / n_head_kv);
        double mx = sinks ? sinks[h] : -1e300, s = 0;
        for (int j = first; j < n_kv; j++) {
            double d = 0;
            for (int i = 0; i < hd; i++) d += (double)q[h * hd + i] * k[j * kv_stride + kvh * hd + i];
            att[j] = d / sqrt((double)hd);
            mx = att[j] > mx ? att[j] : mx;
        }
        for (int j = first; j < n_kv; j++) s += att[j] = exp(att[j] - mx);
        if (sinks) s += exp(sinks[h] - mx);
        for (int i = 0; i < hd; i++) {
            double o = 0;
            for (int j = first; j < n_kv; j++) o += att[j] / s * v[j * kv_stride + kvh * hd + i];
            out[h * hd + i] = o;
        }
    }
}

static void test_attention_window_sinks(void) {
    const int n_head = 4, n_head_kv = 2;
    const int hds[] = {20, 64};
    pg_pool *pools[2] = {pg_pool_new(1), pg_pool_new(2)};
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int hi = 0; hi < 2; hi++) {
            const int hd = hds[hi], kv_stride = n_head_kv * hd + 3;
            for (int n_kv = 1; n_kv <= 37; n_kv += 3)
                for (int wi = 0; wi < 3; wi++)
                    for (int with_sinks = 0; with_sinks < 2; with_sinks++) {
                        const int window = wi == 0 ? n_kv : wi == 1 ? 4 : 1; /* window 1: only itself */
                        const int first = n_kv > window ? n_kv - window : 0;
                        float q[4 * 64], out[4 * 64], outr[4 * 64], att[65], scratch[2 * 65], sinks[4];
                        float *k = xmalloc(n_kv * kv_stride * 4), *v = xmalloc(n_kv * kv_stride * 4);
                        double want[4 * 64];
                        fill(q, n_head * hd, 2.0f);
                        fill(k, n_kv * kv_stride, 2.0f);
                        fill(v, n_kv * kv_stride, 1.0f);
                        fill(sinks, 4, 3.0f);
                        const float *sk = with_sinks ? sinks : NULL;
                        attention_ext_double(q, k, v, kv_stride, first, n_kv, n_head, n_head_kv, hd, sk, want);
                        pg_attention_ext_ref(q, k, v, kv_stride, first, n_kv, n_head, n_head_kv, hd, sk, att, outr);
                        int badr = 0;
                        for (int i = 0; i < n_head * hd; i++) badr += !(fabs(outr[i] - want[i]) <= 1e-5);
                        CHECK(badr == 0, "attention_ext_ref hd=%d n_kv=%d first=%d sinks=%d: %d bad", hd, n_kv, first,
                              with_sinks, badr);
                        for (int pi = 0; pi < 2; pi++) {
                            pg_attention_ext(pools[pi], q, k, v, kv_stride, first, n_kv, n_head, n_head_kv, hd, sk,
                                             scratch, out);
                            int bad = 0;
                            for (int i = 0; i < n_head * hd; i++) bad += !(fabs(out[i] - want[i]) <= 1e-5);
                            CHECK(bad == 0, "%s attention_ext hd=%d n_kv=%d first=%d sinks=%d pool=%d: %d bad",
                                  pg_isa_name(pgk.isa), hd, n_kv, first, with_sinks, pi + 1, bad);
                        }
                        /* no window, no sinks: bit for bit what pg_attention computes */
                        if (first == 0 && !with_sinks) {
                            float plain[4 * 64];
                            pg_attention(pools[1], q, k, v, kv_stride, n_kv, n_head, n_head_kv, hd, scratch, plain);
                            pg_attention_ext(pools[1], q, k, v, kv_stride, 0, n_kv, n_head, n_head_kv, hd, NULL,
                                             scratch, out);
                            CHECK(memcmp(plain, out, (size_t)n_head * hd * 4) == 0, "ext differs from plain");
                        }
                        free(k);
                        free(v);
                    }
        }
    }
    pg_pool_free(pools[0]);
    pg_pool_free(pools[1]);
}

/* By hand: one head, hd 4 (scale 1/2), q = (2,0,0,0). Position 0 is outside
 * the window (first = 1); position 1 scores 0, position 2 scores ln 3, the
 * sink is 0: weights 1/5, 3/5 and 1/5 for the sink, which has no value. */
static void test_attention_sinks_by_hand(void) {
    const float q[4] = {2, 0, 0, 0}, sink = 0.0f;
    const float k[12] = {50, 50, 50, 50, 0, 0, 0, 0, logf(3.0f), 0, 0, 0};
    const float v[12] = {100, 100, 100, 100, 1, 0, 0, 0, 0, 1, 0, 0};
    float att[4], out[4];
    pg_attention_ext_ref(q, k, v, 4, 1, 3, 1, 1, 4, &sink, att, out);
    CHECK(fabsf(out[0] - 0.2f) < 1e-6f && fabsf(out[1] - 0.6f) < 1e-6f && out[2] == 0 && out[3] == 0,
          "got %g %g %g %g, want 0.2 0.6 0 0", out[0], out[1], out[2], out[3]);
    /* without the sink: 1/4 and 3/4 */
    pg_attention_ext_ref(q, k, v, 4, 1, 3, 1, 1, 4, NULL, att, out);
    CHECK(fabsf(out[0] - 0.25f) < 1e-6f && fabsf(out[1] - 0.75f) < 1e-6f, "got %g %g, want 0.25 0.75", out[0], out[1]);
}

static void test_swiglu_oai(void) {
    /* by hand, alpha = ln 3 so that sigmoid(alpha) = 3/4 */
    const float a3 = logf(3.0f);
    float g[3] = {1, 9, -9}, u[3] = {1, 9, -9}, y[3];
    pg_swiglu_oai_ref(1, g, u, a3, 7.0f, y);
    CHECK(fabsf(y[0] - 1.5f) < 1e-6f, "(1+1) * 1 * 3/4: got %g", y[0]);
    pg_swiglu_oai_ref(3, g, u, a3 / 2, 2.0f, y); /* limit 2: gate 9 -> 2, up 9 -> 2, up -9 -> -2, gate -9 stays */
    CHECK(fabsf(y[1] - 4.5f) < 1e-5f, "(2+1) * 2 * 3/4: got %g", y[1]);
    CHECK(fabs(y[2] - 9.0 / (1.0 + pow(3.0, 4.5))) < 1e-7, "(-2+1) * -9 * sigmoid(-9 ln3/2): got %g", y[2]);
    float *gg = xmalloc(4100 * 4), *uu = xmalloc(4100 * 4), *yy = xmalloc(4100 * 4), *yr = xmalloc(4100 * 4);
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        for (int si = 1; si < NSIZES; si++) {
            const int n = SIZES[si];
            fill(gg, n, 12.0f);
            fill(uu, n, 12.0f);
            if (n > 20) { gg[3] = -100.0f; gg[4] = 100.0f; gg[5] = 0.0f; uu[6] = 7.0f; gg[7] = 7.0f; }
            pg_swiglu_oai_ref(n, gg, uu, 1.702f, 7.0f, yr);
            pgk.swiglu_oai(n, gg, uu, 1.702f, 7.0f, yy);
            int bad = 0, badr = 0;
            for (int i = 0; i < n; i++) {
                double gd = gg[i] > 7.0 ? 7.0 : gg[i], ud = uu[i] > 7.0 ? 7.0 : uu[i] < -7.0 ? -7.0 : uu[i];
                double glu = gd / (1.0 + exp(-(double)1.702f * gd)), e = (ud + 1) * glu;
                /* u + 1 is rounded in float: near u = -1 the bound is relative to
                 * (|u| + 1) |glu|; alpha g is rounded too, which exp turns into
                 * a relative error of |alpha g| eps */
                badr += fabs(yr[i] - e) > (1e-6 + 4 * fabs(1.702 * gd) * EPS) * (fabs(ud) + 1) * fabs(glu) + 1e-35;
                bad += fabs(yy[i] - yr[i]) > 1e-5 * fabs(yr[i]) + 1e-35;
            }
            CHECK(badr == 0, "swiglu_oai ref n=%d: %d bad", n, badr);
            CHECK(bad == 0, "%s swiglu_oai n=%d: %d bad", pg_isa_name(pgk.isa), n, bad);
        }
        /* a NaN gate or up stays NaN (torch.clamp keeps it), in the vector lanes and the tail */
        for (int i = 0; i < 35; i++) gg[i] = uu[i] = 0.5f;
        gg[3] = uu[20] = gg[33] = NAN;
        pgk.swiglu_oai(35, gg, uu, 1.702f, 7.0f, yy);
        CHECK(isnan(yy[3]) && isnan(yy[20]) && isnan(yy[33]) && !isnan(yy[4]), "%s swiglu_oai: NaN not kept",
              pg_isa_name(pgk.isa));
    }
    free(gg); free(uu); free(yy); free(yr);
}

/* YaRN's cos/sin at one position, as the model computes them */
static void yarn_cs_(int pos, int n_rot, float base, const pg_yarn *y, float *cs) {
    float inv[64];
    pg_yarn_inv_freq(n_rot, base, y, inv);
    pg_rope_cache_freqs(pos, n_rot, inv, y->attn_factor, cs);
}

static void test_rope_yarn(void) {
    /* factor 1 and attention factor 1: the plain RoPE angles (up to the
     * frequencies' float32 rounding, as transformers keeps them) */
    float a[128], b[128];
    pg_yarn y1 = {.factor = 1, .beta_fast = 32, .beta_slow = 1, .orig_ctx = 4096, .truncate = 0, .attn_factor = 1};
    for (int pos = 0; pos < 300; pos += 37) {
        pg_rope_cache(pos, 64, 150000.0f, a);
        yarn_cs_(pos, 64, 150000.0f, &y1, b);
        int bad = 0;
        for (int i = 0; i < 64; i++) bad += !(fabsf(a[i] - b[i]) <= 5e-5f);
        CHECK(bad == 0, "yarn factor 1 pos %d: %d differ", pos, bad);
    }
    /* by hand: n_rot 4, base 1e4, 628 positions: beta_fast 100 puts lo below
     * 0 (clipped), beta_slow 1 at 0.9999 (ceiled to 1), so pair 0 keeps its
     * frequency 1 and pair 1 takes 0.01 / 4 */
    pg_yarn y = {.factor = 4, .beta_fast = 100, .beta_slow = 1, .orig_ctx = 628, .truncate = 1, .attn_factor = 1};
    yarn_cs_(3, 4, 10000.0f, &y, a);
    CHECK(fabsf(a[0] - cosf(3)) < 1e-6f && fabsf(a[1] - sinf(3)) < 1e-6f, "pair 0: %g %g", a[0], a[1]);
    CHECK(fabsf(a[2] - cosf(0.0075f)) < 1e-6f && fabsf(a[3] - sinf(0.0075f)) < 1e-6f, "pair 1: %g %g", a[2], a[3]);
    /* the attention factor scales cos and sin; its default is 0.1 ln f + 1 */
    y.attn_factor = pg_yarn_mscale(4, 1);
    CHECK(fabsf(y.attn_factor - (float)(0.1 * log(4.0) + 1)) < 1e-7f, "default attn factor %g", y.attn_factor);
    yarn_cs_(3, 4, 10000.0f, &y, b);
    CHECK(fabsf(b[0] - a[0] * y.attn_factor) < 1e-6f && fabsf(b[3] - a[3] * y.attn_factor) < 1e-6f, "scaled");
    CHECK(pg_yarn_mscale(1, 1) == 1 && pg_yarn_mscale(0.5f, 1) == 1, "no scaling at factor <= 1");
    /* not truncated (transformers' gpt-oss): the ramp runs from the exact
     * bounds; 16 dims, 64 positions: lo = 0 (clipped), hi = 2.0155 */
    pg_yarn nt = {.factor = 4, .beta_fast = 32, .beta_slow = 1, .orig_ctx = 64, .truncate = 0, .attn_factor = 1};
    float inv[8];
    pg_yarn_inv_freq(16, 10000.0f, &nt, inv);
    double hi = 16 * log(64 / (2 * M_PI)) / (2 * log(10000.0));
    for (int i = 0; i < 8; i++) {
        double r = i / hi > 1 ? 1 : i / hi, base = pow(10000.0, -2.0 * i / 16);
        CHECK(fabs(inv[i] - base * (r / 4 + 1 - r)) <= 1e-6 * base, "untruncated inv_freq[%d] = %g", i, inv[i]);
    }
}

static void test_init(void) {
    pg_isa best = pg_cpu_isa();
    fprintf(stderr, "cpu isa: %s\n", pg_isa_name(best));
    CHECK(pg_kernels_init(-1) == best || getenv("PREGATE_ISA"), "init(-1) picks the best");
    CHECK(pg_kernels_init(99) == pg_kernels_init(-1), "force above the CPU is capped");
    CHECK(pg_kernels_init(PG_ISA_SCALAR) == PG_ISA_SCALAR, "force scalar");
    CHECK(pgk.dot[PG_TYPE_F32] == pg_dot_f32_ref, "scalar table uses the refs");
    CHECK(pgk.dot[16] == NULL, "no IQ2_XXS kernel");
    CHECK(!strcmp(pg_isa_name(PG_ISA_AVX512), "avx512"), "name");
}

int main(void) {
    const char *seed = getenv("PG_TEST_SEED"); /* default: a fixed seed */
    if (seed && strtoull(seed, NULL, 0)) test_rng_state = strtoull(seed, NULL, 0);
    TEST_RUN(test_init);
    TEST_RUN(test_dot_float_types);
    TEST_RUN(test_dot_q8_0);
    TEST_RUN(test_quantize_q8_0_known);
    TEST_RUN(test_quantize_q8_0_random);
    TEST_RUN(test_half_round_trips);
    TEST_RUN(test_rmsnorm);
    TEST_RUN(test_softmax);
    TEST_RUN(test_silu_mul);
    TEST_RUN(test_axpy);
    TEST_RUN(test_matmul);
    TEST_RUN(test_rope);
    TEST_RUN(test_attention);
    TEST_RUN(test_attention_window_sinks);
    TEST_RUN(test_attention_sinks_by_hand);
    TEST_RUN(test_swiglu_oai);
    TEST_RUN(test_rope_yarn);
    pg_kernels_init(-1);
    return test_summary("test_kernels");
}
