/* forward.h - a session: KV cache, activations, and the forward pass.
 *
 * pg_session_eval runs the transformer over n tokens at positions
 * n_past .. n_past+n-1 (in chunks of at most PG_MAX_BATCH), appending them
 * to the KV cache. Every activation buffer is allocated once, in
 * pg_session_new, for the largest chunk.
 *
 * A session may hold several sequences (pg_session_new_seqs): the KV cache
 * has one slot of n_ctx positions per sequence, and pg_session_eval_batch
 * takes rows that each carry their own sequence and position, so that the
 * tokens of different sequences (the server's concurrent requests) go
 * through the model together: every weight matrix is streamed once per
 * chunk, and tokens routed to the same expert share one expert load and one
 * expert computation. Every kernel computes each row on its own, so a
 * sequence's logits do not depend on what else is in its batch
 * (tests/test_batch.c checks them bit for bit against the sequence alone).
 */
#ifndef PG_FORWARD_H
#define PG_FORWARD_H

#include "experts/offload.h"
#include "model.h"
#include "threadpool.h"


typedef struct pg_session {
    pg_model *m;
    pg_pool *pool;
    int n_ctx;   /* KV cache capacity in positions, per sequence */
    int n_seq;   /* sequences (KV cache slots) */
    int n_past;  /* positions already in the cache (sequence 0, pg_session_eval) */
    float *k_cache, *v_cache; /* [n_layer][n_seq][n_ctx][n_head_kv*head_dim]; MLA: k_cache
                               * [..][kv_lora_rank + qk_rope] (latent | rope key), v_cache NULL */
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
    float *route_in; /* [B][D] pre-gated models: the previous layer's FFN input */
    int *row_seq, *row_pos; /* [B] sequence and position of each row of the chunk */
    int *seq_last;   /* [n_seq] scratch: last position seen per sequence (batch checks) */
    float *logits;   /* [vocab] logits of the last token evaluated */
    void *mm_scratch;
    float *att_scratch;
    pg_offload *off;   /* experts from the fast-tier cache; NULL: from the mapping */
    pg_trace *trace;   /* if set, every position's routing is recorded here */
    size_t kv_floats;  /* floats in k_cache and v_cache together (per-architecture widths, mla.h) */
    float *mla;        /* MLA activations (mla.c), NULL for other families */
    struct pg_encdec_state *ed; /* encoder-decoder models (encdec.h); NULL otherwise */
    struct pg_devfwd *dev; /* the pass runs on a device (devfwd.h: pg_session_set_device); NULL: here */
} pg_session;

/* n_ctx <= 0: the model's training context (capped at 4096). */
pg_session *pg_session_new(pg_model *m, int n_ctx, int n_threads, pg_error *e);
/* The same with n_seq >= 1 sequences of n_ctx positions each. */
pg_session *pg_session_new_seqs(pg_model *m, int n_ctx, int n_seq, int n_threads, pg_error *e);
void pg_session_free(pg_session *s); /* NULL-safe */
void pg_session_reset(pg_session *s); /* forget the context */
/* Gives the session an offloading state (owned from then on; NULL: resident).
 * On a device, before pg_session_set_device (devfwd.h). */
void pg_session_set_offload(pg_session *s, pg_offload *off);

/* Evaluates n tokens; afterwards s->logits holds the last token's logits.
 * logits_all, if not NULL, receives n rows of vocab logits. Fails (e set)
 * on a token id out of range, when the context is full, or when an expert
 * could not be read (nothing is computed with it; the context is as before
 * the call, so the session can go on). */
int pg_session_eval(pg_session *s, const int32_t *tokens, int n, float *logits_all, pg_error *e);

/* Evaluates n rows: row i is token tokens[i] of sequence seq[i] at position
 * pos[i]. It attends to positions 0..pos[i] of its sequence, so those before
 * it must have been written (by earlier calls or earlier rows of this one);
 * the caller keeps each sequence's length (n_past is not used or changed).
 * Within one call the positions of a sequence must increase. Rows are taken
 * PG_MAX_BATCH at a time, in order. want[i] (want NULL: every row) asks for
 * row i's logits: logits_out receives one row of vocab floats per wanted
 * row, in row order, and s->logits the last of them. Fails (e set, nothing
 * computed) on a token, sequence or position out of range, a position that
 * does not increase, or (like pg_session_eval) an expert that could not be
 * read; then the rows' KV entries may have been overwritten, and a caller
 * that goes on evaluates those rows again. */
int pg_session_eval_batch(pg_session *s, int n, const int32_t *tokens, const int *seq, const int *pos,
                          const bool *want, float *logits_out, pg_error *e);

#endif
