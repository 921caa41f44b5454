/* test_perplexity.c - perplexity of the demo model on a held-out slice of
 * Austen (tests/fixtures/demo-moe/heldout-slice.txt, from the last 5% of
 * the corpus, which training never saw) against transformers' value for
 * the same windows (tools/perplexity_reference.py -> perplexity.json):
 * within 0.5%, resident and offloaded. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "perplexity.h"
#include "test.h"

static void test_demo_heldout(void) {
    const char *mp = "models/demo-moe.gguf", *tp = "tests/fixtures/demo-moe/heldout-slice.txt",
               *rp = "tests/fixtures/demo-moe/perplexity.json";
    if (access(mp, R_OK) || access(tp, R_OK) || access(rp, R_OK)) TEST_SKIP("demo model or its perplexity fixture missing");
    json_error_t je;
    json_t *ref = json_load_file(rp, 0, &je);
    CHECK(ref != NULL, "%s: %s", rp, je.text);
    if (!ref) return;
    double want = json_number_value(json_object_get(ref, "perplexity"));
    long want_scored = (long)json_integer_value(json_object_get(ref, "scored"));
    int ctx = (int)json_integer_value(json_object_get(ref, "ctx"));
    json_decref(ref);
    pg_error e = {{0}};
    pg_model *m = pg_model_open(mp, &e);
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    CHECK(m && pg_read_file(tp, &text, &len, &e) == 0 && pg_tokenize(m->tok, text, len, false, false, &ids, &n, &e) == 0,
          "%s", e.msg);
    for (int off = 0; m && ids && off < 2; off++) {
        pg_session *s = pg_session_new(m, ctx, 2, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (!s) break;
        if (off) {
            pg_offload_params p;
            pg_offload_params_default(&p);
            p.expert_mem = pg_cache_min_budget(m) * 2;
            p.store = PG_STORE_PREAD;
            pg_offload *o = pg_offload_new(m, &p, &e);
            CHECK(o != NULL, "%s", e.msg);
            pg_session_set_offload(s, o);
        }
        pg_ppl r;
        CHECK(pg_perplexity(s, ids, (long)n, ctx, &r, NULL, NULL, &e) == 0, "%s", e.msg);
        double got = exp(r.nll_sum / r.n_scored), rel = fabs(got - want) / want;
        fprintf(stderr, "  %s: perplexity %.5f, transformers %.5f, relative difference %.2e\n",
                off ? "offloaded" : "resident", got, want, rel);
        CHECK(r.n_scored == want_scored, "scored %ld tokens, transformers %ld", r.n_scored, want_scored);
        CHECK(rel <= 0.005, "perplexity %.5f vs %.5f", got, want);
        pg_session_free(s);
    }
    free(ids);
    free(text);
    pg_model_free(m);
}

static void test_bad_window(void) {
    if (access("models/demo-moe.gguf", R_OK)) TEST_SKIP("demo model missing");
    pg_error e = {{0}};
    pg_model *m = pg_model_open("models/demo-moe.gguf", &e);
    pg_session *s = m ? pg_session_new(m, 16, 1, &e) : NULL;
    int32_t ids[4] = {1, 2, 3, 4};
    pg_ppl r;
    CHECK(s && pg_perplexity(s, ids, 4, 64, &r, NULL, NULL, &e) != 0 && strstr(e.msg, "does not fit"), "%s", e.msg);
    CHECK(s && pg_perplexity(s, ids, 1, 16, &r, NULL, NULL, &e) != 0 && strstr(e.msg, "at least 2"), "%s", e.msg);
    pg_session_free(s);
    pg_model_free(m);
}

int main(void) {
    TEST_RUN(test_demo_heldout);
    TEST_RUN(test_bad_window);
    return test_summary("test_perplexity");
}
