/* cli.h - subcommands of the pregate program; each returns the exit status. */
#ifndef PG_CLI_H
#define PG_CLI_H

int cmd_run(int argc, char **argv);
int cmd_inspect(int argc, char **argv);
int cmd_convert(int argc, char **argv);
int cmd_bench_kernels(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_synth(int argc, char **argv);

#endif
