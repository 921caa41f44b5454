/* test_sampler.c - the sampler against a plain reference (the whole
 * vocabulary sorted, then the same pipeline), and its distribution against
 * the probabilities it is meant to draw from. */
#include <string.h>

#include "sampler.h"
#include "test.h"
#include "util.h"

/* ---- reference: every candidate sorted, top-k a cut of that list ---------- */

typedef struct {
    float p;
    int id;
} ref_cand;

static int ref_cmp_(const void *a, const void *b) {
    const ref_cand *x = a, *y = b;
    if (x->p != y->p) return x->p < y->p ? 1 : -1;
    return x->id - y->id;
}

/* The candidates that may be drawn, in the order the draw walks them, and
 * their weights (sampler.h): the draw itself is shared with the sampler
 * (same generator), so only this list is compared. */
static int ref_candidates_(const pg_sampler_params *p, const int32_t *hist, int n_hist, const float *logits, int n,
                           ref_cand *c) {
    float *w = xmalloc((size_t)n * sizeof(float));
    memcpy(w, logits, (size_t)n * sizeof(float));
    for (int i = 0; p->repeat_penalty != 1.0f && i < n_hist; i++) {
        int seen = 0;
        for (int j = 0; j < i; j++) seen |= hist[j] == hist[i];
        if (!seen) w[hist[i]] = w[hist[i]] > 0 ? w[hist[i]] / p->repeat_penalty : w[hist[i]] * p->repeat_penalty;
    }
    int nc = n;
    if (p->top_k > 0 && p->top_k < n) { /* softmax over the k highest logits */
        for (int i = 0; i < n; i++) c[i] = (ref_cand){w[i], i};
        qsort(c, (size_t)n, sizeof *c, ref_cmp_);
        nc = p->top_k;
        float mx = c[0].p;
        double sum = 0;
        for (int i = 0; i < nc; i++) sum += (c[i].p = expf((c[i].p - mx) / p->temperature));
        for (int i = 0; i < nc; i++) c[i].p = (float)(c[i].p / sum);
    } else { /* softmax over all, summed in id order; sorted by probability */
        float mx = w[0];
        for (int i = 1; i < n; i++) mx = fmaxf(mx, w[i]);
        double sum = 0;
        for (int i = 0; i < n; i++) sum += (w[i] = expf((w[i] - mx) / p->temperature));
        for (int i = 0; i < n; i++) c[i] = (ref_cand){(float)(w[i] / sum), i};
        if (p->top_p >= 1.0f && p->min_p <= 0) { free(w); return n; } /* nothing cut: id order */
        qsort(c, (size_t)n, sizeof *c, ref_cmp_);
    }
    free(w);
    if (p->top_p < 1.0f) {
        double cum = 0;
        for (int i = 0; i < nc; i++)
            if ((cum += c[i].p) >= p->top_p) { nc = i + 1; break; }
    }
    if (p->min_p > 0) {
        int keep = 1;
        while (keep < nc && c[keep].p >= p->min_p * c[0].p) keep++;
        nc = keep;
    }
    return nc;
}

static uint64_t rng_ = 88172645463325252ull;
static double unif_(void) {
    rng_ ^= rng_ << 13, rng_ ^= rng_ >> 7, rng_ ^= rng_ << 17;
    return (double)(rng_ >> 11) * (1.0 / 9007199254740992.0);
}

/* Logits with many exact ties (coarse values), so that the order by id matters. */
static void logits_(float *x, int n, int coarse) {
    for (int i = 0; i < n; i++) x[i] = coarse ? (float)(int)(unif_() * 16) - 8.0f : (float)(unif_() * 20.0 - 10.0);
}

/* The sampler's draws equal a draw from the reference's list with the same
 * generator, for top-k on and off, ties, penalties, top-p and min-p. */
static void test_against_reference(void) {
    static const int vocabs[] = {7, 40, 41, 1000, 32000};
    static const pg_sampler_params ps[] = {
        {.temperature = 0.8f, .top_k = 40, .top_p = 0.95f, .min_p = 0.05f, .repeat_penalty = 1.0f, .repeat_last_n = 64},
        {.temperature = 1.0f, .top_k = 1, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1.0f, .repeat_last_n = 64},
        {.temperature = 1.5f, .top_k = 5, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1.3f, .repeat_last_n = 8},
        {.temperature = 1.0f, .top_k = 0, .top_p = 0.9f, .min_p = 0, .repeat_penalty = 1.0f, .repeat_last_n = 64},
        {.temperature = 0.5f, .top_k = 200, .top_p = 1.0f, .min_p = 0.1f, .repeat_penalty = 1.1f, .repeat_last_n = 16},
        {.temperature = 1.0f, .top_k = 0, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1.0f, .repeat_last_n = 0},
        {.temperature = 0.3f, .top_k = 0, .top_p = 0.95f, .min_p = 0, .repeat_penalty = 1.0f, .repeat_last_n = 64},
        {.temperature = 0.7f, .top_k = 0, .top_p = 1.0f, .min_p = 0.05f, .repeat_penalty = 1.2f, .repeat_last_n = 64},
        {.temperature = 0.2f, .top_k = 0, .top_p = 0.5f, .min_p = 0.2f, .repeat_penalty = 1.0f, .repeat_last_n = 64},
    };
    int bad = 0, runs = 0;
    for (size_t v = 0; v < sizeof vocabs / sizeof vocabs[0]; v++) {
        const int n = vocabs[v];
        float *x = xmalloc((size_t)n * sizeof(float));
        ref_cand *c = xmalloc((size_t)n * sizeof(ref_cand));
        for (size_t k = 0; k < sizeof ps / sizeof ps[0]; k++) {
            for (int coarse = 0; coarse < 2; coarse++) {
                pg_sampler_params p = ps[k];
                p.seed = 1000 * v + 10 * k + coarse;
                pg_sampler s;
                pg_sampler_init(&s, &p, n);
                for (int step = 0; step < 20; step++, runs++) {
                    logits_(x, n, coarse);
                    const int nc = ref_candidates_(&p, s.history, s.n_history, x, n, c);
                    /* the draw the sampler makes from the same generator state */
                    uint64_t r = s.rng;
                    r ^= r >> 12, r ^= r << 25, r ^= r >> 27;
                    const double u = (double)((r * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
                    double total = 0, cum = 0;
                    for (int i = 0; i < nc; i++) total += c[i].p;
                    int want = c[nc - 1].id;
                    for (int i = 0; i < nc; i++)
                        if (u * total < (cum += c[i].p)) { want = c[i].id; break; }
                    const int32_t got = pg_sampler_sample(&s, x);
                    if (got != want && bad++ < 5)
                        fprintf(stderr, "  vocab %d params %zu coarse %d step %d: sampled %d, reference %d\n", n, k,
                                coarse, step, got, want);
                    pg_sampler_accept(&s, got);
                }
                pg_sampler_free(&s);
            }
        }
        free(x);
        free(c);
    }
    CHECK(bad == 0, "%d of %d draws differ from the reference", bad, runs);
}

/* Greedy and top-k 1 take the highest logit, the lowest id among ties. */
static void test_greedy(void) {
    const float x[6] = {1, 3, -2, 3, 0.5f, 2.9f};
    pg_sampler_params p;
    pg_sampler_params_default(&p);
    p.temperature = 0;
    pg_sampler s;
    pg_sampler_init(&s, &p, 6);
    CHECK(pg_sampler_sample(&s, x) == 1, "greedy");
    pg_sampler_free(&s);
    p.temperature = 2, p.top_k = 1;
    pg_sampler_init(&s, &p, 6);
    int ok = 1;
    for (int i = 0; i < 50; i++) ok &= pg_sampler_sample(&s, x) == 1;
    CHECK(ok, "top-k 1 is greedy at any temperature");
    pg_sampler_free(&s);
    CHECK(pg_argmax(x, 6) == 1, "argmax ties by the lowest id");
}

/* Frequencies of 200000 draws against softmax(logits / T) over the top k. */
static void test_distribution(void) {
    const float x[8] = {0.0f, 1.0f, -1.0f, 2.0f, 0.5f, -3.0f, 1.5f, 0.2f};
    pg_sampler_params p = {.temperature = 0.7f, .top_k = 4, .top_p = 1.0f, .min_p = 0, .repeat_penalty = 1.0f,
                           .repeat_last_n = 1, .seed = 7};
    pg_sampler s;
    pg_sampler_init(&s, &p, 8);
    int count[8] = {0};
    const int N = 200000;
    for (int i = 0; i < N; i++) count[pg_sampler_sample(&s, x)]++;
    pg_sampler_free(&s);
    const int top[4] = {3, 6, 1, 4}; /* the four highest logits */
    double z = 0;
    for (int j = 0; j < 4; j++) z += exp(x[top[j]] / 0.7);
    double worst = 0;
    for (int j = 0; j < 4; j++) {
        const double want = exp(x[top[j]] / 0.7) / z, got = (double)count[top[j]] / N;
        const double sd = sqrt(want * (1 - want) / N);
        if (fabs(got - want) / sd > worst) worst = fabs(got - want) / sd;
    }
    CHECK(worst < 5, "frequencies within 5 standard deviations of softmax (worst %.1f)", worst);
    CHECK(count[0] + count[2] + count[5] + count[7] == 0, "nothing outside the top 4");
}

int main(void) {
    TEST_RUN(test_against_reference);
    TEST_RUN(test_greedy);
    TEST_RUN(test_distribution);
    return test_summary("test_sampler");
}
