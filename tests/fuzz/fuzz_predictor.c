/* fuzz_predictor.c - libFuzzer target: the learned-predictor sidecar reader
 * (GGUF parse, then pg_predictor_from_gguf against a fixed model shape: 3
 * layers, the first dense, 4 experts, dim 8, top-2, fingerprint 0x5eed).
 * The seed corpus holds a valid file of that shape, so mutations reach the
 * head checks; an accepted predictor's heads are read end to end. */
#include <stdint.h>
#include <stdlib.h>

#include "experts/predictor.h"
#include "gguf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static const bool is_moe[3] = {false, true, true};
    const pg_predictor_shape want = {.n_layer = 3, .n_expert = 4, .dim = 8, .k = 2, .fingerprint = 0x5eed,
                                     .is_moe = is_moe};
    gguf_file g;
    pg_error e;
    if (gguf_open_memory(&g, data, size, "fuzz.gguf", NULL, &e) != 0) return 0;
    pg_predictor p;
    if (pg_predictor_from_gguf(&p, &want, &g, &e) == 0) {
        double sum = 0;
        for (int t = 0; t < 3; t++)
            for (int i = 0; p.has[t] && i < 4 * 8; i++) sum += p.w[t * 4 * 8 + i];
        if (sum != sum) abort(); /* the reader refuses non-finite weights */
        pg_predictor_free(&p);
    }
    gguf_close(&g);
    return 0;
}
