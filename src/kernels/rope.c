/* rope.c - rotary position embedding with angles computed once per position.
 * pg_rope_ref (ref.c) is the reference; tests/test_forward.c compares them. */
#include <math.h>

#include "kernels.h"

void pg_rope_cache(int pos, int n_rot, float base, float *cs) {
    for (int i = 0; i < n_rot / 2; i++) {
        double theta = pos * pow((double)base, -2.0 * i / n_rot);
        cs[2 * i] = (float)cos(theta);
        cs[2 * i + 1] = (float)sin(theta);
    }
}

void pg_rope_apply(float *x, int n_heads, int head_dim, int n_rot, const float *cs, int neox) {
    int half = n_rot / 2;
    for (int h = 0; h < n_heads; h++) {
        float *v = x + (size_t)h * head_dim;
        for (int i = 0; i < half; i++) {
            int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
            float c = cs[2 * i], s = cs[2 * i + 1];
            float x0 = v[a], x1 = v[b];
            v[a] = x0 * c - x1 * s;
            v[b] = x0 * s + x1 * c;
        }
    }
}

float pg_yarn_mscale(float scale, float m) { return scale <= 1.0f ? 1.0f : 0.1f * m * logf(scale) + 1.0f; }

/* the pair index at which a frequency turns `rot` times over ctx positions */
static double yarn_corr_dim_(int n_rot, int ctx, double rot, double base) {
    return n_rot * log(ctx / (rot * 2 * M_PI)) / (2 * log(base));
}

void pg_yarn_inv_freq(int n_rot, float base, const pg_yarn *y, float *inv_freq) {
    double lo = yarn_corr_dim_(n_rot, y->orig_ctx, y->beta_fast, base);
    double hi = yarn_corr_dim_(n_rot, y->orig_ctx, y->beta_slow, base);
    if (y->truncate) {
        lo = floor(lo);
        hi = ceil(hi);
    }
    lo = lo > 0 ? lo : 0;
    hi = hi < n_rot - 1 ? hi : n_rot - 1;
    if (hi == lo) hi += 0.001; /* as transformers: no division by zero */
    for (int i = 0; i < n_rot / 2; i++) {
        double inv = pow((double)base, -2.0 * i / n_rot);
        double ramp = (i - lo) / (hi - lo); /* 0: keep the frequency, 1: interpolate (divide by factor) */
        ramp = ramp < 0 ? 0 : ramp > 1 ? 1 : ramp;
        inv_freq[i] = (float)(inv / y->factor * ramp + inv * (1 - ramp));
    }
}

void pg_rope_cache_freqs(int pos, int n_rot, const float *inv_freq, float attn_factor, float *cs) {
    for (int i = 0; i < n_rot / 2; i++) {
        double theta = (double)pos * inv_freq[i];
        cs[2 * i] = (float)(attn_factor * cos(theta));
        cs[2 * i + 1] = (float)(attn_factor * sin(theta));
    }
}
