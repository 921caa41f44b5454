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
