/* test_router.c - the gating functions against hand-worked cases:
 * DeepSeek-V3 (sigmoid, correction bias for the choice only, groups
 * scored by their two best biased scores), DeepSeek-V2 (softmax, groups
 * scored by their best), routed_scaling_factor, and the older rules
 * unchanged bit for bit when given through pg_route_ex. */
#include <math.h>
#include <string.h>

#include "router.h"
#include "test.h"

static float logit_(float p) { return logf(p / (1.0f - p)); }

/* sigmoid scores p, 4 groups of 2, 2 groups kept, top 2, renormalised, x2.5 */
static void test_v3_noaux_tc(void) {
    const float p[8] = {0.95f, 0.05f, 0.6f, 0.6f, 0.5f, 0.55f, 0.1f, 0.2f};
    float z[8], probs[8], w[2];
    int idx[2];
    for (int i = 0; i < 8; i++) z[i] = logit_(p[i]);
    pg_route_cfg c = {PG_GATING_SIGMOID_TOPK, true, PG_GROUP_TOP2_SUM, 4, 2, 2.5f};
    /* no bias: group sums 1.0, 1.2, 1.05, 0.3 keep groups 1 and 2, so
     * expert 0 (the best score) is out; 2 and 3 tie, the lower first */
    pg_route_ex(&c, z, NULL, 8, 2, probs, idx, w);
    CHECK(idx[0] == 2 && idx[1] == 3, "no bias: chose %d %d, expected 2 3", idx[0], idx[1]);
    CHECK(fabsf(w[0] - 1.25f) < 1e-5f && fabsf(w[1] - 1.25f) < 1e-5f, "no bias: weights %g %g", w[0], w[1]);
    /* bias +0.2 on expert 4: it is chosen first, but weighs by its unbiased 0.5 */
    const float bias[8] = {0, 0, 0, 0, 0.2f, 0, 0, 0};
    pg_route_ex(&c, z, bias, 8, 2, probs, idx, w);
    CHECK(idx[0] == 4 && idx[1] == 2, "bias: chose %d %d, expected 4 2", idx[0], idx[1]);
    CHECK(fabsf(w[0] - 2.5f * 0.5f / 1.1f) < 1e-5f && fabsf(w[1] - 2.5f * 0.6f / 1.1f) < 1e-5f,
          "bias: weights %g %g", w[0], w[1]);
    /* without renormalisation the weights are the sigmoids times the scale */
    c.renorm = false;
    pg_route_ex(&c, z, bias, 8, 2, probs, idx, w);
    CHECK(fabsf(w[0] - 1.25f) < 1e-5f && fabsf(w[1] - 1.5f) < 1e-5f, "no renorm: weights %g %g", w[0], w[1]);
    /* no groups: the plain top 2 of the biased scores */
    c.group_rule = PG_GROUP_NONE;
    pg_route_ex(&c, z, bias, 8, 2, probs, idx, w);
    CHECK(idx[0] == 0 && idx[1] == 4, "no groups: chose %d %d, expected 0 4", idx[0], idx[1]);
    /* the predictor's wider choice: the kept groups' experts first, best
     * first, then the excluded ones by index */
    c.group_rule = PG_GROUP_TOP2_SUM;
    c.topk_group = 1;
    int wide[5];
    pg_route_select(&c, z, bias, 8, 5, probs, wide);
    CHECK(wide[0] == 4 && wide[1] == 5 && wide[2] == 0 && wide[3] == 1 && wide[4] == 2,
          "select 5 of one group: %d %d %d %d %d", wide[0], wide[1], wide[2], wide[3], wide[4]);
}

/* softmax probabilities q (logits log q), 3 groups of 2 scored by their best */
static void test_v2_group_limited_greedy(void) {
    const float q[6] = {0.30f, 0.02f, 0.10f, 0.09f, 0.25f, 0.24f};
    float z[6], probs[6], w[2];
    int idx[2];
    for (int i = 0; i < 6; i++) z[i] = logf(q[i]);
    pg_route_cfg c = {PG_GATING_SOFTMAX_TOPK, false, PG_GROUP_MAX, 3, 1, 1.5f};
    /* group maxima 0.30, 0.10, 0.25: only group 0 is kept */
    pg_route_ex(&c, z, NULL, 6, 2, probs, idx, w);
    CHECK(idx[0] == 0 && idx[1] == 1, "chose %d %d, expected 0 1", idx[0], idx[1]);
    CHECK(fabsf(w[0] - 0.45f) < 1e-6f && fabsf(w[1] - 0.03f) < 1e-6f, "weights %g %g", w[0], w[1]);
    /* the same scores by the top-2-sum rule keep group 2 (0.49) instead */
    c.group_rule = PG_GROUP_TOP2_SUM;
    pg_route_ex(&c, z, NULL, 6, 2, probs, idx, w);
    CHECK(idx[0] == 4 && idx[1] == 5, "top-2 sum: chose %d %d, expected 4 5", idx[0], idx[1]);
    /* greedy (no groups) with the scale: pg_route's weights times 1.5 */
    c.group_rule = PG_GROUP_NONE;
    pg_route_ex(&c, z, NULL, 6, 2, probs, idx, w);
    CHECK(idx[0] == 0 && idx[1] == 4, "greedy: chose %d %d, expected 0 4", idx[0], idx[1]);
    CHECK(fabsf(w[0] - 0.45f) < 1e-6f && fabsf(w[1] - 0.375f) < 1e-6f, "greedy: weights %g %g", w[0], w[1]);
}

/* The older rules through pg_route_ex are pg_route, bit for bit. */
static void test_plain_unchanged(void) {
    unsigned seed = 7;
    for (int trial = 0; trial < 200; trial++) {
        int E = 4 + trial % 60, K = 1 + trial % 4;
        if (K > E) K = E;
        float z[64], p1[64], p2[64], w1[8], w2[8];
        int i1[8], i2[8];
        for (int i = 0; i < E; i++) {
            seed = seed * 1103515245u + 12345u;
            z[i] = ((seed >> 8) % 20000) / 1000.0f - 10.0f;
        }
        for (int g = 0; g < 2; g++)
            for (int r = 0; r < 2; r++) {
                pg_route_cfg c = {(pg_gating)g, r != 0, PG_GROUP_NONE, 0, 0, 1.0f};
                pg_route((pg_gating)g, r != 0, z, E, K, p1, i1, w1);
                pg_route_ex(&c, z, NULL, E, K, p2, i2, w2);
                CHECK(memcmp(i1, i2, K * sizeof(int)) == 0 && memcmp(w1, w2, K * sizeof(float)) == 0,
                      "trial %d gating %d renorm %d differs", trial, g, r);
                /* and the predictor's choice ranks like the logits */
                int sel[8], ref[8];
                pg_route_select(&c, z, NULL, E, K, p2, sel);
                pg_topk(z, E, K, ref);
                CHECK(memcmp(sel, ref, K * sizeof(int)) == 0, "trial %d: select differs from top-k", trial);
            }
    }
}

int main(void) {
    TEST_RUN(test_v3_noaux_tc);
    TEST_RUN(test_v2_group_limited_greedy);
    TEST_RUN(test_plain_unchanged);
    return test_summary("test_router");
}
