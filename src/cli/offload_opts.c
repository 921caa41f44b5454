/* offload_opts.c - see offload_opts.h */
#include "offload_opts.h"

#include "args.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

void cli_offload_init(cli_offload *o) {
    memset(o, 0, sizeof *o);
    pg_offload_params_default(&o->p);
}

int cli_offload_load(cli_offload *o, const pg_model *m, pg_error *e) {
    if (o->p.mode == PG_PREFETCH_LEARNED && !o->predictor_path)
        return pg_fail(e, "--prefetch learned needs --predictor FILE (made by `pregate calibrate`)");
    if (o->predictor_path) {
        if (pg_predictor_read(&o->predictor, m, o->predictor_path, e)) return -1;
        o->p.predictor = &o->predictor;
    }
    if (o->backend != PG_BACKEND_CPU && !(o->dev = pg_dev_open(o->backend, e))) return -1;
    return 0;
}

void cli_offload_free(cli_offload *o) {
    pg_predictor_free(&o->predictor);
    pg_dev_free(o->dev);
    o->dev = NULL;
}

pg_prefetch_mode cli_offload_mode(const cli_offload *o) {
    return o->mem_spec || o->mode_given ? o->p.mode : PG_PREFETCH_RESIDENT;
}

bool cli_offload_wanted(const cli_offload *o) {
    return o->mem_spec || (o->mode_given && o->p.mode != PG_PREFETCH_RESIDENT) || o->backend != PG_BACKEND_CPU;
}

int cli_offload_arg(cli_offload *o, int argc, char **argv, int *i) {
    const char *a = argv[*i];
    static const char *ours[] = {"--expert-mem", "--prefetch", "--prefetch-extra", "--prefetch-depth",
                                 "--prefetch-min-precision", "--predictor", "--link", "--store", "--evict",
                                 "--io-threads", "--io-timeout", "--backend"};
    bool mine = false;
    for (size_t k = 0; k < sizeof ours / sizeof *ours; k++) mine |= !strcmp(a, ours[k]);
    if (!mine) return 0;
    if (*i + 1 >= argc) {
        fprintf(stderr, "pregate: %s needs a value\n", a);
        return -1;
    }
    const char *v = argv[++*i];
    pg_error e = {{0}};
    long x;
    double d;
    int rc = 0;
    if (!strcmp(a, "--expert-mem")) o->mem_spec = v;
    else if (!strcmp(a, "--predictor")) o->predictor_path = v;
    else if (!strcmp(a, "--backend")) rc = pg_backend_parse(v, &o->backend, &e);
    else if (!strcmp(a, "--prefetch")) { rc = pg_prefetch_parse(v, &o->p.mode, &e); o->mode_given = true; }
    else if (!strcmp(a, "--link")) rc = pg_link_parse(v, &o->p.link, &e);
    else if (!strcmp(a, "--store")) {
        o->p.host_tier = !strcmp(v, "host");
        if (!o->p.host_tier) rc = pg_store_kind_parse(v, &o->p.store, &e);
        o->store_given = true;
    }
    else if (!strcmp(a, "--evict")) rc = pg_evict_parse(v, &o->p.evict, &e);
    else if (!strcmp(a, "--prefetch-extra")) { if (cli_long(a, v, 0, 1024, &x)) return -1; o->p.extra = (int)x; }
    else if (!strcmp(a, "--prefetch-depth")) { if (cli_long(a, v, 1, 2, &x)) return -1; o->p.depth = (int)x; }
    else if (!strcmp(a, "--io-threads")) { if (cli_long(a, v, 1, 64, &x)) return -1; o->p.io_threads = (int)x; }
    else if (!strcmp(a, "--io-timeout")) { if (cli_double(a, v, 0, 1e6, &d)) return -1; o->p.io_timeout = d; }
    else if (!strcmp(a, "--prefetch-min-precision")) {
        if (cli_double(a, v, 0, 1, &d)) return -1;
        o->p.min_precision = (float)d;
    }
    if (rc) {
        fprintf(stderr, "pregate: %s: %s\n", a, e.msg);
        return -1;
    }
    return 1;
}

/* The session's offload state for `mode` (with its cache on o->dev). */
static int attach_offload_(const cli_offload *o, pg_prefetch_mode mode, const pg_trace *oracle, pg_session *s,
                           pg_error *e) {
    if (mode == PG_PREFETCH_RESIDENT) {
        pg_session_set_offload(s, NULL);
        return 0;
    }
    pg_offload_params p = o->p;
    p.mode = mode;
    p.oracle = oracle;
    /* a device's slow tier is host memory: the page cache, or pinned (--store host) */
    if (!o->store_given) p.store = o->dev ? PG_STORE_MMAP : pg_store_default(&p.link);
    if (!o->mem_spec) return pg_fail(e, "offloading needs --expert-mem SIZE (e.g. 25%%, 512MiB)");
    if (pg_parse_mem(o->mem_spec, s->m->bytes_experts, &p.expert_mem, e)) return -1;
    p.dev = o->dev;
    pg_offload *off = pg_offload_new(s->m, &p, e);
    if (!off) return -1;
    pg_session_set_offload(s, off);
    return 0;
}

int cli_offload_attach(const cli_offload *o, pg_prefetch_mode mode, const pg_trace *oracle, pg_session *s,
                       pg_error *e) {
    /* the device pass is made again for the new mode (experts resident on
     * the device, or through the cache) */
    pg_devfwd_free(s->dev);
    s->dev = NULL;
    if (attach_offload_(o, mode, oracle, s, e)) return -1;
    return o->dev ? pg_session_set_device(s, o->dev, e) : 0;
}

void cli_offload_totals(const pg_session *s, cli_totals *t) {
    memset(t, 0, sizeof *t);
    if (!s->off) return;
    for (int l = 0; l < s->m->hp.n_layer; l++) {
        const pg_cache_layer_stats *st = pg_cache_stats(s->off->cache, l);
        t->acquires += st->acquires;
        t->hits += st->hits;
        t->late += st->late;
        t->misses += st->misses;
        t->prefetch_issued += st->prefetch_issued;
        t->prefetch_used += st->prefetch_used;
        t->prefetch_wasted += st->prefetch_wasted;
        t->prefetch_dropped += st->prefetch_dropped;
        t->bytes_read += st->bytes_read;
        t->pred_true += st->pred_true;
        t->pred_total += st->pred_total;
        t->actual_total += st->actual_total;
        t->stall_s += st->stall_s;
    }
}

static double ratio_(uint64_t a, uint64_t b) { return b ? (double)a / (double)b : 0.0; }

void cli_print_stats(FILE *f, const pg_session *s, int n_tokens, double seconds) {
    if (!s->off) {
        fprintf(f, "pregate: experts resident (no offloading)\n");
        return;
    }
    const pg_offload *o = s->off;
    cli_totals t;
    cli_offload_totals(s, &t);
    int nt = n_tokens > 0 ? n_tokens : 1;
    fprintf(f, "pregate: offload %s | store %s | link %s | evict %s | fast tier %d slots x %.2f MiB = %.1f MiB, "
               "peak %.1f MiB\n",
            pg_prefetch_name(o->p.mode), pg_store_kind_name(pg_store_kind_used(o->store)), o->p.link.name,
            pg_evict_name(o->p.evict), pg_cache_n_slots(o->cache), pg_cache_slot_bytes(o->cache) / 1048576.0,
            pg_cache_n_slots(o->cache) * (double)pg_cache_slot_bytes(o->cache) / 1048576.0,
            pg_cache_peak_bytes(o->cache) / 1048576.0);
    fprintf(f, "pregate: %d tokens in %.3f s | hit rate %.3f (late %llu, misses %llu) | stall %.2f ms/token | "
               "read %.2f MiB/token | prefetch issued %llu used %llu wasted %llu dropped %llu | "
               "prediction precision %.3f recall %.3f\n",
            n_tokens, seconds, ratio_(t.hits, t.acquires), (unsigned long long)t.late, (unsigned long long)t.misses,
            t.stall_s * 1e3 / nt, t.bytes_read / 1048576.0 / nt, (unsigned long long)t.prefetch_issued,
            (unsigned long long)t.prefetch_used, (unsigned long long)t.prefetch_wasted,
            (unsigned long long)t.prefetch_dropped, ratio_(t.pred_true, t.pred_total),
            ratio_(t.pred_true, t.actual_total));
    fprintf(f, "pregate: per layer: layer hits/acquires recall precision stall_ms\n");
    for (int l = 0; l < s->m->hp.n_layer; l++) {
        const pg_cache_layer_stats *st = pg_cache_stats(o->cache, l);
        if (!st->acquires) continue;
        fprintf(f, "pregate:   %3d %6llu/%-6llu %.3f %.3f %8.2f\n", l, (unsigned long long)st->hits,
                (unsigned long long)st->acquires, ratio_(st->pred_true, st->actual_total),
                ratio_(st->pred_true, st->pred_total), st->stall_s * 1e3);
    }
}

void cli_timeline_init(cli_timeline *tl, const pg_session *s) {
    memset(tl, 0, sizeof *tl);
    tl->n_layer = s->m->hp.n_layer;
    tl->last = xcalloc((size_t)tl->n_layer, sizeof *tl->last);
    for (int l = 0; s->off && l < tl->n_layer; l++) tl->last[l] = *pg_cache_stats(s->off->cache, l);
}

void cli_timeline_step(cli_timeline *tl, const pg_session *s, int n) {
    if (!s->off || !tl->last) return;
    const int L = tl->n_layer;
    if (tl->n_steps == tl->cap) {
        tl->cap = tl->cap ? 2 * tl->cap : 64;
        tl->v = xrealloc(tl->v, (size_t)tl->cap * L * TL_FIELDS * sizeof *tl->v);
        tl->stall_ms = xrealloc(tl->stall_ms, (size_t)tl->cap * L * sizeof *tl->stall_ms);
        tl->tokens = xrealloc(tl->tokens, (size_t)tl->cap * sizeof *tl->tokens);
    }
    tl->tokens[tl->n_steps] = n;
    for (int l = 0; l < L; l++) {
        const pg_cache_layer_stats *now = pg_cache_stats(s->off->cache, l), *was = &tl->last[l];
        uint32_t *v = tl->v + ((size_t)tl->n_steps * L + l) * TL_FIELDS;
        v[TL_HITS] = (uint32_t)(now->hits - was->hits);
        v[TL_LATE] = (uint32_t)(now->late - was->late);
        v[TL_MISSES] = (uint32_t)(now->misses - was->misses);
        v[TL_PREFETCH] = (uint32_t)(now->prefetch_issued - was->prefetch_issued);
        v[TL_WASTED] = (uint32_t)(now->prefetch_wasted - was->prefetch_wasted);
        v[TL_PRED_TRUE] = (uint32_t)(now->pred_true - was->pred_true);
        v[TL_PRED_TOTAL] = (uint32_t)(now->pred_total - was->pred_total);
        v[TL_ACTUAL] = (uint32_t)(now->actual_total - was->actual_total);
        tl->stall_ms[(size_t)tl->n_steps * L + l] = (float)((now->stall_s - was->stall_s) * 1e3);
        tl->last[l] = *now;
    }
    tl->n_steps++;
}

void cli_timeline_free(cli_timeline *tl) {
    free(tl->v);
    free(tl->stall_ms);
    free(tl->tokens);
    free(tl->last);
    memset(tl, 0, sizeof *tl);
}

static void write_timeline_(FILE *f, const cli_timeline *tl) {
    fprintf(f, ",\n  \"timeline\": {\"fields\": [\"hits\", \"late\", \"misses\", \"prefetch_issued\", "
               "\"prefetch_wasted\", \"pred_true\", \"pred_total\", \"actual\", \"stall_ms\"],\n    \"steps\": [");
    for (int t = 0; t < tl->n_steps; t++) {
        fprintf(f, "%s\n      {\"tokens\": %d, \"layers\": [", t ? "," : "", tl->tokens[t]);
        for (int l = 0; l < tl->n_layer; l++) {
            const uint32_t *v = tl->v + ((size_t)t * tl->n_layer + l) * TL_FIELDS;
            fprintf(f, "%s[", l ? ", " : "");
            for (int k = 0; k < TL_FIELDS; k++) fprintf(f, "%u, ", v[k]);
            fprintf(f, "%.3f]", tl->stall_ms[(size_t)t * tl->n_layer + l]);
        }
        fprintf(f, "]}");
    }
    fprintf(f, "\n    ]}");
}

int cli_write_stats_json(const char *path, const pg_session *s, int n_tokens, double seconds, const cli_timeline *tl,
                         pg_error *e) {
    FILE *f = fopen(path, "w");
    if (!f) return pg_fail(e, "%s: cannot write: %s", path, strerror(errno));
    const pg_offload *o = s->off;
    cli_totals t;
    cli_offload_totals(s, &t);
    fprintf(f, "{\n  \"mode\": \"%s\",\n  \"tokens\": %d,\n  \"seconds\": %.6f,\n  \"tokens_per_s\": %.4f,\n",
            o ? pg_prefetch_name(o->p.mode) : "resident", n_tokens, seconds, seconds > 0 ? n_tokens / seconds : 0.0);
    fprintf(f, "  \"peak_rss_bytes\": %zu", pg_peak_rss_bytes());
    if (o) {
        fprintf(f, ",\n  \"link\": \"%s\",\n  \"store\": \"%s\",\n  \"evict\": \"%s\",\n  \"slots\": %d,\n"
                   "  \"slot_bytes\": %zu,\n  \"peak_fast_bytes\": %zu,\n",
                o->p.link.name, pg_store_kind_name(pg_store_kind_used(o->store)), pg_evict_name(o->p.evict),
                pg_cache_n_slots(o->cache), pg_cache_slot_bytes(o->cache), pg_cache_peak_bytes(o->cache));
        fprintf(f, "  \"totals\": {\"acquires\": %llu, \"hits\": %llu, \"late\": %llu, \"misses\": %llu, "
                   "\"prefetch_issued\": %llu, \"prefetch_used\": %llu, \"prefetch_wasted\": %llu, "
                   "\"prefetch_dropped\": %llu, \"bytes_read\": %llu, \"stall_s\": %.6f, \"precision\": %.6f, "
                   "\"recall\": %.6f},\n  \"layers\": [",
                (unsigned long long)t.acquires, (unsigned long long)t.hits, (unsigned long long)t.late,
                (unsigned long long)t.misses, (unsigned long long)t.prefetch_issued,
                (unsigned long long)t.prefetch_used, (unsigned long long)t.prefetch_wasted,
                (unsigned long long)t.prefetch_dropped, (unsigned long long)t.bytes_read, t.stall_s,
                ratio_(t.pred_true, t.pred_total), ratio_(t.pred_true, t.actual_total));
        for (int l = 0; l < s->m->hp.n_layer; l++) {
            const pg_cache_layer_stats *st = pg_cache_stats(o->cache, l);
            fprintf(f, "%s\n    {\"layer\": %d, \"acquires\": %llu, \"hits\": %llu, \"late\": %llu, \"misses\": %llu, "
                       "\"prefetch_issued\": %llu, \"prefetch_used\": %llu, \"prefetch_wasted\": %llu, "
                       "\"bytes_read\": %llu, \"stall_s\": %.6f, \"precision\": %.6f, \"recall\": %.6f}",
                    l ? "," : "", l, (unsigned long long)st->acquires, (unsigned long long)st->hits,
                    (unsigned long long)st->late, (unsigned long long)st->misses,
                    (unsigned long long)st->prefetch_issued, (unsigned long long)st->prefetch_used,
                    (unsigned long long)st->prefetch_wasted, (unsigned long long)st->bytes_read, st->stall_s,
                    ratio_(st->pred_true, st->pred_total), ratio_(st->pred_true, st->actual_total));
        }
        fprintf(f, "\n  ]");
        if (tl && tl->n_steps) write_timeline_(f, tl);
    }
    fprintf(f, "\n}\n");
    if (fclose(f)) return pg_fail(e, "%s: write failed", path);
    return 0;
}
