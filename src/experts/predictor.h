/* predictor.h - learned pre-gates: one linear head per layer that names,
 * from the residual stream one layer early, the experts the layer will
 * route to. No change to the model: the heads live in a sidecar GGUF.
 *
 * Head t predicts layer t from h = hidden[s], s = max(0, t - depth + 1)
 * (trace.h: hidden[0] is the embedding, hidden[s] for s >= 1 the residual
 * stream before layer s-1's FFN): depth 1 names layer t one layer early,
 * depth 2 two layers early (more time to fetch, less to go on). RMS-normalised
 * without a weight: logits = W_t h/rms(h) + b_t, W_t [n_expert x dim].
 * pg_predictor_fit starts every head at the borrowed router
 * (W_t = router_t * diag(ffn_norm_t), b_t = 0, which is exactly the
 * training-free `pregate` predictor) and trains it with Adam on a softmax
 * cross-entropy against the traced top-k (target 1/k on each), keeping the
 * weights with the best loss on a held-out split (the last 10% of the
 * positions).
 *
 * Sidecar file: GGUF with pregate.predictor.{n_layer,n_expert,dim,k,depth} (depth 1 if absent) and
 * pregate.predictor.model_fingerprint (a hash of the model's routers, so a
 * predictor of another model is refused), tensors pred.T.weight [dim, E]
 * (GGML order) and pred.T.bias [E], F32, for each layer T with experts.
 */
#ifndef PG_PREDICTOR_H
#define PG_PREDICTOR_H

#include "../gguf.h"
#include "../model.h"
#include "trace.h"

typedef struct {
    int n_layer, n_expert, dim, k;
    int depth;   /* 1 or 2: how many layers ahead the heads look */
    uint64_t fingerprint;
    bool *has;   /* [n_layer] */
    float *w;    /* [n_layer][n_expert][dim] */
    float *b;    /* [n_layer][n_expert] */
} pg_predictor;

typedef struct {
    int epochs;          /* upper bound (default 200) */
    float lr;            /* Adam step (default 2e-3) */
    float holdout;       /* fraction of positions held out (default 0.1) */
    int patience;        /* epochs without held-out improvement before stopping (default 20) */
    int depth;           /* 1 (default) or 2 layers ahead */
} pg_fit_params;

/* Recall of the top-k on the held-out positions, per layer: before
 * (borrowed router) and after fitting. */
typedef struct {
    double recall_borrowed, recall_learned;
    double loss_borrowed, loss_learned;
    int epochs;
} pg_fit_layer_report;

void pg_fit_params_default(pg_fit_params *p);
uint64_t pg_model_router_fingerprint(const pg_model *m);
/* Fits heads for every layer with experts. report may be NULL ([n_layer]). */
int pg_predictor_fit(const pg_model *m, const pg_trace *tr, const pg_fit_params *p, pg_predictor *out,
                     pg_fit_layer_report *report, pg_error *e);
/* An all-zero predictor of that shape (no heads yet). */
void pg_predictor_alloc(pg_predictor *p, int n_layer, int n_expert, int dim, int k);
void pg_predictor_free(pg_predictor *p);
int pg_predictor_write(const pg_predictor *p, const char *path, pg_error *e);
/* Reads and checks the file against the model (layers, experts, dim,
 * fingerprint). */
int pg_predictor_read(pg_predictor *p, const pg_model *m, const char *path, pg_error *e);
/* What a predictor file must match: the model's shape and router
 * fingerprint, and which layers have experts (heads are read for those). */
typedef struct {
    int n_layer, n_expert, dim, k;
    uint64_t fingerprint;
    const bool *is_moe; /* [n_layer] */
} pg_predictor_shape;
/* pg_predictor_read on an opened GGUF (its path names it in messages). */
int pg_predictor_from_gguf(pg_predictor *p, const pg_predictor_shape *want, const gguf_file *g, pg_error *e);
/* Expert logits of layer t for one raw hidden vector h[dim]. */
void pg_predictor_logits(const pg_predictor *p, int t, const float *h, float *logits);

#endif
