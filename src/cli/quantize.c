/* quantize.c - `pregate quantize IN.gguf OUT.gguf TYPE`: requantize a GGUF
 * model (src/quantize.c does the work; this file parses and reports). */
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "quantize.h"

static void quantize_usage_(FILE *f) {
    fprintf(f,
            "usage: pregate quantize IN.gguf OUT.gguf TYPE [--expert-type TYPE] [--threads N]\n"
            "  TYPE: a mix as llama.cpp makes it: Q4_K_M, Q5_K_M, Q6_K, Q8_0, MXFP4_MOE\n"
            "        or one format for every weight: Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q3_K Q4_K Q5_K Q6_K\n"
            "        TQ1_0 TQ2_0 MXFP4 IQ4_NL IQ4_XS F16 BF16 F32\n"
            "  norms, routers and 1-D tensors are written as F32; the output head gets Q6_K (Q8_0 with\n"
            "  TYPE Q8_0); rows that are not a multiple of 256 fall back to a 32-block format.\n"
            "  --expert-type TYPE  one format for the expert tensors (*_exps) instead\n"
            "  --threads N         threads (default: all cores)\n");
}

typedef struct {
    bool tty;
    int last;          /* last percentage shown */
    double last_t;
} progress_state_;

static void progress_(void *ctx, uint64_t done, uint64_t total, const char *name) {
    progress_state_ *ps = ctx;
    const int pct = total ? (int)(done * 100 / total) : 100;
    if (ps->tty) {
        const double now = pg_time_s();
        if (pct == ps->last && now - ps->last_t < 0.2 && done != total) return;
        ps->last = pct, ps->last_t = now;
        char bar[31];
        for (int i = 0; i < 30; i++) bar[i] = i < pct * 30 / 100 ? '#' : '.';
        bar[30] = 0;
        fprintf(stderr, "\r[%s] %3d%% %-40.40s", bar, pct, name);
        if (done == total) fprintf(stderr, "\n");
    } else {
        if (pct / 10 == ps->last / 10) return;
        ps->last = pct;
        fprintf(stderr, "pregate quantize: %d%% (%s)\n", pct, name);
    }
    fflush(stderr);
}

int cmd_quantize(int argc, char **argv) {
    const char *pos[3] = {NULL, NULL, NULL}, *expert_type = NULL;
    int npos = 0;
    long threads = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            quantize_usage_(stdout);
            return 0;
        } else if (!strcmp(a, "--expert-type")) {
            if (i + 1 >= argc) { fprintf(stderr, "pregate: --expert-type needs a value\n"); return 2; }
            expert_type = argv[++i];
        } else if (!strcmp(a, "--threads") || !strcmp(a, "-t")) {
            if (cli_long(a, i + 1 < argc ? argv[i + 1] : NULL, 1, 1024, &threads)) return 2;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "pregate quantize: unknown option '%s'\n", a);
            return 2;
        } else if (npos < 3) {
            pos[npos++] = a;
        } else {
            fprintf(stderr, "pregate quantize: unexpected argument '%s'\n", a);
            return 2;
        }
    }
    if (npos != 3) {
        quantize_usage_(stderr);
        return 2;
    }
    pg_quantize_params p = {.expert_type = -1, .n_threads = threads > 0 ? (int)threads : pg_cpu_count()};
    pg_error e = {{0}};
    if (pg_quantize_parse_type(pos[2], &p, &e)) {
        fprintf(stderr, "pregate quantize: %s\n", e.msg);
        return 2;
    }
    if (expert_type && (p.expert_type = pg_quantize_parse_format(expert_type)) < 0) {
        fprintf(stderr, "pregate quantize: --expert-type: '%s' is not a single format (see --help)\n", expert_type);
        return 2;
    }
    progress_state_ ps = {.tty = isatty(2), .last = -1};
    p.progress = progress_;
    p.progress_ctx = &ps;
    const double t0 = pg_time_s();
    if (pg_quantize_file(pos[0], pos[1], &p, &e)) {
        if (ps.tty && ps.last >= 0) fprintf(stderr, "\n");
        fprintf(stderr, "pregate: %s\n", e.msg);
        return 1;
    }
    struct stat si, so;
    if (!stat(pos[0], &si) && !stat(pos[1], &so))
        fprintf(stderr, "pregate: wrote %s (%.2f MiB, from %.2f MiB) in %.1f s\n", pos[1], so.st_size / 1048576.0,
                si.st_size / 1048576.0, pg_time_s() - t0);
    return 0;
}
