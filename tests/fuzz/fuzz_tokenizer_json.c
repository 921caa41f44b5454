/* fuzz_tokenizer_json.c - libFuzzer target: loading a tokenizer.json.
 * pg_tokenizer_from_json takes a path, so the input is written to a file in
 * a directory of this process's own (/tmp/pregate-fuzz-PID/, reused; no
 * tokenizer_config.json beside it), then loaded; a tokenizer that loads
 * encodes and decodes a fixed text. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "tokenizer.h"

static char path[128];

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!path[0]) {
        char dir[96];
        snprintf(dir, sizeof dir, "/tmp/pregate-fuzz-%ld", (long)getpid());
        mkdir(dir, 0700);
        snprintf(path, sizeof path, "%s/tokenizer.json", dir);
    }
    FILE *fp = fopen(path, "wb");
    if (!fp) abort();
    if (size && fwrite(data, 1, size, fp) != size) abort();
    fclose(fp);
    pg_error e;
    pg_tokenizer *t = pg_tokenizer_from_json(path, &e);
    if (!t) return 0;
    static const char text[] = "Hello, world! <|im_start|>user\n\xe2\x96\x81 caf\xc3\xa9  123\t\xff\xfe";
    for (int ps = 0; ps < 2; ps++) {
        int32_t *ids = NULL;
        size_t n = 0;
        if (pg_tokenize(t, text, sizeof text - 1, true, ps, &ids, &n, &e) == 0) {
            char buf[512];
            pg_detok d;
            pg_detok_init(&d);
            for (size_t k = 0; k < n; k++) {
                pg_detok_push(t, &d, ids[k], buf, sizeof buf);
                pg_token_to_bytes(t, ids[k], buf, sizeof buf);
            }
            pg_detok_flush(&d, buf, sizeof buf);
        }
        free(ids);
    }
    pg_tokenizer_free(t);
    return 0;
}
