/* convert.h - other model formats to GGUF.
 *
 *  - llama2.c checkpoints (Karpathy's legacy format: 7 int32 of config,
 *    then float32 weights) with their tokenizer.bin, to a llama GGUF;
 *  - any model pregate opens (a Hugging Face directory, or a GGUF), to a
 *    GGUF laid out as llama.cpp's converter lays it out (experts stacked
 *    per projection, llama/mixtral Q/K rows permuted for the normal RoPE
 *    layout).
 */
#ifndef PG_CONVERT_H
#define PG_CONVERT_H

#include "model.h"
#include "util.h"

int pg_convert_llama2c(const char *checkpoint, const char *tokenizer_bin, const char *out, pg_error *e);
int pg_model_write_gguf(const pg_model *m, const char *out, pg_error *e);

#endif
