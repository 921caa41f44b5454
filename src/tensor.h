/* tensor.h - element types and the tensor descriptor shared by every loader.
 *
 * Type ids are GGML's (they are what GGUF files store), so a GGUF tensor type
 * maps to pg_type without translation. Shapes use GGML order: ne[0] is the
 * innermost (contiguous) dimension, i.e. the row length of a matrix.
 */
#ifndef PG_TENSOR_H
#define PG_TENSOR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    PG_TYPE_F32 = 0,
    PG_TYPE_F16 = 1,
    PG_TYPE_Q4_0 = 2,
    PG_TYPE_Q4_1 = 3,
    PG_TYPE_Q5_0 = 6,
    PG_TYPE_Q5_1 = 7,
    PG_TYPE_Q8_0 = 8,
    PG_TYPE_Q8_1 = 9,
    PG_TYPE_Q2_K = 10,
    PG_TYPE_Q3_K = 11,
    PG_TYPE_Q4_K = 12,
    PG_TYPE_Q5_K = 13,
    PG_TYPE_Q6_K = 14,
    PG_TYPE_Q8_K = 15,
    PG_TYPE_IQ4_NL = 20,
    PG_TYPE_IQ4_XS = 23,
    PG_TYPE_I8 = 24,
    PG_TYPE_I16 = 25,
    PG_TYPE_I32 = 26,
    PG_TYPE_I64 = 27,
    PG_TYPE_F64 = 28,
    PG_TYPE_BF16 = 30,
    PG_TYPE_TQ1_0 = 34,
    PG_TYPE_TQ2_0 = 35,
    PG_TYPE_MXFP4 = 39,
    PG_TYPE_Q16_0 = 64, /* pregate's own activation format, not a GGML id: never in a file */
    PG_TYPE_COUNT = 65,
} pg_type;

/* The quantized block layouts are in kernels/quants.h. */

typedef struct {
    const char *name;  /* "F32", "Q8_0", ... as GGML names them */
    int blck;          /* elements per block (1 for plain types) */
    size_t type_size;  /* bytes per block */
    bool can_compute;  /* pregate has kernels for this type */
} pg_type_traits;

/* NULL for an id GGML does not define (or one pregate does not know). */
const pg_type_traits *pg_type_info(int type);
const char *pg_type_name(int type); /* "?" for unknown ids */
/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t pg_row_bytes(pg_type t, int64_t n);

#define PG_MAX_DIMS 4

/* A tensor as a loader found it: where its bytes are and what they mean. */
typedef struct {
    char *name;
    pg_type type;
    int n_dims;
    int64_t ne[PG_MAX_DIMS]; /* ne[0] innermost; unused dims are 1 */
    const void *data;        /* into the file mapping (read-only) */
    uint64_t file_offset;    /* absolute offset of data in its file */
    size_t nbytes;
    int file_index;          /* which file of the model (sharded safetensors) */
} pg_tensor;

int64_t pg_tensor_nelements(const pg_tensor *t);

#endif
