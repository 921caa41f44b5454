/* main.c - the pregate program: subcommand dispatch and `run`, `inspect`,
 * `convert`. Only this layer prints to the user and calls exit codes. */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "args.h"
#include "cli.h"
#include "convert.h"
#include "encdec.h"
#include "forward.h"
#include "gguf.h"
#include "offload_opts.h"
#include "model.h"
#include "sampler.h"
#include "tokenizer.h"

static void usage_(FILE *f) {
    fprintf(f,
            "usage: pregate COMMAND [options]\n"
            "  run            generate text:  pregate run -m MODEL -p PROMPT -n N [options]\n"
            "  inspect        describe a model:  pregate inspect MODEL [--tensors] [--check-tensors]\n"
            "  convert        pregate convert --from llama2c CHECKPOINT --tokenizer TOK.bin -o OUT.gguf\n"
            "                 pregate convert --from hf DIR -o OUT.gguf\n"
            "  bench-kernels  matrix-vector GB/s beside measured memory bandwidth\n"
            "  trace          pregate trace -m MODEL -f TEXT [--max-tokens N] -o TRACE: routing + hidden states\n"
            "  plot           pregate plot TRACE -o OUT.svg [--tokens N]: activation heatmap, routing strip\n"
            "  calibrate      pregate calibrate -m MODEL --trace TRACE -o PRED.gguf: learned pre-gates\n"
            "  perplexity     pregate perplexity -m MODEL -f TEXT [-c CTX]: mean NLL in windows of CTX tokens\n"
            "  bench          offloading modes compared in one run:\n"
            "                 pregate bench -m MODEL --expert-mem 25%% --link pcie4 [--modes ...] [-n N] [--repeat R]\n"
            "                 [--decode greedy|random] (synthetic models: random tokens by default)\n"
            "  synth          random-weight MoE model as GGUF:  pregate synth --preset tiny -o OUT.gguf (--help)\n"
            "  quantize       pregate quantize IN.gguf OUT.gguf TYPE [--expert-type TYPE] [--threads N] (--help)\n"
            "  tokenize       stdin to ids:  pregate tokenize --tokenizer PATH [--add-special] [--jsonl]\n"
            "  detokenize     ids on stdin to text:  pregate detokenize --tokenizer PATH [--jsonl] [--skip-special]\n"
            "  serve          OpenAI-compatible HTTP server:  pregate serve -m MODEL [--port 8080] (--help)\n"
            "any command:\n"
            "  --limits K=V,...       tighten the limits on GGUF files read (tensors, kv, string, array, dim;\n"
            "                         defaults 1048576, 1048576, 67108864 bytes, 268435456, 2^40)\n"
            "run options:\n"
            "  -m, --model PATH       GGUF file or Hugging Face directory\n"
            "  -p, --prompt TEXT      prompt (default: empty, i.e. BOS only)\n"
            "  -f, --file PATH        read the prompt from a file\n"
            "  --tokens IDS           prompt as token ids (comma or space separated)\n"
            "  -n, --n-predict N      tokens to generate (default 128)\n"
            "  -c, --ctx-size N       context length (default: the model's, at most 4096)\n"
            "  -t, --threads N        threads (default: all cores)\n"
            "  -ub, --ubatch N        prompt tokens per forward step, 1..32 (default 32)\n"
            "  --temp T               temperature, 0 = greedy (default 0.8)\n"
            "  --top-k K              (default 40, 0 = off)\n"
            "  --top-p P              (default 0.95, 1 = off)\n"
            "  --min-p P              (default 0.05, 0 = off)\n"
            "  --repeat-penalty R     (default 1.0 = off), --repeat-last-n N (default 64)\n"
            "  -s, --seed S           (default: from the clock)\n"
            "  --echo                 print the prompt before the generated text\n"
            "  --chat                 interactive chat on stdin/stdout with the model's chat template (-p: first turn)\n"
            "  -sys, --system TEXT    system prompt for --chat\n"
            "  --ignore-eos           keep generating after an end-of-generation token\n"
            "  --check-tensors        read every weight first; fail on a NaN or infinity (also for inspect)\n"
            "  --print-ids            print generated token ids instead of text\n"
            "  --stats                print expert offloading statistics; --stats-json FILE writes them\n"
            "offloading (run, bench):\n"
            "  --expert-mem SIZE      fast-tier budget for experts: 2GiB, 512MiB, 25%% of expert bytes\n"
            "  --prefetch MODE        resident | none | none-serial | next-layer-all | pregate (default with\n"
            "                         --expert-mem) | learned | native | oracle (bench)\n"
            "  --prefetch-extra M     pregate: fetch the top k+M experts (default 2)\n"
            "  --prefetch-depth D     pregate: predict 1 or 2 layers ahead (default 1)\n"
            "  --prefetch-min-precision P  pregate: no prefetch for a layer while its recent precision < P (0.25)\n"
            "  --link LINK            none | pcie3 | pcie4 | pcie5 | nvme | sata | BW,LAT (e.g. 12GBps,20us)\n"
            "  --store KIND           direct | pread | uring | mmap | timed (default: direct with --link none, mmap with\n"
            "                         a link; timed: transfers take the link's time but copy nothing, as a GPU's DMA)\n"
            "  --evict POLICY         lookahead | lru | lfu (default lookahead)\n"
            "  --io-threads N         loader threads (default 2)\n"
            "  --io-timeout S         fail an evaluation whose expert read takes longer (default 60, 0: never)\n"
            "  --predictor FILE       learned heads for --prefetch learned (from pregate calibrate)\n");
}

/* "1,2, 3" -> ids */
static int parse_ids_(const char *s, int32_t **ids, size_t *n) {
    size_t cap = 16;
    *ids = xmalloc(cap * sizeof(int32_t));
    *n = 0;
    while (*s) {
        while (*s == ',' || *s == ' ') s++;
        if (!*s) break;
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 0 || v > INT32_MAX) {
            fprintf(stderr, "pregate: --tokens: '%s' is not a list of token ids\n", s);
            return -1;
        }
        if (*n == cap) *ids = xrealloc(*ids, (cap *= 2) * sizeof(int32_t));
        (*ids)[(*n)++] = (int32_t)v;
        s = end;
    }
    return 0;
}

int cmd_run(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *prompt_file = NULL, *token_list = NULL;
    long n_predict = 128, n_ctx = 0, n_threads = 0, ubatch = PG_MAX_BATCH;
    bool echo = false, ignore_eos = false, print_ids = false, seed_given = false, stats = false, chat = false;
    bool check = false;
    const char *sys_prompt = NULL;
    const char *stats_json = NULL;
    cli_timeline tl = {0};
    cli_offload off;
    cli_offload_init(&off);
    pg_sampler_params sp;
    pg_sampler_params_default(&sp);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long iv;
        double fv;
#define NEEDV() do { if (!v) { fprintf(stderr, "pregate: %s needs a value\n", a); return 2; } i++; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { NEEDV(); model_path = v; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { NEEDV(); prompt = v; }
        else if (!strcmp(a, "-f") || !strcmp(a, "--file")) { NEEDV(); prompt_file = v; }
        else if (!strcmp(a, "--tokens")) { NEEDV(); token_list = v; }
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) { NEEDV(); if (cli_long(a, v, 0, 1 << 24, &n_predict)) return 2; }
        else if (!strcmp(a, "-c") || !strcmp(a, "--ctx-size")) { NEEDV(); if (cli_long(a, v, 0, 1 << 20, &n_ctx)) return 2; }
        else if (!strcmp(a, "-ub") || !strcmp(a, "--ubatch")) { NEEDV(); if (cli_long(a, v, 1, PG_MAX_BATCH, &ubatch)) return 2; }
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) { NEEDV(); if (cli_long(a, v, 1, 1024, &n_threads)) return 2; }
        else if (!strcmp(a, "--temp")) { NEEDV(); if (cli_double(a, v, 0, 100, &fv)) return 2; sp.temperature = (float)fv; }
        else if (!strcmp(a, "--top-k")) { NEEDV(); if (cli_long(a, v, 0, INT32_MAX, &iv)) return 2; sp.top_k = (int)iv; }
        else if (!strcmp(a, "--top-p")) { NEEDV(); if (cli_double(a, v, 0, 1, &fv)) return 2; sp.top_p = (float)fv; }
        else if (!strcmp(a, "--min-p")) { NEEDV(); if (cli_double(a, v, 0, 1, &fv)) return 2; sp.min_p = (float)fv; }
        else if (!strcmp(a, "--repeat-penalty")) { NEEDV(); if (cli_double(a, v, 0.01, 100, &fv)) return 2; sp.repeat_penalty = (float)fv; }
        else if (!strcmp(a, "--repeat-last-n")) { NEEDV(); if (cli_long(a, v, 0, 1 << 20, &iv)) return 2; sp.repeat_last_n = (int)iv; }
        else if (!strcmp(a, "-s") || !strcmp(a, "--seed")) { NEEDV(); if (cli_long(a, v, 0, LONG_MAX, &iv)) return 2; sp.seed = (uint64_t)iv; seed_given = true; }
        else if (!strcmp(a, "--echo")) echo = true;
        else if (!strcmp(a, "--chat")) chat = true;
        else if (!strcmp(a, "-sys") || !strcmp(a, "--system")) { NEEDV(); sys_prompt = v; }
        else if (!strcmp(a, "--ignore-eos")) ignore_eos = true;
        else if (!strcmp(a, "--print-ids")) print_ids = true;
        else if (!strcmp(a, "--stats")) stats = true;
        else if (!strcmp(a, "--check-tensors")) check = true;
        else if (!strcmp(a, "--stats-json")) { NEEDV(); stats_json = v; }
        else if ((iv = cli_offload_arg(&off, argc, argv, &i)) != 0) { if (iv < 0) return 2; }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage_(stdout); return 0; }
        else { fprintf(stderr, "pregate run: unknown option '%s' (see pregate --help)\n", a); return 2; }
#undef NEEDV
    }
    if (!model_path) { fprintf(stderr, "pregate run: -m MODEL is required\n"); return 2; }
    if (!seed_given) sp.seed = (uint64_t)time(NULL);
    pg_error e = {{0}};
    double t0 = pg_time_s();
    pg_model *m = pg_model_open(model_path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    if (check && pg_model_check_tensors(m, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        pg_model_free(m);
        return 1;
    }
    double t_load = pg_time_s() - t0;
    int rc = 1;
    char *file_text = NULL;
    int32_t *ids = NULL;
    size_t n_ids = 0;
    pg_session *s = NULL;
    pg_sampler smp = {0};
    if (cli_offload_load(&off, m, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    if (prompt_file) {
        if (pg_read_file(prompt_file, &file_text, NULL, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
        prompt = file_text;
    }
    if (chat) { rc = cli_chat(m, &sp, &off, sys_prompt, prompt, (int)n_ctx, (int)n_threads, n_predict, ignore_eos, model_path); goto done; }
    if (token_list) {
        if (parse_ids_(token_list, &ids, &n_ids)) goto done;
    } else {
        if (!m->tok) {
            fprintf(stderr, "pregate: %s has no tokenizer; give the prompt as --tokens IDS\n", model_path);
            goto done;
        }
        const char *p = prompt ? prompt : "";
        if (pg_tokenize(m->tok, p, strlen(p), pg_tokenizer_add_bos(m->tok), false, &ids, &n_ids, &e)) {
            fprintf(stderr, "pregate: %s\n", e.msg);
            goto done;
        }
    }
    if (n_ids == 0) {
        fprintf(stderr, "pregate: the prompt is empty and the model has no BOS token to start from\n");
        goto done;
    }
    s = pg_session_new(m, (int)n_ctx, (int)n_threads, &e);
    if (!s) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    if (cli_offload_wanted(&off)) {
        if (off.p.mode == PG_PREFETCH_ORACLE) {
            fprintf(stderr, "pregate: --prefetch oracle needs a recorded trace; use it with `pregate bench`\n");
            goto done;
        }
        if (cli_offload_attach(&off, cli_offload_mode(&off), NULL, s, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    }
    if ((long)n_ids + n_predict > s->n_ctx) {
        long room = s->n_ctx - (long)n_ids;
        if (room <= 0) {
            fprintf(stderr, "pregate: the prompt (%zu tokens) does not fit the context (%d)\n", n_ids, s->n_ctx);
            goto done;
        }
        fprintf(stderr, "pregate: generating %ld tokens, not %ld: the context holds %d\n", room, n_predict, s->n_ctx);
        n_predict = room;
    }
    pg_sampler_init(&smp, &sp, m->hp.vocab);
    for (size_t i = 0; i < n_ids; i++) pg_sampler_accept(&smp, ids[i]);
    pg_detok dt;
    pg_detok_init(&dt);
    char buf[1024];
    if (echo && m->tok) {
        for (size_t i = 0; i < n_ids; i++) fwrite(buf, 1, pg_detok_push(m->tok, &dt, ids[i], buf, sizeof buf), stdout);
        fflush(stdout);
    }
    if (stats_json) cli_timeline_init(&tl, s);
    double t1 = pg_time_s();
    if (s->ed) { /* encoder-decoder: the prompt is the encoder's input; the decoder starts from its start token */
        int32_t start = m->hp.dec_start_token;
        if (pg_session_encode(s, ids, (int)n_ids, &e) || pg_session_eval(s, &start, 1, NULL, &e)) {
            fprintf(stderr, "pregate: %s\n", e.msg);
            goto done;
        }
        if (stats_json) cli_timeline_step(&tl, s, (int)n_ids);
    } else
    for (size_t i = 0; i < n_ids; i += (size_t)ubatch) { /* the prompt, ubatch tokens per step */
        int n = n_ids - i < (size_t)ubatch ? (int)(n_ids - i) : (int)ubatch;
        if (pg_session_eval(s, ids + i, n, NULL, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
        if (stats_json) cli_timeline_step(&tl, s, n);
    }
    double t_prompt = pg_time_s() - t1, t2 = pg_time_s();
    long n_gen = 0;
    for (; n_gen < n_predict; n_gen++) {
        int32_t tok = pg_sampler_sample(&smp, s->logits);
        pg_sampler_accept(&smp, tok);
        if (!ignore_eos && m->tok && pg_tokenizer_is_eog(m->tok, tok)) break;
        if (!ignore_eos && s->ed && tok == m->hp.dec_eos_token) break;
        if (print_ids || !m->tok) {
            printf("%s%d", n_gen ? " " : "", tok);
        } else {
            fwrite(buf, 1, pg_detok_push(m->tok, &dt, tok, buf, sizeof buf), stdout);
        }
        fflush(stdout);
        if (n_gen + 1 < n_predict && pg_session_eval(s, &tok, 1, NULL, &e)) {
            fprintf(stderr, "\npregate: %s\n", e.msg);
            goto done;
        }
        if (stats_json && n_gen + 1 < n_predict) cli_timeline_step(&tl, s, 1);
    }
    if (m->tok && !print_ids) fwrite(buf, 1, pg_detok_flush(&dt, buf, sizeof buf), stdout);
    printf("\n");
    double t_gen = pg_time_s() - t2;
    if (stats) cli_print_stats(stderr, s, (int)(n_ids + n_gen), t_prompt + t_gen);
    if (stats_json && cli_write_stats_json(stats_json, s, (int)(n_ids + n_gen), t_prompt + t_gen, &tl, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    fprintf(stderr, "\npregate: load %.1f ms | prompt %zu tokens, %.1f tok/s | generated %ld tokens, %.1f tok/s | "
                    "%d threads, %s | peak RSS %.1f MiB\n",
            t_load * 1e3, n_ids, n_ids / (t_prompt > 0 ? t_prompt : 1e-9), n_gen,
            n_gen / (t_gen > 0 ? t_gen : 1e-9), pg_pool_size(s->pool), pg_isa_name(pgk.isa),
            pg_peak_rss_bytes() / 1048576.0);
    rc = 0;
done:
    if (smp.work) pg_sampler_free(&smp);
    cli_timeline_free(&tl);
    pg_session_free(s);
    free(ids);
    free(file_text);
    cli_offload_free(&off);
    pg_model_free(m);
    return rc;
}

/* Tensors grouped by name across layers (blk.N. -> blk.*.): the types in
 * each group, its bytes, and for expert tensors the bytes of one expert of
 * that projection (a range when layers differ in type). */
static void print_tensor_groups_(const pg_tensor *ts, uint64_t n, int n_expert) {
    typedef struct {
        char key[128];
        int count[PG_TYPE_COUNT];
        int n;
        uint64_t bytes, min_bytes, max_bytes; /* all tensors; the smallest and largest one */
        int64_t shape[PG_MAX_DIMS];
        int n_dims;
        bool same_shape;
    } group;
    group *g = xcalloc(n ? n : 1, sizeof *g);
    int ng = 0;
    for (uint64_t i = 0; i < n; i++) {
        char key[128];
        int l, off = 0;
        if (sscanf(ts[i].name, "blk.%d.%n", &l, &off) == 1 && off > 0)
            snprintf(key, sizeof key, "blk.*.%s", ts[i].name + off);
        else
            snprintf(key, sizeof key, "%s", ts[i].name);
        int k = 0;
        while (k < ng && strcmp(g[k].key, key)) k++;
        if (k == ng) {
            snprintf(g[ng].key, sizeof g[ng].key, "%s", key);
            g[ng].n_dims = ts[i].n_dims;
            memcpy(g[ng].shape, ts[i].ne, sizeof g[ng].shape);
            g[ng].same_shape = true;
            g[ng].min_bytes = UINT64_MAX;
            ng++;
        }
        if (ts[i].type >= 0 && ts[i].type < PG_TYPE_COUNT) g[k].count[ts[i].type]++;
        g[k].n++;
        g[k].bytes += ts[i].nbytes;
        if (ts[i].nbytes < g[k].min_bytes) g[k].min_bytes = ts[i].nbytes;
        if (ts[i].nbytes > g[k].max_bytes) g[k].max_bytes = ts[i].nbytes;
        if (memcmp(g[k].shape, ts[i].ne, sizeof g[k].shape)) g[k].same_shape = false;
    }
    printf("tensor groups:   %-34s %-4s %-16s %12s %s\n", "name", "n", "type", "bytes", "per expert");
    for (int k = 0; k < ng; k++) {
        char types[96];
        size_t w = 0;
        types[0] = 0;
        for (int t = 0; t < PG_TYPE_COUNT && w < sizeof types; t++)
            if (g[k].count[t])
                w += (size_t)snprintf(types + w, sizeof types - w, "%s%s", w ? "," : "", pg_type_name(t));
        printf("                 %-34s %-4d %-16s %12llu", g[k].key, g[k].n, types, (unsigned long long)g[k].bytes);
        if (n_expert > 0 && strstr(g[k].key, "_exps") && g[k].n_dims == 3 && g[k].shape[2] == n_expert) {
            printf(" %llu", (unsigned long long)(g[k].min_bytes / (uint64_t)n_expert));
            if (g[k].max_bytes != g[k].min_bytes) /* layers of different types */
                printf("..%llu", (unsigned long long)(g[k].max_bytes / (uint64_t)n_expert));
        }
        printf("\n");
    }
    free(g);
}

int cmd_inspect(int argc, char **argv) {
    const char *path = NULL;
    bool tensors = false, check = false;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--tensors")) tensors = true;
        else if (!strcmp(argv[i], "--check-tensors")) check = true;
        else if (!strcmp(argv[i], "-m") && i + 1 < argc) path = argv[++i];
        else if (argv[i][0] == '-') { fprintf(stderr, "pregate inspect: unknown option '%s'\n", argv[i]); return 2; }
        else path = argv[i];
    }
    if (!path) { fprintf(stderr, "usage: pregate inspect MODEL [--tensors] [--check-tensors]\n"); return 2; }
    pg_error e = {{0}};
    pg_model *m = pg_model_open(path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    if (check) {
        if (pg_model_check_tensors(m, &e)) {
            fprintf(stderr, "pregate: %s\n", e.msg);
            pg_model_free(m);
            return 1;
        }
        fprintf(stderr, "pregate: every weight is finite\n");
    }
    pg_model_print(m, stdout);
    if (m->gguf) print_tensor_groups_(m->gguf->tensors, m->gguf->n_tensors, m->hp.n_expert);
    if (tensors) {
        uint64_t n = m->gguf ? m->gguf->n_tensors : m->hf->n_tensors;
        const pg_tensor *ts = m->gguf ? m->gguf->tensors : m->hf->tensors;
        for (uint64_t i = 0; i < n; i++) {
            printf("  %-48s %-5s [", ts[i].name, pg_type_name(ts[i].type));
            for (int d = 0; d < ts[i].n_dims; d++) printf("%s%lld", d ? ", " : "", (long long)ts[i].ne[d]);
            printf("] %zu bytes\n", ts[i].nbytes);
        }
    }
    pg_model_free(m);
    return 0;
}

int cmd_convert(int argc, char **argv) {
    const char *from = NULL, *src = NULL, *tok = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--from") && i + 1 < argc) from = argv[++i];
        else if (!strcmp(a, "--tokenizer") && i + 1 < argc) tok = argv[++i];
        else if (!strcmp(a, "-o") && i + 1 < argc) out = argv[++i];
        else if (a[0] == '-') { fprintf(stderr, "pregate convert: unknown or incomplete option '%s'\n", a); return 2; }
        else src = a;
    }
    if (!from || !src || !out) {
        fprintf(stderr, "usage: pregate convert --from llama2c|hf|gguf SOURCE [--tokenizer TOK.bin] -o OUT.gguf\n");
        return 2;
    }
    pg_error e = {{0}};
    if (!strcmp(from, "llama2c")) {
        if (!tok) { fprintf(stderr, "pregate convert: --from llama2c needs --tokenizer TOKENIZER.bin\n"); return 2; }
        if (pg_convert_llama2c(src, tok, out, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    } else if (!strcmp(from, "hf") || !strcmp(from, "gguf")) {
        pg_model *m = pg_model_open(src, &e);
        if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
        int rc = pg_model_write_gguf(m, out, &e);
        pg_model_free(m);
        if (rc) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    } else {
        fprintf(stderr, "pregate convert: unknown source format '%s' (llama2c, hf, gguf)\n", from);
        return 2;
    }
    fprintf(stderr, "pregate: wrote %s\n", out);
    return 0;
}

/* `--limits SPEC` is taken out of argv wherever it stands: it applies to
 * every model, tokenizer and predictor file the command opens. */
static int take_limits_(int *argc, char **argv) {
    for (int i = 1; i < *argc; i++) {
        if (strcmp(argv[i], "--limits")) continue;
        if (i + 1 >= *argc) { fprintf(stderr, "pregate: --limits needs a value\n"); return -1; }
        gguf_limits l;
        gguf_limits_default(&l);
        pg_error e = {{0}};
        if (gguf_limits_parse(argv[i + 1], &l, &e)) { fprintf(stderr, "pregate: --limits: %s\n", e.msg); return -1; }
        gguf_limits_set(&l);
        memmove(argv + i, argv + i + 2, (size_t)(*argc - i - 1) * sizeof *argv); /* keeps argv[argc] == NULL */
        *argc -= 2;
        i--;
    }
    return 0;
}

int main(int argc, char **argv) {
    if (take_limits_(&argc, argv)) return 2;
    if (argc < 2) { usage_(stderr); return 2; }
    const char *cmd = argv[1];
    if (!strcmp(cmd, "run")) return cmd_run(argc - 1, argv + 1);
    if (!strcmp(cmd, "inspect")) return cmd_inspect(argc - 1, argv + 1);
    if (!strcmp(cmd, "convert")) return cmd_convert(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench-kernels")) return cmd_bench_kernels(argc - 1, argv + 1);
    if (!strcmp(cmd, "bench")) return cmd_bench(argc - 1, argv + 1);
    if (!strcmp(cmd, "perplexity")) return cmd_perplexity(argc - 1, argv + 1);
    if (!strcmp(cmd, "trace")) return cmd_trace(argc - 1, argv + 1);
    if (!strcmp(cmd, "calibrate")) return cmd_calibrate(argc - 1, argv + 1);
    if (!strcmp(cmd, "plot")) return cmd_plot(argc - 1, argv + 1);
    if (!strcmp(cmd, "synth")) return cmd_synth(argc - 1, argv + 1);
    if (!strcmp(cmd, "quantize")) return cmd_quantize(argc - 1, argv + 1);
    if (!strcmp(cmd, "tokenize")) return cmd_tokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "detokenize")) return cmd_detokenize(argc - 1, argv + 1);
    if (!strcmp(cmd, "serve")) return cmd_serve(argc - 1, argv + 1);
    if (!strcmp(cmd, "-h") || !strcmp(cmd, "--help") || !strcmp(cmd, "help")) { usage_(stdout); return 0; }
    fprintf(stderr, "pregate: unknown command '%s'\n", cmd);
    usage_(stderr);
    return 2;
}
