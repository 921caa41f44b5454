/* fuzz_tokenize.c - libFuzzer target: pg_tokenize on arbitrary bytes with
 * the demo model's tokenizer ($PREGATE_FUZZ_ROOT/models/demo-moe.tokenizer.json,
 * root "." by default), with and without parse_special, then the ids decoded
 * back with the streaming detokenizer. Checks: every id is in the vocabulary,
 * and the detokenizer never reports more bytes than it was given room for. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tokenizer.h"

static pg_tokenizer *tok;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
    const char *root = getenv("PREGATE_FUZZ_ROOT");
    if (!root || !*root) root = ".";
    char p[4096];
    snprintf(p, sizeof p, "%s/models/demo-moe.tokenizer.json", root);
    pg_error e;
    tok = pg_tokenizer_from_json(p, &e);
    if (!tok) {
        fprintf(stderr, "fuzz_tokenize: %s\n", e.msg);
        exit(1);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    int nv = pg_tokenizer_n_vocab(tok);
    for (int ps = 0; ps < 2; ps++) {
        int32_t *ids = NULL;
        size_t n = 0;
        pg_error e;
        if (pg_tokenize(tok, (const char *)data, size, ps, ps, &ids, &n, &e) == 0) {
            char buf[256];
            pg_detok d;
            pg_detok_init(&d);
            for (size_t k = 0; k < n; k++) {
                if (ids[k] < 0 || ids[k] >= nv) abort();
                if (pg_detok_push(tok, &d, ids[k], buf, sizeof buf) > sizeof buf) abort();
            }
            if (pg_detok_flush(&d, buf, sizeof buf) > sizeof buf) abort();
        }
        free(ids);
    }
    return 0;
}
