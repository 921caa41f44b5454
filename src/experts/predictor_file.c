/* predictor_file.c - the learned predictor's storage: allocation and the
 * sidecar GGUF (predictor.h). Kept apart from the fitting code so that the
 * reader links without the kernels (tests/fuzz/fuzz_predictor.c). */
#include "predictor.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gguf.h"

void pg_predictor_alloc(pg_predictor *p, int L, int E, int D, int k) {
    *p = (pg_predictor){.n_layer = L, .n_expert = E, .dim = D, .k = k, .depth = 1};
    p->has = xcalloc((size_t)L, sizeof(bool));
    p->w = xcalloc((size_t)L * E * D, sizeof(float));
    p->b = xcalloc((size_t)L * E, sizeof(float));
}

void pg_predictor_free(pg_predictor *p) {
    if (!p) return;
    free(p->has);
    free(p->w);
    free(p->b);
    memset(p, 0, sizeof *p);
}

int pg_predictor_write(const pg_predictor *p, const char *path, pg_error *e) {
    gguf_writer *w = gguf_writer_new();
    gguf_writer_set_str(w, "general.architecture", "pregate-predictor");
    gguf_writer_set_u32(w, "pregate.predictor.n_layer", (uint32_t)p->n_layer);
    gguf_writer_set_u32(w, "pregate.predictor.n_expert", (uint32_t)p->n_expert);
    gguf_writer_set_u32(w, "pregate.predictor.dim", (uint32_t)p->dim);
    gguf_writer_set_u32(w, "pregate.predictor.k", (uint32_t)p->k);
    gguf_writer_set_u32(w, "pregate.predictor.depth", (uint32_t)p->depth);
    gguf_writer_set_u64(w, "pregate.predictor.model_fingerprint", p->fingerprint);
    char name[64];
    for (int t = 0; t < p->n_layer; t++) {
        if (!p->has[t]) continue;
        int64_t ne_w[2] = {p->dim, p->n_expert}, ne_b[1] = {p->n_expert};
        snprintf(name, sizeof name, "pred.%d.weight", t);
        gguf_writer_add_tensor(w, name, PG_TYPE_F32, 2, ne_w, p->w + (size_t)t * p->n_expert * p->dim,
                               (size_t)p->n_expert * p->dim * sizeof(float));
        snprintf(name, sizeof name, "pred.%d.bias", t);
        gguf_writer_add_tensor(w, name, PG_TYPE_F32, 1, ne_b, p->b + (size_t)t * p->n_expert,
                               (size_t)p->n_expert * sizeof(float));
    }
    int rc = gguf_writer_write(w, path, e);
    gguf_writer_free(w);
    return rc;
}

int pg_predictor_from_gguf(pg_predictor *p, const pg_predictor_shape *want, const gguf_file *g, pg_error *e) {
    memset(p, 0, sizeof *p);
    const char *path = g->path;
    int rc = -1;
    int64_t L, E, D, k, fp;
    char *arch = gguf_get_str(g, "general.architecture");
    if (!arch || strcmp(arch, "pregate-predictor") || !gguf_get_int(g, "pregate.predictor.n_layer", &L) ||
        !gguf_get_int(g, "pregate.predictor.n_expert", &E) || !gguf_get_int(g, "pregate.predictor.dim", &D) ||
        !gguf_get_int(g, "pregate.predictor.k", &k) || !gguf_get_int(g, "pregate.predictor.model_fingerprint", &fp)) {
        pg_fail(e, "%s: not a pregate predictor file (missing pregate.predictor.* metadata)", path);
        goto done;
    }
    if (L != want->n_layer || E != want->n_expert || D != want->dim || k != want->k) {
        pg_fail(e, "%s: predictor of a model with %lld layers, %lld experts, dim %lld, top-%lld; this model has %d, %d, %d, %d",
                path, (long long)L, (long long)E, (long long)D, (long long)k, want->n_layer, want->n_expert, want->dim,
                want->k);
        goto done;
    }
    if ((uint64_t)fp != want->fingerprint) {
        pg_fail(e, "%s: predictor was fitted to another model (router fingerprint differs)", path);
        goto done;
    }
    int64_t depth = 1;
    gguf_get_int(g, "pregate.predictor.depth", &depth);
    if (depth < 1 || depth > 2) {
        pg_fail(e, "%s: predictor depth %lld (must be 1 or 2)", path, (long long)depth);
        goto done;
    }
    pg_predictor_alloc(p, (int)L, (int)E, (int)D, (int)k);
    p->depth = (int)depth;
    p->fingerprint = (uint64_t)fp;
    char name[64];
    for (int t = 0; t < p->n_layer; t++) {
        if (!want->is_moe[t]) continue;
        const pg_tensor *tw, *tb;
        snprintf(name, sizeof name, "pred.%d.weight", t);
        tw = gguf_find_tensor(g, name);
        snprintf(name, sizeof name, "pred.%d.bias", t);
        tb = gguf_find_tensor(g, name);
        if (!tw || !tb || tw->type != PG_TYPE_F32 || tb->type != PG_TYPE_F32 || tw->n_dims != 2 || tw->ne[0] != D ||
            tw->ne[1] != E || tb->n_dims != 1 || tb->ne[0] != E) {
            pg_fail(e, "%s: head of layer %d is missing or has the wrong shape or type", path, t);
            pg_predictor_free(p);
            goto done;
        }
        memcpy(p->w + (size_t)t * E * D, tw->data, (size_t)E * D * sizeof(float));
        memcpy(p->b + (size_t)t * E, tb->data, (size_t)E * sizeof(float));
        for (int64_t i = 0; i < E * D; i++)
            if (!isfinite(p->w[(size_t)t * E * D + i])) {
                pg_fail(e, "%s: head of layer %d holds a non-finite weight", path, t);
                pg_predictor_free(p);
                goto done;
            }
        for (int64_t i = 0; i < E; i++)
            if (!isfinite(p->b[(size_t)t * E + i])) {
                pg_fail(e, "%s: head of layer %d holds a non-finite bias", path, t);
                pg_predictor_free(p);
                goto done;
            }
        p->has[t] = true;
    }
    rc = 0;
done:
    free(arch);
    return rc;
}
