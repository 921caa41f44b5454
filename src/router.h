/* router.h - MoE gating functions: router logits -> top-k experts + weights.
 *
 * Ties are broken deterministically: of equal scores, the lower expert
 * index wins. Weights are returned in the order of selection (best first).
 */
#ifndef PG_ROUTER_H
#define PG_ROUTER_H

#include <stdbool.h>

typedef enum {
    /* softmax over all experts, take top-k probabilities, renormalise them
     * to sum to 1 if `renorm` (Qwen2-MoE/Qwen3-MoE norm_topk_prob, OLMoE). */
    PG_GATING_SOFTMAX_TOPK = 0,
    /* top-k of the raw logits, softmax over those k (Mixtral). */
    PG_GATING_TOPK_SOFTMAX = 1,
} pg_gating;

const char *pg_gating_name(pg_gating g);

/* Indices of the k largest of x[0..n) into idx (best first, ties -> lower
 * index). k <= n. */
void pg_topk(const float *x, int n, int k, int *idx);

/* logits[n_expert] -> idx[k], w[k]. `probs` is scratch of n_expert floats. */
void pg_route(pg_gating g, bool renorm, const float *logits, int n_expert, int k, float *probs,
              int *idx, float *w);

#endif
