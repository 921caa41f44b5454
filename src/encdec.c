/* encdec.c - encoder and decoder passes of encoder-decoder models; see
 * encdec.h. The FFN/MoE block (and with it expert offloading, prediction
 * and tracing) is forward.c's, reached through forward_internal.h. */
#include "encdec.h"

#include <math.h>
#include <stdlib.h>

#include "forward_internal.h"

pg_encdec_state *pg_encdec_state_new(const pg_model *m, int n_ctx) {
    const pg_hparams *hp = &m->hp;
    int D = hp->dim, qd = hp->n_head * hp->head_dim, n_dec = hp->n_layer - hp->n_enc_layer;
    pg_encdec_state *st = xcalloc(1, sizeof *st);
    st->n_ctx = n_ctx;
    st->enc_x = xcalloc((size_t)n_ctx * D, sizeof(float));
    st->enc_q = xcalloc((size_t)n_ctx * qd, sizeof(float));
    st->cross_k = xcalloc((size_t)n_dec * n_ctx * qd, sizeof(float));
    st->cross_v = xcalloc((size_t)n_dec * n_ctx * qd, sizeof(float));
    st->scores = xcalloc((size_t)n_ctx, sizeof(float));
    st->bucket = xcalloc((size_t)n_ctx, sizeof(int));
    return st;
}

void pg_encdec_state_free(pg_encdec_state *st) {
    if (!st) return;
    free(st->enc_x); free(st->enc_q); free(st->cross_k); free(st->cross_v);
    free(st->scores); free(st->bucket);
    free(st);
}

/* Half the buckets (per direction, if bidirectional) are exact distances,
 * the rest logarithmic up to max_distance. Computed in float32 as
 * transformers does, so that a distance on a bucket boundary lands where
 * it does there. */
int pg_t5_bucket(int rel, bool bidirectional, int n_buckets, int max_distance) {
    int out = 0, n = n_buckets;
    if (bidirectional) {
        n /= 2;
        if (rel > 0) out += n;
        rel = rel < 0 ? -rel : rel;
    } else {
        rel = rel < 0 ? -rel : 0;
    }
    int exact = n / 2;
    if (rel < exact) return out + rel;
    float v = logf((float)rel / (float)exact) / (float)log((double)max_distance / exact) * (float)(n - exact);
    int b = exact + (int)v;
    return out + (b < n - 1 ? b : n - 1);
}

/* out[H*hd] for one query: each head attends to keys 0..n-1 (rows of ld
 * floats in K and V) with scores q.k (no scaling) plus, if rel is given,
 * rel[bucket(key - qpos)][h]. */
static void attend_(pg_encdec_state *st, const pg_hparams *hp, const float *q, const float *K, const float *V,
                    int ld, int n, const float *rel, int qpos, bool bidirectional, float *out) {
    int H = hp->n_head, hd = hp->head_dim;
    float *sc = st->scores;
    if (rel)
        for (int j = 0; j < n; j++)
            st->bucket[j] = pg_t5_bucket(j - qpos, bidirectional, hp->rel_buckets, hp->rel_max_distance);
    for (int h = 0; h < H; h++) {
        const float *qh = q + (size_t)h * hd;
        float mx = -INFINITY;
        for (int j = 0; j < n; j++) {
            const float *k = K + (size_t)j * ld + (size_t)h * hd;
            float d = 0;
            for (int i = 0; i < hd; i++) d += qh[i] * k[i];
            if (rel) d += rel[(size_t)st->bucket[j] * H + h];
            sc[j] = d;
            mx = d > mx ? d : mx;
        }
        double sum = 0;
        for (int j = 0; j < n; j++) {
            sc[j] = expf(sc[j] - mx);
            sum += sc[j];
        }
        float inv = (float)(1.0 / sum), *o = out + (size_t)h * hd;
        for (int i = 0; i < hd; i++) o[i] = 0;
        for (int j = 0; j < n; j++) {
            const float *v = V + (size_t)j * ld + (size_t)h * hd;
            float p = sc[j] * inv;
            for (int i = 0; i < hd; i++) o[i] += p * v[i];
        }
    }
}

/* The session's KV cache rows of layer l: [n_ctx][H*hd]. The encoder
 * blocks' rows hold the encoder's keys and values while it runs. */
static float *kv_rows_(const pg_session *s, float *cache, int l) {
    size_t qd = (size_t)s->m->hp.n_head * s->m->hp.head_dim;
    return cache + (size_t)l * s->n_seq * s->n_ctx * qd;
}

static void add_rows_(size_t n, float *x, const float *y) {
    for (size_t i = 0; i < n; i++) x[i] += y[i];
}

/* enc_x[n][D] += self-attention of encoder block l over all n positions:
 * every position's K and V first, then each query against all of them. */
static void encoder_attention_(pg_session *s, int l, int n) {
    const pg_model *m = s->m;
    const pg_hparams *hp = &m->hp;
    const pg_layer *L = &m->layers[l];
    pg_encdec_state *st = s->ed;
    int D = hp->dim, qd = hp->n_head * hp->head_dim;
    float *kc = kv_rows_(s, s->k_cache, l), *vc = kv_rows_(s, s->v_cache, l);
    for (int i0 = 0; i0 < n; i0 += PG_MAX_BATCH) {
        int T = n - i0 < PG_MAX_BATCH ? n - i0 : PG_MAX_BATCH;
        pg_fwd_rmsnorm_rows(T, D, st->enc_x + (size_t)i0 * D, L->attn_norm, hp->norm_eps, s->xn);
        pg_fwd_matmul(s, &L->wq, T, s->xn, D, st->enc_q + (size_t)i0 * qd, qd);
        pg_fwd_matmul(s, &L->wk, T, s->xn, D, kc + (size_t)i0 * qd, qd);
        pg_fwd_matmul(s, &L->wv, T, s->xn, D, vc + (size_t)i0 * qd, qd);
    }
    const float *rel = m->layers[0].rel_bias;
    for (int i0 = 0; i0 < n; i0 += PG_MAX_BATCH) {
        int T = n - i0 < PG_MAX_BATCH ? n - i0 : PG_MAX_BATCH;
        for (int t = 0; t < T; t++)
            attend_(st, hp, st->enc_q + (size_t)(i0 + t) * qd, kc, vc, qd, n, rel, i0 + t, true,
                    s->att + (size_t)t * qd);
        pg_fwd_matmul(s, &L->wo, T, s->att, qd, s->acc, D);
        add_rows_((size_t)T * D, st->enc_x + (size_t)i0 * D, s->acc);
    }
}

/* Copies encoder rows i0..i0+T-1 into the session's chunk (x, positions). */
static void load_chunk_(pg_session *s, int i0, int T) {
    int D = s->m->hp.dim;
    memcpy(s->x, s->ed->enc_x + (size_t)i0 * D, (size_t)T * D * sizeof(float));
    for (int t = 0; t < T; t++) {
        s->row_seq[t] = 0;
        s->row_pos[t] = i0 + t;
    }
}

int pg_session_encode(pg_session *s, const int32_t *tokens, int n, pg_error *e) {
    const pg_model *m = s->m;
    const pg_hparams *hp = &m->hp;
    pg_encdec_state *st = s->ed;
    if (!st) return pg_fail(e, "%s is not an encoder-decoder model", m->path);
    if (n <= 0) return pg_fail(e, "nothing to encode");
    if (n > st->n_ctx) return pg_fail(e, "encoder input of %d tokens is longer than the context (%d)", n, st->n_ctx);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->vocab)
            return pg_fail(e, "token id %d at position %d is outside the vocabulary (0..%d)", tokens[i], i, hp->vocab - 1);
    if (s->trace && (s->trace->n_layer != hp->n_layer || (s->trace->with_hidden && s->trace->dim != hp->dim)))
        return pg_fail(e, "trace is for another model");
    int D = hp->dim, qd = hp->n_head * hp->head_dim, n_enc = hp->n_enc_layer;
    st->n_enc = 0;
    s->n_past = 0;
    for (int t = 0; t < n; t++) pg_mat_row_f32(&m->tok_embd, tokens[t], st->enc_x + (size_t)t * D);
    if (s->trace) pg_trace_reserve(s->trace, n);
    if (s->off) {
        pg_fwd_begin_step(s);
        for (int i0 = 0; i0 < n; i0 += PG_MAX_BATCH) {
            int T = n - i0 < PG_MAX_BATCH ? n - i0 : PG_MAX_BATCH;
            load_chunk_(s, i0, T);
            pg_fwd_predict(s, -1, T);
        }
    }
    for (int l = 0; l < n_enc; l++) {
        encoder_attention_(s, l, n);
        for (int i0 = 0; i0 < n; i0 += PG_MAX_BATCH) {
            int T = n - i0 < PG_MAX_BATCH ? n - i0 : PG_MAX_BATCH;
            load_chunk_(s, i0, T);
            if (pg_fwd_ffn(s, l, T, e)) return -1;
            memcpy(st->enc_x + (size_t)i0 * D, s->x, (size_t)T * D * sizeof(float));
        }
    }
    pg_fwd_rmsnorm_rows(n, D, st->enc_x, m->enc_output_norm, hp->norm_eps, st->enc_x);
    /* every decoder block's cross-attention keys and values, once per input */
    for (int l = n_enc; l < hp->n_layer; l++) {
        const pg_layer *L = &m->layers[l];
        float *ck = st->cross_k + (size_t)(l - n_enc) * st->n_ctx * qd;
        float *cv = st->cross_v + (size_t)(l - n_enc) * st->n_ctx * qd;
        for (int i0 = 0; i0 < n; i0 += PG_MAX_BATCH) {
            int T = n - i0 < PG_MAX_BATCH ? n - i0 : PG_MAX_BATCH;
            pg_fwd_matmul(s, &L->ck, T, st->enc_x + (size_t)i0 * D, D, ck + (size_t)i0 * qd, qd);
            pg_fwd_matmul(s, &L->cv, T, st->enc_x + (size_t)i0 * D, D, cv + (size_t)i0 * qd, qd);
        }
    }
    st->n_enc = n;
    return 0;
}

/* x[T] += self-attention of decoder block l (causal, KV cache) and then
 * its cross-attention over the encoder output. */
static void decoder_attention_(pg_session *s, int l, int T) {
    const pg_model *m = s->m;
    const pg_hparams *hp = &m->hp;
    const pg_layer *L = &m->layers[l];
    pg_encdec_state *st = s->ed;
    int D = hp->dim, qd = hp->n_head * hp->head_dim, n_enc = hp->n_enc_layer;
    float *kc = kv_rows_(s, s->k_cache, l), *vc = kv_rows_(s, s->v_cache, l);
    pg_fwd_rmsnorm_rows(T, D, s->x, L->attn_norm, hp->norm_eps, s->xn);
    pg_fwd_matmul(s, &L->wq, T, s->xn, D, s->q, qd);
    /* K and V straight into the cache: the chunk's positions follow each other */
    pg_fwd_matmul(s, &L->wk, T, s->xn, D, kc + (size_t)s->row_pos[0] * qd, qd);
    pg_fwd_matmul(s, &L->wv, T, s->xn, D, vc + (size_t)s->row_pos[0] * qd, qd);
    const float *rel = m->layers[n_enc].rel_bias;
    for (int t = 0; t < T; t++)
        attend_(st, hp, s->q + (size_t)t * qd, kc, vc, qd, s->row_pos[t] + 1, rel, s->row_pos[t], false,
                s->att + (size_t)t * qd);
    pg_fwd_matmul(s, &L->wo, T, s->att, qd, s->acc, D);
    add_rows_((size_t)T * D, s->x, s->acc);
    /* cross-attention: no position bias */
    const float *ck = st->cross_k + (size_t)(l - n_enc) * st->n_ctx * qd;
    const float *cv = st->cross_v + (size_t)(l - n_enc) * st->n_ctx * qd;
    pg_fwd_rmsnorm_rows(T, D, s->x, L->cross_norm, hp->norm_eps, s->xn);
    pg_fwd_matmul(s, &L->cq, T, s->xn, D, s->q, qd);
    for (int t = 0; t < T; t++)
        attend_(st, hp, s->q + (size_t)t * qd, ck, cv, qd, st->n_enc, NULL, 0, false, s->att + (size_t)t * qd);
    pg_fwd_matmul(s, &L->co, T, s->att, qd, s->acc, D);
    add_rows_((size_t)T * D, s->x, s->acc);
}

/* One decoder pass over T <= PG_MAX_BATCH tokens at s->row_pos; logits of
 * every row to out (NULL: the last row's to s->logits). */
static int decoder_chunk_(pg_session *s, const int32_t *tokens, int T, float *out, pg_error *e) {
    const pg_model *m = s->m;
    const pg_hparams *hp = &m->hp;
    int D = hp->dim, n_enc = hp->n_enc_layer;
    for (int t = 0; t < T; t++) pg_mat_row_f32(&m->tok_embd, tokens[t], s->x + (size_t)t * D);
    if (s->off) {
        pg_fwd_begin_step(s);
        pg_fwd_predict(s, n_enc - 1, T); /* the decoder's first block(s) */
    }
    for (int l = n_enc; l < hp->n_layer; l++) {
        decoder_attention_(s, l, T);
        if (pg_fwd_ffn(s, l, T, e)) return -1;
    }
    int first = out ? 0 : T - 1, n_out = T - first;
    pg_fwd_rmsnorm_rows(n_out, D, s->x + (size_t)first * D, m->output_norm, hp->norm_eps, s->xn);
    if (hp->tied_output) { /* T5: rescale before the shared embedding */
        float scale = 1.0f / sqrtf((float)D);
        for (size_t i = 0; i < (size_t)n_out * D; i++) s->xn[i] *= scale;
    }
    float *dst = out ? out : s->logits;
    pg_fwd_matmul(s, &m->output, n_out, s->xn, D, dst, hp->vocab);
    if (out) memcpy(s->logits, out + (size_t)(n_out - 1) * hp->vocab, hp->vocab * sizeof(float));
    return 0;
}

int pg_encdec_chunk(pg_session *s, const int32_t *tokens, int T, float *out, pg_error *e) {
    if (!s->ed || s->ed->n_enc == 0) return pg_fail(e, "no encoder input: call pg_session_encode first");
    return decoder_chunk_(s, tokens, T, out, e);
}
