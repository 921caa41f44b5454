/* fuzz_config.c - libFuzzer target: a Hugging Face config.json (the
 * hyperparameters of a safetensors directory) on arbitrary bytes. What
 * comes out either fails with a message or passes the same checks
 * pg_model_open makes, so the values are asserted to be in range here. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size > (1 << 20)) return 0;
    char *json = malloc(size + 1);
    if (!json) return 0;
    memcpy(json, data, size);
    json[size] = 0;
    pg_hparams hp;
    pg_error e = {{0}};
    if (pg_hparams_from_config(json, "fuzz", &hp, &e) == 0) {
        if (hp.n_layer < 1 || hp.dim < 1 || hp.n_head < 1 || hp.n_head_kv < 1 || hp.head_dim < 2 ||
            hp.vocab < 1 || hp.n_expert_used < 0 || hp.n_expert_used > 64 || hp.n_head % hp.n_head_kv)
            abort();
    } else if (!e.msg[0]) {
        abort(); /* a failure always says why */
    }
    free(json);
    return 0;
}
