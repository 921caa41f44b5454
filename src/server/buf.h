/* buf.h - a growable byte buffer (always NUL-terminated) for the server's
 * texts: generated text, request bodies, response bodies. */
#ifndef PG_SERVER_BUF_H
#define PG_SERVER_BUF_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util.h"

typedef struct {
    char *s;   /* NULL until the first byte is added */
    size_t n;  /* bytes used (s[n] == 0) */
    size_t cap;
} pg_buf;

static inline void pg_buf_reserve(pg_buf *b, size_t more) {
    if (b->n + more + 1 <= b->cap) return;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + more + 1) cap *= 2;
    b->s = xrealloc(b->s, cap);
    b->cap = cap;
}

static inline void pg_buf_add(pg_buf *b, const char *s, size_t n) {
    pg_buf_reserve(b, n);
    if (n) memcpy(b->s + b->n, s, n);
    b->n += n;
    b->s[b->n] = 0;
}

static inline void pg_buf_adds(pg_buf *b, const char *s) { pg_buf_add(b, s, strlen(s)); }

static inline void pg_buf_addf(pg_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static inline void pg_buf_addf(pg_buf *b, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (k <= 0) return;
    pg_buf_reserve(b, (size_t)k);
    va_start(ap, fmt);
    vsnprintf(b->s + b->n, (size_t)k + 1, fmt, ap);
    va_end(ap);
    b->n += (size_t)k;
}

static inline void pg_buf_clear(pg_buf *b) {
    b->n = 0;
    if (b->s) b->s[0] = 0;
}

static inline void pg_buf_free(pg_buf *b) {
    free(b->s);
    memset(b, 0, sizeof *b);
}

#endif
