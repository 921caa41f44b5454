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
    /* sigmoid of each logit; top-k of sigmoid + correction bias, weights
     * from the unbiased sigmoid (DeepSeek-V3 scoring_func "sigmoid"). */
    PG_GATING_SIGMOID_TOPK = 2,
} pg_gating;

/* Group-limited selection (DeepSeek): the E experts form n_group equal
 * groups of consecutive indices; only the topk_group best groups may be
 * chosen from. How a group is scored: */
typedef enum {
    PG_GROUP_NONE = 0,
    PG_GROUP_MAX,      /* the best score in the group (V2 "group_limited_greedy") */
    PG_GROUP_TOP2_SUM, /* the sum of its two best selection scores (V3 "noaux_tc") */
} pg_group_rule;

/* A whole routing rule; pg_route_cfg_plain gives the one pg_route applies. */
typedef struct {
    pg_gating gating;
    bool renorm;             /* weights renormalised to sum 1 (norm_topk_prob) */
    pg_group_rule group_rule;
    int n_group, topk_group; /* group_rule != NONE: n_group divides n_expert */
    float scale;             /* weights times this (routed_scaling_factor; 1: none) */
} pg_route_cfg;

const char *pg_gating_name(pg_gating g);
const char *pg_group_rule_name(pg_group_rule r);

/* Indices of the k largest of x[0..n) into idx (best first, ties -> lower
 * index). k <= n. */
void pg_topk(const float *x, int n, int k, int *idx);

/* logits[n_expert] -> idx[k], w[k]. `probs` is scratch of n_expert floats. */
void pg_route(pg_gating g, bool renorm, const float *logits, int n_expert, int k, float *probs,
              int *idx, float *w);

/* The general rule: `bias` (NULL: none) is the per-expert selection bias
 * (DeepSeek-V3 e_score_correction_bias), added to the scores for the
 * choice only. With no groups, no bias and scale 1 this is pg_route, bit
 * for bit. n_expert <= 1024. */
void pg_route_ex(const pg_route_cfg *c, const float *logits, const float *bias, int n_expert, int k,
                 float *probs, int *idx, float *w);

/* Only the choice of pg_route_ex, extended to any k <= n_expert (the
 * pre-gating predictor asks for top k+m): the k best experts by selection
 * score, groups applied, best first; experts of excluded groups come after
 * every allowed one. probs receives the scores (softmax/sigmoid, unbiased). */
void pg_route_select(const pg_route_cfg *c, const float *logits, const float *bias, int n_expert, int k,
                     float *probs, int *idx);

#endif
