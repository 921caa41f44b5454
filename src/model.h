/* model.h - architectures, hyperparameters and the weights of a loaded model.
 *
 * One forward pass (forward.c) serves every family; what differs between
 * families is data: the entry of the architecture table (pg_arch_info) and
 * which optional tensors a layer has. A model is opened from a GGUF file or
 * a Hugging Face directory; both end in the same pg_model, whose matrices
 * point into the file mappings (no copies, except small vectors converted
 * to float32 and tensors that were not aligned in the file).
 *
 * Experts are reached only through layer->experts[e] (three pg_mat), so
 * that the offloading code can change where an expert's bytes live without
 * touching the forward pass.
 */
#ifndef PG_MODEL_H
#define PG_MODEL_H

#include <stdio.h>

#include "gguf.h"
#include "kernels/kernels.h"
#include "router.h"
#include "safetensors.h"
#include "tokenizer.h"
#include "util.h"

/* Tokens evaluated together in one forward pass (prompts go in chunks). */
#define PG_MAX_BATCH 32

typedef enum {
    PG_ARCH_LLAMA = 0,
    PG_ARCH_MIXTRAL,
    PG_ARCH_QWEN2MOE,
    PG_ARCH_QWEN3MOE,
    PG_ARCH_OLMOE,
    PG_ARCH_DEEPSEEK2,
    PG_ARCH_SWITCH,  /* encoder-decoder (Switch Transformers, T5 blocks); encdec.h */
    PG_ARCH_GPTOSS,
    PG_ARCH_COUNT
} pg_arch;

typedef enum {
    PG_QKNORM_NONE = 0,
    PG_QKNORM_HEAD, /* RMSNorm over each head's head_dim values (Qwen3) */
    PG_QKNORM_FULL, /* RMSNorm over the whole q / k projection (OLMoE) */
} pg_qknorm;

/* The activation of dense FFNs and experts. */
typedef enum {
    PG_FFN_SILU_GLU = 0, /* down(silu(gate x) * up x) */
    PG_FFN_RELU,         /* down(relu(up x)); no gate (T5 / Switch wi -> up, wo -> down) */
} pg_ffn_act;

/* What distinguishes one family from another. */
typedef struct {
    pg_arch arch;
    const char *name;        /* our name, and GGUF general.architecture */
    const char *gguf_arch;   /* general.architecture in GGUF files */
    const char *hf_type;     /* config.json model_type */
    pg_qknorm qk_norm;
    pg_gating gating;
    bool norm_topk_default;  /* renormalise top-k weights unless the file says */
    bool rope_neox_gguf;     /* RoPE layout of GGUF files (llama.cpp convention) */
    bool moe;                /* has routed experts */
    bool shared_expert;      /* may have a shared expert with a sigmoid gate */
    const char *hf_type_alt; /* a second config.json model_type, or NULL */
} pg_arch_info;

const pg_arch_info *pg_arch_get(pg_arch a);
const pg_arch_info *pg_arch_by_hf_type(const char *model_type);

typedef struct {
    pg_arch arch;
    int n_layer;
    int dim;             /* hidden size D */
    int n_head, n_head_kv, head_dim;
    int n_rot;           /* dims rotated by RoPE (= head_dim here) */
    int vocab;
    int n_ctx_train;
    int ffn_dim;         /* dense FFN width (dense layers) */
    int n_expert, n_expert_used, expert_ffn_dim;
    int shared_ffn_dim;  /* 0: no shared expert */
    float norm_eps;
    float rope_theta;
    bool rope_neox;
    pg_gating gating;
    bool norm_topk;
    /* Natively pre-gated (the Pre-gated MoE paper's algorithm; GGUF key
     * `<arch>.expert_pregated` = true): the router stored with layer l
     * reads the FFN input (after ffn_norm) of layer l-1, so layer l's
     * experts are known exactly while layer l-1 runs; layer 0's router
     * reads its own FFN input. `--prefetch native` fetches them then. */
    bool expert_pregated;
    pg_qknorm qk_norm;
    float clip_qkv;      /* 0: none (OLMoE option) */
    bool tied_output;
    /* group-limited routing and the weight scale (DeepSeek; router.h):
     * rule NONE and scale 0 (read as 1) for the other families */
    pg_group_rule expert_group_rule;
    int n_expert_group, n_expert_group_used;
    float expert_weights_scale;
    /* Multi-head Latent Attention (deepseek2; mla.h), false/0 for the
     * others. Then head_dim = qk_nope + qk_rope (a q/k head), n_rot =
     * qk_rope, n_head_kv = n_head, and the KV cache holds kv_lora_rank +
     * qk_rope floats per token and layer. */
    bool mla;
    int q_lora_rank;     /* 0: q_proj straight from the hidden state */
    int kv_lora_rank, qk_nope_dim, v_head_dim;
    bool rope_neox_hf;   /* deepseek_v3 rope_interleave=false: rotate_half */
    pg_ffn_act ffn_act;
    /* Encoder-decoder models (n_enc_layer > 0, encdec.h): layers
     * 0..n_enc_layer-1 are the encoder blocks, the rest the decoder blocks,
     * so that every block has its own layer index for the expert cache. */
    int n_enc_layer;
    int rel_buckets, rel_max_distance; /* T5 relative position buckets */
    int dec_start_token;                /* the decoder's first input token */
    int dec_eos_token;                  /* ends the decoder's output (-1: none) */
    /* gpt-oss */
    int n_swa;           /* sliding window: a token of a sliding layer sees itself and the
                          * n_swa - 1 positions before it; 0: every layer attends to all */
    int swa_period;      /* layer l slides iff l % swa_period < swa_period - 1 (llama.cpp's
                          * pattern; 2: 0, 2, 4, ... slide, 1, 3, ... are full) */
    pg_yarn yarn;        /* YaRN RoPE scaling (kernels.h); yarn.factor 0: none */
    float swiglu_alpha, swiglu_limit; /* swiglu_limit > 0: clamped SwiGLU experts (pgk.swiglu_oai) */
} pg_hparams;

/* The routing rule of a model's MoE layers (pg_route_ex). */
pg_route_cfg pg_hparams_route(const pg_hparams *hp);

typedef struct {
    pg_mat gate, up, down; /* gate, up: [F rows x D cols]; down: [D x F] */
    /* optional biases [F], [F], [D] (gpt-oss): small, so they stay resident
     * (model memory) and travel with the struct when the cache copies it */
    const float *b_gate, *b_up, *b_down;
} pg_expert;

typedef struct {
    const float *attn_norm;                /* [D] */
    pg_mat wq, wk, wv, wo;                 /* [H*hd x D], [KV*hd x D] x2, [D x H*hd] */
    const float *bq, *bk, *bv;             /* optional biases (Qwen2) */
    const float *q_norm, *k_norm;          /* [hd] (HEAD) or [H*hd]/[KV*hd] (FULL) */
    const float *ffn_norm;                 /* [D] */
    bool is_moe;
    pg_mat ffn_gate, ffn_up, ffn_down;     /* dense layers: [F x D], [F x D], [D x F] */
    pg_mat router;                         /* [E x D] */
    pg_expert *experts;                    /* [E] */
    bool has_shared;
    pg_expert shared;                      /* [Fs x D] ... */
    pg_mat shared_gate;                    /* [1 x D], may have rows == 0 (no gate) */
    const float *exp_probs_b;              /* [E] selection bias (DeepSeek-V3), or NULL */
    /* MLA (hp.mla): wq [H*qk x D] when q_lora_rank is 0, else: */
    pg_mat wq_a, wq_b;                     /* [q_lora x D], [H*qk x q_lora] */
    const float *q_a_norm;                 /* [q_lora] */
    pg_mat wkv_a;                          /* [kv_lora+rope x D]: latent | shared rope key */
    const float *kv_a_norm;                /* [kv_lora] */
    pg_mat wk_b;                           /* [H*kv_lora x nope]: head h's W_UK^T, rows h*kv_lora.. */
    pg_mat wv_b;                           /* [H*v x kv_lora]: head h's W_UV, rows h*v.. */
    /* encoder-decoder blocks (encdec.h) */
    const float *rel_bias;                 /* [buckets][H]: first block of each stack, else NULL */
    const float *cross_norm;               /* decoder blocks: [D] */
    pg_mat cq, ck, cv, co;                 /* decoder blocks: cross-attention, as wq, wk, wv, wo */
    const float *bo;                       /* optional output projection bias [D] (gpt-oss) */
    const float *sinks;                    /* optional attention sink logit per head [H] (gpt-oss) */
    const float *router_b;                 /* optional router bias [E] (gpt-oss) */
    bool swa;                              /* sliding-window attention (hp.n_swa) */
} pg_layer;

typedef struct pg_model {
    char *path;
    pg_hparams hp;
    pg_mat tok_embd;      /* [V x D] */
    const float *output_norm;
    pg_mat output;        /* [V x D] (== tok_embd when tied) */
    pg_layer *layers;
    const float *enc_output_norm; /* encoder-decoder: the encoder's final norm [D] */
    pg_tokenizer *tok;    /* NULL if the file has none */
    const float *rope_inv_freq; /* [n_rot/2] YaRN frequencies; NULL: base^(-2i/n_rot) */
    /* bytes of weights by kind, for inspect and the memory budget */
    size_t bytes_dense, bytes_experts;
    /* where the bytes come from */
    gguf_file *gguf;
    hf_dir *hf;
    void **owned;         /* buffers the loader allocated (converted vectors) */
    int n_owned, cap_owned;
} pg_model;

/* Opens a GGUF file or a Hugging Face directory. Returns NULL with e set
 * ("PATH: problem") on any problem: unknown architecture, missing tensor,
 * shape mismatch, a type pregate cannot compute, bad hyperparameters. */
pg_model *pg_model_open(const char *path, pg_error *e);
void pg_model_free(pg_model *m); /* NULL-safe */

/* The hyperparameters a Hugging Face directory's config.json (the
 * NUL-terminated text `json`) gives, checked as pg_model_open checks them;
 * `path` names the directory in errors. For tests and the fuzz target. */
int pg_hparams_from_config(const char *json, const char *path, pg_hparams *hp, pg_error *e);

/* Human-readable summary (inspect). */
void pg_model_print(const pg_model *m, FILE *out);

/* `--check-tensors`: reads every weight of every tensor pregate computes
 * with (dequantised row by row) and fails on the first NaN or infinity,
 * naming the file, the tensor and the row. Reads the whole file, so it is
 * opt-in, as llama.cpp's flag of the same name. */
int pg_model_check_tensors(const pg_model *m, pg_error *e);

#endif
