/* convert.c - see convert.h */
#include "convert.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- llama2.c ---- */

typedef struct {
    int32_t dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size, seq_len;
} l2c_config;

static int l2c_tokenizer_(gguf_writer *w, const char *path, int vocab, pg_error *e) {
    char *buf;
    size_t len;
    if (pg_read_file(path, &buf, &len, e)) return -1;
    int rc = -1;
    char **tokens = xcalloc((size_t)vocab, sizeof(char *));
    float *scores = xcalloc((size_t)vocab, sizeof(float));
    int32_t *types = xcalloc((size_t)vocab, sizeof(int32_t));
    size_t off = 4;
    if (len < 4) { pg_fail(e, "%s: truncated tokenizer (no header)", path); goto done; }
    for (int i = 0; i < vocab; i++) {
        int32_t n;
        if (len - off < 8) { pg_fail(e, "%s: truncated at token %d", path, i); goto done; }
        memcpy(&scores[i], buf + off, 4);
        memcpy(&n, buf + off + 4, 4);
        off += 8;
        if (n < 0 || (size_t)n > len - off || n > 4096) { pg_fail(e, "%s: bad length %d of token %d", path, n, i); goto done; }
        /* llama2.c stores SentencePiece's U+2581 as a plain space: put it back */
        size_t spaces = 0;
        for (int k = 0; k < n; k++) spaces += buf[off + k] == ' ';
        char *t = xmalloc((size_t)n + 2 * spaces + 1), *p = t;
        for (int k = 0; k < n; k++) {
            if (buf[off + k] == ' ') { memcpy(p, "\xe2\x96\x81", 3); p += 3; }
            else *p++ = buf[off + k];
        }
        *p = 0;
        off += (size_t)n;
        if (!pg_utf8_valid(t, strlen(t))) { free(t); pg_fail(e, "%s: token %d is not valid UTF-8", path, i); goto done; }
        tokens[i] = t;
        unsigned byte;
        char tail;
        types[i] = 1; /* normal */
        if (i == 0) types[i] = 2; /* <unk> */
        else if (i <= 2) types[i] = 3; /* <s>, </s> */
        else if (strlen(t) == 6 && sscanf(t, "<0x%2X>%c", &byte, &tail) == 1) types[i] = 6; /* byte */
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tokens, (uint64_t)vocab);
    gguf_writer_set_arr_f32(w, "tokenizer.ggml.scores", scores, (uint64_t)vocab);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", types, (uint64_t)vocab);
    gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true);
    rc = 0;
done:
    for (int i = 0; i < vocab; i++) free(tokens[i]);
    free(tokens);
    free(scores);
    free(types);
    free(buf);
    return rc;
}

int pg_convert_llama2c(const char *ckpt, const char *tok, const char *out, pg_error *e) {
    int fd = open(ckpt, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pg_fail(e, "%s: cannot open: %s", ckpt, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) || st.st_size < (off_t)sizeof(l2c_config)) {
        close(fd);
        return pg_fail(e, "%s: too small to be a llama2.c checkpoint", ckpt);
    }
    size_t size = (size_t)st.st_size;
    const uint8_t *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    close(fd);
    if (map == MAP_FAILED) return pg_fail(e, "%s: mmap failed: %s", ckpt, strerror(errno));
    l2c_config c;
    memcpy(&c, map, sizeof c);
    bool shared = c.vocab_size > 0;
    int64_t V = shared ? c.vocab_size : -(int64_t)c.vocab_size;
    int rc = -1;
    gguf_writer *w = NULL;
    if (c.dim <= 0 || c.hidden_dim <= 0 || c.n_layers <= 0 || c.n_heads <= 0 || c.n_kv_heads <= 0 ||
        c.seq_len <= 0 || V <= 0 || c.dim % c.n_heads || c.n_heads % c.n_kv_heads || c.dim > 65536 ||
        c.hidden_dim > 1 << 20 || c.n_layers > 1024 || V > 1 << 22 || c.seq_len > 1 << 22) {
        pg_fail(e, "%s: not a llama2.c checkpoint (implausible config)", ckpt);
        goto done;
    }
    int64_t D = c.dim, Fh = c.hidden_dim, L = c.n_layers, hs = D / c.n_heads, kvd = hs * c.n_kv_heads;
    /* element counts, in file order */
    int64_t counts[] = {V * D, L * D, L * D * D, L * kvd * D, L * kvd * D, L * D * D, L * D,
                        L * Fh * D, L * D * Fh, L * Fh * D, D, c.seq_len * hs / 2, c.seq_len * hs / 2};
    size_t need = sizeof c;
    for (size_t i = 0; i < sizeof counts / sizeof counts[0]; i++) need += (size_t)counts[i] * 4;
    if (!shared) need += (size_t)(V * D) * 4;
    if (size != need) {
        pg_fail(e, "%s: size %zu does not match the config (expected %zu bytes)", ckpt, size, need);
        goto done;
    }
    w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "llama");
    gguf_writer_set_str(w, "general.name", "llama2.c checkpoint");
    gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c.seq_len);
    gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)D);
    gguf_writer_set_u32(w, "llama.block_count", (uint32_t)L);
    gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)Fh);
    gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c.n_heads);
    gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c.n_kv_heads);
    gguf_writer_set_u32(w, "llama.rope.dimension_count", (uint32_t)hs);
    gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", 1e-5f);
    gguf_writer_set_f32(w, "llama.rope.freq_base", 10000.0f);
    if (l2c_tokenizer_(w, tok, (int)V, e)) goto done;
    const float *p = (const float *)(map + sizeof c);
    const float *ptr[13];
    for (int i = 0; i < 13; i++) { ptr[i] = p; p += counts[i]; }
    const float *wcls = shared ? ptr[0] : p;
    char name[96];
#define ADD2(nm, data, rows, cols) do { int64_t ne_[2] = {(cols), (rows)}; \
        gguf_writer_add_tensor(w, nm, PG_TYPE_F32, 2, ne_, data, (size_t)(rows) * (cols) * 4); } while (0)
#define ADD1(nm, data, n) do { int64_t ne_[1] = {(n)}; \
        gguf_writer_add_tensor(w, nm, PG_TYPE_F32, 1, ne_, data, (size_t)(n) * 4); } while (0)
    ADD2("token_embd.weight", ptr[0], V, D);
    ADD1("output_norm.weight", ptr[10], D);
    if (!shared) ADD2("output.weight", wcls, V, D);
    for (int64_t l = 0; l < L; l++) {
        snprintf(name, sizeof name, "blk.%lld.attn_norm.weight", (long long)l); ADD1(name, ptr[1] + l * D, D);
        snprintf(name, sizeof name, "blk.%lld.attn_q.weight", (long long)l); ADD2(name, ptr[2] + l * D * D, D, D);
        snprintf(name, sizeof name, "blk.%lld.attn_k.weight", (long long)l); ADD2(name, ptr[3] + l * kvd * D, kvd, D);
        snprintf(name, sizeof name, "blk.%lld.attn_v.weight", (long long)l); ADD2(name, ptr[4] + l * kvd * D, kvd, D);
        snprintf(name, sizeof name, "blk.%lld.attn_output.weight", (long long)l); ADD2(name, ptr[5] + l * D * D, D, D);
        snprintf(name, sizeof name, "blk.%lld.ffn_norm.weight", (long long)l); ADD1(name, ptr[6] + l * D, D);
        snprintf(name, sizeof name, "blk.%lld.ffn_gate.weight", (long long)l); ADD2(name, ptr[7] + l * Fh * D, Fh, D);
        snprintf(name, sizeof name, "blk.%lld.ffn_down.weight", (long long)l); ADD2(name, ptr[8] + l * D * Fh, D, Fh);
        snprintf(name, sizeof name, "blk.%lld.ffn_up.weight", (long long)l); ADD2(name, ptr[9] + l * Fh * D, Fh, D);
    }
#undef ADD1
#undef ADD2
    rc = gguf_writer_write(w, out, e);
done:
    gguf_writer_free(w);
    munmap((void *)map, size);
    return rc;
}

/* ---- any loaded model -> GGUF ---- */

typedef struct {
    gguf_writer *w;
    void **bufs;
    int n_bufs;
} writer_ctx;

static void *keep_(writer_ctx *c, size_t n) {
    c->bufs = xrealloc(c->bufs, (size_t)(c->n_bufs + 1) * sizeof(void *));
    return c->bufs[c->n_bufs++] = xmalloc(n);
}

/* Writes the file and frees the writer and the buffers it kept. */
static int finish_(writer_ctx *c, const char *out, pg_error *e) {
    int rc = gguf_writer_write(c->w, out, e);
    gguf_writer_free(c->w);
    for (int i = 0; i < c->n_bufs; i++) free(c->bufs[i]);
    free(c->bufs);
    return rc;
}

static void add_vec_(writer_ctx *c, const char *name, const float *v, int n) {
    if (!v) return;
    int64_t ne[1] = {n};
    gguf_writer_add_tensor(c->w, name, PG_TYPE_F32, 1, ne, v, (size_t)n * 4);
}

/* rows of W, optionally permuted from rotate_half to adjacent-pair RoPE order */
static void add_mat_(writer_ctx *c, const char *name, const pg_mat *W, int permute_heads) {
    if (!W->data) return;
    int64_t ne[2] = {W->cols, W->rows};
    size_t n = W->row_bytes * (size_t)W->rows;
    if (!permute_heads) {
        gguf_writer_add_tensor(c->w, name, W->type, 2, ne, W->data, n);
        return;
    }
    uint8_t *dst = keep_(c, n);
    int hd = W->rows / permute_heads, half = hd / 2;
    for (int h = 0; h < permute_heads; h++)
        for (int i = 0; i < half; i++)
            for (int j = 0; j < 2; j++)
                memcpy(dst + W->row_bytes * (size_t)(h * hd + 2 * i + j),
                       (const uint8_t *)W->data + W->row_bytes * (size_t)(h * hd + j * half + i), W->row_bytes);
    gguf_writer_add_tensor(c->w, name, W->type, 2, ne, dst, n);
}

static void add_experts_(writer_ctx *c, const char *name, const pg_layer *Lr, int E, int which) {
    const pg_mat *m0 = which == 0 ? &Lr->experts[0].gate : which == 1 ? &Lr->experts[0].up : &Lr->experts[0].down;
    size_t one = m0->row_bytes * (size_t)m0->rows;
    uint8_t *dst = keep_(c, one * (size_t)E);
    for (int e = 0; e < E; e++) {
        const pg_mat *m = which == 0 ? &Lr->experts[e].gate : which == 1 ? &Lr->experts[e].up : &Lr->experts[e].down;
        memcpy(dst + one * (size_t)e, m->data, one);
    }
    int64_t ne[3] = {m0->cols, m0->rows, E};
    gguf_writer_add_tensor(c->w, name, m0->type, 3, ne, dst, one * (size_t)E);
}

/* deepseek2 keys as llama.cpp's converter writes them (replacing the
 * generic ones of the same name): key/value_length are the latent view. */
static void mla_keys_(gguf_writer *w, const pg_model *m, const char *a) {
    const pg_hparams *hp = &m->hp;
    char key[128];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, a), key)
    int lead = 0;
    while (lead < hp->n_layer && !m->layers[lead].is_moe) lead++;
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), 1);
    gguf_writer_set_u32(w, KEY("attention.kv_lora_rank"), (uint32_t)hp->kv_lora_rank);
    if (hp->q_lora_rank) gguf_writer_set_u32(w, KEY("attention.q_lora_rank"), (uint32_t)hp->q_lora_rank);
    gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)(hp->kv_lora_rank + hp->n_rot));
    gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)hp->kv_lora_rank);
    gguf_writer_set_u32(w, KEY("attention.key_length_mla"), (uint32_t)hp->head_dim);
    gguf_writer_set_u32(w, KEY("attention.value_length_mla"), (uint32_t)hp->v_head_dim);
    gguf_writer_set_u32(w, KEY("leading_dense_block_count"), (uint32_t)lead);
    gguf_writer_set_u32(w, KEY("vocab_size"), (uint32_t)hp->vocab);
    if (hp->n_expert) {
        gguf_writer_set_u32(w, KEY("expert_shared_count"), (uint32_t)(hp->shared_ffn_dim / hp->expert_ffn_dim));
        gguf_writer_set_f32(w, KEY("expert_weights_scale"), hp->expert_weights_scale > 0 ? hp->expert_weights_scale : 1.0f);
        gguf_writer_set_u32(w, KEY("expert_gating_func"), hp->gating == PG_GATING_SIGMOID_TOPK ? 2 : 1);
        if (hp->expert_group_rule != PG_GROUP_NONE) {
            gguf_writer_set_u32(w, KEY("expert_group_count"), (uint32_t)hp->n_expert_group);
            gguf_writer_set_u32(w, KEY("expert_group_used_count"), (uint32_t)hp->n_expert_group_used);
        }
    }
#undef KEY
}

/* expert biases of a layer as one [n, E] tensor (llama.cpp's ffn_*_exps.bias) */
static void add_expert_bias_(writer_ctx *c, const char *name, const pg_layer *Lr, int E, int which, int n) {
    const float *b0 = which == 0 ? Lr->experts[0].b_gate : which == 1 ? Lr->experts[0].b_up : Lr->experts[0].b_down;
    if (!b0) return;
    float *dst = keep_(c, (size_t)E * n * sizeof(float));
    for (int e = 0; e < E; e++) {
        const float *b = which == 0 ? Lr->experts[e].b_gate : which == 1 ? Lr->experts[e].b_up : Lr->experts[e].b_down;
        memcpy(dst + (size_t)e * n, b, (size_t)n * sizeof(float));
    }
    int64_t ne[2] = {n, E};
    gguf_writer_add_tensor(c->w, name, PG_TYPE_F32, 2, ne, dst, (size_t)E * n * sizeof(float));
}

/* YaRN (llama.cpp's keys; model.c reads them back). llama.cpp implies the
 * cos/sin factor (1 with DeepSeek's yarn_log_multiplier, mscale(factor, 1)
 * without): yarn_attn_factor states a model's own as a multiple of that,
 * and the pregate key yarn_truncate = false a ramp that is not truncated
 * (transformers' gpt-oss). */
static void yarn_keys_(gguf_writer *w, const char *a, const pg_yarn *y) {
    char key[128];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, a), key)
    gguf_writer_set_str(w, KEY("rope.scaling.type"), "yarn");
    gguf_writer_set_f32(w, KEY("rope.scaling.factor"), y->factor);
    gguf_writer_set_u32(w, KEY("rope.scaling.original_context_length"), (uint32_t)y->orig_ctx);
    gguf_writer_set_f32(w, KEY("rope.scaling.yarn_beta_fast"), y->beta_fast);
    gguf_writer_set_f32(w, KEY("rope.scaling.yarn_beta_slow"), y->beta_slow);
    if (y->mscale_all_dim != 0) /* llama.cpp's converter stores 0.1 * mscale_all_dim */
        gguf_writer_set_f32(w, KEY("rope.scaling.yarn_log_multiplier"), 0.1f * y->mscale_all_dim);
    float implied = y->mscale_all_dim != 0 ? 1.0f : pg_yarn_mscale(y->factor, 1.0f);
    if (y->attn_factor != implied) gguf_writer_set_f32(w, KEY("rope.scaling.yarn_attn_factor"), y->attn_factor / implied);
    if (!y->truncate) gguf_writer_set_bool(w, KEY("rope.scaling.yarn_truncate"), false);
#undef KEY
}

/* gpt-oss's keys: the sliding window (llama.cpp's names); swiglu_alpha and
 * swiglu_limit are pregate's, written only where the model differs from
 * what llama.cpp assumes */
static void gptoss_keys_(gguf_writer *w, const char *a, const pg_hparams *hp) {
    char key[128];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, a), key)
    if (hp->n_swa > 0) {
        gguf_writer_set_u32(w, KEY("attention.sliding_window"), (uint32_t)hp->n_swa);
        if (hp->swa_period != 2) gguf_writer_set_u32(w, KEY("attention.sliding_window_pattern"), (uint32_t)hp->swa_period);
    }
    if (hp->swiglu_limit > 0 && (hp->swiglu_alpha != 1.702f || hp->swiglu_limit != 7.0f)) {
        gguf_writer_set_f32(w, KEY("swiglu_alpha"), hp->swiglu_alpha);
        gguf_writer_set_f32(w, KEY("swiglu_limit"), hp->swiglu_limit);
    }
#undef KEY
}

/* One head-stacked matrix as a 3-D tensor [cols, rows/H, H]. */
static void add_heads_(writer_ctx *c, const char *name, const pg_mat *W, int H) {
    int64_t ne[3] = {W->cols, W->rows / H, H};
    gguf_writer_add_tensor(c->w, name, W->type, 3, ne, W->data, W->row_bytes * (size_t)W->rows);
}

/* The MLA tensors of layer l, split k_b/v_b as llama.cpp's converter writes them. */
static void add_mla_layer_(writer_ctx *c, const pg_model *m, int l) {
    const pg_hparams *hp = &m->hp;
    const pg_layer *L = &m->layers[l];
    char name[128];
#define N(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
    add_mat_(c, N("attn_q_a.weight"), &L->wq_a, 0);
    add_vec_(c, N("attn_q_a_norm.weight"), L->q_a_norm, hp->q_lora_rank);
    add_mat_(c, N("attn_q_b.weight"), &L->wq_b, 0);
    add_mat_(c, N("attn_kv_a_mqa.weight"), &L->wkv_a, 0);
    add_vec_(c, N("attn_kv_a_norm.weight"), L->kv_a_norm, hp->kv_lora_rank);
    add_heads_(c, N("attn_k_b.weight"), &L->wk_b, hp->n_head);
    add_heads_(c, N("attn_v_b.weight"), &L->wv_b, hp->n_head);
    if (L->exp_probs_b) add_vec_(c, N("exp_probs_b.bias"), L->exp_probs_b, hp->n_expert);
#undef N
}

/* Encoder-decoder (Switch): our own "switch" layout, in llama.cpp's "t5"
 * names (model.c documents it next to the loader). */
static int write_switch_gguf_(const pg_model *m, const char *out, pg_error *e) {
    const pg_hparams *hp = &m->hp;
    writer_ctx c = {.w = gguf_writer_new()};
    gguf_writer *w = c.w;
    int n_enc = hp->n_enc_layer;
    char name[128];
    gguf_writer_set_str(w, "general.architecture", "switch");
    gguf_writer_set_str(w, "general.name", "switch");
    gguf_writer_set_u32(w, "switch.block_count", (uint32_t)n_enc);
    gguf_writer_set_u32(w, "switch.decoder_block_count", (uint32_t)(hp->n_layer - n_enc));
    gguf_writer_set_u32(w, "switch.context_length", (uint32_t)hp->n_ctx_train);
    gguf_writer_set_u32(w, "switch.embedding_length", (uint32_t)hp->dim);
    gguf_writer_set_u32(w, "switch.feed_forward_length", (uint32_t)hp->ffn_dim);
    gguf_writer_set_u32(w, "switch.attention.head_count", (uint32_t)hp->n_head);
    gguf_writer_set_u32(w, "switch.attention.head_count_kv", (uint32_t)hp->n_head);
    gguf_writer_set_u32(w, "switch.attention.key_length", (uint32_t)hp->head_dim);
    gguf_writer_set_u32(w, "switch.attention.value_length", (uint32_t)hp->head_dim);
    gguf_writer_set_f32(w, "switch.attention.layer_norm_rms_epsilon", hp->norm_eps);
    gguf_writer_set_u32(w, "switch.attention.relative_buckets_count", (uint32_t)hp->rel_buckets);
    gguf_writer_set_u32(w, "switch.attention.relative_max_distance", (uint32_t)hp->rel_max_distance);
    gguf_writer_set_u32(w, "switch.decoder_start_token_id", (uint32_t)hp->dec_start_token);
    if (hp->n_expert) {
        gguf_writer_set_u32(w, "switch.expert_count", (uint32_t)hp->n_expert);
        gguf_writer_set_u32(w, "switch.expert_used_count", (uint32_t)hp->n_expert_used);
        gguf_writer_set_u32(w, "switch.expert_feed_forward_length", (uint32_t)hp->expert_ffn_dim);
    }
    if (m->gguf)
        for (uint64_t i = 0; i < m->gguf->n_kv; i++)
            if (strncmp(m->gguf->kv[i].key, "tokenizer.", 10) == 0) gguf_writer_copy_kv(w, &m->gguf->kv[i]);
    if (!m->gguf && hp->dec_eos_token >= 0)
        gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", (uint32_t)hp->dec_eos_token);
    add_mat_(&c, "token_embd.weight", &m->tok_embd, 0);
    if (!hp->tied_output) add_mat_(&c, "output.weight", &m->output, 0);
    add_vec_(&c, "enc.output_norm.weight", m->enc_output_norm, hp->dim);
    add_vec_(&c, "dec.output_norm.weight", m->output_norm, hp->dim);
    for (int l = 0; l < hp->n_layer; l++) {
        const pg_layer *L = &m->layers[l];
        const char *st = l < n_enc ? "enc" : "dec";
        int b = l < n_enc ? l : l - n_enc;
#define N(x) (snprintf(name, sizeof name, "%s.blk.%d." x, st, b), name)
        add_vec_(&c, N("attn_norm.weight"), L->attn_norm, hp->dim);
        add_mat_(&c, N("attn_q.weight"), &L->wq, 0);
        add_mat_(&c, N("attn_k.weight"), &L->wk, 0);
        add_mat_(&c, N("attn_v.weight"), &L->wv, 0);
        add_mat_(&c, N("attn_o.weight"), &L->wo, 0);
        if (L->rel_bias) {
            int64_t ne[2] = {hp->n_head, hp->rel_buckets};
            gguf_writer_add_tensor(w, N("attn_rel_b.weight"), PG_TYPE_F32, 2, ne, L->rel_bias,
                                   (size_t)hp->n_head * hp->rel_buckets * 4);
        }
        if (l >= n_enc) {
            add_vec_(&c, N("cross_attn_norm.weight"), L->cross_norm, hp->dim);
            add_mat_(&c, N("cross_attn_q.weight"), &L->cq, 0);
            add_mat_(&c, N("cross_attn_k.weight"), &L->ck, 0);
            add_mat_(&c, N("cross_attn_v.weight"), &L->cv, 0);
            add_mat_(&c, N("cross_attn_o.weight"), &L->co, 0);
        }
        add_vec_(&c, N("ffn_norm.weight"), L->ffn_norm, hp->dim);
        if (!L->is_moe) {
            add_mat_(&c, N("ffn_up.weight"), &L->ffn_up, 0);
            add_mat_(&c, N("ffn_down.weight"), &L->ffn_down, 0);
        } else {
            add_mat_(&c, N("ffn_gate_inp.weight"), &L->router, 0);
            add_experts_(&c, N("ffn_up_exps.weight"), L, hp->n_expert, 1);
            add_experts_(&c, N("ffn_down_exps.weight"), L, hp->n_expert, 2);
        }
#undef N
    }
    return finish_(&c, out, e);
}

int pg_model_write_gguf(const pg_model *m, const char *out, pg_error *e) {
    const pg_hparams *hp = &m->hp;
    if (hp->arch == PG_ARCH_SWITCH) return write_switch_gguf_(m, out, e);
    const pg_arch_info *ai = pg_arch_get(hp->arch);
    writer_ctx c = {.w = gguf_writer_new()};
    gguf_writer *w = c.w;
    const char *a = ai->gguf_arch;
    char key[128], name[128];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, a), key)
    gguf_writer_set_str(w, "general.architecture", a);
    gguf_writer_set_str(w, "general.name", ai->name);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)hp->n_layer);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)hp->n_ctx_train);
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)hp->dim);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)(hp->ffn_dim ? hp->ffn_dim : hp->expert_ffn_dim));
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)hp->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)hp->n_head_kv);
    gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)hp->head_dim);
    gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)hp->head_dim);
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hp->n_rot);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), hp->rope_theta);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), hp->norm_eps);
    if (hp->clip_qkv > 0) gguf_writer_set_f32(w, KEY("attention.clamp_kqv"), hp->clip_qkv);
    if (hp->n_expert) {
        gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)hp->n_expert);
        gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)hp->n_expert_used);
        gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)hp->expert_ffn_dim);
        gguf_writer_set_bool(w, KEY("expert_weights_norm"), hp->norm_topk);
        if (hp->expert_pregated) gguf_writer_set_bool(w, KEY("expert_pregated"), true);
        if (hp->shared_ffn_dim)
            gguf_writer_set_u32(w, KEY("expert_shared_feed_forward_length"), (uint32_t)hp->shared_ffn_dim);
    }
#undef KEY
    if (hp->mla) {
        if (hp->rope_neox) { /* GGUF deepseek2 rotates adjacent pairs; this would need the rope rows permuted */
            gguf_writer_free(w);
            return pg_fail(e, "%s: writing an MLA model with rotate_half RoPE (rope_interleave=false) is not supported",
                           m->path);
        }
        mla_keys_(w, m, a);
    }
    if (hp->arch == PG_ARCH_GPTOSS) gptoss_keys_(w, a, hp);
    if (hp->yarn.factor > 0) yarn_keys_(w, a, &hp->yarn);
    if (m->gguf) /* carry the tokenizer over */
        for (uint64_t i = 0; i < m->gguf->n_kv; i++)
            if (strncmp(m->gguf->kv[i].key, "tokenizer.", 10) == 0) gguf_writer_copy_kv(w, &m->gguf->kv[i]);
    /* a GGUF llama keeps Q/K rows in adjacent-pair RoPE order */
    bool permute = hp->rope_neox && !ai->rope_neox_gguf;
    add_mat_(&c, "token_embd.weight", &m->tok_embd, 0);
    add_vec_(&c, "output_norm.weight", m->output_norm, hp->dim);
    if (!hp->tied_output) add_mat_(&c, "output.weight", &m->output, 0);
    for (int l = 0; l < hp->n_layer; l++) {
        const pg_layer *L = &m->layers[l];
        int qn = hp->qk_norm == PG_QKNORM_HEAD ? hp->head_dim : hp->n_head * hp->head_dim;
        int kn = hp->qk_norm == PG_QKNORM_HEAD ? hp->head_dim : hp->n_head_kv * hp->head_dim;
#define N(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
        add_vec_(&c, N("attn_norm.weight"), L->attn_norm, hp->dim);
        add_mat_(&c, N("attn_q.weight"), &L->wq, permute ? hp->n_head : 0);
        add_mat_(&c, N("attn_k.weight"), &L->wk, permute ? hp->n_head_kv : 0);
        add_mat_(&c, N("attn_v.weight"), &L->wv, 0);
        add_mat_(&c, N("attn_output.weight"), &L->wo, 0);
        add_vec_(&c, N("attn_q.bias"), L->bq, hp->n_head * hp->head_dim);
        add_vec_(&c, N("attn_k.bias"), L->bk, hp->n_head_kv * hp->head_dim);
        add_vec_(&c, N("attn_v.bias"), L->bv, hp->n_head_kv * hp->head_dim);
        add_vec_(&c, N("attn_q_norm.weight"), L->q_norm, qn);
        add_vec_(&c, N("attn_k_norm.weight"), L->k_norm, kn);
        add_vec_(&c, hp->arch == PG_ARCH_GPTOSS ? N("post_attention_norm.weight") : N("ffn_norm.weight"), L->ffn_norm,
                 hp->dim);
        if (hp->mla) add_mla_layer_(&c, m, l);
        add_vec_(&c, N("attn_output.bias"), L->bo, hp->dim);
        add_vec_(&c, N("attn_sinks.weight"), L->sinks, hp->n_head);
        if (!L->is_moe) {
            add_mat_(&c, N("ffn_gate.weight"), &L->ffn_gate, 0);
            add_mat_(&c, N("ffn_up.weight"), &L->ffn_up, 0);
            add_mat_(&c, N("ffn_down.weight"), &L->ffn_down, 0);
            continue;
        }
        add_mat_(&c, N("ffn_gate_inp.weight"), &L->router, 0);
        add_experts_(&c, N("ffn_gate_exps.weight"), L, hp->n_expert, 0);
        add_experts_(&c, N("ffn_up_exps.weight"), L, hp->n_expert, 1);
        add_experts_(&c, N("ffn_down_exps.weight"), L, hp->n_expert, 2);
        add_vec_(&c, N("ffn_gate_inp.bias"), L->router_b, hp->n_expert);
        add_expert_bias_(&c, N("ffn_gate_exps.bias"), L, hp->n_expert, 0, hp->expert_ffn_dim);
        add_expert_bias_(&c, N("ffn_up_exps.bias"), L, hp->n_expert, 1, hp->expert_ffn_dim);
        add_expert_bias_(&c, N("ffn_down_exps.bias"), L, hp->n_expert, 2, hp->dim);
        if (L->has_shared) {
            add_mat_(&c, N("ffn_gate_shexp.weight"), &L->shared.gate, 0);
            add_mat_(&c, N("ffn_up_shexp.weight"), &L->shared.up, 0);
            add_mat_(&c, N("ffn_down_shexp.weight"), &L->shared.down, 0);
            if (L->shared_gate.data) { /* llama.cpp stores it as a vector */
                int64_t ne[1] = {hp->dim};
                gguf_writer_add_tensor(w, N("ffn_gate_inp_shexp.weight"), L->shared_gate.type, 1, ne,
                                       L->shared_gate.data, L->shared_gate.row_bytes);
            }
        }
#undef N
    }
    return finish_(&c, out, e);
}
