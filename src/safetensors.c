/* safetensors.c - .safetensors files (mmap, validated header) and Hugging
 * Face model directories (config.json + one file or an indexed set of shards).
 *
 * The JSON header is parsed with jansson (duplicate keys rejected); every
 * entry's dtype, shape and data_offsets are checked against the data region
 * and against each other (no overlaps) before any pointer into the mapping is
 * handed out. Errors are one line, "PATH: problem".
 */
#include "safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors.c assumes a little-endian host"
#endif

#define ST_MAX_HEADER (100ull * 1000 * 1000)

static const struct {
    const char *name;
    pg_type type;
} st_dtypes_[] = {
    {"F32", PG_TYPE_F32}, {"F16", PG_TYPE_F16}, {"BF16", PG_TYPE_BF16}, {"F64", PG_TYPE_F64},
    {"I8", PG_TYPE_I8},   {"I32", PG_TYPE_I32}, {"I64", PG_TYPE_I64},
    {"U8", PG_TYPE_I8}, /* raw bytes (gpt-oss's MXFP4 blocks and scales): I8 has the size */
};

/* Name for a message: control characters, quotes and backslashes escaped, cut at ~60 bytes. */
static const char *show_(char *buf, size_t cap, const char *s) {
    size_t o = 0, limit = cap - 8, i = 0;
    for (; s[i] && o < limit; i++) {
        unsigned char ch = (unsigned char)s[i];
        if (ch < 0x20 || ch == 0x7f || ch == '\'' || ch == '\\') {
            if (o + 4 > limit) break;
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", ch);
        } else {
            if (ch >= 0xc0) {
                size_t len = ch >= 0xf0 ? 4 : ch >= 0xe0 ? 3 : 2;
                if (o + len > limit) break;
            }
            buf[o++] = (char)ch;
        }
    }
    if (s[i]) { buf[o++] = '.'; buf[o++] = '.'; buf[o++] = '.'; }
    buf[o] = 0;
    return buf;
}

static void st_reset_(st_file *f) {
    memset(f, 0, sizeof *f);
    f->fd = -1;
}

static void st_free_contents_(st_file *f) {
    if (f->tensors)
        for (uint64_t i = 0; i < f->n_tensors; i++) free(f->tensors[i].name);
    free(f->tensors);
    for (uint64_t i = 0; i < f->n_meta; i++) {
        if (f->meta_keys) free(f->meta_keys[i]);
        if (f->meta_values) free(f->meta_values[i]);
    }
    free(f->meta_keys);
    free(f->meta_values);
    f->tensors = NULL;
    f->meta_keys = f->meta_values = NULL;
    f->n_tensors = f->n_meta = 0;
}

static int cmp_off_(const void *a, const void *b) {
    uint64_t x = (*(pg_tensor *const *)a)->file_offset, y = (*(pg_tensor *const *)b)->file_offset;
    return x < y ? -1 : x > y;
}

static int parse_meta_(st_file *f, json_t *meta, pg_error *e) {
    char nb[80];
    if (!json_is_object(meta)) return pg_fail(e, "%s: __metadata__ is not a JSON object", f->path);
    size_t n = json_object_size(meta);
    f->meta_keys = xcalloc(n, sizeof(char *));
    f->meta_values = xcalloc(n, sizeof(char *));
    const char *k;
    json_t *v;
    json_object_foreach(meta, k, v) {
        if (!json_is_string(v))
            return pg_fail(e, "%s: __metadata__ value for '%s' is not a string", f->path, show_(nb, sizeof nb, k));
        f->meta_keys[f->n_meta] = xstrdup(k);
        f->meta_values[f->n_meta] = xstrdup(json_string_value(v));
        f->n_meta++;
    }
    return 0;
}

/* One header entry -> t (name set by the caller). data_size: bytes after the header. */
static int parse_entry_(st_file *f, const char *name, json_t *ent, uint64_t data_start, uint64_t data_size,
                        pg_tensor *t, pg_error *e) {
    char nb[80];
    const char *sn = show_(nb, sizeof nb, name);
    if (!json_is_object(ent)) return pg_fail(e, "%s: entry for tensor '%s' is not a JSON object", f->path, sn);
    json_t *jd = json_object_get(ent, "dtype"), *js = json_object_get(ent, "shape"),
           *jo = json_object_get(ent, "data_offsets");
    if (!jd) return pg_fail(e, "%s: tensor '%s' has no dtype", f->path, sn);
    if (!json_is_string(jd)) return pg_fail(e, "%s: tensor '%s' dtype is not a string", f->path, sn);
    const char *dt = json_string_value(jd);
    int ti = -1;
    for (size_t i = 0; i < sizeof st_dtypes_ / sizeof st_dtypes_[0]; i++)
        if (strcmp(dt, st_dtypes_[i].name) == 0) ti = (int)i;
    if (ti < 0) {
        char db[80];
        return pg_fail(e, "%s: unsupported dtype %s for tensor %s", f->path, show_(db, sizeof db, dt), sn);
    }
    t->type = st_dtypes_[ti].type;
    const pg_type_traits *tt = pg_type_info(t->type);
    PG_ASSERT(tt && tt->blck == 1);

    if (!js) return pg_fail(e, "%s: tensor '%s' has no shape", f->path, sn);
    if (!json_is_array(js)) return pg_fail(e, "%s: tensor '%s' shape is not an array", f->path, sn);
    size_t nd = json_array_size(js);
    if (nd > PG_MAX_DIMS)
        return pg_fail(e, "%s: tensor '%s' has %zu dimensions (at most %d supported)", f->path, sn, nd, PG_MAX_DIMS);
    for (int d = 0; d < PG_MAX_DIMS; d++) t->ne[d] = 1;
    t->n_dims = nd == 0 ? 1 : (int)nd; /* a 0-d scalar is a 1-d tensor of one element */
    uint64_t nel = 1;
    for (size_t i = 0; i < nd; i++) {
        json_t *x = json_array_get(js, i);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return pg_fail(e, "%s: tensor '%s' shape[%zu] is not a non-negative integer", f->path, sn, i);
        int64_t v = json_integer_value(x);
        t->ne[nd - 1 - i] = v; /* GGML order: innermost first */
        if (__builtin_mul_overflow(nel, (uint64_t)v, &nel) || nel > (uint64_t)INT64_MAX)
            return pg_fail(e, "%s: tensor '%s' element count overflows", f->path, sn);
    }
    uint64_t nbytes;
    if (__builtin_mul_overflow(nel, (uint64_t)tt->type_size, &nbytes))
        return pg_fail(e, "%s: tensor '%s' byte size overflows", f->path, sn);

    if (!jo) return pg_fail(e, "%s: tensor '%s' has no data_offsets", f->path, sn);
    if (!json_is_array(jo) || json_array_size(jo) != 2 || !json_is_integer(json_array_get(jo, 0)) ||
        !json_is_integer(json_array_get(jo, 1)))
        return pg_fail(e, "%s: tensor '%s' data_offsets is not an array of two integers", f->path, sn);
    int64_t b = json_integer_value(json_array_get(jo, 0)), en = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || en < b)
        return pg_fail(e, "%s: tensor '%s' data_offsets [%" PRId64 ", %" PRId64 "] are invalid (need 0 <= begin <= end)",
                       f->path, sn, b, en);
    if ((uint64_t)en > data_size)
        return pg_fail(e, "%s: tensor '%s' data_offsets [%" PRId64 ", %" PRId64 "] extend past end of file (data size %" PRIu64 ")",
                       f->path, sn, b, en, data_size);
    if ((uint64_t)(en - b) != nbytes)
        return pg_fail(e, "%s: tensor '%s' data size %" PRId64 " does not match dtype %s and shape (%" PRIu64 " bytes)",
                       f->path, sn, en - b, dt, nbytes);
    t->file_offset = data_start + (uint64_t)b;
    t->nbytes = (size_t)nbytes;
    t->data = f->map + t->file_offset;
    t->file_index = 0;
    return 0;
}

static int st_parse_(st_file *f, pg_error *e) {
    char nb[80], nb2[80];
    if (f->size < 8)
        return pg_fail(e, "%s: truncated: file is %zu bytes, too small for a safetensors header", f->path, f->size);
    uint64_t hlen;
    memcpy(&hlen, f->map, 8);
    if (hlen > ST_MAX_HEADER)
        return pg_fail(e, "%s: header length %" PRIu64 " exceeds the limit %llu (not a safetensors file?)", f->path,
                       hlen, ST_MAX_HEADER);
    if (hlen > f->size - 8)
        return pg_fail(e, "%s: header length %" PRIu64 " exceeds the file size %zu (truncated?)", f->path, hlen,
                       f->size);
    json_error_t je;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return pg_fail(e, "%s: header is not valid JSON: %s (line %d, column %d)", f->path, je.text, je.line,
                       je.column);
    int rc = -1;
    pg_tensor **idx = NULL;
    if (!json_is_object(root)) {
        pg_fail(e, "%s: header is not a JSON object", f->path);
        goto out;
    }
    uint64_t data_start = 8 + hlen, data_size = f->size - data_start;
    size_t n = json_object_size(root);
    f->tensors = xcalloc(n, sizeof(pg_tensor));
    const char *k;
    json_t *v;
    json_object_foreach(root, k, v) {
        if (strcmp(k, "__metadata__") == 0) {
            if (parse_meta_(f, v, e)) goto out;
            continue;
        }
        pg_tensor *t = &f->tensors[f->n_tensors++];
        t->name = xstrdup(k);
        if (parse_entry_(f, k, v, data_start, data_size, t, e)) goto out;
    }
    if (f->n_tensors > 1) {
        idx = xmalloc((size_t)f->n_tensors * sizeof *idx);
        size_t m = 0;
        for (uint64_t i = 0; i < f->n_tensors; i++)
            if (f->tensors[i].nbytes) idx[m++] = &f->tensors[i];
        qsort(idx, m, sizeof *idx, cmp_off_);
        for (size_t i = 0; i + 1 < m; i++) {
            const pg_tensor *a = idx[i], *b = idx[i + 1];
            if (a->file_offset + a->nbytes > b->file_offset) {
                pg_fail(e, "%s: tensors '%s' and '%s' overlap (data_offsets [%" PRIu64 ", %" PRIu64 ") and [%" PRIu64 ", %" PRIu64 "))",
                        f->path, show_(nb, sizeof nb, a->name), show_(nb2, sizeof nb2, b->name),
                        a->file_offset - data_start, a->file_offset - data_start + a->nbytes,
                        b->file_offset - data_start, b->file_offset - data_start + b->nbytes);
                goto out;
            }
        }
    }
    rc = 0;
out:
    free(idx);
    json_decref(root);
    if (rc) st_free_contents_(f);
    return rc;
}

int st_open(st_file *f, const char *path, pg_error *e) {
    st_reset_(f);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return pg_fail(e, "%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
        close(fd);
        return pg_fail(e, "%s: not a regular file", path);
    }
    if ((uint64_t)st.st_size > SIZE_MAX) {
        close(fd);
        return pg_fail(e, "%s: file too large to map", path);
    }
    size_t size = (size_t)st.st_size;
    if (size < 8) {
        close(fd);
        return pg_fail(e, "%s: truncated: file is %zu bytes, too small for a safetensors header", path, size);
    }
    void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
    if (map == MAP_FAILED) {
        int err = errno;
        close(fd);
        return pg_fail(e, "%s: cannot mmap %zu bytes: %s", path, size, strerror(err));
    }
    f->path = xstrdup(path);
    f->fd = fd;
    f->map = map;
    f->size = size;
    if (st_parse_(f, e)) {
        munmap(map, size);
        close(fd);
        free(f->path);
        st_reset_(f);
        return -1;
    }
    return 0;
}

int st_open_memory(st_file *f, const void *buf, size_t size, const char *name, pg_error *e) {
    st_reset_(f);
    if (!name) name = "<memory>";
    if (size > 0 && !buf) return pg_fail(e, "%s: NULL buffer", name);
    f->path = xstrdup(name);
    f->map = buf;
    f->size = size;
    if (st_parse_(f, e)) {
        free(f->path);
        st_reset_(f);
        return -1;
    }
    return 0;
}

void st_close(st_file *f) {
    if (!f || !f->path) return;
    st_free_contents_(f);
    if (f->fd >= 0) {
        if (f->map) munmap((void *)f->map, f->size);
        close(f->fd);
    }
    free(f->path);
    st_reset_(f);
}

const pg_tensor *st_find(const st_file *f, const char *name) {
    for (uint64_t i = 0; f->tensors && i < f->n_tensors; i++)
        if (strcmp(f->tensors[i].name, name) == 0) return &f->tensors[i];
    return NULL;
}

const char *st_meta(const st_file *f, const char *key) {
    for (uint64_t i = 0; f->meta_keys && i < f->n_meta; i++)
        if (strcmp(f->meta_keys[i], key) == 0) return f->meta_values[i];
    return NULL;
}

/* ---- Hugging Face directories ---- */

static char *join_(const char *dir, const char *name) {
    size_t a = strlen(dir), b = strlen(name);
    char *p = xmalloc(a + b + 2);
    memcpy(p, dir, a);
    size_t o = a;
    if (a == 0 || dir[a - 1] != '/') p[o++] = '/';
    memcpy(p + o, name, b + 1);
    return p;
}

static bool is_file_(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

bool hf_is_dir(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode)) return false;
    char *c = join_(path, "config.json");
    bool ok = is_file_(c);
    free(c);
    return ok;
}

static void hf_reset_(hf_dir *d) { memset(d, 0, sizeof *d); }

void hf_dir_close(hf_dir *d) {
    if (!d) return;
    for (int i = 0; d->files && i < d->n_files; i++) st_close(&d->files[i]);
    free(d->files);
    free(d->tensors); /* names belong to the shards */
    free(d->config_json);
    free(d->dir);
    hf_reset_(d);
}

const pg_tensor *hf_dir_find(const hf_dir *d, const char *name) {
    for (uint64_t i = 0; d->tensors && i < d->n_tensors; i++)
        if (strcmp(d->tensors[i].name, name) == 0) return &d->tensors[i];
    return NULL;
}

static int cmp_name_(const void *a, const void *b) {
    return strcmp(((const pg_tensor *)a)->name, ((const pg_tensor *)b)->name);
}

/* Opens shard `name` (if not already open) and returns its index, or -1. */
static int open_shard_(hf_dir *d, const char *name, char ***names, pg_error *e) {
    for (int i = 0; i < d->n_files; i++)
        if (strcmp((*names)[i], name) == 0) return i;
    char *path = join_(d->dir, name);
    if (!is_file_(path)) {
        char nb[80];
        pg_fail(e, "%s: shard '%s' named in model.safetensors.index.json does not exist", d->dir,
                show_(nb, sizeof nb, name));
        free(path);
        return -1;
    }
    d->files = xrealloc(d->files, (size_t)(d->n_files + 1) * sizeof(st_file));
    *names = xrealloc(*names, (size_t)(d->n_files + 1) * sizeof(char *));
    int rc = st_open(&d->files[d->n_files], path, e);
    free(path);
    if (rc) return -1;
    (*names)[d->n_files] = xstrdup(name);
    return d->n_files++;
}

/* Reads model.safetensors.index.json and opens every shard it names. */
static int open_index_(hf_dir *d, const char *ipath, pg_error *e) {
    char *text = NULL, nb[80];
    size_t len = 0;
    if (pg_read_file(ipath, &text, &len, e)) return -1;
    json_error_t je;
    json_t *root = json_loadb(text, len, JSON_REJECT_DUPLICATES, &je);
    free(text);
    if (!root)
        return pg_fail(e, "%s: not valid JSON: %s (line %d, column %d)", ipath, je.text, je.line, je.column);
    int rc = -1;
    char **names = NULL;
    json_t *wm = json_is_object(root) ? json_object_get(root, "weight_map") : NULL;
    if (!json_is_object(wm)) {
        pg_fail(e, "%s: no \"weight_map\" object", ipath);
        goto out;
    }
    const char *k;
    json_t *v;
    json_object_foreach(wm, k, v) {
        if (!json_is_string(v)) {
            pg_fail(e, "%s: weight_map entry for '%s' is not a string", ipath, show_(nb, sizeof nb, k));
            goto out;
        }
        const char *shard = json_string_value(v);
        if (!shard[0] || strchr(shard, '/') || strstr(shard, "..")) {
            char nb2[80];
            pg_fail(e, "%s: weight_map names an invalid shard file '%s' (for '%s')", ipath,
                    show_(nb, sizeof nb, shard), show_(nb2, sizeof nb2, k));
            goto out;
        }
        int fi = open_shard_(d, shard, &names, e);
        if (fi < 0) goto out;
        if (!st_find(&d->files[fi], k)) {
            char nb2[80];
            pg_fail(e, "%s: tensor '%s' is listed in the index but not found in shard '%s'", ipath,
                    show_(nb, sizeof nb, k), show_(nb2, sizeof nb2, shard));
            goto out;
        }
    }
    if (d->n_files == 0) {
        pg_fail(e, "%s: weight_map is empty", ipath);
        goto out;
    }
    rc = 0;
out:
    for (int i = 0; names && i < d->n_files; i++) free(names[i]);
    free(names);
    json_decref(root);
    return rc;
}

/* Finds the only *.safetensors file of the directory (no index, no model.safetensors). */
static int find_single_(const char *dir, char **out, pg_error *e) {
    DIR *dd = opendir(dir);
    if (!dd) return pg_fail(e, "%s: cannot open directory: %s", dir, strerror(errno));
    struct dirent *de;
    int n = 0;
    *out = NULL;
    while ((de = readdir(dd))) {
        size_t l = strlen(de->d_name);
        if (l > 12 && strcmp(de->d_name + l - 12, ".safetensors") == 0) {
            if (n++ == 0) *out = xstrdup(de->d_name);
        }
    }
    closedir(dd);
    if (n == 1) return 0;
    free(*out);
    *out = NULL;
    if (n == 0) return pg_fail(e, "%s: no .safetensors file in the directory", dir);
    return pg_fail(e, "%s: %d .safetensors files but no model.safetensors.index.json or model.safetensors", dir, n);
}

int hf_dir_open(hf_dir *d, const char *dir, pg_error *e) {
    hf_reset_(d);
    struct stat st;
    if (stat(dir, &st) != 0) return pg_fail(e, "%s: cannot open: %s", dir, strerror(errno));
    if (!S_ISDIR(st.st_mode)) return pg_fail(e, "%s: not a directory", dir);
    d->dir = xstrdup(dir);
    char *cpath = join_(dir, "config.json"), *ipath = join_(dir, "model.safetensors.index.json"), *spath = NULL;
    int rc = -1;
    size_t clen = 0;
    if (pg_read_file(cpath, &d->config_json, &clen, e)) goto out;
    json_error_t je;
    json_t *cfg = json_loadb(d->config_json, clen, 0, &je);
    if (!cfg) {
        pg_fail(e, "%s: not valid JSON: %s (line %d, column %d)", cpath, je.text, je.line, je.column);
        goto out;
    }
    bool is_obj = json_is_object(cfg);
    json_decref(cfg);
    if (!is_obj) {
        pg_fail(e, "%s: not a JSON object", cpath);
        goto out;
    }
    if (is_file_(ipath)) {
        if (open_index_(d, ipath, e)) goto out;
    } else {
        spath = join_(dir, "model.safetensors");
        if (!is_file_(spath)) {
            char *single = NULL;
            if (find_single_(dir, &single, e)) goto out;
            free(spath);
            spath = join_(dir, single);
            free(single);
        }
        d->files = xcalloc(1, sizeof(st_file));
        if (st_open(&d->files[0], spath, e)) goto out;
        d->n_files = 1;
    }
    uint64_t total = 0;
    for (int i = 0; i < d->n_files; i++) total += d->files[i].n_tensors;
    d->tensors = xcalloc((size_t)total, sizeof(pg_tensor));
    for (int i = 0; i < d->n_files; i++) {
        for (uint64_t j = 0; j < d->files[i].n_tensors; j++) {
            pg_tensor *t = &d->tensors[d->n_tensors++];
            *t = d->files[i].tensors[j];
            t->file_index = i;
        }
    }
    if (d->n_tensors > 1) {
        pg_tensor *sorted = xmalloc((size_t)d->n_tensors * sizeof(pg_tensor));
        memcpy(sorted, d->tensors, (size_t)d->n_tensors * sizeof(pg_tensor));
        qsort(sorted, (size_t)d->n_tensors, sizeof(pg_tensor), cmp_name_);
        for (uint64_t i = 0; i + 1 < d->n_tensors; i++) {
            if (strcmp(sorted[i].name, sorted[i + 1].name) == 0) {
                char nb[80];
                int a = sorted[i].file_index, b = sorted[i + 1].file_index;
                pg_fail(e, "%s: duplicate tensor name '%s' (in %s and %s)", dir, show_(nb, sizeof nb, sorted[i].name),
                        d->files[a < b ? a : b].path, d->files[a < b ? b : a].path);
                free(sorted);
                goto out;
            }
        }
        free(sorted);
    }
    rc = 0;
out:
    free(cpath);
    free(ipath);
    free(spath);
    if (rc) hf_dir_close(d);
    return rc;
}
