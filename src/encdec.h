/* encdec.h - encoder-decoder models (Switch Transformers: T5 blocks with
 * top-1 routed ReLU experts in every other block).
 *
 * The model's layers are its encoder blocks (0..n_enc_layer-1) then its
 * decoder blocks, so that each block has its own index in the expert cache,
 * the traces and the predictors. A session encodes an input once
 * (pg_session_encode: the encoder over all its tokens, bidirectional, then
 * every decoder block's cross-attention K and V over the encoder output),
 * then pg_session_eval runs decoder tokens on it, step by step or several
 * at once (teacher forcing), with a KV cache as for the decoder-only
 * families; the first decoder token is hp.dec_start_token.
 *
 *   encoder:  x = embed(input); per block:
 *               x += selfattn(rmsnorm(x))        bidirectional, T5 position bias
 *               x += ffn(rmsnorm(x))             dense ReLU, or top-1 expert * its probability
 *             enc = rmsnorm(x)
 *   decoder:  y = embed(token); per block:
 *               y += selfattn(rmsnorm(y))        causal, T5 position bias, KV cache
 *               y += crossattn(rmsnorm(y), enc)  K, V computed once per input
 *               y += ffn(rmsnorm(y))
 *             logits = output(rmsnorm(y) * D^-1/2 if the embedding is tied)
 *
 * T5 attention has no 1/sqrt(d) scaling; the position bias is a learned
 * [buckets][heads] table of the first block of each stack, shared by the
 * others, indexed by the bucket of (key position - query position). The
 * router never drops a token (transformers applies an expert capacity, also
 * at inference; the fixtures keep it above every sequence length).
 */
#ifndef PG_ENCDEC_H
#define PG_ENCDEC_H

#include "forward.h"

typedef struct pg_encdec_state {
    int n_ctx;        /* the most encoder positions */
    int n_enc;        /* encoder positions of the current input (0: none yet) */
    float *enc_x;     /* [n_ctx][D] encoder residual stream, then its (normed) output */
    float *enc_q;     /* [n_ctx][H*hd] encoder queries of one block */
    float *cross_k, *cross_v; /* [n_dec][n_ctx][H*hd] */
    float *scores;    /* [n_ctx] */
    int *bucket;      /* [n_ctx] position bucket of each key, for one query */
} pg_encdec_state;

pg_encdec_state *pg_encdec_state_new(const pg_model *m, int n_ctx);
void pg_encdec_state_free(pg_encdec_state *st); /* NULL-safe */

/* Runs the encoder over n input tokens (1..n_ctx) and readies the decoder
 * (its context is emptied). Fails (e set) on a model that is not
 * encoder-decoder, a bad token, too long an input, or an expert that could
 * not be read (then the session has no encoder input until the next call). */
int pg_session_encode(pg_session *s, const int32_t *tokens, int n, pg_error *e);

/* pg_session_eval's pass for an encoder-decoder session: T <= PG_MAX_BATCH
 * decoder tokens at s->row_pos, logits of every row to out (NULL: the last
 * row's to s->logits). Fails (e set) before pg_session_encode. */
int pg_encdec_chunk(pg_session *s, const int32_t *tokens, int T, float *out, pg_error *e);

/* The T5 relative position bucket of rel = key position - query position. */
int pg_t5_bucket(int rel, bool bidirectional, int n_buckets, int max_distance);

#endif
