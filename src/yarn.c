/* yarn.c - see yarn.h */
#include "yarn.h"

#include <math.h>

float pg_yarn_mscale(float scale, float m) { return scale <= 1.0f ? 1.0f : 0.1f * m * logf(scale) + 1.0f; }

/* The dimension (of n_rot) whose wavelength makes n_turns turns over ctx positions. */
static double corr_dim_(double n_turns, int n_rot, double base, int ctx) {
    return n_rot * log(ctx / (n_turns * 2 * M_PI)) / (2 * log(base));
}

void pg_yarn_inv_freq(int n_rot, float base, float factor, int orig_ctx, float beta_fast, float beta_slow,
                      float *inv_freq) {
    double lo = floor(corr_dim_(beta_fast, n_rot, base, orig_ctx));
    double hi = ceil(corr_dim_(beta_slow, n_rot, base, orig_ctx));
    if (lo < 0) lo = 0;
    if (hi > n_rot - 1) hi = n_rot - 1;
    if (hi == lo) hi += 0.001; /* no division by zero */
    for (int i = 0; i < n_rot / 2; i++) {
        double extra = pow((double)base, -2.0 * i / n_rot); /* the original frequency */
        double ramp = (i - lo) / (hi - lo);
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        /* ramp 0: fast dimension, kept; ramp 1: slow, interpolated */
        inv_freq[i] = (float)(extra / factor * ramp + extra * (1 - ramp));
    }
}

void pg_rope_cache_freqs(int pos, int n_rot, const float *inv_freq, float attn_factor, float *cs) {
    for (int i = 0; i < n_rot / 2; i++) {
        double theta = (double)pos * inv_freq[i];
        cs[2 * i] = (float)(attn_factor * cos(theta));
        cs[2 * i + 1] = (float)(attn_factor * sin(theta));
    }
}
