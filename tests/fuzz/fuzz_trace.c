/* fuzz_trace.c - libFuzzer target: the routing-trace reader (pg_trace_parse)
 * on arbitrary bytes; what it accepts is walked end to end. */
#include <stdint.h>
#include <stdlib.h>

#include "experts/trace.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    pg_trace t;
    pg_error e;
    if (pg_trace_parse(&t, data, size, "fuzz.trace", &e) != 0) return 0;
    /* every accepted id is a valid expert or the -1 of a dense layer */
    long sum = 0;
    size_t n = (size_t)t.n_pos * t.n_layer * t.k;
    for (size_t i = 0; i < n; i++) {
        if (t.experts[i] < -1 || t.experts[i] >= t.n_expert) abort();
        sum += t.experts[i];
    }
    if (t.with_hidden && n) sum += t.hidden[(size_t)t.n_pos * t.n_layer * t.dim - 1];
    volatile long sink = sum;
    (void)sink;
    pg_trace_free(&t);
    return 0;
}
