/* router.c - see router.h */
#include "router.h"

#include <math.h>

#include "util.h"

const char *pg_gating_name(pg_gating g) {
    switch (g) {
    case PG_GATING_SOFTMAX_TOPK: return "softmax-topk";
    case PG_GATING_TOPK_SOFTMAX: return "topk-softmax";
    }
    return "?";
}

/* Selection by repeated scans: k is small (2..8) and n at most a few hundred. */
void pg_topk(const float *x, int n, int k, int *idx) {
    PG_ASSERT(k <= n && k <= 64);
    unsigned char taken[1024] = {0};
    PG_ASSERT(n <= 1024);
    for (int j = 0; j < k; j++) {
        int best = -1;
        for (int i = 0; i < n; i++) {
            if (taken[i]) continue;
            /* NaN never wins over a number; strictly greater keeps the lower index on ties */
            if (best < 0 || x[i] > x[best] || (isnan(x[best]) && !isnan(x[i]))) best = i;
        }
        taken[best] = 1;
        idx[j] = best;
    }
}

static void softmax_(float *x, int n) {
    float mx = x[0];
    for (int i = 1; i < n; i++) mx = x[i] > mx ? x[i] : mx;
    float sum = 0;
    for (int i = 0; i < n; i++) {
        x[i] = expf(x[i] - mx);
        sum += x[i];
    }
    for (int i = 0; i < n; i++) x[i] /= sum;
}

void pg_route(pg_gating g, bool renorm, const float *logits, int n_expert, int k, float *probs,
              int *idx, float *w) {
    if (g == PG_GATING_TOPK_SOFTMAX) {
        pg_topk(logits, n_expert, k, idx);
        for (int j = 0; j < k; j++) w[j] = logits[idx[j]];
        softmax_(w, k);
        return;
    }
    for (int i = 0; i < n_expert; i++) probs[i] = logits[i];
    softmax_(probs, n_expert);
    pg_topk(probs, n_expert, k, idx);
    float sum = 0;
    for (int j = 0; j < k; j++) {
        w[j] = probs[idx[j]];
        sum += w[j];
    }
    if (renorm)
        for (int j = 0; j < k; j++) w[j] /= sum;
}
