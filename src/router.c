/* router.c - see router.h */
#include "router.h"

#include <math.h>

#include "util.h"

const char *pg_gating_name(pg_gating g) {
    switch (g) {
    case PG_GATING_SOFTMAX_TOPK: return "softmax-topk";
    case PG_GATING_TOPK_SOFTMAX: return "topk-softmax";
    case PG_GATING_SIGMOID_TOPK: return "sigmoid-topk";
    }
    return "?";
}

const char *pg_group_rule_name(pg_group_rule r) {
    switch (r) {
    case PG_GROUP_NONE: return "none";
    case PG_GROUP_MAX: return "group max";
    case PG_GROUP_TOP2_SUM: return "group top-2 sum";
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

/* No sigmoid, no groups, no bias: pg_route's rule (times the scale). */
static bool plain_(const pg_route_cfg *c, const float *bias) {
    return c->gating != PG_GATING_SIGMOID_TOPK && c->group_rule == PG_GROUP_NONE && !bias;
}

/* Top k of x[0..n) for any k <= n (pg_topk allows 64): a partial selection
 * sort on an index array, same order and tie rule as pg_topk. */
static void topk_any_(const float *x, int n, int k, int *idx) {
    if (k <= 64) { pg_topk(x, n, k, idx); return; }
    int all[1024];
    for (int i = 0; i < n; i++) all[i] = i;
    for (int j = 0; j < k; j++) {
        int b = j;
        for (int i = j + 1; i < n; i++) {
            float xi = x[all[i]], xb = x[all[b]];
            if (xi > xb || (xi == xb && all[i] < all[b]) || (isnan(xb) && !isnan(xi))) b = i;
        }
        int t = all[j];
        all[j] = all[b];
        all[b] = t;
        idx[j] = all[j];
    }
}

void pg_route_select(const pg_route_cfg *c, const float *logits, const float *bias, int n, int k,
                     float *probs, int *idx) {
    PG_ASSERT(n <= 1024 && k <= n);
    if (plain_(c, bias)) {
        /* softmax keeps the order: rank by the logits, as the predictor always did */
        for (int i = 0; i < n; i++) probs[i] = logits[i];
        if (c->gating == PG_GATING_SOFTMAX_TOPK) softmax_(probs, n);
        topk_any_(logits, n, k, idx);
        return;
    }
    for (int i = 0; i < n; i++) probs[i] = logits[i];
    if (c->gating == PG_GATING_SIGMOID_TOPK)
        for (int i = 0; i < n; i++) probs[i] = 1.0f / (1.0f + expf(-logits[i]));
    else
        softmax_(probs, n);
    float choice[1024];
    for (int i = 0; i < n; i++) choice[i] = probs[i] + (bias ? bias[i] : 0.0f);
    if (c->group_rule != PG_GROUP_NONE && c->n_group > 1 && c->topk_group < c->n_group) {
        int G = c->n_group, per = n / G, gidx[1024];
        float gscore[1024];
        PG_ASSERT(per * G == n && c->topk_group >= 1);
        for (int g = 0; g < G; g++) {
            const float *v = choice + (size_t)g * per;
            if (c->group_rule == PG_GROUP_MAX || per < 2) {
                float mx = v[0];
                for (int i = 1; i < per; i++) mx = v[i] > mx ? v[i] : mx;
                gscore[g] = mx;
            } else {
                int two[2];
                pg_topk(v, per, 2, two);
                gscore[g] = v[two[0]] + v[two[1]];
            }
        }
        topk_any_(gscore, G, c->topk_group, gidx);
        unsigned char keep[1024] = {0};
        for (int j = 0; j < c->topk_group; j++) keep[gidx[j]] = 1;
        for (int i = 0; i < n; i++)
            if (!keep[i / per]) choice[i] = -INFINITY;
    }
    topk_any_(choice, n, k, idx);
}

void pg_route_ex(const pg_route_cfg *c, const float *logits, const float *bias, int n_expert, int k,
                 float *probs, int *idx, float *w) {
    if (plain_(c, bias)) {
        pg_route(c->gating, c->renorm, logits, n_expert, k, probs, idx, w);
    } else {
        pg_route_select(c, logits, bias, n_expert, k, probs, idx);
        float sum = 0;
        for (int j = 0; j < k; j++) {
            w[j] = probs[idx[j]];
            sum += w[j];
        }
        /* V3 adds 1e-20 so that an all-zero sigmoid cannot divide by zero */
        if (c->renorm)
            for (int j = 0; j < k; j++) w[j] /= c->gating == PG_GATING_SIGMOID_TOPK ? sum + 1e-20f : sum;
    }
    if (c->scale != 1.0f)
        for (int j = 0; j < k; j++) w[j] *= c->scale;
}
