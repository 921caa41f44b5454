/* test_api.c - the public API (include/pregate.h) alone reproduces the demo
 * model's reference greedy tokens, resident and offloaded, and reports bad
 * input through its error buffer. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "pregate.h"
#include "safetensors.h" /* only to read the reference file */
#include "test.h"

static void greedy_(pregate_context *c, const int32_t *prompt, int n, int32_t *out, int n_out) {
    char err[512];
    pregate_context_reset(c);
    CHECK(pregate_eval(c, prompt, n, err, sizeof err) == 0, "%s", err);
    for (int i = 0; i < n_out; i++) {
        out[i] = pregate_argmax(c);
        CHECK(pregate_eval(c, &out[i], 1, err, sizeof err) == 0, "%s", err);
    }
}

static void test_demo_greedy(void) {
    if (access("models/demo-moe.gguf", R_OK)) TEST_SKIP("models/demo-moe.gguf missing");
    pg_error e;
    st_file ref;
    CHECK(st_open(&ref, "tests/fixtures/demo-moe/reference.safetensors", &e) == 0, "%s", e.msg);
    const pg_tensor *tt = st_find(&ref, "tokens"), *tg = st_find(&ref, "greedy");
    char err[512];
    pregate_model *m = pregate_model_open("models/demo-moe.gguf", err, sizeof err);
    CHECK(m && tt && tg, "%s", err);
    if (!m || !tt || !tg) { st_close(&ref); pregate_model_close(m); return; }
    CHECK(pregate_model_n_vocab(m) == 4096 && pregate_model_n_layer(m) == 6 && pregate_model_n_expert(m) == 8,
          "hyperparameters");
    /* the prompt text of the reference tokenizes to its tokens */
    const char *prompt = st_meta(&ref, "prompt");
    int32_t ids[64];
    int n = prompt ? pregate_tokenize(m, prompt, strlen(prompt), false, ids, 64, err, sizeof err) : -1;
    CHECK(n == (int)tt->ne[0] && memcmp(ids, tt->data, (size_t)n * 4) == 0, "prompt tokens: %s", err);
    CHECK(pregate_tokenize(m, prompt ? prompt : "x", prompt ? strlen(prompt) : 1, false, ids, 3, err, sizeof err) == -1 &&
              strstr(err, "more than"), "too small a buffer: %s", err);
    const char *modes[3][3] = {{NULL, NULL, NULL}, {"25%", "pregate", "pcie4"}, {"2", "none", "none"}};
    for (int k = 0; k < 3; k++) {
        pregate_context_params p;
        pregate_context_params_default(&p);
        p.n_ctx = 128;
        p.expert_mem = modes[k][0];
        p.prefetch = modes[k][1];
        p.link = modes[k][2];
        pregate_context *c = pregate_context_new(m, &p, err, sizeof err);
        if (k == 2) { /* 2 bytes: below the minimum budget */
            CHECK(c == NULL && strstr(err, "minimum"), "tiny budget: %s", err);
            continue;
        }
        CHECK(c != NULL, "%s", err);
        if (!c) continue;
        int32_t got[32];
        greedy_(c, tt->data, (int)tt->ne[0], got, 32);
        CHECK(memcmp(got, tg->data, sizeof got) == 0, "greedy tokens differ (%s)", modes[k][0] ? "offloaded" : "resident");
        int32_t bad = 99999;
        CHECK(pregate_eval(c, &bad, 1, err, sizeof err) == -1 && strstr(err, "vocabulary"), "bad id: %s", err);
        pregate_context_free(c);
    }
    pregate_model_close(m);
    st_close(&ref);
}

static void test_open_errors(void) {
    char err[512] = "";
    CHECK(pregate_model_open("does/not/exist.gguf", err, sizeof err) == NULL && strstr(err, "does/not/exist.gguf"),
          "missing file: %s", err);
    CHECK(pregate_model_open("does/not/exist.gguf", NULL, 0) == NULL, "NULL error buffer");
}

int main(void) {
    TEST_RUN(test_open_errors);
    TEST_RUN(test_demo_greedy);
    return test_summary("test_api");
}
