/* forward.h - a session: KV cache, activations, and the forward pass.
 *
 * pg_session_eval runs the transformer over n tokens at positions
 * n_past .. n_past+n-1 (in chunks of at most PG_MAX_BATCH), appending them
 * to the KV cache. Every activation buffer is allocated once, in
 * pg_session_new, for the largest chunk.
 */
#ifndef PG_FORWARD_H
#define PG_FORWARD_H

#include "experts/offload.h"
#include "model.h"
#include "threadpool.h"


typedef struct pg_session {
    pg_model *m;
    pg_pool *pool;
    int n_ctx;   /* KV cache capacity in positions */
    int n_past;  /* positions already in the cache */
    float *k_cache, *v_cache; /* [n_layer][n_ctx][n_head_kv*head_dim] */
    /* activations, B = PG_MAX_BATCH rows each */
    float *x;        /* [B][D] residual stream */
    float *xn;       /* [B][D] normed input of a sub-block */
    float *q;        /* [B][H*hd] */
    float *k, *v;    /* [B][KV*hd] */
    float *att;      /* [B][H*hd] attention output */
    float *ffn_g, *ffn_u; /* [B][Fmax] */
    float *acc;      /* [B][D] FFN / MoE output */
    float *router;   /* [B][E] router logits */
    float *probs;    /* [E] */
    int *sel;        /* [B][K] selected experts */
    float *sel_w;    /* [B][K] their weights */
    float *exp_out;  /* [B][K][D] output of each selected expert */
    float *exp_in;   /* [B][D] rows routed to one expert */
    int *exp_rows;   /* [E][B*K] (token*K + slot) routed to each expert */
    int *exp_count;  /* [E] */
    float *rope_cs;  /* [B][n_rot] cos/sin per position */
    float *logits;   /* [vocab] logits of the last token evaluated */
    void *mm_scratch;
    float *att_scratch;
    pg_offload *off;   /* experts from the fast-tier cache; NULL: from the mapping */
    pg_trace *trace;   /* if set, every position's routing is recorded here */
} pg_session;

/* n_ctx <= 0: the model's training context (capped at 4096). */
pg_session *pg_session_new(pg_model *m, int n_ctx, int n_threads, pg_error *e);
void pg_session_free(pg_session *s); /* NULL-safe */
void pg_session_reset(pg_session *s); /* forget the context */
/* Gives the session an offloading state (owned from then on; NULL: resident). */
void pg_session_set_offload(pg_session *s, pg_offload *off);

/* Evaluates n tokens; afterwards s->logits holds the last token's logits.
 * logits_all, if not NULL, receives n rows of vocab logits. Fails (e set)
 * on a token id out of range, when the context is full, or when an expert
 * could not be read (nothing is computed with it; the context is as before
 * the call, so the session can go on). */
int pg_session_eval(pg_session *s, const int32_t *tokens, int n, float *logits_all, pg_error *e);

#endif
