/* gguf.h - GGUF v2/v3 reader (mmap, validated) and writer.
 *
 * File layout (little endian):
 *   u32 magic "GGUF" | u32 version (2 or 3) | u64 n_tensors | u64 n_kv
 *   n_kv x { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset }
 *   padding to `general.alignment` (default 32)
 *   tensor data; each tensor's offset is relative to the start of this region
 *   and is a multiple of the alignment.
 * string = u64 length + bytes (no NUL). array = u32 elem_type + u64 n + elems.
 *
 * Everything read from the file is untrusted: counts, lengths, dimensions,
 * offsets and sizes are checked against limits and against the file size
 * before use; strings must be valid UTF-8; tensors must not overlap.
 */
#ifndef PG_GGUF_H
#define PG_GGUF_H

#include "tensor.h"
#include "util.h"

typedef enum {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
    GGUF_TYPE_COUNT
} gguf_type;

/* A string inside the mapping: not NUL-terminated. */
typedef struct {
    uint64_t len;
    const char *s;
} gguf_str;

typedef struct {
    char *key;              /* NUL-terminated copy */
    gguf_type type;
    union {
        uint64_t u64;       /* UINT8..UINT64 (zero-extended) */
        int64_t i64;        /* INT8..INT64 (sign-extended) */
        double f64;         /* FLOAT32/FLOAT64 */
        bool b;
        gguf_str str;
    } v;
    /* type == GGUF_TYPE_ARRAY: */
    gguf_type arr_type;
    uint64_t arr_n;
    const void *arr_data;   /* numeric/bool elements in the mapping (may be unaligned) */
    gguf_str *arr_str;      /* arr_type == STRING: arr_n entries (heap) */
} gguf_kv;

/* Limits that make hostile files cheap to reject. */
typedef struct {
    uint64_t max_tensors;    /* default 1 << 20 */
    uint64_t max_kv;         /* default 1 << 20 */
    uint64_t max_string;     /* default 1 << 26 bytes */
    uint64_t max_array;      /* default 1 << 28 elements */
    int64_t max_dim;         /* default 1 << 40 per dimension */
} gguf_limits;

/* The limits a NULL `limits` argument means: the built-in values above,
 * or what gguf_limits_set last set for the whole process (`--limits`). */
void gguf_limits_default(gguf_limits *l);
void gguf_limits_set(const gguf_limits *l);
/* "tensors=1000,string=1048576,array=N,kv=N,dim=N" over *l (keys not named
 * keep their value). */
int gguf_limits_parse(const char *spec, gguf_limits *l, pg_error *e);

typedef struct {
    char *path;
    int fd;
    const uint8_t *map;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;   /* absolute file offset of the tensor data region */
    uint64_t n_kv;
    gguf_kv *kv;
    uint64_t n_tensors;
    pg_tensor *tensors;     /* data points into map; file_offset absolute */
} gguf_file;

/* Opens, maps and validates path. limits may be NULL (defaults). On failure
 * returns -1, e->msg reads "PATH: problem", and g holds nothing to free. */
int gguf_open(gguf_file *g, const char *path, const gguf_limits *limits, pg_error *e);
/* Validates an in-memory image (for fuzzing): same checks, no file. The
 * buffer must outlive g. */
int gguf_open_memory(gguf_file *g, const void *buf, size_t size, const char *name,
                     const gguf_limits *limits, pg_error *e);
void gguf_close(gguf_file *g); /* NULL-safe; idempotent */

const gguf_kv *gguf_find(const gguf_file *g, const char *key);
const pg_tensor *gguf_find_tensor(const gguf_file *g, const char *name);

/* Typed getters: return true and set *out if key exists with a compatible
 * type (any integer type for get_int, with range check; FLOAT32/FLOAT64 or
 * any integer for get_float); false if absent or of another type. */
bool gguf_get_int(const gguf_file *g, const char *key, int64_t *out);
bool gguf_get_float(const gguf_file *g, const char *key, double *out);
bool gguf_get_bool(const gguf_file *g, const char *key, bool *out);
/* Returns a NUL-terminated heap copy the caller frees, or NULL. */
char *gguf_get_str(const gguf_file *g, const char *key);
/* Array of the given element type, or NULL if absent/other type. */
const gguf_kv *gguf_get_arr(const gguf_file *g, const char *key, gguf_type elem_type);
/* Element i of a numeric array as int64/double (any numeric element type). */
int64_t gguf_arr_int(const gguf_kv *kv, uint64_t i);
double gguf_arr_float(const gguf_kv *kv, uint64_t i);

/* ---- writer ---- */
typedef struct gguf_writer gguf_writer;

gguf_writer *gguf_writer_new(void);
void gguf_writer_free(gguf_writer *w); /* NULL-safe */
void gguf_writer_set_u32(gguf_writer *w, const char *key, uint32_t v);
void gguf_writer_set_i32(gguf_writer *w, const char *key, int32_t v);
void gguf_writer_set_f32(gguf_writer *w, const char *key, float v);
void gguf_writer_set_bool(gguf_writer *w, const char *key, bool v);
void gguf_writer_set_str(gguf_writer *w, const char *key, const char *v);
void gguf_writer_set_arr_str(gguf_writer *w, const char *key, const char *const *v, uint64_t n);
void gguf_writer_set_arr_i32(gguf_writer *w, const char *key, const int32_t *v, uint64_t n);
void gguf_writer_set_arr_f32(gguf_writer *w, const char *key, const float *v, uint64_t n);
/* The remaining scalar types, and a numeric array of any element type
 * (elem_type not STRING/ARRAY; v holds n elements in the file's encoding). */
void gguf_writer_set_u8(gguf_writer *w, const char *key, uint8_t v);
void gguf_writer_set_i8(gguf_writer *w, const char *key, int8_t v);
void gguf_writer_set_u16(gguf_writer *w, const char *key, uint16_t v);
void gguf_writer_set_i16(gguf_writer *w, const char *key, int16_t v);
void gguf_writer_set_u64(gguf_writer *w, const char *key, uint64_t v);
void gguf_writer_set_i64(gguf_writer *w, const char *key, int64_t v);
void gguf_writer_set_f64(gguf_writer *w, const char *key, double v);
void gguf_writer_set_arr(gguf_writer *w, const char *key, gguf_type elem_type, const void *v, uint64_t n);
/* Copies the metadata entry (any type) from a reader. */
void gguf_writer_copy_kv(gguf_writer *w, const gguf_kv *kv);
/* Adds a tensor; data is NOT copied and must stay valid until write.
 * ne in GGML order. nbytes must equal the size implied by type and shape. */
void gguf_writer_add_tensor(gguf_writer *w, const char *name, pg_type type, int n_dims,
                            const int64_t *ne, const void *data, size_t nbytes);
/* Adds a tensor whose nbytes of data are produced at write time: fill(ctx,
 * offset, buf, len) must write bytes [offset, offset+len) of the tensor into
 * buf and return 0. It is called in order, in chunks of at most
 * GGUF_WRITER_CHUNK bytes, so a model of any size is written without holding
 * it in memory. A nonzero return aborts the write (the partial file is
 * removed) with "PATH: tensor 'NAME': data callback failed at offset N". */
#define GGUF_WRITER_CHUNK ((size_t)4 << 20)
typedef int (*gguf_fill_fn)(void *ctx, uint64_t offset, void *buf, size_t len);
void gguf_writer_add_tensor_cb(gguf_writer *w, const char *name, pg_type type, int n_dims, const int64_t *ne,
                               size_t nbytes, int (*fill)(void *ctx, uint64_t offset, void *buf, size_t len),
                               void *ctx);
/* Writes a GGUF v3 file (alignment 32, or general.alignment if set) via
 * PATH.tmp + rename. Setting a key twice replaces its value in place. A bad
 * add_tensor call (unknown type, bad shape, nbytes mismatch, duplicate name)
 * is reported here. */
int gguf_writer_write(gguf_writer *w, const char *path, pg_error *e);

#endif
