/* forward.c - one pass of the transformer over a chunk of tokens.
 *
 * Reads top to bottom like the model:
 *   x = embed(tokens)
 *   for each layer:
 *       x += attention(rmsnorm(x))          q/k norm, RoPE, KV cache, GQA (DeepSeek: MLA, mla.c)
 *       h  = rmsnorm(x)
 *       x += dense_ffn(h)                   or, in an MoE layer:
 *       x += sum_k w_k * expert_k(h) (+ sigmoid(g.h) * shared(h))
 *   logits = output(rmsnorm(x))
 * All families share it; the differences are data in pg_hparams/pg_layer
 * (routing rules: pg_route_ex, router.h).
 */
#include "forward.h"
#include "encdec.h"
#include "forward_internal.h"

#include "mla.h"
#include "dev/devfwd.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

static int max_i_(int a, int b) { return a > b ? a : b; }

pg_session *pg_session_new(pg_model *m, int n_ctx, int n_threads, pg_error *e) {
    return pg_session_new_seqs(m, n_ctx, 1, n_threads, e);
}

pg_session *pg_session_new_seqs(pg_model *m, int n_ctx, int n_seq, int n_threads, pg_error *e) {
    const pg_hparams *hp = &m->hp;
    if (n_ctx <= 0) n_ctx = hp->n_ctx_train < 4096 ? hp->n_ctx_train : 4096;
    if (n_ctx > (1 << 20)) {
        pg_fail(e, "context length %d is too large", n_ctx);
        return NULL;
    }
    if (n_seq < 1 || n_seq > 4096) {
        pg_fail(e, "%d sequences: expected 1..4096", n_seq);
        return NULL;
    }
    pg_session *s = xcalloc(1, sizeof *s);
    s->m = m;
    s->n_ctx = n_ctx;
    s->n_seq = n_seq;
    s->pool = pg_pool_new(n_threads);
    int B = PG_MAX_BATCH, D = hp->dim, qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim;
    int E = max_i_(hp->n_expert, 1), K = max_i_(hp->n_expert_used, 1);
    int F = max_i_(max_i_(hp->ffn_dim, hp->expert_ffn_dim), hp->shared_ffn_dim);
    int kw, vw;
    pg_kv_widths(hp, &kw, &vw);
    size_t per = (size_t)hp->n_layer * n_seq * n_ctx;
    s->kv_floats = per * (size_t)(kw + vw);
    s->k_cache = calloc(per * kw, sizeof(float));
    s->v_cache = vw ? calloc(per * vw, sizeof(float)) : NULL;
    if (!s->k_cache || (vw && !s->v_cache)) {
        pg_fail(e, "cannot allocate the KV cache for %d x %d positions (%.1f MiB)", n_seq, n_ctx,
                (double)s->kv_floats * 4 / 1048576);
        pg_session_free(s);
        return NULL;
    }
    s->x = xcalloc((size_t)B * D, sizeof(float));
    s->xn = xcalloc((size_t)B * D, sizeof(float));
    s->q = xcalloc((size_t)B * qd, sizeof(float));
    s->k = xcalloc((size_t)B * kvd, sizeof(float));
    s->v = xcalloc((size_t)B * kvd, sizeof(float));
    s->att = xcalloc((size_t)B * qd, sizeof(float));
    s->ffn_g = xcalloc((size_t)B * F, sizeof(float));
    s->ffn_u = xcalloc((size_t)B * F, sizeof(float));
    s->acc = xcalloc((size_t)B * D, sizeof(float));
    s->router = xcalloc((size_t)B * E, sizeof(float));
    s->probs = xcalloc((size_t)E, sizeof(float));
    s->sel = xcalloc((size_t)B * K, sizeof(int));
    s->sel_w = xcalloc((size_t)B * K, sizeof(float));
    s->exp_out = xcalloc((size_t)B * K * D, sizeof(float));
    s->exp_in = xcalloc((size_t)B * D, sizeof(float));
    s->exp_rows = xcalloc((size_t)E * B * K, sizeof(int));
    s->exp_count = xcalloc((size_t)E, sizeof(int));
    s->rope_cs = xcalloc((size_t)B * hp->n_rot, sizeof(float));
    s->route_in = xcalloc((size_t)B * D, sizeof(float));
    s->row_seq = xcalloc((size_t)B, sizeof(int));
    s->row_pos = xcalloc((size_t)B, sizeof(int));
    s->seq_last = xcalloc((size_t)n_seq, sizeof(int));
    s->logits = xcalloc((size_t)hp->vocab, sizeof(float));
    /* the widest input any matmul sees, in the widest activation format */
    if (hp->mla) s->mla = xcalloc(pg_mla_scratch_floats(hp, B), sizeof(float));
    int widest = max_i_(max_i_(max_i_(D, qd), F), pg_mla_max_cols(hp));
    s->mm_scratch = xmalloc(pg_matmul_scratch_max_bytes(widest, B) + 64);
    /* one more float per thread: an attention sink's logit (pg_attention_ext) */
    s->att_scratch = xcalloc((size_t)pg_pool_size(s->pool) * (n_ctx + 1), sizeof(float));
    if (hp->n_enc_layer > 0) { /* encoder-decoder: encoder output and cross-attention K/V */
        if (n_seq != 1) {
            pg_fail(e, "encoder-decoder models take one sequence per session, not %d", n_seq);
            pg_session_free(s);
            return NULL;
        }
        s->ed = pg_encdec_state_new(m, n_ctx);
    }
    return s;
}

void pg_session_free(pg_session *s) {
    if (!s) return;
    pg_pool_free(s->pool);
    free(s->k_cache); free(s->v_cache);
    free(s->x); free(s->xn); free(s->q); free(s->k); free(s->v); free(s->att);
    free(s->ffn_g); free(s->ffn_u); free(s->acc); free(s->router); free(s->probs);
    free(s->sel); free(s->sel_w); free(s->exp_out); free(s->exp_in); free(s->exp_rows);
    free(s->exp_count); free(s->rope_cs); free(s->logits); free(s->mm_scratch); free(s->att_scratch);
    free(s->row_seq); free(s->row_pos); free(s->seq_last); free(s->route_in); free(s->mla);
    pg_offload_free(s->off);
    pg_encdec_state_free(s->ed);
    pg_devfwd_free(s->dev);
    free(s);
}

/* An encoder-decoder session keeps its encoder input: the decoder starts over on it. */
void pg_session_reset(pg_session *s) { s->n_past = 0; }

void pg_session_set_offload(pg_session *s, pg_offload *off) {
    PG_ASSERT(!s->dev); /* the device pass has copied the experts, or not, already */
    pg_offload_free(s->off);
    s->off = off;
}

static void matmul_(pg_session *s, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    pg_matmul(s->pool, W, T, X, ldx, Y, ldy, s->mm_scratch);
}

static void rmsnorm_rows_(int T, int n, const float *x, const float *w, float eps, float *y) {
    for (int t = 0; t < T; t++) pgk.rmsnorm(n, x + (size_t)t * n, w, eps, y + (size_t)t * n);
}

static void add_bias_(int T, int n, float *x, const float *b) {
    if (!b) return;
    for (int t = 0; t < T; t++)
        for (int i = 0; i < n; i++) x[(size_t)t * n + i] += b[i];
}

static void clamp_(size_t n, float *x, float c) {
    for (size_t i = 0; i < n; i++) x[i] = x[i] > c ? c : x[i] < -c ? -c : x[i];
}

/* The KV cache rows of layer l, sequence q: [n_ctx][kvd]. */
static float *kv_rows_(const pg_session *s, float *cache, int l, int q) {
    size_t kvd = (size_t)s->m->hp.n_head_kv * s->m->hp.head_dim;
    return cache + ((size_t)l * s->n_seq + q) * s->n_ctx * kvd;
}

/* x[T][D] += attention block of layer l; row t is at position row_pos[t] of
 * sequence row_seq[t]. */
static void attention_(pg_session *s, int l, int T) {
    const pg_hparams *hp = &s->m->hp;
    const pg_layer *L = &s->m->layers[l];
    int D = hp->dim, hd = hp->head_dim, H = hp->n_head, KV = hp->n_head_kv;
    int qd = H * hd, kvd = KV * hd;
    if (hp->mla) {
        pg_mla_attention(s, l, T);
        return;
    }
    rmsnorm_rows_(T, D, s->x, L->attn_norm, hp->norm_eps, s->xn);
    matmul_(s, &L->wq, T, s->xn, D, s->q, qd);
    matmul_(s, &L->wk, T, s->xn, D, s->k, kvd);
    matmul_(s, &L->wv, T, s->xn, D, s->v, kvd);
    add_bias_(T, qd, s->q, L->bq);
    add_bias_(T, kvd, s->k, L->bk);
    add_bias_(T, kvd, s->v, L->bv);
    for (int t = 0; t < T; t++) {
        float *q = s->q + (size_t)t * qd, *k = s->k + (size_t)t * kvd;
        if (hp->qk_norm == PG_QKNORM_HEAD) {
            for (int h = 0; h < H; h++) pgk.rmsnorm(hd, q + h * hd, L->q_norm, hp->norm_eps, q + h * hd);
            for (int h = 0; h < KV; h++) pgk.rmsnorm(hd, k + h * hd, L->k_norm, hp->norm_eps, k + h * hd);
        } else if (hp->qk_norm == PG_QKNORM_FULL) {
            pgk.rmsnorm(qd, q, L->q_norm, hp->norm_eps, q);
            pgk.rmsnorm(kvd, k, L->k_norm, hp->norm_eps, k);
        }
    }
    if (hp->clip_qkv > 0) {
        clamp_((size_t)T * qd, s->q, hp->clip_qkv);
        clamp_((size_t)T * kvd, s->k, hp->clip_qkv);
        clamp_((size_t)T * kvd, s->v, hp->clip_qkv);
    }
    /* every row's K and V go into the cache before any row attends, so a
     * row sees the rows of its sequence before it in the same chunk */
    for (int t = 0; t < T; t++) {
        const float *cs = s->rope_cs + (size_t)t * hp->n_rot;
        float *kc = kv_rows_(s, s->k_cache, l, s->row_seq[t]), *vc = kv_rows_(s, s->v_cache, l, s->row_seq[t]);
        pg_rope_apply(s->q + (size_t)t * qd, H, hd, hp->n_rot, cs, hp->rope_neox);
        pg_rope_apply(s->k + (size_t)t * kvd, KV, hd, hp->n_rot, cs, hp->rope_neox);
        memcpy(kc + (size_t)s->row_pos[t] * kvd, s->k + (size_t)t * kvd, kvd * sizeof(float));
        memcpy(vc + (size_t)s->row_pos[t] * kvd, s->v + (size_t)t * kvd, kvd * sizeof(float));
    }
    /* a sliding layer sees the last n_swa positions (the cache keeps them all) */
    for (int t = 0; t < T; t++) {
        int n_kv = s->row_pos[t] + 1, first = L->swa && n_kv > hp->n_swa ? n_kv - hp->n_swa : 0;
        pg_attention_ext(s->pool, s->q + (size_t)t * qd, kv_rows_(s, s->k_cache, l, s->row_seq[t]),
                         kv_rows_(s, s->v_cache, l, s->row_seq[t]), kvd, first, n_kv, H, KV, hd, L->sinks,
                         s->att_scratch, s->att + (size_t)t * qd);
    }
    matmul_(s, &L->wo, T, s->att, qd, s->acc, D);
    add_bias_(T, D, s->acc, L->bo);
    for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->acc[i];
}

/* out[T][D] = down(relu(up X)): the FFN of T5-style models (no gate). */
static void relu_ffn_(pg_session *s, const pg_expert *w, int T, const float *X, float *out) {
    int F = w->up.rows, D = w->up.cols;
    matmul_(s, &w->up, T, X, D, s->ffn_u, F);
    pg_relu_ref(T * F, s->ffn_u, s->ffn_u);
    matmul_(s, &w->down, T, s->ffn_u, F, out, D);
}

/* out[T][D] = down(silu(gate X) * up X) for one expert (or a dense FFN);
 * gpt-oss: with biases, and the clamped SwiGLU (pgk.swiglu_oai). */
static void swiglu_(pg_session *s, const pg_expert *w, int T, const float *X, float *out) {
    const pg_hparams *hp = &s->m->hp;
    if (hp->ffn_act == PG_FFN_RELU) {
        relu_ffn_(s, w, T, X, out);
        return;
    }
    int F = w->gate.rows, D = w->gate.cols;
    matmul_(s, &w->gate, T, X, D, s->ffn_g, F);
    matmul_(s, &w->up, T, X, D, s->ffn_u, F);
    add_bias_(T, F, s->ffn_g, w->b_gate);
    add_bias_(T, F, s->ffn_u, w->b_up);
    for (int t = 0; t < T; t++) {
        float *g = s->ffn_g + (size_t)t * F, *u = s->ffn_u + (size_t)t * F;
        if (hp->swiglu_limit > 0) pgk.swiglu_oai(F, g, u, hp->swiglu_alpha, hp->swiglu_limit, g);
        else pgk.silu_mul(F, g, u, g);
    }
    matmul_(s, &w->down, T, s->ffn_g, F, out, D);
    add_bias_(T, D, out, w->b_down);
}

/* Records the residual stream of the chunk as the predictor input for
 * layer `target` (trace.h). */
static void trace_hidden_(pg_session *s, int target, int T) {
    pg_trace *tr = s->trace;
    if (!tr || !tr->with_hidden || target >= tr->n_layer) return;
    int D = s->m->hp.dim;
    for (int t = 0; t < T; t++) {
        uint16_t *h = tr->hidden + ((size_t)s->row_pos[t] * tr->n_layer + target) * D;
        for (int i = 0; i < D; i++) h[i] = pg_f32_to_f16(s->x[(size_t)t * D + i]);
    }
}

/* ---- pre-gating: name the experts of coming layers before they run ---- */

/* o->logits[T][E]: what a predictor names layer `target`'s experts from
 * (pg_pred_input), computed where the session computes (host or device). */
static void pred_logits_(pg_session *s, pg_pred_input in, int target, int T) {
    pg_offload *o = s->off;
    const pg_hparams *hp = &s->m->hp;
    const pg_layer *L = &s->m->layers[target];
    int D = hp->dim, E = hp->n_expert;
    if (s->dev) {
        pg_devfwd_pred_logits(s, in, target, T, o->logits);
        return;
    }
    if (in == PG_PRED_HEAD) {
        const pg_predictor *pr = o->p.predictor;
        pg_mat head = {.type = PG_TYPE_F32, .rows = E, .cols = D, .row_bytes = (size_t)D * sizeof(float),
                       .data = pr->w + (size_t)target * E * D};
        rmsnorm_rows_(T, D, s->x, o->ones, 1e-6f, o->xn);
        matmul_(s, &head, T, o->xn, D, o->logits, E);
        return;
    }
    const float *xn = s->xn; /* PG_PRED_NATIVE: this layer's FFN input */
    if (in == PG_PRED_ROUTER) {
        rmsnorm_rows_(T, D, s->x, L->ffn_norm, hp->norm_eps, o->xn);
        xn = o->xn;
    }
    matmul_(s, &L->router, T, xn, D, o->logits, E);
    add_bias_(T, E, o->logits, L->router_b);
}

/* Predicts, from the residual stream x of the chunk (before layer `from`'s
 * FFN; from = -1 at the start of a step), the experts of the next
 * layer(s), and tells the cache to start loading them. */
static void predict_(pg_session *s, int from, int T) {
    pg_offload *o = s->off;
    const pg_model *m = s->m;
    const pg_hparams *hp = &m->hp;
    int E = hp->n_expert, K = hp->n_expert_used;
    bool predicted = o->p.mode == PG_PREFETCH_PREGATE || o->p.mode == PG_PREFETCH_LEARNED;
    int depth = o->p.mode == PG_PREFETCH_PREGATE ? o->p.depth
                : o->p.mode == PG_PREFETCH_LEARNED ? o->p.predictor->depth
                                                   : 1;
    for (int target = from + 1; target <= from + depth && target < hp->n_layer; target++) {
        const pg_layer *L = &m->layers[target];
        if (!L->is_moe) continue;
        /* a learned head reads one hidden state: depth 2 heads name layer
         * `target` from the stream before layer target-2's FFN (predictor.h) */
        if (o->p.mode == PG_PREFETCH_LEARNED && (target - depth < -1 ? -1 : target - depth) != from) continue;
        /* the prediction, most likely first (the cache loads in that order);
         * a layer predicted twice (depth 2) keeps the union */
        int *pred = o->pred + (size_t)target * E, n = o->have_pred[target] ? o->n_pred[target] : 0;
        memset(o->mark, 0, (size_t)E);
        for (int i = 0; i < n; i++) o->mark[pred[i]] = 1;
#define ADD(x) do { int x_ = (x); if (!o->mark[x_]) { o->mark[x_] = 1; pred[n++] = x_; } } while (0)
        switch (o->p.mode) {
        case PG_PREFETCH_NEXT_ALL:
            for (int x = 0; x < E; x++) ADD(x);
            break;
        case PG_PREFETCH_PREGATE: {
            int k = K + o->p.extra < E ? K + o->p.extra : E;
            pg_route_cfg rc = pg_hparams_route(hp);
            pred_logits_(s, PG_PRED_ROUTER, target, T);
            for (int t = 0; t < T; t++) {
                /* the routing rule's own choice (groups, bias), widened to k */
                pg_route_select(&rc, o->logits + (size_t)t * E, L->exp_probs_b, E, k, o->probs, o->idx);
                for (int j = 0; j < k; j++) ADD(o->idx[j]);
            }
            break;
        }
        case PG_PREFETCH_LEARNED: { /* logits = W_t x/rms(x) + b_t */
            const pg_predictor *pr = o->p.predictor;
            if (!pr->has[target]) break;
            int k = K + o->p.extra < E ? K + o->p.extra : E;
            pred_logits_(s, PG_PRED_HEAD, target, T);
            for (int t = 0; t < T; t++) {
                float *z = o->logits + (size_t)t * E;
                for (int x = 0; x < E; x++) z[x] += pr->b[(size_t)target * E + x];
                pg_topk(z, E, k, o->idx);
                for (int j = 0; j < k; j++) ADD(o->idx[j]);
            }
            break;
        }
        case PG_PREFETCH_ORACLE: {
            const pg_trace *tr = o->p.oracle;
            for (int t = 0; t < T; t++) {
                if (s->row_pos[t] >= tr->n_pos) continue;
                const int16_t *r = tr->experts + ((size_t)s->row_pos[t] * tr->n_layer + target) * tr->k;
                for (int j = 0; j < tr->k; j++)
                    if (r[j] >= 0 && r[j] < E) ADD(r[j]);
            }
            break;
        }
        default:
            return;
        }
#undef ADD
        o->n_pred[target] = n;
        o->have_pred[target] = true;
        /* how likely a prefetched expert is to be used: measured for
         * pregate, k/E for next-layer-all, certain for the oracle */
        float confidence = predicted                            ? o->precision[target]
                           : o->p.mode == PG_PREFETCH_NEXT_ALL ? (float)K / (float)E
                                                               : 1.0f;
        if (!predicted || o->precision[target] >= o->p.min_precision)
            pg_cache_prefetch(o->cache, target, pred, n, confidence);
    }
}

/* A natively pre-gated model names layer l+1's experts from layer l's FFN
 * input xn: the same router product and routing moe_ will compute there,
 * so the prefetch is exact (precision and recall 1). */
static void predict_native_(pg_session *s, int l, int T) {
    pg_offload *o = s->off;
    const pg_hparams *hp = &s->m->hp;
    int target = l + 1, E = hp->n_expert, K = hp->n_expert_used;
    if (target >= hp->n_layer || !s->m->layers[target].is_moe) return;
    pred_logits_(s, PG_PRED_NATIVE, target, T);
    int *pred = o->pred + (size_t)target * E, n = 0;
    pg_route_cfg rc = pg_hparams_route(hp);
    memset(o->mark, 0, (size_t)E);
    for (int t = 0; t < T; t++) {
        pg_route_ex(&rc, o->logits + (size_t)t * E, s->m->layers[target].exp_probs_b, E, K, o->probs, o->idx,
                    o->sel_w);
        for (int j = 0; j < K; j++)
            if (!o->mark[o->idx[j]]) { o->mark[o->idx[j]] = 1; pred[n++] = o->idx[j]; }
    }
    o->n_pred[target] = n;
    o->have_pred[target] = true;
    pg_cache_prefetch(o->cache, target, pred, n, 1.0f);
}

/* Runs expert weights w over the rows of xn routed to expert x; each row's
 * output goes to its (token, slot) place in exp_out. */
static void run_expert_(pg_session *s, int l, const pg_expert *w, int x, int K) {
    int D = s->m->hp.dim, n = s->exp_count[x];
    const int *rows = s->exp_rows + (size_t)x * PG_MAX_BATCH * K;
    for (int i = 0; i < n; i++) memcpy(s->exp_in + (size_t)i * D, s->xn + (size_t)(rows[i] / K) * D, D * sizeof(float));
    swiglu_(s, w, n, s->exp_in, s->acc);
    for (int i = 0; i < n; i++) memcpy(s->exp_out + (size_t)rows[i] * D, s->acc + (size_t)i * D, D * sizeof(float));
}

/* The experts the chunk routes to, from the fast-tier cache: all are
 * requested at once (a window at a time if the cache is smaller), and each
 * is computed as soon as it is ready, whatever the order. */
static int moe_experts_offloaded_(pg_session *s, int l, int K, pg_fwd_run_expert run, pg_error *e) {
    pg_offload *o = s->off;
    int E = s->m->hp.n_expert, n = 0;
    for (int x = 0; x < E; x++)
        if (s->exp_count[x]) o->uni[n++] = x;
    if (o->have_pred[l]) {
        const int *pred = o->pred + (size_t)l * E;
        int right = 0;
        for (int i = 0; i < o->n_pred[l]; i++) right += s->exp_count[pred[i]] > 0;
        o->precision[l] = 0.7f * o->precision[l] + 0.3f * (float)right / (float)(o->n_pred[l] ? o->n_pred[l] : 1);
        pg_cache_score_prediction(o->cache, l, pred, o->n_pred[l], o->uni, n);
    }
    int window = pg_cache_n_slots(o->cache);
    if (n <= window) pg_cache_routed(o->cache, l); /* else later windows may still use prefetches */
    for (int i0 = 0; i0 < n; i0 += window) {
        int *pending = o->uni + i0, w = n - i0 < window ? n - i0 : window;
        pg_cache_request(o->cache, l, pending, w);
        if (o->p.mode == PG_PREFETCH_NONE_SERIAL) { /* every expert here before the first is computed */
            for (int j = 0; j < w; j++) {
                if ((o->got[j] = pg_cache_acquire_any(o->cache, l, pending + j, 1, &(int){0}, e))) continue;
                for (int i = 0; i < j; i++) pg_cache_release(o->cache, l, pending[i]);
                pg_cache_cancel(o->cache, l, pending + j + 1, w - j - 1);
                return -1;
            }
            for (int j = 0; j < w; j++) {
                run(s, l, o->got[j], pending[j], K);
                pg_cache_release(o->cache, l, pending[j]);
            }
            continue;
        }
        while (w > 0) {
            int j;
            const pg_expert *ex = pg_cache_acquire_any(o->cache, l, pending, w, &j, e);
            int x = pending[j];
            pending[j] = pending[w - 1];
            pending[--w] = x;
            if (!ex) {
                pg_cache_cancel(o->cache, l, pending, w);
                return -1;
            }
            run(s, l, ex, x, K);
            pg_cache_release(o->cache, l, x);
        }
    }
    return 0;
}

int pg_fwd_experts(pg_session *s, int l, int T, const pg_expert *resident, pg_fwd_run_expert run, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    const pg_layer *L = &s->m->layers[l];
    int E = hp->n_expert, K = hp->n_expert_used;
    memset(s->exp_count, 0, (size_t)E * sizeof(int));
    pg_route_cfg rc = pg_hparams_route(hp);
    for (int t = 0; t < T; t++) {
        int *sel = s->sel + (size_t)t * K;
        pg_route_ex(&rc, s->router + (size_t)t * E, L->exp_probs_b, E, K, s->probs, sel, s->sel_w + (size_t)t * K);
        for (int j = 0; j < K; j++) s->exp_rows[(size_t)sel[j] * PG_MAX_BATCH * K + s->exp_count[sel[j]]++] = t * K + j;
        if (s->trace) {
            pg_trace *tr = s->trace;
            size_t at = ((size_t)s->row_pos[t] * tr->n_layer + l) * tr->k;
            for (int j = 0; j < K && j < tr->k; j++) {
                tr->experts[at + j] = (int16_t)sel[j];
                tr->weights[at + j] = s->sel_w[(size_t)t * K + j];
            }
        }
    }
    /* each expert runs once over all the rows routed to it */
    if (s->off) return moe_experts_offloaded_(s, l, K, run, e);
    for (int x = 0; x < E; x++)
        if (s->exp_count[x]) run(s, l, &resident[x], x, K);
    return 0;
}

/* acc[T][D] = MoE block output for the normed rows xn[T][D]. */
static int moe_(pg_session *s, int l, const pg_layer *L, int T, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    int D = hp->dim, E = hp->n_expert, K = hp->n_expert_used;
    /* a pre-gated model's layer l routes on layer l-1's FFN input */
    const float *route_in = hp->expert_pregated && l > 0 ? s->route_in : s->xn;
    matmul_(s, &L->router, T, route_in, D, s->router, E);
    add_bias_(T, E, s->router, L->router_b);
    if (pg_fwd_experts(s, l, T, L->experts, run_expert_, e)) return -1;
    /* combine in slot order, so the sum never depends on the order experts ran in */
    memset(s->acc, 0, (size_t)T * D * sizeof(float));
    for (int t = 0; t < T; t++)
        for (int j = 0; j < K; j++)
            pgk.axpy(D, s->sel_w[(size_t)t * K + j], s->exp_out + ((size_t)t * K + j) * D, s->acc + (size_t)t * D);
    if (L->has_shared) {
        float *sh = s->exp_out; /* free again: reuse as [T][D] */
        swiglu_(s, &L->shared, T, s->xn, sh);
        for (int t = 0; t < T; t++) {
            float g = 1.0f;
            if (L->shared_gate.data) {
                float z;
                matmul_(s, &L->shared_gate, 1, s->xn + (size_t)t * D, D, &z, 1);
                g = 1.0f / (1.0f + expf(-z));
            }
            pgk.axpy(D, g, sh + (size_t)t * D, s->acc + (size_t)t * D);
        }
    }
    return 0;
}

static int ffn_(pg_session *s, int l, int T, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    const pg_layer *L = &s->m->layers[l];
    int D = hp->dim;
    trace_hidden_(s, l + 1, T);
    if (s->off) {
        pg_cache_begin_layer(s->off->cache, l);
        predict_(s, l, T);
    }
    rmsnorm_rows_(T, D, s->x, L->ffn_norm, hp->norm_eps, s->xn);
    if (s->off && s->off->p.mode == PG_PREFETCH_NATIVE) predict_native_(s, l, T);
    if (L->is_moe) {
        int rc = moe_(s, l, L, T, e);
        if (s->off) pg_cache_end_layer(s->off->cache, l);
        if (rc) return -1;
    } else {
        pg_expert dense = {L->ffn_gate, L->ffn_up, L->ffn_down, NULL, NULL, NULL};
        swiglu_(s, &dense, T, s->xn, s->acc);
    }
    for (size_t i = 0; i < (size_t)T * D; i++) s->x[i] += s->acc[i];
    if (hp->expert_pregated) memcpy(s->route_in, s->xn, (size_t)T * D * sizeof(float));
    return 0;
}

/* One forward pass over T <= PG_MAX_BATCH rows whose sequences and
 * positions are in row_seq/row_pos. Logits of the rows with want[t] (want
 * NULL: the last row only) go to out, one vocab row each in row order
 * (out NULL: s->logits). */
static int forward_chunk_(pg_session *s, const int32_t *tokens, int T, const bool *want, float *out, pg_error *e) {
    const pg_model *m = s->m;
    const pg_hparams *hp = &m->hp;
    int D = hp->dim;
    for (int t = 0; t < T; t++) {
        pg_mat_row_f32(&m->tok_embd, tokens[t], s->x + (size_t)t * D);
        if (m->rope_inv_freq) /* YaRN */
            pg_rope_cache_freqs(s->row_pos[t], hp->n_rot, m->rope_inv_freq, hp->yarn.attn_factor,
                                s->rope_cs + (size_t)t * hp->n_rot);
        else
            pg_rope_cache(s->row_pos[t], hp->n_rot, hp->rope_theta, s->rope_cs + (size_t)t * hp->n_rot);
    }
    trace_hidden_(s, 0, T);
    if (s->off) {
        pg_fwd_begin_step(s);
        predict_(s, -1, T);
    }
    for (int l = 0; l < hp->n_layer; l++) {
        attention_(s, l, T);
        if (ffn_(s, l, T, e)) return -1;
    }
    /* the output head only over the rows whose logits are wanted */
    int n_out = 0;
    for (int t = 0; t < T; t++) {
        if (want ? !want[t] : t != T - 1) continue;
        pgk.rmsnorm(D, s->x + (size_t)t * D, m->output_norm, hp->norm_eps, s->xn + (size_t)n_out * D);
        n_out++;
    }
    if (n_out == 0) return 0;
    PG_ASSERT(out || n_out == 1);
    float *dst = out ? out : s->logits;
    matmul_(s, &m->output, n_out, s->xn, D, dst, hp->vocab);
    if (out) memcpy(s->logits, out + (size_t)(n_out - 1) * hp->vocab, hp->vocab * sizeof(float));
    return 0;
}

int pg_fwd_check_eval(const pg_session *s, const int32_t *tokens, int n, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    if (n <= 0) return pg_fail(e, "nothing to evaluate");
    if (n > s->n_ctx - s->n_past)
        return pg_fail(e, "context is full: %d positions used of %d, %d more asked", s->n_past, s->n_ctx, n);
    for (int i = 0; i < n; i++)
        if (tokens[i] < 0 || tokens[i] >= hp->vocab)
            return pg_fail(e, "token id %d at position %d is outside the vocabulary (0..%d)", tokens[i], i, hp->vocab - 1);
    if (s->trace && (s->trace->n_layer != hp->n_layer || (s->trace->with_hidden && s->trace->dim != hp->dim)))
        return pg_fail(e, "trace is for another model");
    return 0;
}

int pg_session_eval(pg_session *s, const int32_t *tokens, int n, float *logits_all, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    if (pg_fwd_check_eval(s, tokens, n, e)) return -1;
    bool all[PG_MAX_BATCH];
    for (int t = 0; t < PG_MAX_BATCH; t++) all[t] = true;
    for (int i = 0; i < n; i += PG_MAX_BATCH) {
        int T = n - i < PG_MAX_BATCH ? n - i : PG_MAX_BATCH;
        for (int t = 0; t < T; t++) {
            s->row_seq[t] = 0;
            s->row_pos[t] = s->n_past + t;
        }
        if (s->trace) pg_trace_reserve(s->trace, s->n_past + T);
        float *out = logits_all ? logits_all + (size_t)i * hp->vocab : NULL;
        /* an encoder-decoder session evaluates decoder tokens */
        const bool *want = logits_all ? all : NULL;
        if (s->ed ? pg_encdec_chunk(s, tokens + i, T, out, e)
            : s->dev ? pg_devfwd_chunk(s, tokens + i, T, want, out, e)
                     : forward_chunk_(s, tokens + i, T, want, out, e))
            return -1;
        s->n_past += T;
    }
    return 0;
}

int pg_session_eval_batch(pg_session *s, int n, const int32_t *tokens, const int *seq, const int *pos,
                          const bool *want, float *logits_out, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    if (s->ed) return pg_fail(e, "batched evaluation of encoder-decoder models is not supported");
    if (n <= 0) return pg_fail(e, "nothing to evaluate");
    for (int q = 0; q < s->n_seq; q++) s->seq_last[q] = -1;
    for (int i = 0; i < n; i++) {
        if (tokens[i] < 0 || tokens[i] >= hp->vocab)
            return pg_fail(e, "token id %d in row %d is outside the vocabulary (0..%d)", tokens[i], i, hp->vocab - 1);
        if (seq[i] < 0 || seq[i] >= s->n_seq)
            return pg_fail(e, "row %d: sequence %d outside 0..%d", i, seq[i], s->n_seq - 1);
        if (pos[i] < 0 || pos[i] >= s->n_ctx)
            return pg_fail(e, "row %d: position %d outside the context (0..%d)", i, pos[i], s->n_ctx - 1);
        if (pos[i] <= s->seq_last[seq[i]])
            return pg_fail(e, "row %d: position %d of sequence %d does not follow %d", i, pos[i], seq[i],
                           s->seq_last[seq[i]]);
        s->seq_last[seq[i]] = pos[i];
    }
    if (s->trace && (s->trace->n_layer != hp->n_layer || (s->trace->with_hidden && s->trace->dim != hp->dim)))
        return pg_fail(e, "trace is for another model");
    bool none[PG_MAX_BATCH];
    memset(none, 0, sizeof none);
    float *out = logits_out;
    for (int i = 0; i < n; i += PG_MAX_BATCH) {
        int T = n - i < PG_MAX_BATCH ? n - i : PG_MAX_BATCH, max_pos = 0;
        for (int t = 0; t < T; t++) {
            s->row_seq[t] = seq[i + t];
            s->row_pos[t] = pos[i + t];
            max_pos = pos[i + t] > max_pos ? pos[i + t] : max_pos;
        }
        const bool *w = want ? want + i : NULL;
        bool all[PG_MAX_BATCH];
        if (!want) {
            for (int t = 0; t < T; t++) all[t] = true;
            w = all;
        }
        if (!logits_out) w = none; /* nobody to give logits to */
        if (s->trace) pg_trace_reserve(s->trace, max_pos + 1);
        if (s->dev ? pg_devfwd_chunk(s, tokens + i, T, w, out, e) : forward_chunk_(s, tokens + i, T, w, out, e))
            return -1;
        if (out)
            for (int t = 0; t < T; t++) out += w[t] ? hp->vocab : 0;
    }
    return 0;
}

/* ---- the pieces other passes (encdec.c) build on: forward_internal.h ---- */

void pg_fwd_matmul(pg_session *s, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    matmul_(s, W, T, X, ldx, Y, ldy);
}

void pg_fwd_rmsnorm_rows(int T, int n, const float *x, const float *w, float eps, float *y) {
    rmsnorm_rows_(T, n, x, w, eps, y);
}

void pg_fwd_predict(pg_session *s, int from, int T) { predict_(s, from, T); }

void pg_fwd_begin_step(pg_session *s) {
    pg_cache_begin_step(s->off->cache);
    memset(s->off->have_pred, 0, (size_t)s->m->hp.n_layer * sizeof(bool));
}

int pg_fwd_ffn(pg_session *s, int l, int T, pg_error *e) { return ffn_(s, l, T, e); }

void pg_fwd_trace_hidden(pg_session *s, int target, int T) { trace_hidden_(s, target, T); }

void pg_fwd_predict_native(pg_session *s, int l, int T) { predict_native_(s, l, T); }
