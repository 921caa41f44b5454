/* cli.h - subcommands of the pregate program; each returns the exit status. */
#ifndef PG_CLI_H
#define PG_CLI_H

#include <stddef.h>

#include "threadpool.h"

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench_kernels(int argc, char **argv);
int cmd_bench(int argc, char **argv);

/* Best read bandwidth of the pool over a buffer of `bytes`, in bytes/s
 * (bench_kernels.c; pregate bench prints it as the resident limit). */
double bench_read_bandwidth(pg_pool *pool, size_t bytes, int reps);
int cmd_synth(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);

#endif
