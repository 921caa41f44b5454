/* args.c - see args.h */
#include "args.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>

int cli_long(const char *opt, const char *v, long lo, long hi, long *out) {
    char *end;
    errno = 0;
    long x = v ? strtol(v, &end, 10) : 0;
    if (!v || errno || end == v || *end || x < lo || x > hi) {
        fprintf(stderr, "pregate: %s expects an integer in [%ld, %ld], got '%s'\n", opt, lo, hi, v ? v : "nothing");
        return -1;
    }
    *out = x;
    return 0;
}

int cli_double(const char *opt, const char *v, double lo, double hi, double *out) {
    char *end;
    errno = 0;
    double x = v ? strtod(v, &end) : 0;
    if (!v || errno || end == v || *end || !(x >= lo && x <= hi)) {
        fprintf(stderr, "pregate: %s expects a number in [%g, %g], got '%s'\n", opt, lo, hi, v ? v : "nothing");
        return -1;
    }
    *out = x;
    return 0;
}
