/* devfwd.c - the forward pass on a device; see devfwd.h.
 *
 * It reads like forward.c, with every kernel queued on the device's
 * compute stream. The host waits for the device only where it must decide
 * something: each MoE layer's router logits (and a predictor's), and the
 * output logits.
 */
#include "devfwd.h"

#include "../forward.h"
#include "../forward_internal.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* One layer's weights on the device (NULL / empty where the model has none). */
typedef struct {
    const float *attn_norm, *q_norm, *k_norm, *ffn_norm, *bq, *bk, *bv, *bo, *sinks, *router_b;
    pg_mat wq, wk, wv, wo, ffn_gate, ffn_up, ffn_down, router, shared_gate;
    pg_expert shared;
    pg_expert *experts; /* [E] resident experts; NULL when offloaded */
    float *eb_gate, *eb_up, *eb_down; /* expert biases [E][F], [E][F], [E][D] (gpt-oss), or NULL */
    pg_mat head;        /* learned predictor head [E x D] (--prefetch learned) */
} dlayer;

struct pg_devfwd {
    pg_dev *dev;
    const pg_dev_ops *op;
    pg_mat tok_embd, output;
    const float *output_norm, *inv_freq, *ones;
    float attn_factor;
    dlayer *L;
    int n_layer;
    /* state: rows of B = PG_MAX_BATCH */
    float *k_cache, *v_cache;     /* [n_layer][n_seq][n_ctx][KV*hd] */
    float *x, *xn, *xp, *route_in; /* [B][D]: stream, normed, predictor input, pre-gated routing input */
    float *q, *att, *k, *v;       /* [B][H*hd], [B][KV*hd] */
    float *g, *u;                 /* [B][F] */
    float *acc, *exp_in, *exp_tmp; /* [B][D] */
    float *exp_out;               /* [B][K][D] */
    float *router, *plog, *zg;    /* [B][E], [B][E], [B] */
    float *w;                     /* [B][K] routing weights */
    int *tok, *pos, *idx_tok, *idx_slot, *idx_out; /* [B], [B], [B*K], [B*K], [B] */
    float *logits;                /* [B][V] */
    size_t bytes;
    void **owned;
    int n_owned, cap_owned;
    bool failed;                  /* a download in a void hook failed: msg */
    char msg[PG_ERR_MAX];
};

static int max_(int a, int b) { return a > b ? a : b; }

/* ---- moving the model ---- */

static void *dalloc_(pg_devfwd *df, size_t bytes, pg_error *e) {
    void *p = df->op->alloc(df->dev, bytes ? bytes : 4);
    if (!p) {
        pg_fail(e, "%s: out of device memory (%.1f MiB more wanted, %.1f MiB in use by pregate)", df->dev->name,
                bytes / 1048576.0, df->bytes / 1048576.0);
        return NULL;
    }
    if (df->n_owned == df->cap_owned) {
        df->cap_owned = df->cap_owned ? 2 * df->cap_owned : 64;
        df->owned = xrealloc(df->owned, (size_t)df->cap_owned * sizeof(void *));
    }
    df->owned[df->n_owned++] = p;
    df->bytes += bytes;
    return p;
}

static int dcopy_(pg_devfwd *df, const void *src, size_t bytes, const void **out, pg_error *e) {
    void *p = dalloc_(df, bytes, e);
    if (!p || df->op->upload(df->dev, p, src, bytes, e)) return -1;
    *out = p;
    return 0;
}

static int dmat_(pg_devfwd *df, const pg_mat *src, pg_mat *dst, pg_error *e) {
    *dst = *src;
    if (!src->data) return 0;
    return dcopy_(df, src->data, src->row_bytes * (size_t)src->rows, &dst->data, e);
}

static int dvec_(pg_devfwd *df, const float *src, int n, const float **dst, pg_error *e) {
    *dst = NULL;
    if (!src) return 0;
    return dcopy_(df, src, (size_t)n * sizeof(float), (const void **)dst, e);
}

static int dexpert_(pg_devfwd *df, const pg_expert *src, pg_expert *dst, pg_error *e) {
    *dst = *src;
    dst->b_gate = dst->b_up = dst->b_down = NULL; /* on the device: expert_bias_ */
    return dmat_(df, &src->gate, &dst->gate, e) || dmat_(df, &src->up, &dst->up, e) ||
           dmat_(df, &src->down, &dst->down, e);
}

static int check_family_(const pg_session *s, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    const char *why = hp->mla ? "multi-head latent attention"
                      : hp->n_enc_layer > 0 ? "encoder-decoder blocks"
                      : hp->ffn_act != PG_FFN_SILU_GLU ? "ReLU FFNs" : NULL;
    if (why)
        return pg_fail(e, "%s: the device backend does not run %s yet (arch %s): use --backend cpu", s->m->path, why,
                       pg_arch_get(hp->arch)->name);
    return 0;
}

/* The experts' biases stay resident on the device, as on the host: a
 * table per layer, indexed by expert (expert_bias_). */
static int upload_biases_(pg_devfwd *df, const pg_layer *L, dlayer *d, const pg_hparams *hp, pg_error *e) {
    int E = hp->n_expert, F = hp->expert_ffn_dim, D = hp->dim;
    float *h = xmalloc((size_t)E * (F > D ? F : D) * sizeof(float));
    const float **dst[3] = {(const float **)&d->eb_gate, (const float **)&d->eb_up, (const float **)&d->eb_down};
    int rc = 0;
    for (int k = 0; k < 3 && !rc; k++) {
        int n = k < 2 ? F : D;
        for (int x = 0; x < E; x++) {
            const pg_expert *w = &L->experts[x];
            const float *b = k == 0 ? w->b_gate : k == 1 ? w->b_up : w->b_down;
            if (b) memcpy(h + (size_t)x * n, b, (size_t)n * sizeof(float));
            else memset(h + (size_t)x * n, 0, (size_t)n * sizeof(float));
        }
        rc = dvec_(df, h, E * n, dst[k], e);
    }
    free(h);
    return rc;
}

/* Expert x of layer l's weights with its biases on the device. */
static pg_expert expert_bias_(const pg_devfwd *df, int l, const pg_expert *w, int x) {
    const dlayer *d = &df->L[l];
    pg_expert r = *w;
    int F = w->gate.rows, D = w->down.rows;
    r.b_gate = d->eb_gate ? d->eb_gate + (size_t)x * F : NULL;
    r.b_up = d->eb_up ? d->eb_up + (size_t)x * F : NULL;
    r.b_down = d->eb_down ? d->eb_down + (size_t)x * D : NULL;
    return r;
}

static int upload_layer_(pg_devfwd *df, const pg_session *s, int l, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    const pg_layer *L = &s->m->layers[l];
    dlayer *d = &df->L[l];
    int D = hp->dim, qd = hp->n_head * hp->head_dim, kvd = hp->n_head_kv * hp->head_dim, E = hp->n_expert;
    int qn = hp->qk_norm == PG_QKNORM_FULL ? qd : hp->head_dim, kn = hp->qk_norm == PG_QKNORM_FULL ? kvd : hp->head_dim;
    if (dvec_(df, L->attn_norm, D, &d->attn_norm, e) || dvec_(df, L->ffn_norm, D, &d->ffn_norm, e) ||
        dvec_(df, L->q_norm, qn, &d->q_norm, e) || dvec_(df, L->k_norm, kn, &d->k_norm, e) ||
        dvec_(df, L->bq, qd, &d->bq, e) || dvec_(df, L->bk, kvd, &d->bk, e) || dvec_(df, L->bv, kvd, &d->bv, e) ||
        dvec_(df, L->bo, D, &d->bo, e) || dvec_(df, L->sinks, hp->n_head, &d->sinks, e) ||
        dmat_(df, &L->wq, &d->wq, e) || dmat_(df, &L->wk, &d->wk, e) || dmat_(df, &L->wv, &d->wv, e) ||
        dmat_(df, &L->wo, &d->wo, e))
        return -1;
    if (!L->is_moe)
        return dmat_(df, &L->ffn_gate, &d->ffn_gate, e) || dmat_(df, &L->ffn_up, &d->ffn_up, e) ||
               dmat_(df, &L->ffn_down, &d->ffn_down, e);
    if (dmat_(df, &L->router, &d->router, e) || dvec_(df, L->router_b, E, &d->router_b, e)) return -1;
    if (L->has_shared && (dexpert_(df, &L->shared, &d->shared, e) || dmat_(df, &L->shared_gate, &d->shared_gate, e)))
        return -1;
    if (s->off && s->off->p.mode == PG_PREFETCH_LEARNED && s->off->p.predictor->has[l]) {
        const pg_predictor *pr = s->off->p.predictor;
        pg_mat head = {.type = PG_TYPE_F32, .rows = E, .cols = D, .row_bytes = (size_t)D * sizeof(float),
                       .data = pr->w + (size_t)l * E * D};
        if (dmat_(df, &head, &d->head, e)) return -1;
    }
    if (L->experts[0].b_gate && upload_biases_(df, L, d, hp, e)) return -1;
    if (s->off) return 0; /* the experts come through the cache */
    d->experts = xcalloc((size_t)E, sizeof(pg_expert));
    for (int x = 0; x < E; x++)
        if (dexpert_(df, &L->experts[x], &d->experts[x], e)) return -1;
    return 0;
}

#define DBUF(field, n, type)                                                                                  \
    do {                                                                                                      \
        if (!(df->field = dalloc_(df, (size_t)(n) * sizeof(type), e))) return -1;                             \
    } while (0)

static int alloc_state_(pg_devfwd *df, const pg_session *s, pg_error *e) {
    const pg_hparams *hp = &s->m->hp;
    size_t B = PG_MAX_BATCH, D = hp->dim, qd = (size_t)hp->n_head * hp->head_dim;
    size_t kvd = (size_t)hp->n_head_kv * hp->head_dim, E = max_(hp->n_expert, 1), K = max_(hp->n_expert_used, 1);
    size_t F = max_(max_(hp->ffn_dim, hp->expert_ffn_dim), hp->shared_ffn_dim);
    DBUF(k_cache, (size_t)hp->n_layer * s->n_seq * s->n_ctx * kvd, float);
    DBUF(v_cache, (size_t)hp->n_layer * s->n_seq * s->n_ctx * kvd, float);
    DBUF(x, B * D, float); DBUF(xn, B * D, float); DBUF(xp, B * D, float); DBUF(route_in, B * D, float);
    DBUF(q, B * qd, float); DBUF(att, B * qd, float); DBUF(k, B * kvd, float); DBUF(v, B * kvd, float);
    DBUF(g, B * F, float); DBUF(u, B * F, float);
    DBUF(acc, B * D, float); DBUF(exp_in, B * D, float); DBUF(exp_tmp, B * D, float);
    DBUF(exp_out, B * K * D, float);
    DBUF(router, B * E, float); DBUF(plog, B * E, float); DBUF(zg, B, float); DBUF(w, B * K, float);
    DBUF(tok, B, int); DBUF(pos, B, int); DBUF(idx_tok, B * K, int); DBUF(idx_slot, B * K, int); DBUF(idx_out, B, int);
    DBUF(logits, B * (size_t)hp->vocab, float);
    /* RoPE frequencies: YaRN's (the model's), else base^(-2i/n_rot) */
    int half = hp->n_rot / 2;
    float *f = xmalloc((size_t)max_(half, 1) * sizeof(float)), *ones = xmalloc(D * sizeof(float));
    for (int i = 0; i < half; i++)
        f[i] = s->m->rope_inv_freq ? s->m->rope_inv_freq[i] : (float)pow((double)hp->rope_theta, -2.0 * i / hp->n_rot);
    for (size_t i = 0; i < D; i++) ones[i] = 1.0f;
    df->attn_factor = s->m->rope_inv_freq ? hp->yarn.attn_factor : 1.0f;
    int rc = dvec_(df, f, max_(half, 1), &df->inv_freq, e) || dvec_(df, ones, (int)D, &df->ones, e);
    free(f);
    free(ones);
    return rc ? -1 : 0;
}

void pg_devfwd_free(pg_devfwd *df) {
    if (!df) return;
    df->op->sync(df->dev, NULL);
    for (int i = 0; i < df->n_owned; i++) df->op->free(df->dev, df->owned[i]);
    for (int l = 0; df->L && l < df->n_layer; l++) free(df->L[l].experts);
    free(df->owned);
    free(df->L);
    free(df);
}

int pg_session_set_device(pg_session *s, pg_dev *dev, pg_error *e) {
    const pg_model *m = s->m;
    if (check_family_(s, e)) return -1;
    if (s->off && s->off->p.dev != dev)
        return pg_fail(e, "offloading to a device needs the cache made for it (pg_offload_params.dev)");
    pg_devfwd *df = xcalloc(1, sizeof *df);
    df->dev = dev;
    df->op = dev->ops;
    df->n_layer = m->hp.n_layer;
    df->L = xcalloc((size_t)m->hp.n_layer, sizeof(dlayer));
    int rc = dmat_(df, &m->tok_embd, &df->tok_embd, e);
    if (!rc && m->output.data == m->tok_embd.data) df->output = df->tok_embd; /* tied */
    else if (!rc) rc = dmat_(df, &m->output, &df->output, e);
    if (!rc) rc = dvec_(df, m->output_norm, m->hp.dim, &df->output_norm, e);
    for (int l = 0; !rc && l < m->hp.n_layer; l++) rc = upload_layer_(df, s, l, e);
    if (!rc) rc = alloc_state_(df, s, e);
    if (rc) {
        pg_devfwd_free(df);
        return -1;
    }
    pg_devfwd_free(s->dev);
    s->dev = df;
    return 0;
}

size_t pg_devfwd_bytes(const pg_devfwd *df) { return df->bytes; }

/* ---- the pass ---- */

/* out = down(act(gate X + b) * (up X + b)) + b for one expert or a dense FFN
 * whose biases (if any) are on the device. */
static void swiglu_(pg_devfwd *df, const pg_hparams *hp, const pg_expert *w, int T, const float *X, float *out) {
    const pg_dev_ops *op = df->op;
    int F = w->gate.rows, D = hp->dim;
    op->matmul(df->dev, &w->gate, T, X, D, df->g, F);
    op->matmul(df->dev, &w->up, T, X, D, df->u, F);
    if (w->b_gate) op->add_bias(df->dev, T, F, df->g, w->b_gate);
    if (w->b_up) op->add_bias(df->dev, T, F, df->u, w->b_up);
    if (hp->swiglu_limit > 0)
        op->swiglu_oai(df->dev, (size_t)T * F, df->g, df->u, hp->swiglu_alpha, hp->swiglu_limit, df->g);
    else
        op->silu_mul(df->dev, (size_t)T * F, df->g, df->u, df->g);
    op->matmul(df->dev, &w->down, T, df->g, F, out, D);
    if (w->b_down) op->add_bias(df->dev, T, D, out, w->b_down);
}

static void attention_(pg_session *s, int l, int T) {
    pg_devfwd *df = s->dev;
    const pg_dev_ops *op = df->op;
    pg_dev *d = df->dev;
    const pg_hparams *hp = &s->m->hp;
    const dlayer *L = &df->L[l];
    int D = hp->dim, hd = hp->head_dim, H = hp->n_head, KV = hp->n_head_kv, qd = H * hd, kvd = KV * hd;
    op->rmsnorm(d, T, D, df->x, L->attn_norm, hp->norm_eps, df->xn);
    op->matmul(d, &L->wq, T, df->xn, D, df->q, qd);
    op->matmul(d, &L->wk, T, df->xn, D, df->k, kvd);
    op->matmul(d, &L->wv, T, df->xn, D, df->v, kvd);
    if (L->bq) op->add_bias(d, T, qd, df->q, L->bq);
    if (L->bk) op->add_bias(d, T, kvd, df->k, L->bk);
    if (L->bv) op->add_bias(d, T, kvd, df->v, L->bv);
    if (hp->qk_norm == PG_QKNORM_HEAD) {
        op->rmsnorm(d, T * H, hd, df->q, L->q_norm, hp->norm_eps, df->q);
        op->rmsnorm(d, T * KV, hd, df->k, L->k_norm, hp->norm_eps, df->k);
    } else if (hp->qk_norm == PG_QKNORM_FULL) {
        op->rmsnorm(d, T, qd, df->q, L->q_norm, hp->norm_eps, df->q);
        op->rmsnorm(d, T, kvd, df->k, L->k_norm, hp->norm_eps, df->k);
    }
    if (hp->clip_qkv > 0) {
        op->clamp(d, (size_t)T * qd, df->q, hp->clip_qkv);
        op->clamp(d, (size_t)T * kvd, df->k, hp->clip_qkv);
        op->clamp(d, (size_t)T * kvd, df->v, hp->clip_qkv);
    }
    op->rope(d, T, df->q, H, hd, hp->n_rot, df->pos, df->inv_freq, df->attn_factor, hp->rope_neox);
    op->rope(d, T, df->k, KV, hd, hp->n_rot, df->pos, df->inv_freq, df->attn_factor, hp->rope_neox);
    /* each run of rows of one sequence writes its K/V rows, then attends
     * to its cache (a later run of the same sequence comes later in it) */
    int window = s->m->layers[l].swa ? hp->n_swa : 0;
    for (int t0 = 0, t1; t0 < T; t0 = t1) {
        for (t1 = t0 + 1; t1 < T && s->row_seq[t1] == s->row_seq[t0];) t1++;
        size_t at = ((size_t)l * s->n_seq + s->row_seq[t0]) * s->n_ctx * kvd;
        float *kc = df->k_cache + at, *vc = df->v_cache + at;
        op->set_rows(d, t1 - t0, kvd, df->k + (size_t)t0 * kvd, df->pos + t0, kc);
        op->set_rows(d, t1 - t0, kvd, df->v + (size_t)t0 * kvd, df->pos + t0, vc);
        op->attention(d, t1 - t0, df->q + (size_t)t0 * qd, kc, vc, kvd, df->pos + t0, window, H, KV, hd, L->sinks,
                      df->att + (size_t)t0 * qd);
    }
    op->matmul(d, &L->wo, T, df->att, qd, df->acc, D);
    if (L->bo) op->add_bias(d, T, D, df->acc, L->bo);
    op->add(d, (size_t)T * D, df->x, df->acc);
}

/* Fetches n floats of device results into host memory; a failure is kept
 * for the pass to report (the hooks that call this cannot fail). */
static void fetch_(pg_devfwd *df, float *dst, const float *src, size_t n) {
    pg_error e = {{0}};
    if (df->failed) return;
    if (df->op->download(df->dev, dst, src, n * sizeof(float), &e)) {
        df->failed = true;
        memcpy(df->msg, e.msg, sizeof df->msg);
        memset(dst, 0, n * sizeof(float));
    }
}

void pg_devfwd_pred_logits(pg_session *s, pg_pred_input in, int target, int T, float *logits) {
    pg_devfwd *df = s->dev;
    const pg_dev_ops *op = df->op;
    const pg_hparams *hp = &s->m->hp;
    const dlayer *L = &df->L[target];
    int D = hp->dim, E = hp->n_expert;
    if (in == PG_PRED_HEAD) {
        op->rmsnorm(df->dev, T, D, df->x, df->ones, 1e-6f, df->xp);
        op->matmul(df->dev, &L->head, T, df->xp, D, df->plog, E);
    } else {
        const float *xn = df->xn; /* NATIVE: this layer's FFN input */
        if (in == PG_PRED_ROUTER) {
            op->rmsnorm(df->dev, T, D, df->x, L->ffn_norm, hp->norm_eps, df->xp);
            xn = df->xp;
        }
        op->matmul(df->dev, &L->router, T, xn, D, df->plog, E);
        if (L->router_b) op->add_bias(df->dev, T, E, df->plog, L->router_b);
    }
    fetch_(df, logits, df->plog, (size_t)T * E);
}

/* forward.c's pg_fwd_experts calls this for each expert the chunk uses:
 * its rows of xn in, its outputs to their (token, slot) rows of exp_out. */
static void run_expert_(pg_session *s, int l, const pg_expert *w, int x, int K) {
    pg_devfwd *df = s->dev;
    const pg_dev_ops *op = df->op;
    int D = s->m->hp.dim, n = s->exp_count[x];
    const int *rows = s->exp_rows + (size_t)x * PG_MAX_BATCH * K;
    int tok[PG_MAX_BATCH];
    for (int i = 0; i < n; i++) tok[i] = rows[i] / K;
    op->upload_async(df->dev, df->idx_tok, tok, (size_t)n * sizeof(int));
    op->upload_async(df->dev, df->idx_slot, rows, (size_t)n * sizeof(int));
    op->gather_rows(df->dev, n, D, df->xn, df->idx_tok, df->exp_in);
    pg_expert wb = expert_bias_(df, l, w, x);
    swiglu_(df, &s->m->hp, &wb, n, df->exp_in, df->exp_tmp);
    op->scatter_rows(df->dev, n, D, df->exp_tmp, df->idx_slot, df->exp_out);
    /* the slot may be refilled once these kernels have read it */
    if (s->off) pg_cache_fence(s->off->cache, l, x);
}

static int moe_(pg_session *s, int l, int T, pg_error *e) {
    pg_devfwd *df = s->dev;
    const pg_dev_ops *op = df->op;
    const pg_hparams *hp = &s->m->hp;
    const dlayer *L = &df->L[l];
    int D = hp->dim, E = hp->n_expert, K = hp->n_expert_used;
    const float *route_in = hp->expert_pregated && l > 0 ? df->route_in : df->xn;
    op->matmul(df->dev, &L->router, T, route_in, D, df->router, E);
    if (L->router_b) op->add_bias(df->dev, T, E, df->router, L->router_b);
    fetch_(df, s->router, df->router, (size_t)T * E);
    if (df->failed) return pg_fail(e, "%s", df->msg);
    if (pg_fwd_experts(s, l, T, L->experts, run_expert_, e)) return -1;
    op->upload_async(df->dev, df->w, s->sel_w, (size_t)T * K * sizeof(float));
    op->moe_combine(df->dev, T, K, D, df->exp_out, df->w, df->acc);
    if (s->m->layers[l].has_shared) {
        swiglu_(df, hp, &L->shared, T, df->xn, df->exp_tmp);
        if (L->shared_gate.data) op->matmul(df->dev, &L->shared_gate, T, df->xn, D, df->zg, 1);
        op->gated_add(df->dev, T, D, df->acc, df->exp_tmp, L->shared_gate.data ? df->zg : NULL);
    }
    return 0;
}

static int ffn_(pg_session *s, int l, int T, pg_error *e) {
    pg_devfwd *df = s->dev;
    const pg_dev_ops *op = df->op;
    const pg_hparams *hp = &s->m->hp;
    const dlayer *L = &df->L[l];
    int D = hp->dim;
    if (s->trace && s->trace->with_hidden) {
        fetch_(df, s->x, df->x, (size_t)T * D);
        pg_fwd_trace_hidden(s, l + 1, T);
    }
    if (s->off) {
        pg_cache_begin_layer(s->off->cache, l);
        pg_fwd_predict(s, l, T);
    }
    op->rmsnorm(df->dev, T, D, df->x, L->ffn_norm, hp->norm_eps, df->xn);
    if (s->off && s->off->p.mode == PG_PREFETCH_NATIVE) pg_fwd_predict_native(s, l, T);
    if (s->m->layers[l].is_moe) {
        int rc = moe_(s, l, T, e);
        if (s->off) pg_cache_end_layer(s->off->cache, l);
        if (rc) return -1;
    } else {
        pg_expert dense = {L->ffn_gate, L->ffn_up, L->ffn_down, NULL, NULL, NULL};
        swiglu_(df, hp, &dense, T, df->xn, df->acc);
    }
    op->add(df->dev, (size_t)T * D, df->x, df->acc);
    if (hp->expert_pregated) {
        op->zero(df->dev, (size_t)T * D, df->route_in);
        op->add(df->dev, (size_t)T * D, df->route_in, df->xn);
    }
    return df->failed ? pg_fail(e, "%s", df->msg) : 0;
}

int pg_devfwd_chunk(pg_session *s, const int32_t *tokens, int T, const bool *want, float *out, pg_error *e) {
    pg_devfwd *df = s->dev;
    const pg_dev_ops *op = df->op;
    const pg_hparams *hp = &s->m->hp;
    int D = hp->dim, V = hp->vocab;
    df->failed = false;
    op->upload_async(df->dev, df->tok, tokens, (size_t)T * sizeof(int32_t));
    op->upload_async(df->dev, df->pos, s->row_pos, (size_t)T * sizeof(int));
    op->embed(df->dev, &df->tok_embd, T, df->tok, df->x);
    if (s->trace && s->trace->with_hidden) {
        fetch_(df, s->x, df->x, (size_t)T * D);
        pg_fwd_trace_hidden(s, 0, T);
    }
    if (s->off) {
        pg_fwd_begin_step(s);
        pg_fwd_predict(s, -1, T);
    }
    for (int l = 0; l < hp->n_layer; l++) {
        attention_(s, l, T);
        if (ffn_(s, l, T, e)) return -1;
    }
    /* the output head over the rows whose logits are wanted (want NULL: the last) */
    int rows[PG_MAX_BATCH], n_out = 0;
    for (int t = 0; t < T; t++)
        if (want ? want[t] : t == T - 1) rows[n_out++] = t;
    if (n_out == 0) return 0;
    PG_ASSERT(out || n_out == 1);
    op->upload_async(df->dev, df->idx_out, rows, (size_t)n_out * sizeof(int));
    op->gather_rows(df->dev, n_out, D, df->x, df->idx_out, df->xp);
    op->rmsnorm(df->dev, n_out, D, df->xp, df->output_norm, hp->norm_eps, df->xn);
    op->matmul(df->dev, &df->output, n_out, df->xn, D, df->logits, V);
    float *dst = out ? out : s->logits;
    if (op->download(df->dev, dst, df->logits, (size_t)n_out * V * sizeof(float), e)) return -1;
    if (out) memcpy(s->logits, out + (size_t)(n_out - 1) * V, (size_t)V * sizeof(float));
    return 0;
}
