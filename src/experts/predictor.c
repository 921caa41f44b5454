/* predictor.c - see predictor.h */
#include "predictor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "../gguf.h"
#include "../router.h"

void pg_fit_params_default(pg_fit_params *p) {
    *p = (pg_fit_params){.epochs = 200, .lr = 2e-3f, .holdout = 0.1f, .patience = 20, .depth = 1};
}

uint64_t pg_model_router_fingerprint(const pg_model *m) {
    uint64_t h = 1469598103934665603ull;
    for (int l = 0; l < m->hp.n_layer; l++) {
        const pg_mat *r = &m->layers[l].router;
        if (!m->layers[l].is_moe) continue;
        const unsigned char *p = r->data;
        size_t n = r->row_bytes * (size_t)r->rows;
        for (size_t i = 0; i < n; i += 7) h = (h ^ p[i]) * 1099511628211ull;
    }
    return h >> 1; /* fits a signed 64-bit GGUF integer read back */
}

/* h / rms(h), no weight (eps as small as the model's) */
static void normalize_(const float *h, int D, float eps, float *out) {
    double ss = 0;
    for (int i = 0; i < D; i++) ss += (double)h[i] * h[i];
    float inv = (float)(1.0 / sqrt(ss / D + eps));
    for (int i = 0; i < D; i++) out[i] = h[i] * inv;
}

void pg_predictor_logits(const pg_predictor *p, int t, const float *h, float *logits) {
    int E = p->n_expert, D = p->dim;
    float *xn = xmalloc((size_t)D * sizeof(float));
    normalize_(h, D, 1e-6f, xn);
    const float *W = p->w + (size_t)t * E * D;
    for (int e = 0; e < E; e++) {
        double z = p->b[(size_t)t * E + e];
        for (int i = 0; i < D; i++) z += (double)W[(size_t)e * D + i] * xn[i];
        logits[e] = (float)z;
    }
    free(xn);
}

/* loss and top-k recall of head (W, b) over samples [lo, hi) */
static void eval_(const float *X, const int16_t *Y, int lo, int hi, int E, int D, int k, const float *W, const float *b,
                  double *loss, double *recall) {
    float *z = xmalloc((size_t)E * sizeof(float));
    int *idx = xmalloc((size_t)k * sizeof(int));
    double L = 0;
    long hit = 0, tot = 0;
    for (int n = lo; n < hi; n++) {
        const float *x = X + (size_t)n * D;
        float mx = -INFINITY;
        for (int e = 0; e < E; e++) {
            double s = b[e];
            for (int i = 0; i < D; i++) s += (double)W[(size_t)e * D + i] * x[i];
            z[e] = (float)s;
            mx = z[e] > mx ? z[e] : mx;
        }
        double lse = 0;
        for (int e = 0; e < E; e++) lse += exp(z[e] - mx);
        lse = log(lse) + mx;
        pg_topk(z, E, k, idx);
        for (int j = 0; j < k; j++) {
            int y = Y[(size_t)n * k + j];
            if (y < 0) continue;
            L += (lse - z[y]) / k;
            for (int q = 0; q < k; q++) hit += idx[q] == y;
            tot++;
        }
    }
    *loss = hi > lo ? L / (hi - lo) : 0;
    *recall = tot ? (double)hit / tot : 0;
    free(z);
    free(idx);
}

static int fit_layer_(const pg_model *m, const pg_trace *tr, int t, const pg_fit_params *fp, pg_predictor *out,
                      pg_fit_layer_report *rep) {
    int E = tr->n_expert, D = tr->dim, k = tr->k, N = tr->n_pos;
    int n_val = (int)(N * fp->holdout), n_tr = N - n_val;
    if (n_val < 1) { n_val = N / 10 > 0 ? N / 10 : 1; n_tr = N - n_val; }
    float *X = xmalloc((size_t)N * D * sizeof(float)), *h = xmalloc((size_t)D * sizeof(float));
    int16_t *Y = xmalloc((size_t)N * k * sizeof(int16_t));
    for (int n = 0; n < N; n++) {
        int from = t - fp->depth + 1 > 0 ? t - fp->depth + 1 : 0; /* the head's input, see predictor.h */
        const uint16_t *src = tr->hidden + ((size_t)n * tr->n_layer + from) * D;
        for (int i = 0; i < D; i++) h[i] = pg_f16_to_f32(src[i]);
        normalize_(h, D, 1e-6f, X + (size_t)n * D);
        memcpy(Y + (size_t)n * k, tr->experts + ((size_t)n * tr->n_layer + t) * k, (size_t)k * sizeof(int16_t));
    }
    /* start from the borrowed router: router_t * diag(ffn_norm_t), its bias */
    const pg_layer *Lr = &m->layers[t];
    float *W = out->w + (size_t)t * E * D, *b = out->b + (size_t)t * E, *row = xmalloc((size_t)D * sizeof(float));
    for (int e = 0; e < E; e++) {
        pg_mat_row_f32(&Lr->router, e, row);
        for (int i = 0; i < D; i++) W[(size_t)e * D + i] = row[i] * Lr->ffn_norm[i];
        b[e] = Lr->router_b ? Lr->router_b[e] : 0; /* gpt-oss routers have a bias */
    }
    eval_(X, Y, n_tr, N, E, D, k, W, b, &rep->loss_borrowed, &rep->recall_borrowed);
    /* Adam on full-batch gradients of the training split */
    size_t nw = (size_t)E * D;
    float *gW = xcalloc(nw, sizeof(float)), *gb = xcalloc((size_t)E, sizeof(float));
    float *mW = xcalloc(nw, sizeof(float)), *vW = xcalloc(nw, sizeof(float));
    float *mb = xcalloc((size_t)E, sizeof(float)), *vb = xcalloc((size_t)E, sizeof(float));
    float *bestW = xmalloc(nw * sizeof(float)), *bestb = xmalloc((size_t)E * sizeof(float));
    float *pz = xmalloc((size_t)E * sizeof(float));
    memcpy(bestW, W, nw * sizeof(float));
    memcpy(bestb, b, (size_t)E * sizeof(float));
    /* keep the epoch with the best held-out recall (then loss), starting
     * from the borrowed router itself */
    double best_recall = rep->recall_borrowed, best = rep->loss_borrowed;
    int since = 0, ep = 0;
    const float b1 = 0.9f, b2 = 0.999f;
    for (ep = 1; ep <= fp->epochs && since < fp->patience; ep++) {
        memset(gW, 0, nw * sizeof(float));
        memset(gb, 0, (size_t)E * sizeof(float));
        for (int n = 0; n < n_tr; n++) {
            const float *x = X + (size_t)n * D;
            float mx = -INFINITY;
            for (int e = 0; e < E; e++) {
                float s = b[e];
                for (int i = 0; i < D; i++) s += W[(size_t)e * D + i] * x[i];
                pz[e] = s;
                mx = s > mx ? s : mx;
            }
            float sum = 0;
            for (int e = 0; e < E; e++) sum += (pz[e] = expf(pz[e] - mx));
            for (int e = 0; e < E; e++) pz[e] /= sum;
            for (int j = 0; j < k; j++) {
                int y = Y[(size_t)n * k + j];
                if (y >= 0) pz[y] -= 1.0f / k;
            }
            for (int e = 0; e < E; e++) {
                if (pz[e] == 0) continue;
                gb[e] += pz[e];
                float *g = gW + (size_t)e * D;
                for (int i = 0; i < D; i++) g[i] += pz[e] * x[i];
            }
        }
        float c1 = 1 - powf(b1, (float)ep), c2 = 1 - powf(b2, (float)ep);
        for (size_t i = 0; i < nw; i++) {
            float g = gW[i] / n_tr;
            mW[i] = b1 * mW[i] + (1 - b1) * g;
            vW[i] = b2 * vW[i] + (1 - b2) * g * g;
            W[i] -= fp->lr * (mW[i] / c1) / (sqrtf(vW[i] / c2) + 1e-8f);
        }
        for (int e = 0; e < E; e++) {
            float g = gb[e] / n_tr;
            mb[e] = b1 * mb[e] + (1 - b1) * g;
            vb[e] = b2 * vb[e] + (1 - b2) * g * g;
            b[e] -= fp->lr * (mb[e] / c1) / (sqrtf(vb[e] / c2) + 1e-8f);
        }
        double vl, vr;
        eval_(X, Y, n_tr, N, E, D, k, W, b, &vl, &vr);
        if (vr > best_recall || (vr == best_recall && vl < best)) {
            best = vl;
            best_recall = vr;
            since = 0;
            memcpy(bestW, W, nw * sizeof(float));
            memcpy(bestb, b, (size_t)E * sizeof(float));
        } else {
            since++;
        }
    }
    memcpy(W, bestW, nw * sizeof(float));
    memcpy(b, bestb, (size_t)E * sizeof(float));
    eval_(X, Y, n_tr, N, E, D, k, W, b, &rep->loss_learned, &rep->recall_learned);
    rep->epochs = ep - 1;
    free(X); free(h); free(Y); free(row); free(gW); free(gb); free(mW); free(vW); free(mb); free(vb);
    free(bestW); free(bestb); free(pz);
    return 0;
}

int pg_predictor_fit(const pg_model *m, const pg_trace *tr, const pg_fit_params *fp, pg_predictor *out,
                     pg_fit_layer_report *report, pg_error *e) {
    const pg_hparams *hp = &m->hp;
    if (tr->n_layer != hp->n_layer || tr->n_expert != hp->n_expert || tr->k != hp->n_expert_used || tr->dim != hp->dim)
        return pg_fail(e, "the trace is of another model (layers %d, experts %d, k %d, dim %d; the model has %d, %d, %d, %d)",
                       tr->n_layer, tr->n_expert, tr->k, tr->dim, hp->n_layer, hp->n_expert, hp->n_expert_used, hp->dim);
    if (!tr->with_hidden) return pg_fail(e, "the trace has no hidden states (record it with `pregate trace`)");
    if (tr->n_pos < 20) return pg_fail(e, "the trace has %d positions; at least 20 are needed", tr->n_pos);
    if (fp->depth < 1 || fp->depth > 2) return pg_fail(e, "predictor depth must be 1 or 2, not %d", fp->depth);
    pg_predictor_alloc(out, hp->n_layer, hp->n_expert, hp->dim, hp->n_expert_used);
    out->depth = fp->depth;
    out->fingerprint = pg_model_router_fingerprint(m);
    for (int t = 0; t < hp->n_layer; t++) {
        if (!m->layers[t].is_moe) continue;
        pg_fit_layer_report r = {0};
        fit_layer_(m, tr, t, fp, out, &r);
        out->has[t] = true;
        if (report) report[t] = r;
    }
    return 0;
}

int pg_predictor_read(pg_predictor *p, const pg_model *m, const char *path, pg_error *e) {
    memset(p, 0, sizeof *p);
    const pg_hparams *hp = &m->hp;
    pg_predictor_shape want = {.n_layer = hp->n_layer, .n_expert = hp->n_expert, .dim = hp->dim,
                               .k = hp->n_expert_used, .fingerprint = pg_model_router_fingerprint(m)};
    bool *is_moe = xcalloc((size_t)hp->n_layer, sizeof(bool));
    for (int l = 0; l < hp->n_layer; l++) is_moe[l] = m->layers[l].is_moe;
    want.is_moe = is_moe;
    gguf_file g;
    int rc = -1;
    if (gguf_open(&g, path, NULL, e) == 0) {
        rc = pg_predictor_from_gguf(p, &want, &g, e);
        gguf_close(&g);
    }
    free(is_moe);
    return rc;
}
