/* pregate.h - the public C API of libpregate.
 *
 * Open a model (a GGUF file or a Hugging Face directory), make a context
 * (KV cache, threads, optionally expert offloading), evaluate tokens, read
 * logits. Every function that can fail on bad input returns an error
 * status and writes a one-line message naming the file and the problem
 * into the caller's buffer (err may be NULL). Nothing here exits or prints.
 *
 *   char err[512];
 *   pregate_model *m = pregate_model_open("models/demo-moe.gguf", err, sizeof err);
 *   pregate_context_params p;
 *   pregate_context_params_default(&p);
 *   pregate_context *c = pregate_context_new(m, &p, err, sizeof err);
 *   int32_t ids[256];
 *   int n = pregate_tokenize(m, "It was", 6, true, ids, 256, err, sizeof err);
 *   pregate_eval(c, ids, n, err, sizeof err);
 *   int32_t next = pregate_argmax(c);
 *   ...
 *   pregate_context_free(c);
 *   pregate_model_close(m);
 */
#ifndef PREGATE_H
#define PREGATE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct pregate_model pregate_model;
typedef struct pregate_context pregate_context;

/* NULL on failure (err says why). */
pregate_model *pregate_model_open(const char *path, char *err, size_t err_size);
void pregate_model_close(pregate_model *m); /* NULL-safe */
int pregate_model_n_vocab(const pregate_model *m);
int pregate_model_n_layer(const pregate_model *m);
int pregate_model_n_expert(const pregate_model *m); /* 0 for a dense model */
bool pregate_model_has_tokenizer(const pregate_model *m);

/* Encodes text into at most max_ids ids; returns the count, or -1 (no
 * tokenizer, or more than max_ids ids needed: err says how many). */
int pregate_tokenize(const pregate_model *m, const char *text, size_t len, bool add_bos, int32_t *ids,
                     int max_ids, char *err, size_t err_size);
/* The bytes a token stands for; returns their count (may exceed cap). */
size_t pregate_token_to_bytes(const pregate_model *m, int32_t id, char *out, size_t cap);
bool pregate_token_is_eog(const pregate_model *m, int32_t id);

typedef struct {
    int n_ctx;              /* <= 0: the model's training context, at most 4096 */
    int n_threads;          /* <= 0: all cores */
    /* Expert offloading: NULL expert_mem keeps every expert resident. */
    const char *expert_mem; /* "25%", "512MiB", "2GiB" */
    const char *prefetch;   /* "none", "next-layer-all", "pregate" (default) */
    const char *link;       /* "none" (default), "pcie4", "nvme", "12GBps,20us", ... */
} pregate_context_params;

void pregate_context_params_default(pregate_context_params *p);
pregate_context *pregate_context_new(pregate_model *m, const pregate_context_params *p, char *err,
                                     size_t err_size);
void pregate_context_free(pregate_context *c); /* NULL-safe */
/* Forgets every evaluated position. */
void pregate_context_reset(pregate_context *c);
int pregate_context_n_past(const pregate_context *c);

/* Evaluates n tokens after the ones already in the context. 0 or -1. */
int pregate_eval(pregate_context *c, const int32_t *tokens, int n, char *err, size_t err_size);
/* Logits of the last token evaluated (n_vocab floats), valid until the
 * next pregate_eval. */
const float *pregate_logits(const pregate_context *c);
int32_t pregate_argmax(const pregate_context *c);

#ifdef __cplusplus
}
#endif

#endif
