/* fuzz_safetensors.c - libFuzzer target: the safetensors reader (length
 * prefix, JSON header, tensor table, __metadata__) on arbitrary bytes. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    st_file f;
    pg_error e;
    if (st_open_memory(&f, data, size, "fuzz.safetensors", &e) != 0) return 0;
    volatile size_t sink = 0;
    for (uint64_t i = 0; i < f.n_tensors; i++)
        if (st_find(&f, f.tensors[i].name) == NULL) abort();
    for (uint64_t i = 0; i < f.n_meta; i++) {
        const char *v = st_meta(&f, f.meta_keys[i]);
        if (!v) abort();
        sink += strlen(v);
    }
    (void)sink;
    st_close(&f);
    return 0;
}
