/* cli.h - subcommands of the pregate program; each returns the exit status. */
#ifndef PG_CLI_H
#define PG_CLI_H

#include <stddef.h>

#include "model.h"
#include "offload_opts.h"
#include "sampler.h"
#include "threadpool.h"

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench_kernels(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_perplexity(int argc, char **argv);
int cmd_trace(int argc, char **argv);
int cmd_calibrate(int argc, char **argv);
int cmd_plot(int argc, char **argv);

/* Best read bandwidth of the pool over a buffer of `bytes`, in bytes/s
 * (bench_kernels.c; pregate bench prints it as the resident limit). */
double bench_read_bandwidth(pg_pool *pool, size_t bytes, int reps);
int cmd_synth(int argc, char **argv);
int cmd_quantize(int argc, char **argv);
int cmd_tokenize(int argc, char **argv);
int cmd_detokenize(int argc, char **argv);
int cmd_serve(int argc, char **argv);
/* run --chat (tokenize.c): interactive multi-turn chat with the model's
 * template; sys: system prompt or NULL; first: a first user turn or NULL. */
int cli_chat(pg_model *m, const pg_sampler_params *sp, const cli_offload *off, const char *sys, const char *first,
             int n_ctx, int n_threads, long n_predict, bool ignore_eos, const char *where);

#endif
