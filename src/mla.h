/* mla.h - Multi-head Latent Attention (DeepSeek-V2/V3), absorbed form.
 *
 * Per token, with H heads of q/k size nope + rope and value size v:
 *   q        = W_q x                        (or W_qb rmsnorm(W_qa x), q_lora_rank > 0)
 *   [c | kr] = W_kva x;  c = rmsnorm(c)     c: the latent [kv_lora], kr: one rope key [rope]
 *   kr, q_h[nope:] = RoPE(...)              decoupled RoPE on the rope part only
 * The KV cache keeps [c | kr] (kv_lora + rope floats per token and layer),
 * never the per-head keys and values. Attention absorbs the up-projection
 * kv_b = per head [W_UK (nope rows); W_UV (v rows)] x kv_lora:
 *   qa_h     = [W_UK_h^T q_h[:nope] | q_h[nope:]]          (kv_lora + rope)
 *   score    = qa_h . [c_t | kr_t] * scale                 (= q_h . k_h,t)
 *   o_h      = W_UV_h (sum_t p_t c_t)                      (= sum_t p_t v_h,t)
 *   out      = W_o [o_1 .. o_H]
 * so one multi-query attention over the cache serves every head, for
 * prompts and decoding alike. scale = 1/sqrt(nope + rope), times
 * mscale(factor, mscale_all_dim)^2 under YaRN.
 */
#ifndef PG_MLA_H
#define PG_MLA_H

#include "forward.h"

/* Floats of KV cache per token and layer: K and V widths (V 0 for MLA). */
void pg_kv_widths(const pg_hparams *hp, int *k_width, int *v_width);

/* Floats of MLA scratch for B rows (0 for other families). */
size_t pg_mla_scratch_floats(const pg_hparams *hp, int B);

/* The widest input of any MLA matrix product (0 for other families). */
int pg_mla_max_cols(const pg_hparams *hp);

/* x[T][D] += the MLA block of layer l (forward.c's attention step). */
void pg_mla_attention(pg_session *s, int l, int T);

#endif
