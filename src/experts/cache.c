/* cache.c - see cache.h.
 *
 * One mutex guards the page table, the slots and both queues; two
 * condition variables wake I/O threads (work queued) and waiters (a load
 * finished or a slot was released). The work under the lock is a few
 * pointer updates per expert; the reads themselves run unlocked.
 */
#include "cache.h"
#include "../dev/dev.h"

#include <errno.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef enum { SLOT_EMPTY = 0, SLOT_LOADING, SLOT_READY } slot_state;

typedef struct {
    slot_state state;
    int layer, expert; /* owner when not EMPTY */
    int refs;
    bool prefetched;   /* filled by a prefetch, not demanded since */
    uint64_t last_use, uses;
    uint64_t loaded_step; /* c->step when it was filled */
    uint8_t *data;
    pg_expert w;       /* matrices pointing into data */
} slot;

typedef struct {
    int slot;          /* -1: absent */
    int want;          /* pins by pg_cache_request, released by pg_cache_release */
    bool queued;       /* waiting in a queue */
    bool queued_demand;
    bool protect;      /* predicted for a coming layer (LOOKAHEAD keeps it) */
    bool failed;       /* its last read failed; acquire reports and clears */
    char *err;
} entry;

typedef struct {
    int layer, expert;
    uint64_t step;
    float confidence;  /* prefetch: the predictor's chance that it is used */
    bool cancelled;    /* promoted to demand, or dropped */
} request;

typedef struct {
    request *q;
    int head, len, cap;
} queue;

struct pg_cache {
    pg_model *m;
    pg_store *store;
    pg_evict policy;
    int L, E;
    size_t slot_bytes;
    int n_slots;
    slot *slots;
    entry *pt;                /* [L][E] */
    pg_expert_loc *loc;       /* [L][E] */
    queue demand, prefetch;
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t *io;
    int n_io;
    struct io_arg { pg_cache *c; int i; } *io_args;
    bool timed;               /* PG_STORE_TIMED: slots hold no bytes (store.h) */
    pg_dev *dev;              /* slots in a device's memory (NULL: host memory) */
    void **staging;           /* [n_io] host buffers the reads land in before a device copy */
    pg_dev_slots *dslots;     /* the slots' fences and copy streams on dev */
    uint8_t *host_tier;       /* every expert in the device's pinned host memory, or NULL */
    size_t *host_off;         /* [L][E] where each expert is in host_tier */
    bool stop;
    uint64_t tick, step;
    int cur_layer, done_layer;
    int routed_layer;         /* the last layer whose routing this step is known */
    int filled, peak_filled;
    double timeout_s;         /* acquire gives up after this long (0: never) */
    pg_cache_layer_stats *stats; /* [L] */
};

const char *pg_evict_name(pg_evict p) {
    return p == PG_EVICT_LRU ? "lru" : p == PG_EVICT_LFU ? "lfu" : "lookahead";
}

int pg_evict_parse(const char *s, pg_evict *out, pg_error *e) {
    if (!strcmp(s, "lru")) *out = PG_EVICT_LRU;
    else if (!strcmp(s, "lfu")) *out = PG_EVICT_LFU;
    else if (!strcmp(s, "lookahead")) *out = PG_EVICT_LOOKAHEAD;
    else return pg_fail(e, "unknown eviction policy '%s' (lru, lfu, lookahead)", s);
    return 0;
}

static size_t mat_bytes_(const pg_mat *w) { return w->row_bytes * (size_t)w->rows; }

static size_t expert_bytes_(const pg_expert *x) {
    return mat_bytes_(&x->gate) + mat_bytes_(&x->up) + mat_bytes_(&x->down);
}

static size_t max_expert_bytes_(const pg_model *m) {
    size_t mx = 0;
    for (int l = 0; l < m->hp.n_layer; l++)
        if (m->layers[l].is_moe)
            for (int e = 0; e < m->hp.n_expert; e++) {
                size_t b = expert_bytes_(&m->layers[l].experts[e]);
                mx = b > mx ? b : mx;
            }
    return mx;
}

size_t pg_cache_min_budget(const pg_model *m) { return max_expert_bytes_(m) * (size_t)m->hp.n_expert_used; }

static entry *ent_(pg_cache *c, int l, int e) { return &c->pt[(size_t)l * c->E + e]; }

/* ---- queues ---- */

static void q_push_(queue *q, request r) {
    if (q->len == q->cap) {
        int cap = q->cap ? 2 * q->cap : 64;
        request *n = xmalloc((size_t)cap * sizeof *n);
        for (int i = 0; i < q->len; i++) n[i] = q->q[(q->head + i) % q->cap];
        free(q->q);
        q->q = n;
        q->head = 0;
        q->cap = cap;
    }
    q->q[(q->head + q->len++) % q->cap] = r;
}

static bool q_pop_(queue *q, request *r) {
    if (!q->len) return false;
    *r = q->q[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    return true;
}

static void q_cancel_(queue *q, int layer, int expert) {
    for (int i = 0; i < q->len; i++) {
        request *r = &q->q[(q->head + i) % q->cap];
        if (r->layer == layer && r->expert == expert) r->cancelled = true;
    }
}

/* ---- slots ---- */

static void bind_slot_(pg_cache *c, slot *s) {
    const pg_expert *src = &c->m->layers[s->layer].experts[s->expert];
    s->w = *src;
    if (c->timed) return; /* the slot addresses the mapping: nothing was copied */
    s->w.gate.data = s->data;
    s->w.up.data = s->data + mat_bytes_(&src->gate);
    s->w.down.data = s->data + mat_bytes_(&src->gate) + mat_bytes_(&src->up);
}

/* next use of layer v, seen from the layer now running: 1 = the next layer */
static int distance_(const pg_cache *c, int v) {
    int cur = c->cur_layer < 0 ? 0 : c->cur_layer;
    return (v - cur - 1 + 2 * c->L) % c->L + 1;
}

/* How often a resident expert has been used per step since it was loaded:
 * the chance that evicting it costs a reload. */
static double use_rate_(const pg_cache *c, const slot *s) {
    uint64_t steps = c->step > s->loaded_step ? c->step - s->loaded_step : 1;
    return (double)s->uses / (double)steps;
}

/* A slot to fill: an empty one, else a victim by policy; -1 if none.
 * A prefetch never evicts an expert predicted for a coming layer, nor one
 * used more often than the prefetch's own chance of being used
 * (`confidence`): a poor prediction must not push out a popular expert. */
static int find_slot_(pg_cache *c, bool for_prefetch, float confidence) {
    int best = -1;
    bool best_protected = true;
    for (int i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        if (s->state == SLOT_EMPTY) return i;
        if (s->state != SLOT_READY || s->refs) continue;
        entry *en = ent_(c, s->layer, s->expert);
        if (en->want) continue;
        bool prot = c->policy == PG_EVICT_LOOKAHEAD && en->protect;
        if (for_prefetch && (prot || use_rate_(c, s) > confidence)) continue;
        if (best < 0 || (best_protected && !prot)) { best = i; best_protected = prot; continue; }
        if (prot && !best_protected) continue;
        slot *b = &c->slots[best];
        bool better;
        if (c->policy == PG_EVICT_LFU)
            better = s->uses < b->uses || (s->uses == b->uses && s->last_use < b->last_use);
        else if (c->policy == PG_EVICT_LOOKAHEAD) {
            int ds = distance_(c, s->layer), db = distance_(c, b->layer);
            better = ds > db || (ds == db && s->last_use < b->last_use);
        } else
            better = s->last_use < b->last_use;
        if (better) best = i;
    }
    if (best >= 0) { /* evict */
        slot *s = &c->slots[best];
        if (s->prefetched) c->stats[s->layer].prefetch_wasted++;
        ent_(c, s->layer, s->expert)->slot = -1;
        s->state = SLOT_EMPTY;
        s->prefetched = false;
        c->filled--;
    }
    return best;
}

/* A prefetch still queued when its layer's routing is known is of no use
 * (pg_cache_routed): the experts routed to were requested as demand, which
 * cancels their queued prefetch, so what is left was predicted wrongly. */
static bool stale_(const pg_cache *c, const request *r) {
    int known = c->done_layer > c->routed_layer ? c->done_layer : c->routed_layer;
    return r->step < c->step || (r->step == c->step && r->layer <= known);
}

/* Reads expert r into slot si: straight into host slots, or through I/O
 * thread io's staging buffer onto the device. */
static int fill_(pg_cache *c, int io, int si, const request *r, pg_error *e) {
    const pg_expert_loc *loc = &c->loc[(size_t)r->layer * c->E + r->expert];
    slot *s = &c->slots[si];
    if (!c->dev) return pg_store_read(c->store, loc, s->data, e);
    if (c->host_tier) {
        const uint8_t *src = c->host_tier + c->host_off[(size_t)r->layer * c->E + r->expert];
        return c->dev->ops->fill_slot(c->dev, c->dslots, io, si, s->data, src, loc->bytes, e);
    }
    if (pg_store_read(c->store, loc, c->staging[io], e)) return -1;
    return c->dev->ops->fill_slot(c->dev, c->dslots, io, si, s->data, c->staging[io], loc->bytes, e);
}

static void *io_main_(void *arg) {
    pg_cache *c = ((struct io_arg *)arg)->c;
    int io = ((struct io_arg *)arg)->i;
    /* The link model sleeps until each transfer's end: with Linux's default
     * 50 us timer slack those wake-ups ran late by more than a small
     * expert's whole transfer (the demo model decoded 25-35% slower). */
    prctl(PR_SET_TIMERSLACK, 1000UL);
    pthread_mutex_lock(&c->mu);
    for (;;) {
        request r = {0};
        bool demand;
        while (!c->stop && !c->demand.len && !c->prefetch.len) pthread_cond_wait(&c->work, &c->mu);
        if (c->stop) break;
        demand = q_pop_(&c->demand, &r);
        if (!demand) q_pop_(&c->prefetch, &r);
        if (r.cancelled) continue;
        entry *en = ent_(c, r.layer, r.expert);
        if (en->slot >= 0) { en->queued = false; continue; }
        if (!demand && stale_(c, &r)) {
            en->queued = false;
            c->stats[r.layer].prefetch_dropped++;
            continue;
        }
        int si;
        while ((si = find_slot_(c, !demand, r.confidence)) < 0 && demand && !c->stop)
            pthread_cond_wait(&c->done, &c->mu);
        if (si < 0) { /* prefetch with no room: drop it */
            en->queued = false;
            if (!demand) c->stats[r.layer].prefetch_dropped++;
            continue;
        }
        slot *s = &c->slots[si];
        s->state = SLOT_LOADING;
        s->layer = r.layer;
        s->expert = r.expert;
        s->refs = 0;
        s->prefetched = !en->queued_demand;
        s->uses = 0;
        s->loaded_step = c->step;
        en->slot = si;
        en->queued = false;
        if (s->prefetched) c->stats[r.layer].prefetch_issued++;
        if (++c->filled > c->peak_filled) c->peak_filled = c->filled;
        pthread_mutex_unlock(&c->mu);
        pg_error e = {{0}};
        int rc = fill_(c, io, si, &r, &e);
        pthread_mutex_lock(&c->mu);
        if (rc == 0) {
            bind_slot_(c, s);
            s->state = SLOT_READY;
            c->stats[r.layer].bytes_read += c->loc[(size_t)r.layer * c->E + r.expert].bytes;
        } else {
            s->state = SLOT_EMPTY;
            s->prefetched = false;
            c->filled--;
            en->slot = -1;
            en->failed = true;
            free(en->err);
            en->err = xstrdup(e.msg);
        }
        en->queued_demand = false;
        pthread_cond_broadcast(&c->done);
    }
    pthread_mutex_unlock(&c->mu);
    return NULL;
}

/* A slot's memory, touched once here. The first write to fresh anonymous
 * memory faults and zeroes every page, which costs more than the copy of
 * an expert into it (a 9 MiB expert: about 6 ms against 1.5 ms here), so
 * without this the first loads of every run pay it. Slots of 2 MiB or more
 * ask for transparent huge pages (used where the kernel's setting is
 * `madvise` or `always`): fewer faults, and fewer TLB misses while the
 * expert is computed (PREGATE_NO_THP=1 leaves them out, for comparisons). */
static void *slot_alloc_(size_t bytes) {
    const size_t huge = (size_t)2 << 20;
    bool big = bytes >= huge && !getenv("PREGATE_NO_THP");
    void *p = xmalloc_aligned(big ? huge : 4096, bytes);
#ifdef MADV_HUGEPAGE
    /* the whole huge pages inside the slot only: rounding the slot up would
     * add up to 2 MiB per slot to the resident set beyond --expert-mem */
    if (big) (void)madvise(p, bytes / huge * huge, MADV_HUGEPAGE); /* advice: refused is fine */
#endif
    memset(p, 0, bytes);
    return p;
}

pg_cache *pg_cache_new(pg_model *m, pg_store *store, size_t budget, pg_evict policy, int n_io, pg_error *e) {
    return pg_cache_new_dev(m, store, budget, policy, n_io, NULL, false, e);
}

/* The slow tier in the device's pinned host memory: every expert read once. */
static int fill_host_tier_(pg_cache *c, pg_error *e) {
    size_t total = 0;
    c->host_off = xcalloc((size_t)c->L * c->E, sizeof(size_t));
    for (size_t i = 0; i < (size_t)c->L * c->E; i++) {
        c->host_off[i] = total;
        total += c->loc[i].bytes;
    }
    if (!(c->host_tier = c->dev->ops->host_alloc(c->dev, total ? total : 1)))
        return pg_fail(e, "%s: cannot pin %.2f GiB of host memory for the experts (--store host): use --store mmap",
                       c->dev->name, total / 1073741824.0);
    for (size_t i = 0; i < (size_t)c->L * c->E; i++)
        if (c->loc[i].bytes && pg_store_read(c->store, &c->loc[i], c->host_tier + c->host_off[i], e)) return -1;
    return 0;
}

/* The slots' memory and the staging buffers: on the device, or slot_alloc_. */
static int alloc_slots_(pg_cache *c, pg_error *e) {
    c->slots = xcalloc((size_t)c->n_slots, sizeof(slot));
    if (!c->dev) {
        for (int i = 0; i < c->n_slots && !c->timed; i++) c->slots[i].data = slot_alloc_(c->slot_bytes);
        return 0;
    }
    const pg_dev_ops *d = c->dev->ops;
    for (int i = 0; i < c->n_slots; i++)
        if (!(c->slots[i].data = d->alloc(c->dev, c->slot_bytes)))
            return pg_fail(e, "%s: cannot allocate expert slot %d of %d (%.2f MiB each) in device memory", c->dev->name,
                           i + 1, c->n_slots, c->slot_bytes / 1048576.0);
    c->staging = xcalloc((size_t)c->n_io, sizeof(void *));
    for (int i = 0; i < c->n_io; i++)
        if (!(c->staging[i] = d->host_alloc(c->dev, c->slot_bytes)))
            return pg_fail(e, "%s: cannot allocate a %.2f MiB staging buffer in host memory", c->dev->name,
                           c->slot_bytes / 1048576.0);
    return (c->dslots = d->slots_new(c->dev, c->n_slots, c->n_io, e)) ? 0 : -1;
}

/* After the I/O threads have stopped. Queued kernels may still read the
 * slots: a device is synchronised before its memory is given back. */
static void free_slots_(pg_cache *c) {
    if (c->dev) {
        c->dev->ops->sync(c->dev, NULL);
        c->dev->ops->slots_free(c->dev, c->dslots);
        if (c->host_tier) c->dev->ops->host_free(c->dev, c->host_tier);
        free(c->host_off);
    }
    for (int i = 0; c->slots && i < c->n_slots; i++) {
        if (!c->dev) free(c->slots[i].data);
        else c->dev->ops->free(c->dev, c->slots[i].data);
    }
    for (int i = 0; c->staging && i < c->n_io; i++) c->dev->ops->host_free(c->dev, c->staging[i]);
    free(c->staging);
    free(c->slots);
}

pg_cache *pg_cache_new_dev(pg_model *m, pg_store *store, size_t budget, pg_evict policy, int n_io, pg_dev *dev,
                           bool host_tier, pg_error *e) {
    PG_ASSERT(dev || !host_tier);
    if (!m->gguf) {
        pg_fail(e, "%s: expert offloading needs a GGUF file (convert it with `pregate convert --from hf`)", m->path);
        return NULL;
    }
    if (m->hp.n_expert == 0) {
        pg_fail(e, "%s: the model has no experts to offload", m->path);
        return NULL;
    }
    size_t sb = max_expert_bytes_(m), min = pg_cache_min_budget(m);
    if (budget < min) {
        pg_fail(e, "expert memory %.2f MiB is below the minimum for this model: %.2f MiB (%d experts of %.2f MiB, "
                   "one layer's top-k)", budget / 1048576.0, min / 1048576.0, m->hp.n_expert_used, sb / 1048576.0);
        return NULL;
    }
    bool timed = pg_store_kind_used(store) == PG_STORE_TIMED;
    if (timed && dev) {
        pg_fail(e, "%s: the timed store moves no bytes, so it cannot feed a device: use --store mmap", dev->name);
        return NULL;
    }
    pg_cache *c = xcalloc(1, sizeof *c);
    c->m = m;
    c->store = store;
    c->timed = timed;
    c->policy = policy;
    c->L = m->hp.n_layer;
    c->E = m->hp.n_expert;
    c->slot_bytes = sb;
    int total = 0;
    for (int l = 0; l < c->L; l++) total += m->layers[l].is_moe ? c->E : 0;
    c->n_slots = (int)(budget / sb) < total ? (int)(budget / sb) : total;
    c->dev = dev;
    c->n_io = n_io < 1 ? 1 : n_io;
    if (alloc_slots_(c, e)) {
        free_slots_(c);
        free(c);
        return NULL;
    }
    c->pt = xcalloc((size_t)c->L * c->E, sizeof(entry));
    c->loc = xcalloc((size_t)c->L * c->E, sizeof(pg_expert_loc));
    const uint8_t *base = m->gguf->map;
    for (int l = 0; l < c->L; l++)
        for (int x = 0; x < c->E; x++) {
            ent_(c, l, x)->slot = -1;
            if (!m->layers[l].is_moe) continue;
            const pg_expert *w = &m->layers[l].experts[x];
            const pg_mat *mats[3] = {&w->gate, &w->up, &w->down};
            pg_expert_loc *lc = &c->loc[(size_t)l * c->E + x];
            for (int k = 0; k < 3; k++) {
                if (!mats[k]->data) continue; /* no gate (ReLU experts): an empty range */
                PG_ASSERT((const uint8_t *)mats[k]->data >= base &&
                          (const uint8_t *)mats[k]->data + mat_bytes_(mats[k]) <= base + m->gguf->size);
                lc->offset[k] = (uint64_t)((const uint8_t *)mats[k]->data - base);
                lc->size[k] = mat_bytes_(mats[k]);
                lc->bytes += lc->size[k];
            }
        }
    if (host_tier && fill_host_tier_(c, e)) {
        free_slots_(c);
        free(c->pt);
        free(c->loc);
        free(c);
        return NULL;
    }
    c->stats = xcalloc((size_t)c->L, sizeof(pg_cache_layer_stats));
    c->cur_layer = c->done_layer = c->routed_layer = -1;
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->work, NULL);
    /* `done` waits may time out (pg_cache_set_timeout): on the monotonic clock */
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&c->done, &ca);
    pthread_condattr_destroy(&ca);
    c->timeout_s = PG_CACHE_DEFAULT_TIMEOUT_S;
    c->io = xcalloc((size_t)c->n_io, sizeof(pthread_t));
    c->io_args = xcalloc((size_t)c->n_io, sizeof *c->io_args);
    for (int i = 0; i < c->n_io; i++) {
        c->io_args[i] = (struct io_arg){c, i};
        PG_ASSERT(pthread_create(&c->io[i], NULL, io_main_, &c->io_args[i]) == 0);
    }
    return c;
}

void pg_cache_free(pg_cache *c) {
    if (!c) return;
    pthread_mutex_lock(&c->mu);
    c->stop = true;
    pthread_cond_broadcast(&c->work);
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
    for (int i = 0; i < c->n_io; i++) pthread_join(c->io[i], NULL);
    free_slots_(c);
    for (size_t i = 0; i < (size_t)c->L * c->E; i++) free(c->pt[i].err);
    free(c->pt);
    free(c->loc);
    free(c->demand.q);
    free(c->prefetch.q);
    free(c->stats);
    free(c->io);
    free(c->io_args);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->work);
    pthread_cond_destroy(&c->done);
    free(c);
}

size_t pg_cache_slot_bytes(const pg_cache *c) { return c->slot_bytes; }

void pg_cache_fence(pg_cache *c, int layer, int expert) {
    pthread_mutex_lock(&c->mu);
    int si = ent_(c, layer, expert)->slot;
    PG_ASSERT(c->dev && si >= 0 && c->slots[si].refs > 0);
    pthread_mutex_unlock(&c->mu);
    c->dev->ops->fence_slot(c->dev, c->dslots, si);
}
int pg_cache_n_slots(const pg_cache *c) { return c->n_slots; }

void pg_cache_begin_step(pg_cache *c) {
    pthread_mutex_lock(&c->mu);
    c->step++;
    c->cur_layer = c->done_layer = c->routed_layer = -1;
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_begin_layer(pg_cache *c, int layer) {
    pthread_mutex_lock(&c->mu);
    c->cur_layer = layer;
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_routed(pg_cache *c, int layer) {
    pthread_mutex_lock(&c->mu);
    if (layer > c->routed_layer) c->routed_layer = layer;
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_end_layer(pg_cache *c, int layer) {
    pthread_mutex_lock(&c->mu);
    c->done_layer = layer;
    for (int x = 0; x < c->E; x++) ent_(c, layer, x)->protect = false;
    pthread_mutex_unlock(&c->mu);
}

static void enqueue_(pg_cache *c, int layer, int x, bool demand, float confidence) {
    entry *en = ent_(c, layer, x);
    if (demand && en->queued && !en->queued_demand) { /* promote a queued prefetch */
        q_cancel_(&c->prefetch, layer, x);
        en->queued = false;
    }
    if (en->queued) return;
    en->queued = true;
    en->queued_demand = demand;
    q_push_(demand ? &c->demand : &c->prefetch, (request){layer, x, c->step, confidence, false});
    pthread_cond_signal(&c->work);
}

void pg_cache_prefetch(pg_cache *c, int layer, const int *experts, int n, float confidence) {
    if (layer < 0 || layer >= c->L || !c->m->layers[layer].is_moe) return;
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++) {
        entry *en = ent_(c, layer, experts[i]);
        en->protect = true;
        if (en->slot < 0) enqueue_(c, layer, experts[i], false, confidence);
    }
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_request(pg_cache *c, int layer, const int *experts, int n) {
    pthread_mutex_lock(&c->mu);
    pg_cache_layer_stats *st = &c->stats[layer];
    for (int i = 0; i < n; i++) {
        entry *en = ent_(c, layer, experts[i]);
        st->acquires++;
        if (en->slot >= 0 && c->slots[en->slot].state == SLOT_READY) st->hits++;
        else if (en->slot >= 0 || (en->queued && !en->queued_demand)) st->late++;
        else st->misses++;
        en->want++;
        if (en->slot < 0) enqueue_(c, layer, experts[i], true, 1.0f);
    }
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_set_timeout(pg_cache *c, double seconds) {
    pthread_mutex_lock(&c->mu);
    c->timeout_s = seconds > 0 ? seconds : 0;
    pthread_mutex_unlock(&c->mu);
}

/* Waits on `done` until the monotonic time `deadline` (0: no deadline).
 * Returns false when the deadline passed. */
static bool wait_done_(pg_cache *c, double deadline) {
    if (deadline == 0) {
        pthread_cond_wait(&c->done, &c->mu);
        return true;
    }
    struct timespec ts;
    ts.tv_sec = (time_t)deadline;
    ts.tv_nsec = (long)((deadline - (double)ts.tv_sec) * 1e9);
    if (ts.tv_nsec >= 1000000000L) { ts.tv_sec++; ts.tv_nsec -= 1000000000L; }
    return pthread_cond_timedwait(&c->done, &c->mu, &ts) != ETIMEDOUT || pg_time_s() < deadline;
}

const pg_expert *pg_cache_acquire_any(pg_cache *c, int layer, const int *experts, int n, int *which, pg_error *e) {
    pthread_mutex_lock(&c->mu);
    pg_cache_layer_stats *st = &c->stats[layer];
    double t0 = 0, deadline = 0;
    int found = -1;
    for (;;) {
        for (int i = 0; i < n && found < 0; i++) {
            entry *en = ent_(c, layer, experts[i]);
            if (en->failed || (en->slot >= 0 && c->slots[en->slot].state == SLOT_READY)) found = i;
        }
        if (found >= 0) break;
        if (t0 == 0) {
            t0 = pg_time_s();
            if (c->timeout_s > 0) deadline = t0 + c->timeout_s;
        }
        if (!wait_done_(c, deadline)) {
            /* A read that does not complete (a stalled device): give up on the
             * first expert still missing. Its slot stays LOADING, owned by the
             * I/O thread, and becomes usable if the read ever finishes. */
            st->stall_s += pg_time_s() - t0;
            *which = 0;
            pg_fail(e, "expert %d of layer %d: read did not complete within %.3g s (slow tier stalled)",
                    experts[0], layer, c->timeout_s);
            entry *en = ent_(c, layer, experts[0]);
            if (en->want) en->want--;
            pthread_mutex_unlock(&c->mu);
            return NULL;
        }
    }
    if (t0 != 0) st->stall_s += pg_time_s() - t0;
    *which = found;
    entry *en = ent_(c, layer, experts[found]);
    if (en->failed) {
        pg_fail(e, "%s", en->err);
        en->failed = false;
        if (en->want) en->want--;
        pthread_mutex_unlock(&c->mu);
        return NULL;
    }
    slot *s = &c->slots[en->slot];
    s->refs++;
    s->uses++;
    s->last_use = ++c->tick;
    if (s->prefetched) {
        st->prefetch_used++;
        s->prefetched = false;
    }
    pthread_mutex_unlock(&c->mu);
    return &s->w;
}

const pg_expert *pg_cache_acquire(pg_cache *c, int layer, int x, pg_error *e) {
    int which;
    pg_cache_request(c, layer, &x, 1);
    return pg_cache_acquire_any(c, layer, &x, 1, &which, e);
}

void pg_cache_release(pg_cache *c, int layer, int x) {
    pthread_mutex_lock(&c->mu);
    entry *en = ent_(c, layer, x);
    PG_ASSERT(en->slot >= 0 && c->slots[en->slot].refs > 0);
    c->slots[en->slot].refs--;
    if (en->want) en->want--;
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_cancel(pg_cache *c, int layer, const int *experts, int n) {
    pthread_mutex_lock(&c->mu);
    for (int i = 0; i < n; i++) {
        entry *en = ent_(c, layer, experts[i]);
        if (en->want) en->want--;
    }
    pthread_cond_broadcast(&c->done);
    pthread_mutex_unlock(&c->mu);
}

void pg_cache_score_prediction(pg_cache *c, int layer, const int *pred, int n_pred, const int *actual, int n_actual) {
    int hit = 0;
    for (int i = 0; i < n_pred; i++)
        for (int j = 0; j < n_actual; j++) hit += pred[i] == actual[j];
    pthread_mutex_lock(&c->mu);
    c->stats[layer].pred_true += (uint64_t)hit;
    c->stats[layer].pred_total += (uint64_t)n_pred;
    c->stats[layer].actual_total += (uint64_t)n_actual;
    pthread_mutex_unlock(&c->mu);
}

const pg_cache_layer_stats *pg_cache_stats(const pg_cache *c, int layer) { return &c->stats[layer]; }

void pg_cache_stats_reset(pg_cache *c) {
    pthread_mutex_lock(&c->mu);
    memset(c->stats, 0, (size_t)c->L * sizeof *c->stats);
    c->peak_filled = c->filled;
    pthread_mutex_unlock(&c->mu);
}

size_t pg_cache_peak_bytes(const pg_cache *c) { return (size_t)c->peak_filled * c->slot_bytes; }

void pg_cache_stats_total(pg_cache *c, pg_cache_layer_stats *sum, size_t *peak_bytes) {
    memset(sum, 0, sizeof *sum);
    pthread_mutex_lock(&c->mu);
    for (int l = 0; l < c->L; l++) {
        const pg_cache_layer_stats *st = &c->stats[l];
        sum->acquires += st->acquires;
        sum->hits += st->hits;
        sum->late += st->late;
        sum->misses += st->misses;
        sum->prefetch_issued += st->prefetch_issued;
        sum->prefetch_used += st->prefetch_used;
        sum->prefetch_wasted += st->prefetch_wasted;
        sum->prefetch_dropped += st->prefetch_dropped;
        sum->bytes_read += st->bytes_read;
        sum->stall_s += st->stall_s;
        sum->pred_true += st->pred_true;
        sum->pred_total += st->pred_total;
        sum->actual_total += st->actual_total;
    }
    if (peak_bytes) *peak_bytes = (size_t)c->peak_filled * c->slot_bytes;
    pthread_mutex_unlock(&c->mu);
}

int pg_cache_slots_in_use(const pg_cache *c) {
    pg_cache *mc = (pg_cache *)c;
    pthread_mutex_lock(&mc->mu);
    int n = c->filled;
    pthread_mutex_unlock(&mc->mu);
    return n;
}

int pg_cache_refs_held(const pg_cache *c) {
    pg_cache *mc = (pg_cache *)c;
    pthread_mutex_lock(&mc->mu);
    int n = 0;
    for (int i = 0; i < c->n_slots; i++) n += c->slots[i].refs;
    for (size_t i = 0; i < (size_t)c->L * c->E; i++) n += c->pt[i].want;
    pthread_mutex_unlock(&mc->mu);
    return n;
}

void pg_cache_clear(pg_cache *c) {
    pthread_mutex_lock(&c->mu);
    /* drop everything queued, wait for reads in flight */
    for (int i = 0; i < c->demand.len; i++) c->demand.q[(c->demand.head + i) % c->demand.cap].cancelled = true;
    for (int i = 0; i < c->prefetch.len; i++) c->prefetch.q[(c->prefetch.head + i) % c->prefetch.cap].cancelled = true;
    for (size_t i = 0; i < (size_t)c->L * c->E; i++) c->pt[i].queued = c->pt[i].queued_demand = false;
    for (;;) {
        bool loading = false;
        for (int i = 0; i < c->n_slots; i++) loading |= c->slots[i].state == SLOT_LOADING;
        if (!loading) break;
        pthread_cond_wait(&c->done, &c->mu);
    }
    for (int i = 0; i < c->n_slots; i++) {
        slot *s = &c->slots[i];
        PG_ASSERT(s->refs == 0);
        if (s->state == SLOT_READY) ent_(c, s->layer, s->expert)->slot = -1;
        s->state = SLOT_EMPTY;
        s->prefetched = false;
    }
    for (size_t i = 0; i < (size_t)c->L * c->E; i++) {
        c->pt[i].protect = c->pt[i].failed = false;
        c->pt[i].want = 0;
    }
    c->filled = 0;
    c->peak_filled = 0;
    pthread_mutex_unlock(&c->mu);
}
