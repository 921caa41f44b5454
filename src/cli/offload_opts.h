/* offload_opts.h - the offloading flags shared by run, bench (and serve):
 *   --expert-mem SIZE   fast-tier budget: 2GiB, 512MiB, 25% (of expert bytes)
 *   --prefetch MODE     resident | none | none-serial | next-layer-all | pregate | oracle
 *   --prefetch-extra M  pregate: fetch top k + M   (default 2)
 *   --prefetch-depth D  pregate: 1 or 2 layers ahead (default 1)
 *   --prefetch-min-precision P  pregate: stop prefetching for a layer while
 *                       its recent precision is below P (default 0.25)
 *   --link LINK         none | pcie3 | pcie4 | pcie5 | nvme | sata | 12GBps,20us
 *   --store KIND        direct | pread | uring | mmap | timed | host (default: direct
 *                       with --link none, i.e. real disk reads that bypass the
 *                       page cache; mmap with a link model, whose slow tier
 *                       stands for host memory: the page cache plays it, and
 *                       on a device; host: a device's slow tier in pinned host
 *                       memory, every expert read into it once; timed: with a link,
 *                       transfers take its time but move no bytes, as a
 *                       copy engine whose copies cost the compute nothing)
 *   --evict POLICY      lookahead | lru | lfu           (default lookahead)
 *   --io-threads N      loader threads (default 2)
 *   --predictor FILE    learned heads for --prefetch learned (pregate calibrate)
 *   --backend B         cpu (default) | cuda (make CUDA=1) | standin (the
 *                       device pass on the CPU stand-in of dev.h, for tests)
 * and the summary printed by --stats / written by --stats-json. */
#ifndef PG_CLI_OFFLOAD_OPTS_H
#define PG_CLI_OFFLOAD_OPTS_H

#include <stdio.h>

#include "dev/devfwd.h"
#include "forward.h"

typedef struct {
    pg_offload_params p;
    const char *mem_spec;   /* NULL: resident unless --prefetch says otherwise */
    bool mode_given;
    bool store_given;
    const char *predictor_path;
    pg_predictor predictor; /* loaded by cli_offload_load */
    pg_backend backend;
    pg_dev *dev;            /* opened by cli_offload_load unless backend is cpu */
} cli_offload;

void cli_offload_init(cli_offload *o);
/* Consumes argv[*i] (and its value) if it is an offload flag: returns 1;
 * 0 if not ours; -1 on a bad value (message printed). */
int cli_offload_arg(cli_offload *o, int argc, char **argv, int *i);
/* Resolves the budget against the model and gives the session its offload
 * state for `mode` (nothing for resident), then moves it to the device if
 * one was asked for. Returns 0, or -1 with e set. */
int cli_offload_attach(const cli_offload *o, pg_prefetch_mode mode, const pg_trace *oracle, pg_session *s,
                       pg_error *e);
/* Loads what the flags name for this model (the --predictor file) and
 * opens the device. Free sessions before cli_offload_free. */
int cli_offload_load(cli_offload *o, const pg_model *m, pg_error *e);
void cli_offload_free(cli_offload *o);
/* Whether any flag asked for offloading or a device (then call cli_offload_attach
 * with cli_offload_mode). */
bool cli_offload_wanted(const cli_offload *o);
/* The mode the flags ask for: resident when none asked for offloading. */
pg_prefetch_mode cli_offload_mode(const cli_offload *o);

/* Totals over layers. */
typedef struct {
    uint64_t acquires, hits, late, misses, prefetch_issued, prefetch_used, prefetch_wasted, prefetch_dropped;
    uint64_t bytes_read, pred_true, pred_total, actual_total;
    double stall_s;
} cli_totals;

void cli_offload_totals(const pg_session *s, cli_totals *t);
void cli_print_stats(FILE *f, const pg_session *s, int n_tokens, double seconds);

/* What each evaluation step (a prompt chunk or a generated token) did per
 * layer: the counters' increase over the step, for the timeline picture
 * (`pregate plot --stats`). */
enum { TL_HITS, TL_LATE, TL_MISSES, TL_PREFETCH, TL_WASTED, TL_PRED_TRUE, TL_PRED_TOTAL, TL_ACTUAL, TL_FIELDS };
typedef struct {
    int n_layer, n_steps, cap;
    uint32_t *v;          /* [n_steps][n_layer][TL_FIELDS] */
    float *stall_ms;      /* [n_steps][n_layer] */
    int *tokens;          /* [n_steps] tokens evaluated in the step */
    pg_cache_layer_stats *last; /* [n_layer] counters at the end of the last step */
} cli_timeline;

/* Starts recording (after the offload state is attached). */
void cli_timeline_init(cli_timeline *tl, const pg_session *s);
/* Records the step that just ran (n tokens). No-op without offloading. */
void cli_timeline_step(cli_timeline *tl, const pg_session *s, int n);
void cli_timeline_free(cli_timeline *tl);
/* tl may be NULL (no "timeline" member). */
int cli_write_stats_json(const char *path, const pg_session *s, int n_tokens, double seconds, const cli_timeline *tl,
                         pg_error *e);

#endif
