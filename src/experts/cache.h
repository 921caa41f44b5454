/* cache.h - the fast tier: expert slots within a byte budget, filled by
 * I/O threads from the slow tier (store.h).
 *
 * Every expert of the model is one unit (gate, up and down back to back in
 * one slot). A page table maps (layer, expert) to a slot. A slot is EMPTY,
 * LOADING or READY, and READY slots carry a reference count: an expert being
 * computed is never evicted. Requests wait in two queues, demand (a layer is
 * waiting for it) before prefetch (a prediction); a queued prefetch whose
 * layer has already run for the current step is dropped, and a demand for an
 * expert still queued as a prefetch promotes it.
 *
 * Eviction (among READY slots with no references):
 *   PG_EVICT_LRU        least recently used;
 *   PG_EVICT_LFU        least frequently used (ties: least recent);
 *   PG_EVICT_LOOKAHEAD  never an expert predicted for the coming layers;
 *                       of the rest, the one whose layer comes furthest
 *                       ahead in the cyclic layer order (plain LRU evicts
 *                       exactly the layer needed next), ties by LRU.
 *
 * The cache never changes numbers: it copies the same bytes the file holds,
 * and a failed read is reported, never computed with.
 */
#ifndef PG_CACHE_H
#define PG_CACHE_H

#include <stdbool.h>
#include <stdint.h>

#include "../model.h"
#include "store.h"

typedef enum { PG_EVICT_LRU = 0, PG_EVICT_LFU, PG_EVICT_LOOKAHEAD } pg_evict;

const char *pg_evict_name(pg_evict p);
int pg_evict_parse(const char *s, pg_evict *out, pg_error *e);

/* Per-layer counters (all monotonic). */
typedef struct {
    uint64_t acquires;          /* experts demanded by the forward pass */
    uint64_t hits;              /* ... already READY when demanded */
    uint64_t late;              /* ... LOADING (a prefetch in flight) when demanded */
    uint64_t misses;            /* ... absent: a demand load was issued */
    uint64_t prefetch_issued;   /* prefetch loads started */
    uint64_t prefetch_used;     /* prefetched experts later demanded */
    uint64_t prefetch_wasted;   /* prefetched experts evicted or dropped unused */
    uint64_t prefetch_dropped;  /* queued prefetches dropped before reading */
    uint64_t bytes_read;
    double stall_s;             /* compute waiting in pg_cache_acquire */
    /* prediction quality, summed over steps */
    uint64_t pred_true;         /* |predicted ∩ actual| */
    uint64_t pred_total;        /* |predicted| */
    uint64_t actual_total;      /* |actual| */
} pg_cache_layer_stats;

typedef struct pg_cache pg_cache;

/* Budget in bytes; at least one layer's top-k experts must fit, else error
 * naming the minimum. n_io_threads >= 1. */
pg_cache *pg_cache_new(pg_model *m, pg_store *store, size_t budget, pg_evict policy, int n_io_threads,
                       pg_error *e);
/* The same with the slots in a device's memory (dev.h): each read lands
 * in the I/O thread's host staging buffer, then the device copies it into
 * the slot (after the slot's fence: dev.h). With host_tier, every expert
 * is read once, here, into the device's pinned host memory, which is then
 * the slow tier: slots are filled straight from it (the store is not used
 * again). NULL dev: pg_cache_new (host_tier must be false). */
struct pg_dev;
pg_cache *pg_cache_new_dev(pg_model *m, pg_store *store, size_t budget, pg_evict policy, int n_io_threads,
                           struct pg_dev *dev, bool host_tier, pg_error *e);
void pg_cache_free(pg_cache *c); /* joins the I/O threads; NULL-safe */

size_t pg_cache_slot_bytes(const pg_cache *c);
int pg_cache_n_slots(const pg_cache *c);
/* Smallest budget pg_cache_new accepts for this model. */
size_t pg_cache_min_budget(const pg_model *m);

/* Marks the start of a new step (a token or chunk) and of a layer's FFN:
 * queued prefetches for layers already done are dropped. */
void pg_cache_begin_step(pg_cache *c);
void pg_cache_begin_layer(pg_cache *c, int layer);
void pg_cache_end_layer(pg_cache *c, int layer);
/* The routing of `layer` is known and every expert it uses is requested
 * (pg_cache_request) from now on: its queued prefetches that were not
 * requested were predicted wrongly, and are dropped rather than loaded. */
void pg_cache_routed(pg_cache *c, int layer);

/* A hint: load these experts of `layer` if absent (never blocks, may be
 * dropped when no slot is free). `confidence` is the predictor's chance
 * that a prefetched expert is used (1: certain): a prefetch only evicts
 * experts used less often per step than that. Marks them protected from
 * LOOKAHEAD eviction until that layer has run. */
void pg_cache_prefetch(pg_cache *c, int layer, const int *experts, int n, float confidence);
/* The forward pass needs these experts of `layer` now: counts each as a
 * hit (READY), late (a prefetch still loading or queued) or miss (absent),
 * pins it against eviction, and issues demand loads for the absent ones
 * without waiting, so that all are in flight before the first acquire.
 * Every requested expert must then be acquired (and released) or
 * cancelled. */
void pg_cache_request(pg_cache *c, int layer, const int *experts, int n);
/* Waits until any of the requested experts is READY, takes a reference
 * and returns its weights (pointing into the slot); *which is its index in
 * the list. Returns NULL with e set if that expert's read failed (its pin
 * is dropped; a later request retries the read). */
const pg_expert *pg_cache_acquire_any(pg_cache *c, int layer, const int *experts, int n, int *which,
                                      pg_error *e);
/* How long pg_cache_acquire_any waits for a read before it fails with
 * "read did not complete" (a stalled device must fail the request, not
 * hang it). 0: wait forever. The late read keeps its slot LOADING and
 * completes normally if it ever returns. */
#define PG_CACHE_DEFAULT_TIMEOUT_S 60.0
void pg_cache_set_timeout(pg_cache *c, double seconds);
/* pg_cache_request + pg_cache_acquire_any of one expert. */
const pg_expert *pg_cache_acquire(pg_cache *c, int layer, int expert, pg_error *e);
void pg_cache_release(pg_cache *c, int layer, int expert);
/* Slots on a device (pg_cache_new_dev): queues the fence of an acquired
 * expert's slot after the kernels that read it, before its release (dev.h),
 * so that a refill waits for them. */
void pg_cache_fence(pg_cache *c, int layer, int expert);
/* Drops the pins of pg_cache_request for experts that will not be acquired
 * (after a failure). */
void pg_cache_cancel(pg_cache *c, int layer, const int *experts, int n);

/* Records a prediction for `layer` against what it then routed to. */
void pg_cache_score_prediction(pg_cache *c, int layer, const int *predicted, int n_pred, const int *actual,
                               int n_actual);

const pg_cache_layer_stats *pg_cache_stats(const pg_cache *c, int layer);
/* The counters summed over layers, and the peak fast-tier bytes, read under
 * the cache's lock: safe while the I/O threads are loading (the server's
 * /metrics reads them between steps). peak_bytes may be NULL. */
void pg_cache_stats_total(pg_cache *c, pg_cache_layer_stats *sum, size_t *peak_bytes);
void pg_cache_stats_reset(pg_cache *c);
size_t pg_cache_peak_bytes(const pg_cache *c); /* slots ever filled x slot bytes */
/* Slots READY or LOADING and references held (must be 0 between steps). */
int pg_cache_slots_in_use(const pg_cache *c);
int pg_cache_refs_held(const pg_cache *c);
/* Empties every slot (waits for loads in flight). */
void pg_cache_clear(pg_cache *c);

#endif
