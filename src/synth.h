/* synth.h - a random-weight MoE model of any size, written as GGUF.
 *
 * Offloading benchmarks need models whose bytes and shapes are real but whose
 * values do not matter; pg_synth_write makes one without a download. Every
 * weight is a pure function of (seed, tensor index, element index) through a
 * counter-based generator (splitmix64), so the data is streamed to the file
 * in chunks, generated in parallel, and the same parameters always give a
 * byte-identical file.
 *
 * Matrices: uniform with std 1/sqrt(row length); norms (and Qwen3's q/k
 * norms) 1.0; the router F32 with the same std; Q8_0 is the exact GGML
 * quantization of those floats, other formats pregate's quantization of them. With random weights routing is near-uniform,
 * which is the hardest case for an expert cache.
 *
 * Tokenizer: byte-level GPT-2 with no merges: ids 0..255 are the bytes (in the
 * GPT-2 byte-to-unicode alphabet), 256 is <|endoftext|> (bos and eos), the
 * rest are <|synth_N|> control tokens that encoding never produces.
 */
#ifndef PG_SYNTH_H
#define PG_SYNTH_H

#include <stdint.h>

#include "quantize.h"
#include "tensor.h"
#include "util.h"

typedef enum {
    PG_SYNTH_QWEN3MOE = 0, /* GGUF "qwen3moe": q/k norms per head */
    PG_SYNTH_MIXTRAL = 1,  /* GGUF "llama" with expert_count */
    PG_SYNTH_SWITCH = 2,   /* GGUF "switch" (model.c): encoder-decoder, n_layer blocks in each
                              stack, top-1 ReLU experts (F = expert_ffn, also the dense FFN) in
                              the odd blocks, tied output, 32 relative buckets up to 128 */
} pg_synth_arch;

typedef struct {
    pg_synth_arch arch;
    int n_layer;       /* switch: blocks per stack (encoder and decoder each) */
    int dim;
    int n_expert, n_expert_used, expert_ffn;
    int n_head, n_head_kv;
    int head_dim;      /* 0: dim / n_head */
    int vocab;         /* >= 257 */
    pg_type type;      /* matrices: F32, F16, BF16 or Q8_0 (when quant is NULL) */
    /* Not NULL: each matrix gets the type `pregate quantize` would give it
     * for this target (Q4_K_M, Q6_K, MXFP4, ...; see quantize.h), quantized
     * from the same random floats; routers and norms stay F32. */
    const pg_quantize_params *quant;
    uint64_t seed;
    int n_ctx;         /* context_length metadata; 0: 4096 */
    int n_threads;     /* generation threads; <= 0: all CPUs */
    /* Optional: called after each chunk with the data bytes written so far. */
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} pg_synth_params;

/* Byte counts, using the loader's definitions (pg_model.bytes_dense counts
 * the embeddings, output head, attention matrices and routers; norms are in
 * neither). data_bytes: all tensor data without alignment padding.
 * bytes_per_expert: of the largest layer's experts (mixes such as Q4_K_M
 * give some layers' ffn_down more bits). */
typedef struct {
    uint64_t data_bytes;
    uint64_t dense_bytes;
    uint64_t expert_bytes;    /* all layers */
    uint64_t bytes_per_expert; /* one expert of one layer (gate + up + down), the largest */
    int n_tensors;
} pg_synth_sizes;

#define PG_SYNTH_MIN_VOCAB 257

/* Checks the parameters (after defaults are applied); -1 with a one-line
 * message naming the offending parameter. */
int pg_synth_check(const pg_synth_params *p, pg_error *e);
/* Fills s; -1 (e set) if the parameters are invalid. */
int pg_synth_sizes_of(const pg_synth_params *p, pg_synth_sizes *s, pg_error *e);
/* Writes the model to `out` (via OUT.tmp + rename). */
int pg_synth_write(const pg_synth_params *p, const char *out, pg_error *e);

/* The GGUF type name ("F16", ...) parsed to a type pregate can synthesize;
 * -1 if the name is none of F32, F16, BF16, Q8_0 (case-insensitive). */
int pg_synth_parse_type(const char *name);

#endif
