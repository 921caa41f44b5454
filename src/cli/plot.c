/* plot.c - `pregate plot TRACE -o OUT.svg [--tokens N] [-m MODEL]`: plain
 * SVG pictures of a routing trace (experts/trace.h):
 *   1. expert activation heatmap: layers (rows) x experts (columns), the
 *      share of tokens routed to each expert, white (0) to dark blue (max);
 *   2. routing strip: for the first N tokens (columns), the experts each
 *      layer picked, one coloured cell per selected expert, its weight as
 *      opacity.
 * Written by hand: a few rects and text elements need no library. */
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

int cmd_plot(int argc, char **argv) {
    const char *trace_path = NULL, *out = NULL;
    long n_tokens = 48;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") && v) { out = v; i++; }
        else if (!strcmp(a, "--tokens")) { if (cli_long(a, v, 1, 4096, &n_tokens)) return 2; i++; }
        else if (a[0] != '-' && !trace_path) trace_path = a;
        else { fprintf(stderr, "pregate plot: unknown or incomplete option '%s'\n", a); return 2; }
    }
    if (!trace_path || !out) { fprintf(stderr, "usage: pregate plot TRACE -o OUT.svg [--tokens N]\n"); return 2; }
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
