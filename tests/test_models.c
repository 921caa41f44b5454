/* test_models.c - whole models against references nobody here wrote.
 *
 *  - tiny random models of each family made by tools/make_fixtures.py with
 *    Hugging Face transformers: logits of a fixed token sequence within
 *    1e-4 and 32 greedy tokens identical, read from the safetensors
 *    directory and again after `convert` to GGUF;
 *  - the shipped demo MoE (models/demo-moe.gguf) against the PyTorch model
 *    it was exported from (tools/train_demo_moe.py), and a tiny natively
 *    pre-gated model against the training script's module;
 *  - stories260K (llama2.c checkpoint, real trained weights, from the shared
 *    data folder) converted to GGUF: 200 greedy steps reproduce llama2.c's
 *    own expected output exactly.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"
#include "forward.h"
#include "quantize.h"
#include "safetensors.h"
#include "sampler.h"
#include "test.h"

#define TOL 1e-4f

static const pg_tensor *ref_tensor_(const st_file *f, const char *name, pg_type type) {
    const pg_tensor *t = st_find(f, name);
    return t && t->type == type ? t : NULL;
}

/* Checks logits and greedy tokens of the model at model_path against ref. */
static void check_model_(const char *what, const char *model_path, const char *ref_path) {
    pg_error e = {{0}};
    st_file ref;
    if (st_open(&ref, ref_path, &e)) { CHECK(0, "%s: %s", what, e.msg); return; }
    const pg_tensor *tt = ref_tensor_(&ref, "tokens", PG_TYPE_I32);
    const pg_tensor *tl = ref_tensor_(&ref, "logits", PG_TYPE_F32);
    const pg_tensor *tg = ref_tensor_(&ref, "greedy", PG_TYPE_I32);
    CHECK(tt && tl && tg, "%s: reference file lacks tokens/logits/greedy", what);
    pg_model *m = pg_model_open(model_path, &e);
    CHECK(m != NULL, "%s: %s", what, e.msg);
    if (!m || !tt || !tl || !tg) { pg_model_free(m); st_close(&ref); return; }
    int T = (int)tt->ne[0], V = m->hp.vocab, G = (int)tg->ne[0];
    CHECK(tl->ne[0] == V && tl->ne[1] == T, "%s: reference logits shape mismatch", what);
    const int32_t *tokens = tt->data;
    const float *want = tl->data;
    const int32_t *greedy = tg->data;
    for (int threads = 1; threads <= 2; threads++) {
        pg_session *s = pg_session_new(m, T + G + 1, threads, &e);
        CHECK(s != NULL, "%s: %s", what, e.msg);
        if (!s) break;
        float *got = xmalloc((size_t)T * V * sizeof(float));
        CHECK(pg_session_eval(s, tokens, T, got, &e) == 0, "%s: %s", what, e.msg);
        float maxdiff = 0;
        for (size_t i = 0; i < (size_t)T * V; i++) {
            float d = fabsf(got[i] - want[i]);
            if (!(d <= maxdiff)) maxdiff = d; /* NaN propagates as a failure */
        }
        CHECK(maxdiff <= TOL, "%s (%d threads): max |logit diff| %g > %g", what, threads, maxdiff, TOL);
        if (threads == 1) fprintf(stderr, "  %-28s maxdiff %.3g\n", what, maxdiff);
        int mismatch = -1;
        for (int i = 0; i < G; i++) {
            int32_t next = pg_argmax(s->logits, V);
            if (next != greedy[i]) { mismatch = i; break; }
            if (pg_session_eval(s, &next, 1, NULL, &e)) { mismatch = i; break; }
        }
        CHECK(mismatch < 0, "%s (%d threads): greedy token %d differs", what, threads, mismatch);
        free(got);
        pg_session_free(s);
    }
    pg_model_free(m);
    st_close(&ref);
}

static const char *families_[] = {"llama", "mixtral", "mixtral-fused", "qwen2moe", "qwen3moe",
                                  "qwen3moe-fused", "qwen3moe-sharded", "olmoe", "deepseek2",
                                  "deepseek2-lora", "deepseek3", "deepseek2-yarn", "gptoss"};

static void test_hf_fixtures(void) {
    char dir[256], ref[300];
    for (size_t i = 0; i < sizeof families_ / sizeof *families_; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", families_[i]);
        snprintf(ref, sizeof ref, "%s/reference.safetensors", dir);
        check_model_(families_[i], dir, ref);
    }
}

static void test_hf_fixtures_as_gguf(void) {
    char dir[256], ref[300], out[300], what[300];
    for (size_t i = 0; i < sizeof families_ / sizeof *families_; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", families_[i]);
        snprintf(ref, sizeof ref, "%s/reference.safetensors", dir);
        snprintf(out, sizeof out, "%s/pregate-test-%d-%s.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
                 (int)getpid(), families_[i]);
        snprintf(what, sizeof what, "%s as GGUF", families_[i]);
        pg_error e = {{0}};
        pg_model *m = pg_model_open(dir, &e);
        CHECK(m != NULL, "%s", e.msg);
        if (!m) continue;
        int rc = pg_model_write_gguf(m, out, &e);
        pg_model_free(m);
        CHECK(rc == 0, "%s", e.msg);
        if (rc == 0) check_model_(what, out, ref);
        unlink(out);
    }
}

/* gpt-oss experts as MXFP4 (as the released checkpoints ship them): the
 * fixture converted to GGUF, its expert weights quantized with `pregate
 * quantize`'s machinery (everything else stays F32, biases included), loads
 * and runs; agreement of the top-1 token with transformers' F32 logits is
 * reported, not asserted (4-bit experts change the numbers). */
static void test_gptoss_mxfp4(void) {
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char f32[300], q[300];
    snprintf(f32, sizeof f32, "%s/pregate-test-%d-gptoss-f32.gguf", tmp, (int)getpid());
    snprintf(q, sizeof q, "%s/pregate-test-%d-gptoss-mxfp4.gguf", tmp, (int)getpid());
    pg_error e = {{0}};
    pg_model *m = pg_model_open("tests/fixtures/gptoss", &e);
    CHECK(m && pg_model_write_gguf(m, f32, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    pg_quantize_params p = {.base = PG_TYPE_F32, .mix = PG_MIX_NONE, .expert_type = PG_TYPE_MXFP4, .ftype = 0};
    CHECK(pg_quantize_file(f32, q, &p, &e) == 0, "%s", e.msg);
    unlink(f32);
    m = pg_model_open(q, &e);
    CHECK(m != NULL, "%s", e.msg);
    st_file ref;
    if (!m || st_open(&ref, "tests/fixtures/gptoss/reference.safetensors", &e)) { pg_model_free(m); unlink(q); return; }
    CHECK(m->layers[0].experts[0].gate.type == PG_TYPE_MXFP4 && m->layers[2].experts[3].down.type == PG_TYPE_MXFP4 &&
          m->layers[0].wq.type == PG_TYPE_F32 && m->layers[1].experts[1].b_down != NULL,
          "expected MXFP4 experts, F32 attention, float expert biases");
    const pg_tensor *tt = ref_tensor_(&ref, "tokens", PG_TYPE_I32), *tl = ref_tensor_(&ref, "logits", PG_TYPE_F32);
    int T = (int)tt->ne[0], V = m->hp.vocab, agree = 0;
    float *got = xmalloc((size_t)T * V * sizeof(float)), maxdiff = 0;
    pg_session *s = pg_session_new(m, T, 1, &e);
    CHECK(s && pg_session_eval(s, tt->data, T, got, &e) == 0, "%s", e.msg);
    const float *want = tl->data;
    bool finite = true;
    for (int t = 0; t < T; t++) {
        agree += pg_argmax(got + (size_t)t * V, V) == pg_argmax(want + (size_t)t * V, V);
        for (int i = 0; i < V; i++) {
            float d = fabsf(got[(size_t)t * V + i] - want[(size_t)t * V + i]);
            finite &= isfinite(got[(size_t)t * V + i]);
            maxdiff = d > maxdiff ? d : maxdiff;
        }
    }
    CHECK(finite, "non-finite logits");
    fprintf(stderr, "  gptoss MXFP4 experts: top-1 agrees with F32 transformers at %d of %d positions, "
                    "max |logit diff| %.3g\n", agree, T, maxdiff);
    /* the same experts dequantized back to F32: what is left is the
     * activation's quantization inside the MXFP4 dot products */
    pg_session_free(s);
    s = NULL;
    snprintf(f32, sizeof f32, "%s/pregate-test-%d-gptoss-deq.gguf", tmp, (int)getpid());
    pg_quantize_params pd = {.base = PG_TYPE_F32, .mix = PG_MIX_NONE, .expert_type = -1, .ftype = 0};
    pg_model *md = NULL;
    CHECK(pg_quantize_file(q, f32, &pd, &e) == 0 && (md = pg_model_open(f32, &e)) != NULL, "%s", e.msg);
    float *deq = xmalloc((size_t)T * V * sizeof(float)), dd = 0;
    s = md ? pg_session_new(md, T, 1, &e) : NULL;
    if (s && pg_session_eval(s, tt->data, T, deq, &e) == 0) {
        for (size_t i = 0; i < (size_t)T * V; i++) dd = fabsf(deq[i] - got[i]) > dd ? fabsf(deq[i] - got[i]) : dd;
        fprintf(stderr, "  gptoss MXFP4 experts vs the same dequantized to F32: max |logit diff| %.3g\n", dd);
        CHECK(dd < 0.1f * maxdiff + 1e-3f, "MXFP4 compute differs from its own dequantization by %g", dd);
    } else {
        CHECK(0, "dequantized model: %s", e.msg);
    }
    free(deq);
    pg_model_free(md);
    unlink(f32);
    free(got);
    pg_session_free(s);
    st_close(&ref);
    pg_model_free(m);
    unlink(q);
}

/* transformers' MXFP4 layout (tests/fixtures/gptoss-mxfp4: *_blocks /
 * *_scales, as openai ships gpt-oss), whose reference logits come from
 * transformers dequantizing the experts exactly. The blocks are repacked to
 * GGML's MXFP4 at load: converted to GGUF and dequantized to F32 by
 * `pregate quantize`, the model must match transformers to 1e-4 with the
 * same greedy tokens (the repacking is exact); run as MXFP4 (8-bit
 * activations in the dot products) the top-1 agreement is reported. */
static void test_gptoss_mxfp4_hf(void) {
    const char *dir = "tests/fixtures/gptoss-mxfp4", *ref = "tests/fixtures/gptoss-mxfp4/reference.safetensors";
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char mx[300], deq[300];
    snprintf(mx, sizeof mx, "%s/pregate-test-%d-gptoss-hfmx.gguf", tmp, (int)getpid());
    snprintf(deq, sizeof deq, "%s/pregate-test-%d-gptoss-hfmx-f32.gguf", tmp, (int)getpid());
    pg_error e = {{0}};
    pg_model *m = pg_model_open(dir, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    CHECK(m->layers[1].experts[2].gate.type == PG_TYPE_MXFP4 && m->layers[1].experts[2].down.type == PG_TYPE_MXFP4,
          "experts are not MXFP4");
    st_file rf;
    if (st_open(&rf, ref, &e) == 0) {
        const pg_tensor *tt = ref_tensor_(&rf, "tokens", PG_TYPE_I32), *tl = ref_tensor_(&rf, "logits", PG_TYPE_F32);
        int T = (int)tt->ne[0], V = m->hp.vocab, agree = 0;
        float *got = xmalloc((size_t)T * V * sizeof(float)), maxdiff = 0;
        pg_session *s = pg_session_new(m, T, 1, &e);
        CHECK(s && pg_session_eval(s, tt->data, T, got, &e) == 0, "%s", e.msg);
        const float *want = tl->data;
        for (int t = 0; t < T; t++) {
            agree += pg_argmax(got + (size_t)t * V, V) == pg_argmax(want + (size_t)t * V, V);
            for (int i = 0; i < V; i++) {
                float d = fabsf(got[(size_t)t * V + i] - want[(size_t)t * V + i]);
                maxdiff = d > maxdiff || isnan(d) ? d : maxdiff;
            }
        }
        CHECK(isfinite(maxdiff), "non-finite logits");
        fprintf(stderr, "  gptoss-mxfp4 (MXFP4 dots): top-1 agrees with transformers at %d of %d positions, "
                        "max |logit diff| %.3g\n", agree, T, maxdiff);
        free(got);
        pg_session_free(s);
        st_close(&rf);
    }
    CHECK(pg_model_write_gguf(m, mx, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    pg_quantize_params p = {.base = PG_TYPE_F32, .mix = PG_MIX_NONE, .expert_type = -1, .ftype = 0};
    CHECK(pg_quantize_file(mx, deq, &p, &e) == 0, "%s", e.msg);
    check_model_("gptoss-mxfp4 dequantized", deq, ref);
    unlink(mx);
    unlink(deq);
}

static void test_demo_moe(void) {
    if (access("models/demo-moe.gguf", R_OK) || access("tests/fixtures/demo-moe/reference.safetensors", R_OK))
        TEST_SKIP("models/demo-moe.gguf or its reference is missing");
    check_model_("demo-moe", "models/demo-moe.gguf", "tests/fixtures/demo-moe/reference.safetensors");
}

/* A tiny natively pre-gated model (tools/train_demo_moe.py --pregated, 30
 * steps): its logits match the PyTorch module; read as a plain model (the
 * flag cleared) they do not, so the flag really changes the routing. */
static void test_pregated_tiny(void) {
    const char *path = "tests/fixtures/pregated-tiny/model.gguf";
    check_model_("pregated-tiny", path, "tests/fixtures/pregated-tiny/reference.safetensors");
    pg_error e = {{0}};
    pg_model *m = pg_model_open(path, &e);
    CHECK(m && m->hp.expert_pregated, "pregated-tiny: flag not read: %s", m ? "unset" : e.msg);
    if (!m) return;
    int V = m->hp.vocab;
    float *a = xmalloc((size_t)8 * V * sizeof(float)), *b = xmalloc((size_t)8 * V * sizeof(float));
    int32_t toks[8] = {1, 50, 99, 150, 200, 250, 300, 350};
    for (int pass = 0; pass < 2; pass++) {
        m->hp.expert_pregated = pass == 0;
        pg_session *s = pg_session_new(m, 16, 1, &e);
        CHECK(s && pg_session_eval(s, toks, 8, pass ? b : a, &e) == 0, "%s", e.msg);
        pg_session_free(s);
    }
    CHECK(memcmp(a, b, (size_t)8 * V * sizeof(float)) != 0, "pregated-tiny: the flag changes nothing");
    free(a);
    free(b);
    pg_model_free(m);
}

static void test_stories260k(void) {
    char ckpt[512], tok[512], expect_path[512], out[512];
    snprintf(ckpt, sizeof ckpt, "%s/models/stories260K.bin", test_shared_data());
    snprintf(tok, sizeof tok, "%s/models/tok512.bin", test_shared_data());
    snprintf(expect_path, sizeof expect_path, "%s/models/stories260K_t0_n200_expected.txt", test_shared_data());
    if (access(ckpt, R_OK) || access(tok, R_OK) || access(expect_path, R_OK))
        TEST_SKIP("%s not found (shared data absent)", ckpt);
    snprintf(out, sizeof out, "/tmp/pregate-test-%d-stories.gguf", (int)getpid());
    pg_error e = {{0}};
    CHECK(pg_convert_llama2c(ckpt, tok, out, &e) == 0, "%s", e.msg);
    pg_model *m = pg_model_open(out, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) { unlink(out); return; }
    CHECK(m->tok != NULL, "converted model has no tokenizer");
    pg_session *s = pg_session_new(m, 0, 2, &e);
    int32_t *ids = NULL;
    size_t n = 0;
    CHECK(pg_tokenize(m->tok, "", 0, true, false, &ids, &n, &e) == 0 && n == 1 && ids[0] == 1,
          "empty prompt should encode to [BOS]");
    char *text = xcalloc(1, 1 << 16), buf[256];
    size_t len = 0;
    pg_detok dt;
    pg_detok_init(&dt);
    int32_t tokv = 1;
    for (int pos = 0; pos < 200; pos++) {
        if (pg_session_eval(s, &tokv, 1, NULL, &e)) { CHECK(0, "%s", e.msg); break; }
        int32_t next = pg_argmax(s->logits, m->hp.vocab);
        if (next == 1) break;
        size_t k = pg_detok_push(m->tok, &dt, next, buf, sizeof buf);
        memcpy(text + len, buf, k);
        len += k;
        tokv = next;
    }
    len += pg_detok_flush(&dt, text + len, 256);
    text[len++] = '\n';
    char *expect = NULL;
    size_t elen = 0;
    CHECK(pg_read_file(expect_path, &expect, &elen, &e) == 0, "%s", e.msg);
    CHECK(expect && elen == len && memcmp(expect, text, len) == 0,
          "stories260K greedy output differs from llama2.c's:\n--- got ---\n%.*s\n--- expected ---\n%s", (int)len,
          text, expect ? expect : "");
    free(expect);
    free(text);
    free(ids);
    pg_session_free(s);
    pg_model_free(m);
    unlink(out);
}

/* A GGUF written by llama.cpp's own converter: loads, and inspect reports it. */
static void test_llama_tiny_random_gguf(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/models/llama-2-tiny-random.gguf", test_shared_data());
    if (access(path, R_OK)) TEST_SKIP("%s not found (shared data absent)", path);
    pg_error e = {{0}};
    pg_model *m = pg_model_open(path, &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    const pg_hparams *hp = &m->hp;
    CHECK(hp->arch == PG_ARCH_LLAMA && hp->n_expert == 0, "architecture");
    CHECK(hp->vocab == 32000 && m->tok && pg_tokenizer_n_vocab(m->tok) == 32000, "vocabulary %d", hp->vocab);
    CHECK(hp->n_layer >= 1 && hp->dim > 0 && hp->n_head > 0 && hp->head_dim * hp->n_head > 0, "shape");
    fprintf(stderr, "  llama-2-tiny-random: %d layers, dim %d, %d heads (%d KV), head dim %d, FFN %d, eps %g\n",
            hp->n_layer, hp->dim, hp->n_head, hp->n_head_kv, hp->head_dim, hp->ffn_dim, hp->norm_eps);
    /* it runs: a few tokens give finite logits */
    pg_session *s = pg_session_new(m, 16, 1, &e);
    int32_t toks[3] = {1, 15043, 3186};
    CHECK(s && pg_session_eval(s, toks, 3, NULL, &e) == 0, "%s", e.msg);
    bool finite = true;
    for (int i = 0; s && i < hp->vocab; i++) finite &= isfinite(s->logits[i]);
    CHECK(finite, "non-finite logits");
    pg_session_free(s);
    pg_model_free(m);
    /* and `pregate inspect` prints its hyperparameters */
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s/pregate inspect '%s' 2>&1", getenv("BUILD") ? getenv("BUILD") : "build", path);
    FILE *p = popen(cmd, "r");
    CHECK(p != NULL, "popen");
    if (!p) return;
    char out[8192] = {0};
    size_t n = fread(out, 1, sizeof out - 1, p);
    int st = pclose(p);
    out[n] = 0;
    CHECK(st == 0 && strstr(out, "architecture:    llama") && strstr(out, "vocabulary:      32000"),
          "inspect output:\n%s", out);
}

int main(void) {
    TEST_RUN(test_hf_fixtures);
    TEST_RUN(test_hf_fixtures_as_gguf);
    TEST_RUN(test_gptoss_mxfp4);
    TEST_RUN(test_gptoss_mxfp4_hf);
    TEST_RUN(test_demo_moe);
    TEST_RUN(test_pregated_tiny);
    TEST_RUN(test_stories260k);
    TEST_RUN(test_llama_tiny_random_gguf);
    return test_summary("test_models");
}
