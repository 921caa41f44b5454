/* trace.h - routing traces: the experts every position routed to in every
 * layer, their weights, and optionally the hidden state from which a
 * predictor names each layer's experts one layer early.
 *
 * In memory and on disk, hidden[p][t] is the predictor's input for layer t
 * at position p: for t = 0 the token's embedding, for t >= 1 the residual
 * stream just before layer t-1's FFN (where pre-gating predicts layer t).
 *
 * File format (little endian), written by pg_trace_write:
 *   char magic[4] = "PGTR"; u32 version = 1;
 *   u32 n_layer, n_expert, k, dim; u32 flags (bit 0: hidden states present);
 *   u64 n_pos;
 *   i16 experts[n_pos][n_layer][k]   (-1 where a layer has no experts)
 *   f32 weights[n_pos][n_layer][k]
 *   f16 hidden[n_pos][n_layer][dim]  (only if flags bit 0)
 */
#ifndef PG_TRACE_H
#define PG_TRACE_H

#include <stdbool.h>
#include <stdint.h>

#include "../util.h"

typedef struct {
    int n_layer, n_expert, k, dim;
    bool with_hidden;
    int n_pos, cap_pos;
    int16_t *experts;  /* [cap_pos][n_layer][k] */
    float *weights;    /* [cap_pos][n_layer][k] */
    uint16_t *hidden;  /* [cap_pos][n_layer][dim], IEEE half; NULL unless with_hidden */
} pg_trace;

void pg_trace_init(pg_trace *t, int n_layer, int n_expert, int k, int dim, bool with_hidden);
/* Grows the trace to hold positions [0, n_pos). */
void pg_trace_reserve(pg_trace *t, int n_pos);
void pg_trace_free(pg_trace *t); /* NULL-safe; leaves t empty */
int pg_trace_write(const pg_trace *t, const char *path, pg_error *e);
/* Reads and validates a trace file (sizes against the file length). */
int pg_trace_read(pg_trace *t, const char *path, pg_error *e);
/* The same on bytes in memory (path names them in messages). */
int pg_trace_parse(pg_trace *t, const void *data, size_t len, const char *path, pg_error *e);

#endif
