/* sampler.c - see sampler.h */
#include "sampler.h"

#include <math.h>
#include <stdlib.h>

#include "util.h"

void pg_sampler_params_default(pg_sampler_params *p) {
    *p = (pg_sampler_params){.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f,
                             .repeat_penalty = 1.0f, .repeat_last_n = 64, .seed = 0};
}

void pg_sampler_init(pg_sampler *s, const pg_sampler_params *p, int n_vocab) {
    s->p = *p;
    s->rng = p->seed * 0x9E3779B97F4A7C15ull + 0x2545F4914F6CDD1Dull;
    s->n_vocab = n_vocab;
    s->history = xcalloc((size_t)(p->repeat_last_n > 0 ? p->repeat_last_n : 1), sizeof(int32_t));
    s->n_history = s->history_pos = 0;
    s->work = xmalloc((size_t)n_vocab * sizeof(float));
    s->cand = xmalloc((size_t)n_vocab * sizeof(pg_candidate));
}

void pg_sampler_free(pg_sampler *s) {
    free(s->history);
    free(s->work);
    free(s->cand);
}

void pg_sampler_accept(pg_sampler *s, int32_t token) {
    if (s->p.repeat_last_n <= 0) return;
    s->history[s->history_pos] = token;
    s->history_pos = (s->history_pos + 1) % s->p.repeat_last_n;
    if (s->n_history < s->p.repeat_last_n) s->n_history++;
}

int32_t pg_argmax(const float *x, int n) {
    int best = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[best]) best = i;
    return best;
}

/* xorshift64* -> uniform in [0, 1) */
static double uniform_(pg_sampler *s) {
    s->rng ^= s->rng >> 12;
    s->rng ^= s->rng << 25;
    s->rng ^= s->rng >> 27;
    return (double)((s->rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}

/* The candidates' order: higher logit first, ties by lower id (a total
 * order, so that any way of finding the first k gives the same list). */
static inline int before_(const pg_candidate *x, const pg_candidate *y) {
    return x->logit != y->logit ? x->logit > y->logit : x->id < y->id;
}

static int by_logit_desc_(const void *a, const void *b) {
    const pg_candidate *x = a, *y = b;
    return before_(x, y) ? -1 : before_(y, x) ? 1 : 0;
}

/* Restores the heap property of h[0..k) below i: every parent comes after
 * its children in the candidates' order, so h[0] is the last of them. */
static void sift_down_(pg_candidate *h, int k, int i) {
    for (;;) {
        int l = 2 * i + 1, r = l + 1, m = i;
        if (l < k && before_(&h[m], &h[l])) m = l;
        if (r < k && before_(&h[m], &h[r])) m = r;
        if (m == i) return;
        const pg_candidate t = h[i];
        h[i] = h[m], h[m] = t;
        i = m;
    }
}

/* Moves the first k of c[0..n) in the candidates' order to c[0..k), sorted,
 * and the others to c[k..n) in no order: a heap of the k best so far, whose
 * last member each other candidate has to beat (most fail that one
 * comparison), so O(n log k) and not a sort of the whole vocabulary. */
static void first_k_(pg_candidate *c, int n, int k) {
    for (int i = k / 2 - 1; i >= 0; i--) sift_down_(c, k, i);
    for (int i = k; i < n; i++) {
        if (!before_(&c[i], &c[0])) continue;
        const pg_candidate out = c[0]; /* swapped, so that c stays a permutation */
        c[0] = c[i], c[i] = out;
        sift_down_(c, k, 0);
    }
    qsort(c, (size_t)k, sizeof *c, by_logit_desc_);
}

/* Top-p, then min-p, over c[0..nc) sorted and holding probabilities: how
 * many candidates are kept. */
static int cut_(const pg_sampler_params *p, const pg_candidate *c, int nc) {
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < nc; i++) {
            cum += c[i].logit;
            if (cum >= p->top_p) { nc = i + 1; break; }
        }
    }
    if (p->min_p > 0) {
        const float floor_p = p->min_p * c[0].logit;
        int keep = 1;
        while (keep < nc && c[keep].logit >= floor_p) keep++;
        nc = keep;
    }
    return nc;
}

/* A draw from c[0..nc) weighted by their probabilities, in array order. */
static int32_t draw_(pg_sampler *s, const pg_candidate *c, int nc) {
    double total = 0;
    for (int i = 0; i < nc; i++) total += c[i].logit;
    double r = uniform_(s) * total, cum = 0;
    for (int i = 0; i < nc; i++) {
        cum += c[i].logit;
        if (r < cum) return c[i].id;
    }
    return c[nc - 1].id;
}

/* The top-p cut of the whole vocabulary (c holds probabilities): the first
 * m candidates are found by a heap for m = 64, then 1024, until their mass
 * reaches top-p (a full sort only when the distribution is that flat). */
static int nucleus_(const pg_sampler_params *p, pg_candidate *c, int n) {
    for (int m = 64;; m *= 16) {
        if (m >= n / 4) {
            qsort(c, (size_t)n, sizeof *c, by_logit_desc_);
            return cut_(p, c, n);
        }
        first_k_(c, n, m);
        double cum = 0;
        for (int i = 0; i < m; i++) cum += c[i].logit;
        if (cum >= p->top_p) return cut_(p, c, m); /* the cut falls inside: same as in the full list */
    }
}

int32_t pg_sampler_sample(pg_sampler *s, const float *logits) {
    const int n = s->n_vocab;
    const float T = s->p.temperature;
    float *w = s->work;
    memcpy(w, logits, (size_t)n * sizeof(float));
    if (s->p.repeat_penalty != 1.0f) {
        for (int i = 0; i < s->n_history; i++) {
            int32_t t = s->history[i];
            if (t < 0 || t >= n) continue;
            /* each distinct token once: skip if already seen earlier in the ring */
            int seen = 0;
            for (int j = 0; j < i; j++) seen |= s->history[j] == t;
            if (seen) continue;
            w[t] = w[t] > 0 ? w[t] / s->p.repeat_penalty : w[t] * s->p.repeat_penalty;
        }
    }
    if (T <= 0) return pg_argmax(w, n);
    pg_candidate *c = s->cand;
    if (s->p.top_k > 0 && s->p.top_k < n) {
        /* the k highest logits, sorted; softmax with temperature over them */
        const int k = s->p.top_k;
        for (int i = 0; i < n; i++) c[i] = (pg_candidate){w[i], i};
        first_k_(c, n, k);
        const float mx = c[0].logit;
        double sum = 0;
        for (int i = 0; i < k; i++) sum += (c[i].logit = expf((c[i].logit - mx) / T));
        for (int i = 0; i < k; i++) c[i].logit = (float)(c[i].logit / sum);
        return draw_(s, c, cut_(&s->p, c, k));
    }
    /* every token a candidate: softmax with temperature over the vocabulary */
    float mx = w[0];
    for (int i = 1; i < n; i++) mx = w[i] > mx ? w[i] : mx;
    double sum = 0;
    for (int i = 0; i < n; i++) sum += (w[i] = expf((w[i] - mx) / T));
    float pmax = 0;
    for (int i = 0; i < n; i++) {
        w[i] = (float)(w[i] / sum);
        pmax = w[i] > pmax ? w[i] : pmax;
    }
    int nc = 0;
    if (s->p.top_p < 1.0f) {
        for (int i = 0; i < n; i++) c[i] = (pg_candidate){w[i], i};
        nc = nucleus_(&s->p, c, n);
    } else if (s->p.min_p > 0) { /* those within min-p of the most likely, sorted */
        for (int i = 0; i < n; i++)
            if (w[i] >= s->p.min_p * pmax) c[nc++] = (pg_candidate){w[i], i};
        qsort(c, (size_t)nc, sizeof *c, by_logit_desc_);
    } else { /* no cut: the draw walks the vocabulary in id order */
        for (int i = 0; i < n; i++) c[i] = (pg_candidate){w[i], i};
        nc = n;
    }
    return draw_(s, c, nc);
}
