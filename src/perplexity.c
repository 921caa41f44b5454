/* perplexity.c - see perplexity.h */
#include "perplexity.h"

#include <math.h>
#include <stdlib.h>

int pg_perplexity(pg_session *s, const int32_t *tokens, long n, int n_ctx, pg_ppl *out,
                  void (*progress)(void *ctx, long done, long total), void *progress_ctx, pg_error *e) {
    int V = s->m->hp.vocab;
    if (n_ctx < 2 || n_ctx > s->n_ctx) return pg_fail(e, "window of %d tokens does not fit the context (%d)", n_ctx, s->n_ctx);
    if (n < 2) return pg_fail(e, "need at least 2 tokens to score, have %ld", n);
    float *logits = malloc((size_t)n_ctx * V * sizeof(float));
    if (!logits) return pg_fail(e, "cannot allocate logits for a window of %d tokens", n_ctx);
    out->nll_sum = 0;
    out->n_scored = 0;
    for (long w0 = 0; w0 < n; w0 += n_ctx) {
        int T = n - w0 < n_ctx ? (int)(n - w0) : n_ctx;
        if (T < 2) break;
        pg_session_reset(s);
        if (pg_session_eval(s, tokens + w0, T, logits, e)) {
            free(logits);
            return -1;
        }
        for (int t = 0; t + 1 < T; t++) {
            const float *l = logits + (size_t)t * V;
            float mx = l[0];
            for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
            double sum = 0;
            for (int i = 0; i < V; i++) sum += exp((double)l[i] - mx);
            out->nll_sum += log(sum) + mx - l[tokens[w0 + t + 1]];
            out->n_scored++;
        }
        if (progress) progress(progress_ctx, w0 + T, n);
    }
    free(logits);
    return 0;
}
