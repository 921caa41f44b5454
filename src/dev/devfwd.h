/* devfwd.h - the forward pass on a device (dev.h): a GPU, or the CPU
 * stand-in that tests the same host-side scheduling without one.
 *
 * The session (forward.h) keeps its host-side state: routing, the
 * predictors, the expert cache and its telemetry are forward.c's and
 * cache.c's, shared with the CPU pass. What moves to the device: the dense
 * weights (copied once), the KV cache, the activations, every kernel, and
 * the fast tier of experts (cache slots in device memory, filled by the I/O
 * threads on copy streams of their own; all experts copied once when
 * resident). Per MoE layer the host reads back the router logits (and the
 * predictor's), T x E floats: the page table lives on the host, which
 * decides what to fetch, so that is one synchronisation per MoE layer.
 *
 * Families: the decoder-only ones without latent attention (llama,
 * mixtral, qwen2moe, qwen3moe, olmoe, gpt-oss with its sinks, sliding
 * windows, YaRN, clamped SwiGLU and expert biases, which stay resident on
 * the device); deepseek2 (MLA) and switch (encoder-decoder) are refused
 * with a message. Sessions of several sequences work as on the CPU
 * (pg_session_eval_batch: the server).
 */
#ifndef PG_DEVFWD_H
#define PG_DEVFWD_H

#include <stdbool.h>
#include <stdint.h>

#include "../util.h"
#include "dev.h"

struct pg_session;
typedef struct pg_devfwd pg_devfwd;

/* Where a predictor's logits come from (forward.c's predictors):
 * ROUTER  the target layer's router over its FFN norm of the residual stream
 * HEAD    a learned head (predictor.h) over the RMS-normalised stream, without bias
 * NATIVE  the target layer's router over this layer's FFN input (pre-gated models) */
typedef enum { PG_PRED_ROUTER = 0, PG_PRED_HEAD, PG_PRED_NATIVE } pg_pred_input;

/* Moves the session's model and state onto dev (not owned; it must outlive
 * the session). Call after pg_session_set_offload, whose params.dev must be
 * dev when offloading. Fails with a message on an unsupported family or
 * weight type, or when device memory runs out. */
int pg_session_set_device(struct pg_session *s, pg_dev *dev, pg_error *e);
void pg_devfwd_free(pg_devfwd *df); /* NULL-safe */
/* Device memory the model's weights and the session's state take. */
size_t pg_devfwd_bytes(const pg_devfwd *df);

/* forward.c's hooks: one chunk of T rows at s->row_seq / s->row_pos; want
 * as forward.c's forward_chunk_. */
int pg_devfwd_chunk(struct pg_session *s, const int32_t *tokens, int T, const bool *want, float *out, pg_error *e);
void pg_devfwd_pred_logits(struct pg_session *s, pg_pred_input in, int target, int T, float *logits);

#endif
