/* test_cuda_math.c - the per-element arithmetic of the CUDA backend
 * (src/cuda/cuda_math.h), compiled as C and run on the CPU, against the CPU
 * references, bit for bit: every half and bfloat16, every E8M0 scale, each
 * weight format the backend dequantises (random blocks, every group of 8
 * elements), the RoPE angles and rotation, silu and the clamped SwiGLU.
 * No GPU is needed: the kernels call the same functions (only bit casts
 * and unfused products are spelled differently on the device, and the
 * device's expf, cos and sin are CUDA's; see cuda_math.h).
 */
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda/cuda_math.h"
#include "kernels/kernels.h"
#include "kernels/quants.h"
#include "test.h"
#include "util.h"

static float rnd(float scale) { return test_rnd() * scale; }

static int same_bits_(float a, float b) { return memcmp(&a, &b, 4) == 0; }

/* A random finite half, subnormals and zeros included. */
static uint16_t rnd_half_(void) {
    uint16_t h = (uint16_t)test_rng_u64();
    return (h & 0x7c00) == 0x7c00 ? (uint16_t)(h & ~0x4000) : h;
}

static void test_f16_bf16(void) {
    int bad_f16 = 0, bad_bf16 = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        bad_f16 += !same_bits_(pg_cm_f16((uint16_t)h), pg_f16_to_f32((uint16_t)h));
        bad_bf16 += !same_bits_(pg_cm_bf16((uint16_t)h), pg_bf16_to_f32((uint16_t)h));
    }
    CHECK(bad_f16 == 0, "%d of 65536 halves differ from pg_f16_to_f32", bad_f16);
    CHECK(bad_bf16 == 0, "%d of 65536 bfloat16s differ from pg_bf16_to_f32", bad_bf16);
}

static void test_e8m0(void) {
    int bad = 0;
    for (int e = 0; e < 256; e++) bad += !same_bits_(pg_cm_e8m0_half((uint8_t)e), pg_e8m0_to_f32_half((uint8_t)e));
    CHECK(bad == 0, "%d of 256 E8M0 scales differ", bad);
    for (int c = 0; c < 16; c++) CHECK(pg_cm_e2m1x2(c) == pg_kvalues_mxfp4[c], "E2M1 code %d", c);
}

/* ---- dequantisation: random bytes with finite half scales ------------------------------ */

typedef void (*group_fn)(const void *block, int j0, float *y);

/* The half fields of each block (byte offsets; -1 ends), made finite so
 * that the comparison is of numbers, not NaN payloads. */
typedef struct {
    pg_type t;
    const char *name;
    group_fn fn;
    int halves[3];
} format_case;

static void q4_0_(const void *b, int j0, float *y) { pg_cm_q4_0((const block_q4_0 *)b, j0, y); }
static void q5_0_(const void *b, int j0, float *y) { pg_cm_q5_0((const block_q5_0 *)b, j0, y); }
static void q5_1_(const void *b, int j0, float *y) { pg_cm_q5_1((const block_q5_1 *)b, j0, y); }
static void q8_0_(const void *b, int j0, float *y) { pg_cm_q8_0((const block_q8_0 *)b, j0, y); }
static void mxfp4_(const void *b, int j0, float *y) { pg_cm_mxfp4((const block_mxfp4 *)b, j0, y); }
static void q4_K_(const void *b, int j0, float *y) { pg_cm_q4_K((const block_q4_K *)b, j0, y); }
static void q5_K_(const void *b, int j0, float *y) { pg_cm_q5_K((const block_q5_K *)b, j0, y); }
static void q6_K_(const void *b, int j0, float *y) { pg_cm_q6_K((const block_q6_K *)b, j0, y); }

static const format_case FORMATS[] = {
    {PG_TYPE_Q4_0, "Q4_0", q4_0_, {0, -1}},
    {PG_TYPE_Q5_0, "Q5_0", q5_0_, {0, -1}},
    {PG_TYPE_Q5_1, "Q5_1", q5_1_, {0, 2, -1}},
    {PG_TYPE_Q8_0, "Q8_0", q8_0_, {0, -1}},
    {PG_TYPE_MXFP4, "MXFP4", mxfp4_, {-1}},
    {PG_TYPE_Q4_K, "Q4_K", q4_K_, {0, 2, -1}},
    {PG_TYPE_Q5_K, "Q5_K", q5_K_, {0, 2, -1}},
    {PG_TYPE_Q6_K, "Q6_K", q6_K_, {offsetof(block_q6_K, d), -1}},
};

static void random_block_(const format_case *f, size_t bytes, uint8_t *b) {
    for (size_t i = 0; i < bytes; i++) b[i] = (uint8_t)test_rng_u64();
    for (int k = 0; f->halves[k] >= 0; k++) {
        const uint16_t h = rnd_half_();
        memcpy(b + f->halves[k], &h, 2);
    }
}

static void test_dequantize(void) {
    enum { BLOCKS = 4000 };
    uint8_t block[256];
    float ref[PG_QK_K], got[PG_QK_K];
    for (size_t k = 0; k < sizeof FORMATS / sizeof FORMATS[0]; k++) {
        const format_case *f = &FORMATS[k];
        const pg_type_traits *tt = pg_type_info(f->t);
        PG_ASSERT(tt->type_size <= sizeof block && tt->blck % PG_CM_GROUP == 0);
        int bad = 0, first_j = -1;
        for (int n = 0; n < BLOCKS; n++) {
            random_block_(f, tt->type_size, block);
            pg_dequantize_row_ref(f->t, tt->blck, block, ref);
            for (int j0 = 0; j0 < tt->blck; j0 += PG_CM_GROUP) f->fn(block, j0, got + j0);
            for (int j = 0; j < tt->blck; j++)
                if (!same_bits_(got[j], ref[j]) && bad++ == 0) first_j = j;
        }
        CHECK(bad == 0, "%s: %d of %d elements differ (first at element %d of a block)", f->name, bad,
              BLOCKS * tt->blck, first_j);
    }
}

/* ---- RoPE and silu -------------------------------------------------------------------------- */

static void test_rope(void) {
    enum { N_ROT = 64, HD = 80, HEADS = 3 };
    const pg_yarn yarn = {.factor = 32, .beta_fast = 32, .beta_slow = 1, .orig_ctx = 4096, .truncate = 1};
    float inv_freq[N_ROT / 2], cs[N_ROT];
    pg_yarn_inv_freq(N_ROT, 50000.0f, &yarn, inv_freq);
    int bad_cs = 0, bad_x = 0;
    for (int trial = 0; trial < 200; trial++) {
        const int pos = trial < 100 ? trial : (int)(test_rng_u64() % 200000);
        const float attn_factor = trial % 2 ? 1.0f : 1.0f + rnd(0.5f);
        const int neox = trial % 3 == 0;
        pg_rope_cache_freqs(pos, N_ROT, inv_freq, attn_factor, cs);
        float x[HEADS * HD], y[HEADS * HD];
        for (int i = 0; i < HEADS * HD; i++) x[i] = y[i] = rnd(4.0f);
        pg_rope_apply(x, HEADS, HD, N_ROT, cs, neox);
        for (int i = 0; i < N_ROT / 2; i++) {
            float c, s;
            pg_cm_rope_cs(pos, inv_freq[i], attn_factor, &c, &s);
            bad_cs += !same_bits_(c, cs[2 * i]) || !same_bits_(s, cs[2 * i + 1]);
            for (int h = 0; h < HEADS; h++) {
                float *yh = y + h * HD;
                pg_cm_rope_pair(&yh[neox ? i : 2 * i], &yh[neox ? i + N_ROT / 2 : 2 * i + 1], c, s);
            }
        }
        for (int i = 0; i < HEADS * HD; i++) bad_x += !same_bits_(x[i], y[i]);
    }
    CHECK(bad_cs == 0, "%d (cos, sin) pairs differ from pg_rope_cache_freqs", bad_cs);
    CHECK(bad_x == 0, "%d rotated values differ from pg_rope_apply", bad_x);
}

static void test_activations(void) {
    enum { N = 4096 };
    float g[N], u[N], ref[N];
    for (int i = 0; i < N; i++) {
        g[i] = rnd(i < N / 2 ? 8.0f : 120.0f);
        u[i] = rnd(3.0f);
    }
    pg_silu_mul_ref(N, g, u, ref);
    int bad = 0;
    for (int i = 0; i < N; i++) bad += !same_bits_(pg_cm_silu_mul(g[i], u[i]), ref[i]);
    CHECK(bad == 0, "%d of %d silu products differ from pg_silu_mul_ref", bad, N);
    const float alpha = 1.702f, limit = 7.0f; /* gpt-oss's */
    g[0] = NAN, u[1] = NAN;                    /* NaNs pass through as torch.clamp's do */
    pg_swiglu_oai_ref(N, g, u, alpha, limit, ref);
    bad = 0;
    for (int i = 0; i < N; i++) bad += !same_bits_(pg_cm_swiglu_oai(g[i], u[i], alpha, limit), ref[i]);
    CHECK(bad == 0, "%d of %d clamped SwiGLU values differ from pg_swiglu_oai_ref", bad, N);
    CHECK(pg_cm_sigmoid(0.0f) == 0.5f && pg_cm_sigmoid(-200.0f) == 0.0f && pg_cm_sigmoid(200.0f) == 1.0f,
          "sigmoid");
    CHECK(pg_cm_clamp(3.0f, 2.0f) == 2.0f && pg_cm_clamp(-3.0f, 2.0f) == -2.0f && pg_cm_clamp(1.5f, 2.0f) == 1.5f,
          "clamp");
    CHECK(isnan(pg_cm_clamp(NAN, 2.0f)), "clamp keeps NaN");
}

int main(void) {
    TEST_RUN(test_f16_bf16);
    TEST_RUN(test_e8m0);
    TEST_RUN(test_dequantize);
    TEST_RUN(test_rope);
    TEST_RUN(test_activations);
    return test_summary("test_cuda_math");
}
