/* forward_internal.h - pieces of forward.c that other passes over the same
 * session build on (encdec.c: the encoder-decoder families), so that they
 * share one matmul path, one FFN/MoE block with its offloading and tracing,
 * and one predictor. Private to the library. */
#ifndef PG_FORWARD_INTERNAL_H
#define PG_FORWARD_INTERNAL_H

#include "forward.h"

/* Y[T][ldy] = X[T][ldx] W^T with the session's pool and scratch; T <= PG_MAX_BATCH. */
void pg_fwd_matmul(pg_session *s, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy);
/* y[t] = rmsnorm(x[t]) * w for T rows of n. */
void pg_fwd_rmsnorm_rows(int T, int n, const float *x, const float *w, float eps, float *y);
/* With offloading: names the experts of the layers after `from` (-1: the
 * first) from the residual stream s->x[T] and starts loading them. */
void pg_fwd_predict(pg_session *s, int from, int T);
/* s->x[T] += FFN block of layer l (dense, or routed experts through the
 * cache when offloaded), with prediction of the next layers and tracing;
 * rows are at s->row_pos / s->row_seq. */
int pg_fwd_ffn(pg_session *s, int l, int T, pg_error *e);
/* pg_session_eval's argument checks: n tokens in the vocabulary that fit
 * the context after n_past, and a trace (if any) of this model's shape. */
int pg_fwd_check_eval(const pg_session *s, const int32_t *tokens, int n, pg_error *e);

#endif
