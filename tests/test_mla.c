/* test_mla.c - Multi-head Latent Attention's KV cache and YaRN.
 *
 *  - a deepseek2 session caches the compressed latent and the rope key,
 *    kv_lora_rank + qk_rope_head_dim floats per token and layer, and
 *    nothing else (no per-head keys or values); other families keep
 *    their K and V;
 *  - what the cache holds is what the model reads: a session that
 *    decodes token by token gives the logits of one chunk over the same
 *    tokens;
 *  - YaRN frequencies and magnitudes against values worked by hand;
 *  - damaged deepseek2 GGUF metadata or tensors give a clear error.
 * (Logits against transformers: test_models.c; offloading: test_offload.c.)
 */
#include <math.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include "convert.h"
#include "forward.h"
#include "mla.h"
#include "test.h"

static const char *ds_[] = {"deepseek2", "deepseek2-lora", "deepseek3", "deepseek2-yarn"};

static void test_cache_size(void) {
    char dir[256];
    pg_error e = {{0}};
    for (int i = 0; i < 4; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", ds_[i]);
        pg_model *m = pg_model_open(dir, &e);
        CHECK(m != NULL, "%s: %s", ds_[i], e.msg);
        if (!m) continue;
        const pg_hparams *hp = &m->hp;
        CHECK(hp->mla && hp->kv_lora_rank == 32 && hp->n_rot == 8, "%s: MLA sizes", ds_[i]);
        const int n_ctx = 40, n_seq = 3;
        pg_session *s = pg_session_new_seqs(m, n_ctx, n_seq, 1, &e);
        CHECK(s != NULL, "%s: %s", ds_[i], e.msg);
        if (s) {
            size_t per_seq = (size_t)hp->n_layer * n_ctx * (hp->kv_lora_rank + hp->n_rot);
            CHECK(s->kv_floats == per_seq * n_seq, "%s: KV cache %zu floats, expected %zu per sequence x %d", ds_[i],
                  s->kv_floats, per_seq, n_seq);
            CHECK(s->v_cache == NULL, "%s: MLA keeps no separate values", ds_[i]);
            /* 40 positions x latent per layer, against expanded K and V of
             * H * (qk + v) floats per token and layer */
            fprintf(stderr, "  %-16s KV cache %zu floats per sequence (expanded K/V would be %zu)\n", ds_[i], per_seq,
                    (size_t)hp->n_layer * n_ctx * hp->n_head * (hp->head_dim + hp->v_head_dim));
        }
        pg_session_free(s);
        pg_model_free(m);
    }
    pg_model *m = pg_model_open("tests/fixtures/qwen3moe", &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    pg_session *s = pg_session_new(m, 24, 1, &e);
    size_t kvd = (size_t)m->hp.n_head_kv * m->hp.head_dim;
    CHECK(s && s->kv_floats == 2 * (size_t)m->hp.n_layer * 24 * kvd && s->v_cache, "qwen3moe: K and V as before");
    pg_session_free(s);
    pg_model_free(m);
}

/* decoding one token at a time through the latent cache = one chunk */
static void test_decode_matches_chunk(void) {
    char dir[256];
    pg_error e = {{0}};
    for (int i = 0; i < 4; i++) {
        snprintf(dir, sizeof dir, "tests/fixtures/%s", ds_[i]);
        pg_model *m = pg_model_open(dir, &e);
        CHECK(m != NULL, "%s: %s", ds_[i], e.msg);
        if (!m) continue;
        int V = m->hp.vocab, n = 20;
        int32_t toks[20];
        for (int t = 0; t < n; t++) toks[t] = (t * 131 + 7) % V;
        float *a = xmalloc((size_t)n * V * sizeof(float)), *b = xmalloc((size_t)n * V * sizeof(float));
        pg_session *s = pg_session_new(m, 32, 1, &e);
        CHECK(s && pg_session_eval(s, toks, n, a, &e) == 0, "%s: %s", ds_[i], e.msg);
        pg_session_reset(s);
        for (int t = 0; s && t < n; t++) CHECK(pg_session_eval(s, &toks[t], 1, b + (size_t)t * V, &e) == 0, "%s", e.msg);
        float d = 0;
        for (size_t j = 0; j < (size_t)n * V; j++) d = fmaxf(d, fabsf(a[j] - b[j]));
        CHECK(d <= 1e-5f, "%s: token-by-token decoding differs from the chunk by %g", ds_[i], d);
        pg_session_free(s);
        free(a);
        free(b);
        pg_model_free(m);
    }
}

static void test_yarn(void) {
    /* 16 rope dims, base 1e4, factor 4 over an original context of 64:
     * beta_fast 32 -> dim -0.99 (floor, clamped: 0), beta_slow 1 -> 2.02
     * (ceil: 3); ramp i/3: i = 0 kept, 1 and 2 mixed, 3.. divided by 4 */
    float f[8];
    const pg_yarn y4 = {.factor = 4, .beta_fast = 32, .beta_slow = 1, .orig_ctx = 64, .truncate = 1, .attn_factor = 1};
    const pg_yarn y1 = {.factor = 1, .beta_fast = 32, .beta_slow = 1, .orig_ctx = 64, .truncate = 1, .attn_factor = 1};
    pg_yarn_inv_freq(16, 10000.0f, &y4, f);
    for (int i = 0; i < 8; i++) {
        double base = pow(10000.0, -2.0 * i / 16), r = i < 3 ? i / 3.0 : 1.0;
        double want = base * (r / 4 + (1 - r));
        CHECK(fabs(f[i] - want) <= 1e-6 * want, "inv_freq[%d] = %g, expected %g", i, f[i], want);
    }
    CHECK(fabsf(f[1] - 0.75f * powf(10000.0f, -2.0f / 16)) < 1e-6f, "inv_freq[1]: three quarters of theta_1");
    /* factor 1: the plain frequencies */
    pg_yarn_inv_freq(16, 10000.0f, &y1, f);
    for (int i = 0; i < 8; i++) CHECK(fabs(f[i] - pow(10000.0, -2.0 * i / 16)) < 1e-7, "factor 1: inv_freq[%d]", i);
    CHECK(fabsf(pg_yarn_mscale(4.0f, 1.0f) - (1.0f + 0.1f * logf(4.0f))) < 1e-7f, "mscale(4, 1)");
    CHECK(pg_yarn_mscale(1.0f, 0.7f) == 1.0f && pg_yarn_mscale(0.5f, 1.0f) == 1.0f, "mscale of no scaling");
    float cs[16];
    pg_yarn_inv_freq(16, 10000.0f, &y4, f);
    pg_rope_cache_freqs(5, 16, f, 0.5f, cs);
    CHECK(fabsf(cs[2] - 0.5f * cosf(5 * f[1])) < 1e-6f && fabsf(cs[3] - 0.5f * sinf(5 * f[1])) < 1e-6f,
          "cos/sin carry the attention factor");
}

/* Copies src to out with key `key` set to u32 v / string sv (v < 0 and
 * sv NULL: dropped) and tensor `drop` left out. */
static int edit_(const char *src, const char *out, const char *key, long v, const char *sv, const char *drop) {
    gguf_file g;
    pg_error e;
    if (gguf_open(&g, src, NULL, &e)) return -1;
    gguf_writer *w = gguf_writer_new();
    for (uint64_t i = 0; i < g.n_kv; i++)
        if (!key || strcmp(g.kv[i].key, key)) gguf_writer_copy_kv(w, &g.kv[i]);
    if (key && sv) gguf_writer_set_str(w, key, sv);
    else if (key && v >= 0) gguf_writer_set_u32(w, key, (uint32_t)v);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const pg_tensor *t = &g.tensors[i];
        if (drop && !strcmp(t->name, drop)) continue;
        gguf_writer_add_tensor(w, t->name, t->type, t->n_dims, t->ne, t->data, t->nbytes);
    }
    int rc = gguf_writer_write(w, out, &e);
    gguf_writer_free(w);
    gguf_close(&g);
    return rc;
}

static void test_bad_files(void) {
    char src[256], out[256];
    snprintf(src, sizeof src, "/tmp/pregate-mla-%d.gguf", (int)getpid());
    snprintf(out, sizeof out, "/tmp/pregate-mla-%d-bad.gguf", (int)getpid());
    pg_error e = {{0}};
    pg_model *m = pg_model_open("tests/fixtures/deepseek3", &e);
    CHECK(m && pg_model_write_gguf(m, src, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    struct { const char *key; long v; const char *sv; const char *drop; const char *expect; } cases[] = {
        {"deepseek2.expert_group_count", 3, NULL, NULL, "bad expert groups"},
        {"deepseek2.expert_group_used_count", 9, NULL, NULL, "bad expert groups"},
        {"deepseek2.expert_gating_func", 4, NULL, NULL, "expert_gating_func 4"},
        {"deepseek2.attention.kv_lora_rank", -1, NULL, NULL, "kv_lora_rank"},
        {"deepseek2.attention.kv_lora_rank", 16, NULL, NULL, "shape"},
        {"deepseek2.attention.key_length_mla", 30, NULL, NULL, "shape"},
        {"deepseek2.rope.scaling.type", 0, "longrope", NULL, "not supported"},
        {"deepseek2.rope.scaling.original_context_length", 0, NULL, NULL, "YaRN"},
        /* found by mutating the converted fixtures: the shared width overflowed int */
        {"deepseek2.expert_feed_forward_length", 1258291216, NULL, NULL, "bad shared experts: 1 of width 1258291216"},
        {NULL, 0, NULL, "blk.1.attn_v_b.weight", "attn_v_b"},
        {NULL, 0, NULL, "blk.2.attn_q_a_norm.weight", "attn_q_a_norm"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        CHECK(edit_(src, out, cases[i].key, cases[i].v, cases[i].sv, cases[i].drop) == 0, "case %zu: rewrite", i);
        m = pg_model_open(out, &e);
        CHECK(m == NULL && strstr(e.msg, cases[i].expect) && strstr(e.msg, out), "case %zu (%s): %s", i,
              cases[i].expect, m ? "accepted" : e.msg);
        pg_model_free(m);
    }
    unlink(src);
    unlink(out);
}

/* config.json problems of the DeepSeek keys (the weights linked from the fixture). */
static void test_bad_configs(void) {
    char dir[256], cfg[300], link_[300], cwd[1024], target[1400];
    snprintf(dir, sizeof dir, "/tmp/pregate-mla-%d-hf", (int)getpid());
    snprintf(cfg, sizeof cfg, "%s/config.json", dir);
    snprintf(link_, sizeof link_, "%s/model.safetensors", dir);
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    snprintf(target, sizeof target, "%s/tests/fixtures/deepseek2-lora/model.safetensors", cwd);
    mkdir(dir, 0755);
    unlink(link_);
    CHECK(symlink(target, link_) == 0, "symlink");
    char *orig = NULL;
    size_t len = 0;
    pg_error e = {{0}};
    CHECK(pg_read_file("tests/fixtures/deepseek2-lora/config.json", &orig, &len, &e) == 0, "%s", e.msg);
    struct { const char *from, *to, *expect; } cases[] = {
        {"\"group_limited_greedy\"", "\"weird\"", "topk_method 'weird'"},
        {"\"n_group\": 4", "\"n_group\": 5", "bad expert groups"},
        {"\"topk_group\": 2", "\"topk_group\": 0", "bad expert groups"},
        {"\"kv_lora_rank\": 32", "\"kv_lora_rankx\": 32", "missing 'kv_lora_rank'"},
        {"\"rope_type\": \"default\"", "\"rope_type\": \"linear\", \"factor\": 2.0", "'linear' is not supported"},
        {"\"rope_type\": \"default\"", "\"rope_type\": \"yarn\", \"factor\": 2.0", "original_max_position_embeddings"},
        {"\"v_head_dim\": 24", "\"v_head_dim\": 20", "shape"},
        {"\"n_shared_experts\": 2", "\"n_shared_experts\": 2000000", "bad shared experts: 2000000 of width 16"},
        {"\"qk_nope_head_dim\": 16", "\"qk_nope_head_dim\": 2147483647", "bad MLA head size 2147483647 + 8"},
    };
    for (size_t i = 0; orig && i < sizeof cases / sizeof *cases; i++) {
        const char *at = strstr(orig, cases[i].from);
        CHECK(at != NULL, "case %zu: '%s' not in the fixture's config", i, cases[i].from);
        if (!at) continue;
        FILE *f = fopen(cfg, "w");
        fprintf(f, "%.*s%s%s", (int)(at - orig), orig, cases[i].to, at + strlen(cases[i].from));
        fclose(f);
        pg_model *m = pg_model_open(dir, &e);
        CHECK(m == NULL && strstr(e.msg, cases[i].expect), "case %zu (%s): %s", i, cases[i].expect,
              m ? "accepted" : e.msg);
        pg_model_free(m);
    }
    free(orig);
    unlink(cfg);
    unlink(link_);
    rmdir(dir);
}

/* `pregate inspect` and `pregate run` on a DeepSeek fixture: the run's
 * greedy ids are the reference's. */
static void test_cli(void) {
    const char *bin = getenv("BUILD") ? getenv("BUILD") : "build";
    char cmd[1024], out[8192];
    snprintf(cmd, sizeof cmd, "%s/pregate inspect tests/fixtures/deepseek3 2>&1", bin);
    FILE *p = popen(cmd, "r");
    size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    int st = p ? pclose(p) : -1;
    CHECK(st == 0 && strstr(out, "architecture:    deepseek2") && strstr(out, "MLA:") && strstr(out, "RoPE scaling:    YaRN") &&
              strstr(out, "group top-2 sum"),
          "inspect:\n%s", out);
    /* the fixture's prompt, and its first 8 greedy tokens */
    snprintf(cmd, sizeof cmd, "%s/pregate run -m tests/fixtures/deepseek3 --tokens "
             "328,384,353,219,207,297,389,171,312,166,505,106,86,86,133,180 -n 8 --temp 0 --print-ids -t 2 2>/dev/null",
             bin);
    p = popen(cmd, "r");
    n = p ? fread(out, 1, sizeof out - 1, p) : 0;
    out[n] = 0;
    st = p ? pclose(p) : -1;
    CHECK(st == 0 && strncmp(out, "109 426 421 282 45 60 414 295", 29) == 0, "run: '%s'", out);
}

int main(void) {
    TEST_RUN(test_cache_size);
    TEST_RUN(test_decode_matches_chunk);
    TEST_RUN(test_yarn);
    TEST_RUN(test_bad_files);
    TEST_RUN(test_bad_configs);
    TEST_RUN(test_cli);
    return test_summary("test_mla");
}
