/* test_batch.c - sequences evaluated together give each sequence exactly
 * the logits it gets alone.
 *
 * Three sequences of different lengths (prompts of 5, 13 and 40 tokens, the
 * last longer than one chunk) are run alone, each in its own one-sequence
 * session (pg_session_eval, the path `pregate run` takes), and then
 * interleaved in one three-sequence session through pg_session_eval_batch
 * the way the server schedules them: they join at different steps, prompts
 * go in pieces beside the other sequences' decoding tokens, and one step has
 * more rows than a chunk. Every kernel computes each row on its own and the
 * MoE sum is taken in slot order, so the comparison is bit for bit (max abs
 * diff 0): dense and MoE fixture families, the demo model, and the demo
 * model offloaded (batched, small fast tier) against resident alone. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "forward.h"
#include "sampler.h"
#include "test.h"

#define N_SEQ 3
static const int PROMPT[N_SEQ] = {5, 13, 40};
static const int GEN[N_SEQ] = {12, 7, 9};
static const int START[N_SEQ] = {0, 2, 3}; /* step at which each sequence joins */
static const int SLOT[N_SEQ] = {2, 0, 1};  /* its KV cache slot in the batched session */

typedef struct {
    int32_t tokens[64];
    int n;          /* PROMPT + GEN */
    float *logits;  /* [n][V]: logits after each position, alone */
} alone_run;

/* Prompt in chunks, then greedy decoding, every position's logits kept. */
static int run_alone_(pg_model *m, int q, alone_run *r, pg_error *e) {
    int V = m->hp.vocab;
    r->n = PROMPT[q] + GEN[q];
    for (int i = 0; i < PROMPT[q]; i++) r->tokens[i] = (int32_t)((i * 7919 + q * 104729 + 13) % V);
    r->logits = xmalloc((size_t)r->n * V * sizeof(float));
    pg_session *s = pg_session_new(m, 64, 2, e);
    if (!s) return -1;
    int rc = pg_session_eval(s, r->tokens, PROMPT[q], r->logits, e);
    for (int i = PROMPT[q]; rc == 0 && i < r->n; i++) {
        r->tokens[i] = pg_argmax(r->logits + (size_t)(i - 1) * V, V);
        rc = pg_session_eval(s, &r->tokens[i], 1, r->logits + (size_t)i * V, e);
    }
    pg_session_free(s);
    return rc;
}

/* The batched schedule: at each step a joined sequence still in its prompt
 * adds a piece of it (6 tokens, or 30 at the step where the rows overflow a
 * chunk), one that has finished its prompt adds its next token. Compares
 * every row's logits with the alone run: returns the max abs difference
 * and counts the rows not bit-identical in *n_differ; -1 on an error. */
static double run_batched_(pg_session *s, const alone_run *ref, int *n_steps, int *n_differ, pg_error *e) {
    int V = s->m->hp.vocab, done[N_SEQ] = {0};
    int32_t tok[128];
    int seq[128], pos[128], who[128];
    float *out = xmalloc((size_t)128 * V * sizeof(float));
    double maxdiff = 0;
    int step = 0;
    for (;; step++) {
        int n = 0;
        for (int q = 0; q < N_SEQ; q++) {
            if (step < START[q] || done[q] == ref[q].n) continue;
            int take = done[q] < PROMPT[q] ? (step == 4 ? 30 : 6) : 1;
            if (take > PROMPT[q] - done[q] && done[q] < PROMPT[q]) take = PROMPT[q] - done[q];
            for (int k = 0; k < take; k++, n++) {
                tok[n] = ref[q].tokens[done[q] + k];
                seq[n] = SLOT[q];
                pos[n] = done[q] + k;
                who[n] = q;
            }
            done[q] += take;
        }
        if (n == 0) break;
        if (pg_session_eval_batch(s, n, tok, seq, pos, NULL, out, e)) {
            maxdiff = -1;
            break;
        }
        for (int r = 0; r < n; r++) {
            const float *a = out + (size_t)r * V, *b = ref[who[r]].logits + (size_t)pos[r] * V;
            *n_differ += memcmp(a, b, (size_t)V * sizeof(float)) != 0;
            for (int i = 0; i < V; i++) {
                double d = fabs((double)a[i] - (double)b[i]);
                if (!(d <= maxdiff)) maxdiff = d; /* NaN too */
            }
        }
    }
    free(out);
    *n_steps = step;
    return maxdiff;
}

static void check_model_(const char *what, const char *path, bool offload) {
    pg_error e = {{0}};
    pg_model *m = pg_model_open(path, &e);
    CHECK(m != NULL, "%s: %s", what, e.msg);
    if (!m) return;
    alone_run ref[N_SEQ];
    memset(ref, 0, sizeof ref);
    bool ok = true;
    for (int q = 0; q < N_SEQ && ok; q++) {
        ok = run_alone_(m, q, &ref[q], &e) == 0;
        CHECK(ok, "%s: alone %d: %s", what, q, e.msg);
    }
    pg_session *s = ok ? pg_session_new_seqs(m, 64, N_SEQ, 2, &e) : NULL;
    CHECK(!ok || s, "%s: %s", what, e.msg);
    for (int variant = 0; s && variant < (offload ? 2 : 1); variant++) {
        if (variant == 1) {
            pg_offload_params p;
            pg_offload_params_default(&p);
            p.expert_mem = pg_cache_min_budget(m) * 2;
            p.store = PG_STORE_PREAD;
            pg_offload *o = pg_offload_new(m, &p, &e);
            CHECK(o != NULL, "%s: %s", what, e.msg);
            if (!o) break;
            pg_session_set_offload(s, o);
        }
        int steps = 0, differ = 0;
        double d = run_batched_(s, ref, &steps, &differ, &e);
        CHECK(d == 0 && differ == 0, "%s%s: batched logits differ from alone in %d rows: %s (max abs diff %g)",
              what, variant ? " offloaded" : "", differ, d < 0 ? e.msg : "", d);
        fprintf(stderr, "  %-22s %d sequences in %d batched steps: max abs diff %g\n",
                variant ? "demo-moe offloaded" : what, N_SEQ, steps, d);
        if (variant == 1) CHECK(pg_cache_refs_held(s->off->cache) == 0, "%s: references left", what);
    }
    pg_session_free(s);
    for (int q = 0; q < N_SEQ; q++) free(ref[q].logits);
    pg_model_free(m);
}

static void test_fixture_families(void) {
    const char *fam[] = {"llama", "mixtral", "qwen2moe", "qwen3moe", "olmoe", "deepseek2", "deepseek3", "gptoss"};
    char dir[256];
    for (int i = 0; i < (int)(sizeof fam / sizeof *fam); i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fam[i]);
        check_model_(fam[i], dir, false);
    }
}

static void test_demo_model(void) {
    if (access("models/demo-moe.gguf", R_OK)) TEST_SKIP("models/demo-moe.gguf missing");
    check_model_("demo-moe", "models/demo-moe.gguf", true);
}

/* Bad rows are refused before anything is computed. */
static void test_checks(void) {
    if (access("models/demo-moe.gguf", R_OK)) TEST_SKIP("models/demo-moe.gguf missing");
    pg_error e = {{0}};
    pg_model *m = pg_model_open("models/demo-moe.gguf", &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    pg_session *s = pg_session_new_seqs(m, 16, 2, 1, &e);
    int32_t tok[2] = {1, 2};
    int seq[2] = {0, 0}, pos[2] = {3, 3};
    CHECK(pg_session_eval_batch(s, 2, tok, seq, pos, NULL, NULL, &e) != 0 && strstr(e.msg, "does not follow"),
          "repeated position: %s", e.msg);
    seq[1] = 2;
    pos[1] = 0;
    CHECK(pg_session_eval_batch(s, 2, tok, seq, pos, NULL, NULL, &e) != 0 && strstr(e.msg, "sequence 2"),
          "sequence out of range: %s", e.msg);
    seq[1] = 1;
    pos[1] = 16;
    CHECK(pg_session_eval_batch(s, 2, tok, seq, pos, NULL, NULL, &e) != 0 && strstr(e.msg, "position 16"),
          "position out of range: %s", e.msg);
    pos[1] = 0;
    tok[0] = m->hp.vocab;
    CHECK(pg_session_eval_batch(s, 2, tok, seq, pos, NULL, NULL, &e) != 0 && strstr(e.msg, "vocabulary"),
          "token out of range: %s", e.msg);
    tok[0] = 1;
    bool want[2] = {false, true};
    float *out = xmalloc((size_t)m->hp.vocab * sizeof(float));
    CHECK(pg_session_eval_batch(s, 2, tok, seq, pos, want, out, &e) == 0, "%s", e.msg);
    CHECK(memcmp(out, s->logits, (size_t)m->hp.vocab * sizeof(float)) == 0, "s->logits is the last wanted row");
    free(out);
    pg_session_free(s);
    pg_model_free(m);
}

int main(void) {
    TEST_RUN(test_checks);
    TEST_RUN(test_fixture_families);
    TEST_RUN(test_demo_model);
    return test_summary("test_batch");
}
