/* quantize.h - GGUF to GGUF requantization (`pregate quantize`).
 *
 * A target is a single format (every 2-D weight in it) or one of
 * llama.cpp's mixes (Q4_K_M, Q5_K_M, Q6_K, Q8_0, MXFP4_MOE), which choose a
 * type per tensor from its name, layer and shape the way llama.cpp's
 * llama_tensor_get_type does (the rules are in quantize.c). Tensors are
 * converted row by row while the output file is written, so a model of any
 * size needs memory for a few MiB of rows, not for the model.
 */
#ifndef PG_QUANTIZE_H
#define PG_QUANTIZE_H

#include <stdint.h>

#include "gguf.h"
#include "tensor.h"
#include "util.h"

typedef enum {
    PG_MIX_NONE = 0,  /* a single format */
    PG_MIX_Q4_K_M,
    PG_MIX_Q5_K_M,
    PG_MIX_MXFP4_MOE, /* experts MXFP4, other weights Q8_0 (gpt-oss) */
} pg_quant_mix;

typedef struct {
    pg_type base;        /* type of most 2-D weights */
    pg_quant_mix mix;
    int expert_type;     /* >= 0: type of the expert tensors (*_exps), overriding the rules */
    int ftype;           /* the general.file_type (llama_ftype) value written */
    int n_threads;       /* <= 0: one */
    /* Called after each chunk written, when not NULL; `name` is the tensor
     * being written. */
    void (*progress)(void *ctx, uint64_t done_bytes, uint64_t total_bytes, const char *name);
    void *progress_ctx;
} pg_quantize_params;

/* Parses a target name: "Q4_K_M", "Q8_0", "MXFP4", "F16", ... into p->base,
 * p->mix and p->ftype (other fields untouched). -1 with a message listing
 * the accepted names if unknown. */
int pg_quantize_parse_type(const char *name, pg_quantize_params *p, pg_error *e);
/* A single format accepted by --expert-type (a weight format or F16/BF16/F32), or -1. */
int pg_quantize_parse_format(const char *name);

/* What a tensor of the model becomes: its target type, after the mix rules
 * and the fallback for rows that are not a multiple of the type's block
 * (Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0, Q2_K/Q3_K/IQ4_XS -> IQ4_NL,
 * TQ* -> Q4_0, then F16). n_layer is the model's block count (layer rules),
 * n_expert its expert count (0 if dense). */
pg_type pg_quantize_tensor_type(const pg_quantize_params *p, const pg_tensor *t, int n_layer, int n_expert,
                                bool has_output);

/* Converts n_rows rows of `cols` elements from src_type to dst_type (any
 * pair with a dequantizer and quantizer). Fails, naming `what` and the row,
 * if an input value is not finite or an output scale overflows (inf/NaN
 * after dequantization). */
int pg_convert_rows(pg_type src_type, const void *src, pg_type dst_type, void *dst, int64_t n_rows, int64_t cols,
                    float *scratch, const char *what, pg_error *e);

/* Reads GGUF `in`, writes `out` with every tensor converted per p and the
 * metadata copied (general.file_type and general.quantization_version set).
 * Errors name the file and the tensor. */
int pg_quantize_file(const char *in, const char *out, const pg_quantize_params *p, pg_error *e);

#endif
