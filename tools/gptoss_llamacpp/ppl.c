/* llama-perplexity's windows: chunks of n_ctx tokens from an empty cache,
 * tokens n_ctx/2+1 .. n_ctx-1 scored; token ids = the text's bytes */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include "forward.h"
int main(int argc, char **argv) {
    pg_error e = {{0}};
    pg_model *m = pg_model_open(argv[1], &e);
    if (!m) { fprintf(stderr, "%s\n", e.msg); return 1; }
    FILE *f = fopen(argv[2], "rb");
    unsigned char buf[4096];
    int n = (int)fread(buf, 1, sizeof buf, f), C = atoi(argv[3]), V = m->hp.vocab;
    fclose(f);
    pg_session *s = pg_session_new(m, C, 1, &e);
    float *lg = malloc((size_t)C * V * 4);
    double nll = 0;
    long cnt = 0;
    for (int c = 0; c + C <= n; c += C) {
        int32_t t[4096];
        for (int i = 0; i < C; i++) t[i] = buf[c + i];
        pg_session_reset(s);
        if (pg_session_eval(s, t, C, lg, &e)) { fprintf(stderr, "%s\n", e.msg); return 1; }
        for (int p = C / 2; p < C - 1; p++) {
            const float *l = lg + (size_t)p * V;
            double mx = l[0], z = 0;
            for (int i = 1; i < V; i++) mx = l[i] > mx ? l[i] : mx;
            for (int i = 0; i < V; i++) z += exp(l[i] - mx);
            nll += -(l[t[p + 1]] - mx - log(z));
            cnt++;
        }
    }
    printf("%s: PPL = %.4f over %ld tokens\n", argv[1], exp(nll / cnt), cnt);
    return 0;
}
