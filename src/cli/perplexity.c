/* perplexity.c - `pregate perplexity -m MODEL -f TEXT [-c CTX] [-t N]`:
 * the mean negative log-likelihood and perplexity of a text file, in
 * consecutive windows of CTX tokens (default: the model's training
 * context, at most 4096), with a progress bar on stderr. Offloading flags
 * work too (the numbers do not change, only the time). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "offload_opts.h"
#include "perplexity.h"

static void progress_(void *ctx, long done, long total) {
    (void)ctx;
    int width = 40, filled = (int)(width * (double)done / (double)total);
    fprintf(stderr, "\rpregate perplexity: [%.*s%*s] %ld/%ld tokens", filled,
            "########################################", width - filled, "", done, total);
    if (done == total) fputc('\n', stderr);
}

int cmd_perplexity(int argc, char **argv) {
    const char *model_path = NULL, *file = NULL;
    long n_ctx = 0, n_threads = 0;
    cli_offload off;
    cli_offload_init(&off);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_offload_arg(&off, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
        if (!v && a[0] == '-') { fprintf(stderr, "pregate perplexity: %s needs a value\n", a); return 2; }
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) model_path = argv[++i];
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) file = argv[++i];
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { if (cli_long(a, argv[++i], 2, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { if (cli_long(a, argv[++i], 1, 1024, &n_threads)) return 2; }
        else { fprintf(stderr, "pregate perplexity: unknown option '%s'\n", a); return 2; }
    }
    if (!model_path || !file) { fprintf(stderr, "usage: pregate perplexity -m MODEL -f TEXT [-c CTX] [-t N]\n"); return 2; }
    pg_error e = {{0}};
    pg_model *m = pg_model_open(model_path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    if (cli_offload_load(&off, m, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        cli_offload_free(&off);
    pg_model_free(m);
        return 1;
    }
    int rc = 1;
    char *text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0, len = 0;
    pg_session *s = NULL;
    if (!m->tok) { fprintf(stderr, "pregate: %s has no tokenizer\n", model_path); goto done; }
    if (pg_read_file(file, &text, &len, &e) ||
        pg_tokenize(m->tok, text, len, pg_tokenizer_add_bos(m->tok), false, &ids, &n_ids, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    s = pg_session_new(m, (int)n_ctx, (int)n_threads, &e);
    if (!s) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    if (cli_offload_wanted(&off) && cli_offload_attach(&off, cli_offload_mode(&off), NULL, s, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    pg_ppl r;
    double t0 = pg_time_s();
    if (pg_perplexity(s, ids, (long)n_ids, s->n_ctx, &r, isatty(2) ? progress_ : NULL, NULL, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    double dt = pg_time_s() - t0;
    printf("perplexity %.4f  (mean NLL %.6f nats over %ld scored tokens of %zu, windows of %d tokens; %.1f tok/s)\n",
           exp(r.nll_sum / r.n_scored), r.nll_sum / r.n_scored, r.n_scored, n_ids, s->n_ctx, n_ids / dt);
    rc = 0;
done:
    pg_session_free(s);
    free(ids);
    free(text);
    cli_offload_free(&off);
    pg_model_free(m);
    return rc;
}
