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
/* With offloading: a new step for the cache, and no layer predicted yet. */
void pg_fwd_begin_step(pg_session *s);
/* With offloading: names the experts of the layers after `from` (-1: the
 * first) from the residual stream s->x[T] and starts loading them. */
void pg_fwd_predict(pg_session *s, int from, int T);
/* s->x[T] += FFN block of layer l (dense, or routed experts through the
 * cache when offloaded), with prediction of the next layers and tracing;
 * rows are at s->row_pos / s->row_seq. */
int pg_fwd_ffn(pg_session *s, int l, int T, pg_error *e);
/* Routes the chunk's rows from the router logits s->router[T][E] (routing
 * rule, trace) into s->sel / s->sel_w / exp_rows / exp_count, then runs
 * each expert used once over its rows: `run` with the expert's weights,
 * from `resident` (the model's, or a device's copy) or, when offloaded,
 * from the fast-tier cache as each arrives (then released after `run`). */
typedef void (*pg_fwd_run_expert)(pg_session *s, int l, const pg_expert *w, int x, int K);
int pg_fwd_experts(pg_session *s, int l, int T, const pg_expert *resident, pg_fwd_run_expert run, pg_error *e);
/* s->x[T] rows into the trace as the predictor input of layer `target`. */
void pg_fwd_trace_hidden(pg_session *s, int target, int T);
/* A natively pre-gated model's prefetch of layer l+1 from s->xn. */
void pg_fwd_predict_native(pg_session *s, int l, int T);
/* pg_session_eval's argument checks: n tokens in the vocabulary that fit
 * the context after n_past, and a trace (if any) of this model's shape. */
int pg_fwd_check_eval(const pg_session *s, const int32_t *tokens, int n, pg_error *e);

#endif
