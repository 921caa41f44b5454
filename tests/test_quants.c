/* test_quants.c - the quantized formats: dequantization against gguf-py's
 * (tests/fixtures/quant/, written by tools/make_quant_fixtures.py), dot
 * products against dequantize-then-dot, quantize -> dequantize error per
 * format, pg_matmul against pg_matmul_ref, and every pgk entry of every ISA
 * this CPU has against its scalar reference.
 *
 * Tolerances (eps = 2^-24):
 *  - dequantize vs gguf-py: at most 1 ulp per element (both compute the
 *    same float products; in practice they are bit-identical, counted).
 *  - Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, TQ1_0, TQ2_0 quantizers: the same bytes
 *    as gguf-py's (which follows ggml's reference quantizers).
 *  - dot products: the integer part is exact, only the float scaling and
 *    the sum over nb blocks round: |dot - exact| <= 4 (nb + 8) eps M, where
 *    exact = sum of dequantized w times dequantized x in double and
 *    M = sum |w_i x_i|, plus, for formats with a min (x = d q - m), the
 *    cancelling min terms: + 4 (nb + 8) eps max|w| sum |x_i|. Q4_1/Q5_1
 *    also store s = d * sum(q) of the activation as a half: + 2^-9 sum_b
 *    |m_b| |d_b| sum_j |q_j|. SIMD versions get the same bound.
 *  - quantize -> dequantize of N(0,1) data: relative RMS error below the
 *    per-format bound in FORMATS, about 10% above the measured value with
 *    the default seed (printed by the test). Ternary formats on Gaussian
 *    data are poor by nature (d = max |x|); ternary data is exact.
 *  - activation quantizers (Q8_1, Q8_K) of every ISA: bit-identical.
 */
#include <math.h>
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

static double rnd_unit(void) { return (double)(test_rng_u64() >> 11) / 9007199254740992.0; } /* [0,1) */
static float gauss(void) {
    double u = rnd_unit() + 1e-300, v = rnd_unit();
    return (float)(sqrt(-2.0 * log(u)) * cos(2 * M_PI * v));
}

static int n_isas(void) { return (int)pg_kernels_init(-1) + 1; }

/* The weight formats with a dot product, and the relative RMS error of
 * quantize -> dequantize on N(0,1) data each must stay below. */
static const struct {
    pg_type t;
    double rms_bound;
} FORMATS[] = {
    {PG_TYPE_Q4_0, 0.095}, {PG_TYPE_Q4_1, 0.088}, {PG_TYPE_Q5_0, 0.047}, {PG_TYPE_Q5_1, 0.042},
    {PG_TYPE_Q8_0, 0.0060}, {PG_TYPE_Q2_K, 0.30},  {PG_TYPE_Q3_K, 0.16},  {PG_TYPE_Q4_K, 0.080},
    {PG_TYPE_Q5_K, 0.040}, {PG_TYPE_Q6_K, 0.020}, {PG_TYPE_TQ1_0, 0.85}, {PG_TYPE_TQ2_0, 0.85},
    {PG_TYPE_MXFP4, 0.125}, {PG_TYPE_IQ4_NL, 0.084}, {PG_TYPE_IQ4_XS, 0.084},
};
#define NFORMATS (int)(sizeof FORMATS / sizeof FORMATS[0])

static int blck_(pg_type t) { return pg_type_info(t)->blck; }
static int has_min_(pg_type t) {
    return t == PG_TYPE_Q4_1 || t == PG_TYPE_Q5_1 || t == PG_TYPE_Q2_K || t == PG_TYPE_Q4_K ||
           t == PG_TYPE_Q5_K;
}

static int within_ulp_(float a, float b) {
    if (memcmp(&a, &b, 4) == 0) return 1;
    if (isnan(a) || isnan(b)) return 0;
    return nextafterf(a, INFINITY) == b || nextafterf(a, -INFINITY) == b;
}

/* ---- fixtures from gguf-py ------------------------------------------------------------- */

typedef struct {
    pg_type type;
    uint32_t n;
    int has_src;
    uint8_t *blocks;
    float *deq, *src;
} fixture;

static int fixture_load_(const char *name, fixture *f) {
    char path[256];
    snprintf(path, sizeof path, "tests/fixtures/quant/%s.bin", name);
    char *buf = NULL;
    size_t len = 0;
    pg_error e;
    memset(f, 0, sizeof *f);
    if (pg_read_file(path, &buf, &len, &e)) {
        CHECK(0, "%s", e.msg);
        return -1;
    }
    uint32_t hdr[3];
    if (len < 16 || memcmp(buf, "PGQF", 4)) goto bad;
    memcpy(hdr, buf + 4, 12);
    f->type = (pg_type)hdr[0];
    f->n = hdr[1];
    f->has_src = hdr[2] != 0;
    if (!pg_type_info(f->type)) goto bad;
    const size_t qb = pg_row_bytes(f->type, f->n);
    if (!qb || len != 16 + qb + (size_t)f->n * 4 * (f->has_src ? 2 : 1)) goto bad;
    f->blocks = xmalloc(qb);
    memcpy(f->blocks, buf + 16, qb);
    f->deq = xmalloc((size_t)f->n * 4);
    memcpy(f->deq, buf + 16 + qb, (size_t)f->n * 4);
    if (f->has_src) {
        f->src = xmalloc((size_t)f->n * 4);
        memcpy(f->src, buf + 16 + qb + (size_t)f->n * 4, (size_t)f->n * 4);
    }
    free(buf);
    return 0;
bad:
    CHECK(0, "%s: malformed fixture", path);
    free(buf);
    return -1;
}

static void fixture_free_(fixture *f) {
    free(f->blocks);
    free(f->deq);
    free(f->src);
}

static void test_dequantize_fixtures(void) {
    static const char *names[] = {"Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K",  "Q3_K",  "Q4_K",
                                  "Q5_K", "Q6_K", "TQ1_0", "TQ2_0", "MXFP4", "MXFP4-e8m0", "IQ4_NL", "IQ4_XS"};
    for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
        fixture f;
        if (fixture_load_(names[k], &f)) continue;
        float *y = xmalloc((size_t)f.n * 4);
        pg_dequantize_row_ref(f.type, f.n, f.blocks, y);
        int bad = 0, inexact = 0;
        for (uint32_t i = 0; i < f.n; i++) {
            if (!within_ulp_(y[i], f.deq[i])) {
                if (bad++ < 3) fprintf(stderr, "  %s[%u] = %.9g, gguf-py %.9g\n", names[k], i, y[i], f.deq[i]);
            } else if (memcmp(&y[i], &f.deq[i], 4)) {
                inexact++;
            }
        }
        CHECK(bad == 0, "%s: %d of %u values differ from gguf-py by more than 1 ulp", names[k], bad, f.n);
        if (inexact) fprintf(stderr, "  %s: %d values 1 ulp from gguf-py\n", names[k], inexact);
        /* the same through the matrix row accessor */
        pg_mat W = {.type = f.type, .rows = 1, .cols = (int)f.n, .row_bytes = pg_row_bytes(f.type, f.n),
                    .data = f.blocks};
        pg_mat_row_f32(&W, 0, y);
        CHECK(memcmp(y, f.deq, (size_t)f.n * 4) == 0 || bad, "%s: pg_mat_row_f32 differs", names[k]);
        /* pregate's quantizer against gguf-py's, where both follow ggml's reference */
        const int same_bytes = f.type == PG_TYPE_Q4_0 || f.type == PG_TYPE_Q4_1 || f.type == PG_TYPE_Q5_0 ||
                               f.type == PG_TYPE_Q5_1 || f.type == PG_TYPE_Q8_0 || f.type == PG_TYPE_TQ1_0 ||
                               f.type == PG_TYPE_TQ2_0;
        if (f.has_src) {
            const size_t qb = pg_row_bytes(f.type, f.n);
            uint8_t *q = xmalloc(qb);
            pg_quantize_row_ref(f.type, f.n, f.src, q);
            if (same_bytes) {
                size_t diff = 0;
                for (size_t i = 0; i < qb; i++) diff += q[i] != f.blocks[i];
                CHECK(diff == 0, "%s: quantizer output differs from gguf-py in %zu of %zu bytes", names[k],
                      diff, qb);
            } else {
                /* not byte-identical by design: no worse than gguf-py's */
                pg_dequantize_row_ref(f.type, f.n, q, y);
                double e_pg = 0, e_py = 0;
                for (uint32_t i = 0; i < f.n; i++) {
                    e_pg += ((double)y[i] - f.src[i]) * ((double)y[i] - f.src[i]);
                    e_py += ((double)f.deq[i] - f.src[i]) * ((double)f.deq[i] - f.src[i]);
                }
                CHECK(e_pg <= e_py * 1.0001, "%s: squared error %g, gguf-py's %g", names[k], e_pg, e_py);
            }
            free(q);
        }
        free(y);
        fixture_free_(&f);
    }
}

/* ---- dot products ------------------------------------------------------------------------ */

/* Random weights of format t: quantized from floats with varied scales per
 * block, including an all-zero block when there are enough. */
static void make_weights_(pg_type t, int n, float *tmp, void *w) {
    const int b = blck_(t);
    for (int i = 0; i < n; i++) {
        const int blk = i / b;
        const float scale = blk % 3 == 0 ? 1.0f : blk % 3 == 1 ? 0.01f : 30.0f;
        tmp[i] = gauss() * scale + (blk % 4 == 3 ? 0.5f * scale : 0.0f); /* some blocks off-centre */
    }
    if (n / b > 2) memset(tmp + b, 0, (size_t)b * sizeof(float));
    pg_quantize_row_ref(t, n, tmp, w);
}

typedef struct {
    double exact, tol;
} dot_expect;

/* The exact dot of dequantized w and x, and the tolerance of the header. */
static dot_expect dot_expect_(pg_type t, int n, const void *w, const void *xq, float *wd, float *xd) {
    const pg_type vt = pg_vec_dot_type(t);
    pg_dequantize_row_ref(t, n, w, wd);
    pg_dequantize_row_ref(vt, n, xq, xd);
    double exact = 0, mag = 0, wmax = 0, xabs = 0;
    for (int i = 0; i < n; i++) {
        exact += (double)wd[i] * xd[i];
        mag += fabs((double)wd[i] * xd[i]);
        wmax = fmax(wmax, fabs(wd[i]));
        xabs += fabs(xd[i]);
    }
    const int nb = n / blck_(t);
    double tol = 4.0 * (nb + 8) * EPS * (mag + (has_min_(t) ? wmax * xabs : 0)) + 1e-30;
    if (t == PG_TYPE_Q4_1 || t == PG_TYPE_Q5_1) {
        const block_q8_1 *x = xq;
        for (int b = 0; b < nb; b++) {
            const uint16_t m = t == PG_TYPE_Q4_1 ? ((const block_q4_1 *)w)[b].m : ((const block_q5_1 *)w)[b].m;
            double sq = 0;
            for (int j = 0; j < 32; j++) sq += abs(x[b].qs[j]);
            tol += ldexp(1.0, -9) * fabs(pg_f16_to_f32(m)) * pg_f16_to_f32(x[b].d) * sq;
        }
    }
    return (dot_expect){exact, tol};
}

static void test_dot_products(void) {
    static const int NBLOCKS[] = {1, 2, 3, 5, 8, 17};
    const int NMAX = 17 * 256;
    float *xf = xmalloc(NMAX * 4), *wf = xmalloc(NMAX * 4), *wd = xmalloc(NMAX * 4), *xd = xmalloc(NMAX * 4);
    void *w = xmalloc(NMAX * 2), *xq = xmalloc(NMAX * 2);
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type t = FORMATS[fi].t, vt = pg_vec_dot_type(t);
        pg_dot_fn ref = pg_dot_ref(t);
        CHECK(ref != NULL, "%s has no reference dot", pg_type_name(t));
        CHECK(vt == PG_TYPE_Q8_0 || vt == PG_TYPE_Q8_1 || vt == PG_TYPE_Q8_K || vt == PG_TYPE_Q16_0, "%s: vec_dot_type %s",
              pg_type_name(t), pg_type_name(vt));
        if (!ref) continue;
        for (size_t k = 0; k < sizeof NBLOCKS / sizeof *NBLOCKS; k++) {
            const int n = NBLOCKS[k] * blck_(t);
            if (n % pg_type_info(vt)->blck) continue;
            for (int rep = 0; rep < 3; rep++) {
                make_weights_(t, n, wf, w);
                for (int i = 0; i < n; i++) xf[i] = rep == 2 ? fabsf(gauss()) * 4 : gauss() * (1 + i % 7);
                pg_quantize_row_ref(vt, n, xf, xq);
                const dot_expect ex = dot_expect_(t, n, w, xq, wd, xd);
                const float r = ref(n, w, xq);
                CHECK(fabs(r - ex.exact) <= ex.tol, "%s ref n=%d: %.9g vs exact %.9g (tol %g)", pg_type_name(t),
                      n, r, ex.exact, ex.tol);
                for (int isa = 0; isa < n_isas(); isa++) {
                    pg_kernels_init(isa);
                    CHECK(pgk.dot[t] != NULL, "%s: no %s kernel", pg_isa_name(pgk.isa), pg_type_name(t));
                    if (!pgk.dot[t]) continue;
                    const float s = pgk.dot[t](n, w, xq);
                    CHECK(fabs((double)s - ex.exact) <= ex.tol, "%s %s n=%d: %.9g vs exact %.9g, ref %.9g (tol %g)",
                          pg_isa_name(pgk.isa), pg_type_name(t), n, s, ex.exact, r, ex.tol);
                }
            }
        }
    }
    pg_kernels_init(-1);
    free(xf), free(wf), free(wd), free(xd), free(w), free(xq);
}

/* A weight of exactly representable values must give the exact dot. */
static void test_dot_known(void) {
    /* Q4_0 block: d = 1, q = j % 16 -> w = q - 8; Q8_0 activation d = 1, x = j - 16 */
    block_q4_0 w;
    block_q8_0 x;
    w.d = pg_f32_to_f16(1.0f);
    x.d = pg_f32_to_f16(1.0f);
    long want = 0;
    for (int j = 0; j < 16; j++) w.qs[j] = (uint8_t)(j | (15 - j) << 4);
    for (int j = 0; j < 32; j++) x.qs[j] = (int8_t)(j - 16);
    for (int j = 0; j < 16; j++) want += (long)(j - 8) * (j - 16) + (long)(15 - j - 8) * (j + 16 - 16);
    CHECK(pg_dot_q4_0_ref(32, &w, &x) == (float)want, "q4_0 known dot %g, want %ld", pg_dot_q4_0_ref(32, &w, &x), want);
    /* Q8_K: bsums are the 16-sums of qs */
    float xf[256];
    for (int i = 0; i < 256; i++) xf[i] = (float)((i * 37) % 101 - 50);
    block_q8_K y;
    pg_quantize_q8_K_ref(256, xf, &y);
    for (int s = 0; s < 16; s++) {
        int sum = 0;
        for (int j = 0; j < 16; j++) sum += y.qs[16 * s + j];
        CHECK(y.bsums[s] == sum, "bsums[%d] %d vs %d", s, y.bsums[s], sum);
    }
    /* -50 is the extreme: it maps to -127 exactly */
    int found = 0;
    for (int i = 0; i < 256; i++)
        if (xf[i] == -50.0f) found += y.qs[i] == -127;
    CHECK(found > 0, "the extreme maps to -127");
    CHECK(fabsf(y.d * 127 - 50) < 1e-4f, "q8_K d %g", y.d);
}

/* ---- activation quantizers of every ISA ---------------------------------------------------- */

static void test_activation_quantizers(void) {
    const int n = 9 * 256;
    float *x = xmalloc(n * 4);
    block_q8_1 *a1 = xmalloc(n / 32 * sizeof *a1), *b1 = xmalloc(n / 32 * sizeof *b1);
    block_q8_K *aK = xmalloc(n / 256 * sizeof *aK), *bK = xmalloc(n / 256 * sizeof *bK);
    for (int i = 0; i < n; i++) {
        const int mode = (i / 256) % 4;
        x[i] = mode == 0 ? gauss() : mode == 1 ? (float)((int)(test_rnd() * 254)) * 0.5f : mode == 2 ? test_rnd() * 1e-6f : 0.0f;
    }
    pg_quantize_q8_1_ref(n, x, a1);
    pg_quantize_q8_K_ref(n, x, aK);
    for (int i = 0; i < n / 32; i++) {
        int sum = 0;
        for (int j = 0; j < 32; j++) sum += a1[i].qs[j];
        /* s is d * sum(q) with d before its rounding to half, as ggml */
        float amax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * i + j]));
        CHECK(a1[i].d == pg_f32_to_f16(amax / 127) && a1[i].s == pg_f32_to_f16(sum * (amax / 127)),
              "q8_1 block %d: d %04x s %04x", i, a1[i].d, a1[i].s);
    }
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        memset(b1, 0x55, n / 32 * sizeof *b1);
        memset(bK, 0x55, n / 256 * sizeof *bK);
        pgk.quantize_q8_1(n, x, b1);
        pgk.quantize_q8_K(n, x, bK);
        CHECK(memcmp(a1, b1, n / 32 * sizeof *a1) == 0, "%s quantize_q8_1 differs from the reference",
              pg_isa_name(pgk.isa));
        CHECK(memcmp(aK, bK, n / 256 * sizeof *aK) == 0, "%s quantize_q8_K differs from the reference",
              pg_isa_name(pgk.isa));
    }
    pg_kernels_init(-1);
    /* Q16_0 (Q8_0's activations): d = amax / 32767 as a float, each element
     * within d / 2 of its value, the largest at +-32767, a zero block zero;
     * through the table bit-identical to the reference */
    block_q16_0 *a16 = xmalloc(n / 32 * sizeof *a16), *b16 = xmalloc(n / 32 * sizeof *b16);
    pg_quantize_q16_0_ref(n, x, a16);
    bool ok16 = true;
    for (int i = 0; i < n / 32 && ok16; i++) {
        float amax = 0;
        int qmax = 0;
        for (int j = 0; j < 32; j++) amax = fmaxf(amax, fabsf(x[32 * i + j]));
        ok16 = a16[i].d == amax / 32767.0f;
        for (int j = 0; j < 32 && ok16; j++) {
            /* float rounding of x / d and of q * d: a few ulps of |x| */
            ok16 = fabsf(a16[i].qs[j] * a16[i].d - x[32 * i + j]) <= 0.5f * a16[i].d + 4e-7f * fabsf(x[32 * i + j]);
            qmax = abs(a16[i].qs[j]) > qmax ? abs(a16[i].qs[j]) : qmax;
        }
        ok16 = ok16 && qmax == (amax > 0 ? 32767 : 0);
        CHECK(ok16, "q16_0 block %d: d %g, amax %g, qmax %d", i, a16[i].d, amax, qmax);
    }
    for (int isa = 0; isa < n_isas(); isa++) {
        pg_kernels_init(isa);
        memset(b16, 0x55, n / 32 * sizeof *b16);
        pgk.quantize_q16_0(n, x, b16);
        CHECK(memcmp(a16, b16, n / 32 * sizeof *a16) == 0, "%s quantize_q16_0 differs from the reference",
              pg_isa_name(pgk.isa));
    }
    pg_kernels_init(-1);
    free(a16), free(b16);
    free(x), free(a1), free(b1), free(aK), free(bK);
}

/* ---- quantize -> dequantize error ---------------------------------------------------------- */

static void test_quantize_error(void) {
    const int n = 64 * 256;
    float *x = xmalloc(n * 4), *y = xmalloc(n * 4);
    void *q = xmalloc(n * 2);
    for (int i = 0; i < n; i++) x[i] = gauss();
    double ss = 0;
    for (int i = 0; i < n; i++) ss += (double)x[i] * x[i];
    double rms_of[PG_TYPE_COUNT] = {0};
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type t = FORMATS[fi].t;
        pg_quantize_row_ref(t, n, x, q);
        pg_dequantize_row_ref(t, n, q, y);
        double se = 0;
        for (int i = 0; i < n; i++) se += ((double)y[i] - x[i]) * ((double)y[i] - x[i]);
        const double rel = sqrt(se / ss);
        rms_of[t] = rel;
        fprintf(stderr, "  %-7s %.2f bits/weight  relative RMS error %.5f (bound %.4f)\n", pg_type_name(t),
                8.0 * pg_type_info(t)->type_size / pg_type_info(t)->blck, rel, FORMATS[fi].rms_bound);
        CHECK(rel < FORMATS[fi].rms_bound, "%s: relative RMS error %.5f >= %.4f", pg_type_name(t), rel,
              FORMATS[fi].rms_bound);
        /* deterministic */
        void *q2 = xmalloc(n * 2);
        pg_quantize_row_ref(t, n, x, q2);
        CHECK(memcmp(q, q2, pg_row_bytes(t, n)) == 0, "%s: quantizer not deterministic", pg_type_name(t));
        free(q2);
    }
    /* more bits, less error; the K-quants and IQ4 at least as good as the 32-element formats of their size */
    CHECK(rms_of[PG_TYPE_Q6_K] < rms_of[PG_TYPE_Q5_K], "Q6_K vs Q5_K");
    CHECK(rms_of[PG_TYPE_Q5_K] < rms_of[PG_TYPE_Q4_K], "Q5_K vs Q4_K");
    CHECK(rms_of[PG_TYPE_Q4_K] < rms_of[PG_TYPE_Q3_K], "Q4_K vs Q3_K");
    CHECK(rms_of[PG_TYPE_Q3_K] < rms_of[PG_TYPE_Q2_K], "Q3_K vs Q2_K");
    CHECK(rms_of[PG_TYPE_Q4_K] < rms_of[PG_TYPE_Q4_0], "Q4_K vs Q4_0");
    CHECK(rms_of[PG_TYPE_Q5_K] < rms_of[PG_TYPE_Q5_0], "Q5_K vs Q5_0");
    CHECK(rms_of[PG_TYPE_IQ4_NL] < rms_of[PG_TYPE_Q4_0], "IQ4_NL vs Q4_0");
    CHECK(rms_of[PG_TYPE_IQ4_XS] < rms_of[PG_TYPE_Q4_0], "IQ4_XS vs Q4_0");
    /* ternary data is exact in the ternary formats (up to the half scale) */
    for (int i = 0; i < n; i++) x[i] = (float)((int)(test_rng_u64() % 3) - 1) * 0.75f;
    for (int k = 0; k < 2; k++) {
        const pg_type t = k ? PG_TYPE_TQ2_0 : PG_TYPE_TQ1_0;
        pg_quantize_row_ref(t, n, x, q);
        pg_dequantize_row_ref(t, n, q, y);
        CHECK(memcmp(x, y, (size_t)n * 4) == 0, "%s: ternary data not exact", pg_type_name(t));
    }
    /* zeros stay zeros; NaN-free extremes stay finite */
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type t = FORMATS[fi].t;
        const int m = 2 * 256;
        memset(x, 0, m * 4);
        pg_quantize_row_ref(t, m, x, q);
        pg_dequantize_row_ref(t, m, q, y);
        int nz = 0;
        for (int i = 0; i < m; i++) nz += y[i] != 0;
        CHECK(nz == 0, "%s: zeros give %d non-zeros", pg_type_name(t), nz);
        for (int i = 0; i < m; i++) x[i] = (i % 5 == 0 ? 60000.0f : 1e-3f) * (i % 2 ? -1 : 1);
        pg_quantize_row_ref(t, m, x, q);
        pg_dequantize_row_ref(t, m, q, y);
        int nf = 0;
        for (int i = 0; i < m; i++) nf += !isfinite(y[i]);
        CHECK(nf == 0, "%s: extremes give %d non-finite values", pg_type_name(t), nf);
    }
    free(x), free(y), free(q);
}

/* ---- matmul ------------------------------------------------------------------------------- */

static void test_matmul_formats(void) {
    pg_pool *pools[2] = {pg_pool_new(1), pg_pool_new(2)};
    const int rows = 37, T_MAX = 5;
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type t = FORMATS[fi].t;
        for (int nbk = 1; nbk <= 3; nbk += 2) {
            const int cols = nbk * blck_(t), ldx = cols + 3, ldy = rows + 2;
            const size_t rb = pg_row_bytes(t, cols);
            uint8_t *W = xmalloc(rb * rows);
            float *tmp = xmalloc((size_t)cols * 4), *wd = xmalloc((size_t)rows * cols * 4);
            for (int r = 0; r < rows; r++) {
                make_weights_(t, cols, tmp, W + rb * r);
                pg_dequantize_row_ref(t, cols, W + rb * r, wd + (size_t)r * cols);
            }
            float *X = xmalloc((size_t)T_MAX * ldx * 4), *Y = xmalloc((size_t)T_MAX * ldy * 4),
                  *Yr = xmalloc((size_t)T_MAX * ldy * 4);
            for (int i = 0; i < T_MAX * ldx; i++) X[i] = gauss();
            pg_mat M = {.type = t, .rows = rows, .cols = cols, .row_bytes = rb, .data = W};
            for (int T = 1; T <= T_MAX; T++) {
                pg_matmul_ref(&M, T, X, ldx, Yr, ldy);
                for (int isa = 0; isa < n_isas(); isa++) {
                    pg_kernels_init(isa);
                    for (int pi = 0; pi < 2; pi++) {
                        memset(Y, 0, (size_t)T_MAX * ldy * 4);
                        pg_matmul(pools[pi], &M, T, X, ldx, Y, ldy, NULL);
                        int bad = 0;
                        for (int tt = 0; tt < T; tt++)
                            for (int r = 0; r < rows; r++) {
                                const float a = Y[(size_t)tt * ldy + r], b = Yr[(size_t)tt * ldy + r];
                                /* scalar: the same computation; SIMD: the dot tolerance, with
                                 * the quantized activation's error bounded by 1% of sum |w x| */
                                double mag = 0, wmax = 0, xabs = 0;
                                for (int c = 0; c < cols; c++) {
                                    const double wv = wd[(size_t)r * cols + c], xv = X[(size_t)tt * ldx + c];
                                    mag += fabs(wv * xv), wmax = fmax(wmax, fabs(wv)), xabs += fabs(xv);
                                }
                                const double tol = isa == 0 ? 0 : 1e-5 * (mag + wmax * xabs);
                                bad += !(fabs((double)a - b) <= tol);
                            }
                        CHECK(bad == 0, "%s %s cols=%d T=%d pool=%d: %d of %d outputs differ from the reference",
                              pg_isa_name(pgk.isa), pg_type_name(t), cols, T, pi + 1, bad, T * rows);
                    }
                }
            }
            /* and the reference matmul is the dot of the quantized activation */
            const pg_type vt = pg_vec_dot_type(t);
            void *xq = xmalloc(pg_row_bytes(vt, cols));
            pg_quantize_row_ref(vt, cols, X, xq);
            CHECK(Yr[5] == pg_dot_ref(t)(cols, W + rb * 5, xq), "%s: pg_matmul_ref row 5", pg_type_name(t));
            free(xq);
            free(W), free(tmp), free(wd), free(X), free(Y), free(Yr);
        }
    }
    pg_kernels_init(-1);
    pg_pool_free(pools[0]);
    pg_pool_free(pools[1]);
}

static void test_traits(void) {
    for (int fi = 0; fi < NFORMATS; fi++) {
        const pg_type_traits *tt = pg_type_info(FORMATS[fi].t);
        CHECK(tt && tt->can_compute, "%s computable", pg_type_name(FORMATS[fi].t));
    }
    CHECK(pg_type_info(PG_TYPE_IQ4_NL)->type_size == sizeof(block_iq4_nl), "iq4_nl size");
    CHECK(pg_type_info(PG_TYPE_IQ4_XS)->type_size == sizeof(block_iq4_xs), "iq4_xs size");
    CHECK(pg_type_info(PG_TYPE_Q8_K)->type_size == sizeof(block_q8_K), "q8_K size");
    CHECK(pg_type_info(PG_TYPE_TQ1_0)->type_size == sizeof(block_tq1_0), "tq1_0 size");
    CHECK(pg_type_info(PG_TYPE_MXFP4)->type_size == sizeof(block_mxfp4), "mxfp4 size");
    CHECK(pg_vec_dot_type(PG_TYPE_F16) == PG_TYPE_F32, "f16 dot type");
    CHECK(pg_vec_dot_type(PG_TYPE_Q4_1) == PG_TYPE_Q8_1, "q4_1 dot type");
    CHECK(pg_vec_dot_type(PG_TYPE_IQ4_XS) == PG_TYPE_Q8_K, "iq4_xs dot type");
    CHECK(pg_vec_dot_type(PG_TYPE_MXFP4) == PG_TYPE_Q8_0, "mxfp4 dot type");
    CHECK(pg_e8m0_to_f32_half(128) == 1.0f && pg_e8m0_to_f32_half(1) == ldexpf(1.0f, -127), "e8m0");
}

int main(void) {
    test_rng_state = 0x2545f4914f6cdd1dull;
    const char *seed = getenv("PG_TEST_SEED");
    if (seed && strtoull(seed, NULL, 0)) test_rng_state = strtoull(seed, NULL, 0);
    TEST_RUN(test_traits);
    TEST_RUN(test_dequantize_fixtures);
    TEST_RUN(test_dot_known);
    TEST_RUN(test_dot_products);
    TEST_RUN(test_activation_quantizers);
    TEST_RUN(test_quantize_error);
    TEST_RUN(test_matmul_formats);
    return test_summary("test_quants");
}
