/* args.h - command-line values, checked: one place says what a bad number
 * looks like. Each prints "pregate: OPT expects ..." and returns -1 on a
 * missing, malformed or out-of-range value (v may be NULL). */
#ifndef PG_CLI_ARGS_H
#define PG_CLI_ARGS_H

int cli_long(const char *opt, const char *v, long lo, long hi, long *out);
int cli_double(const char *opt, const char *v, double lo, double hi, double *out);

#endif
