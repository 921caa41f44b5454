/* offload.c - see offload.h. The prediction and expert loop themselves are
 * in forward.c, where the layer they belong to runs. */
#include "offload.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>

static const char *mode_names_[] = {"resident", "none",   "next-layer-all", "pregate",
                                    "oracle",   "learned", "native",         "none-serial"};

const char *pg_prefetch_name(pg_prefetch_mode m) { return m <= PG_PREFETCH_NONE_SERIAL ? mode_names_[m] : "?"; }

int pg_prefetch_parse(const char *s, pg_prefetch_mode *out, pg_error *e) {
    for (int i = 0; i <= PG_PREFETCH_NONE_SERIAL; i++)
        if (!strcmp(s, mode_names_[i])) { *out = (pg_prefetch_mode)i; return 0; }
    return pg_fail(e, "unknown prefetch mode '%s' (resident, none, none-serial, next-layer-all, pregate, oracle, "
                      "learned, native)", s);
}

void pg_offload_params_default(pg_offload_params *p) {
    memset(p, 0, sizeof *p);
    p->mode = PG_PREFETCH_PREGATE;
    p->evict = PG_EVICT_LOOKAHEAD;
    p->store = PG_STORE_DIRECT;
    snprintf(p->link.name, sizeof p->link.name, "none");
    p->io_threads = 2;
    p->io_timeout = PG_CACHE_DEFAULT_TIMEOUT_S;
    p->extra = 2;
    p->depth = 1;
    p->min_precision = 0.25f;
}

int pg_parse_mem(const char *s, size_t expert_bytes, size_t *out, pg_error *e) {
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || !(v > 0) || !isfinite(v))
        return pg_fail(e, "cannot read '%s' as a memory size (e.g. 2GiB, 512MiB, 25%%)", s);
    double mult = 1;
    if (!strcmp(end, "%")) {
        if (v > 100) return pg_fail(e, "memory size '%s' is over 100%%", s);
        *out = (size_t)(v / 100.0 * (double)expert_bytes);
        return 0;
    }
    static const struct { const char *u; double m; } units[] = {
        {"", 1}, {"B", 1}, {"K", 1024}, {"KiB", 1024}, {"KB", 1e3}, {"M", 1048576}, {"MiB", 1048576}, {"MB", 1e6},
        {"G", 1073741824.0}, {"GiB", 1073741824.0}, {"GB", 1e9}, {"T", 1099511627776.0}, {"TiB", 1099511627776.0},
        {"TB", 1e12}};
    bool found = false;
    for (size_t i = 0; i < sizeof units / sizeof *units; i++)
        if (!strcmp(end, units[i].u)) { mult = units[i].m; found = true; }
    if (!found) return pg_fail(e, "unknown unit in memory size '%s' (B, KiB, MiB, GiB, KB, MB, GB, %%)", s);
    if (v * mult > 1e15) return pg_fail(e, "memory size '%s' is too large", s);
    *out = (size_t)(v * mult);
    return 0;
}

pg_offload *pg_offload_new(pg_model *m, const pg_offload_params *p, pg_error *e) {
    if (p->mode == PG_PREFETCH_RESIDENT) {
        pg_fail(e, "internal: resident mode has no offload state");
        return NULL;
    }
    if (p->mode == PG_PREFETCH_ORACLE && (!p->oracle || p->oracle->n_layer != m->hp.n_layer)) {
        pg_fail(e, "oracle prefetching needs a routing trace of this model");
        return NULL;
    }
    if (p->mode == PG_PREFETCH_LEARNED && (!p->predictor || p->predictor->n_layer != m->hp.n_layer)) {
        pg_fail(e, "learned prefetching needs a predictor of this model (--predictor FILE from `pregate calibrate`)");
        return NULL;
    }
    if (p->mode == PG_PREFETCH_NATIVE && !m->hp.expert_pregated) {
        pg_fail(e, "%s is not natively pre-gated (no ARCH.expert_pregated key): use --prefetch pregate or learned",
                m->path);
        return NULL;
    }
    if (p->depth < 1 || p->depth > 2) {
        pg_fail(e, "prefetch depth must be 1 or 2, not %d", p->depth);
        return NULL;
    }
    if (p->extra < 0 || p->extra > m->hp.n_expert) {
        pg_fail(e, "--prefetch-extra must be between 0 and the expert count (%d)", m->hp.n_expert);
        return NULL;
    }
    if (p->host_tier && !p->dev) {
        pg_fail(e, "--store host is for device backends (--backend cuda): on the cpu backend use --store mmap");
        return NULL;
    }
    pg_offload *o = xcalloc(1, sizeof *o);
    o->p = *p;
    /* a host tier is read once, from the page cache, without a link model */
    pg_link none = {.name = "none"};
    o->store = pg_store_open(m->path, p->host_tier ? PG_STORE_MMAP : p->store, p->host_tier ? &none : &p->link, m->gguf ? m->gguf->map : NULL,
                             m->gguf ? m->gguf->size : 0, e);
    if (!o->store) { free(o); return NULL; }
    o->cache = pg_cache_new_dev(m, o->store, p->expert_mem, p->evict, p->io_threads, p->dev, p->host_tier, e);
    if (!o->cache) { pg_store_close(o->store); free(o); return NULL; }
    pg_cache_set_timeout(o->cache, p->io_timeout);
    int D = m->hp.dim, E = m->hp.n_expert, L = m->hp.n_layer;
    o->xn = xcalloc((size_t)PG_MAX_BATCH * D, sizeof(float));
    o->logits = xcalloc((size_t)PG_MAX_BATCH * E, sizeof(float));
    o->probs = xcalloc((size_t)E, sizeof(float));
    o->sel_w = xcalloc((size_t)E, sizeof(float));
    o->idx = xcalloc((size_t)E, sizeof(int));
    o->pred = xcalloc((size_t)L * E, sizeof(int));
    o->n_pred = xcalloc((size_t)L, sizeof(int));
    o->have_pred = xcalloc((size_t)L, sizeof(bool));
    o->precision = xmalloc((size_t)L * sizeof(float));
    for (int l = 0; l < L; l++) o->precision[l] = 0.3f; /* until measured: prefetch, and stop after one or two poor steps */
    o->uni = xcalloc((size_t)E, sizeof(int));
    o->got = xcalloc((size_t)E, sizeof *o->got);
    o->mark = xcalloc((size_t)E, 1);
    o->ones = xmalloc((size_t)D * sizeof(float));
    for (int i = 0; i < D; i++) o->ones[i] = 1.0f;
    return o;
}

void pg_offload_free(pg_offload *o) {
    if (!o) return;
    pg_cache_free(o->cache);
    pg_store_close(o->store);
    free(o->xn); free(o->logits); free(o->probs);
    free(o->sel_w); free(o->idx); free(o->pred); free(o->n_pred);
    free(o->have_pred); free(o->precision); free(o->uni); free(o->got); free(o->mark); free(o->ones);
    free(o);
}
