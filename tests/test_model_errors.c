/* test_model_errors.c - damaged model files give one clear line, never a
 * crash. Table-driven: each case derives a damaged GGUF from a valid one
 * (the qwen3moe fixture converted), then checks that pg_model_open fails
 * with a message naming the file and the problem, and that
 * `pregate inspect` exits non-zero with exactly one line on stderr.
 * Header-level damage of the GGUF container itself is covered in
 * test_gguf.c; this file covers what the model loader adds on top, plus a
 * sample of container damage through the CLI. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "convert.h"
#include "model.h"
#include "test.h"

static char dir_[256], valid_[300];

typedef enum { EDIT_NONE, EDIT_DROP_TENSOR, EDIT_SHAPE, EDIT_TYPE, EDIT_ARCH, EDIT_KV_DROP, EDIT_KV_BAD,
               EDIT_BAD_UTF8_TOKEN, EDIT_NAN } edit_kind;

/* Rewrites the valid file with one edit applied to tensor/key `target`. */
static int rewrite_(const char *out, edit_kind kind, const char *target) {
    gguf_file g;
    pg_error e;
    if (gguf_open(&g, valid_, NULL, &e)) return -1;
    gguf_writer *w = gguf_writer_new();
    void *nan_copy = NULL; /* EDIT_NAN: the target's bytes with one NaN */
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        bool hit = !strcmp(kv->key, target);
        if (hit && kind == EDIT_KV_DROP) continue;
        if (hit && kind == EDIT_ARCH) { gguf_writer_set_str(w, kv->key, "gpt-17"); continue; }
        if (hit && kind == EDIT_KV_BAD) { gguf_writer_set_u32(w, kv->key, 0); continue; }
        gguf_writer_copy_kv(w, kv);
    }
    if (kind == EDIT_BAD_UTF8_TOKEN) { /* a byte-level vocabulary with one token that is not UTF-8 */
        const char *toks[2] = {"ok", "\xff\xfe"};
        gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
        gguf_writer_set_arr_str(w, target, toks, 2);
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const pg_tensor *t = &g.tensors[i];
        bool hit = !strcmp(t->name, target);
        if (hit && kind == EDIT_DROP_TENSOR) continue;
        int64_t ne[PG_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        pg_type type = t->type;
        size_t nbytes = t->nbytes;
        if (hit && kind == EDIT_SHAPE) { ne[1] = ne[1] / 2; nbytes /= 2; }
        if (hit && kind == EDIT_TYPE) {
            /* reinterpret the same bytes as IQ2_XXS (id 16, 66 bytes per 256):
             * a known type without kernels */
            type = (pg_type)16;
            ne[0] = 256;
            ne[1] = (int64_t)(t->nbytes / 66);
            for (int d = 2; d < PG_MAX_DIMS; d++) ne[d] = 1;
            nbytes = (size_t)ne[1] * 66;
        }
        if (hit && kind == EDIT_NAN && t->type == PG_TYPE_F32) { /* one weight becomes NaN */
            nan_copy = xmalloc(nbytes);
            memcpy(nan_copy, t->data, nbytes);
            ((float *)nan_copy)[nbytes / sizeof(float) / 2] = NAN;
        }
        gguf_writer_add_tensor(w, t->name, type, hit && kind == EDIT_TYPE ? 2 : t->n_dims, ne,
                               hit && nan_copy ? nan_copy : t->data, nbytes);
    }
    int rc = gguf_writer_write(w, out, &e);
    free(nan_copy);
    gguf_writer_free(w);
    gguf_close(&g);
    return rc;
}

static int write_bytes_(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t k = fwrite(p, 1, n, f);
    fclose(f);
    return k == n ? 0 : -1;
}

/* Runs `pregate inspect path`; returns exit status and stderr's line count. */
static int cli_inspect_(const char *path, int *lines, char *first, size_t cap) {
    char cmd[1024], errp[300];
    snprintf(errp, sizeof errp, "%s/stderr.txt", dir_);
    const char *build = getenv("BUILD") ? getenv("BUILD") : "build";
    snprintf(cmd, sizeof cmd, "%s/pregate inspect '%s' >/dev/null 2>'%s'", build, path, errp);
    int st = system(cmd);
    char *text = NULL;
    size_t len = 0;
    pg_error e;
    *lines = 0;
    first[0] = 0;
    if (pg_read_file(errp, &text, &len, &e) == 0) {
        for (size_t i = 0; i < len; i++) *lines += text[i] == '\n';
        snprintf(first, cap, "%s", text);
        free(text);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : 128;
}

typedef struct {
    const char *name;
    edit_kind kind;
    const char *target;
    long truncate_at; /* >= 0: cut the valid file to this many bytes instead */
    const char *expect; /* phrase the error must contain */
} bad_case;

static void test_damaged_models(void) {
    snprintf(dir_, sizeof dir_, "/tmp/pregate-bad-%d", (int)getpid());
    mkdir(dir_, 0700);
    snprintf(valid_, sizeof valid_, "%s/valid.gguf", dir_);
    pg_error e = {{0}};
    pg_model *m = pg_model_open("tests/fixtures/qwen3moe", &e);
    CHECK(m != NULL, "%s", e.msg);
    if (!m) return;
    CHECK(pg_model_write_gguf(m, valid_, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    char *valid = NULL;
    size_t vlen = 0;
    CHECK(pg_read_file(valid_, &valid, &vlen, &e) == 0, "%s", e.msg);
    if (!valid) return;
    /* the file itself must load */
    m = pg_model_open(valid_, &e);
    CHECK(m != NULL, "valid file does not load: %s", e.msg);
    pg_model_free(m);

    const bad_case cases[] = {
        {"missing tensor", EDIT_DROP_TENSOR, "blk.1.attn_k.weight", -1, "missing tensor 'blk.1.attn_k.weight'"},
        {"missing expert tensor", EDIT_DROP_TENSOR, "blk.0.ffn_down_exps.weight", -1, "missing tensor"},
        {"shape mismatch", EDIT_SHAPE, "blk.0.attn_q.weight", -1, "has shape"},
        {"expert shape mismatch", EDIT_SHAPE, "blk.1.ffn_up_exps.weight", -1, "has shape"},
        {"type without kernels", EDIT_TYPE, "blk.0.attn_output.weight", -1, "cannot compute"},
        {"unknown architecture", EDIT_ARCH, "general.architecture", -1, "unsupported architecture 'gpt-17'"},
        {"missing hyperparameter", EDIT_KV_DROP, "qwen3moe.block_count", -1, "missing metadata key 'qwen3moe.block_count'"},
        {"zero heads", EDIT_KV_BAD, "qwen3moe.attention.head_count", -1, "head count"},
        {"zero experts used", EDIT_KV_BAD, "qwen3moe.expert_used_count", -1, "experts per token"},
        {"non-UTF-8 token text", EDIT_BAD_UTF8_TOKEN, "tokenizer.ggml.tokens", -1, "UTF-8"},
        {"truncated header", EDIT_NONE, "", 20, "truncated"},
        {"truncated in metadata", EDIT_NONE, "", 200, ""},
        {"truncated in tensor data", EDIT_NONE, "", -2, "end of file"},
    };
    char path[400], first[600];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        snprintf(path, sizeof path, "%s/bad-%zu.gguf", dir_, i);
        int rc;
        if (c->truncate_at == -2) rc = write_bytes_(path, valid, vlen - 7);
        else if (c->truncate_at >= 0) rc = write_bytes_(path, valid, (size_t)c->truncate_at);
        else rc = rewrite_(path, c->kind, c->target);
        CHECK(rc == 0, "%s: could not write the damaged file", c->name);
        e.msg[0] = 0;
        m = pg_model_open(path, &e);
        CHECK(m == NULL, "%s: a damaged file loaded", c->name);
        pg_model_free(m);
        CHECK(strstr(e.msg, path) != NULL, "%s: message does not name the file: %s", c->name, e.msg);
        CHECK(strstr(e.msg, c->expect) != NULL, "%s: message lacks '%s': %s", c->name, c->expect, e.msg);
        CHECK(strchr(e.msg, '\n') == NULL, "%s: message has a newline", c->name);
        int lines = 0;
        int status = cli_inspect_(path, &lines, first, sizeof first);
        CHECK(status == 1, "%s: pregate inspect exited %d, expected 1", c->name, status);
        CHECK(lines == 1, "%s: pregate inspect printed %d lines on stderr: %s", c->name, lines, first);
        unlink(path);
    }
    /* wrong magic, and a file that is not there */
    memcpy(valid, "GGUX", 4);
    snprintf(path, sizeof path, "%s/bad-magic.gguf", dir_);
    write_bytes_(path, valid, vlen);
    int lines = 0;
    CHECK(cli_inspect_(path, &lines, first, sizeof first) == 1 && lines == 1 && strstr(first, "magic"),
          "wrong magic: %s", first);
    unlink(path);
    snprintf(path, sizeof path, "%s/does-not-exist.gguf", dir_);
    CHECK(cli_inspect_(path, &lines, first, sizeof first) == 1 && lines == 1 && strstr(first, "does-not-exist"),
          "missing file: %s", first);
    free(valid);
    unlink(valid_);
    char errp[300];
    snprintf(errp, sizeof errp, "%s/stderr.txt", dir_);
    unlink(errp);
    rmdir(dir_);
}

/* --check-tensors: a NaN weight loads (reading every weight at open time
 * would cost a pass over the file) but the check names it; clean files pass. */
static void test_check_tensors(void) {
    snprintf(dir_, sizeof dir_, "/tmp/pregate-nan-%d", (int)getpid());
    mkdir(dir_, 0700);
    snprintf(valid_, sizeof valid_, "%s/valid.gguf", dir_);
    pg_error e = {{0}};
    pg_model *m = pg_model_open("tests/fixtures/qwen3moe", &e);
    CHECK(m && pg_model_write_gguf(m, valid_, &e) == 0, "%s", e.msg);
    CHECK(m && pg_model_check_tensors(m, &e) == 0, "clean HF fixture: %s", e.msg);
    pg_model_free(m);
    char path[400];
    snprintf(path, sizeof path, "%s/nan.gguf", dir_);
    CHECK(rewrite_(path, EDIT_NAN, "blk.1.ffn_up_exps.weight") == 0, "could not write the NaN file");
    m = pg_model_open(path, &e);
    CHECK(m != NULL, "%s", e.msg);
    CHECK(m && pg_model_check_tensors(m, &e) != 0 && strstr(e.msg, "blk.1.ffn_up_exps.weight") &&
              strstr(e.msg, "NaN") && strstr(e.msg, path),
          "NaN not reported: %s", e.msg);
    pg_model_free(m);
    if (!access("models/demo-moe.gguf", R_OK)) {
        m = pg_model_open("models/demo-moe.gguf", &e);
        CHECK(m && pg_model_check_tensors(m, &e) == 0, "demo model: %s", e.msg);
        pg_model_free(m);
    }
    unlink(path);
    unlink(valid_);
    rmdir(dir_);
}

static void test_bad_hf_dirs(void) {
    char d[256], p[400];
    snprintf(d, sizeof d, "/tmp/pregate-badhf-%d", (int)getpid());
    mkdir(d, 0700);
    snprintf(p, sizeof p, "%s/config.json", d);
    struct { const char *config; const char *expect; } cases[] = {
        {"{\"model_type\": \"qwen3_moe\", \"hidden_size\": 64", "line"},
        {"[1, 2]", "not a JSON object"},
        {"{\"model_type\": \"bert\"}", "unsupported model_type 'bert'"},
    };
    /* the weights are the qwen3moe fixture's */
    char link[400];
    snprintf(link, sizeof link, "%s/model.safetensors", d);
    char cwd[256];
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    char target[600];
    snprintf(target, sizeof target, "%s/tests/fixtures/qwen3moe/model.safetensors", cwd);
    CHECK(symlink(target, link) == 0, "symlink");
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        write_bytes_(p, cases[i].config, strlen(cases[i].config));
        pg_error e = {{0}};
        pg_model *m = pg_model_open(d, &e);
        CHECK(m == NULL && strstr(e.msg, cases[i].expect) && strstr(e.msg, d), "config %zu: %s", i, e.msg);
        pg_model_free(m);
    }
    unlink(p);
    unlink(link);
    rmdir(d);
}

/* config.json values of the wrong type or out of range, through the entry
 * point the fuzz target uses: each names the key and the directory */
static void test_bad_configs(void) {
    static const char *base = "\"model_type\": \"qwen3_moe\", \"hidden_size\": 64, \"vocab_size\": 512, "
                              "\"num_experts\": 8, \"moe_intermediate_size\": 16";
    struct { const char *rest; const char *expect; } cases[] = {
        {"\"num_hidden_layers\": \"2\", \"num_attention_heads\": 4, \"num_experts_per_tok\": 2",
         "'num_hidden_layers' must be a non-negative integer"},
        {"\"num_hidden_layers\": 2, \"num_experts_per_tok\": 2", "missing 'num_attention_heads'"},
        {"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_key_value_heads\": 3, "
         "\"num_experts_per_tok\": 2", "KV head count 3 does not divide head count 4"},
        {"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts_per_tok\": 9",
         "bad number of experts per token 9 (of 8)"},
        {"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts_per_tok\": 2, "
         "\"rms_norm_eps\": \"small\"", "'rms_norm_eps' must be a number"},
        {"\"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts_per_tok\": 2, "
         "\"mlp_only_layers\": 1", "'mlp_only_layers' must be an array"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char json[1024];
        snprintf(json, sizeof json, "{%s, %s}", base, cases[i].rest);
        pg_hparams hp;
        pg_error e = {{0}};
        CHECK(pg_hparams_from_config(json, "dir", &hp, &e) != 0 && strstr(e.msg, cases[i].expect) &&
                  strncmp(e.msg, "dir", 3) == 0,
              "config %zu: %s", i, e.msg);
    }
    char ok[1024];
    snprintf(ok, sizeof ok, "{%s, \"num_hidden_layers\": 2, \"num_attention_heads\": 4, \"num_experts_per_tok\": 2}", base);
    pg_hparams hp;
    pg_error e = {{0}};
    CHECK(pg_hparams_from_config(ok, "dir", &hp, &e) == 0 && hp.n_layer == 2 && hp.n_expert == 8 &&
              hp.n_head_kv == 4 && hp.head_dim == 16,
          "good config: %s", e.msg);
}

/* gpt-oss: the tensors and keys it adds are required and checked (a GGUF
 * damaged from the converted fixture), and config.json's layer_types and
 * RoPE scaling are refused where pregate cannot follow them. */
static void test_damaged_gptoss(void) {
    snprintf(dir_, sizeof dir_, "/tmp/pregate-badoss-%d", (int)getpid());
    mkdir(dir_, 0700);
    snprintf(valid_, sizeof valid_, "%s/valid.gguf", dir_);
    pg_error e = {{0}};
    pg_model *m = pg_model_open("tests/fixtures/gptoss", &e);
    CHECK(m && pg_model_write_gguf(m, valid_, &e) == 0, "%s", e.msg);
    pg_model_free(m);
    const bad_case cases[] = {
        {"missing sinks", EDIT_DROP_TENSOR, "blk.1.attn_sinks.weight", -1, "missing tensor 'blk.1.attn_sinks.weight'"},
        {"missing router bias", EDIT_DROP_TENSOR, "blk.2.ffn_gate_inp.bias", -1, "missing tensor 'blk.2.ffn_gate_inp.bias'"},
        {"missing expert bias", EDIT_DROP_TENSOR, "blk.0.ffn_up_exps.bias", -1, "missing tensor 'blk.0.ffn_up_exps.bias'"},
        {"expert bias shape", EDIT_SHAPE, "blk.2.ffn_down_exps.bias", -1, "has shape"},
        {"NaN sink", EDIT_NAN, "blk.0.attn_sinks.weight", -1, "non-finite"},
        {"NaN expert bias", EDIT_NAN, "blk.1.ffn_gate_exps.bias", -1, "non-finite"},
        {"YaRN without context", EDIT_KV_DROP, "gpt-oss.rope.scaling.original_context_length", -1,
         "missing metadata key 'gpt-oss.rope.scaling.original_context_length'"},
        {"YaRN factor 0", EDIT_KV_BAD, "gpt-oss.rope.scaling.factor", -1, "YaRN factor"},
    };
    char path[400];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const bad_case *c = &cases[i];
        snprintf(path, sizeof path, "%s/bad-%zu.gguf", dir_, i);
        CHECK(rewrite_(path, c->kind, c->target) == 0, "%s: could not write the damaged file", c->name);
        e.msg[0] = 0;
        m = pg_model_open(path, &e);
        CHECK(m == NULL, "%s: a damaged file loaded", c->name);
        pg_model_free(m);
        CHECK(strstr(e.msg, path) && strstr(e.msg, c->expect), "%s: message lacks '%s': %s", c->name, c->expect,
              e.msg);
        unlink(path);
    }
    unlink(valid_);
    /* config.json: a layer pattern GGUF cannot say, an unknown RoPE scaling */
    char cfg[300], link[300], cwd[256], target[600], *text = NULL;
    size_t len = 0;
    snprintf(cfg, sizeof cfg, "%s/config.json", dir_);
    snprintf(link, sizeof link, "%s/model.safetensors", dir_);
    CHECK(getcwd(cwd, sizeof cwd) != NULL, "getcwd");
    snprintf(target, sizeof target, "%s/tests/fixtures/gptoss/model.safetensors", cwd);
    CHECK(symlink(target, link) == 0, "symlink");
    CHECK(pg_read_file("tests/fixtures/gptoss/config.json", &text, &len, &e) == 0, "%s", e.msg);
    struct { const char *from, *to, *expect; } edits[] = {
        {"\"sliding_attention\",\n    \"full_attention\"", "\"full_attention\",\n    \"sliding_attention\"",
         "periodic pattern"},
        {"\"rope_type\": \"yarn\"", "\"rope_type\": \"longrope\"", "RoPE scaling 'longrope'"},
        {"\"original_max_position_embeddings\": 4096", "\"original_max_position_embeddings\": 0", "YaRN"},
    };
    for (size_t i = 0; text && i < sizeof edits / sizeof *edits; i++) {
        const char *at = strstr(text, edits[i].from);
        CHECK(at != NULL, "edit %zu: '%s' not in the fixture's config.json", i, edits[i].from);
        if (!at) continue;
        char *mod = xmalloc(len + 64);
        size_t pre = (size_t)(at - text);
        memcpy(mod, text, pre);
        strcpy(mod + pre, edits[i].to);
        strcat(mod, at + strlen(edits[i].from));
        write_bytes_(cfg, mod, strlen(mod));
        free(mod);
        m = pg_model_open(dir_, &e);
        CHECK(m == NULL && strstr(e.msg, edits[i].expect), "edit %zu: %s", i, m ? "loaded" : e.msg);
        pg_model_free(m);
    }
    free(text);
    unlink(cfg);
    unlink(link);
    rmdir(dir_);
}

int main(void) {
    TEST_RUN(test_damaged_models);
    TEST_RUN(test_bad_hf_dirs);
    TEST_RUN(test_bad_configs);
    TEST_RUN(test_check_tensors);
    TEST_RUN(test_damaged_gptoss);
    return test_summary("test_model_errors");
}
