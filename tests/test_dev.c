/* test_dev.c - a device (dev.h) against the CPU kernels: every kernel of
 * pg_dev_ops on random inputs (fixed seed), run on the device (upload,
 * queue, download) and compared with the CPU kernel forward.c uses for the
 * same step, run on the host; then the device's contract: upload_async
 * copies its source at the call, operations run in the order queued, and a
 * slot refill waits for the slot's fence and for nothing else.
 *
 * The device is PREGATE_TEST_DEV: "standin" (default) or "cuda" (skipped
 * when pregate was built without CUDA or there is no GPU).
 *
 * Tolerances. The stand-in runs the CPU kernels themselves, so it must
 * match bit for bit (every tolerance is 0). Another device is held to a
 * relative error on each output, max |got - want| / max |want|:
 *   copies, add, add_bias, clamp, zero, embed of F32/F16/BF16    0
 *   embed of quantized rows (d * q with or without an FMA)        1e-6
 *   rmsnorm, rope, silu_mul, moe_combine, gated_add              1e-5
 *   attention (float dots, softmax over <= 8 positions)          1e-4
 *   matmul F32 1e-5, F16 2e-3, BF16 1e-2 (activations may be rounded to
 *   the weights' type), Q8_0 Q4_0 Q4_K Q5_K Q6_K 2e-2 (the CPU quantizes
 *   activations to Q8_0/Q8_K, a GPU may use Q8_1 or floats: each element
 *   is off by up to half a step of 1/127 of its block's largest value).
 * The slot fence's timing part runs on the stand-in only (a delay of
 * 20 ms per kernel makes its stream lag behind the host).
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dev/dev.h"
#include "kernels/kernels.h"
#include "test.h"
#include "util.h"

static pg_dev *dev;      /* the device under test */
static bool standin;     /* it is the stand-in: bit-exact, and the timing tests run */

static const double TOL_DEQUANT = 1e-6, TOL_FLOAT = 1e-5, TOL_ATTENTION = 1e-4;

/* ---- inputs ---------------------------------------------------------------------- */


static float *random_floats(size_t n, float scale) {
    float *x = xmalloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) x[i] = test_rnd() * scale;
    return x;
}

static float *copy_floats(const float *x, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    memcpy(y, x, n * sizeof(float));
    return y;
}

/* ---- the device: memory in and out ------------------------------------------------- */

/* Device memory holding a copy of host bytes. */
static void *on_dev(pg_dev *d, const void *host, size_t bytes) {
    void *p = d->ops->alloc(d, bytes);
    PG_ASSERT(p);
    pg_error e = {{0}};
    CHECK(d->ops->upload(d, p, host, bytes, &e) == 0, "upload: %s", e.msg);
    return p;
}

static void *floats_on_dev(const float *host, size_t n) { return on_dev(dev, host, n * sizeof(float)); }

static void from_dev(pg_dev *d, void *host, const void *p, size_t bytes) {
    pg_error e = {{0}};
    CHECK(d->ops->download(d, host, p, bytes, &e) == 0, "download: %s", e.msg);
}

static float *floats_from_dev(const float *p, size_t n) {
    float *y = xmalloc(n * sizeof(float));
    from_dev(dev, y, p, n * sizeof(float));
    return y;
}

static void dev_free(void *p) { dev->ops->free(dev, p); }

/* ---- comparisons ------------------------------------------------------------------- */

/* got against want: bit for bit on the stand-in, else within tol (the
 * relative error above); a NaN in got always fails. */
static void expect_close(const char *what, const float *got, const float *want, size_t n, double tol) {
    if (standin) {
        size_t bad = 0, first = 0;
        for (size_t i = 0; i < n; i++)
            if (memcmp(&got[i], &want[i], sizeof(float)) && bad++ == 0) first = i;
        CHECK(bad == 0, "%s: %zu of %zu values differ, first [%zu] %.9g against %.9g", what, bad, n, first,
              got[first], want[first]);
        return;
    }
    double max_err = 0, max_ref = 0;
    size_t nan = 0;
    for (size_t i = 0; i < n; i++) {
        nan += isnan(got[i]) != 0;
        max_err = fmax(max_err, fabs((double)got[i] - want[i]));
        max_ref = fmax(max_ref, fabs((double)want[i]));
    }
    double rel = max_ref > 0 ? max_err / max_ref : max_err;
    CHECK(!nan && rel <= tol, "%s: relative error %.3g (bound %.3g), %zu NaN", what, rel, tol, nan);
}

/* ---- kernels ------------------------------------------------------------------------ */

static void test_memory(void) {
    pg_error e = {{0}};
    float *x = random_floats(100, 1), *back;
    float *dx = floats_on_dev(x, 100);
    back = floats_from_dev(dx, 100);
    CHECK(!memcmp(back, x, 100 * sizeof(float)), "upload then download changed the bytes");
    void *h = dev->ops->host_alloc(dev, 4096);
    CHECK(h != NULL, "host_alloc");
    dev->ops->host_free(dev, h);
    dev->ops->free(dev, NULL);
    CHECK(dev->ops->sync(dev, &e) == 0, "sync: %s", e.msg);
    dev_free(dx);
    free(x);
    free(back);
}

/* n_rows rows of `cols` random floats as `type`, on the host (w->data) and on the device. */
static void make_weights(pg_type type, int n_rows, int cols, pg_mat *host, pg_mat *on_device) {
    float *f = random_floats((size_t)n_rows * cols, 1);
    size_t rb = pg_row_bytes(type, cols);
    char *q = xmalloc((size_t)n_rows * rb);
    for (int r = 0; r < n_rows; r++) pg_quantize_row_ref(type, cols, f + (size_t)r * cols, q + (size_t)r * rb);
    *host = (pg_mat){type, n_rows, cols, rb, q};
    *on_device = *host;
    on_device->data = on_dev(dev, q, (size_t)n_rows * rb);
    free(f);
}

static void free_weights(pg_mat *host, pg_mat *on_device) {
    free((void *)host->data);
    dev_free((void *)on_device->data);
}

static void test_embed(void) {
    const pg_type types[] = {PG_TYPE_F32, PG_TYPE_F16, PG_TYPE_BF16, PG_TYPE_Q8_0, PG_TYPE_Q4_0, PG_TYPE_Q4_K};
    const int32_t tokens[] = {3, 0, 10, 3, 7};
    const int T = 5, n_rows = 11, cols = 256;
    int32_t *dtok = on_dev(dev, tokens, sizeof tokens);
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        pg_mat W, dW;
        make_weights(types[i], n_rows, cols, &W, &dW);
        float *want = xmalloc((size_t)T * cols * sizeof(float)), *dx = dev->ops->alloc(dev, (size_t)T * cols * 4);
        for (int t = 0; t < T; t++) pg_mat_row_f32(&W, tokens[t], want + (size_t)t * cols);
        dev->ops->embed(dev, &dW, T, dtok, dx);
        float *got = floats_from_dev(dx, (size_t)T * cols);
        char what[64];
        snprintf(what, sizeof what, "embed %s", pg_type_name(types[i]));
        bool plain = types[i] == PG_TYPE_F32 || types[i] == PG_TYPE_F16 || types[i] == PG_TYPE_BF16;
        expect_close(what, got, want, (size_t)T * cols, plain ? 0 : TOL_DEQUANT);
        free(got);
        free(want);
        dev_free(dx);
        free_weights(&W, &dW);
    }
    dev_free(dtok);
}

static void test_rmsnorm(void) {
    const int rows = 3, n = 100;
    const float eps = 1e-5f;
    float *x = random_floats((size_t)rows * n, 2), *w = random_floats(n, 1);
    float *want = xmalloc((size_t)rows * n * sizeof(float));
    for (int r = 0; r < rows; r++) pgk.rmsnorm(n, x + (size_t)r * n, w, eps, want + (size_t)r * n);
    float *dx = floats_on_dev(x, (size_t)rows * n), *dw = floats_on_dev(w, n);
    float *dy = dev->ops->alloc(dev, (size_t)rows * n * sizeof(float));
    dev->ops->rmsnorm(dev, rows, n, dx, dw, eps, dy);
    float *got = floats_from_dev(dy, (size_t)rows * n);
    expect_close("rmsnorm", got, want, (size_t)rows * n, TOL_FLOAT);
    free(got);
    dev->ops->rmsnorm(dev, rows, n, dx, dw, eps, dx); /* in place */
    got = floats_from_dev(dx, (size_t)rows * n);
    expect_close("rmsnorm in place", got, want, (size_t)rows * n, TOL_FLOAT);
    free(got);
    free(x), free(w), free(want);
    dev_free(dx), dev_free(dw), dev_free(dy);
}

typedef struct {
    pg_type type;
    double tol;
    int odd_cols; /* a column count that is not a multiple of 256 (0: the format has none) */
} matmul_case;

/* Y (T rows at stride ldy) against the CPU's, with rows and strides
 * that leave gaps in X and Y: the gaps of Y must keep their bytes. */
static void matmul_one(const matmul_case *c, int cols, int T) {
    const int n_rows = 37, ldx = cols + 5, ldy = n_rows + 3;
    const float sentinel = 1234.5f;
    pg_mat W, dW;
    make_weights(c->type, n_rows, cols, &W, &dW);
    float *X = random_floats((size_t)T * ldx, 1), *want = xmalloc((size_t)T * ldy * sizeof(float));
    for (size_t i = 0; i < (size_t)T * ldy; i++) want[i] = sentinel;
    float *dX = floats_on_dev(X, (size_t)T * ldx), *dY = floats_on_dev(want, (size_t)T * ldy);
    pg_matmul(NULL, &W, T, X, ldx, want, ldy, NULL);
    dev->ops->matmul(dev, &dW, T, dX, ldx, dY, ldy);
    float *got = floats_from_dev(dY, (size_t)T * ldy);
    float *got_rows = xmalloc((size_t)T * n_rows * sizeof(float)), *want_rows = xmalloc((size_t)T * n_rows * 4);
    int gaps_changed = 0;
    for (int t = 0; t < T; t++) {
        memcpy(got_rows + (size_t)t * n_rows, got + (size_t)t * ldy, (size_t)n_rows * sizeof(float));
        memcpy(want_rows + (size_t)t * n_rows, want + (size_t)t * ldy, (size_t)n_rows * sizeof(float));
        for (int r = n_rows; r < ldy; r++) gaps_changed += got[(size_t)t * ldy + r] != sentinel;
    }
    char what[80];
    snprintf(what, sizeof what, "matmul %s T=%d cols=%d", pg_type_name(c->type), T, cols);
    expect_close(what, got_rows, want_rows, (size_t)T * n_rows, c->tol);
    CHECK(gaps_changed == 0, "%s: %d values between rows of Y (stride %d) changed", what, gaps_changed, ldy);
    free(X), free(want), free(got), free(got_rows), free(want_rows);
    dev_free(dX), dev_free(dY);
    free_weights(&W, &dW);
}

static void test_matmul(void) {
    const matmul_case cases[] = {
        {PG_TYPE_F32, 1e-5, 300},  {PG_TYPE_F16, 2e-3, 300},  {PG_TYPE_BF16, 1e-2, 300},
        {PG_TYPE_Q8_0, 2e-2, 288}, {PG_TYPE_Q4_0, 2e-2, 288}, {PG_TYPE_Q4_K, 2e-2, 0},
        {PG_TYPE_Q5_K, 2e-2, 0},   {PG_TYPE_Q6_K, 2e-2, 0},
    };
    const int Ts[] = {1, 3, 17};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        for (size_t j = 0; j < sizeof Ts / sizeof Ts[0]; j++) {
            matmul_one(&cases[i], 512, Ts[j]);
            if (cases[i].odd_cols) matmul_one(&cases[i], cases[i].odd_cols, Ts[j]);
        }
}

/* add_bias, add, clamp, zero */
static void test_elementwise(void) {
    const int T = 3, n = 70;
    const size_t N = (size_t)T * n;
    float *x = random_floats(N, 3), *b = random_floats(n, 1), *y = random_floats(N, 1);
    float *want = copy_floats(x, N);
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) want[(size_t)t * n + i] += b[i];
    float *dx = floats_on_dev(x, N), *db = floats_on_dev(b, n), *dy = floats_on_dev(y, N);
    dev->ops->add_bias(dev, T, n, dx, db);
    float *got = floats_from_dev(dx, N);
    expect_close("add_bias", got, want, N, 0);
    free(got);

    for (size_t i = 0; i < N; i++) want[i] = y[i] + want[i];
    dev->ops->add(dev, N, dy, dx);
    got = floats_from_dev(dy, N);
    expect_close("add", got, want, N, 0);
    free(got);

    const float c = 1.5f;
    for (size_t i = 0; i < N; i++) want[i] = want[i] > c ? c : want[i] < -c ? -c : want[i];
    dev->ops->clamp(dev, N, dy, c);
    got = floats_from_dev(dy, N);
    expect_close("clamp", got, want, N, 0);
    free(got);

    memset(want, 0, 10 * sizeof(float));
    dev->ops->zero(dev, 10, dy); /* the first 10 only */
    got = floats_from_dev(dy, N);
    expect_close("zero", got, want, N, 0);
    free(got);
    free(x), free(b), free(y), free(want);
    dev_free(dx), dev_free(db), dev_free(dy);
}

static void test_rope(void) {
    const int T = 3, n_heads = 4, hd = 16, pos[] = {0, 5, 17};
    const size_t N = (size_t)T * n_heads * hd;
    const float attn_factor = 1.25f;
    int *dpos = on_dev(dev, pos, sizeof pos);
    const int n_rots[] = {12, hd}; /* part of each head, all of it */
    for (int r = 0; r < 2; r++)
        for (int neox = 0; neox <= 1; neox++) {
            const int n_rot = n_rots[r];
            float inv_freq[16], cs[16];
            for (int i = 0; i < n_rot / 2; i++) inv_freq[i] = powf(10000.0f, -2.0f * i / n_rot);
            float *x = random_floats(N, 1), *want = copy_floats(x, N);
            for (int t = 0; t < T; t++) {
                pg_rope_cache_freqs(pos[t], n_rot, inv_freq, attn_factor, cs);
                pg_rope_apply(want + (size_t)t * n_heads * hd, n_heads, hd, n_rot, cs, neox);
            }
            float *dx = floats_on_dev(x, N), *dfreq = floats_on_dev(inv_freq, n_rot / 2);
            dev->ops->rope(dev, T, dx, n_heads, hd, n_rot, dpos, dfreq, attn_factor, neox);
            float *got = floats_from_dev(dx, N);
            char what[64];
            snprintf(what, sizeof what, "rope n_rot=%d neox=%d", n_rot, neox);
            expect_close(what, got, want, N, TOL_FLOAT);
            free(x), free(want), free(got);
            dev_free(dx), dev_free(dfreq);
        }
    dev_free(dpos);
}

/* set_rows, gather_rows, scatter_rows */
static void test_rows(void) {
    const int n_ctx = 9, n = 3, D = 21, idx[] = {2, 8, 5};
    const size_t C = (size_t)n_ctx * D, R = (size_t)n * D;
    float *cache = random_floats(C, 1), *src = random_floats(R, 1);
    float *want = copy_floats(cache, C);
    for (int i = 0; i < n; i++) memcpy(want + (size_t)idx[i] * D, src + (size_t)i * D, D * sizeof(float));
    float *dcache = floats_on_dev(cache, C), *dsrc = floats_on_dev(src, R);
    int *didx = on_dev(dev, idx, sizeof idx);
    dev->ops->set_rows(dev, n, D, dsrc, didx, dcache);
    float *got = floats_from_dev(dcache, C);
    expect_close("set_rows", got, want, C, 0);
    free(got);

    const int sidx[] = {4, 0, 6};
    float *src2 = random_floats(R, 1);
    for (int i = 0; i < n; i++) memcpy(want + (size_t)sidx[i] * D, src2 + (size_t)i * D, D * sizeof(float));
    float *dsrc2 = floats_on_dev(src2, R);
    int *dsidx = on_dev(dev, sidx, sizeof sidx);
    dev->ops->scatter_rows(dev, n, D, dsrc2, dsidx, dcache);
    got = floats_from_dev(dcache, C);
    expect_close("scatter_rows", got, want, C, 0);
    free(got), free(src2);
    dev_free(dsrc2), dev_free(dsidx);

    const int gidx[] = {7, 0, 7};
    int *dgidx = on_dev(dev, gidx, sizeof gidx);
    float *want_g = xmalloc(R * sizeof(float));
    for (int i = 0; i < n; i++) memcpy(want_g + (size_t)i * D, want + (size_t)gidx[i] * D, D * sizeof(float));
    dev->ops->gather_rows(dev, n, D, dcache, dgidx, dsrc);
    got = floats_from_dev(dsrc, R);
    expect_close("gather_rows", got, want_g, R, 0);
    free(got);
    free(cache), free(src), free(want), free(want_g);
    dev_free(dcache), dev_free(dsrc), dev_free(didx), dev_free(dgidx);
}

/* GQA (H=4 over KV=2), 3 rows at increasing positions over a cache with
 * padded rows, full and sliding (window 3: first row sees all, the others
 * not), with and without sinks. */
static void test_attention(void) {
    const int T = 3, H = 4, KV = 2, hd = 16, n_ctx = 8, kv_stride = KV * hd + 8, pos[] = {2, 4, 6};
    const size_t qn = (size_t)T * H * hd, kn = (size_t)n_ctx * kv_stride;
    float *q = random_floats(qn, 1), *k = random_floats(kn, 1), *v = random_floats(kn, 1);
    float *sinks = random_floats(H, 2), att[16];
    float *dq = floats_on_dev(q, qn), *dk = floats_on_dev(k, kn), *dv = floats_on_dev(v, kn);
    float *dsinks = floats_on_dev(sinks, H), *dout = dev->ops->alloc(dev, qn * sizeof(float));
    int *dpos = on_dev(dev, pos, sizeof pos);
    float *want = xmalloc(qn * sizeof(float));
    for (int window = 0; window <= 3; window += 3)
        for (int with_sinks = 0; with_sinks <= 1; with_sinks++) {
            for (int t = 0; t < T; t++) {
                int n_kv = pos[t] + 1, first = window > 0 && n_kv > window ? n_kv - window : 0;
                pg_attention_ext(NULL, q + (size_t)t * H * hd, k, v, kv_stride, first, n_kv, H, KV, hd,
                                 with_sinks ? sinks : NULL, att, want + (size_t)t * H * hd);
            }
            dev->ops->attention(dev, T, dq, dk, dv, kv_stride, dpos, window, H, KV, hd, with_sinks ? dsinks : NULL,
                                dout);
            float *got = floats_from_dev(dout, qn);
            char what[64];
            snprintf(what, sizeof what, "attention window=%d sinks=%d", window, with_sinks);
            expect_close(what, got, want, qn, TOL_ATTENTION);
            free(got);
        }
    free(q), free(k), free(v), free(sinks), free(want);
    dev_free(dq), dev_free(dk), dev_free(dv), dev_free(dsinks), dev_free(dout), dev_free(dpos);
}

static void test_silu_mul(void) {
    const size_t n = 1001;
    float *g = random_floats(n, 6), *u = random_floats(n, 1), *want = xmalloc(n * sizeof(float));
    pgk.silu_mul((int)n, g, u, want);
    float *dg = floats_on_dev(g, n), *du = floats_on_dev(u, n), *dy = dev->ops->alloc(dev, n * sizeof(float));
    dev->ops->silu_mul(dev, n, dg, du, dy);
    float *got = floats_from_dev(dy, n);
    expect_close("silu_mul", got, want, n, TOL_FLOAT);
    free(got);
    dev->ops->silu_mul(dev, n, dg, du, dg); /* in place */
    got = floats_from_dev(dg, n);
    expect_close("silu_mul in place", got, want, n, TOL_FLOAT);
    free(got);
    free(g), free(u), free(want);
    dev_free(dg), dev_free(du), dev_free(dy);
}

/* moe_combine (acc is overwritten, not added to) and gated_add */
static void test_combine(void) {
    const int T = 3, K = 2, D = 50;
    const size_t N = (size_t)T * D;
    float *src = random_floats(N * K, 1), *w = random_floats((size_t)T * K, 1), *z = random_floats(T, 3);
    float *acc = random_floats(N, 7), *x = random_floats(N, 1), *want = xcalloc(N, sizeof(float));
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++)
            pgk.axpy(D, w[t * K + j], src + ((size_t)t * K + j) * D, want + (size_t)t * D);
    float *dsrc = floats_on_dev(src, N * K), *dw = floats_on_dev(w, (size_t)T * K), *dacc = floats_on_dev(acc, N);
    float *dz = floats_on_dev(z, T), *dx = floats_on_dev(x, N);
    dev->ops->moe_combine(dev, T, K, D, dsrc, dw, dacc);
    float *got = floats_from_dev(dacc, N);
    expect_close("moe_combine", got, want, N, TOL_FLOAT);
    free(got);

    for (int t = 0; t < T; t++) pgk.axpy(D, 1.0f / (1.0f + expf(-z[t])), x + (size_t)t * D, want + (size_t)t * D);
    dev->ops->gated_add(dev, T, D, dacc, dx, dz);
    got = floats_from_dev(dacc, N);
    expect_close("gated_add", got, want, N, TOL_FLOAT);
    free(got);

    for (int t = 0; t < T; t++) pgk.axpy(D, 1.0f, x + (size_t)t * D, want + (size_t)t * D);
    dev->ops->gated_add(dev, T, D, dacc, dx, NULL);
    got = floats_from_dev(dacc, N);
    expect_close("gated_add without a gate", got, want, N, TOL_FLOAT);
    free(got);
    free(src), free(w), free(z), free(acc), free(x), free(want);
    dev_free(dsrc), dev_free(dw), dev_free(dacc), dev_free(dz), dev_free(dx);
}

/* ---- the contract -------------------------------------------------------------------- */

/* upload_async takes the source's bytes at the call (the buffer is
 * overwritten at once), and copies keep their place among the kernels:
 * y = 0; x = a; y += x; x = b; y += x gives a + b. */
static void upload_async_on(pg_dev *d, const char *which) {
    const size_t n = 300;
    float *a = random_floats(n, 1), *b = random_floats(n, 1), *buf = xmalloc(n * sizeof(float));
    float *got = xmalloc(n * sizeof(float)), *want = xmalloc(n * sizeof(float));
    float *dx = d->ops->alloc(d, n * sizeof(float)), *dy = d->ops->alloc(d, n * sizeof(float));
    PG_ASSERT(dx && dy);
    d->ops->zero(d, n, dy); /* a kernel first, so that a stream that lags runs the copy late */
    memcpy(buf, a, n * sizeof(float));
    d->ops->upload_async(d, dx, buf, n * sizeof(float));
    memcpy(buf, b, n * sizeof(float));
    from_dev(d, got, dx, n * sizeof(float));
    CHECK(!memcmp(got, a, n * sizeof(float)), "%s: upload_async did not copy its source at the call", which);

    d->ops->zero(d, n, dy);
    d->ops->upload_async(d, dx, a, n * sizeof(float));
    d->ops->add(d, n, dy, dx);
    d->ops->upload_async(d, dx, b, n * sizeof(float));
    d->ops->add(d, n, dy, dx);
    for (size_t i = 0; i < n; i++) want[i] = (0.0f + a[i]) + b[i];
    from_dev(d, got, dy, n * sizeof(float));
    CHECK(!memcmp(got, want, n * sizeof(float)), "%s: copies and kernels ran out of order", which);
    d->ops->free(d, dx);
    d->ops->free(d, dy);
    free(a), free(b), free(buf), free(got), free(want);
}

static void test_upload_async(void) {
    upload_async_on(dev, dev->name);
    if (!standin) return;
    pg_error e = {{0}};
    pg_dev *slow = pg_dev_standin_new(20000, &e);
    CHECK(slow, "%s", e.msg);
    if (!slow) return;
    upload_async_on(slow, "stand-in with a delay");
    pg_dev_free(slow);
}

typedef struct {
    pg_dev *d;
    int slot;
    void *dst;
    const void *src;
    size_t bytes;
    int rc;
    double returned_at;
    pg_dev_slots *slots;
} fill_job;

static void *fill_thread(void *p) {
    fill_job *j = p;
    pg_error e = {{0}};
    j->rc = j->d->ops->fill_slot(j->d, j->slots, 0, j->slot, j->dst, j->src, j->bytes, &e);
    j->returned_at = pg_time_s();
    return NULL;
}

/* On a stand-in whose kernels take 20 ms each: a kernel reads slot 0, the
 * slot is fenced, 8 more kernels are queued, and another thread refills
 * the slot at once. The refill must wait for the reading kernel (its output
 * shows the old bytes; about 40 ms) but not for the kernels after the fence
 * (160 ms more). A slot never fenced is refilled at once. */
static void test_slot_fence(void) {
    if (!standin) TEST_SKIP("timing of the stand-in's stream (device %s)", dev->name);
    pg_error e = {{0}};
    pg_dev *d = pg_dev_standin_new(20000, &e);
    CHECK(d, "%s", e.msg);
    if (!d) return;
    pg_dev_slots *slots = d->ops->slots_new(d, 2, 1, &e);
    CHECK(slots != NULL, "slots_new: %s", e.msg);
    if (!slots) { pg_dev_free(d); return; }
    const size_t n = 64, bytes = n * sizeof(float);
    float *old = random_floats(n, 1), *fresh = random_floats(n, 1), *got = xmalloc(bytes);
    float *slot0 = on_dev(d, old, bytes), *slot1 = on_dev(d, old, bytes);
    float *out = d->ops->alloc(d, bytes), *other = d->ops->alloc(d, bytes);

    double t0 = pg_time_s();
    d->ops->zero(d, n, out);
    d->ops->add(d, n, out, slot0);
    d->ops->fence_slot(d, slots, 0);
    for (int i = 0; i < 8; i++) d->ops->zero(d, n, other);
    fill_job job = {d, 0, slot0, fresh, bytes, -1, 0, slots};
    pthread_t th;
    PG_ASSERT(pthread_create(&th, NULL, fill_thread, &job) == 0);
    pthread_join(th, NULL);
    double waited = job.returned_at - t0;
    CHECK(job.rc == 0, "fill_slot returned %d", job.rc);
    CHECK(waited >= 0.039, "the refill returned after %.1f ms, before the fenced kernels ran (40 ms)", waited * 1e3);
    CHECK(waited < 0.150, "the refill took %.1f ms: it waited for kernels queued after the fence", waited * 1e3);
    from_dev(d, got, out, bytes);
    CHECK(!memcmp(got, old, bytes), "the kernel before the fence read the refilled bytes");
    from_dev(d, got, slot0, bytes);
    CHECK(!memcmp(got, fresh, bytes), "the refill did not arrive");

    for (int i = 0; i < 10; i++) d->ops->zero(d, n, other);
    double t1 = pg_time_s();
    CHECK(d->ops->fill_slot(d, slots, 0, 1, slot1, fresh, bytes, &e) == 0, "fill_slot: %s", e.msg);
    double unfenced = pg_time_s() - t1;
    CHECK(unfenced < 0.100, "a slot never fenced took %.1f ms to refill", unfenced * 1e3);
    CHECK(d->ops->sync(d, &e) == 0, "sync: %s", e.msg);
    from_dev(d, got, slot1, bytes);
    CHECK(!memcmp(got, fresh, bytes), "the refill of the unfenced slot did not arrive");

    d->ops->free(d, slot0), d->ops->free(d, slot1), d->ops->free(d, out), d->ops->free(d, other);
    d->ops->slots_free(d, slots);
    pg_dev_free(d);
    free(old), free(fresh), free(got);
}

/* ---- main ------------------------------------------------------------------------------ */

static void test_open(void) {
    const char *name = getenv("PREGATE_TEST_DEV");
    if (!name || !*name) name = "standin";
    pg_error e = {{0}};
    pg_backend b;
    CHECK(pg_backend_parse(name, &b, &e) == 0, "PREGATE_TEST_DEV: %s", e.msg);
    if (e.msg[0]) return;
    dev = pg_dev_open(b, &e);
    if (!dev && b == PG_BACKEND_CUDA) TEST_SKIP("no CUDA device: %s", e.msg);
    CHECK(dev, "opening %s: %s", name, e.msg);
    standin = b == PG_BACKEND_STANDIN;
    if (dev) fprintf(stderr, "device: %s\n", dev->name);
}

int main(void) {
    test_rng_state = 0x2545f4914f6cdd1dull;
    pg_kernels_init(-1);
    TEST_RUN(test_open);
    if (dev) {
        TEST_RUN(test_memory);
        TEST_RUN(test_embed);
        TEST_RUN(test_rmsnorm);
        TEST_RUN(test_matmul);
        TEST_RUN(test_elementwise);
        TEST_RUN(test_rope);
        TEST_RUN(test_rows);
        TEST_RUN(test_attention);
        TEST_RUN(test_silu_mul);
        TEST_RUN(test_combine);
        TEST_RUN(test_upload_async);
        TEST_RUN(test_slot_fence);
        pg_dev_free(dev);
    }
    return test_summary("test_dev");
}
