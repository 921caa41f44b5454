/* mla.c - see mla.h */
#include "mla.h"

#include <math.h>
#include <string.h>


/* q_a_layernorm and kv_a_layernorm use the reference code's default
 * epsilon, not config.json's rms_norm_eps (the released models have 1e-6
 * for both, so llama.cpp's use of the latter agrees on them) */
#define MLA_NORM_EPS 1e-6f

void pg_kv_widths(const pg_hparams *hp, int *k_width, int *v_width) {
    if (hp->mla) {
        *k_width = hp->kv_lora_rank + hp->n_rot;
        *v_width = 0;
    } else {
        *k_width = *v_width = hp->n_head_kv * hp->head_dim;
    }
}

/* Scratch layout per row: q_a [q_lora] | ckv [kv_lora+rope] | qa [H][cw] | lat [H][cw] | o [H*v] */
size_t pg_mla_scratch_floats(const pg_hparams *hp, int B) {
    if (!hp->mla) return 0;
    size_t cw = (size_t)hp->kv_lora_rank + hp->n_rot;
    return (size_t)B * (hp->q_lora_rank + cw + 2 * hp->n_head * cw + (size_t)hp->n_head * hp->v_head_dim);
}

int pg_mla_max_cols(const pg_hparams *hp) {
    if (!hp->mla) return 0;
    int m = hp->q_lora_rank > hp->kv_lora_rank ? hp->q_lora_rank : hp->kv_lora_rank;
    m = m > hp->qk_nope_dim ? m : hp->qk_nope_dim;
    return m > hp->n_head * hp->v_head_dim ? m : hp->n_head * hp->v_head_dim;
}

/* Rows h*rows .. of W as its own matrix (one head of wk_b / wv_b). */
static pg_mat head_(const pg_mat *W, int h, int rows) {
    pg_mat m = *W;
    m.rows = rows;
    m.data = (const uint8_t *)W->data + W->row_bytes * (size_t)h * rows;
    return m;
}

static float softmax_scale_(const pg_hparams *hp) {
    float s = 1.0f / sqrtf((float)hp->head_dim);
    if (hp->yarn.factor != 0 && hp->yarn.mscale_all_dim != 0) {
        float m = pg_yarn_mscale(hp->yarn.factor, hp->yarn.mscale_all_dim);
        s *= m * m;
    }
    return s;
}

void pg_mla_attention(pg_session *s, int l, int T) {
    const pg_hparams *hp = &s->m->hp;
    const pg_layer *L = &s->m->layers[l];
    int D = hp->dim, H = hp->n_head, qk = hp->head_dim, nope = hp->qk_nope_dim, rope = hp->n_rot;
    int kvl = hp->kv_lora_rank, vd = hp->v_head_dim, ql = hp->q_lora_rank, cw = kvl + rope;
    float *qa_in = s->mla, *ckv = qa_in + (size_t)PG_MAX_BATCH * ql, *qa = ckv + (size_t)PG_MAX_BATCH * cw;
    float *lat = qa + (size_t)PG_MAX_BATCH * H * cw, *o = lat + (size_t)PG_MAX_BATCH * H * cw;
    for (int t = 0; t < T; t++)
        pgk.rmsnorm(D, s->x + (size_t)t * D, L->attn_norm, hp->norm_eps, s->xn + (size_t)t * D);
    /* queries [T][H][nope | rope] */
    if (ql > 0) {
        pg_matmul(s->pool, &L->wq_a, T, s->xn, D, qa_in, ql, s->mm_scratch);
        for (int t = 0; t < T; t++) pgk.rmsnorm(ql, qa_in + (size_t)t * ql, L->q_a_norm, MLA_NORM_EPS, qa_in + (size_t)t * ql);
        pg_matmul(s->pool, &L->wq_b, T, qa_in, ql, s->q, H * qk, s->mm_scratch);
    } else {
        pg_matmul(s->pool, &L->wq, T, s->xn, D, s->q, H * qk, s->mm_scratch);
    }
    /* the latent and the shared rope key, into the cache */
    pg_matmul(s->pool, &L->wkv_a, T, s->xn, D, ckv, cw, s->mm_scratch);
    for (int t = 0; t < T; t++) {
        const float *cs = s->rope_cs + (size_t)t * rope;
        float *c = ckv + (size_t)t * cw;
        pgk.rmsnorm(kvl, c, L->kv_a_norm, MLA_NORM_EPS, c);
        pg_rope_apply(c + kvl, 1, rope, rope, cs, hp->rope_neox);
        pg_rope_apply(s->q + (size_t)t * H * qk + nope, H, qk, rope, cs, hp->rope_neox);
        float *row = s->k_cache + (((size_t)l * s->n_seq + s->row_seq[t]) * s->n_ctx + s->row_pos[t]) * cw;
        memcpy(row, c, (size_t)cw * sizeof(float));
    }
    /* absorbed queries: q_nope through W_UK into latent space, rope part as is */
    for (int h = 0; h < H; h++) {
        pg_mat wk = head_(&L->wk_b, h, kvl);
        pg_matmul(s->pool, &wk, T, s->q + (size_t)h * qk, H * qk, qa + (size_t)h * cw, H * cw, s->mm_scratch);
    }
    /* pg_attention scales by 1/sqrt(its head size, cw): fold in ours instead */
    float mul = softmax_scale_(hp) * sqrtf((float)cw);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            float *d = qa + ((size_t)t * H + h) * cw;
            memcpy(d + kvl, s->q + ((size_t)t * H + h) * qk + nope, (size_t)rope * sizeof(float));
            for (int i = 0; i < cw; i++) d[i] *= mul;
        }
    /* one KV head (the cache rows) shared by all H heads; values = the same
     * rows, of which the latent part is kept */
    for (int t = 0; t < T; t++) {
        const float *rows = s->k_cache + ((size_t)l * s->n_seq + s->row_seq[t]) * s->n_ctx * cw;
        pg_attention(s->pool, qa + (size_t)t * H * cw, rows, rows, cw, s->row_pos[t] + 1, H, 1, cw, s->att_scratch,
                     lat + (size_t)t * H * cw);
    }
    for (int h = 0; h < H; h++) {
        pg_mat wv = head_(&L->wv_b, h, vd);
        pg_matmul(s->pool, &wv, T, lat + (size_t)h * cw, H * cw, o + (size_t)h * vd, H * vd, s->mm_scratch);
    }
    pg_matmul(s->pool, &L->wo, T, o, H * vd, s->acc, D, s->mm_scratch);
    for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->acc[i];
}
