/* offload_opts.h - the offloading flags shared by run, bench (and serve):
 *   --expert-mem SIZE   fast-tier budget: 2GiB, 512MiB, 25% (of expert bytes)
 *   --prefetch MODE     resident | none | next-layer-all | pregate | oracle
 *   --prefetch-extra M  pregate: fetch top k + M   (default 2)
 *   --prefetch-depth D  pregate: 1 or 2 layers ahead (default 1)
 *   --prefetch-min-precision P  pregate: stop prefetching for a layer while
 *                       its recent precision is below P (default 0.25)
 *   --link LINK         none | pcie3 | pcie4 | pcie5 | nvme | sata | 12GBps,20us
 *   --store KIND        direct | pread | uring | mmap   (default: direct with
 *                       --link none, i.e. real disk reads that bypass the
 *                       page cache; mmap with a link model, whose slow tier
 *                       stands for host memory: the page cache plays it)
 *   --evict POLICY      lookahead | lru | lfu           (default lookahead)
 *   --io-threads N      loader threads (default 2)
 *   --predictor FILE    learned heads for --prefetch learned (pregate calibrate)
 * and the summary printed by --stats / written by --stats-json. */
#ifndef PG_CLI_OFFLOAD_OPTS_H
#define PG_CLI_OFFLOAD_OPTS_H

#include <stdio.h>

#include "forward.h"

typedef struct {
    pg_offload_params p;
    const char *mem_spec;   /* NULL: resident unless --prefetch says otherwise */
    bool mode_given;
    bool store_given;
    const char *predictor_path;
    pg_predictor predictor; /* loaded by cli_offload_load */
} cli_offload;

void cli_offload_init(cli_offload *o);
/* Consumes argv[*i] (and its value) if it is an offload flag: returns 1;
 * 0 if not ours; -1 on a bad value (message printed). */
int cli_offload_arg(cli_offload *o, int argc, char **argv, int *i);
/* Resolves the budget against the model and gives the session its offload
 * state for `mode` (nothing for resident). Returns 0, or -1 with e set. */
int cli_offload_attach(const cli_offload *o, pg_prefetch_mode mode, const pg_trace *oracle, pg_session *s,
                       pg_error *e);
/* Loads what the flags name for this model (the --predictor file). */
int cli_offload_load(cli_offload *o, const pg_model *m, pg_error *e);
void cli_offload_free(cli_offload *o);
/* Whether any flag asked for offloading. */
bool cli_offload_wanted(const cli_offload *o);

/* Totals over layers. */
typedef struct {
    uint64_t acquires, hits, late, misses, prefetch_issued, prefetch_used, prefetch_wasted, prefetch_dropped;
    uint64_t bytes_read, pred_true, pred_total, actual_total;
    double stall_s;
} cli_totals;

void cli_offload_totals(const pg_session *s, cli_totals *t);
void cli_print_stats(FILE *f, const pg_session *s, int n_tokens, double seconds);
int cli_write_stats_json(const char *path, const pg_session *s, int n_tokens, double seconds, pg_error *e);

#endif
