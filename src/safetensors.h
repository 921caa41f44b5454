/* safetensors.h - Hugging Face safetensors files and model directories.
 *
 * A .safetensors file: u64 header length N | N bytes of JSON header |
 * data. The header maps tensor names to {"dtype", "shape", "data_offsets":
 * [begin, end]} (offsets relative to the data region) plus an optional
 * "__metadata__" object of string values. Shapes are outermost first; the
 * reader converts them to GGML order (ne[0] innermost) in pg_tensor.
 *
 * A model directory holds config.json, either model.safetensors or shards
 * listed in model.safetensors.index.json ("weight_map": name -> file), and
 * optionally tokenizer.json. All of it is untrusted input.
 */
#ifndef PG_SAFETENSORS_H
#define PG_SAFETENSORS_H

#include "tensor.h"
#include "util.h"

typedef struct {
    char *path;
    int fd;
    const uint8_t *map;
    size_t size;
    uint64_t n_tensors;
    pg_tensor *tensors;     /* F32, F16, BF16, I32, I64, I8, F64 (others: error naming the dtype) */
    uint64_t n_meta;
    char **meta_keys, **meta_values;   /* "__metadata__" entries */
} st_file;

int st_open(st_file *f, const char *path, pg_error *e);
int st_open_memory(st_file *f, const void *buf, size_t size, const char *name, pg_error *e);
void st_close(st_file *f);  /* NULL-safe, idempotent */
const pg_tensor *st_find(const st_file *f, const char *name);
const char *st_meta(const st_file *f, const char *key); /* NULL if absent */

/* A Hugging Face model directory: every shard opened, tensors merged. */
typedef struct {
    char *dir;
    int n_files;
    st_file *files;
    uint64_t n_tensors;
    pg_tensor *tensors;     /* copies of the shards' descriptors; file_index set */
    char *config_json;      /* contents of config.json (NUL-terminated) */
} hf_dir;

int hf_dir_open(hf_dir *d, const char *dir, pg_error *e);
void hf_dir_close(hf_dir *d);
const pg_tensor *hf_dir_find(const hf_dir *d, const char *name);
bool hf_is_dir(const char *path); /* path is a directory containing config.json */

#endif
