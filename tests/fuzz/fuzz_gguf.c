/* fuzz_gguf.c - libFuzzer target: the GGUF reader (header, metadata, tensor
 * table) on arbitrary bytes, then every getter on what it accepted, and the
 * tokenizer built from GGUF metadata when the file carries one.
 * (Model binding, pg_model_open, is file based and not exercised here.) */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gguf.h"
#include "tokenizer.h"

static const gguf_type arr_types[] = {GGUF_TYPE_UINT8,  GGUF_TYPE_INT8,    GGUF_TYPE_UINT16, GGUF_TYPE_INT16,
                                      GGUF_TYPE_UINT32, GGUF_TYPE_INT32,   GGUF_TYPE_FLOAT32, GGUF_TYPE_BOOL,
                                      GGUF_TYPE_STRING, GGUF_TYPE_UINT64,  GGUF_TYPE_INT64,  GGUF_TYPE_FLOAT64};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    gguf_file g;
    pg_error e;
    if (gguf_open_memory(&g, data, size, "fuzz.gguf", NULL, &e) != 0) return 0;
    volatile double sink = 0;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const gguf_kv *kv = &g.kv[i];
        const char *key = kv->key;
        if (gguf_find(&g, key) == NULL) abort();
        int64_t iv;
        double fv;
        bool bv;
        if (gguf_get_int(&g, key, &iv)) sink += (double)iv;
        if (gguf_get_float(&g, key, &fv)) sink += fv;
        if (gguf_get_bool(&g, key, &bv)) sink += bv;
        char *s = gguf_get_str(&g, key);
        if (s) { sink += (double)strlen(s); free(s); }
        for (size_t t = 0; t < sizeof arr_types / sizeof arr_types[0]; t++) {
            const gguf_kv *a = gguf_get_arr(&g, key, arr_types[t]);
            if (!a) continue;
            if (a->arr_n == 0) continue;
            uint64_t idx[3] = {0, a->arr_n / 2, a->arr_n - 1};
            for (int k = 0; k < 3; k++) {
                if (arr_types[t] == GGUF_TYPE_STRING) {
                    const gguf_str *str = &a->arr_str[idx[k]];
                    if (str->len) sink += (unsigned char)str->s[str->len - 1];
                } else if (arr_types[t] != GGUF_TYPE_BOOL) {
                    sink += (double)gguf_arr_int(a, idx[k]);
                    sink += gguf_arr_float(a, idx[k]);
                }
            }
        }
    }
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const pg_tensor *t = &g.tensors[i];
        if (gguf_find_tensor(&g, t->name) == NULL) abort();
    }
    if (gguf_find(&g, "tokenizer.ggml.model")) {
        pg_tokenizer *tok = pg_tokenizer_from_gguf(&g, &e);
        if (tok) {
            static const char text[] = "Hello, world! <|im_start|>user\n\xe2\x96\x81 caf\xc3\xa9 123 \xff";
            int32_t *ids = NULL;
            size_t n = 0;
            if (pg_tokenize(tok, text, sizeof text - 1, true, true, &ids, &n, &e) == 0) {
                char buf[512];
                pg_detok d;
                pg_detok_init(&d);
                for (size_t k = 0; k < n; k++) sink += (double)pg_detok_push(tok, &d, ids[k], buf, sizeof buf);
                sink += (double)pg_detok_flush(&d, buf, sizeof buf);
            }
            free(ids);
            pg_tokenizer_free(tok);
        }
    }
    (void)sink;
    gguf_close(&g);
    return 0;
}
