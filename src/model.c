/* model.c - the architecture table, hyperparameters from GGUF metadata or
 * config.json, and the binding of tensors to pg_model's weight slots.
 *
 * Binding names every weight by a kind (W_*) and a layer; each file format
 * has one table that spells that kind's tensor name. Shapes are checked
 * against the hyperparameters before anything points at the data.
 */
#include "model.h"

#include "kernels/quants.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static const pg_arch_info archs_[PG_ARCH_COUNT] = {
    [PG_ARCH_LLAMA] = {PG_ARCH_LLAMA, "llama", "llama", "llama", PG_QKNORM_NONE,
                       PG_GATING_SOFTMAX_TOPK, false, false, false, false},
    [PG_ARCH_MIXTRAL] = {PG_ARCH_MIXTRAL, "mixtral", "llama", "mixtral", PG_QKNORM_NONE,
                         PG_GATING_TOPK_SOFTMAX, true, false, true, false},
    [PG_ARCH_QWEN2MOE] = {PG_ARCH_QWEN2MOE, "qwen2moe", "qwen2moe", "qwen2_moe", PG_QKNORM_NONE,
                          PG_GATING_SOFTMAX_TOPK, false, true, true, true},
    [PG_ARCH_QWEN3MOE] = {PG_ARCH_QWEN3MOE, "qwen3moe", "qwen3moe", "qwen3_moe", PG_QKNORM_HEAD,
                          PG_GATING_SOFTMAX_TOPK, true, true, true, false},
    [PG_ARCH_OLMOE] = {PG_ARCH_OLMOE, "olmoe", "olmoe", "olmoe", PG_QKNORM_FULL,
                       PG_GATING_SOFTMAX_TOPK, false, true, true, false},
    /* DeepSeek-V2/V3 (and R1, Kimi-K2): MLA, rope part in adjacent pairs in
     * both formats; the routing rule comes from the file (router.h) */
    [PG_ARCH_DEEPSEEK2] = {PG_ARCH_DEEPSEEK2, "deepseek2", "deepseek2", "deepseek_v2", PG_QKNORM_NONE,
                           PG_GATING_SOFTMAX_TOPK, false, false, true, true, "deepseek_v3"},
    /* top-1 of the softmax over all experts, weighted by its probability */
    [PG_ARCH_SWITCH] = {PG_ARCH_SWITCH, "switch", "switch", "switch_transformers", PG_QKNORM_NONE,
                        PG_GATING_SOFTMAX_TOPK, false, false, true, false},
    /* routing: top-k of (logits + router bias), softmax over the k */
    [PG_ARCH_GPTOSS] = {PG_ARCH_GPTOSS, "gpt-oss", "gpt-oss", "gpt_oss", PG_QKNORM_NONE,
                        PG_GATING_TOPK_SOFTMAX, false, true, true, false},
};

const pg_arch_info *pg_arch_get(pg_arch a) {
    return (a >= 0 && a < PG_ARCH_COUNT) ? &archs_[a] : NULL;
}

pg_route_cfg pg_hparams_route(const pg_hparams *hp) {
    pg_route_cfg c = {hp->gating, hp->norm_topk, hp->expert_group_rule, hp->n_expert_group, hp->n_expert_group_used,
                      hp->expert_weights_scale > 0 ? hp->expert_weights_scale : 1.0f};
    return c;
}

const pg_arch_info *pg_arch_by_hf_type(const char *t) {
    for (int i = 0; i < PG_ARCH_COUNT; i++)
        if (strcmp(archs_[i].hf_type, t) == 0 || (archs_[i].hf_type_alt && strcmp(archs_[i].hf_type_alt, t) == 0))
            return &archs_[i];
    return NULL;
}

/* ---- weight kinds and their names in each format ---- */

typedef enum {
    W_TOK_EMBD, W_OUTPUT_NORM, W_OUTPUT,
    W_ATTN_NORM, W_Q, W_K, W_V, W_O, W_BQ, W_BK, W_BV, W_QNORM, W_KNORM,
    W_FFN_NORM, W_FFN_GATE, W_FFN_UP, W_FFN_DOWN,
    W_ROUTER, W_SH_GATE, W_SH_UP, W_SH_DOWN, W_SH_GATE_INP,
    W_Q_A, W_Q_A_NORM, W_Q_B, W_KV_A, W_KV_A_NORM, W_KV_B, W_K_B, W_V_B, W_EXP_PROBS_B,
    W_BO, W_SINKS, W_ROUTER_B,
    W_COUNT
} wkind;

static const char *gguf_names_[W_COUNT] = {
    "token_embd.weight", "output_norm.weight", "output.weight",
    "blk.%d.attn_norm.weight", "blk.%d.attn_q.weight", "blk.%d.attn_k.weight",
    "blk.%d.attn_v.weight", "blk.%d.attn_output.weight", "blk.%d.attn_q.bias",
    "blk.%d.attn_k.bias", "blk.%d.attn_v.bias", "blk.%d.attn_q_norm.weight",
    "blk.%d.attn_k_norm.weight", "blk.%d.ffn_norm.weight", "blk.%d.ffn_gate.weight",
    "blk.%d.ffn_up.weight", "blk.%d.ffn_down.weight", "blk.%d.ffn_gate_inp.weight",
    "blk.%d.ffn_gate_shexp.weight", "blk.%d.ffn_up_shexp.weight", "blk.%d.ffn_down_shexp.weight",
    "blk.%d.ffn_gate_inp_shexp.weight",
    "blk.%d.attn_q_a.weight", "blk.%d.attn_q_a_norm.weight", "blk.%d.attn_q_b.weight",
    "blk.%d.attn_kv_a_mqa.weight", "blk.%d.attn_kv_a_norm.weight", "blk.%d.attn_kv_b.weight",
    "blk.%d.attn_k_b.weight", "blk.%d.attn_v_b.weight", "blk.%d.exp_probs_b.bias",
    "blk.%d.attn_output.bias", "blk.%d.attn_sinks.weight", "blk.%d.ffn_gate_inp.bias",
};

static const char *hf_names_[W_COUNT] = {
    "model.embed_tokens.weight", "model.norm.weight", "lm_head.weight",
    "model.layers.%d.input_layernorm.weight", "model.layers.%d.self_attn.q_proj.weight",
    "model.layers.%d.self_attn.k_proj.weight", "model.layers.%d.self_attn.v_proj.weight",
    "model.layers.%d.self_attn.o_proj.weight", "model.layers.%d.self_attn.q_proj.bias",
    "model.layers.%d.self_attn.k_proj.bias", "model.layers.%d.self_attn.v_proj.bias",
    "model.layers.%d.self_attn.q_norm.weight", "model.layers.%d.self_attn.k_norm.weight",
    "model.layers.%d.post_attention_layernorm.weight", "model.layers.%d.mlp.gate_proj.weight",
    "model.layers.%d.mlp.up_proj.weight", "model.layers.%d.mlp.down_proj.weight",
    "model.layers.%d.mlp.gate.weight", "model.layers.%d.mlp.shared_expert.gate_proj.weight",
    "model.layers.%d.mlp.shared_expert.up_proj.weight",
    "model.layers.%d.mlp.shared_expert.down_proj.weight",
    "model.layers.%d.mlp.shared_expert_gate.weight",
    "model.layers.%d.self_attn.q_a_proj.weight", "model.layers.%d.self_attn.q_a_layernorm.weight",
    "model.layers.%d.self_attn.q_b_proj.weight", "model.layers.%d.self_attn.kv_a_proj_with_mqa.weight",
    "model.layers.%d.self_attn.kv_a_layernorm.weight", "model.layers.%d.self_attn.kv_b_proj.weight",
    "", "", /* k_b/v_b: GGUF only (split from kv_b_proj by llama.cpp's converter) */
    "model.layers.%d.mlp.gate.e_score_correction_bias",
    "model.layers.%d.self_attn.o_proj.bias", "model.layers.%d.self_attn.sinks",
    "model.layers.%d.mlp.router.bias",
};

typedef struct {
    pg_model *m;
    const char *path;
    pg_error *e;
} loader;

static const pg_tensor *find_(loader *ld, const char *name) {
    pg_model *m = ld->m;
    if (m->gguf) return gguf_find_tensor(m->gguf, name);
    const pg_tensor *t = hf_dir_find(m->hf, name);
    if (!t) { /* Mixtral's older checkpoints say block_sparse_moe where others say mlp */
        const char *p = strstr(name, ".mlp.");
        if (p) {
            char alt[256];
            snprintf(alt, sizeof alt, "%.*s.block_sparse_moe.%s", (int)(p - name), name, p + 5);
            t = hf_dir_find(m->hf, alt);
        }
    }
    if (!t) { /* DeepSeek says shared_experts (n_shared_experts of them, fused) */
        const char *p = strstr(name, ".shared_expert.");
        if (p) {
            char alt[256];
            snprintf(alt, sizeof alt, "%.*s.shared_experts.%s", (int)(p - name), name, p + 15);
            t = hf_dir_find(m->hf, alt);
        }
    }
    return t;
}

/* Names a family spells its own way; NULL: the table's. gpt-oss: llama.cpp
 * calls the FFN norm post_attention_norm, transformers the router
 * mlp.router. */
static const char *arch_name_(const loader *ld, wkind k) {
    if (ld->m->hp.arch != PG_ARCH_GPTOSS) return NULL;
    if (ld->m->gguf) return k == W_FFN_NORM ? "blk.%d.post_attention_norm.weight" : NULL;
    return k == W_ROUTER ? "model.layers.%d.mlp.router.weight" : NULL;
}

static void kind_name_(loader *ld, wkind k, int layer, char *out, size_t cap) {
    const char *fmt = arch_name_(ld, k);
    if (!fmt) fmt = ld->m->gguf ? gguf_names_[k] : hf_names_[k];
    snprintf(out, cap, fmt, layer);
}

static void *own_(pg_model *m, size_t bytes) {
    if (m->n_owned == m->cap_owned) {
        m->cap_owned = m->cap_owned ? 2 * m->cap_owned : 64;
        m->owned = xrealloc(m->owned, (size_t)m->cap_owned * sizeof *m->owned);
    }
    void *p = xmalloc_aligned(64, bytes);
    m->owned[m->n_owned++] = p;
    return p;
}

static void shape_str_(const pg_tensor *t, char *out, size_t cap) {
    int n = snprintf(out, cap, "[");
    for (int i = 0; i < t->n_dims && n < (int)cap; i++)
        n += snprintf(out + n, cap - n, "%s%lld", i ? ", " : "", (long long)t->ne[i]);
    if (n < (int)cap) snprintf(out + n, cap - n, "]");
}

/* Checks that t has exactly the dims given (GGML order). */
static int check_shape_(loader *ld, const pg_tensor *t, int n_dims, const int64_t *ne) {
    bool ok = true;
    for (int i = 0; i < PG_MAX_DIMS; i++) {
        int64_t want = i < n_dims ? ne[i] : 1;
        int64_t have = i < t->n_dims ? t->ne[i] : 1;
        if (want != have) ok = false;
    }
    if (ok) return 0;
    char have[96], want[96];
    shape_str_(t, have, sizeof have);
    pg_tensor w = {.n_dims = n_dims};
    for (int i = 0; i < n_dims; i++) w.ne[i] = ne[i];
    shape_str_(&w, want, sizeof want);
    return pg_fail(ld->e, "%s: tensor '%s' has shape %s but the model needs %s (GGML order)",
                   ld->path, t->name, have, want);
}

/* A float32 view of a vector tensor of n elements (converted if needed). */
static int vec_(loader *ld, wkind k, int layer, int n, bool required, const float **out) {
    char name[256];
    kind_name_(ld, k, layer, name, sizeof name);
    *out = NULL;
    const pg_tensor *t = find_(ld, name);
    if (!t) return required ? pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name) : 0;
    int64_t ne[1] = {n};
    if (check_shape_(ld, t, 1, ne)) return -1;
    if (t->type == PG_TYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
    } else if (t->type == PG_TYPE_F32 || t->type == PG_TYPE_F16 || t->type == PG_TYPE_BF16) {
        float *v = own_(ld->m, (size_t)n * sizeof(float));
        const uint8_t *p = t->data;
        for (int i = 0; i < n; i++) {
            if (t->type == PG_TYPE_F32) memcpy(&v[i], p + 4 * i, 4);
            else {
                uint16_t h;
                memcpy(&h, p + 2 * i, 2);
                v[i] = t->type == PG_TYPE_F16 ? pg_f16_to_f32(h) : pg_bf16_to_f32(h);
            }
        }
        *out = v;
    } else {
        return pg_fail(ld->e, "%s: tensor '%s' has type %s; norms and biases must be F32, F16 or BF16",
                       ld->path, name, pg_type_name(t->type));
    }
    for (int i = 0; i < n; i++)
        if (!isfinite((*out)[i]))
            return pg_fail(ld->e, "%s: tensor '%s' holds a non-finite value at %d", ld->path, name, i);
    return 0;
}

/* A rows x cols matrix starting at `data` inside tensor t (t already shape
 * checked). Misaligned data is copied so kernels may assume alignment. */
static int computable_(loader *ld, const pg_tensor *t) {
    if (pgk.dot[t->type]) return 0;
    return pg_fail(ld->e, "%s: tensor '%s' has type %s, which pregate cannot compute yet "
                          "(supported: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K..Q6_K, "
                          "TQ1_0, TQ2_0, MXFP4, IQ4_NL, IQ4_XS)",
                   ld->path, t->name, pg_type_name(t->type));
}

static int mat_at_(loader *ld, const pg_tensor *t, const uint8_t *data, int rows, int cols,
                   pg_mat *out) {
    if (computable_(ld, t)) return -1;
    size_t rb = pg_row_bytes(t->type, cols);
    size_t align = t->type == PG_TYPE_F32 ? 4 : 2;
    if ((uintptr_t)data % align) {
        uint8_t *copy = own_(ld->m, rb * (size_t)rows);
        memcpy(copy, data, rb * (size_t)rows);
        data = copy;
    }
    *out = (pg_mat){.type = t->type, .rows = rows, .cols = cols, .row_bytes = rb, .data = data};
    return 0;
}

/* The rows x cols matrix tensor `name` (absent and not required: zeroed). */
static int mat_named_(loader *ld, const char *name, int rows, int cols, bool required, pg_mat *out) {
    memset(out, 0, sizeof *out);
    const pg_tensor *t = find_(ld, name);
    if (!t) return required ? pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name) : 0;
    int64_t ne[2] = {cols, rows};
    if (computable_(ld, t) || check_shape_(ld, t, 2, ne)) return -1;
    return mat_at_(ld, t, t->data, rows, cols, out);
}

static int mat_(loader *ld, wkind k, int layer, int rows, int cols, bool required, pg_mat *out) {
    char name[256];
    kind_name_(ld, k, layer, name, sizeof name);
    return mat_named_(ld, name, rows, cols, required, out);
}

/* Element i of a float tensor's data (F32, F16 or BF16) as float32. */
static float elem_f32_(pg_type t, const uint8_t *p, size_t i) {
    if (t == PG_TYPE_F32) {
        float f;
        memcpy(&f, p + 4 * i, 4);
        return f;
    }
    uint16_t h;
    memcpy(&h, p + 2 * i, 2);
    return t == PG_TYPE_F16 ? pg_f16_to_f32(h) : pg_bf16_to_f32(h);
}

static int float_type_(loader *ld, const pg_tensor *t) {
    if (t->type == PG_TYPE_F32 || t->type == PG_TYPE_F16 || t->type == PG_TYPE_BF16) return 0;
    return pg_fail(ld->e, "%s: tensor '%s' has type %s; expected F32, F16 or BF16", ld->path, t->name,
                   pg_type_name(t->type));
}

/* Expert biases of a layer as float32 [E][n]: a tensor of ne [n, E], or, with
 * stride 2, every other element of one of ne [2n, E] from `offset` (the
 * interleaved gate/up bias of transformers' gpt-oss). Sets the three
 * pointers `which` (0 gate, 1 up, 2 down) of every expert. Absent and not
 * required: NULL biases. */
static int expert_bias_(loader *ld, const char *name, int n, int stride, int offset, bool required, int which,
                        pg_layer *L) {
    int E = ld->m->hp.n_expert;
    const pg_tensor *t = find_(ld, name);
    if (!t) return required ? pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name) : 0;
    int64_t ne[2] = {(int64_t)n * stride, E};
    if (check_shape_(ld, t, 2, ne) || float_type_(ld, t)) return -1;
    float *b = own_(ld->m, (size_t)E * n * sizeof(float));
    for (size_t i = 0; i < (size_t)E * n; i++) {
        b[i] = elem_f32_(t->type, t->data, (i / n) * n * stride + (i % n) * stride + offset);
        if (!isfinite(b[i])) return pg_fail(ld->e, "%s: tensor '%s' holds a non-finite value", ld->path, name);
    }
    for (int e = 0; e < E; e++) {
        const float **dst = which == 0 ? &L->experts[e].b_gate : which == 1 ? &L->experts[e].b_up : &L->experts[e].b_down;
        *dst = b + (size_t)e * n;
    }
    return 0;
}

/* transformers' MXFP4 experts (as openai ships gpt-oss): <name>_blocks, U8
 * [E, rows, cols/32, 16], byte j of a block holding element 2j in its low
 * nibble and 2j+1 in its high one, and <name>_scales, U8 [E, rows, cols/32],
 * E8M0 exponents; rows are output features (not transposed, unlike the
 * unquantized layout). Finds and checks the pair. */
static int mxfp4_pair_(loader *ld, int l, const char *proj, int rows, int cols, const uint8_t **blocks,
                       const uint8_t **scales) {
    int E = ld->m->hp.n_expert;
    char name[256];
    if (cols % PG_QK_MXFP4)
        return pg_fail(ld->e, "%s: MXFP4 experts need rows of a multiple of %d values, not %d", ld->path,
                       PG_QK_MXFP4, cols);
    int64_t ne_b[4] = {16, cols / PG_QK_MXFP4, rows, E}, ne_s[3] = {cols / PG_QK_MXFP4, rows, E};
    for (int k = 0; k < 2; k++) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%s_%s", l, proj, k ? "scales" : "blocks");
        const pg_tensor *t = find_(ld, name);
        if (!t) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
        if (t->type != PG_TYPE_I8)
            return pg_fail(ld->e, "%s: tensor '%s' has type %s; expected U8", ld->path, name, pg_type_name(t->type));
        if (check_shape_(ld, t, k ? 3 : 4, k ? ne_s : ne_b)) return -1;
        *(k ? scales : blocks) = t->data;
    }
    return 0;
}

/* One row of transformers' MXFP4 blocks as GGML's (element j in the low
 * nibble of byte j, element j + 16 in its high one; the same E8M0 scale). */
static void mxfp4_row_(const uint8_t *blocks, const uint8_t *scales, int n_blocks, block_mxfp4 *out) {
    for (int b = 0; b < n_blocks; b++) {
        const uint8_t *in = blocks + (size_t)b * 16;
        uint8_t v[PG_QK_MXFP4];
        for (int j = 0; j < 16; j++) {
            v[2 * j] = in[j] & 15;
            v[2 * j + 1] = in[j] >> 4;
        }
        out[b].e = scales[b];
        for (int j = 0; j < 16; j++) out[b].qs[j] = (uint8_t)(v[j] | v[j + 16] << 4);
    }
}

static int experts_gptoss_mxfp4_hf_(loader *ld, int l, pg_layer *L) {
    const pg_hparams *hp = &ld->m->hp;
    int E = hp->n_expert, F = hp->expert_ffn_dim, D = hp->dim;
    const uint8_t *gub, *gus, *dnb, *dns;
    if (mxfp4_pair_(ld, l, "gate_up_proj", 2 * F, D, &gub, &gus) || mxfp4_pair_(ld, l, "down_proj", D, F, &dnb, &dns))
        return -1;
    int gD = D / PG_QK_MXFP4, gF = F / PG_QK_MXFP4;
    size_t rb_g = pg_row_bytes(PG_TYPE_MXFP4, D), rb_d = pg_row_bytes(PG_TYPE_MXFP4, F);
    size_t per = 2 * (size_t)F * rb_g + (size_t)D * rb_d;
    uint8_t *buf = own_(ld->m, (size_t)E * per);
    for (int e = 0; e < E; e++) {
        uint8_t *g = buf + (size_t)e * per, *u = g + (size_t)F * rb_g, *d = u + (size_t)F * rb_g;
        for (int f = 0; f < F; f++) /* gate: even rows, up: odd rows */
            for (int k = 0; k < 2; k++) {
                size_t src = (size_t)e * 2 * F + 2 * f + k;
                mxfp4_row_(gub + src * gD * 16, gus + src * gD, gD, (block_mxfp4 *)((k ? u : g) + (size_t)f * rb_g));
            }
        for (int r = 0; r < D; r++) {
            size_t src = (size_t)e * D + r;
            mxfp4_row_(dnb + src * gF * 16, dns + src * gF, gF, (block_mxfp4 *)(d + (size_t)r * rb_d));
        }
        L->experts[e].gate = (pg_mat){PG_TYPE_MXFP4, F, D, rb_g, g};
        L->experts[e].up = (pg_mat){PG_TYPE_MXFP4, F, D, rb_g, u};
        L->experts[e].down = (pg_mat){PG_TYPE_MXFP4, D, F, rb_d, d};
    }
    return 0;
}

static int experts_gptoss_float_hf_(loader *ld, int l, pg_layer *L);

/* transformers' gpt-oss experts (unquantized): gate_up_proj [E, D, 2F] with
 * gate and up interleaved along the last dim (gate = columns 0, 2, 4, ...),
 * down_proj [E, F, D], i.e. transposed against nn.Linear, plus biases
 * gate_up_proj_bias [E, 2F] (interleaved too) and down_proj_bias [E, D].
 * The weights are repacked once into row-major [F x D] / [D x F] matrices
 * of the same type. */
static int experts_gptoss_hf_(loader *ld, int l, pg_layer *L) {
    const pg_hparams *hp = &ld->m->hp;
    int F = hp->expert_ffn_dim, D = hp->dim;
    char name[256], bname[256];
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj_blocks", l);
    if (find_(ld, name)) {
        if (experts_gptoss_mxfp4_hf_(ld, l, L)) return -1;
    } else if (experts_gptoss_float_hf_(ld, l, L)) {
        return -1;
    }
    snprintf(bname, sizeof bname, "model.layers.%d.mlp.experts.gate_up_proj_bias", l);
    if (expert_bias_(ld, bname, F, 2, 0, true, 0, L) || expert_bias_(ld, bname, F, 2, 1, true, 1, L)) return -1;
    snprintf(bname, sizeof bname, "model.layers.%d.mlp.experts.down_proj_bias", l);
    return expert_bias_(ld, bname, D, 1, 0, true, 2, L);
}

/* The unquantized weights: [E, D, 2F] and [E, F, D] of F32/F16/BF16. */
static int experts_gptoss_float_hf_(loader *ld, int l, pg_layer *L) {
    const pg_hparams *hp = &ld->m->hp;
    int E = hp->n_expert, F = hp->expert_ffn_dim, D = hp->dim;
    char name[256];
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", l);
    const pg_tensor *gu = find_(ld, name);
    if (!gu) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", l);
    const pg_tensor *dn = find_(ld, name);
    if (!dn) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
    int64_t ne_gu[3] = {2 * F, D, E}, ne_dn[3] = {D, F, E};
    if (check_shape_(ld, gu, 3, ne_gu) || check_shape_(ld, dn, 3, ne_dn) || float_type_(ld, gu) ||
        float_type_(ld, dn))
        return -1;
    size_t es_gu = pg_type_info(gu->type)->type_size, es_dn = pg_type_info(dn->type)->type_size;
    size_t one = (size_t)F * D;
    uint8_t *buf = own_(ld->m, (size_t)E * one * (2 * es_gu + es_dn));
    for (int e = 0; e < E; e++) {
        uint8_t *g = buf + (size_t)e * one * (2 * es_gu + es_dn), *u = g + one * es_gu, *d = u + one * es_gu;
        const uint8_t *src = (const uint8_t *)gu->data + (size_t)e * D * 2 * F * es_gu;
        for (int f = 0; f < F; f++)
            for (int c = 0; c < D; c++) {
                memcpy(g + ((size_t)f * D + c) * es_gu, src + ((size_t)c * 2 * F + 2 * f) * es_gu, es_gu);
                memcpy(u + ((size_t)f * D + c) * es_gu, src + ((size_t)c * 2 * F + 2 * f + 1) * es_gu, es_gu);
            }
        src = (const uint8_t *)dn->data + (size_t)e * F * D * es_dn;
        for (int r = 0; r < D; r++)
            for (int f = 0; f < F; f++)
                memcpy(d + ((size_t)r * F + f) * es_dn, src + ((size_t)f * D + r) * es_dn, es_dn);
        L->experts[e].gate = (pg_mat){gu->type, F, D, (size_t)D * es_gu, g};
        L->experts[e].up = (pg_mat){gu->type, F, D, (size_t)D * es_gu, u};
        L->experts[e].down = (pg_mat){dn->type, D, F, (size_t)F * es_dn, d};
    }
    return 0;
}

/* Experts of one layer: GGUF stacks them in 3-D tensors (ffn_*_exps, ne =
 * [cols, rows, E]); Hugging Face names each expert (experts.E.gate_proj /
 * Mixtral's w1,w3,w2) or, in transformers 5, fuses them (experts.gate_up_proj
 * [E, 2F, D] with gate in the first F rows, experts.down_proj [E, D, F]). */
static int experts_(loader *ld, int l, pg_layer *L) {
    const pg_hparams *hp = &ld->m->hp;
    int E = hp->n_expert, F = hp->expert_ffn_dim, D = hp->dim;
    L->experts = xcalloc((size_t)E, sizeof(pg_expert));
    char name[256];
    if (ld->m->gguf) {
        static const char *fmts[3] = {"blk.%d.ffn_gate_exps.weight", "blk.%d.ffn_up_exps.weight",
                                      "blk.%d.ffn_down_exps.weight"};
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, fmts[p], l);
            const pg_tensor *t = find_(ld, name);
            if (!t) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
            int rows = p < 2 ? F : D, cols = p < 2 ? D : F;
            int64_t ne[3] = {cols, rows, E};
            if (computable_(ld, t) || check_shape_(ld, t, 3, ne)) return -1;
            size_t stride = pg_row_bytes(t->type, cols) * (size_t)rows;
            for (int e = 0; e < E; e++) {
                pg_mat *dst = p == 0 ? &L->experts[e].gate : p == 1 ? &L->experts[e].up : &L->experts[e].down;
                if (mat_at_(ld, t, (const uint8_t *)t->data + stride * e, rows, cols, dst)) return -1;
            }
        }
        /* biases (gpt-oss): ne [F, E] / [D, E] */
        static const char *bfmts[3] = {"blk.%d.ffn_gate_exps.bias", "blk.%d.ffn_up_exps.bias",
                                       "blk.%d.ffn_down_exps.bias"};
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, bfmts[p], l);
            if (expert_bias_(ld, name, p < 2 ? F : D, 1, 0, hp->arch == PG_ARCH_GPTOSS, p, L)) return -1;
        }
        return 0;
    }
    if (hp->arch == PG_ARCH_GPTOSS) return experts_gptoss_hf_(ld, l, L);
    /* Hugging Face, fused */
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.gate_up_proj", l);
    const pg_tensor *gu = find_(ld, name);
    if (gu) {
        snprintf(name, sizeof name, "model.layers.%d.mlp.experts.down_proj", l);
        const pg_tensor *dn = find_(ld, name);
        if (!dn) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
        int64_t ne_gu[3] = {D, 2 * F, E}, ne_dn[3] = {F, D, E};
        if (check_shape_(ld, gu, 3, ne_gu) || check_shape_(ld, dn, 3, ne_dn)) return -1;
        size_t rb_gu = pg_row_bytes(gu->type, D), rb_dn = pg_row_bytes(dn->type, F);
        for (int e = 0; e < E; e++) {
            const uint8_t *base = (const uint8_t *)gu->data + rb_gu * (size_t)(2 * F) * e;
            if (mat_at_(ld, gu, base, F, D, &L->experts[e].gate) ||
                mat_at_(ld, gu, base + rb_gu * (size_t)F, F, D, &L->experts[e].up) ||
                mat_at_(ld, dn, (const uint8_t *)dn->data + rb_dn * (size_t)D * e, D, F,
                        &L->experts[e].down))
                return -1;
        }
        return 0;
    }
    /* Hugging Face, one tensor per expert and projection */
    static const char *names[2][3] = {{"gate_proj", "up_proj", "down_proj"}, {"w1", "w3", "w2"}};
    int style = hp->arch == PG_ARCH_MIXTRAL ? 1 : 0;
    snprintf(name, sizeof name, "model.layers.%d.mlp.experts.0.%s.weight", l, names[style][0]);
    if (!find_(ld, name)) style = 1 - style;
    for (int e = 0; e < E; e++) {
        for (int p = 0; p < 3; p++) {
            snprintf(name, sizeof name, "model.layers.%d.mlp.experts.%d.%s.weight", l, e, names[style][p]);
            const pg_tensor *t = find_(ld, name);
            if (!t) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
            int rows = p < 2 ? F : D, cols = p < 2 ? D : F;
            int64_t ne[2] = {cols, rows};
            if (check_shape_(ld, t, 2, ne)) return -1;
            pg_mat *dst = p == 0 ? &L->experts[e].gate : p == 1 ? &L->experts[e].up : &L->experts[e].down;
            if (mat_at_(ld, t, t->data, rows, cols, dst)) return -1;
        }
    }
    return 0;
}

static size_t mat_bytes_(const pg_mat *w) { return w->row_bytes * (size_t)w->rows; }

/* kv_b_proj [H*(nope+v) x kv_lora] (Hugging Face, older GGUF files) split
 * into the absorbed-form matrices: wk_b = per head W_UK^T [kv_lora x nope]
 * (transposed, so float32), wv_b = per head W_UV [v x kv_lora] (rows
 * copied, type kept). */
static int split_kv_b_(loader *ld, const pg_mat *kvb, pg_layer *L) {
    const pg_hparams *hp = &ld->m->hp;
    int H = hp->n_head, nope = hp->qk_nope_dim, vd = hp->v_head_dim, kvl = hp->kv_lora_rank;
    float *kb = own_(ld->m, (size_t)H * kvl * nope * sizeof(float));
    float *row = xmalloc((size_t)kvl * sizeof(float));
    for (int h = 0; h < H; h++)
        for (int i = 0; i < nope; i++) {
            const uint8_t *src = (const uint8_t *)kvb->data + kvb->row_bytes * (size_t)(h * (nope + vd) + i);
            pg_dequantize_row_ref(kvb->type, kvl, src, row);
            for (int c = 0; c < kvl; c++) kb[((size_t)h * kvl + c) * nope + i] = row[c];
        }
    free(row);
    L->wk_b = (pg_mat){.type = PG_TYPE_F32, .rows = H * kvl, .cols = nope, .row_bytes = (size_t)nope * sizeof(float),
                       .data = kb};
    uint8_t *vb = own_(ld->m, kvb->row_bytes * (size_t)H * vd);
    for (int h = 0; h < H; h++)
        memcpy(vb + kvb->row_bytes * (size_t)h * vd,
               (const uint8_t *)kvb->data + kvb->row_bytes * (size_t)(h * (nope + vd) + nope), kvb->row_bytes * (size_t)vd);
    L->wv_b = (pg_mat){.type = kvb->type, .rows = H * vd, .cols = kvl, .row_bytes = kvb->row_bytes, .data = vb};
    return 0;
}

/* A 3-D GGUF tensor of n heads of rows x cols, as one [n*rows x cols] matrix. */
static int heads_mat_(loader *ld, const pg_tensor *t, int rows, int cols, int n, pg_mat *out) {
    int64_t ne[3] = {cols, rows, n};
    if (computable_(ld, t) || check_shape_(ld, t, 3, ne)) return -1;
    return mat_at_(ld, t, t->data, rows * n, cols, out);
}

/* The attention weights of an MLA layer (mla.h). */
static int bind_mla_(loader *ld, int l, pg_layer *L) {
    pg_model *m = ld->m;
    const pg_hparams *hp = &m->hp;
    int D = hp->dim, H = hp->n_head, qk = hp->head_dim, rope = hp->n_rot, kvl = hp->kv_lora_rank, ql = hp->q_lora_rank;
    int nope = hp->qk_nope_dim, vd = hp->v_head_dim;
    if (ql > 0) {
        if (mat_(ld, W_Q_A, l, ql, D, true, &L->wq_a) || vec_(ld, W_Q_A_NORM, l, ql, true, &L->q_a_norm) ||
            mat_(ld, W_Q_B, l, H * qk, ql, true, &L->wq_b))
            return -1;
    } else if (mat_(ld, W_Q, l, H * qk, D, true, &L->wq)) {
        return -1;
    }
    if (mat_(ld, W_KV_A, l, kvl + rope, D, true, &L->wkv_a) || vec_(ld, W_KV_A_NORM, l, kvl, true, &L->kv_a_norm) ||
        mat_(ld, W_O, l, D, H * vd, true, &L->wo))
        return -1;
    char name[256];
    kind_name_(ld, W_K_B, l, name, sizeof name);
    const pg_tensor *kb = m->gguf ? find_(ld, name) : NULL;
    if (kb) { /* llama.cpp's current layout: attn_k_b [nope, kv_lora, H], attn_v_b [kv_lora, v, H] */
        kind_name_(ld, W_V_B, l, name, sizeof name);
        const pg_tensor *vb = find_(ld, name);
        if (!vb) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
        if (heads_mat_(ld, kb, kvl, nope, H, &L->wk_b) || heads_mat_(ld, vb, vd, kvl, H, &L->wv_b)) return -1;
    } else {
        pg_mat kvb;
        if (mat_(ld, W_KV_B, l, H * (nope + vd), kvl, true, &kvb) || split_kv_b_(ld, &kvb, L)) return -1;
    }
    m->bytes_dense += mat_bytes_(&L->wq) + mat_bytes_(&L->wq_a) + mat_bytes_(&L->wq_b) + mat_bytes_(&L->wkv_a) +
                      mat_bytes_(&L->wk_b) + mat_bytes_(&L->wv_b) + mat_bytes_(&L->wo);
    return 0;
}
/* encoder-decoder (Switch Transformers): their own names, after the others */
static int switch_bind_(loader *ld);
static int switch_hparams_hf_(loader *ld, json_t *cfg);
static int switch_hparams_gguf_(loader *ld, const char *arch);

static int bind_weights_(loader *ld) {
    pg_model *m = ld->m;
    pg_hparams *hp = &m->hp;
    if (hp->arch == PG_ARCH_SWITCH) return switch_bind_(ld);
    int D = hp->dim, hd = hp->head_dim, H = hp->n_head, KV = hp->n_head_kv;
    if (mat_(ld, W_TOK_EMBD, 0, hp->vocab, D, true, &m->tok_embd)) return -1;
    if (vec_(ld, W_OUTPUT_NORM, 0, D, true, &m->output_norm)) return -1;
    if (mat_(ld, W_OUTPUT, 0, hp->vocab, D, false, &m->output)) return -1;
    if (!m->output.data) {
        m->output = m->tok_embd;
        hp->tied_output = true;
    }
    m->bytes_dense = mat_bytes_(&m->tok_embd) + (hp->tied_output ? 0 : mat_bytes_(&m->output));
    m->layers = xcalloc((size_t)hp->n_layer, sizeof(pg_layer));
    for (int l = 0; l < hp->n_layer; l++) {
        pg_layer *L = &m->layers[l];
        int qn = hp->qk_norm == PG_QKNORM_HEAD ? hd : H * hd;
        int kn = hp->qk_norm == PG_QKNORM_HEAD ? hd : KV * hd;
        bool qk = hp->qk_norm != PG_QKNORM_NONE;
        if (hp->mla) {
            if (vec_(ld, W_ATTN_NORM, l, D, true, &L->attn_norm) || bind_mla_(ld, l, L) ||
                vec_(ld, W_FFN_NORM, l, D, true, &L->ffn_norm))
                return -1;
        } else if (vec_(ld, W_ATTN_NORM, l, D, true, &L->attn_norm) ||
            mat_(ld, W_Q, l, H * hd, D, true, &L->wq) || mat_(ld, W_K, l, KV * hd, D, true, &L->wk) ||
            mat_(ld, W_V, l, KV * hd, D, true, &L->wv) || mat_(ld, W_O, l, D, H * hd, true, &L->wo) ||
            vec_(ld, W_BQ, l, H * hd, false, &L->bq) || vec_(ld, W_BK, l, KV * hd, false, &L->bk) ||
            vec_(ld, W_BV, l, KV * hd, false, &L->bv) || vec_(ld, W_QNORM, l, qn, qk, &L->q_norm) ||
            vec_(ld, W_KNORM, l, kn, qk, &L->k_norm) || vec_(ld, W_FFN_NORM, l, D, true, &L->ffn_norm) ||
            vec_(ld, W_BO, l, D, false, &L->bo) || vec_(ld, W_SINKS, l, H, hp->arch == PG_ARCH_GPTOSS, &L->sinks))
            return -1;
        L->swa = hp->n_swa > 0 && l % hp->swa_period < hp->swa_period - 1;
        if (!hp->mla) m->bytes_dense += mat_bytes_(&L->wq) + mat_bytes_(&L->wk) + mat_bytes_(&L->wv) + mat_bytes_(&L->wo);
        char name[256];
        kind_name_(ld, W_ROUTER, l, name, sizeof name);
        L->is_moe = hp->n_expert > 0 && find_(ld, name) != NULL;
        if (!L->is_moe) {
            if (hp->ffn_dim <= 0)
                return pg_fail(ld->e, "%s: layer %d has no experts (missing '%s') and the model has "
                                      "no dense FFN size", ld->path, l, name);
            if (mat_(ld, W_FFN_GATE, l, hp->ffn_dim, D, true, &L->ffn_gate) ||
                mat_(ld, W_FFN_UP, l, hp->ffn_dim, D, true, &L->ffn_up) ||
                mat_(ld, W_FFN_DOWN, l, D, hp->ffn_dim, true, &L->ffn_down))
                return -1;
            m->bytes_dense += mat_bytes_(&L->ffn_gate) + mat_bytes_(&L->ffn_up) + mat_bytes_(&L->ffn_down);
            continue;
        }
        if (mat_(ld, W_ROUTER, l, hp->n_expert, D, true, &L->router) ||
            vec_(ld, W_ROUTER_B, l, hp->n_expert, hp->arch == PG_ARCH_GPTOSS, &L->router_b) || experts_(ld, l, L) ||
            vec_(ld, W_EXP_PROBS_B, l, hp->n_expert, false, &L->exp_probs_b))
            return -1;
        m->bytes_dense += mat_bytes_(&L->router);
        for (int e = 0; e < hp->n_expert; e++)
            m->bytes_experts += mat_bytes_(&L->experts[e].gate) + mat_bytes_(&L->experts[e].up) +
                                mat_bytes_(&L->experts[e].down);
        if (hp->shared_ffn_dim > 0) {
            int Fs = hp->shared_ffn_dim;
            L->has_shared = true;
            if (mat_(ld, W_SH_GATE, l, Fs, D, true, &L->shared.gate) ||
                mat_(ld, W_SH_UP, l, Fs, D, true, &L->shared.up) ||
                mat_(ld, W_SH_DOWN, l, D, Fs, true, &L->shared.down) ||
                mat_(ld, W_SH_GATE_INP, l, 1, D, false, &L->shared_gate))
                return -1;
            /* GGUF stores the shared gate as a vector [D] */
            if (!L->shared_gate.data && m->gguf) {
                kind_name_(ld, W_SH_GATE_INP, l, name, sizeof name);
                const pg_tensor *t = find_(ld, name);
                if (t) {
                    int64_t ne[1] = {D};
                    if (check_shape_(ld, t, 1, ne) || mat_at_(ld, t, t->data, 1, D, &L->shared_gate))
                        return -1;
                }
            }
            m->bytes_dense += mat_bytes_(&L->shared.gate) + mat_bytes_(&L->shared.up) +
                              mat_bytes_(&L->shared.down) + mat_bytes_(&L->shared_gate);
        }
    }
    return 0;
}

/* ---- hyperparameters ---- */

static int check_hparams_(loader *ld) {
    pg_hparams *hp = &ld->m->hp;
    const char *p = ld->path;
    if (hp->n_layer < 1 || hp->n_layer > 4096) return pg_fail(ld->e, "%s: bad layer count %d", p, hp->n_layer);
    if (hp->dim < 1 || hp->dim > (1 << 17)) return pg_fail(ld->e, "%s: bad hidden size %d", p, hp->dim);
    if (hp->n_head < 1 || hp->n_head > 4096) return pg_fail(ld->e, "%s: bad head count %d", p, hp->n_head);
    if (hp->n_head_kv < 1 || hp->n_head % hp->n_head_kv)
        return pg_fail(ld->e, "%s: KV head count %d does not divide head count %d", p, hp->n_head_kv, hp->n_head);
    if (hp->head_dim < 2 || hp->head_dim > 4096 || hp->head_dim % 2)
        return pg_fail(ld->e, "%s: bad head dimension %d", p, hp->head_dim);
    if (hp->n_rot <= 0 || hp->n_rot > hp->head_dim || hp->n_rot % 2)
        return pg_fail(ld->e, "%s: bad RoPE dimension count %d", p, hp->n_rot);
    if (hp->vocab < 1) return pg_fail(ld->e, "%s: bad vocabulary size %d", p, hp->vocab);
    if (!(hp->norm_eps > 0 && hp->norm_eps < 1)) return pg_fail(ld->e, "%s: bad RMSNorm epsilon %g", p, hp->norm_eps);
    if (!(hp->rope_theta > 0) || !isfinite(hp->rope_theta)) return pg_fail(ld->e, "%s: bad RoPE base %g", p, hp->rope_theta);
    if (hp->n_expert < 0 || hp->n_expert > 1024) return pg_fail(ld->e, "%s: bad expert count %d", p, hp->n_expert);
    if (hp->n_expert > 0) {
        if (hp->n_expert_used < 1 || hp->n_expert_used > hp->n_expert || hp->n_expert_used > 64)
            return pg_fail(ld->e, "%s: bad number of experts per token %d (of %d)", p, hp->n_expert_used, hp->n_expert);
        if (hp->expert_ffn_dim < 1 || hp->expert_ffn_dim > (1 << 20))
            return pg_fail(ld->e, "%s: bad expert FFN size %d", p, hp->expert_ffn_dim);
    } else {
        hp->n_expert_used = 0; /* meaningless without experts (a config may still say it) */
    }
    if (hp->ffn_dim < 0 || hp->ffn_dim > (1 << 20)) return pg_fail(ld->e, "%s: bad FFN size %d", p, hp->ffn_dim);
    if (hp->shared_ffn_dim < 0 || hp->shared_ffn_dim > (1 << 20))
        return pg_fail(ld->e, "%s: bad shared expert FFN size %d", p, hp->shared_ffn_dim);
    if (hp->n_ctx_train <= 0) hp->n_ctx_train = 4096;
    if (hp->mla) {
        if (hp->kv_lora_rank < 1 || hp->kv_lora_rank > 65536 || hp->q_lora_rank < 0 || hp->q_lora_rank > 65536)
            return pg_fail(ld->e, "%s: bad MLA ranks (q %d, kv %d)", p, hp->q_lora_rank, hp->kv_lora_rank);
        if (hp->qk_nope_dim < 1 || hp->v_head_dim < 1 || hp->v_head_dim > 4096 || hp->n_rot != hp->head_dim - hp->qk_nope_dim)
            return pg_fail(ld->e, "%s: bad MLA head sizes (q/k %d = nope %d + rope %d, v %d)", p, hp->head_dim,
                           hp->qk_nope_dim, hp->n_rot, hp->v_head_dim);
    }
    if (hp->expert_group_rule != PG_GROUP_NONE && hp->n_expert > 0 && hp->n_expert_group > 1) {
        int G = hp->n_expert_group, TG = hp->n_expert_group_used;
        if (hp->n_expert % G || TG < 1 || TG > G || (long)TG * (hp->n_expert / G) < hp->n_expert_used)
            return pg_fail(ld->e, "%s: bad expert groups: %d experts in %d groups, %d groups used, %d experts per token",
                           p, hp->n_expert, G, TG, hp->n_expert_used);
    }
    if (!(hp->expert_weights_scale >= 0) || !isfinite(hp->expert_weights_scale))
        return pg_fail(ld->e, "%s: bad expert weights scale %g", p, hp->expert_weights_scale);
    if (hp->n_swa < 0 || (hp->n_swa > 0 && (hp->swa_period < 1 || hp->swa_period > (1 << 20))))
        return pg_fail(ld->e, "%s: bad sliding window %d (layer period %d)", p, hp->n_swa, hp->swa_period);
    const pg_yarn *y = &hp->yarn;
    if (y->factor != 0 && !(y->factor > 0 && isfinite(y->factor) && y->orig_ctx > 0 && isfinite(y->beta_fast) &&
                            isfinite(y->beta_slow) && y->beta_fast > 0 && y->beta_slow > 0 &&
                            y->attn_factor > 0 && isfinite(y->attn_factor)))
        return pg_fail(ld->e, "%s: bad YaRN parameters (factor %g, original context %d, beta %g/%g, attention factor %g)",
                       p, y->factor, y->orig_ctx, y->beta_fast, y->beta_slow, y->attn_factor);
    if (hp->swiglu_limit < 0 || !isfinite(hp->swiglu_limit) || !isfinite(hp->swiglu_alpha))
        return pg_fail(ld->e, "%s: bad SwiGLU limit %g / alpha %g", p, hp->swiglu_limit, hp->swiglu_alpha);
    if (!isfinite(hp->yarn.mscale_all_dim)) return pg_fail(ld->e, "%s: bad YaRN mscale_all_dim", p);
    return 0;
}

/* YaRN: the frequencies, once per model. */
static int rope_setup_(loader *ld) {
    pg_hparams *hp = &ld->m->hp;
    if (hp->yarn.factor == 0) return 0;
    float *f = own_(ld->m, (size_t)(hp->n_rot / 2 + 1) * sizeof(float));
    pg_yarn_inv_freq(hp->n_rot, hp->rope_theta, &hp->yarn, f);
    ld->m->rope_inv_freq = f;
    return 0;
}

static int gguf_int_(const gguf_file *g, const char *arch, const char *key, int64_t dflt, bool required,
                     int *out, loader *ld) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    int64_t v;
    if (!gguf_get_int(g, full, &v)) {
        if (required) return pg_fail(ld->e, "%s: missing metadata key '%s'", ld->path, full);
        v = dflt;
    }
    if (v < INT32_MIN || v > INT32_MAX) return pg_fail(ld->e, "%s: metadata '%s' out of range", ld->path, full);
    *out = (int)v;
    return 0;
}

static float gguf_float_(const gguf_file *g, const char *arch, const char *key, double dflt) {
    char full[160];
    snprintf(full, sizeof full, "%s.%s", arch, key);
    double v;
    return gguf_get_float(g, full, &v) ? (float)v : (float)dflt;
}

/* deepseek2 keys (llama.cpp's names). The MLA sizes are in key_length_mla /
 * value_length_mla (key_length/value_length hold the latent view:
 * kv_lora + rope, kv_lora); older files have only key_length/value_length,
 * as the per-head sizes. */
static int hparams_gguf_deepseek_(loader *ld, const gguf_file *g, const char *arch) {
    pg_hparams *hp = &ld->m->hp;
    int n_shared = 0, klen = 0, vlen = 0, klen_mla = 0, vlen_mla = 0, gating = 0;
    hp->mla = true;
    if (gguf_int_(g, arch, "attention.kv_lora_rank", 0, true, &hp->kv_lora_rank, ld) ||
        gguf_int_(g, arch, "attention.q_lora_rank", 0, false, &hp->q_lora_rank, ld) ||
        gguf_int_(g, arch, "attention.key_length", 0, true, &klen, ld) ||
        gguf_int_(g, arch, "attention.value_length", 0, true, &vlen, ld) ||
        gguf_int_(g, arch, "attention.key_length_mla", 0, false, &klen_mla, ld) ||
        gguf_int_(g, arch, "attention.value_length_mla", 0, false, &vlen_mla, ld) ||
        gguf_int_(g, arch, "expert_shared_count", 0, false, &n_shared, ld) ||
        gguf_int_(g, arch, "expert_gating_func", 0, false, &gating, ld) ||
        gguf_int_(g, arch, "expert_group_count", 1, false, &hp->n_expert_group, ld) ||
        gguf_int_(g, arch, "expert_group_used_count", 1, false, &hp->n_expert_group_used, ld))
        return -1;
    hp->head_dim = klen_mla ? klen_mla : klen;
    hp->v_head_dim = vlen_mla ? vlen_mla : vlen;
    hp->qk_nope_dim = hp->head_dim - hp->n_rot;
    hp->n_head_kv = hp->n_head; /* the file says 1: the latent is one shared "KV head" */
    if (n_shared < 0 || n_shared > 64) return pg_fail(ld->e, "%s: bad shared expert count %d", ld->path, n_shared);
    if ((int64_t)n_shared * hp->expert_ffn_dim > (1 << 20)) /* before the product can overflow */
        return pg_fail(ld->e, "%s: bad shared experts: %d of width %d", ld->path, n_shared, hp->expert_ffn_dim);
    hp->shared_ffn_dim = n_shared * hp->expert_ffn_dim;
    if (gating == 0) {
        /* no key (llama.cpp's converter writes it only when config.json has
         * scoring_func, which transformers 5 does not save): a selection
         * bias exists only for V3's sigmoid rule; otherwise V2's softmax */
        gating = 1;
        char name[64];
        for (int l = 0; l < hp->n_layer && gating == 1; l++) {
            snprintf(name, sizeof name, "blk.%d.exp_probs_b.bias", l);
            if (gguf_find_tensor(g, name)) gating = 2;
        }
    }
    if (gating != 1 && gating != 2)
        return pg_fail(ld->e, "%s: expert_gating_func %d is not supported (1 softmax, 2 sigmoid)", ld->path, gating);
    hp->gating = gating == 2 ? PG_GATING_SIGMOID_TOPK : PG_GATING_SOFTMAX_TOPK;
    /* GGUF does not say how a group is scored: V2's softmax routers take
     * the group's best score, V3's sigmoid routers the sum of its best two */
    hp->expert_group_rule = hp->n_expert_group > 1 ? (gating == 2 ? PG_GROUP_TOP2_SUM : PG_GROUP_MAX) : PG_GROUP_NONE;
    hp->expert_weights_scale = gguf_float_(g, arch, "expert_weights_scale", 1.0);
    return 0;
}

/* `<arch>.rope.scaling.*` (llama.cpp's keys). YaRN's ramp bounds are
 * floored/ceiled unless the pregate key rope.scaling.yarn_truncate is
 * false: llama.cpp always truncates, transformers' gpt-oss does not. The
 * cos/sin factor is what llama.cpp implies (1 with DeepSeek's
 * yarn_log_multiplier = 0.1 mscale_all_dim, else mscale(factor, 1)) times
 * rope.scaling.yarn_attn_factor (default 1). */
static int rope_scaling_gguf_(loader *ld, const char *arch) {
    const gguf_file *g = ld->m->gguf;
    pg_hparams *hp = &ld->m->hp;
    char key[160];
    snprintf(key, sizeof key, "%s.rope.scaling.type", arch);
    char *type = gguf_get_str(g, key);
    if (!type || strcmp(type, "none") == 0) { free(type); return 0; }
    if (strcmp(type, "yarn") != 0) {
        int rc = pg_fail(ld->e, "%s: RoPE scaling '%s' is not supported yet (supported: none, yarn)", ld->path, type);
        free(type);
        return rc;
    }
    free(type);
    float factor = gguf_float_(g, arch, "rope.scaling.factor", 0);
    if (!(factor > 0) || !isfinite(factor)) return pg_fail(ld->e, "%s: bad YaRN factor %g", ld->path, factor);
    int orig;
    if (gguf_int_(g, arch, "rope.scaling.original_context_length", 0, true, &orig, ld)) return -1;
    bool truncate = true;
    snprintf(key, sizeof key, "%s.rope.scaling.yarn_truncate", arch);
    gguf_get_bool(g, key, &truncate);
    double log_mul = 0;
    snprintf(key, sizeof key, "%s.rope.scaling.yarn_log_multiplier", arch);
    bool has_log_mul = gguf_get_float(g, key, &log_mul);
    float implied = has_log_mul ? 1.0f : pg_yarn_mscale(factor, 1.0f);
    hp->yarn = (pg_yarn){.factor = factor, .beta_fast = gguf_float_(g, arch, "rope.scaling.yarn_beta_fast", 32),
                         .beta_slow = gguf_float_(g, arch, "rope.scaling.yarn_beta_slow", 1), .orig_ctx = orig,
                         .truncate = truncate,
                         .attn_factor = gguf_float_(g, arch, "rope.scaling.yarn_attn_factor", 1) * implied,
                         .mscale_all_dim = has_log_mul ? (float)(log_mul / 0.1) : 0.0f};
    return 0;
}

/* gpt-oss: the sliding window and its layer period (llama.cpp's default 2),
 * and the SwiGLU constants llama.cpp hard-codes (pregate keys
 * swiglu_alpha / swiglu_limit override them). */
static int hparams_gptoss_gguf_(loader *ld, const char *arch) {
    pg_hparams *hp = &ld->m->hp;
    hp->ffn_dim = 0;
    hp->swiglu_alpha = gguf_float_(ld->m->gguf, arch, "swiglu_alpha", 1.702);
    hp->swiglu_limit = gguf_float_(ld->m->gguf, arch, "swiglu_limit", 7.0);
    return gguf_int_(ld->m->gguf, arch, "attention.sliding_window", 0, false, &hp->n_swa, ld) ||
           gguf_int_(ld->m->gguf, arch, "attention.sliding_window_pattern", 2, false, &hp->swa_period, ld);
}

static int hparams_gguf_(loader *ld) {
    const gguf_file *g = ld->m->gguf;
    pg_hparams *hp = &ld->m->hp;
    char *arch = gguf_get_str(g, "general.architecture");
    if (!arch) return pg_fail(ld->e, "%s: missing metadata key 'general.architecture'", ld->path);
    const pg_arch_info *ai = NULL;
    for (int i = 0; i < PG_ARCH_COUNT; i++)
        if (strcmp(archs_[i].gguf_arch, arch) == 0) { ai = &archs_[i]; break; }
    if (!ai) {
        int rc = pg_fail(ld->e, "%s: unsupported architecture '%s' (supported: llama, mixtral, "
                                "qwen2moe, qwen3moe, olmoe, deepseek2, switch, gpt-oss)", ld->path, arch);
        free(arch);
        return rc;
    }
    int rc = -1;
    if (ai->arch == PG_ARCH_SWITCH) {
        rc = switch_hparams_gguf_(ld, arch);
        goto done;
    }
    if (gguf_int_(g, arch, "block_count", 0, true, &hp->n_layer, ld) ||
        gguf_int_(g, arch, "embedding_length", 0, true, &hp->dim, ld) ||
        gguf_int_(g, arch, "attention.head_count", 0, true, &hp->n_head, ld) ||
        gguf_int_(g, arch, "attention.head_count_kv", hp->n_head, false, &hp->n_head_kv, ld) ||
        gguf_int_(g, arch, "context_length", 4096, false, &hp->n_ctx_train, ld) ||
        gguf_int_(g, arch, "feed_forward_length", 0, false, &hp->ffn_dim, ld) ||
        gguf_int_(g, arch, "expert_count", 0, false, &hp->n_expert, ld) ||
        gguf_int_(g, arch, "expert_used_count", 0, false, &hp->n_expert_used, ld) ||
        gguf_int_(g, arch, "expert_shared_feed_forward_length", 0, false, &hp->shared_ffn_dim, ld))
        goto done;
    if (hp->n_head < 1) { pg_fail(ld->e, "%s: bad head count %d", ld->path, hp->n_head); goto done; }
    if (gguf_int_(g, arch, "attention.key_length", hp->dim / hp->n_head, false, &hp->head_dim, ld) ||
        gguf_int_(g, arch, "rope.dimension_count", hp->head_dim, false, &hp->n_rot, ld) ||
        gguf_int_(g, arch, "expert_feed_forward_length", hp->ffn_dim, false, &hp->expert_ffn_dim, ld))
        goto done;
    if (ai->arch == PG_ARCH_LLAMA && hp->n_expert > 0) ai = &archs_[PG_ARCH_MIXTRAL];
    hp->arch = ai->arch;
    hp->norm_eps = gguf_float_(g, arch, "attention.layer_norm_rms_epsilon", 1e-5);
    hp->rope_theta = gguf_float_(g, arch, "rope.freq_base", 10000.0);
    hp->rope_neox = ai->rope_neox_gguf;
    hp->gating = ai->gating;
    hp->qk_norm = ai->qk_norm;
    hp->clip_qkv = gguf_float_(g, arch, "attention.clamp_kqv", 0.0);
    char key[160];
    snprintf(key, sizeof key, "%s.expert_weights_norm", arch);
    hp->norm_topk = ai->norm_topk_default;
    gguf_get_bool(g, key, &hp->norm_topk);
    snprintf(key, sizeof key, "%s.expert_pregated", arch);
    gguf_get_bool(g, key, &hp->expert_pregated);
    if (rope_scaling_gguf_(ld, arch) || (ai->arch == PG_ARCH_GPTOSS && hparams_gptoss_gguf_(ld, arch))) goto done;
    const pg_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) { pg_fail(ld->e, "%s: missing 2-D tensor 'token_embd.weight'", ld->path); goto done; }
    if (emb->ne[1] > INT32_MAX) { pg_fail(ld->e, "%s: vocabulary too large", ld->path); goto done; }
    hp->vocab = (int)emb->ne[1];
    if (ai->arch == PG_ARCH_DEEPSEEK2 && hparams_gguf_deepseek_(ld, g, arch)) goto done;
    rc = 0;
done:
    free(arch);
    return rc;
}

/* config.json field helpers: absent -> default; present with wrong type -> error */
static int json_int_(loader *ld, json_t *cfg, const char *key, int dflt, bool required, int *out) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) {
        if (required) return pg_fail(ld->e, "%s/config.json: missing '%s'", ld->path, key);
        *out = dflt;
        return 0;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > INT32_MAX)
        return pg_fail(ld->e, "%s/config.json: '%s' must be a non-negative integer", ld->path, key);
    *out = (int)json_integer_value(v);
    return 0;
}

static int json_num_(loader *ld, json_t *cfg, const char *key, double dflt, double *out) {
    json_t *v = json_object_get(cfg, key);
    if (!v || json_is_null(v)) { *out = dflt; return 0; }
    if (!json_is_number(v)) return pg_fail(ld->e, "%s/config.json: '%s' must be a number", ld->path, key);
    *out = json_number_value(v);
    return 0;
}

static int json_str_is_(json_t *cfg, const char *key, const char *want) {
    json_t *v = json_object_get(cfg, key);
    return json_is_string(v) && strcmp(json_string_value(v), want) == 0;
}

/* DeepSeek-V2/V3 config.json: MLA sizes, routing, YaRN (rope_parameters in
 * transformers 5, rope_scaling in the hub's original files). */
static int hparams_hf_deepseek_(loader *ld, json_t *cfg, bool v3) {
    pg_hparams *hp = &ld->m->hp;
    int rope = 0, n_shared = 0, moe_ffn = 0;
    double scale;
    hp->mla = true;
    if (json_int_(ld, cfg, "q_lora_rank", 0, false, &hp->q_lora_rank) ||
        json_int_(ld, cfg, "kv_lora_rank", 0, true, &hp->kv_lora_rank) ||
        json_int_(ld, cfg, "qk_nope_head_dim", 0, true, &hp->qk_nope_dim) ||
        json_int_(ld, cfg, "qk_rope_head_dim", 0, true, &rope) ||
        json_int_(ld, cfg, "v_head_dim", 0, true, &hp->v_head_dim) ||
        json_int_(ld, cfg, "n_routed_experts", 0, false, &hp->n_expert) ||
        json_int_(ld, cfg, "n_shared_experts", 0, false, &n_shared) ||
        json_int_(ld, cfg, "moe_intermediate_size", 0, false, &moe_ffn) ||
        json_int_(ld, cfg, "n_group", 1, false, &hp->n_expert_group) ||
        json_int_(ld, cfg, "topk_group", 1, false, &hp->n_expert_group_used) ||
        json_num_(ld, cfg, "routed_scaling_factor", 1.0, &scale))
        return -1;
    /* bounded before the sum and the product can overflow (check_hparams_ has the same limits) */
    if ((int64_t)hp->qk_nope_dim + rope > 4096)
        return pg_fail(ld->e, "%s/config.json: bad MLA head size %d + %d", ld->path, hp->qk_nope_dim, rope);
    if ((int64_t)n_shared * moe_ffn > (1 << 20))
        return pg_fail(ld->e, "%s/config.json: bad shared experts: %d of width %d", ld->path, n_shared, moe_ffn);
    hp->head_dim = hp->qk_nope_dim + rope;
    hp->n_rot = rope;
    hp->n_head_kv = hp->n_head;
    hp->shared_ffn_dim = n_shared * moe_ffn;
    hp->expert_weights_scale = (float)scale;
    /* V2 scores by softmax and V3 by sigmoid, unless scoring_func says */
    bool sigmoid = json_object_get(cfg, "scoring_func") ? json_str_is_(cfg, "scoring_func", "sigmoid") : v3;
    hp->gating = sigmoid ? PG_GATING_SIGMOID_TOPK : PG_GATING_SOFTMAX_TOPK;
    json_t *tm = json_object_get(cfg, "topk_method");
    if (tm && !json_is_null(tm) && !json_is_string(tm))
        return pg_fail(ld->e, "%s/config.json: 'topk_method' must be a string", ld->path);
    const char *method = json_is_string(tm) ? json_string_value(tm) : v3 ? "noaux_tc" : "greedy";
    if (strcmp(method, "greedy") == 0) hp->expert_group_rule = PG_GROUP_NONE;
    else if (strcmp(method, "group_limited_greedy") == 0) hp->expert_group_rule = PG_GROUP_MAX;
    else if (strcmp(method, "noaux_tc") == 0) hp->expert_group_rule = PG_GROUP_TOP2_SUM;
    else return pg_fail(ld->e, "%s/config.json: topk_method '%s' is not supported", ld->path, method);
    json_t *ri = json_object_get(cfg, "rope_interleave"); /* V3 only; default true */
    hp->rope_neox_hf = v3 && json_is_boolean(ri) && !json_is_true(ri);
    return 0;
}

/* RoPE scaling of config.json: `rope_scaling` (transformers 4) or
 * `rope_parameters` (5). None or "default": plain RoPE; "yarn": hp->yarn;
 * anything else is refused. */
static int rope_scaling_hf_(loader *ld, json_t *cfg) {
    pg_hparams *hp = &ld->m->hp;
    json_t *rs = json_object_get(cfg, "rope_scaling");
    if (!rs || json_is_null(rs)) rs = json_object_get(cfg, "rope_parameters");
    if (!json_is_object(rs)) return 0;
    json_t *ty = json_object_get(rs, "rope_type");
    if (!ty) ty = json_object_get(rs, "type");
    if (!ty || (json_is_string(ty) && strcmp(json_string_value(ty), "default") == 0)) return 0;
    if (!json_is_string(ty) || strcmp(json_string_value(ty), "yarn") != 0)
        return pg_fail(ld->e, "%s/config.json: RoPE scaling '%s' is not supported yet (supported: default, yarn)",
                       ld->path, json_is_string(ty) ? json_string_value(ty) : "?");
    double factor, fast, slow, attn, mscale, mscale_all;
    int orig;
    if (json_num_(ld, rs, "factor", 0, &factor) || json_num_(ld, rs, "beta_fast", 32, &fast) ||
        json_num_(ld, rs, "beta_slow", 1, &slow) || json_num_(ld, rs, "attention_factor", 0, &attn) ||
        json_num_(ld, rs, "mscale", 0, &mscale) || json_num_(ld, rs, "mscale_all_dim", 0, &mscale_all) ||
        json_int_(ld, rs, "original_max_position_embeddings", 0, true, &orig))
        return -1;
    if (!(factor > 0)) factor = (double)hp->n_ctx_train / (orig ? orig : 1); /* as transformers does */
    /* transformers' attention_factor default (DeepSeek's configs give mscale and mscale_all_dim) */
    if (!(attn > 0))
        attn = mscale != 0 && mscale_all != 0 ? pg_yarn_mscale((float)factor, (float)mscale) /
                                                    pg_yarn_mscale((float)factor, (float)mscale_all)
                                              : pg_yarn_mscale((float)factor, 1.0f);
    json_t *tr = json_object_get(rs, "truncate");
    hp->yarn = (pg_yarn){.factor = (float)factor, .beta_fast = (float)(fast ? fast : 32),
                         .beta_slow = (float)(slow ? slow : 1), .orig_ctx = orig,
                         .truncate = json_is_boolean(tr) ? json_is_true(tr) : 1, .attn_factor = (float)attn,
                         .mscale_all_dim = (float)mscale_all};
    return 0;
}

/* gpt-oss: which layers slide (`layer_types`, as llama.cpp's period) and
 * the clamped SwiGLU; there are no dense FFN layers (intermediate_size is
 * the experts' width). */
static int hparams_gptoss_hf_(loader *ld, json_t *cfg) {
    pg_hparams *hp = &ld->m->hp;
    double alpha, limit;
    hp->ffn_dim = 0;
    if (json_int_(ld, cfg, "sliding_window", 0, false, &hp->n_swa) ||
        json_num_(ld, cfg, "swiglu_alpha", 1.702, &alpha) || json_num_(ld, cfg, "swiglu_limit", 7.0, &limit))
        return -1;
    hp->swiglu_alpha = (float)alpha;
    hp->swiglu_limit = (float)limit;
    json_t *lt = json_object_get(cfg, "layer_types");
    hp->swa_period = 2; /* transformers' default: sliding, full, sliding, ... */
    if (!lt || json_is_null(lt)) return 0;
    if (!json_is_array(lt) || (int)json_array_size(lt) != hp->n_layer)
        return pg_fail(ld->e, "%s/config.json: 'layer_types' must be an array of %d strings", ld->path, hp->n_layer);
    bool any = false;
    for (int l = 0; l < hp->n_layer; l++) {
        const char *t = json_string_value(json_array_get(lt, l));
        if (!t || (strcmp(t, "sliding_attention") && strcmp(t, "full_attention")))
            return pg_fail(ld->e, "%s/config.json: layer_types[%d] must be \"sliding_attention\" or "
                                  "\"full_attention\"", ld->path, l);
        any |= strcmp(t, "sliding_attention") == 0;
    }
    if (!any) {
        hp->n_swa = 0;
        return 0;
    }
    for (int p = 1; p <= hp->n_layer + 1; p++) {
        bool ok = true;
        for (int l = 0; l < hp->n_layer && ok; l++)
            ok = (strcmp(json_string_value(json_array_get(lt, l)), "sliding_attention") == 0) == (l % p < p - 1);
        if (ok) {
            hp->swa_period = p;
            return 0;
        }
    }
    return pg_fail(ld->e, "%s/config.json: layer_types is not a periodic pattern of sliding layers then one full "
                          "layer, which is all GGUF can say", ld->path);
}

static int hparams_hf_(loader *ld) {
    pg_hparams *hp = &ld->m->hp;
    json_error_t je;
    json_t *cfg = json_loads(ld->m->hf->config_json, 0, &je);
    if (!cfg) return pg_fail(ld->e, "%s/config.json: line %d column %d: %s", ld->path, je.line, je.column, je.text);
    int rc = -1;
    if (!json_is_object(cfg)) { pg_fail(ld->e, "%s/config.json: not a JSON object", ld->path); goto done; }
    json_t *mt = json_object_get(cfg, "model_type");
    if (!json_is_string(mt)) { pg_fail(ld->e, "%s/config.json: missing 'model_type'", ld->path); goto done; }
    const pg_arch_info *ai = pg_arch_by_hf_type(json_string_value(mt));
    if (!ai) {
        pg_fail(ld->e, "%s/config.json: unsupported model_type '%s' (supported: llama, mixtral, qwen2_moe, "
                       "qwen3_moe, olmoe, deepseek_v2, deepseek_v3, switch_transformers, gpt_oss)", ld->path, json_string_value(mt));
        goto done;
    }
    hp->arch = ai->arch;
    if (ai->arch == PG_ARCH_SWITCH) {
        rc = switch_hparams_hf_(ld, cfg);
        goto done;
    }
    int dense_ffn = 0, moe_ffn = 0, n_exp_a = 0, n_exp_b = 0, sparse_step = 1;
    if (json_int_(ld, cfg, "num_hidden_layers", 0, true, &hp->n_layer) ||
        json_int_(ld, cfg, "hidden_size", 0, true, &hp->dim) ||
        json_int_(ld, cfg, "num_attention_heads", 0, true, &hp->n_head) ||
        json_int_(ld, cfg, "num_key_value_heads", hp->n_head, false, &hp->n_head_kv) ||
        json_int_(ld, cfg, "vocab_size", 0, true, &hp->vocab) ||
        json_int_(ld, cfg, "max_position_embeddings", 4096, false, &hp->n_ctx_train) ||
        json_int_(ld, cfg, "intermediate_size", 0, false, &dense_ffn) ||
        json_int_(ld, cfg, "moe_intermediate_size", 0, false, &moe_ffn) ||
        json_int_(ld, cfg, "num_experts", 0, false, &n_exp_a) ||
        json_int_(ld, cfg, "num_local_experts", 0, false, &n_exp_b) ||
        json_int_(ld, cfg, "num_experts_per_tok", 0, false, &hp->n_expert_used) ||
        json_int_(ld, cfg, "shared_expert_intermediate_size", 0, false, &hp->shared_ffn_dim) ||
        json_int_(ld, cfg, "decoder_sparse_step", 1, false, &sparse_step))
        goto done;
    if (hp->n_head < 1) { pg_fail(ld->e, "%s/config.json: bad num_attention_heads", ld->path); goto done; }
    if (json_int_(ld, cfg, "head_dim", hp->dim / hp->n_head, false, &hp->head_dim)) goto done;
    hp->n_rot = hp->head_dim;
    hp->n_expert = ai->moe ? (n_exp_a ? n_exp_a : n_exp_b) : 0;
    hp->ffn_dim = dense_ffn;
    /* Mixtral and OLMoE call the expert width intermediate_size */
    hp->expert_ffn_dim = moe_ffn ? moe_ffn : dense_ffn;
    (void)sparse_step; /* which layers have experts is read off the tensors */
    double eps, theta, clip;
    json_t *rp = json_object_get(cfg, "rope_parameters"); /* transformers 5 */
    double theta_default = 10000.0;
    if (json_is_object(rp) && json_is_number(json_object_get(rp, "rope_theta")))
        theta_default = json_number_value(json_object_get(rp, "rope_theta"));
    if (json_num_(ld, cfg, "rms_norm_eps", 1e-6, &eps) || json_num_(ld, cfg, "rope_theta", theta_default, &theta) ||
        json_num_(ld, cfg, "clip_qkv", 0.0, &clip))
        goto done;
    if (rope_scaling_hf_(ld, cfg) || (ai->arch == PG_ARCH_GPTOSS && hparams_gptoss_hf_(ld, cfg))) goto done;
    hp->norm_eps = (float)eps;
    hp->rope_theta = (float)theta;
    hp->clip_qkv = (float)clip;
    hp->rope_neox = true; /* Hugging Face checkpoints use rotate_half */
    hp->gating = ai->gating;
    hp->qk_norm = ai->qk_norm;
    hp->norm_topk = ai->norm_topk_default;
    json_t *nt = json_object_get(cfg, "norm_topk_prob");
    if (json_is_boolean(nt)) hp->norm_topk = json_is_true(nt);
    json_t *mlp_only = json_object_get(cfg, "mlp_only_layers");
    if (mlp_only && !json_is_array(mlp_only)) {
        pg_fail(ld->e, "%s/config.json: 'mlp_only_layers' must be an array", ld->path);
        goto done;
    }
    if (ai->arch == PG_ARCH_DEEPSEEK2) {
        if (hparams_hf_deepseek_(ld, cfg, strcmp(json_string_value(mt), "deepseek_v3") == 0)) goto done;
        hp->rope_neox = hp->rope_neox_hf; /* adjacent pairs unless rope_interleave is false */
    }
    rc = 0;
done:
    json_decref(cfg);
    return rc;
}

/* ---- encoder-decoder: Switch Transformers ----
 *
 * Layers 0..n_enc-1 are the encoder blocks, n_enc.. the decoder blocks.
 * Hugging Face names (`S` = encoder|decoder, `f` = the FF sublayer: 1 in
 * the encoder, 2 in the decoder, after cross-attention):
 *   shared.weight, lm_head.weight (untied only), S.final_layer_norm.weight
 *   S.block.N.layer.0.SelfAttention.{q,k,v,o}.weight, .layer_norm.weight
 *   S.block.0.layer.0.SelfAttention.relative_attention_bias.weight [buckets, H]
 *   decoder.block.N.layer.1.EncDecAttention.{q,k,v,o}.weight, .layer_norm.weight
 *   S.block.N.layer.f.layer_norm.weight, .mlp.{wi,wo}.weight (dense) or
 *   .mlp.router.classifier.weight, .mlp.experts.expert_E.{wi,wo}.weight
 * GGUF, general.architecture "switch" (our own: llama.cpp has no Switch; the
 * names follow its "t5" architecture, the experts its MoE families):
 *   token_embd, output (untied only), enc.output_norm, dec.output_norm
 *   {enc,dec}.blk.N.{attn_norm,attn_q,attn_k,attn_v,attn_o}, blk.0.attn_rel_b [H, buckets]
 *   dec.blk.N.{cross_attn_norm,cross_attn_q,cross_attn_k,cross_attn_v,cross_attn_o}
 *   {enc,dec}.blk.N.{ffn_norm, ffn_up, ffn_down} (dense: wi, wo) or
 *   {enc,dec}.blk.N.{ffn_gate_inp, ffn_up_exps, ffn_down_exps} (sparse)
 * keys: switch.block_count (encoder blocks), switch.decoder_block_count,
 *   switch.attention.relative_buckets_count, switch.attention.relative_max_distance,
 *   switch.decoder_start_token_id, and the usual embedding_length,
 *   feed_forward_length, expert_count, expert_used_count (1), ... */

typedef enum {
    SW_ATTN_NORM, SW_Q, SW_K, SW_V, SW_O, SW_REL_B,
    SW_X_NORM, SW_XQ, SW_XK, SW_XV, SW_XO,
    SW_FFN_NORM, SW_FFN_UP, SW_FFN_DOWN, SW_ROUTER, SW_EXP_UP, SW_EXP_DOWN,
    SW_COUNT
} sw_kind;

/* format arguments: stack name, block, FF sublayer (HF), expert (HF) */
static const char *sw_hf_[SW_COUNT] = {
    "%s.block.%d.layer.0.layer_norm.weight", "%s.block.%d.layer.0.SelfAttention.q.weight",
    "%s.block.%d.layer.0.SelfAttention.k.weight", "%s.block.%d.layer.0.SelfAttention.v.weight",
    "%s.block.%d.layer.0.SelfAttention.o.weight",
    "%s.block.%d.layer.0.SelfAttention.relative_attention_bias.weight",
    "%s.block.%d.layer.1.layer_norm.weight", "%s.block.%d.layer.1.EncDecAttention.q.weight",
    "%s.block.%d.layer.1.EncDecAttention.k.weight", "%s.block.%d.layer.1.EncDecAttention.v.weight",
    "%s.block.%d.layer.1.EncDecAttention.o.weight",
    "%s.block.%d.layer.%d.layer_norm.weight", "%s.block.%d.layer.%d.mlp.wi.weight",
    "%s.block.%d.layer.%d.mlp.wo.weight", "%s.block.%d.layer.%d.mlp.router.classifier.weight",
    "%s.block.%d.layer.%d.mlp.experts.expert_%d.wi.weight", "%s.block.%d.layer.%d.mlp.experts.expert_%d.wo.weight",
};

static const char *sw_gguf_[SW_COUNT] = {
    "%s.blk.%d.attn_norm.weight", "%s.blk.%d.attn_q.weight", "%s.blk.%d.attn_k.weight",
    "%s.blk.%d.attn_v.weight", "%s.blk.%d.attn_o.weight", "%s.blk.%d.attn_rel_b.weight",
    "%s.blk.%d.cross_attn_norm.weight", "%s.blk.%d.cross_attn_q.weight", "%s.blk.%d.cross_attn_k.weight",
    "%s.blk.%d.cross_attn_v.weight", "%s.blk.%d.cross_attn_o.weight",
    "%s.blk.%d.ffn_norm.weight", "%s.blk.%d.ffn_up.weight", "%s.blk.%d.ffn_down.weight",
    "%s.blk.%d.ffn_gate_inp.weight", "%s.blk.%d.ffn_up_exps.weight", "%s.blk.%d.ffn_down_exps.weight",
};

static void sw_name_(loader *ld, sw_kind k, int layer, int expert, char *out, size_t cap) {
    int n_enc = ld->m->hp.n_enc_layer;
    bool enc = layer < n_enc;
    int block = enc ? layer : layer - n_enc;
    if (ld->m->gguf) snprintf(out, cap, sw_gguf_[k], enc ? "enc" : "dec", block);
    else snprintf(out, cap, sw_hf_[k], enc ? "encoder" : "decoder", block, enc ? 1 : 2, expert);
}

/* A float32 copy or view of a tensor of the given GGML shape (norms, biases). */
static int sw_floats_(loader *ld, const char *name, int n_dims, const int64_t *ne, bool required, const float **out) {
    *out = NULL;
    const pg_tensor *t = find_(ld, name);
    if (!t) return required ? pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name) : 0;
    if (check_shape_(ld, t, n_dims, ne)) return -1;
    size_t n = 1;
    for (int i = 0; i < n_dims; i++) n *= (size_t)ne[i];
    if (t->type == PG_TYPE_F32 && ((uintptr_t)t->data & 3) == 0) {
        *out = t->data;
    } else if (t->type == PG_TYPE_F32 || t->type == PG_TYPE_F16 || t->type == PG_TYPE_BF16) {
        float *v = own_(ld->m, n * sizeof(float));
        const uint8_t *p = t->data;
        for (size_t i = 0; i < n; i++) {
            uint16_t h;
            if (t->type == PG_TYPE_F32) memcpy(&v[i], p + 4 * i, 4);
            else {
                memcpy(&h, p + 2 * i, 2);
                v[i] = t->type == PG_TYPE_F16 ? pg_f16_to_f32(h) : pg_bf16_to_f32(h);
            }
        }
        *out = v;
    } else {
        return pg_fail(ld->e, "%s: tensor '%s' has type %s; norms and biases must be F32, F16 or BF16", ld->path,
                       name, pg_type_name(t->type));
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite((*out)[i]))
            return pg_fail(ld->e, "%s: tensor '%s' holds a non-finite value at %zu", ld->path, name, i);
    return 0;
}

static int sw_vec_(loader *ld, sw_kind k, int layer, int n, bool required, const float **out) {
    char name[256];
    sw_name_(ld, k, layer, 0, name, sizeof name);
    int64_t ne[1] = {n};
    return sw_floats_(ld, name, 1, ne, required, out);
}

static int sw_mat_(loader *ld, sw_kind k, int layer, int rows, int cols, pg_mat *out) {
    char name[256];
    sw_name_(ld, k, layer, 0, name, sizeof name);
    return mat_named_(ld, name, rows, cols, true, out);
}

/* Experts: wi -> up [F x D], wo -> down [D x F]; no gate (ReLU FFN). */
static int sw_experts_(loader *ld, int l, pg_layer *L) {
    const pg_hparams *hp = &ld->m->hp;
    int E = hp->n_expert, F = hp->expert_ffn_dim, D = hp->dim;
    L->experts = xcalloc((size_t)E, sizeof(pg_expert));
    char name[256];
    for (int p = 0; p < 2; p++) {
        int rows = p == 0 ? F : D, cols = p == 0 ? D : F;
        sw_kind k = p == 0 ? SW_EXP_UP : SW_EXP_DOWN;
        if (ld->m->gguf) {
            sw_name_(ld, k, l, 0, name, sizeof name);
            const pg_tensor *t = find_(ld, name);
            if (!t) return pg_fail(ld->e, "%s: missing tensor '%s'", ld->path, name);
            int64_t ne[3] = {cols, rows, E};
            if (computable_(ld, t) || check_shape_(ld, t, 3, ne)) return -1;
            size_t stride = pg_row_bytes(t->type, cols) * (size_t)rows;
            for (int e = 0; e < E; e++)
                if (mat_at_(ld, t, (const uint8_t *)t->data + stride * e, rows, cols,
                            p == 0 ? &L->experts[e].up : &L->experts[e].down))
                    return -1;
        } else {
            for (int e = 0; e < E; e++) {
                sw_name_(ld, k, l, e, name, sizeof name);
                if (mat_named_(ld, name, rows, cols, true, p == 0 ? &L->experts[e].up : &L->experts[e].down))
                    return -1;
            }
        }
    }
    return 0;
}

static int switch_bind_(loader *ld) {
    pg_model *m = ld->m;
    pg_hparams *hp = &m->hp;
    int D = hp->dim, H = hp->n_head, qd = hp->n_head * hp->head_dim, n_enc = hp->n_enc_layer;
    bool gg = m->gguf != NULL;
    if (mat_named_(ld, gg ? "token_embd.weight" : "shared.weight", hp->vocab, D, false, &m->tok_embd)) return -1;
    if (!m->tok_embd.data &&
        mat_named_(ld, gg ? "token_embd.weight" : "encoder.embed_tokens.weight", hp->vocab, D, true, &m->tok_embd))
        return -1;
    /* one embedding for both stacks: refuse checkpoints whose stacks have their own */
    static const char *stacks[2] = {"encoder.embed_tokens.weight", "decoder.embed_tokens.weight"};
    for (int i = 0; i < 2 && !gg; i++) {
        const pg_tensor *t = find_(ld, stacks[i]);
        if (t && t->data != m->tok_embd.data &&
            (t->type != m->tok_embd.type || pg_tensor_nelements(t) != (int64_t)hp->vocab * D ||
             memcmp(t->data, m->tok_embd.data, mat_bytes_(&m->tok_embd)) != 0))
            return pg_fail(ld->e, "%s: '%s' differs from the shared embedding (separate embeddings per stack are "
                                  "not supported)", ld->path, stacks[i]);
    }
    int64_t ne_d[1] = {D};
    if (sw_floats_(ld, gg ? "enc.output_norm.weight" : "encoder.final_layer_norm.weight", 1, ne_d, true,
                   &m->enc_output_norm) ||
        sw_floats_(ld, gg ? "dec.output_norm.weight" : "decoder.final_layer_norm.weight", 1, ne_d, true,
                   &m->output_norm))
        return -1;
    /* tied (the config's tie_word_embeddings; GGUF: no output tensor): the
     * decoder output is scaled by D^-1/2 before the shared embedding */
    if (!hp->tied_output) {
        if (mat_named_(ld, gg ? "output.weight" : "lm_head.weight", hp->vocab, D, gg ? false : true, &m->output))
            return -1;
        if (!m->output.data) hp->tied_output = true;
    }
    if (hp->tied_output) m->output = m->tok_embd;
    m->bytes_dense = mat_bytes_(&m->tok_embd) + (hp->tied_output ? 0 : mat_bytes_(&m->output));
    m->layers = xcalloc((size_t)hp->n_layer, sizeof(pg_layer));
    for (int l = 0; l < hp->n_layer; l++) {
        pg_layer *L = &m->layers[l];
        bool dec = l >= n_enc;
        if (sw_vec_(ld, SW_ATTN_NORM, l, D, true, &L->attn_norm) || sw_mat_(ld, SW_Q, l, qd, D, &L->wq) ||
            sw_mat_(ld, SW_K, l, qd, D, &L->wk) || sw_mat_(ld, SW_V, l, qd, D, &L->wv) ||
            sw_mat_(ld, SW_O, l, D, qd, &L->wo) || sw_vec_(ld, SW_FFN_NORM, l, D, true, &L->ffn_norm))
            return -1;
        m->bytes_dense += mat_bytes_(&L->wq) + mat_bytes_(&L->wk) + mat_bytes_(&L->wv) + mat_bytes_(&L->wo);
        if (l == 0 || l == n_enc) { /* the first block of each stack owns the position bias */
            char name[256];
            sw_name_(ld, SW_REL_B, l, 0, name, sizeof name);
            int64_t ne[2] = {H, hp->rel_buckets};
            if (sw_floats_(ld, name, 2, ne, true, &L->rel_bias)) return -1;
        }
        if (dec) {
            if (sw_vec_(ld, SW_X_NORM, l, D, true, &L->cross_norm) || sw_mat_(ld, SW_XQ, l, qd, D, &L->cq) ||
                sw_mat_(ld, SW_XK, l, qd, D, &L->ck) || sw_mat_(ld, SW_XV, l, qd, D, &L->cv) ||
                sw_mat_(ld, SW_XO, l, D, qd, &L->co))
                return -1;
            m->bytes_dense += mat_bytes_(&L->cq) + mat_bytes_(&L->ck) + mat_bytes_(&L->cv) + mat_bytes_(&L->co);
        }
        char name[256];
        sw_name_(ld, SW_ROUTER, l, 0, name, sizeof name);
        L->is_moe = hp->n_expert > 0 && find_(ld, name) != NULL;
        if (!L->is_moe) {
            if (sw_mat_(ld, SW_FFN_UP, l, hp->ffn_dim, D, &L->ffn_up) ||
                sw_mat_(ld, SW_FFN_DOWN, l, D, hp->ffn_dim, &L->ffn_down))
                return -1;
            m->bytes_dense += mat_bytes_(&L->ffn_up) + mat_bytes_(&L->ffn_down);
            continue;
        }
        if (sw_mat_(ld, SW_ROUTER, l, hp->n_expert, D, &L->router) || sw_experts_(ld, l, L)) return -1;
        m->bytes_dense += mat_bytes_(&L->router);
        for (int e = 0; e < hp->n_expert; e++)
            m->bytes_experts += mat_bytes_(&L->experts[e].up) + mat_bytes_(&L->experts[e].down);
    }
    return 0;
}

/* What both formats share: fixed choices of the family, and checks of the
 * values check_hparams_ does not know. */
static int switch_finish_hparams_(loader *ld) {
    pg_hparams *hp = &ld->m->hp;
    const char *p = ld->path;
    hp->arch = PG_ARCH_SWITCH;
    hp->n_rot = hp->head_dim;  /* no RoPE: relative position buckets */
    hp->rope_theta = 10000.0f; /* unused */
    hp->gating = PG_GATING_SOFTMAX_TOPK;
    hp->norm_topk = false;     /* the weight is the top-1 probability */
    hp->qk_norm = PG_QKNORM_NONE;
    hp->ffn_act = PG_FFN_RELU;
    if (hp->n_expert > 0 && hp->n_expert_used != 1)
        return pg_fail(ld->e, "%s: Switch routes each token to 1 expert, not %d", p, hp->n_expert_used);
    if (hp->n_enc_layer < 1 || hp->n_enc_layer >= hp->n_layer)
        return pg_fail(ld->e, "%s: bad encoder/decoder block counts (%d of %d blocks in the encoder)", p,
                       hp->n_enc_layer, hp->n_layer);
    if (hp->rel_buckets < 4 || hp->rel_buckets > 4096)
        return pg_fail(ld->e, "%s: bad relative attention bucket count %d", p, hp->rel_buckets);
    if (hp->rel_max_distance <= hp->rel_buckets / 2 || hp->rel_max_distance > (1 << 20))
        return pg_fail(ld->e, "%s: relative attention max distance %d must exceed half the buckets (%d)", p,
                       hp->rel_max_distance, hp->rel_buckets / 2);
    if (hp->dec_start_token < 0 || hp->dec_start_token >= hp->vocab)
        return pg_fail(ld->e, "%s: decoder start token %d outside the vocabulary", p, hp->dec_start_token);
    if (hp->ffn_dim < 1) return pg_fail(ld->e, "%s: bad FFN size %d", p, hp->ffn_dim);
    if (hp->dec_eos_token >= hp->vocab) hp->dec_eos_token = -1;
    return 0;
}

static int switch_hparams_hf_(loader *ld, json_t *cfg) {
    pg_hparams *hp = &ld->m->hp;
    int n_dec = -1, pad = 0, start = -1;
    double eps;
    if (json_int_(ld, cfg, "num_layers", 0, true, &hp->n_enc_layer) ||
        json_int_(ld, cfg, "num_decoder_layers", -1, false, &n_dec) ||
        json_int_(ld, cfg, "d_model", 0, true, &hp->dim) || json_int_(ld, cfg, "num_heads", 0, true, &hp->n_head) ||
        json_int_(ld, cfg, "d_kv", 0, true, &hp->head_dim) || json_int_(ld, cfg, "d_ff", 0, true, &hp->ffn_dim) ||
        json_int_(ld, cfg, "vocab_size", 0, true, &hp->vocab) ||
        json_int_(ld, cfg, "num_experts", 0, false, &hp->n_expert) ||
        json_int_(ld, cfg, "relative_attention_num_buckets", 32, false, &hp->rel_buckets) ||
        json_int_(ld, cfg, "relative_attention_max_distance", 128, false, &hp->rel_max_distance) ||
        json_int_(ld, cfg, "pad_token_id", 0, false, &pad) ||
        json_int_(ld, cfg, "decoder_start_token_id", -1, false, &start) ||
        json_num_(ld, cfg, "layer_norm_epsilon", 1e-6, &eps))
        return -1;
    if (n_dec < 0) n_dec = hp->n_enc_layer; /* transformers: symmetric by default */
    if (hp->n_enc_layer > 4096 || n_dec > 4096)
        return pg_fail(ld->e, "%s/config.json: bad block counts (%d encoder, %d decoder)", ld->path, hp->n_enc_layer, n_dec);
    hp->n_layer = hp->n_enc_layer + n_dec;
    hp->n_head_kv = hp->n_head;
    hp->n_ctx_train = 512;
    hp->expert_ffn_dim = hp->ffn_dim;
    hp->n_expert_used = hp->n_expert > 0 ? 1 : 0;
    hp->norm_eps = (float)eps;
    hp->dec_start_token = start >= 0 ? start : pad; /* transformers: usually the pad token */
    json_t *eos = json_object_get(cfg, "eos_token_id");
    if (json_is_array(eos)) eos = json_array_get(eos, 0);
    hp->dec_eos_token = json_is_integer(eos) ? (int)json_integer_value(eos) : -1;
    json_t *act = json_object_get(cfg, "dense_act_fn");
    if (act && (!json_is_string(act) || strcmp(json_string_value(act), "relu") != 0))
        return pg_fail(ld->e, "%s/config.json: dense_act_fn '%s' is not supported (relu only)", ld->path,
                       json_is_string(act) ? json_string_value(act) : "?");
    if (json_is_true(json_object_get(cfg, "router_bias")))
        return pg_fail(ld->e, "%s/config.json: router_bias is not supported", ld->path);
    json_t *tie = json_object_get(cfg, "tie_word_embeddings");
    hp->tied_output = !json_is_false(tie); /* default true */
    return switch_finish_hparams_(ld);
}

static int switch_hparams_gguf_(loader *ld, const char *arch) {
    const gguf_file *g = ld->m->gguf;
    pg_hparams *hp = &ld->m->hp;
    int n_dec = 0;
    if (gguf_int_(g, arch, "block_count", 0, true, &hp->n_enc_layer, ld) ||
        gguf_int_(g, arch, "decoder_block_count", 0, true, &n_dec, ld) ||
        gguf_int_(g, arch, "embedding_length", 0, true, &hp->dim, ld) ||
        gguf_int_(g, arch, "attention.head_count", 0, true, &hp->n_head, ld) ||
        gguf_int_(g, arch, "context_length", 512, false, &hp->n_ctx_train, ld) ||
        gguf_int_(g, arch, "feed_forward_length", 0, true, &hp->ffn_dim, ld) ||
        gguf_int_(g, arch, "expert_count", 0, false, &hp->n_expert, ld) ||
        gguf_int_(g, arch, "expert_used_count", 0, false, &hp->n_expert_used, ld) ||
        gguf_int_(g, arch, "attention.relative_buckets_count", 32, false, &hp->rel_buckets, ld) ||
        gguf_int_(g, arch, "attention.relative_max_distance", 128, false, &hp->rel_max_distance, ld) ||
        gguf_int_(g, arch, "decoder_start_token_id", 0, false, &hp->dec_start_token, ld))
        return -1;
    if (n_dec < 1 || n_dec > 4096 || hp->n_enc_layer > 4096)
        return pg_fail(ld->e, "%s: bad decoder block count %d", ld->path, n_dec);
    hp->n_layer = hp->n_enc_layer + n_dec;
    hp->n_head_kv = hp->n_head;
    if (hp->n_head < 1) return pg_fail(ld->e, "%s: bad head count %d", ld->path, hp->n_head);
    if (gguf_int_(g, arch, "attention.key_length", hp->dim / hp->n_head, false, &hp->head_dim, ld) ||
        gguf_int_(g, arch, "expert_feed_forward_length", hp->ffn_dim, false, &hp->expert_ffn_dim, ld))
        return -1;
    hp->norm_eps = gguf_float_(g, arch, "attention.layer_norm_rms_epsilon", 1e-6);
    const pg_tensor *emb = gguf_find_tensor(g, "token_embd.weight");
    if (!emb || emb->n_dims != 2) return pg_fail(ld->e, "%s: missing 2-D tensor 'token_embd.weight'", ld->path);
    if (emb->ne[1] > INT32_MAX) return pg_fail(ld->e, "%s: vocabulary too large", ld->path);
    hp->vocab = (int)emb->ne[1];
    hp->tied_output = gguf_find_tensor(g, "output.weight") == NULL;
    int64_t eos;
    hp->dec_eos_token = gguf_get_int(g, "tokenizer.ggml.eos_token_id", &eos) && eos >= 0 && eos < INT32_MAX ? (int)eos : -1;
    return switch_finish_hparams_(ld);
}

int pg_hparams_from_config(const char *json, const char *path, pg_hparams *hp, pg_error *e) {
    hf_dir hf = {.config_json = (char *)json};
    pg_model m = {.hf = &hf};
    loader ld = {.m = &m, .path = path, .e = e};
    int rc = hparams_hf_(&ld) || check_hparams_(&ld) ? -1 : 0;
    *hp = m.hp;
    return rc;
}

pg_model *pg_model_open(const char *path, pg_error *e) {
    pg_kernels_init(-1);
    pg_model *m = xcalloc(1, sizeof *m);
    m->path = xstrdup(path);
    loader ld = {.m = m, .path = path, .e = e};
    if (hf_is_dir(path)) {
        m->hf = xcalloc(1, sizeof *m->hf);
        if (hf_dir_open(m->hf, path, e)) { free(m->hf); m->hf = NULL; goto fail; }
        if (hparams_hf_(&ld) || check_hparams_(&ld) || rope_setup_(&ld) || bind_weights_(&ld)) goto fail;
        char tokpath[4096];
        snprintf(tokpath, sizeof tokpath, "%s/tokenizer.json", path);
        if (access(tokpath, R_OK) == 0) {
            m->tok = pg_tokenizer_from_json(tokpath, e);
            /* Switch checkpoints ship a SentencePiece Unigram tokenizer,
             * which pregate cannot read yet: their ids still work */
            if (!m->tok && m->hp.arch != PG_ARCH_SWITCH) goto fail;
            if (!m->tok) *e = (pg_error){{0}};
        }
    } else {
        m->gguf = xcalloc(1, sizeof *m->gguf);
        if (gguf_open(m->gguf, path, NULL, e)) { free(m->gguf); m->gguf = NULL; goto fail; }
        if (hparams_gguf_(&ld) || check_hparams_(&ld) || rope_setup_(&ld) || bind_weights_(&ld)) goto fail;
        if (gguf_find(m->gguf, "tokenizer.ggml.model")) {
            m->tok = pg_tokenizer_from_gguf(m->gguf, e);
            if (!m->tok) goto fail;
        }
    }
    if (m->tok && pg_tokenizer_n_vocab(m->tok) > m->hp.vocab) {
        pg_fail(e, "%s: tokenizer has %d tokens but the model only %d", path, pg_tokenizer_n_vocab(m->tok), m->hp.vocab);
        goto fail;
    }
    return m;
fail:
    pg_model_free(m);
    return NULL;
}

void pg_model_free(pg_model *m) {
    if (!m) return;
    if (m->layers)
        for (int l = 0; l < m->hp.n_layer; l++) free(m->layers[l].experts);
    free(m->layers);
    for (int i = 0; i < m->n_owned; i++) free(m->owned[i]);
    free(m->owned);
    pg_tokenizer_free(m->tok);
    if (m->gguf) { gguf_close(m->gguf); free(m->gguf); }
    if (m->hf) { hf_dir_close(m->hf); free(m->hf); }
    free(m->path);
    free(m);
}

int pg_model_check_tensors(const pg_model *m, pg_error *e) {
    uint64_t n = m->gguf ? m->gguf->n_tensors : m->hf->n_tensors;
    const pg_tensor *ts = m->gguf ? m->gguf->tensors : m->hf->tensors;
    float *row = NULL;
    int64_t cap = 0;
    for (uint64_t i = 0; i < n; i++) {
        const pg_tensor *t = &ts[i];
        const pg_type_traits *tt = pg_type_info(t->type);
        if (!tt || !tt->can_compute || !t->data) continue; /* not weights pregate reads (e.g. integer tensors) */
        int64_t cols = t->ne[0], rows = pg_tensor_nelements(t) / (cols ? cols : 1);
        size_t rb = pg_row_bytes(t->type, cols);
        if (!rb) continue; /* the loader refuses such a tensor if it is used */
        if (cols > cap) {
            cap = cols;
            row = xrealloc(row, (size_t)cap * sizeof(float));
        }
        for (int64_t r = 0; r < rows; r++) {
            pg_dequantize_row_ref(t->type, cols, (const char *)t->data + (size_t)r * rb, row);
            for (int64_t c = 0; c < cols; c++)
                if (!isfinite(row[c])) {
                    pg_fail(e, "%s: tensor '%s' (%s) row %lld column %lld is %s", m->path, t->name,
                            pg_type_name(t->type), (long long)r, (long long)c, isnan(row[c]) ? "NaN" : "infinite");
                    free(row);
                    return -1;
                }
        }
    }
    free(row);
    return 0;
}

void pg_model_print(const pg_model *m, FILE *out) {
    const pg_hparams *hp = &m->hp;
    const pg_arch_info *ai = pg_arch_get(hp->arch);
    int n_moe = 0;
    for (int l = 0; l < hp->n_layer; l++) n_moe += m->layers[l].is_moe;
    fprintf(out, "file:            %s (%s)\n", m->path, m->gguf ? "GGUF" : "Hugging Face directory");
    fprintf(out, "architecture:    %s\n", ai->name);
    fprintf(out, "layers:          %d (%d with experts)\n", hp->n_layer, n_moe);
    fprintf(out, "hidden size:     %d\n", hp->dim);
    fprintf(out, "heads:           %d (KV heads %d, head dim %d, RoPE dims %d, %s layout)\n", hp->n_head,
            hp->n_head_kv, hp->head_dim, hp->n_rot, hp->rope_neox ? "neox" : "normal");
    fprintf(out, "vocabulary:      %d%s\n", hp->vocab, m->tok ? "" : " (no tokenizer in the file)");
    fprintf(out, "context (train): %d\n", hp->n_ctx_train);
    fprintf(out, "RoPE base:       %g\n", hp->rope_theta);
    if (hp->yarn.factor > 0)
        fprintf(out, "RoPE scaling:    YaRN factor %g, original context %d, beta %g/%g, attention factor %g%s\n",
                hp->yarn.factor, hp->yarn.orig_ctx, hp->yarn.beta_fast, hp->yarn.beta_slow, hp->yarn.attn_factor,
                hp->yarn.truncate ? "" : ", not truncated");
    if (hp->yarn.factor > 0 && hp->yarn.mscale_all_dim != 0)
        fprintf(out, "                 softmax scale x mscale(factor, %g)^2\n", hp->yarn.mscale_all_dim);
    if (hp->n_swa > 0) {
        int n_swa_layers = 0;
        for (int l = 0; l < hp->n_layer; l++) n_swa_layers += m->layers[l].swa;
        fprintf(out, "sliding window:  %d positions on %d of %d layers (period %d)\n", hp->n_swa, n_swa_layers,
                hp->n_layer, hp->swa_period);
    }
    if (m->layers[0].sinks) fprintf(out, "attention sinks: yes\n");
    fprintf(out, "RMSNorm eps:     %g\n", hp->norm_eps);
    if (hp->ffn_dim) fprintf(out, "dense FFN:       %d\n", hp->ffn_dim);
    if (hp->n_expert) {
        fprintf(out, "experts:         %d, %d per token, FFN %d, gating %s%s\n", hp->n_expert, hp->n_expert_used,
                hp->expert_ffn_dim, pg_gating_name(hp->gating), hp->norm_topk ? ", renormalised" : "");
        if (hp->expert_pregated)
            fprintf(out, "pre-gated:       yes: layer l's router reads layer l-1's FFN input (--prefetch native)\n");
        if (hp->shared_ffn_dim) fprintf(out, "shared expert:   FFN %d\n", hp->shared_ffn_dim);
        if (hp->expert_group_rule != PG_GROUP_NONE)
            fprintf(out, "expert groups:   %d, %d used (%s)\n", hp->n_expert_group, hp->n_expert_group_used,
                    pg_group_rule_name(hp->expert_group_rule));
        if (hp->expert_weights_scale > 0 && hp->expert_weights_scale != 1)
            fprintf(out, "weights scale:   %g\n", hp->expert_weights_scale);
        bool bias = false;
        for (int l = 0; l < hp->n_layer; l++) bias |= m->layers[l].exp_probs_b != NULL;
        if (bias) fprintf(out, "selection bias:  yes (score correction, for the choice only)\n");
        if (hp->swiglu_limit > 0)
            fprintf(out, "expert MLP:      clamped SwiGLU (alpha %g, limit %g)%s\n", hp->swiglu_alpha, hp->swiglu_limit,
                    m->layers[0].router_b ? ", router bias" : "");
    }
    if (hp->mla)
        fprintf(out, "MLA:             q rank %d, KV latent %d, q/k head %d (nope %d + rope %d), v head %d; "
                     "KV cache %d floats per token and layer\n", hp->q_lora_rank, hp->kv_lora_rank, hp->head_dim,
                hp->qk_nope_dim, hp->n_rot, hp->v_head_dim, hp->kv_lora_rank + hp->n_rot);
    if (hp->qk_norm) fprintf(out, "q/k norm:        %s\n", hp->qk_norm == PG_QKNORM_HEAD ? "per head" : "full projection");
    if (hp->n_enc_layer)
        fprintf(out, "encoder-decoder: %d encoder + %d decoder blocks, relative position buckets %d up to %d, "
                     "ReLU FFN, decoder start token %d, EOS %d\n", hp->n_enc_layer, hp->n_layer - hp->n_enc_layer,
                hp->rel_buckets, hp->rel_max_distance, hp->dec_start_token, hp->dec_eos_token);
    fprintf(out, "output head:     %s\n", hp->tied_output ? "tied to embeddings" : "separate");
    uint64_t nt = m->gguf ? m->gguf->n_tensors : m->hf->n_tensors;
    fprintf(out, "tensors:         %llu\n", (unsigned long long)nt);
    fprintf(out, "weight types:    embeddings %s, attention %s", pg_type_name(m->tok_embd.type),
            pg_type_name(hp->mla ? m->layers[0].wkv_a.type : m->layers[0].wq.type));
    for (int l = 0; l < hp->n_layer; l++)
        if (m->layers[l].is_moe) { fprintf(out, ", experts %s", pg_type_name(m->layers[l].experts[0].up.type)); break; }
    fprintf(out, "\n");
    fprintf(out, "dense bytes:     %zu (%.2f MiB)\n", m->bytes_dense, m->bytes_dense / 1048576.0);
    fprintf(out, "expert bytes:    %zu (%.2f MiB)", m->bytes_experts, m->bytes_experts / 1048576.0);
    if (n_moe) fprintf(out, ", %.1f KiB per expert", m->bytes_experts / 1024.0 / n_moe / hp->n_expert);
    fprintf(out, "\n");
}
