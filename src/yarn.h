/* yarn.h - YaRN RoPE scaling (Peng et al., "YaRN: Efficient Context Window
 * Extension of Large Language Models", 2023), as transformers'
 * _compute_yarn_parameters and llama.cpp's rope_yarn compute it.
 *
 * Frequencies: theta_i = base^(-2i/n_rot) is extrapolated (kept) for the
 * fast dimensions and interpolated (divided by `factor`) for the slow ones,
 * with a linear ramp between the dimensions that make beta_fast and
 * beta_slow rotations over the original context (floor/ceil, "truncate").
 * Magnitudes: mscale(s, m) = 0.1 m ln(s) + 1 (1 when s <= 1). cos/sin are
 * multiplied by an attention factor, and DeepSeek's softmax scale by
 * mscale(factor, mscale_all_dim)^2.
 */
#ifndef PG_YARN_H
#define PG_YARN_H

float pg_yarn_mscale(float scale, float m);

/* inv_freq[n_rot/2] of YaRN. */
void pg_yarn_inv_freq(int n_rot, float base, float factor, int orig_ctx, float beta_fast, float beta_slow,
                      float *inv_freq);

/* cs[2i], cs[2i+1] = attn_factor * (cos, sin)(pos * inv_freq[i]) for i < n_rot/2
 * (the layout of pg_rope_cache). */
void pg_rope_cache_freqs(int pos, int n_rot, const float *inv_freq, float attn_factor, float *cs);

#endif
