/* plot.c - `pregate plot TRACE -o OUT.svg [--tokens N] [-m MODEL]`: plain
 * SVG pictures of a routing trace (experts/trace.h):
 *   1. expert activation heatmap: layers (rows) x experts (columns), the
 *      share of tokens routed to each expert, white (0) to dark blue (max);
 *   2. routing strip: for the first N tokens (columns), the experts each
 *      layer picked, one coloured cell per selected expert, its weight as
 *      opacity.
 * and of a `run --stats-json` file (`pregate plot --stats STATS.json`):
 *   3. timeline: steps (columns) x layers (rows), each cell a stacked bar of
 *      the experts that layer demanded in that step: hits (green), late
 *      prefetches (amber), misses (red); prefetches issued as a tick;
 *   4. per-layer prediction recall and precision as bars.
 * Written by hand: a few rects and text elements need no library. */
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "experts/trace.h"

/* a distinct hue per expert */
static void expert_colour_(int e, int E, char *out, size_t cap) {
    snprintf(out, cap, "hsl(%d,70%%,45%%)", (int)(360.0 * e / (E > 0 ? E : 1)));
}

static double num_(const json_t *a, size_t i) {
    const json_t *v = json_array_get(a, i);
    return json_is_number(v) ? json_number_value(v) : 0.0;
}

/* Pictures 3 and 4 from a stats file written by `run --stats-json`. */
static int plot_stats_(const char *path, const char *out, long max_steps) {
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) { fprintf(stderr, "pregate: %s: line %d: %s\n", path, je.line, je.text); return 1; }
    int rc = 1;
    FILE *f = NULL;
    const json_t *layers = json_object_get(root, "layers");
    const json_t *steps = json_object_get(json_object_get(root, "timeline"), "steps");
    const char *mode = json_string_value(json_object_get(root, "mode"));
    if (!json_is_array(layers) || !json_is_array(steps) || !json_array_size(layers)) {
        fprintf(stderr, "pregate: %s: no per-layer timeline (write one with `pregate run ... --expert-mem M "
                        "--stats-json FILE`)\n", path);
        goto done;
    }
    int L = (int)json_array_size(layers), S = (int)json_array_size(steps);
    if (S > max_steps) S = (int)max_steps;
    /* the largest number of experts a layer demanded in one step scales the bars */
    double most = 1;
    for (int t = 0; t < S; t++) {
        const json_t *ls = json_object_get(json_array_get(steps, t), "layers");
        for (int l = 0; l < L; l++) {
            const json_t *v = json_array_get(ls, l);
            double d = num_(v, 0) + num_(v, 1) + num_(v, 2);
            if (d > most) most = d;
        }
    }
    if (!(f = fopen(out, "w"))) { fprintf(stderr, "pregate: %s: cannot write\n", out); goto done; }
    int cw = S > 150 ? 4 : S > 60 ? 8 : 14, ch = 22, left = 70, top = 50, tl_h = L * ch;
    int bars_top = top + tl_h + 80, bar_w = 300, bh = 9, bars_h = L * (2 * bh + 6);
    int width = left + (S * cw > 2 * bar_w + 120 ? S * cw : 2 * bar_w + 120) + 40, height = bars_top + bars_h + 50;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"14\">Expert loads per step (%s, %.1f tok/s): "
               "<tspan fill=\"#2a9d4a\">hit</tspan>, <tspan fill=\"#e9a23b\">late prefetch</tspan>, "
               "<tspan fill=\"#d1352b\">miss</tspan>; tick = prefetches issued</text>\n",
            left, mode ? mode : "?", json_number_value(json_object_get(root, "tokens_per_s")));
    static const char *const colour[3] = {"#2a9d4a", "#e9a23b", "#d1352b"};
    for (int l = 0; l < L; l++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", left - 6, top + l * ch + ch - 6, l);
    for (int t = 0; t < S; t++) {
        const json_t *ls = json_object_get(json_array_get(steps, t), "layers");
        for (int l = 0; l < L; l++) {
            const json_t *v = json_array_get(ls, l);
            double y = top + (l + 1) * ch - 2;
            for (int k = 0; k < 3; k++) {
                double h = (ch - 4) * num_(v, (size_t)k) / most;
                if (h <= 0) continue;
                y -= h;
                fprintf(f, "<rect x=\"%d\" y=\"%.1f\" width=\"%d\" height=\"%.1f\" fill=\"%s\"><title>step %d "
                           "layer %d: %g hits, %g late, %g misses, %g prefetched, %.2f ms stall</title></rect>\n",
                        left + t * cw, y, cw - 1, h, colour[k], t, l, num_(v, 0), num_(v, 1), num_(v, 2), num_(v, 3),
                        num_(v, 8));
            }
            if (num_(v, 3) > 0)
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"2\" fill=\"#3060c0\"/>\n", left + t * cw,
                        top + l * ch, cw - 1);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">step 0 .. %d (the first steps are prompt chunks) -&gt;</text>\n", left,
            top + tl_h + 16, S - 1);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\">Prediction per layer: "
               "<tspan fill=\"#3060c0\">recall</tspan> (share of routed experts predicted), "
               "<tspan fill=\"#8a5cc0\">precision</tspan> (share of predictions used)</text>\n",
            left, bars_top - 30);
    for (int l = 0; l < L; l++) {
        const json_t *o = json_array_get(layers, l);
        double rec = json_number_value(json_object_get(o, "recall"));
        double prec = json_number_value(json_object_get(o, "precision"));
        int y = bars_top + l * (2 * bh + 6);
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", left - 6, y + bh + 4, l);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#3060c0\"/>"
                   "<text x=\"%.1f\" y=\"%d\">%.2f</text>\n",
                left, y, bar_w * rec, bh, left + bar_w * rec + 4, y + bh - 1, rec);
        fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%.1f\" height=\"%d\" fill=\"#8a5cc0\"/>"
                   "<text x=\"%.1f\" y=\"%d\">%.2f</text>\n",
                left, y + bh, bar_w * prec, bh, left + bar_w * prec + 4, y + 2 * bh - 1, prec);
    }
    fprintf(f, "</svg>\n");
    if (fclose(f)) { f = NULL; fprintf(stderr, "pregate: %s: write failed\n", out); goto done; }
    f = NULL;
    fprintf(stderr, "pregate: wrote %s\n", out);
    rc = 0;
done:
    if (f) fclose(f);
    json_decref(root);
    return rc;
}

int cmd_plot(int argc, char **argv) {
    const char *trace_path = NULL, *out = NULL, *stats_path = NULL;
    long n_tokens = 0; /* default: 48 tokens of a trace, 400 steps of a timeline */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") && v) { out = v; i++; }
        else if (!strcmp(a, "--stats") && v) { stats_path = v; i++; }
        else if (!strcmp(a, "--tokens")) { if (cli_long(a, v, 1, 4096, &n_tokens)) return 2; i++; }
        else if (a[0] != '-' && !trace_path) trace_path = a;
        else { fprintf(stderr, "pregate plot: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if (!out || !!trace_path == !!stats_path) {
        fprintf(stderr, "usage: pregate plot TRACE -o OUT.svg [--tokens N]\n"
                        "       pregate plot --stats STATS.json -o OUT.svg [--tokens N]\n");
        return 2;
    }
    if (stats_path) return plot_stats_(stats_path, out, n_tokens ? n_tokens : 400);
    if (!n_tokens) n_tokens = 48;
    pg_error e = {{0}};
    pg_trace tr;
    if (pg_trace_read(&tr, trace_path, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    int rc = 1;
    FILE *f = fopen(out, "w");
    if (!f) { fprintf(stderr, "pregate: %s: cannot write\n", out); goto done; }
    int L = tr.n_layer, E = tr.n_expert, K = tr.k, N = tr.n_pos < n_tokens ? tr.n_pos : (int)n_tokens;
    /* activation shares */
    double *share = xcalloc((size_t)L * E, sizeof(double)), mx = 0;
    for (int p = 0; p < tr.n_pos; p++)
        for (int l = 0; l < L; l++)
            for (int j = 0; j < K; j++) {
                int x = tr.experts[((size_t)p * L + l) * K + j];
                if (x >= 0) share[(size_t)l * E + x] += 1.0 / tr.n_pos;
            }
    for (int i = 0; i < L * E; i++) mx = share[i] > mx ? share[i] : mx;
    int cell = E > 64 ? 6 : E > 16 ? 14 : 28, left = 70, top = 50, hm_w = E * cell, hm_h = L * cell;
    int sc = 14, rh = K > 4 ? 4 : 8, strip_top = top + hm_h + 80, row_h = K * rh + 6, strip_h = L * row_h;
    int strip_w = N * sc, width = left + (hm_w > strip_w ? hm_w : strip_w) + 40, height = strip_top + strip_h + 40;
    fprintf(f, "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" font-family=\"sans-serif\" "
               "font-size=\"11\">\n<rect width=\"100%%\" height=\"100%%\" fill=\"white\"/>\n", width, height);
    fprintf(f, "<text x=\"%d\" y=\"24\" font-size=\"14\">Expert activation: share of %d tokens routed to each expert "
               "(top-%d of %d), darkest = %.3f</text>\n", left, tr.n_pos, K, E, mx);
    for (int l = 0; l < L; l++) {
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", left - 6, top + l * cell + cell - 3, l);
        for (int x = 0; x < E; x++) {
            double v = mx > 0 ? share[(size_t)l * E + x] / mx : 0;
            int c = (int)(255 - 200 * v);
            fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"rgb(%d,%d,255)\"><title>layer %d expert %d: "
                       "%.4f</title></rect>\n", left + x * cell, top + l * cell, cell - 1, cell - 1, c, c, l, x,
                    share[(size_t)l * E + x]);
        }
    }
    fprintf(f, "<text x=\"%d\" y=\"%d\">expert 0 .. %d</text>\n", left, top + hm_h + 16, E - 1);
    fprintf(f, "<text x=\"%d\" y=\"%d\" font-size=\"14\">Routing of the first %d tokens: each layer's %d experts "
               "(colour = expert, opacity = weight)</text>\n", left, strip_top - 30, N, K);
    char col[48];
    for (int p = 0; p < N; p++) {
        for (int l = 0; l < L; l++)
            for (int j = 0; j < K; j++) {
                size_t at = ((size_t)p * L + l) * K + j;
                int x = tr.experts[at];
                if (x < 0) continue;
                expert_colour_(x, E, col, sizeof col);
                float w = tr.weights[at];
                fprintf(f, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"%s\" fill-opacity=\"%.2f\">"
                           "<title>token %d layer %d expert %d weight %.3f</title></rect>\n",
                        left + p * sc, strip_top + l * row_h + j * rh, sc - 2, rh - 1, col,
                        0.25 + 0.75 * (w < 0 ? 0 : w > 1 ? 1 : w), p, l, x, w);
            }
    }
    for (int l = 0; l < L; l++)
        fprintf(f, "<text x=\"%d\" y=\"%d\" text-anchor=\"end\">layer %d</text>\n", left - 6,
                strip_top + l * row_h + K * rh / 2 + 3, l);
    fprintf(f, "<text x=\"%d\" y=\"%d\">token 0 .. %d -&gt;</text>\n", left, strip_top + strip_h + 16, N - 1);
    fprintf(f, "</svg>\n");
    free(share);
    if (fclose(f)) { fprintf(stderr, "pregate: %s: write failed\n", out); goto done; }
    fprintf(stderr, "pregate: wrote %s\n", out);
    rc = 0;
done:
    pg_trace_free(&tr);
    return rc;
}
