/* sampler.h - choose the next token from logits.
 *
 * Pipeline (llama.cpp order): repetition penalty over the last `repeat_last_n`
 * tokens, then greedy if temperature <= 0, else top-k, temperature, softmax,
 * top-p, min-p, and a draw with the seeded generator. Greedy breaks ties by
 * the lowest token id.
 *
 * Candidates are ordered by logit (top-k) or probability (no top-k),
 * highest first, ties by the lowest id; the draw walks the kept ones in
 * that order, or in id order when nothing is cut (no top-k, top-p or
 * min-p), which needs no sort. Only a top-p without top-k whose nucleus
 * holds more than 1024 tokens sorts the whole vocabulary.
 */
#ifndef PG_SAMPLER_H
#define PG_SAMPLER_H

#include <stdint.h>

typedef struct {
    float temperature;    /* <= 0: greedy */
    int top_k;            /* <= 0: off */
    float top_p;          /* >= 1: off */
    float min_p;          /* <= 0: off */
    float repeat_penalty; /* 1: off */
    int repeat_last_n;
    uint64_t seed;
} pg_sampler_params;

typedef struct {
    float logit; /* becomes a probability while sampling */
    int32_t id;
} pg_candidate;

typedef struct {
    pg_sampler_params p;
    uint64_t rng;
    int n_vocab;
    int32_t *history;     /* ring of the last repeat_last_n tokens */
    int n_history, history_pos;
    float *work;          /* [n_vocab] */
    pg_candidate *cand;   /* [n_vocab] */
} pg_sampler;

void pg_sampler_params_default(pg_sampler_params *p);
void pg_sampler_init(pg_sampler *s, const pg_sampler_params *p, int n_vocab);
void pg_sampler_free(pg_sampler *s);
/* Records a token (prompt or generated) for the repetition penalty. */
void pg_sampler_accept(pg_sampler *s, int32_t token);
/* Picks a token; logits are not modified. */
int32_t pg_sampler_sample(pg_sampler *s, const float *logits);
int32_t pg_argmax(const float *x, int n);

#endif
