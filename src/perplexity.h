/* perplexity.h - mean negative log-likelihood of a token sequence.
 *
 * The sequence is cut into consecutive windows of n_ctx tokens (the last
 * one may be shorter); each window is evaluated from an empty context and
 * every token but the window's first is scored given the ones before it.
 * This is what tools/perplexity_reference.py computes with transformers.
 */
#ifndef PG_PERPLEXITY_H
#define PG_PERPLEXITY_H

#include "forward.h"

typedef struct {
    double nll_sum;  /* sum of -log p(token | prefix) */
    long n_scored;   /* tokens scored */
} pg_ppl;

/* Calls progress(ctx, done, total) after each window when not NULL. */
int pg_perplexity(pg_session *s, const int32_t *tokens, long n, int n_ctx, pg_ppl *out,
                  void (*progress)(void *ctx, long done, long total), void *progress_ctx, pg_error *e);

#endif
