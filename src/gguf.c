/* gguf.c - GGUF v2/v3 reader (mmap, every field validated) and v3 writer.
 *
 * The reader walks the header with a bounds-checked cursor. Every count is
 * checked against its limit and against the bytes left in the file before
 * anything is allocated for it, so a hostile header costs nothing. Errors are
 * one line, "PATH: problem"; names from the file are escaped before they are
 * printed so a message never holds a newline or invalid UTF-8.
 */
#include "gguf.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "gguf.c assumes a little-endian host"
#endif

#define GGUF_MAGIC "GGUF"
#define GGUF_HEADER_SIZE 24
#define GGUF_DEFAULT_ALIGNMENT 32
/* Smallest possible encodings, used to bound counts by the bytes left. */
#define GGUF_MIN_KV_BYTES 13     /* key length 8 + 1 byte key + type 4 ... value >= 1 */
#define GGUF_MIN_TINFO_BYTES 32  /* name length 8 + n_dims 4 + ne 8 + type 4 + offset 8 */

/* The process-wide limits (gguf_limits_set); built-in values until set. */
static gguf_limits limits_ = {.max_tensors = 1ull << 20, .max_kv = 1ull << 20, .max_string = 1ull << 26,
                              .max_array = 1ull << 28, .max_dim = (int64_t)1 << 40};

void gguf_limits_default(gguf_limits *l) { *l = limits_; }

void gguf_limits_set(const gguf_limits *l) { limits_ = *l; }

int gguf_limits_parse(const char *spec, gguf_limits *l, pg_error *e) {
    static const struct { const char *key; size_t off; } keys[] = {
        {"tensors", offsetof(gguf_limits, max_tensors)}, {"kv", offsetof(gguf_limits, max_kv)},
        {"string", offsetof(gguf_limits, max_string)},   {"array", offsetof(gguf_limits, max_array)},
        {"dim", offsetof(gguf_limits, max_dim)},
    };
    const char *p = spec;
    while (*p) {
        const char *eq = strchr(p, '='), *end = strchr(p, ',');
        if (!end) end = p + strlen(p);
        if (!eq || eq > end)
            return pg_fail(e, "limits '%s': expected KEY=VALUE[,KEY=VALUE] (keys: tensors, kv, string, array, dim)", spec);
        size_t k = 0, n = sizeof keys / sizeof keys[0];
        while (k < n && !(strlen(keys[k].key) == (size_t)(eq - p) && !strncmp(keys[k].key, p, (size_t)(eq - p)))) k++;
        if (k == n)
            return pg_fail(e, "limits '%s': unknown key '%.*s' (tensors, kv, string, array, dim)", spec, (int)(eq - p), p);
        char *stop;
        errno = 0;
        unsigned long long v = strtoull(eq + 1, &stop, 10);
        if (errno || stop != end || eq + 1 == end || v < 1 || v > (unsigned long long)INT64_MAX || eq[1] == '-')
            return pg_fail(e, "limits '%s': value of '%s' must be a positive integer", spec, keys[k].key);
        if (!strcmp(keys[k].key, "dim")) l->max_dim = (int64_t)v;
        else *(uint64_t *)((char *)l + keys[k].off) = v;
        p = *end ? end + 1 : end;
    }
    return 0;
}

static const char *const type_names_[GGUF_TYPE_COUNT] = {
    "u8", "i8", "u16", "i16", "u32", "i32", "f32", "bool", "string", "array", "u64", "i64", "f64",
};

static const char *type_name_(uint32_t t) { return t < GGUF_TYPE_COUNT ? type_names_[t] : "?"; }

/* Encoded size of one scalar of type t; 0 for STRING/ARRAY/invalid. */
static size_t scalar_size_(uint32_t t) {
    switch (t) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_INT8: case GGUF_TYPE_BOOL: return 1;
    case GGUF_TYPE_UINT16: case GGUF_TYPE_INT16: return 2;
    case GGUF_TYPE_UINT32: case GGUF_TYPE_INT32: case GGUF_TYPE_FLOAT32: return 4;
    case GGUF_TYPE_UINT64: case GGUF_TYPE_INT64: case GGUF_TYPE_FLOAT64: return 8;
    default: return 0;
    }
}

/* Copies untrusted bytes into buf for an error message: at most ~60 bytes,
 * control bytes and (if s is not valid UTF-8) high bytes as \xNN. */
static const char *show_(char *buf, size_t cap, const char *s, uint64_t n) {
    bool utf8 = pg_utf8_valid(s, n > 4096 ? 4096 : (size_t)n);
    size_t o = 0, limit = cap < 64 ? cap - 8 : 56;
    uint64_t i = 0;
    for (; i < n && o < limit; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\' || (ch >= 0x80 && !utf8)) {
            if (o + 4 > limit) break;
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            if (ch >= 0xc0 && utf8) { /* don't split a multibyte character */
                size_t len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
                if (o + len > limit) break;
            }
            buf[o++] = (char)ch;
        }
    }
    if (i < n) { buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.'; }
    buf[o] = 0;
    return buf;
}

/* ---- reader ---- */

typedef struct {
    const uint8_t *p;
    size_t size, pos;
    const char *path;
    const gguf_limits *lim;
    pg_error *e;
    const char *field; /* the field being read, for truncation messages (may be NULL) */
} cur_t;

static int trunc_(cur_t *c, const char *what, uint64_t need) {
    return pg_fail(c->e, "%s: truncated: %s%s%s at offset %zu needs %" PRIu64 " bytes but the file ends at %zu",
                   c->path, what, c->field ? " " : "", c->field ? c->field : "", c->pos, need, c->size);
}

static int rd_(cur_t *c, void *out, size_t n, const char *what) {
    if (n > c->size - c->pos) return trunc_(c, what, n);
    memcpy(out, c->p + c->pos, n);
    c->pos += n;
    return 0;
}

static int rd_u32_(cur_t *c, uint32_t *v, const char *what) { return rd_(c, v, 4, what); }
static int rd_u64_(cur_t *c, uint64_t *v, const char *what) { return rd_(c, v, 8, what); }

/* Reads a string: length within limits and within the file. */
static int rd_str_(cur_t *c, gguf_str *s, const char *what) {
    uint64_t len;
    c->field = "string length";
    if (rd_u64_(c, &len, what)) return -1;
    if (len > c->lim->max_string)
        return pg_fail(c->e, "%s: %s: string length %" PRIu64 " at offset %zu exceeds the limit %" PRIu64,
                       c->path, what, len, c->pos - 8, c->lim->max_string);
    if (len > c->size - c->pos)
        return pg_fail(c->e, "%s: %s: string length %" PRIu64 " at offset %zu extends past end of file (size %zu)",
                       c->path, what, len, c->pos - 8, c->size);
    c->field = "string bytes";
    s->len = len;
    s->s = (const char *)c->p + c->pos;
    c->pos += (size_t)len;
    return 0;
}

static void free_contents_(gguf_file *g) {
    if (g->kv) {
        for (uint64_t i = 0; i < g->n_kv; i++) {
            free(g->kv[i].key);
            free(g->kv[i].arr_str);
        }
        free(g->kv);
    }
    if (g->tensors) {
        for (uint64_t i = 0; i < g->n_tensors; i++) free(g->tensors[i].name);
        free(g->tensors);
    }
    g->kv = NULL;
    g->tensors = NULL;
}

static int parse_value_(cur_t *c, gguf_kv *kv, const char *what) {
    if (kv->type == GGUF_TYPE_STRING) {
        if (rd_str_(c, &kv->v.str, what)) return -1;
        if (!pg_utf8_valid(kv->v.str.s, (size_t)kv->v.str.len))
            return pg_fail(c->e, "%s: %s: string value is not valid UTF-8", c->path, what);
        return 0;
    }
    if (kv->type != GGUF_TYPE_ARRAY) {
        uint8_t b[8] = {0};
        size_t n = scalar_size_(kv->type);
        c->field = "value";
        if (rd_(c, b, n, what)) return -1;
        switch (kv->type) {
        case GGUF_TYPE_UINT8: kv->v.u64 = b[0]; break;
        case GGUF_TYPE_INT8: kv->v.i64 = (int8_t)b[0]; break;
        case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, b, 2); kv->v.u64 = x; break; }
        case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, b, 2); kv->v.i64 = x; break; }
        case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, b, 4); kv->v.u64 = x; break; }
        case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, b, 4); kv->v.i64 = x; break; }
        case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, b, 4); kv->v.f64 = x; break; }
        case GGUF_TYPE_BOOL: kv->v.b = b[0] != 0; break;
        case GGUF_TYPE_UINT64: memcpy(&kv->v.u64, b, 8); break;
        case GGUF_TYPE_INT64: memcpy(&kv->v.i64, b, 8); break;
        case GGUF_TYPE_FLOAT64: memcpy(&kv->v.f64, b, 8); break;
        default: PG_ASSERT(0);
        }
        return 0;
    }
    uint32_t at;
    uint64_t n;
    c->field = "array header";
    if (rd_u32_(c, &at, what) || rd_u64_(c, &n, what)) return -1;
    if (at >= GGUF_TYPE_COUNT)
        return pg_fail(c->e, "%s: %s: invalid array element type %" PRIu32, c->path, what, at);
    if (at == GGUF_TYPE_ARRAY)
        return pg_fail(c->e, "%s: %s: nested arrays are not supported", c->path, what);
    if (n > c->lim->max_array)
        return pg_fail(c->e, "%s: %s: array length %" PRIu64 " exceeds the limit %" PRIu64, c->path, what,
                       n, c->lim->max_array);
    size_t esz = at == GGUF_TYPE_STRING ? 8 : scalar_size_(at);
    if (n > (c->size - c->pos) / esz)
        return pg_fail(c->e, "%s: %s: array of %" PRIu64 " %s at offset %zu extends past end of file (size %zu)",
                       c->path, what, n, type_name_(at), c->pos, c->size);
    kv->arr_type = (gguf_type)at;
    kv->arr_n = n;
    if (at != GGUF_TYPE_STRING) {
        kv->arr_data = c->p + c->pos;
        c->pos += (size_t)(n * esz);
        return 0;
    }
    kv->arr_str = xmalloc((size_t)n * sizeof(gguf_str) + 1);
    for (uint64_t i = 0; i < n; i++) {
        if (rd_str_(c, &kv->arr_str[i], what)) return -1;
        if (!pg_utf8_valid(kv->arr_str[i].s, (size_t)kv->arr_str[i].len))
            return pg_fail(c->e, "%s: %s: array element %" PRIu64 " is not valid UTF-8", c->path, what, i);
    }
    return 0;
}

static int cmp_kv_(const void *a, const void *b) {
    return strcmp((*(gguf_kv *const *)a)->key, (*(gguf_kv *const *)b)->key);
}
static int cmp_tname_(const void *a, const void *b) {
    return strcmp((*(pg_tensor *const *)a)->name, (*(pg_tensor *const *)b)->name);
}
static int cmp_toff_(const void *a, const void *b) {
    uint64_t x = (*(pg_tensor *const *)a)->file_offset, y = (*(pg_tensor *const *)b)->file_offset;
    return x < y ? -1 : x > y;
}

static int parse_kvs_(cur_t *c, gguf_file *g) {
    char what[160], nb[80];
    for (uint64_t i = 0; i < g->n_kv; i++) {
        gguf_kv *kv = &g->kv[i];
        gguf_str key;
        snprintf(what, sizeof what, "kv %" PRIu64 " key", i);
        if (rd_str_(c, &key, what)) return -1;
        if (key.len == 0) return pg_fail(c->e, "%s: kv %" PRIu64 " has an empty key", c->path, i);
        if (!pg_utf8_valid(key.s, (size_t)key.len) || memchr(key.s, 0, (size_t)key.len))
            return pg_fail(c->e, "%s: kv %" PRIu64 " key '%s' is not valid UTF-8", c->path, i,
                           show_(nb, sizeof nb, key.s, key.len));
        kv->key = xmalloc((size_t)key.len + 1);
        memcpy(kv->key, key.s, (size_t)key.len);
        kv->key[key.len] = 0;
        snprintf(what, sizeof what, "kv %" PRIu64 " '%s'", i, show_(nb, sizeof nb, key.s, key.len));
        uint32_t t;
        c->field = "value type";
        if (rd_u32_(c, &t, what)) return -1;
        if (t >= GGUF_TYPE_COUNT)
            return pg_fail(c->e, "%s: %s has invalid value type %" PRIu32, c->path, what, t);
        kv->type = (gguf_type)t;
        if (parse_value_(c, kv, what)) return -1;
    }
    if (g->n_kv > 1) {
        gguf_kv **idx = xmalloc((size_t)g->n_kv * sizeof *idx);
        for (uint64_t i = 0; i < g->n_kv; i++) idx[i] = &g->kv[i];
        qsort(idx, (size_t)g->n_kv, sizeof *idx, cmp_kv_);
        for (uint64_t i = 0; i + 1 < g->n_kv; i++) {
            if (strcmp(idx[i]->key, idx[i + 1]->key) == 0) {
                size_t a = (size_t)(idx[i] - g->kv), b = (size_t)(idx[i + 1] - g->kv);
                pg_fail(c->e, "%s: duplicate key '%s' (kv %zu and %zu)", c->path,
                        show_(nb, sizeof nb, idx[i]->key, strlen(idx[i]->key)), a < b ? a : b, a < b ? b : a);
                free(idx);
                return -1;
            }
        }
        free(idx);
    }
    g->alignment = GGUF_DEFAULT_ALIGNMENT;
    const gguf_kv *al = gguf_find(g, "general.alignment");
    if (al) {
        if (al->type != GGUF_TYPE_UINT32)
            return pg_fail(c->e, "%s: general.alignment has type %s, must be u32", c->path, type_name_(al->type));
        if (al->v.u64 == 0 || (al->v.u64 & (al->v.u64 - 1)))
            return pg_fail(c->e, "%s: general.alignment %" PRIu64 " is not a power of two", c->path, al->v.u64);
        g->alignment = al->v.u64;
    }
    return 0;
}

static int parse_tensor_infos_(cur_t *c, gguf_file *g) {
    char what[160], nb[80];
    const gguf_limits *lim = c->lim;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        pg_tensor *t = &g->tensors[i];
        gguf_str name;
        snprintf(what, sizeof what, "tensor %" PRIu64 " name", i);
        if (rd_str_(c, &name, what)) return -1;
        if (!pg_utf8_valid(name.s, (size_t)name.len) || memchr(name.s, 0, (size_t)name.len))
            return pg_fail(c->e, "%s: tensor %" PRIu64 " name '%s' is not valid UTF-8", c->path, i,
                           show_(nb, sizeof nb, name.s, name.len));
        t->name = xmalloc((size_t)name.len + 1);
        memcpy(t->name, name.s, (size_t)name.len);
        t->name[name.len] = 0;
        snprintf(what, sizeof what, "tensor %" PRIu64 " '%s'", i, show_(nb, sizeof nb, name.s, name.len));

        uint32_t nd;
        c->field = "n_dims";
        if (rd_u32_(c, &nd, what)) return -1;
        if (nd < 1 || nd > PG_MAX_DIMS)
            return pg_fail(c->e, "%s: %s has n_dims %" PRIu32 " (must be 1..%d)", c->path, what, nd, PG_MAX_DIMS);
        t->n_dims = (int)nd;
        for (int d = 0; d < PG_MAX_DIMS; d++) t->ne[d] = 1;
        int64_t nel = 1;
        for (uint32_t d = 0; d < nd; d++) {
            uint64_t ne = 0;
            c->field = "dimensions";
            if (rd_u64_(c, &ne, what)) return -1;
            if (ne < 1 || ne > (uint64_t)lim->max_dim)
                return pg_fail(c->e, "%s: %s has dimension ne[%" PRIu32 "] = %" PRIu64 " out of range (1..%" PRId64 ")",
                               c->path, what, d, ne, lim->max_dim);
            t->ne[d] = (int64_t)ne;
            if (__builtin_mul_overflow(nel, t->ne[d], &nel))
                return pg_fail(c->e, "%s: %s element count overflows (dimensions too large)", c->path, what);
        }
        uint32_t type;
        c->field = "type";
        if (rd_u32_(c, &type, what)) return -1;
        const pg_type_traits *tt = type == PG_TYPE_Q16_0 ? NULL : pg_type_info((int)type); /* ours, not GGML's */
        if (!tt) return pg_fail(c->e, "%s: %s has unknown type id %" PRIu32, c->path, what, type);
        t->type = (pg_type)type;
        if (t->ne[0] % tt->blck)
            return pg_fail(c->e, "%s: %s row length ne[0] = %" PRId64 " is not a multiple of the block size %d of type %s",
                           c->path, what, t->ne[0], tt->blck, tt->name);
        uint64_t nbytes;
        if (__builtin_mul_overflow((uint64_t)(nel / tt->blck), (uint64_t)tt->type_size, &nbytes) || nbytes > SIZE_MAX)
            return pg_fail(c->e, "%s: %s byte size overflows", c->path, what);
        t->nbytes = (size_t)nbytes;
        uint64_t off;
        c->field = "data offset";
        if (rd_u64_(c, &off, what)) return -1;
        if (off % g->alignment)
            return pg_fail(c->e, "%s: %s data offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                           c->path, what, off, g->alignment);
        t->file_offset = off; /* relative for now; made absolute once data_offset is known */
        t->file_index = 0;
    }
    if (g->n_tensors > 1) {
        pg_tensor **idx = xmalloc((size_t)g->n_tensors * sizeof *idx);
        for (uint64_t i = 0; i < g->n_tensors; i++) idx[i] = &g->tensors[i];
        qsort(idx, (size_t)g->n_tensors, sizeof *idx, cmp_tname_);
        for (uint64_t i = 0; i + 1 < g->n_tensors; i++) {
            if (strcmp(idx[i]->name, idx[i + 1]->name) == 0) {
                size_t a = (size_t)(idx[i] - g->tensors), b = (size_t)(idx[i + 1] - g->tensors);
                pg_fail(c->e, "%s: duplicate tensor name '%s' (tensors %zu and %zu)", c->path,
                        show_(nb, sizeof nb, idx[i]->name, strlen(idx[i]->name)), a < b ? a : b, a < b ? b : a);
                free(idx);
                return -1;
            }
        }
        free(idx);
    }
    return 0;
}

static int place_tensors_(cur_t *c, gguf_file *g) {
    char nb[80], nb2[80];
    uint64_t pos = c->pos, pad = (g->alignment - pos % g->alignment) % g->alignment;
    g->data_offset = pos + pad;
    if (g->data_offset > c->size) {
        if (g->n_tensors > 0)
            return pg_fail(c->e, "%s: truncated: tensor data region starts at %" PRIu64 " past end of file (size %zu)",
                           c->path, g->data_offset, c->size);
        g->data_offset = c->size;
    }
    uint64_t avail = c->size - g->data_offset;
    for (uint64_t i = 0; i < g->n_tensors; i++) {
        pg_tensor *t = &g->tensors[i];
        uint64_t off = t->file_offset;
        if (off > avail || t->nbytes > avail - off) {
            uint64_t abs = off > UINT64_MAX - g->data_offset ? off : off + g->data_offset;
            return pg_fail(c->e, "%s: tensor %" PRIu64 " '%s' data [offset %" PRIu64 ", size %zu] extends past end of file (size %zu)",
                           c->path, i, show_(nb, sizeof nb, t->name, strlen(t->name)), abs, t->nbytes, c->size);
        }
        t->file_offset = g->data_offset + off;
        t->data = c->p + t->file_offset;
    }
    if (g->n_tensors > 1) {
        pg_tensor **idx = xmalloc((size_t)g->n_tensors * sizeof *idx);
        for (uint64_t i = 0; i < g->n_tensors; i++) idx[i] = &g->tensors[i];
        qsort(idx, (size_t)g->n_tensors, sizeof *idx, cmp_toff_);
        for (uint64_t i = 0; i + 1 < g->n_tensors; i++) {
            const pg_tensor *a = idx[i], *b = idx[i + 1];
            if (a->file_offset + a->nbytes > b->file_offset) {
                pg_fail(c->e, "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
                        c->path, show_(nb, sizeof nb, a->name, strlen(a->name)), a->file_offset,
                        a->file_offset + a->nbytes, show_(nb2, sizeof nb2, b->name, strlen(b->name)),
                        b->file_offset, b->file_offset + b->nbytes);
                free(idx);
                return -1;
            }
        }
        free(idx);
    }
    return 0;
}

/* g->map, g->size and g->path are set; fills the rest. On failure frees the
 * parsed contents (not path/map). */
static int parse_(gguf_file *g, const gguf_limits *limits, pg_error *e) {
    gguf_limits def;
    if (!limits) {
        gguf_limits_default(&def);
        limits = &def;
    }
    cur_t c = {.p = g->map, .size = g->size, .pos = 0, .path = g->path, .lim = limits, .e = e};
    if (g->size < 4)
        return pg_fail(e, "%s: truncated: file is %zu bytes, too small for a GGUF header", g->path, g->size);
    if (memcmp(g->map, GGUF_MAGIC, 4) != 0) return pg_fail(e, "%s: not a GGUF file (bad magic)", g->path);
    c.pos = 4;
    uint32_t version;
    if (rd_u32_(&c, &version, "version")) return -1;
    if (version != 2 && version != 3)
        return pg_fail(e, "%s: unsupported GGUF version %" PRIu32 "%s", g->path, version,
                       (version & 0xffff) == 0 ? " (big-endian file?)" : " (only 2 and 3 are supported)");
    g->version = version;
    uint64_t n_tensors, n_kv;
    if (rd_u64_(&c, &n_tensors, "tensor count") || rd_u64_(&c, &n_kv, "kv count")) return -1;
    if (n_tensors > limits->max_tensors)
        return pg_fail(e, "%s: tensor count %" PRIu64 " exceeds the limit %" PRIu64, g->path, n_tensors,
                       limits->max_tensors);
    if (n_kv > limits->max_kv)
        return pg_fail(e, "%s: kv count %" PRIu64 " exceeds the limit %" PRIu64, g->path, n_kv, limits->max_kv);
    size_t left = c.size - c.pos;
    if (n_kv > left / GGUF_MIN_KV_BYTES)
        return pg_fail(e, "%s: truncated: kv count %" PRIu64 " cannot fit in the %zu bytes left in the file",
                       g->path, n_kv, left);
    left -= (size_t)n_kv * GGUF_MIN_KV_BYTES;
    if (n_tensors > left / GGUF_MIN_TINFO_BYTES)
        return pg_fail(e, "%s: truncated: tensor count %" PRIu64 " cannot fit in the %zu bytes left in the file",
                       g->path, n_tensors, left);
    g->n_kv = n_kv;
    g->kv = xcalloc((size_t)n_kv, sizeof *g->kv);
    g->n_tensors = n_tensors;
    g->tensors = xcalloc((size_t)n_tensors, sizeof *g->tensors);
    if (parse_kvs_(&c, g) || parse_tensor_infos_(&c, g) || place_tensors_(&c, g)) {
        free_contents_(g);
        return -1;
    }
    return 0;
}

static void reset_(gguf_file *g) {
    memset(g, 0, sizeof *g);
    g->fd = -1;
}

int gguf_open(gguf_file *g, const char *path, const gguf_limits *limits, pg_error *e) {
    reset_(g);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pg_fail(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int err = errno;
        close(fd);
        return pg_fail(e, "%s: cannot stat: %s", path, strerror(err));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return pg_fail(e, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return pg_fail(e, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < GGUF_HEADER_SIZE) {
        /* Too small to map usefully: read what there is for the message. */
        uint8_t buf[GGUF_HEADER_SIZE];
        ssize_t r = pread(fd, buf, size, 0);
        close(fd);
        if (r != (ssize_t)size) return pg_fail(e, "%s: read failed", path);
        g->path = (char *)path;
        g->map = buf;
        g->size = size;
        int rc = parse_(g, limits, e);
        PG_ASSERT(rc != 0); /* a header needs 24 bytes */
        reset_(g);
        return -1;
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int err = errno;
        close(fd);
        return pg_fail(e, "%s: cannot mmap %zu bytes: %s", path, size, strerror(err));
    }
    g->path = xstrdup(path);
    g->fd = fd;
    g->map = map;
    g->size = size;
    if (parse_(g, limits, e)) {
        munmap(map, size);
        close(fd);
        free(g->path);
        reset_(g);
        return -1;
    }
    return 0;
}

int gguf_open_memory(gguf_file *g, const void *buf, size_t size, const char *name,
                     const gguf_limits *limits, pg_error *e) {
    reset_(g);
    g->path = xstrdup(name ? name : "<memory>");
    g->map = buf;
    g->size = size;
    if (size > 0 && !buf) {
        free(g->path);
        reset_(g);
        return pg_fail(e, "%s: NULL buffer", name ? name : "<memory>");
    }
    if (parse_(g, limits, e)) {
        free(g->path);
        reset_(g);
        return -1;
    }
    return 0;
}

void gguf_close(gguf_file *g) {
    if (!g || !g->path) return;
    free_contents_(g);
    if (g->fd >= 0) {
        if (g->map) munmap((void *)g->map, g->size);
        close(g->fd);
    }
    free(g->path);
    reset_(g);
}

const gguf_kv *gguf_find(const gguf_file *g, const char *key) {
    if (!g->kv) return NULL;
    for (uint64_t i = 0; i < g->n_kv; i++)
        if (g->kv[i].key && strcmp(g->kv[i].key, key) == 0) return &g->kv[i];
    return NULL;
}

const pg_tensor *gguf_find_tensor(const gguf_file *g, const char *name) {
    if (!g->tensors) return NULL;
    for (uint64_t i = 0; i < g->n_tensors; i++)
        if (g->tensors[i].name && strcmp(g->tensors[i].name, name) == 0) return &g->tensors[i];
    return NULL;
}

static bool is_unsigned_(gguf_type t) {
    return t == GGUF_TYPE_UINT8 || t == GGUF_TYPE_UINT16 || t == GGUF_TYPE_UINT32 || t == GGUF_TYPE_UINT64;
}
static bool is_signed_(gguf_type t) {
    return t == GGUF_TYPE_INT8 || t == GGUF_TYPE_INT16 || t == GGUF_TYPE_INT32 || t == GGUF_TYPE_INT64;
}

bool gguf_get_int(const gguf_file *g, const char *key, int64_t *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    if (is_unsigned_(kv->type)) {
        if (kv->v.u64 > (uint64_t)INT64_MAX) return false;
        *out = (int64_t)kv->v.u64;
        return true;
    }
    if (is_signed_(kv->type)) {
        *out = kv->v.i64;
        return true;
    }
    return false;
}

bool gguf_get_float(const gguf_file *g, const char *key, double *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv) return false;
    if (kv->type == GGUF_TYPE_FLOAT32 || kv->type == GGUF_TYPE_FLOAT64) *out = kv->v.f64;
    else if (is_unsigned_(kv->type)) *out = (double)kv->v.u64;
    else if (is_signed_(kv->type)) *out = (double)kv->v.i64;
    else return false;
    return true;
}

bool gguf_get_bool(const gguf_file *g, const char *key, bool *out) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL) return false;
    *out = kv->v.b;
    return true;
}

char *gguf_get_str(const gguf_file *g, const char *key) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_TYPE_STRING) return NULL;
    char *s = xmalloc((size_t)kv->v.str.len + 1);
    memcpy(s, kv->v.str.s, (size_t)kv->v.str.len);
    s[kv->v.str.len] = 0;
    return s;
}

const gguf_kv *gguf_get_arr(const gguf_file *g, const char *key, gguf_type elem_type) {
    const gguf_kv *kv = gguf_find(g, key);
    if (!kv || kv->type != GGUF_TYPE_ARRAY || kv->arr_type != elem_type) return NULL;
    return kv;
}

/* A float element as int64, saturating (NaN -> 0): a plain cast of a value out
 * of range is undefined behaviour, and the file's values are untrusted. */
static int64_t f2i_(double x) {
    if (x != x) return 0;
    if (x >= 9223372036854775807.0) return INT64_MAX;
    if (x <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)x;
}

int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i) {
    PG_ASSERT(kv->type == GGUF_TYPE_ARRAY && i < kv->arr_n);
    const uint8_t *p = (const uint8_t *)kv->arr_data + i * scalar_size_(kv->arr_type);
    switch (kv->arr_type) {
    case GGUF_TYPE_UINT8: case GGUF_TYPE_BOOL: return *p;
    case GGUF_TYPE_INT8: return (int8_t)*p;
    case GGUF_TYPE_UINT16: { uint16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_TYPE_INT16: { int16_t x; memcpy(&x, p, 2); return x; }
    case GGUF_TYPE_UINT32: { uint32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_TYPE_INT32: { int32_t x; memcpy(&x, p, 4); return x; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); return (int64_t)x; }
    case GGUF_TYPE_INT64: { int64_t x; memcpy(&x, p, 8); return x; }
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); return f2i_(x); }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); return f2i_(x); }
    default: PG_ASSERT(!"gguf_arr_int on a non-numeric array"); return 0;
    }
}

double gguf_arr_float(const gguf_kv *kv, uint64_t i) {
    PG_ASSERT(kv->type == GGUF_TYPE_ARRAY && i < kv->arr_n);
    const uint8_t *p = (const uint8_t *)kv->arr_data + i * scalar_size_(kv->arr_type);
    switch (kv->arr_type) {
    case GGUF_TYPE_FLOAT32: { float x; memcpy(&x, p, 4); return x; }
    case GGUF_TYPE_FLOAT64: { double x; memcpy(&x, p, 8); return x; }
    case GGUF_TYPE_UINT64: { uint64_t x; memcpy(&x, p, 8); return (double)x; }
    default: return (double)gguf_arr_int(kv, i);
    }
}

/* ---- writer ---- */

typedef struct {
    char *key;
    uint8_t *val; /* u32 type + encoded value */
    size_t len;
} wkv_;

typedef struct {
    char *name;
    pg_type type;
    int n_dims;
    int64_t ne[PG_MAX_DIMS];
    const void *data;
    size_t nbytes;
    gguf_fill_fn fill; /* non-NULL: data produced at write time */
    void *fill_ctx;
} wtensor_;

struct gguf_writer {
    wkv_ *kv;
    size_t n_kv, cap_kv;
    wtensor_ *t;
    size_t n_t, cap_t;
    char err[256]; /* first misuse found by add_tensor, reported by write */
};

typedef struct {
    uint8_t *p;
    size_t len, cap;
} buf_t;

static void put_(buf_t *b, const void *src, size_t n) {
    if (b->len + n > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 64;
        while (cap < b->len + n) cap *= 2;
        b->p = xrealloc(b->p, cap);
        b->cap = cap;
    }
    if (n) memcpy(b->p + b->len, src, n);
    b->len += n;
}
static void put_u32_(buf_t *b, uint32_t v) { put_(b, &v, 4); }
static void put_u64_(buf_t *b, uint64_t v) { put_(b, &v, 8); }
static void put_str_(buf_t *b, const char *s, uint64_t n) {
    put_u64_(b, n);
    put_(b, s, (size_t)n);
}

gguf_writer *gguf_writer_new(void) { return xcalloc(1, sizeof(gguf_writer)); }

void gguf_writer_free(gguf_writer *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].val);
    }
    for (size_t i = 0; i < w->n_t; i++) free(w->t[i].name);
    free(w->kv);
    free(w->t);
    free(w);
}

/* Stores key -> encoded value (takes b's buffer); replaces an existing key in place. */
static void set_kv_(gguf_writer *w, const char *key, buf_t *b) {
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].val);
            w->kv[i].val = b->p;
            w->kv[i].len = b->len;
            return;
        }
    }
    if (w->n_kv == w->cap_kv) {
        w->cap_kv = w->cap_kv ? w->cap_kv * 2 : 16;
        w->kv = xrealloc(w->kv, w->cap_kv * sizeof *w->kv);
    }
    w->kv[w->n_kv++] = (wkv_){xstrdup(key), b->p, b->len};
}

static void set_scalar_(gguf_writer *w, const char *key, gguf_type t, const void *v) {
    buf_t b = {0};
    put_u32_(&b, t);
    put_(&b, v, scalar_size_(t));
    set_kv_(w, key, &b);
}

void gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v) { set_scalar_(w, key, GGUF_TYPE_UINT8, &v); }
void gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v) { set_scalar_(w, key, GGUF_TYPE_INT8, &v); }
void gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v) { set_scalar_(w, key, GGUF_TYPE_UINT16, &v); }
void gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v) { set_scalar_(w, key, GGUF_TYPE_INT16, &v); }
void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v) { set_scalar_(w, key, GGUF_TYPE_UINT32, &v); }
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v) { set_scalar_(w, key, GGUF_TYPE_INT32, &v); }
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v) { set_scalar_(w, key, GGUF_TYPE_FLOAT32, &v); }
void gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v) { set_scalar_(w, key, GGUF_TYPE_UINT64, &v); }
void gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v) { set_scalar_(w, key, GGUF_TYPE_INT64, &v); }
void gguf_writer_set_f64(gguf_writer *w, const char *key, double v) { set_scalar_(w, key, GGUF_TYPE_FLOAT64, &v); }
void gguf_writer_set_bool(gguf_writer *w, const char *key, bool v) {
    uint8_t x = v ? 1 : 0;
    set_scalar_(w, key, GGUF_TYPE_BOOL, &x);
}

void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v) {
    buf_t b = {0};
    put_u32_(&b, GGUF_TYPE_STRING);
    put_str_(&b, v, strlen(v));
    set_kv_(w, key, &b);
}

void gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *v, uint64_t n) {
    size_t esz = scalar_size_(elem_type);
    PG_ASSERT(esz > 0);
    buf_t b = {0};
    put_u32_(&b, GGUF_TYPE_ARRAY);
    put_u32_(&b, elem_type);
    put_u64_(&b, n);
    put_(&b, v, (size_t)n * esz);
    set_kv_(w, key, &b);
}

void gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n) {
    buf_t b = {0};
    put_u32_(&b, GGUF_TYPE_ARRAY);
    put_u32_(&b, GGUF_TYPE_STRING);
    put_u64_(&b, n);
    for (uint64_t i = 0; i < n; i++) put_str_(&b, v[i], strlen(v[i]));
    set_kv_(w, key, &b);
}

void gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n) {
    gguf_writer_set_arr(w, key, GGUF_TYPE_INT32, v, n);
}

void gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n) {
    gguf_writer_set_arr(w, key, GGUF_TYPE_FLOAT32, v, n);
}

void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv) {
    buf_t b = {0};
    put_u32_(&b, kv->type);
    switch (kv->type) {
    case GGUF_TYPE_STRING: put_str_(&b, kv->v.str.s, kv->v.str.len); break;
    case GGUF_TYPE_ARRAY:
        put_u32_(&b, kv->arr_type);
        put_u64_(&b, kv->arr_n);
        if (kv->arr_type == GGUF_TYPE_STRING) {
            for (uint64_t i = 0; i < kv->arr_n; i++) put_str_(&b, kv->arr_str[i].s, kv->arr_str[i].len);
        } else {
            put_(&b, kv->arr_data, (size_t)kv->arr_n * scalar_size_(kv->arr_type));
        }
        break;
    case GGUF_TYPE_BOOL: { uint8_t x = kv->v.b; put_(&b, &x, 1); break; }
    case GGUF_TYPE_FLOAT32: { float x = (float)kv->v.f64; put_(&b, &x, 4); break; }
    case GGUF_TYPE_FLOAT64: put_(&b, &kv->v.f64, 8); break;
    default: {
        /* integers: the low bytes of the 64-bit value (little endian) */
        size_t n = scalar_size_(kv->type);
        PG_ASSERT(n > 0);
        uint64_t x = is_signed_(kv->type) ? (uint64_t)kv->v.i64 : kv->v.u64;
        put_(&b, &x, n);
    }
    }
    set_kv_(w, kv->key, &b);
}

static wtensor_ *add_tensor_(gguf_writer *w, const char *name, pg_type type, int n_dims, const int64_t *ne,
                             size_t nbytes);

void gguf_writer_add_tensor(gguf_writer *w, const char *name, pg_type type, int n_dims,
                            const int64_t *ne, const void *data, size_t nbytes) {
    wtensor_ *t = add_tensor_(w, name, type, n_dims, ne, nbytes);
    if (t) t->data = data;
}

void gguf_writer_add_tensor_cb(gguf_writer *w, const char *name, pg_type type, int n_dims, const int64_t *ne,
                               size_t nbytes, int (*fill)(void *ctx, uint64_t offset, void *buf, size_t len),
                               void *ctx) {
    if (!fill && !w->err[0]) {
        snprintf(w->err, sizeof w->err, "tensor '%.64s' has no data callback", name);
        return;
    }
    wtensor_ *t = add_tensor_(w, name, type, n_dims, ne, nbytes);
    if (t) {
        t->fill = fill;
        t->fill_ctx = ctx;
    }
}

/* Validates and appends a tensor entry; NULL (w->err set) on misuse. */
static wtensor_ *add_tensor_(gguf_writer *w, const char *name, pg_type type, int n_dims, const int64_t *ne,
                             size_t nbytes) {
    if (w->err[0]) return NULL;
    const pg_type_traits *tt = pg_type_info(type);
    if (!tt) {
        snprintf(w->err, sizeof w->err, "tensor '%.64s' has unknown type %d", name, (int)type);
        return NULL;
    }
    if (n_dims < 1 || n_dims > PG_MAX_DIMS) {
        snprintf(w->err, sizeof w->err, "tensor '%.64s' has n_dims %d (must be 1..%d)", name, n_dims, PG_MAX_DIMS);
        return NULL;
    }
    int64_t nel = 1;
    for (int d = 0; d < n_dims; d++) {
        if (ne[d] < 1 || __builtin_mul_overflow(nel, ne[d], &nel)) {
            snprintf(w->err, sizeof w->err, "tensor '%.64s' has a bad dimension ne[%d] = %" PRId64, name, d, ne[d]);
            return NULL;
        }
    }
    if (ne[0] % tt->blck || (uint64_t)(nel / tt->blck) * tt->type_size != nbytes) {
        snprintf(w->err, sizeof w->err, "tensor '%.64s': %zu bytes do not match type %s and its shape", name,
                 nbytes, tt->name);
        return NULL;
    }
    for (size_t i = 0; i < w->n_t; i++) {
        if (strcmp(w->t[i].name, name) == 0) {
            snprintf(w->err, sizeof w->err, "duplicate tensor name '%.64s'", name);
            return NULL;
        }
    }
    if (w->n_t == w->cap_t) {
        w->cap_t = w->cap_t ? w->cap_t * 2 : 16;
        w->t = xrealloc(w->t, w->cap_t * sizeof *w->t);
    }
    wtensor_ *t = &w->t[w->n_t++];
    memset(t, 0, sizeof *t);
    t->name = xstrdup(name);
    t->type = type;
    t->n_dims = n_dims;
    for (int d = 0; d < PG_MAX_DIMS; d++) t->ne[d] = d < n_dims ? ne[d] : 1;
    t->nbytes = nbytes;
    return t;
}

static uint64_t align_up_(uint64_t x, uint64_t a) { return (x + a - 1) / a * a; }

int gguf_writer_write(gguf_writer *w, const char *path, pg_error *e) {
    if (w->err[0]) return pg_fail(e, "%s: %s", path, w->err);
    uint64_t alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0) continue;
        uint32_t t, v = 0;
        memcpy(&t, w->kv[i].val, 4);
        if (t == GGUF_TYPE_UINT32) memcpy(&v, w->kv[i].val + 4, 4);
        if (t != GGUF_TYPE_UINT32 || v == 0 || (v & (v - 1)))
            return pg_fail(e, "%s: general.alignment must be a u32 power of two", path);
        alignment = v;
    }
    buf_t h = {0};
    put_(&h, GGUF_MAGIC, 4);
    put_u32_(&h, 3);
    put_u64_(&h, w->n_t);
    put_u64_(&h, w->n_kv);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_str_(&h, w->kv[i].key, strlen(w->kv[i].key));
        put_(&h, w->kv[i].val, w->kv[i].len);
    }
    uint64_t off = 0;
    for (size_t i = 0; i < w->n_t; i++) {
        const wtensor_ *t = &w->t[i];
        put_str_(&h, t->name, strlen(t->name));
        put_u32_(&h, (uint32_t)t->n_dims);
        for (int d = 0; d < t->n_dims; d++) put_u64_(&h, (uint64_t)t->ne[d]);
        put_u32_(&h, (uint32_t)t->type);
        put_u64_(&h, off);
        off = align_up_(off + t->nbytes, alignment);
    }
    static const uint8_t zeros[256];
    while (h.len % alignment) put_(&h, zeros, (size_t)((alignment - h.len % alignment) < sizeof zeros ? alignment - h.len % alignment : sizeof zeros));

    size_t plen = strlen(path);
    char *tmp = xmalloc(plen + 8);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp", 5);
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        int err = errno;
        free(h.p);
        free(tmp);
        return pg_fail(e, "%s: cannot create: %s", path, strerror(err));
    }
    bool ok = fwrite(h.p, 1, h.len, f) == h.len;
    free(h.p);
    uint8_t *chunk = NULL;
    const wtensor_ *failed = NULL;
    uint64_t failed_at = 0;
    for (size_t i = 0; ok && i < w->n_t; i++) {
        const wtensor_ *t = &w->t[i];
        if (t->fill) {
            if (!chunk) chunk = xmalloc_aligned(64, GGUF_WRITER_CHUNK);
            for (uint64_t o = 0; ok && o < t->nbytes;) {
                size_t n = t->nbytes - o < GGUF_WRITER_CHUNK ? (size_t)(t->nbytes - o) : GGUF_WRITER_CHUNK;
                if (t->fill(t->fill_ctx, o, chunk, n) != 0) {
                    failed = t;
                    failed_at = o;
                    ok = false;
                    break;
                }
                ok = fwrite(chunk, 1, n, f) == n;
                o += n;
            }
        } else {
            ok = fwrite(t->data, 1, t->nbytes, f) == t->nbytes;
        }
        uint64_t pad = align_up_(t->nbytes, alignment) - t->nbytes;
        while (ok && pad > 0) {
            size_t n = pad < sizeof zeros ? (size_t)pad : sizeof zeros;
            ok = fwrite(zeros, 1, n, f) == n;
            pad -= n;
        }
    }
    free(chunk);
    int err = ok || failed ? 0 : errno;
    if (fclose(f) != 0 && ok) {
        ok = false;
        err = errno;
    }
    if (ok && rename(tmp, path) != 0) {
        ok = false;
        err = errno;
    }
    if (!ok) {
        unlink(tmp);
        free(tmp);
        if (failed)
            return pg_fail(e, "%s: tensor '%.64s': data callback failed at offset %" PRIu64, path, failed->name,
                           failed_at);
        return pg_fail(e, "%s: write failed: %s", path, err ? strerror(err) : "short write");
    }
    free(tmp);
    return 0;
}
