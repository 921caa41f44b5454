/* dev.c - choosing and opening a device (dev.h). */
#include "dev.h"

#include <string.h>

const char *pg_backend_name(pg_backend b) {
    return b == PG_BACKEND_STANDIN ? "standin" : b == PG_BACKEND_CUDA ? "cuda" : "cpu";
}

int pg_backend_parse(const char *s, pg_backend *out, pg_error *e) {
    if (!strcmp(s, "cpu")) *out = PG_BACKEND_CPU;
    else if (!strcmp(s, "standin")) *out = PG_BACKEND_STANDIN;
    else if (!strcmp(s, "cuda")) *out = PG_BACKEND_CUDA;
    else return pg_fail(e, "unknown backend '%s' (cpu, cuda, standin)", s);
    return 0;
}

pg_dev *pg_dev_open(pg_backend b, pg_error *e) {
    if (b == PG_BACKEND_STANDIN) return pg_dev_standin_new(0, e);
    if (b == PG_BACKEND_CUDA) return pg_dev_cuda_new(0, e);
    pg_fail(e, "the cpu backend has no device");
    return NULL;
}

void pg_dev_free(pg_dev *d) {
    if (d) d->ops->destroy(d);
}

#ifndef PG_HAVE_CUDA
pg_dev *pg_dev_cuda_new(int ordinal, pg_error *e) {
    (void)ordinal;
    pg_fail(e, "this pregate was built without CUDA: build it with `make CUDA=1` (needs nvcc)");
    return NULL;
}
#endif
