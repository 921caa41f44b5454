/* trace.c - see trace.h */
#include "trace.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

#define TRACE_MAGIC "PGTR"
#define TRACE_VERSION 1u

void pg_trace_init(pg_trace *t, int n_layer, int n_expert, int k, int dim, bool with_hidden) {
    *t = (pg_trace){.n_layer = n_layer, .n_expert = n_expert, .k = k, .dim = dim, .with_hidden = with_hidden};
}

void pg_trace_reserve(pg_trace *t, int n_pos) {
    if (n_pos > t->cap_pos) {
        int cap = t->cap_pos ? t->cap_pos : 256;
        while (cap < n_pos) cap *= 2;
        size_t per = (size_t)t->n_layer * t->k;
        t->experts = xrealloc(t->experts, (size_t)cap * per * sizeof(int16_t));
        t->weights = xrealloc(t->weights, (size_t)cap * per * sizeof(float));
        for (size_t i = (size_t)t->cap_pos * per; i < (size_t)cap * per; i++) {
            t->experts[i] = -1;
            t->weights[i] = 0;
        }
        if (t->with_hidden) {
            size_t hp = (size_t)t->n_layer * t->dim;
            t->hidden = xrealloc(t->hidden, (size_t)cap * hp * sizeof(uint16_t));
            memset(t->hidden + (size_t)t->cap_pos * hp, 0, (size_t)(cap - t->cap_pos) * hp * sizeof(uint16_t));
        }
        t->cap_pos = cap;
    }
    if (n_pos > t->n_pos) t->n_pos = n_pos;
}

void pg_trace_free(pg_trace *t) {
    if (!t) return;
    free(t->experts);
    free(t->weights);
    free(t->hidden);
    memset(t, 0, sizeof *t);
}

int pg_trace_write(const pg_trace *t, const char *path, pg_error *e) {
    FILE *f = fopen(path, "wb");
    if (!f) return pg_fail(e, "%s: cannot write: %s", path, strerror(errno));
    uint32_t h[6] = {TRACE_VERSION, (uint32_t)t->n_layer, (uint32_t)t->n_expert, (uint32_t)t->k, (uint32_t)t->dim,
                     t->with_hidden ? 1u : 0u};
    uint64_t n = (uint64_t)t->n_pos;
    size_t per = (size_t)t->n_layer * t->k;
    bool ok = fwrite(TRACE_MAGIC, 1, 4, f) == 4 && fwrite(h, 4, 6, f) == 6 && fwrite(&n, 8, 1, f) == 1 &&
              fwrite(t->experts, sizeof(int16_t), n * per, f) == n * per &&
              fwrite(t->weights, sizeof(float), n * per, f) == n * per;
    if (ok && t->with_hidden) {
        size_t nh = n * (size_t)t->n_layer * t->dim;
        ok = fwrite(t->hidden, sizeof(uint16_t), nh, f) == nh;
    }
    if (fclose(f) != 0) ok = false;
    return ok ? 0 : pg_fail(e, "%s: write failed", path);
}

int pg_trace_read(pg_trace *t, const char *path, pg_error *e) {
    memset(t, 0, sizeof *t);
    char *buf;
    size_t len;
    if (pg_read_file(path, &buf, &len, e)) return -1;
    int rc = pg_trace_parse(t, buf, len, path, e);
    free(buf);
    return rc;
}

int pg_trace_parse(pg_trace *t, const void *data, size_t len, const char *path, pg_error *e) {
    memset(t, 0, sizeof *t);
    const char *buf = data;
    uint32_t h[6];
    uint64_t n;
    int rc = -1;
    if (len < 36 || memcmp(buf, TRACE_MAGIC, 4)) { pg_fail(e, "%s: not a pregate trace (bad magic)", path); goto done; }
    memcpy(h, buf + 4, sizeof h);
    memcpy(&n, buf + 28, 8);
    if (h[0] != TRACE_VERSION) { pg_fail(e, "%s: unsupported trace version %u", path, h[0]); goto done; }
    if (h[1] < 1 || h[1] > 4096 || h[2] < 1 || h[2] > 1024 || h[3] < 1 || h[3] > h[2] || h[4] < 1 || h[4] > (1u << 17) ||
        h[5] > 1 || n > (1u << 30)) {
        pg_fail(e, "%s: implausible trace header (layers %u, experts %u, k %u, dim %u, positions %llu)", path, h[1], h[2],
                h[3], h[4], (unsigned long long)n);
        goto done;
    }
    uint64_t per = (uint64_t)h[1] * h[3];
    uint64_t need = 36 + n * per * (2 + 4) + (h[5] ? n * h[1] * h[4] * 2 : 0);
    if (need != len) {
        pg_fail(e, "%s: size %zu does not match its header (expected %llu bytes)", path, len, (unsigned long long)need);
        goto done;
    }
    pg_trace_init(t, (int)h[1], (int)h[2], (int)h[3], (int)h[4], h[5] != 0);
    /* exactly what the file holds (pg_trace_reserve rounds up to 256
     * positions, which a hostile header could make gigabytes) */
    t->n_pos = t->cap_pos = (int)n;
    if (n) {
        const char *p = buf + 36;
        t->experts = xmalloc(n * per * sizeof(int16_t));
        t->weights = xmalloc(n * per * sizeof(float));
        memcpy(t->experts, p, n * per * 2);
        p += n * per * 2;
        memcpy(t->weights, p, n * per * 4);
        p += n * per * 4;
        if (t->with_hidden) {
            t->hidden = xmalloc(n * h[1] * h[4] * sizeof(uint16_t));
            memcpy(t->hidden, p, n * h[1] * h[4] * 2);
        }
    }
    for (uint64_t i = 0; i < n * per; i++)
        if (t->experts[i] < -1 || t->experts[i] >= (int)h[2]) {
            pg_fail(e, "%s: expert id %d out of range at entry %llu", path, t->experts[i], (unsigned long long)i);
            pg_trace_free(t);
            goto done;
        }
    rc = 0;
done:
    return rc;
}
