/* test_encdec.c - encoder-decoder models (Switch Transformers):
 *
 *  - the T5 relative position buckets against transformers' values;
 *  - the ReLU kernel;
 *  - the tiny Switch fixture (tools/make_fixtures.py) against transformers:
 *    teacher-forced decoder logits within 1e-4 and 32 greedy tokens
 *    identical, from the safetensors directory and after conversion to GGUF;
 *  - the offloading invariant: every prefetch mode gives logits
 *    bit-identical to the all-resident run, the encoder's experts included.
 */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "convert.h"
#include "encdec.h"
#include "forward.h"
#include "safetensors.h"
#include "sampler.h"
#include "synth.h"
#include "test.h"

#define TOL 1e-4f
#define FIXTURE "tests/fixtures/switch"

static void test_buckets(void) {
    static const int rel[35] = {-200, -129, -128, -127, -65, -64, -63, -33, -32, -31, -17, -16, -15, -9, -8, -7, -1, 0,
                                1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 64, 65, 127, 128, 129, 200};
    /* transformers' _relative_position_bucket */
    static const struct { int nb, md, bidir, want[35]; } cases[] = {
        {8, 16, 1, {3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 3, 1, 0, 5, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7}},
        {8, 16, 0, {7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 5, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
        {32, 128, 1, {15, 15, 15, 15, 14, 14, 13, 12, 12, 11, 10, 10, 9, 8, 8, 7, 1, 0, 17, 23, 24, 24, 25, 26, 26, 27,
                      28, 28, 29, 30, 30, 31, 31, 31, 31}},
        {32, 128, 0, {31, 31, 31, 31, 26, 26, 26, 21, 21, 21, 16, 16, 15, 9, 8, 7, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                      0, 0, 0, 0, 0, 0}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++)
        for (int i = 0; i < 35; i++) {
            int got = pg_t5_bucket(rel[i], cases[c].bidir, cases[c].nb, cases[c].md);
            CHECK(got == cases[c].want[i], "buckets %d, max distance %d, %s: relative position %d -> %d, want %d",
                  cases[c].nb, cases[c].md, cases[c].bidir ? "bidirectional" : "causal", rel[i], got,
                  cases[c].want[i]);
        }
}

static void test_relu(void) {
    float x[7] = {-2.5f, -0.0f, 0.0f, 1e-30f, 3.25f, -1e-30f, 7.0f}, y[7];
    const float want[7] = {0, 0, 0, 1e-30f, 3.25f, 0, 7.0f};
    pg_relu_ref(7, x, y);
    for (int i = 0; i < 7; i++) CHECK(y[i] == want[i], "relu(%g) = %g", x[i], y[i]);
    pg_relu_ref(7, x, x); /* in place */
    CHECK(memcmp(x, y, sizeof x) == 0, "relu in place");
}

static const pg_tensor *ref_tensor_(const st_file *f, const char *name, pg_type type) {
    const pg_tensor *t = st_find(f, name);
    return t && t->type == type ? t : NULL;
}

/* Logits of the teacher-forced decoder tokens, and the greedy decode. */
static void check_switch_(const char *what, const char *model_path, const char *fixture) {
    pg_error e = {{0}};
    st_file ref;
    char ref_path[300];
    snprintf(ref_path, sizeof ref_path, "%s/reference.safetensors", fixture);
    if (st_open(&ref, ref_path, &e)) { CHECK(0, "%s: %s", what, e.msg); return; }
    const pg_tensor *tt = ref_tensor_(&ref, "tokens", PG_TYPE_I32), *td = ref_tensor_(&ref, "dec_tokens", PG_TYPE_I32);
    const pg_tensor *tl = ref_tensor_(&ref, "logits", PG_TYPE_F32), *tg = ref_tensor_(&ref, "greedy", PG_TYPE_I32);
    pg_model *m = pg_model_open(model_path, &e);
    CHECK(m != NULL, "%s: %s", what, e.msg);
    CHECK(tt && td && tl && tg, "%s: reference lacks tokens/dec_tokens/logits/greedy", what);
    if (!m || !tt || !td || !tl || !tg) { pg_model_free(m); st_close(&ref); return; }
    int T = (int)tt->ne[0], Td = (int)td->ne[0], G = (int)tg->ne[0], V = m->hp.vocab;
    CHECK(m->hp.arch == PG_ARCH_SWITCH && m->hp.n_enc_layer == 2 && m->hp.n_layer == 4, "%s: shape", what);
    CHECK(tl->ne[0] == V && tl->ne[1] == Td, "%s: reference logits shape", what);
    const int32_t *dec = td->data, *greedy = tg->data;
    CHECK(dec[0] == m->hp.dec_start_token, "%s: decoder start %d", what, m->hp.dec_start_token);
    for (int threads = 1; threads <= 2; threads++) {
        pg_session *s = pg_session_new(m, 64, threads, &e);
        CHECK(s != NULL, "%s: %s", what, e.msg);
        if (!s) break;
        float *got = xmalloc((size_t)Td * V * sizeof(float));
        CHECK(pg_session_eval(s, dec, 1, NULL, &e) != 0 && strstr(e.msg, "encode"), "%s: eval before encode", what);
        CHECK(pg_session_encode(s, tt->data, T, &e) == 0, "%s: %s", what, e.msg);
        CHECK(pg_session_eval(s, dec, Td, got, &e) == 0, "%s: %s", what, e.msg);
        float maxdiff = 0;
        for (size_t i = 0; i < (size_t)Td * V; i++) {
            float d = fabsf(got[i] - ((const float *)tl->data)[i]);
            if (!(d <= maxdiff)) maxdiff = d;
        }
        CHECK(maxdiff <= TOL, "%s (%d threads): max |logit diff| %g > %g", what, threads, maxdiff, TOL);
        if (threads == 1) fprintf(stderr, "  %-28s maxdiff %.3g\n", what, maxdiff);
        /* greedy from the start token, one step at a time, on the same input */
        pg_session_reset(s);
        int32_t tok = m->hp.dec_start_token;
        int mismatch = -1;
        for (int i = 0; i < G; i++) {
            if (pg_session_eval(s, &tok, 1, NULL, &e)) { mismatch = i; break; }
            tok = pg_argmax(s->logits, V);
            if (tok != greedy[i]) { mismatch = i; break; }
        }
        CHECK(mismatch < 0, "%s (%d threads): greedy token %d differs", what, threads, mismatch);
        free(got);
        pg_session_free(s);
    }
    pg_model_free(m);
    st_close(&ref);
}

static void gguf_path_(char *out, size_t cap, const char *tag) {
    snprintf(out, cap, "%s/pregate-test-%d-switch-%s.gguf", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp",
             (int)getpid(), tag);
}

/* tied: the output scaling, through the logits (its greedy decode repeats
 * one token); untied: a varied greedy decode */
static const char *fixtures_[] = {"switch", "switch-untied"};

static void test_switch_hf(void) {
    char dir[256];
    for (size_t i = 0; i < sizeof fixtures_ / sizeof *fixtures_; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fixtures_[i]);
        check_switch_(fixtures_[i], dir, dir);
    }
}

static void test_switch_gguf(void) {
    char dir[256], out[300], what[300];
    for (size_t i = 0; i < sizeof fixtures_ / sizeof *fixtures_; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", fixtures_[i]);
        snprintf(what, sizeof what, "%s as GGUF", fixtures_[i]);
        gguf_path_(out, sizeof out, fixtures_[i]);
        pg_error e = {{0}};
        pg_model *m = pg_model_open(dir, &e);
        CHECK(m != NULL, "%s", e.msg);
        if (!m) continue;
        bool tied = m->hp.tied_output;
        CHECK(tied == (i == 0), "%s: tied %d", what, tied);
        int rc = pg_model_write_gguf(m, out, &e);
        pg_model_free(m);
        CHECK(rc == 0, "%s", e.msg);
        if (rc == 0) check_switch_(what, out, dir);
        m = rc == 0 ? pg_model_open(out, &e) : NULL;
        CHECK(m && m->hp.tied_output == tied && m->hp.dec_eos_token == 1, "%s: tied/eos after GGUF", what);
        pg_model_free(m);
        unlink(out);
    }
}

/* ---- the offloading invariant ---- */

#define N_ENC 40 /* more than one chunk of PG_MAX_BATCH rows */
#define N_PREFIX 4
#define N_GEN 12
#define N_DEC (N_PREFIX + N_GEN)

/* Encodes the input, evaluates a decoder prefix as one chunk, then decodes
 * one token at a time (choosing the tokens greedily if asked); every
 * decoder row's logits go to out. */
static int run_(pg_session *s, const int32_t *enc, int32_t *dec, bool choose, float *out, pg_error *e) {
    int V = s->m->hp.vocab;
    if (pg_session_encode(s, enc, N_ENC, e) || pg_session_eval(s, dec, N_PREFIX, out, e)) return -1;
    for (int i = N_PREFIX; i < N_DEC; i++) {
        if (choose) dec[i] = pg_argmax(s->logits, V);
        if (pg_session_eval(s, &dec[i], 1, out + (size_t)i * V, e)) return -1;
    }
    return 0;
}

static void check_offload_(const char *what, const char *path) {
    pg_error e = {{0}};
    pg_model *m = pg_model_open(path, &e);
    CHECK(m != NULL, "%s: %s", what, e.msg);
    if (!m) return;
    int V = m->hp.vocab;
    size_t nlog = (size_t)N_DEC * V;
    int32_t enc[N_ENC], dec[N_DEC] = {m->hp.dec_start_token, 5, 17, 42};
    for (int i = 0; i < N_ENC; i++) enc[i] = (i * 7919 + 13) % V;
    float *want = xmalloc(nlog * sizeof(float)), *got = xmalloc(nlog * sizeof(float));
    pg_trace trace;
    pg_trace_init(&trace, m->hp.n_layer, m->hp.n_expert, m->hp.n_expert_used, m->hp.dim, true);
    pg_session *s = pg_session_new(m, 64, 2, &e);
    CHECK(s != NULL, "%s", e.msg);
    if (!s) goto done;
    s->trace = &trace;
    CHECK(run_(s, enc, dec, true, want, &e) == 0, "%s: resident: %s", what, e.msg);
    s->trace = NULL;
    size_t min = pg_cache_min_budget(m);
    const pg_prefetch_mode modes[] = {PG_PREFETCH_NONE, PG_PREFETCH_NEXT_ALL, PG_PREFETCH_PREGATE, PG_PREFETCH_ORACLE};
    const pg_evict policies[] = {PG_EVICT_LRU, PG_EVICT_LFU, PG_EVICT_LOOKAHEAD};
    const pg_store_kind stores[] = {PG_STORE_PREAD, PG_STORE_DIRECT, PG_STORE_MMAP};
    int runs = 0;
    for (int mi = 0; mi < 4; mi++)
        for (int pi = 0; pi < 3; pi++)
            for (int budget = 0; budget < 2; budget++) {
                pg_offload_params p;
                pg_offload_params_default(&p);
                p.mode = modes[mi];
                p.evict = policies[pi];
                p.store = stores[(mi + pi + budget) % 3];
                p.expert_mem = budget ? m->bytes_experts * 2 / 5 : min;
                p.oracle = &trace;
                p.depth = 1 + (mi + pi) % 2;
                p.io_threads = 1 + budget;
                pg_offload *o = pg_offload_new(m, &p, &e);
                CHECK(o != NULL, "%s", e.msg);
                if (!o) continue;
                pg_session_set_offload(s, o);
                memset(got, 0, nlog * sizeof(float));
                CHECK(run_(s, enc, dec, false, got, &e) == 0, "%s", e.msg);
                CHECK(memcmp(got, want, nlog * sizeof(float)) == 0,
                      "%s: mode %s, evict %s, store %s, budget %s: logits differ from resident", what, pg_prefetch_name(p.mode),
                      pg_evict_name(p.evict), pg_store_kind_name(p.store), budget ? "40%" : "minimum");
                CHECK(pg_cache_refs_held(o->cache) == 0, "references left after a run");
                CHECK(pg_cache_peak_bytes(o->cache) <= p.expert_mem, "fast tier exceeded its budget");
                if (p.mode == PG_PREFETCH_ORACLE) { /* every sparse block is predicted from the one before */
                    uint64_t t = 0, a = 0;
                    for (int l = 0; l < m->hp.n_layer; l++) {
                        t += pg_cache_stats(o->cache, l)->pred_true;
                        a += pg_cache_stats(o->cache, l)->actual_total;
                    }
                    CHECK(a > 0 && t == a, "oracle recall %llu/%llu", (unsigned long long)t, (unsigned long long)a);
                }
                runs++;
                pg_session_set_offload(s, NULL);
            }
    fprintf(stderr, "  %-24s %d offloaded runs bit-identical to resident\n", what, runs);
    /* a read error fails the step cleanly; the next run gives the resident logits */
    pg_offload_params p;
    pg_offload_params_default(&p);
    p.expert_mem = min;
    p.store = PG_STORE_PREAD;
    p.mode = PG_PREFETCH_NONE;
    pg_offload *o = pg_offload_new(m, &p, &e);
    CHECK(o != NULL, "%s", e.msg);
    if (o) {
        pg_session_set_offload(s, o);
        pg_store_inject(o->store, PG_FAULT_EIO, 2, 1);
        int rc = run_(s, enc, dec, false, got, &e);
        CHECK(rc != 0 && strstr(e.msg, "Input/output error"), "fault: rc %d, %s", rc, e.msg);
        CHECK(pg_cache_refs_held(o->cache) == 0, "fault left references");
        CHECK(run_(s, enc, dec, false, got, &e) == 0 && memcmp(got, want, nlog * sizeof(float)) == 0,
              "the run after a fault: %s", e.msg);
        pg_session_set_offload(s, NULL);
    }
done:
    pg_session_free(s);
    pg_trace_free(&trace);
    free(want);
    free(got);
    pg_model_free(m);
}

static void test_switch_offload(void) {
    char path[300];
    gguf_path_(path, sizeof path, "offload");
    pg_error e = {{0}};
    pg_model *m = pg_model_open(FIXTURE, &e);
    CHECK(m && pg_model_write_gguf(m, path, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    check_offload_("switch", path);
    unlink(path);
}

/* `pregate synth --arch switch` at a tiny size: loads as the layout says
 * (experts in the odd blocks of each stack), decodes, and keeps the
 * invariant; Q8_0 experts too. */
static void test_switch_synth(void) {
    for (int q = 0; q < 2; q++) {
        char path[300];
        gguf_path_(path, sizeof path, q ? "synth-q8" : "synth");
        pg_synth_params p = {.arch = PG_SYNTH_SWITCH, .n_layer = 3, .dim = 64, .n_expert = 6, .n_expert_used = 1,
                             .expert_ffn = 96, .n_head = 4, .n_head_kv = 4, .head_dim = 32, .vocab = 300,
                             .type = q ? PG_TYPE_Q8_0 : PG_TYPE_F16, .seed = 7, .n_ctx = 128, .n_threads = 1};
        pg_error e = {{0}};
        pg_synth_sizes sz;
        CHECK(pg_synth_sizes_of(&p, &sz, &e) == 0 && pg_synth_write(&p, path, &e) == 0, "synth: %s", e.msg);
        pg_model *m = pg_model_open(path, &e);
        CHECK(m != NULL, "synth: %s", e.msg);
        if (!m) { unlink(path); continue; }
        const pg_hparams *hp = &m->hp;
        CHECK(hp->arch == PG_ARCH_SWITCH && hp->n_enc_layer == 3 && hp->n_layer == 6 && hp->n_expert == 6 &&
              hp->rel_buckets == 32 && hp->rel_max_distance == 128 && hp->tied_output && m->tok,
              "synth: hyperparameters");
        for (int l = 0; l < 6; l++) CHECK(m->layers[l].is_moe == (l % 3 == 1), "synth: layer %d sparse", l);
        CHECK(m->bytes_experts == sz.expert_bytes && m->bytes_dense == sz.dense_bytes,
              "synth: bytes %zu/%llu experts, %zu/%llu dense", m->bytes_experts, (unsigned long long)sz.expert_bytes,
              m->bytes_dense, (unsigned long long)sz.dense_bytes);
        pg_model_free(m);
        check_offload_(q ? "switch synth Q8_0" : "switch synth F16", path);
        unlink(path);
    }
}

/* config.json: what is read, and what is refused with a clear line */
static void test_switch_config(void) {
    static const char *base = "\"model_type\": \"switch_transformers\", \"d_model\": 64, \"d_kv\": 8, \"d_ff\": 32, "
                              "\"num_heads\": 4, \"num_layers\": 2, \"vocab_size\": 512, \"num_experts\": 4";
    static const struct { const char *extra, *err; } cases[] = {
        {"", NULL},
        {", \"dense_act_fn\": \"gelu_new\"", "dense_act_fn"},
        {", \"num_decoder_layers\": 0", "block counts"},
        {", \"num_decoder_layers\": 2147483647", "block counts"},
        {", \"router_bias\": true", "router_bias"},
        {", \"relative_attention_num_buckets\": 2", "bucket"},
        {", \"relative_attention_max_distance\": 3", "max distance"},
        {", \"decoder_start_token_id\": 512", "start token"},
        {", \"layer_norm_epsilon\": \"x\"", "layer_norm_epsilon"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[1024];
        snprintf(json, sizeof json, "{%s%s}", base, cases[i].extra);
        pg_hparams hp;
        pg_error e = {{0}};
        int rc = pg_hparams_from_config(json, "cfg", &hp, &e);
        if (!cases[i].err) {
            CHECK(rc == 0, "%s", e.msg);
            CHECK(hp.arch == PG_ARCH_SWITCH && hp.n_enc_layer == 2 && hp.n_layer == 4 && hp.n_expert_used == 1 &&
                  hp.ffn_act == PG_FFN_RELU && hp.rel_buckets == 32 && hp.rel_max_distance == 128 &&
                  hp.dec_start_token == 0 && hp.dec_eos_token == -1 && hp.tied_output && hp.norm_eps == 1e-6f,
                  "defaults");
        } else {
            CHECK(rc != 0 && strstr(e.msg, cases[i].err), "case %zu: rc %d, message '%s'", i, rc, e.msg);
        }
    }
}

/* Runs a command; its stdout (at most cap-1 bytes) in out; the exit status. */
static int sh_(const char *cmd, char *out, size_t cap) {
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = 0;
    return pclose(p);
}

/* `pregate run` reproduces transformers' greedy decode; `pregate bench` on a
 * synthetic Switch model gives identical logits in every mode. */
static void test_switch_cli(void) {
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    pg_error e = {{0}};
    st_file ref;
    if (st_open(&ref, "tests/fixtures/switch-untied/reference.safetensors", &e)) { CHECK(0, "%s", e.msg); return; }
    const pg_tensor *tt = ref_tensor_(&ref, "tokens", PG_TYPE_I32), *tg = ref_tensor_(&ref, "greedy", PG_TYPE_I32);
    CHECK(tt && tg, "reference");
    if (!tt || !tg) { st_close(&ref); return; }
    char cmd[2048], out[8192], want[1024];
    int n = snprintf(cmd, sizeof cmd, "%s/pregate run -m tests/fixtures/switch-untied --temp 0 -n %d --tokens ", build,
                     (int)tg->ne[0]);
    for (int i = 0; i < tt->ne[0]; i++) n += snprintf(cmd + n, sizeof cmd - n, "%s%d", i ? "," : "", ((const int32_t *)tt->data)[i]);
    snprintf(cmd + n, sizeof cmd - n, " 2>/dev/null");
    int w = 0;
    for (int i = 0; i < tg->ne[0]; i++) w += snprintf(want + w, sizeof want - w, "%s%d", i ? " " : "", ((const int32_t *)tg->data)[i]);
    int st = sh_(cmd, out, sizeof out);
    CHECK(st == 0 && strncmp(out, want, strlen(want)) == 0, "pregate run: status %d\n got: %s\nwant: %s", st, out, want);
    st_close(&ref);

    char path[300];
    gguf_path_(path, sizeof path, "bench");
    snprintf(cmd, sizeof cmd, "%s/pregate synth --arch switch --layers 2 --dim 64 --experts 4 --top-k 1 "
                              "--expert-ffn 64 --heads 4 --kv-heads 4 --vocab 300 --type F16 --seed 3 -o %s 2>&1 && "
                              "%s/pregate bench -m %s --expert-mem 50%% --prompt-tokens 20 -n 6 --repeat 1 2>&1",
             build, path, build, path);
    st = sh_(cmd, out, sizeof out);
    int identical = 0;
    for (const char *p = out; (p = strstr(p, "identical")); p++) identical++;
    CHECK(st == 0 && identical == 6 && !strstr(out, "DIFFER"), "pregate bench: status %d, %d modes identical:\n%s", st,
          identical, out);
    unlink(path);
}

int main(void) {
    TEST_RUN(test_buckets);
    TEST_RUN(test_relu);
    TEST_RUN(test_switch_config);
    TEST_RUN(test_switch_hf);
    TEST_RUN(test_switch_gguf);
    TEST_RUN(test_switch_offload);
    TEST_RUN(test_switch_synth);
    TEST_RUN(test_switch_cli);
    return test_summary("test_encdec");
}
