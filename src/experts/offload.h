/* offload.h - experts in a slow tier, and what predicts which to fetch.
 *
 * A session with offloading (pg_session.off) computes experts from the
 * fast-tier cache instead of the model mapping. Before each layer's FFN the
 * predictor names the experts of the coming layer(s), and the cache starts
 * loading them while this layer computes:
 *
 *   PG_PREFETCH_NONE      on demand: route, fetch what is missing, compute
 *                         each expert as soon as it has arrived
 *   PG_PREFETCH_NONE_SERIAL  on demand, the paper's MoE-OnDemand: every
 *                         missing expert of the layer has arrived before
 *                         the first is computed (no overlap at all)
 *   PG_PREFETCH_NEXT_ALL  every expert of layer l+1 while layer l runs
 *                         (the paper's MoE-Prefetch)
 *   PG_PREFETCH_PREGATE   training-free pre-gating: layer l+1's router (and
 *                         its FFN norm) applied to layer l's residual stream,
 *                         top k + extra of its experts; depth 2 also l+2
 *   PG_PREFETCH_LEARNED   a learned head per layer (predictor.h, fitted by
 *                         `pregate calibrate` from a trace), top k + extra
 *   PG_PREFETCH_ORACLE    the experts a recorded trace says layer l+1 will
 *                         use (upper bound; needs a trace of the same tokens)
 *   PG_PREFETCH_NATIVE    a natively pre-gated model (model.h,
 *                         expert_pregated): layer l+1's routing is computed
 *                         exactly from layer l's FFN input, so the prefetch
 *                         is the routing itself (layer 0: on demand)
 *   PG_PREFETCH_RESIDENT  no offloading: every expert from the mapping
 *
 * Layer 0 is predicted at the start of each step from the embeddings.
 * A misprediction costs time, never accuracy: the experts the router picks
 * are always the ones computed.
 */
#ifndef PG_OFFLOAD_H
#define PG_OFFLOAD_H

#include "cache.h"
#include "store.h"
#include "predictor.h"
#include "trace.h"

typedef enum {
    PG_PREFETCH_RESIDENT = 0,
    PG_PREFETCH_NONE,
    PG_PREFETCH_NEXT_ALL,
    PG_PREFETCH_PREGATE,
    PG_PREFETCH_ORACLE,
    PG_PREFETCH_LEARNED,
    PG_PREFETCH_NATIVE,
    PG_PREFETCH_NONE_SERIAL,
} pg_prefetch_mode;

/* "resident", "none", "next-layer-all", "pregate", "oracle", "learned", "native", "none-serial" */
const char *pg_prefetch_name(pg_prefetch_mode m);
int pg_prefetch_parse(const char *s, pg_prefetch_mode *out, pg_error *e);



typedef struct {
    pg_prefetch_mode mode;
    size_t expert_mem;      /* fast-tier budget in bytes */
    pg_evict evict;
    pg_store_kind store;
    pg_link link;
    int io_threads;         /* default 2 */
    double io_timeout;      /* seconds an expert read may take before the
                               evaluation fails (PG_CACHE_DEFAULT_TIMEOUT_S); 0: forever */
    int extra;              /* pregate: fetch top k + extra */
    int depth;              /* pregate: 1 or 2 layers ahead */
    float min_precision;    /* pregate: a layer whose recent prediction precision
                               (moving average) is below this is predicted but
                               not prefetched, so that poor predictions cannot
                               do worse than on demand; 0 = always prefetch */
    const pg_trace *oracle; /* PG_PREFETCH_ORACLE */
    const pg_predictor *predictor; /* PG_PREFETCH_LEARNED */
    struct pg_dev *dev;     /* fast tier in this device's memory (dev.h); NULL: host memory */
    bool host_tier;         /* with dev: the slow tier is the device's pinned host memory, filled
                               from the file once (`--store host`; the link model is not applied) */
} pg_offload_params;

void pg_offload_params_default(pg_offload_params *p);

/* "2GiB", "512MiB", "300MB", "1e9", or "25%" of the model's expert bytes. */
int pg_parse_mem(const char *s, size_t expert_bytes, size_t *out, pg_error *e);

typedef struct pg_offload {
    pg_offload_params p;
    pg_store *store;
    pg_cache *cache;
    /* predictor scratch */
    float *xn, *logits, *probs;  /* [B][D], [B][E], [E] */
    float *sel_w;                /* [E] routing weights (native: discarded) */
    int *idx;                    /* [E] */
    int *pred;                   /* [L][E]: predicted experts per layer (this step) */
    int *n_pred;                 /* [L] */
    bool *have_pred;             /* [L] */
    float *precision;            /* [L] moving average of each layer's prediction precision */
    int *uni;                    /* [E] union of the experts a chunk routes to */
    const pg_expert **got;       /* [E] none-serial: the acquired experts of a window */
    unsigned char *mark;         /* [E] */
    float *ones;                 /* [D] RMS normalisation without a weight (learned heads) */
} pg_offload;

pg_offload *pg_offload_new(pg_model *m, const pg_offload_params *p, pg_error *e);
void pg_offload_free(pg_offload *o); /* NULL-safe */

#endif
