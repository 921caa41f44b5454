/* test_synth.c - gguf_writer_add_tensor_cb and `pregate synth`: synthesized
 * models load, run, hold the weights they promise, and are reproducible. */
#include <dirent.h>
#include <math.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "forward.h"
#include "gguf.h"
#include "model.h"
#include "synth.h"
#include "test.h"
#include "experts/trace.h"
#include "tokenizer.h"

static char dir_[64];

static const char *path_(const char *name) {
    static char buf[4][256];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir_, name);
    return buf[k];
}

static pg_synth_params tiny_(pg_synth_arch arch, pg_type type, uint64_t seed) {
    return (pg_synth_params){.arch = arch, .n_layer = 2, .dim = 64, .n_expert = 8, .n_expert_used = 2,
                             .expert_ffn = 64, .n_head = 4, .n_head_kv = 2, .vocab = 300, .type = type,
                             .seed = seed, .n_threads = 2};
}

static bool files_equal_(const char *a, const char *b) {
    char *x, *y;
    size_t nx, ny;
    pg_error e;
    if (pg_read_file(a, &x, &nx, &e)) return false;
    if (pg_read_file(b, &y, &ny, &e)) { free(x); return false; }
    bool eq = nx == ny && memcmp(x, y, nx) == 0;
    free(x);
    free(y);
    return eq;
}

/* ---- the writer's streaming tensors ---- */

typedef struct {
    int calls;
    uint64_t expect_off; /* chunks come in order */
    bool in_order;
    size_t max_len;
    int fail_at_call;    /* 0: never */
} fill_state;

static int pattern_fill_(void *ctx, uint64_t off, void *buf, size_t len) {
    fill_state *s = ctx;
    s->calls++;
    if (off != s->expect_off) s->in_order = false;
    s->expect_off = off + len;
    if (len > s->max_len) s->max_len = len;
    if (s->fail_at_call && s->calls == s->fail_at_call) return -1;
    uint8_t *p = buf;
    for (size_t i = 0; i < len; i++) p[i] = (uint8_t)((off + i) * 7 + ((off + i) >> 11));
    return 0;
}

static void test_writer_callback(void) {
    const int64_t n = (5 << 20) / 4 + 3; /* F32 elements: a bit over 5 MiB, 2 chunks */
    fill_state s = {.in_order = true};
    gguf_writer *w = gguf_writer_new();
    float small[3] = {1, 2, 3};
    int64_t ne_small[1] = {3}, ne[1] = {n};
    gguf_writer_add_tensor(w, "before", PG_TYPE_F32, 1, ne_small, small, sizeof small);
    gguf_writer_add_tensor_cb(w, "streamed", PG_TYPE_F32, 1, ne, (size_t)n * 4, pattern_fill_, &s);
    gguf_writer_add_tensor(w, "after", PG_TYPE_F32, 1, ne_small, small, sizeof small);
    pg_error e = {{0}};
    CHECK(gguf_writer_write(w, path_("cb.gguf"), &e) == 0, "%s", e.msg);
    gguf_writer_free(w);
    CHECK(s.calls == 2 && s.in_order && s.max_len == GGUF_WRITER_CHUNK, "calls %d, max len %zu", s.calls, s.max_len);
    gguf_file g;
    CHECK(gguf_open(&g, path_("cb.gguf"), NULL, &e) == 0, "%s", e.msg);
    if (g.path) {
        const pg_tensor *t = gguf_find_tensor(&g, "streamed"), *a = gguf_find_tensor(&g, "after");
        CHECK(t && t->nbytes == (size_t)n * 4, "streamed tensor");
        bool ok = t != NULL;
        for (size_t i = 0; ok && i < t->nbytes; i++)
            ok = ((const uint8_t *)t->data)[i] == (uint8_t)(i * 7 + (i >> 11));
        CHECK(ok, "streamed bytes differ from what the callback produced");
        CHECK(a && memcmp(a->data, small, sizeof small) == 0, "tensor after the streamed one");
        gguf_close(&g);
    }

    /* a failing callback aborts the write, names the tensor, leaves no file */
    fill_state f = {.in_order = true, .fail_at_call = 2};
    w = gguf_writer_new();
    gguf_writer_add_tensor_cb(w, "broken", PG_TYPE_F32, 1, ne, (size_t)n * 4, pattern_fill_, &f);
    CHECK(gguf_writer_write(w, path_("fail.gguf"), &e) == -1, "failing callback must fail the write");
    CHECK(strstr(e.msg, "broken") && strstr(e.msg, "callback failed") && strstr(e.msg, "4194304"), "%s", e.msg);
    CHECK(access(path_("fail.gguf"), F_OK) != 0 && access(path_("fail.gguf.tmp"), F_OK) != 0,
          "partial file left behind");
    gguf_writer_free(w);

    /* size mismatch and a NULL callback are reported by write */
    w = gguf_writer_new();
    gguf_writer_add_tensor_cb(w, "short", PG_TYPE_F32, 1, ne, (size_t)n * 4 - 4, pattern_fill_, &f);
    CHECK(gguf_writer_write(w, path_("bad.gguf"), &e) == -1 && strstr(e.msg, "short"), "%s", e.msg);
    gguf_writer_free(w);
    w = gguf_writer_new();
    gguf_writer_add_tensor_cb(w, "nocb", PG_TYPE_F32, 1, ne, (size_t)n * 4, NULL, NULL);
    CHECK(gguf_writer_write(w, path_("bad.gguf"), &e) == -1 && strstr(e.msg, "nocb"), "%s", e.msg);
    gguf_writer_free(w);
}

/* ---- synthesized models ---- */

static bool finite_logits_(pg_model *m, const char *what) {
    pg_error e = {{0}};
    pg_session *s = pg_session_new(m, 64, 2, &e);
    CHECK(s != NULL, "%s: session: %s", what, e.msg);
    if (!s) return false;
    int32_t toks[5] = {256, 72, 101, 108, 299};
    bool ok = pg_session_eval(s, toks, 5, NULL, &e) == 0;
    CHECK(ok, "%s: eval: %s", what, e.msg);
    int32_t more = 33;
    ok = ok && pg_session_eval(s, &more, 1, NULL, &e) == 0;
    CHECK(ok, "%s: eval 2: %s", what, e.msg);
    bool finite = ok, varied = false;
    for (int i = 0; ok && i < m->hp.vocab; i++) {
        if (!isfinite(s->logits[i])) finite = false;
        if (s->logits[i] != s->logits[0]) varied = true;
    }
    CHECK(finite && varied, "%s: logits finite %d, varied %d", what, finite, varied);
    pg_session_free(s);
    return finite;
}

static void check_model_(const pg_synth_params *p, const char *file) {
    char what[160];
    snprintf(what, sizeof what, "%s %s", p->arch == PG_SYNTH_QWEN3MOE ? "qwen3moe" : "mixtral",
             pg_type_name(p->type));
    pg_error e = {{0}};
    pg_synth_sizes sz;
    CHECK(pg_synth_sizes_of(p, &sz, &e) == 0, "%s: %s", what, e.msg);
    pg_model *m = pg_model_open(file, &e);
    CHECK(m != NULL, "%s: open: %s", what, e.msg);
    if (!m) return;
    const pg_hparams *hp = &m->hp;
    int hd = p->head_dim ? p->head_dim : p->dim / p->n_head;
    CHECK(hp->arch == (p->arch == PG_SYNTH_QWEN3MOE ? PG_ARCH_QWEN3MOE : PG_ARCH_MIXTRAL), "%s: arch %d", what,
          hp->arch);
    CHECK(hp->n_layer == p->n_layer && hp->dim == p->dim && hp->n_head == p->n_head &&
              hp->n_head_kv == p->n_head_kv && hp->head_dim == hd && hp->vocab == p->vocab,
          "%s: shape", what);
    CHECK(hp->n_expert == p->n_expert && hp->n_expert_used == p->n_expert_used &&
              hp->expert_ffn_dim == p->expert_ffn,
          "%s: experts %d/%d/%d", what, hp->n_expert, hp->n_expert_used, hp->expert_ffn_dim);
    CHECK(hp->n_ctx_train == (p->n_ctx ? p->n_ctx : 4096), "%s: ctx %d", what, hp->n_ctx_train);
    CHECK(hp->qk_norm == (p->arch == PG_SYNTH_QWEN3MOE ? PG_QKNORM_HEAD : PG_QKNORM_NONE), "%s: qk norm", what);
    CHECK(!hp->tied_output, "%s: output head should be separate", what);
    CHECK(m->bytes_dense == sz.dense_bytes && m->bytes_experts == sz.expert_bytes,
          "%s: bytes dense %zu vs %llu, experts %zu vs %llu", what, m->bytes_dense,
          (unsigned long long)sz.dense_bytes, m->bytes_experts, (unsigned long long)sz.expert_bytes);
    CHECK(sz.expert_bytes == sz.bytes_per_expert * p->n_expert * p->n_layer, "%s: per expert", what);
    CHECK(m->gguf->n_tensors == (uint64_t)sz.n_tensors, "%s: %llu tensors", what,
          (unsigned long long)m->gguf->n_tensors);
    uint64_t data = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) data += m->gguf->tensors[i].nbytes;
    CHECK(data == sz.data_bytes && m->gguf->size > data, "%s: data bytes %llu vs %llu", what,
          (unsigned long long)data, (unsigned long long)sz.data_bytes);
    CHECK(m->layers[0].experts[0].gate.type == p->type && m->tok_embd.type == p->type &&
              m->layers[0].router.type == PG_TYPE_F32,
          "%s: tensor types", what);
    bool synthetic = false;
    CHECK(gguf_get_bool(m->gguf, "pregate.synthetic", &synthetic) && synthetic, "%s: pregate.synthetic", what);
    char *name = gguf_get_str(m->gguf, "general.name");
    CHECK(name && strstr(name, "synthetic") && strstr(name, "random"), "%s: general.name '%s'", what,
          name ? name : "(none)");
    free(name);
    bool ones = m->output_norm[0] == 1.0f && m->layers[1].ffn_norm[p->dim - 1] == 1.0f &&
                m->layers[0].attn_norm[0] == 1.0f;
    if (p->arch == PG_SYNTH_QWEN3MOE) ones = ones && m->layers[0].q_norm[0] == 1.0f && m->layers[1].k_norm[hd - 1] == 1.0f;
    CHECK(ones, "%s: norm weights must be 1", what);
    finite_logits_(m, what);
    pg_model_free(m);
}

static void test_models(void) {
    pg_synth_arch archs[2] = {PG_SYNTH_QWEN3MOE, PG_SYNTH_MIXTRAL};
    pg_type types[4] = {PG_TYPE_F32, PG_TYPE_F16, PG_TYPE_Q8_0, PG_TYPE_BF16};
    for (int a = 0; a < 2; a++)
        for (int t = 0; t < 4; t++) {
            pg_synth_params p = tiny_(archs[a], types[t], 7);
            if (t == 3) { p.head_dim = 32; p.n_ctx = 1000; } /* head_dim != dim / heads */
            char name[64];
            snprintf(name, sizeof name, "m_%d_%d.gguf", a, t);
            pg_error e = {{0}};
            CHECK(pg_synth_write(&p, path_(name), &e) == 0, "write: %s", e.msg);
            check_model_(&p, path_(name));
        }
}

/* Weights: uniform with std 1/sqrt(row length), but token embeddings with
 * std 1 and attention outputs with a quarter of it (synth.c); F16 and Q8_0 hold exactly
 * the conversion / GGML quantization of the F32 model's floats. The model is
 * large enough that expert tensors span several 4 MiB chunks (Q8_0 blocks
 * split at chunk edges) and the thread pool is used. */
static void test_values(void) {
    pg_synth_params p = {.arch = PG_SYNTH_QWEN3MOE, .n_layer = 1, .dim = 256, .n_expert = 32, .n_expert_used = 4,
                         .expert_ffn = 512, .n_head = 4, .n_head_kv = 2, .vocab = 300, .type = PG_TYPE_F32,
                         .seed = 11, .n_threads = 2};
    pg_error e = {{0}};
    CHECK(pg_synth_write(&p, path_("v32.gguf"), &e) == 0, "%s", e.msg);
    p.type = PG_TYPE_Q8_0;
    CHECK(pg_synth_write(&p, path_("vq8.gguf"), &e) == 0, "%s", e.msg);
    p.type = PG_TYPE_F16;
    p.n_threads = 1; /* thread count must not matter */
    CHECK(pg_synth_write(&p, path_("v16.gguf"), &e) == 0, "%s", e.msg);
    gguf_file g32, gq, g16;
    int r32 = gguf_open(&g32, path_("v32.gguf"), NULL, &e), rq = gguf_open(&gq, path_("vq8.gguf"), NULL, &e),
        r16 = gguf_open(&g16, path_("v16.gguf"), NULL, &e);
    CHECK(r32 == 0 && rq == 0 && r16 == 0, "%s", e.msg);
    if (r32 || rq || r16) goto done;
    static const char *names[] = {"blk.0.ffn_up_exps.weight", "blk.0.ffn_down_exps.weight", "token_embd.weight",
                                  "blk.0.attn_output.weight"};
    for (int k = 0; k < 4; k++) {
        const pg_tensor *a = gguf_find_tensor(&g32, names[k]), *q = gguf_find_tensor(&gq, names[k]),
                        *h = gguf_find_tensor(&g16, names[k]);
        CHECK(a && q && h, "%s missing", names[k]);
        if (!a || !q || !h) continue;
        int64_t n = pg_tensor_nelements(a);
        const float *f = a->data;
        double sum = 0, sq = 0, amax = 0;
        for (int64_t i = 0; i < n; i++) {
            sum += f[i];
            sq += (double)f[i] * f[i];
            if (fabs(f[i]) > amax) amax = fabs(f[i]);
        }
        double mean = sum / n, sd = sqrt(sq / n - mean * mean), want = 1.0 / sqrt((double)a->ne[0]);
        if (strstr(names[k], "token_embd")) want = 1.0;
        if (strstr(names[k], "attn_output")) want *= 0.25;
        CHECK(fabs(sd / want - 1) < 0.02 && fabs(mean) < 0.02 * want && amax <= sqrt(3.0) * want,
              "%s: std %g (want %g), mean %g, max %g", names[k], sd, want, mean, amax);
        bool same16 = true;
        for (int64_t i = 0; i < n && same16; i++) {
            uint16_t x;
            memcpy(&x, (const uint8_t *)h->data + 2 * i, 2);
            same16 = x == pg_f32_to_f16(f[i]);
        }
        CHECK(same16, "%s: F16 is not the conversion of the F32 weights", names[k]);
        bool sameq = q->nbytes == (size_t)n / 32 * sizeof(block_q8_0);
        for (int64_t b = 0; b < n / 32 && sameq; b++) {
            block_q8_0 blk;
            pg_quantize_q8_0_ref(32, f + 32 * b, &blk);
            sameq = memcmp(&blk, (const uint8_t *)q->data + b * sizeof blk, sizeof blk) == 0;
        }
        CHECK(sameq, "%s: Q8_0 is not the GGML quantization of the F32 weights", names[k]);
        if (k < 2) CHECK(a->nbytes > GGUF_WRITER_CHUNK, "%s should span chunks", names[k]);
    }
    const pg_tensor *r = gguf_find_tensor(&gq, "blk.0.ffn_gate_inp.weight");
    CHECK(r && r->type == PG_TYPE_F32, "router must stay F32");
done:
    gguf_close(&g32);
    gguf_close(&gq);
    gguf_close(&g16);
}

/* Random weights must route near-uniformly and independently from token
 * to token, as bench says of them: consecutive random tokens share about
 * k/E of their experts, and every layer uses about E (1 - (1 - k/E)^n) of
 * its experts over the first n tokens. Before the embedding and attention-output
 * scales of synth.c, a layer reused 54% of the previous token's experts. */
static void test_routing(void) {
    for (int a = 0; a < 2; a++) {
        pg_synth_params p = {.arch = a ? PG_SYNTH_MIXTRAL : PG_SYNTH_QWEN3MOE, .n_layer = 4, .dim = 256,
                             .n_expert = 32, .n_expert_used = 4, .expert_ffn = 64, .n_head = 4, .n_head_kv = 2,
                             .vocab = 1000, .type = PG_TYPE_F32, .seed = 5, .n_threads = 2};
        pg_error e = {{0}};
        const char *what = a ? "mixtral" : "qwen3moe";
        CHECK(pg_synth_write(&p, path_("route.gguf"), &e) == 0, "%s: %s", what, e.msg);
        pg_model *m = pg_model_open(path_("route.gguf"), &e);
        CHECK(m != NULL, "%s: %s", what, e.msg);
        if (!m) continue;
        enum { N = 96, N_USED = 16 };
        int32_t tok[N];
        test_rng_state = 0x1234567ull;
        for (int i = 0; i < N; i++) tok[i] = (int32_t)(test_rng_u64() % (uint64_t)p.vocab);
        pg_trace tr;
        pg_trace_init(&tr, p.n_layer, p.n_expert, p.n_expert_used, p.dim, false);
        pg_session *s = pg_session_new(m, N, 2, &e);
        CHECK(s != NULL, "%s", e.msg);
        if (s) {
            s->trace = &tr;
            CHECK(pg_session_eval(s, tok, N, NULL, &e) == 0, "%s: %s", what, e.msg);
            s->trace = NULL;
        }
        const int K = p.n_expert_used, E = p.n_expert;
        double shared = 0, used = 0;
        for (int l = 0; l < p.n_layer; l++) {
            bool seen[32] = {0};
            for (int t = 0; t < N && tr.n_pos >= N; t++) {
                const int16_t *x = tr.experts + ((size_t)t * p.n_layer + l) * K;
                for (int j = 0; j < K; j++) {
                    if (x[j] >= 0 && x[j] < E && t < N_USED) seen[x[j]] = true;
                    if (t == 0) continue;
                    for (int i = 0; i < K; i++) shared += x[j] == x[i - (ptrdiff_t)p.n_layer * K];
                }
            }
            for (int x = 0; x < E; x++) used += seen[x];
        }
        const double reuse = shared / ((double)(N - 1) * K * p.n_layer), k_e = (double)K / E;
        const double used_l = used / p.n_layer, want_used = E * (1 - pow(1 - k_e, N_USED));
        fprintf(stderr, "  %s: %.1f%% of a token's experts were the previous token's (uniform %.1f%%); a layer "
                        "used %.1f of %d experts over %d tokens (uniform %.1f)\n",
                what, 100 * reuse, 100 * k_e, used_l, E, N_USED, want_used);
        /* 1,520 pairs: the uniform share's standard error is under 1 point */
        CHECK(reuse < 1.6 * k_e, "%s: consecutive tokens share %.1f%% of experts (uniform %.1f%%)", what, 100 * reuse,
              100 * k_e);
        CHECK(used_l > 0.9 * want_used, "%s: a layer used %.1f experts (uniform %.1f)", what, used_l, want_used);
        pg_session_free(s);
        pg_trace_free(&tr);
        pg_model_free(m);
    }
}

static void test_reproducible(void) {
    pg_error e = {{0}};
    pg_synth_params p = tiny_(PG_SYNTH_MIXTRAL, PG_TYPE_Q8_0, 42);
    CHECK(pg_synth_write(&p, path_("s1.gguf"), &e) == 0, "%s", e.msg);
    p.n_threads = 1;
    CHECK(pg_synth_write(&p, path_("s2.gguf"), &e) == 0, "%s", e.msg);
    CHECK(files_equal_(path_("s1.gguf"), path_("s2.gguf")), "same seed must give byte-identical files");
    p.seed = 43;
    CHECK(pg_synth_write(&p, path_("s3.gguf"), &e) == 0, "%s", e.msg);
    gguf_file a, b;
    int ra = gguf_open(&a, path_("s1.gguf"), NULL, &e), rb = gguf_open(&b, path_("s3.gguf"), NULL, &e);
    CHECK(ra == 0 && rb == 0, "%s", e.msg);
    if (ra == 0 && rb == 0) {
        int differ = 0, n = 0;
        for (uint64_t i = 0; i < a.n_tensors; i++) {
            const pg_tensor *x = &a.tensors[i], *y = gguf_find_tensor(&b, x->name);
            if (!y || strstr(x->name, "norm")) continue;
            n++;
            differ += x->nbytes == y->nbytes && memcmp(x->data, y->data, x->nbytes) != 0;
        }
        CHECK(n > 0 && differ == n, "different seeds: %d of %d weight tensors differ", differ, n);
        /* different tensors of one file are different streams too */
        const pg_tensor *g = gguf_find_tensor(&a, "blk.0.ffn_gate_exps.weight"),
                        *u = gguf_find_tensor(&a, "blk.0.ffn_up_exps.weight");
        CHECK(g && u && memcmp(g->data, u->data, g->nbytes) != 0, "gate and up must differ");
    }
    gguf_close(&a);
    gguf_close(&b);
}

static void test_bad_params(void) {
    pg_error e = {{0}};
    struct { const char *what, *msg; pg_synth_params p; } cases[8];
    for (int i = 0; i < 8; i++) cases[i].p = tiny_(PG_SYNTH_QWEN3MOE, PG_TYPE_F16, 1);
    cases[0].what = "layers 0"; cases[0].msg = "layers"; cases[0].p.n_layer = 0;
    cases[1].what = "top-k > experts"; cases[1].msg = "top-k"; cases[1].p.n_expert_used = 9;
    cases[2].what = "kv heads"; cases[2].msg = "kv-heads"; cases[2].p.n_head_kv = 3;
    cases[3].what = "vocab 256"; cases[3].msg = "vocab"; cases[3].p.vocab = 256;
    cases[4].what = "Q8_0 ffn 48"; cases[4].msg = "multiples of 32"; cases[4].p.type = PG_TYPE_Q8_0;
    cases[4].p.expert_ffn = 48;
    cases[5].what = "Q4_0"; cases[5].msg = "Q4_0"; cases[5].p.type = PG_TYPE_Q4_0;
    cases[6].what = "odd head dim"; cases[6].msg = "head-dim"; cases[6].p.head_dim = 15;
    cases[7].what = "heads do not divide dim"; cases[7].msg = "divide"; cases[7].p.n_head = 3;
    cases[7].p.n_head_kv = 1;
    for (int i = 0; i < 8; i++) {
        e.msg[0] = 0;
        CHECK(pg_synth_write(&cases[i].p, path_("bad.gguf"), &e) == -1 && strstr(e.msg, cases[i].msg) &&
                  !strchr(e.msg, '\n'),
              "%s: '%s'", cases[i].what, e.msg);
    }
    CHECK(access(path_("bad.gguf"), F_OK) != 0, "nothing may be written for bad parameters");
    CHECK(pg_synth_parse_type("q8_0") == PG_TYPE_Q8_0 && pg_synth_parse_type("BF16") == PG_TYPE_BF16 &&
              pg_synth_parse_type("Q4_K") == -1,
          "type names");
}

static void test_tokenizer(void) {
    pg_error e = {{0}};
    pg_synth_params p = tiny_(PG_SYNTH_QWEN3MOE, PG_TYPE_F32, 1);
    CHECK(pg_synth_write(&p, path_("tok.gguf"), &e) == 0, "%s", e.msg);
    pg_model *m = pg_model_open(path_("tok.gguf"), &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    if (!m->tok) {
        pg_model_free(m);
        TEST_SKIP("the model loaded without a tokenizer (tokenizer not ready?)");
    }
    const pg_tokenizer *t = m->tok;
    CHECK(pg_tokenizer_kind(t) == PG_TOK_BPE && pg_tokenizer_n_vocab(t) == 300, "kind / vocab");
    CHECK(pg_tokenizer_bos(t) == 256 && pg_tokenizer_eos(t) == 256 && !pg_tokenizer_add_bos(t), "bos/eos/add_bos");
    CHECK(pg_tokenizer_is_eog(t, 256), "<|endoftext|> ends generation");
    const char *text = "Hello, world";
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = pg_tokenize(t, text, strlen(text), false, false, &ids, &n, &e);
    CHECK(rc == 0, "%s", e.msg);
    bool bytes = rc == 0 && n == 12;
    for (size_t i = 0; bytes && i < n; i++) bytes = ids[i] == (unsigned char)text[i];
    CHECK(bytes, "\"Hello, world\" should be its 12 bytes, got %zu ids", n);
    free(ids);
    /* every byte round-trips; control tokens are never produced by encoding */
    char all[256];
    for (int i = 0; i < 256; i++) all[i] = (char)i;
    rc = pg_tokenize(t, all, 256, false, false, &ids, &n, &e);
    bool ok = rc == 0 && n == 256;
    for (size_t i = 0; ok && i < n; i++) {
        char b[8];
        ok = ids[i] == (int32_t)i && pg_token_to_bytes(t, ids[i], b, sizeof b) == 1 && (unsigned char)b[0] == i;
    }
    CHECK(ok, "all 256 bytes must map to ids 0..255 and back (rc %d, n %zu)", rc, n);
    free(ids);
    const char *sp = "<|endoftext|><|synth_299|>";
    rc = pg_tokenize(t, sp, strlen(sp), false, false, &ids, &n, &e);
    ok = rc == 0 && n == strlen(sp);
    for (size_t i = 0; ok && i < n; i++) ok = ids[i] < 256;
    CHECK(ok, "special-looking text is plain bytes without parse_special (n %zu)", n);
    free(ids);
    pg_model_free(m);
}

/* The CLI: bad arguments exit 2 with one line; a good run matches the library. */
/* `pregate SUB ARGS`: exit status, and lines written to stderr (cli.err). */
static int run_sub_(const char *bin, const char *sub, const char *args, int *lines) {
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "'%s' %s %s >'%s' 2>'%s'", bin, sub, args, path_("cli.out"), path_("cli.err"));
    int st = system(cmd);
    char *err = NULL;
    size_t n = 0;
    pg_error e;
    *lines = 0;
    if (pg_read_file(path_("cli.err"), &err, &n, &e) == 0) {
        for (size_t i = 0; i < n; i++) *lines += err[i] == '\n';
        free(err);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int run_cli_(const char *bin, const char *args, int *lines) { return run_sub_(bin, "synth", args, lines); }

static bool file_has_(const char *name, const char *needle) {
    char *text = NULL;
    size_t n = 0;
    pg_error e;
    if (pg_read_file(path_(name), &text, &n, &e)) return false;
    bool has = strstr(text, needle) != NULL;
    free(text);
    return has;
}

static void test_cli(void) {
    const char *b = getenv("BUILD");
    char bin[512];
    snprintf(bin, sizeof bin, "%s/pregate", b ? b : "build");
    if (access(bin, X_OK) != 0) TEST_SKIP("%s not built", bin);
    char out[300], args[900];
    snprintf(out, sizeof out, "%s", path_("cli.gguf"));
    static const char *bad[] = {
        "--preset tiny --layers 0",
        "--layers 0 --arch qwen3moe --dim 64 --experts 8 --top-k 2 --expert-ffn 64 --heads 4 --kv-heads 2 "
        "--vocab 300 --type F16 --seed 1",
        "--preset tiny --top-k 9",
        "--preset tiny --kv-heads 3",
        "--preset tiny --type IQ2_XXS",
        "--preset tiny --type Q8_0 --expert-ffn 48",
        "--preset tiny --vocab 256",
        "--preset tiny --arch gpt2",
        "--preset huge",
        "--preset tiny --bogus 1",
        "--preset tiny --seed -1",
        "--preset tiny --layers abc",
        "--preset tiny --head-dim 15",
        "--preset tiny --ctx 0",
        "--arch mixtral --dim 64",
        "--preset tiny --layers",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        snprintf(args, sizeof args, "%s -o '%s'", bad[i], out);
        if (i == sizeof bad / sizeof bad[0] - 1) snprintf(args, sizeof args, "-o '%s' %s", out, bad[i]);
        int lines = 0, rc = run_cli_(bin, args, &lines);
        CHECK(rc == 2 && lines == 1, "pregate synth %s: exit %d, %d lines on stderr", bad[i], rc, lines);
    }
    int lines = 0;
    CHECK(run_cli_(bin, "--preset tiny", &lines) == 2 && lines == 1, "missing -o");
    CHECK(access(out, F_OK) != 0, "nothing may be written for bad arguments");

    snprintf(args, sizeof args, "--preset tiny --arch mixtral --type Q8_0 --seed 5 --layers 3 -o '%s'", out);
    int rc = run_cli_(bin, args, &lines);
    CHECK(rc == 0, "good run: exit %d", rc);
    pg_synth_params p = tiny_(PG_SYNTH_MIXTRAL, PG_TYPE_Q8_0, 5);
    p.n_layer = 3;
    pg_error e = {{0}};
    CHECK(pg_synth_write(&p, path_("lib.gguf"), &e) == 0, "%s", e.msg);
    CHECK(files_equal_(out, path_("lib.gguf")), "the CLI's file differs from the library's");
    char *err = NULL;
    size_t n = 0;
    if (pg_read_file(path_("cli.err"), &err, &n, &e) == 0) {
        CHECK(strstr(err, "dense bytes") && strstr(err, "expert bytes") && strstr(err, "per expert") &&
                  strstr(err, "near-uniform") && strstr(err, "total size"),
              "summary on stderr:\n%s", err);
        free(err);
    }

    /* bench on the synthetic model: random tokens, the routing measured, the paper's on-demand mode;
     * bad flags named; the timed store refused without a link */
    snprintf(args, sizeof args, "-m '%s' --expert-mem 50%% -n 6 --repeat 1 --modes resident,none-serial,none", out);
    rc = run_sub_(bin, "bench", args, &lines);
    CHECK(rc == 0 && file_has_("cli.err", "seeded random tokens") && file_has_("cli.err", "routing while decoding") &&
              file_has_("cli.out", "none-serial") && !file_has_("cli.out", "DIFFER"),
          "pregate bench %s: exit %d", args, rc);
    snprintf(args, sizeof args, "-m '%s' --expert-mem 50%% --decode sometimes", out);
    rc = run_sub_(bin, "bench", args, &lines);
    CHECK(rc == 2 && lines == 1 && file_has_("cli.err", "--decode"), "bench --decode sometimes: exit %d, %d lines", rc,
          lines);
    snprintf(args, sizeof args, "-m '%s' -p hi -n 2 --expert-mem 50%% --store timed", out);
    rc = run_sub_(bin, "run", args, &lines);
    CHECK(rc == 1 && file_has_("cli.err", "--link"), "run --store timed without a link: exit %d", rc);

    /* bench-kernels, small: the decode row with its in-cache rate; bad flags refused */
    rc = run_sub_(bin, "bench-kernels", "-t 1 --mb 1 --cache-mb 1 --reps 1 --types Q4_K --prompt 0", &lines);
    CHECK(rc == 0 && file_has_("cli.out", "in-cache") && file_has_("cli.out", "of-bound") &&
              file_has_("cli.out", "Q4_K "),
          "bench-kernels: exit %d", rc);
    static const char *bad_bk[] = {"--types Q9_9", "--cache-mb -1", "--reps 0", "--bogus"};
    for (size_t i = 0; i < sizeof bad_bk / sizeof bad_bk[0]; i++) {
        rc = run_sub_(bin, "bench-kernels", bad_bk[i], &lines);
        CHECK(rc == 2 && file_has_("cli.err", "usage"), "bench-kernels %s: exit %d", bad_bk[i], rc);
    }
}

/* Quantized types: each matrix has the type `pregate quantize` gives it, and
 * its bytes are the quantization of the F32 model's weights, i.e. synth
 * Q4_K_M == pregate quantize (synth F32) Q4_K_M, tensor by tensor. */
static void test_quantized(void) {
    static const char *targets[] = {"Q4_K_M", "MXFP4_MOE", "Q6_K"};
    pg_synth_params p = tiny_(PG_SYNTH_QWEN3MOE, PG_TYPE_F32, 11);
    p.dim = 256, p.expert_ffn = 192; /* K-quant rows, and 192 for the fallback */
    pg_error e = {{0}};
    CHECK(pg_synth_write(&p, path_("q_f32.gguf"), &e) == 0, "%s", e.msg);
    for (int k = 0; k < 3; k++) {
        pg_quantize_params qp = {.expert_type = -1, .n_threads = 2};
        CHECK(pg_quantize_parse_type(targets[k], &qp, &e) == 0, "%s", e.msg);
        pg_synth_params pq = p;
        pq.quant = &qp;
        pg_synth_sizes sz;
        CHECK(pg_synth_sizes_of(&pq, &sz, &e) == 0, "%s: %s", targets[k], e.msg);
        CHECK(pg_synth_write(&pq, path_("q_synth.gguf"), &e) == 0, "%s: %s", targets[k], e.msg);
        CHECK(pg_quantize_file(path_("q_f32.gguf"), path_("q_requant.gguf"), &qp, &e) == 0, "%s: %s", targets[k], e.msg);
        gguf_file a, b;
        if (gguf_open(&a, path_("q_synth.gguf"), NULL, &e)) { CHECK(0, "%s", e.msg); continue; }
        if (gguf_open(&b, path_("q_requant.gguf"), NULL, &e)) { CHECK(0, "%s", e.msg); gguf_close(&a); continue; }
        CHECK(a.n_tensors == b.n_tensors && a.n_tensors == (uint64_t)sz.n_tensors, "%s: tensor count", targets[k]);
        uint64_t data = 0;
        int n_quant_types = 0;
        for (uint64_t i = 0; i < a.n_tensors && i < b.n_tensors; i++) {
            const pg_tensor *x = &a.tensors[i], *y = &b.tensors[i];
            data += x->nbytes;
            CHECK(!strcmp(x->name, y->name) && x->type == y->type && x->nbytes == y->nbytes &&
                      memcmp(x->data, y->data, x->nbytes) == 0,
                  "%s: tensor %s (%s) differs from pregate quantize's (%s)", targets[k], x->name,
                  pg_type_name(x->type), pg_type_name(y->type));
            n_quant_types += pg_type_info(x->type)->blck > 1;
        }
        CHECK(data == sz.data_bytes, "%s: data %llu vs sizes %llu", targets[k], (unsigned long long)data,
              (unsigned long long)sz.data_bytes);
        CHECK(n_quant_types > 0, "%s: nothing quantized", targets[k]);
        int64_t ft = -1;
        CHECK(gguf_get_int(&a, "general.file_type", &ft) && ft == qp.ftype, "%s: file_type %lld", targets[k], (long long)ft);
        gguf_close(&a);
        gguf_close(&b);
        pg_model *m = pg_model_open(path_("q_synth.gguf"), &e);
        CHECK(m != NULL, "%s: %s", targets[k], e.msg);
        if (m) {
            CHECK(m->bytes_dense == sz.dense_bytes && m->bytes_experts == sz.expert_bytes, "%s: byte counts",
                  targets[k]);
            finite_logits_(m, targets[k]);
            pg_model_free(m);
        }
    }
}

static void cleanup_(void) {
    DIR *d = opendir(dir_);
    if (!d) return;
    struct dirent *de;
    while ((de = readdir(d)))
        if (de->d_name[0] != '.') unlink(path_(de->d_name));
    closedir(d);
    rmdir(dir_);
}

int main(void) {
    snprintf(dir_, sizeof dir_, "/tmp/pg_test_synth_XXXXXX");
    if (!mkdtemp(dir_)) {
        perror("mkdtemp");
        return 1;
    }
    TEST_RUN(test_writer_callback);
    TEST_RUN(test_models);
    TEST_RUN(test_values);
    TEST_RUN(test_routing);
    TEST_RUN(test_reproducible);
    TEST_RUN(test_bad_params);
    TEST_RUN(test_tokenizer);
    TEST_RUN(test_cli);
    TEST_RUN(test_quantized);
    cleanup_();
    return test_summary("test_synth");
}
