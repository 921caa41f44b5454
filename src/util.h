/* util.h - errors, asserts, allocation, time, half-precision conversion.
 *
 * Conventions used across pregate:
 *  - Library functions that can fail on bad input take a `pg_error *` and
 *    return 0 on success, -1 on failure with a one-line message in e->msg
 *    (it names the file and the problem). Only the CLI calls exit().
 *  - A broken invariant (a bug, not bad input) aborts with PG_ASSERT.
 *  - Allocation failure aborts (xmalloc); use malloc directly only where
 *    running out is a recoverable, reported condition.
 */
#ifndef PG_UTIL_H
#define PG_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define PG_ERR_MAX 512
typedef struct {
    char msg[PG_ERR_MAX];
} pg_error;

/* Formats a message into e (no-op when e is NULL). Always returns -1 so that
 * `return pg_fail(e, ...)` reads naturally. */
int pg_fail(pg_error *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

void pg_abort_(const char *file, int line, const char *expr) __attribute__((noreturn));
#define PG_ASSERT(x) do { if (!(x)) pg_abort_(__FILE__, __LINE__, #x); } while (0)

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
/* Aligned allocation (alignment a power of two >= sizeof(void*)); free with free(). */
void *xmalloc_aligned(size_t alignment, size_t n);

double pg_time_s(void);          /* monotonic seconds */
size_t pg_peak_rss_bytes(void);  /* VmHWM from /proc/self/status, 0 if unknown */
size_t pg_rss_bytes(void);       /* VmRSS from /proc/self/status, 0 if unknown */

/* Whole-file read into a NUL-terminated heap buffer. */
int pg_read_file(const char *path, char **out, size_t *len, pg_error *e);

/* True if s[0..n) is valid UTF-8 (no overlongs, no surrogates). */
bool pg_utf8_valid(const char *s, size_t n);

/* IEEE half and bfloat16 <-> float (exact for all finite values, NaN kept). */
static inline float pg_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    uint32_t exp = (h >> 10) & 0x1f, man = h & 0x3ff, bits;
    if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do { man <<= 1; e++; } while (!(man & 0x400));
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | ((man & 0x3ff) << 13);
        }
    } else if (exp == 31) {
        bits = sign | 0x7f800000u | (man << 13);
    } else {
        bits = sign | ((exp + 127 - 15) << 23) | (man << 13);
    }
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* Round to nearest even. */
static inline uint16_t pg_f32_to_f16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    uint32_t sign = (x >> 16) & 0x8000;
    uint32_t ax = x & 0x7fffffffu;
    if (ax >= 0x7f800000u) return (uint16_t)(sign | 0x7c00 | (ax > 0x7f800000u ? 0x200 : 0));
    if (ax >= 0x477ff000u) return (uint16_t)(sign | 0x7c00); /* overflow -> inf */
    if (ax < 0x38800000u) { /* subnormal or zero in half */
        if (ax < 0x33000000u) return (uint16_t)sign;
        uint32_t e = ax >> 23, m = (ax & 0x7fffff) | 0x800000;
        uint32_t shift = 126 - e; /* 14..24 */
        uint32_t r = m >> shift, rem = m & ((1u << shift) - 1), half = 1u << (shift - 1);
        if (rem > half || (rem == half && (r & 1))) r++;
        return (uint16_t)(sign | r);
    }
    uint32_t r = ((ax - 0x38000000u) >> 13);
    uint32_t rem = ax & 0x1fff;
    if (rem > 0x1000 || (rem == 0x1000 && (r & 1))) r++;
    return (uint16_t)(sign | r);
}

static inline float pg_bf16_to_f32(uint16_t h) {
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

static inline uint16_t pg_f32_to_bf16(float f) {
    uint32_t x;
    memcpy(&x, &f, 4);
    if ((x & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((x >> 16) | 0x40); /* quiet NaN */
    x += 0x7fff + ((x >> 16) & 1);
    return (uint16_t)(x >> 16);
}

#endif
