/* trace.c - `pregate trace` records routing traces (experts/trace.h);
 * `pregate calibrate` fits learned pre-gates to one (experts/predictor.h).
 *
 *   pregate trace -m MODEL -f TEXT [--max-tokens N] [-c CTX] -o TRACE
 *   pregate calibrate -m MODEL --trace TRACE -o PREDICTOR.gguf [--epochs N] [--lr X]
 *
 * trace runs the text through the model in windows of CTX tokens (default:
 * the model's training context) and records, for every token and layer,
 * the experts, their weights and the hidden state a predictor sees.
 * calibrate prints, per layer, the top-k recall on the held-out tenth of
 * the trace for the borrowed router (the `pregate` predictor) and for the
 * fitted head. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "forward.h"

int cmd_trace(int argc, char **argv) {
    const char *model_path = NULL, *file = NULL, *out = NULL;
    long max_tokens = 1 << 20, n_ctx = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && v) { model_path = v; i++; }
        else if (!strcmp(a, "-f") && v) { file = v; i++; }
        else if (!strcmp(a, "-o") && v) { out = v; i++; }
        else if (!strcmp(a, "--max-tokens")) { if (cli_long(a, v, 2, 1 << 24, &max_tokens)) return 2; i++; }
        else if (!strcmp(a, "-c")) { if (cli_long(a, v, 2, 1 << 20, &n_ctx)) return 2; i++; }
        else { fprintf(stderr, "pregate trace: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if (!model_path || !file || !out) {
        fprintf(stderr, "usage: pregate trace -m MODEL -f TEXT [--max-tokens N] [-c CTX] -o TRACE\n");
        return 2;
    }
    pg_error e = {{0}};
    pg_model *m = pg_model_open(model_path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    int rc = 1;
    char *text = NULL;
    size_t len = 0, n = 0;
    int32_t *ids = NULL;
    pg_session *s = NULL;
    pg_trace tr;
    pg_trace_init(&tr, m->hp.n_layer, m->hp.n_expert, m->hp.n_expert_used, m->hp.dim, true);
    if (!m->hp.n_expert) { fprintf(stderr, "pregate: %s has no experts to trace\n", model_path); goto done; }
    if (!m->tok) { fprintf(stderr, "pregate: %s has no tokenizer\n", model_path); goto done; }
    if (pg_read_file(file, &text, &len, &e) || pg_tokenize(m->tok, text, len, false, false, &ids, &n, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    if ((long)n > max_tokens) n = (size_t)max_tokens;
    s = pg_session_new(m, (int)n_ctx, 0, &e);
    if (!s) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    /* windows of n_ctx tokens; the trace is indexed by position in the text */
    pg_trace_reserve(&tr, (int)n);
    pg_trace win;
    pg_trace_init(&win, tr.n_layer, tr.n_expert, tr.k, tr.dim, true);
    s->trace = &win;
    for (size_t w0 = 0; w0 < n; w0 += (size_t)s->n_ctx) {
        int T = n - w0 < (size_t)s->n_ctx ? (int)(n - w0) : s->n_ctx;
        pg_session_reset(s);
        win.n_pos = 0;
        if (pg_session_eval(s, ids + w0, T, NULL, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); pg_trace_free(&win); goto done; }
        size_t per = (size_t)tr.n_layer * tr.k, hp = (size_t)tr.n_layer * tr.dim;
        memcpy(tr.experts + w0 * per, win.experts, (size_t)T * per * sizeof(int16_t));
        memcpy(tr.weights + w0 * per, win.weights, (size_t)T * per * sizeof(float));
        memcpy(tr.hidden + w0 * hp, win.hidden, (size_t)T * hp * sizeof(uint16_t));
        fprintf(stderr, "\rpregate trace: %zu/%zu tokens", w0 + (size_t)T, n);
    }
    fprintf(stderr, "\n");
    pg_trace_free(&win);
    s->trace = NULL;
    if (pg_trace_write(&tr, out, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    fprintf(stderr, "pregate: wrote %s: %zu positions x %d layers (experts, weights, hidden states)\n", out, n, tr.n_layer);
    rc = 0;
done:
    pg_trace_free(&tr);
    pg_session_free(s);
    free(ids);
    free(text);
    pg_model_free(m);
    return rc;
}

int cmd_calibrate(int argc, char **argv) {
    const char *model_path = NULL, *trace_path = NULL, *out = NULL;
    pg_fit_params fp;
    pg_fit_params_default(&fp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        long x;
        if (!strcmp(a, "-m") && v) { model_path = v; i++; }
        else if (!strcmp(a, "--trace") && v) { trace_path = v; i++; }
        else if (!strcmp(a, "-o") && v) { out = v; i++; }
        else if (!strcmp(a, "--epochs")) { if (cli_long(a, v, 1, 100000, &x)) return 2; fp.epochs = (int)x; i++; }
        else if (!strcmp(a, "--lr")) {
            double lr;
            if (cli_double(a, v, 1e-9, 0.999, &lr)) return 2;
            fp.lr = (float)lr;
            i++;
        } else if (!strcmp(a, "--depth")) {
            if (cli_long(a, v, 1, 2, &x)) return 2;
            fp.depth = (int)x;
            i++;
        } else { fprintf(stderr, "pregate calibrate: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if (!model_path || !trace_path || !out) {
        fprintf(stderr, "usage: pregate calibrate -m MODEL --trace TRACE -o PREDICTOR.gguf [--depth 1|2] [--epochs N] [--lr X]\n");
        return 2;
    }
    pg_error e = {{0}};
    pg_model *m = pg_model_open(model_path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    int rc = 1;
    pg_trace tr = {0};
    pg_predictor pr = {0};
    pg_fit_layer_report *rep = xcalloc((size_t)m->hp.n_layer, sizeof *rep);
    if (pg_trace_read(&tr, trace_path, &e) || pg_predictor_fit(m, &tr, &fp, &pr, rep, &e) ||
        pg_predictor_write(&pr, out, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    printf("layer  recall@%d borrowed  learned   loss borrowed  learned  epochs   (%d layer%s ahead; held-out %d%% of %d "
           "positions)\n", m->hp.n_expert_used, fp.depth, fp.depth > 1 ? "s" : "", (int)(fp.holdout * 100), tr.n_pos);
    for (int l = 0; l < m->hp.n_layer; l++)
        if (pr.has[l])
            printf("%5d  %17.3f %8.3f %15.4f %8.4f %7d\n", l, rep[l].recall_borrowed, rep[l].recall_learned,
                   rep[l].loss_borrowed, rep[l].loss_learned, rep[l].epochs);
    fprintf(stderr, "pregate: wrote %s\n", out);
    rc = 0;
done:
    free(rep);
    pg_predictor_free(&pr);
    pg_trace_free(&tr);
    pg_model_free(m);
    return rc;
}
