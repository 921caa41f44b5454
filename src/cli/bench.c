/* bench.c - `pregate bench`: the offloading modes side by side, in one
 * process, interleaved over repeats, on the same tokens.
 *
 *   pregate bench -m MODEL --expert-mem SIZE [--link LINK]
 *                 [--modes resident,none-serial,none,next-layer-all,pregate,oracle]
 *                 (a natively pre-gated model adds native before the oracle)
 *                 [-p PROMPT | --prompt-tokens N] [-n N] [--repeat R]
 *                 [--json FILE] [-t THREADS] [offload flags]
 *                 [--decode greedy|random]
 *
 * A resident run first decodes (greedily; a synthetic model decodes seeded
 * random tokens, as random weights decode greedily into loops whose
 * repeated routing flatters the cache) and records the routing trace
 * (which the oracle replays) and a checksum of every step's logits; every
 * later run feeds the same tokens and must reproduce the checksums (the
 * table says so). Each run starts with a cold fast tier, evaluates the
 * prompt, then times the decoding of N tokens. Reported: medians over the
 * repeats, and beside them the physical limits: memory bandwidth over the
 * bytes a token must read (resident), and the overlap bound
 * max(compute time, bytes moved / link bandwidth) for the offloaded modes.
 */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "args.h"
#include "cli.h"
#include "encdec.h"
#include "forward.h"
#include "offload_opts.h"
#include "sampler.h"

#define MAX_MODES 8

typedef struct {
    double tok_s, stall_ms, bytes_tok, hit, precision, recall, peak_fast, peak_rss, prompt_tok_s;
    int mismatches;
} run_result;

static uint64_t fnv_(const float *x, size_t n) {
    const unsigned char *p = (const unsigned char *)x;
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n * sizeof(float); i++) h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

static int cmp_d_(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median_(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_d_);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Unmaps the model's pages from this process (the page cache keeps them)
 * and restarts the peak-RSS count, so that each run's peak is its own. */
static void reset_peak_rss_(const pg_model *m) {
    if (m->gguf) madvise((void *)m->gguf->map, m->gguf->size, MADV_DONTNEED);
    int fd = open("/proc/self/clear_refs", O_WRONLY);
    if (fd >= 0) {
        if (write(fd, "5", 1) < 0) { /* best effort: peak RSS then covers the whole process */ }
        close(fd);
    }
}

static double mat_b_(const pg_mat *w) { return (double)w->row_bytes * w->rows; }

/* The prompt: an encoder-decoder model encodes it and starts its decoder. */
static int eval_prompt_(pg_session *s, const int32_t *tokens, int P, pg_error *e) {
    if (!s->ed) return pg_session_eval(s, tokens, P, NULL, e);
    int32_t start = s->m->hp.dec_start_token;
    return pg_session_encode(s, tokens, P, e) || pg_session_eval(s, &start, 1, NULL, e) ? -1 : 0;
}

/* Bytes a decoding step must read with every expert resident: all dense
 * weights but the embedding table (one row of it), every layer's top-k
 * (encoder-decoder: the decoder's only; the encoder ran once before). */
static double active_bytes_(const pg_model *m) {
    const pg_hparams *hp = &m->hp;
    double b = (double)m->bytes_dense;
    if (!hp->tied_output) b -= (double)m->tok_embd.row_bytes * m->tok_embd.rows - m->tok_embd.row_bytes;
    for (int l = 0; l < hp->n_enc_layer; l++) {
        const pg_layer *L = &m->layers[l];
        b -= mat_b_(&L->wq) + mat_b_(&L->wk) + mat_b_(&L->wv) + mat_b_(&L->wo) + mat_b_(&L->router) +
             mat_b_(&L->ffn_gate) + mat_b_(&L->ffn_up) + mat_b_(&L->ffn_down);
    }
    for (int l = hp->n_enc_layer; l < hp->n_layer; l++) {
        const pg_layer *L = &m->layers[l];
        if (!L->is_moe) continue;
        const pg_expert *x = &L->experts[0];
        b += (double)hp->n_expert_used * (x->gate.row_bytes * x->gate.rows + x->up.row_bytes * x->up.rows +
                                          x->down.row_bytes * x->down.rows);
    }
    return b;
}

/* Host-to-device copy bandwidth from pinned memory: the median of 5
 * copies of 64 MiB (0 if the memory cannot be had). */
static double h2d_bandwidth_(pg_dev *d) {
    const size_t n = (size_t)64 << 20;
    void *h = d->ops->host_alloc(d, n), *g = d->ops->alloc(d, n);
    double t[5], bw = 0;
    if (h && g) {
        pg_error e = {{0}};
        memset(h, 1, n);
        d->ops->upload(d, g, h, n, &e); /* warm-up */
        for (int i = 0; i < 5; i++) {
            double t0 = pg_time_s();
            d->ops->upload(d, g, h, n, &e);
            t[i] = pg_time_s() - t0;
        }
        bw = n / median_(t, 5);
    }
    if (h) d->ops->host_free(d, h);
    d->ops->free(d, g);
    return bw;
}

/* How the decoded positions [from, to) of a trace route, averaged over the
 * MoE layers from l0 on: the share of a token's experts that the token
 * before it also used (reuse), and how many of its experts a layer used
 * (used). Independent uniform routing gives k/E and E (1 - (1 - k/E)^n);
 * both decide how much any cache can hit. */
static void routing_stats_(const pg_trace *tr, int l0, int from, int to, double *reuse, double *used) {
    const int L = tr->n_layer, E = tr->n_expert, K = tr->k;
    int *count = xcalloc((size_t)E, sizeof(int));
    double r = 0, q = 0;
    int n_r = 0, n_q = 0;
    if (to > tr->n_pos) to = tr->n_pos;
    for (int l = l0; l < L; l++) {
        memset(count, 0, (size_t)E * sizeof(int));
        int total = 0;
        for (int p = from; p < to; p++) {
            const int16_t *x = tr->experts + ((size_t)p * L + l) * K;
            if (x[0] < 0) continue; /* not an MoE layer */
            for (int j = 0; j < K; j++) {
                if (x[j] < 0 || x[j] >= E) continue;
                count[x[j]]++, total++;
                const int16_t *prev = x - (size_t)L * K;
                if (p == from || prev[0] < 0) continue;
                int shared = 0;
                for (int i = 0; i < K; i++) shared += prev[i] == x[j];
                r += shared, n_r++;
            }
        }
        int n_used = 0;
        for (int x = 0; x < E; x++) n_used += count[x] > 0;
        if (total) q += n_used, n_q++;
    }
    *reuse = n_r ? r / n_r : 0;
    *used = n_q ? q / n_q : 0;
    free(count);
}

int cmd_bench(int argc, char **argv) {
    const char *model_path = NULL, *prompt = NULL, *json_path = NULL, *modes_spec = "resident,none-serial,none,next-layer-all,pregate,oracle";
    const char *decode = NULL; /* greedy | random; default: random on synthetic models */
    long n_gen = 32, n_prompt = 16, repeat = 3, n_threads = 0;
    bool modes_given = false;
    cli_offload off;
    cli_offload_init(&off);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        int r = cli_offload_arg(&off, argc, argv, &i);
        if (r < 0) return 2;
        if (r > 0) continue;
#define LONGV(dst, lo, hi) do { if (cli_long(a, v, lo, hi, &dst)) return 2; i++; } while (0)
        if (!strcmp(a, "-m") || !strcmp(a, "--model")) { if (!v) goto needv; model_path = v; i++; }
        else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) { if (!v) goto needv; prompt = v; i++; }
        else if (!strcmp(a, "--modes")) { if (!v) goto needv; modes_spec = v; modes_given = true; i++; }
        else if (!strcmp(a, "--json")) { if (!v) goto needv; json_path = v; i++; }
        else if (!strcmp(a, "--decode")) {
            if (!v) goto needv;
            if (strcmp(v, "greedy") && strcmp(v, "random")) {
                fprintf(stderr, "pregate bench: --decode: '%s' is not greedy or random\n", v);
                return 2;
            }
            decode = v;
            i++;
        }
        else if (!strcmp(a, "--prompt-tokens")) LONGV(n_prompt, 1, 4096);
        else if (!strcmp(a, "-n") || !strcmp(a, "--n-predict")) LONGV(n_gen, 1, 1 << 16);
        else if (!strcmp(a, "--repeat")) LONGV(repeat, 1, 1000);
        else if (!strcmp(a, "-t") || !strcmp(a, "--threads")) LONGV(n_threads, 1, 1024);
        else { fprintf(stderr, "pregate bench: unknown option '%s'\n", a); return 2; }
        continue;
    needv:
        fprintf(stderr, "pregate bench: %s needs a value\n", a);
        return 2;
#undef LONGV
    }
    if (!model_path) { fprintf(stderr, "usage: pregate bench -m MODEL --expert-mem SIZE [options] (see pregate --help)\n"); return 2; }
    pg_prefetch_mode modes[MAX_MODES];
    int n_modes = 0;
    pg_error e = {{0}};
    {
        char *spec = xstrdup(modes_spec), *save = NULL;
        for (char *tok = strtok_r(spec, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            if (n_modes == MAX_MODES || pg_prefetch_parse(tok, &modes[n_modes++], &e)) {
                fprintf(stderr, "pregate bench: --modes: %s\n", n_modes == MAX_MODES ? "too many modes" : e.msg);
                free(spec);
                return 2;
            }
        }
        free(spec);
    }
    bool need_mem = false;
    for (int i = 0; i < n_modes; i++) need_mem |= modes[i] != PG_PREFETCH_RESIDENT;
    if (need_mem && !off.mem_spec) { fprintf(stderr, "pregate bench: --expert-mem SIZE is required\n"); return 2; }

    pg_model *m = pg_model_open(model_path, &e);
    if (!m) { fprintf(stderr, "pregate: %s\n", e.msg); return 1; }
    if (cli_offload_load(&off, m, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        cli_offload_free(&off);
        pg_model_free(m);
        return 1;
    }
    /* a natively pre-gated model: its own prediction joins the default table, before the oracle */
    if (!modes_given && m->hp.expert_pregated && n_modes < MAX_MODES) {
        modes[n_modes] = modes[n_modes - 1];
        modes[n_modes++ - 1] = PG_PREFETCH_NATIVE;
    }
    int rc = 1, V = m->hp.vocab;
    int32_t *tokens = NULL;
    size_t n_tok = 0;
    uint64_t *ref_hash = NULL;
    pg_trace trace;
    pg_trace_init(&trace, m->hp.n_layer, m->hp.n_expert, m->hp.n_expert_used, m->hp.dim, false);
    run_result (*res)[MAX_MODES] = NULL;
    pg_session *s = NULL;
    if (prompt) {
        if (!m->tok) { fprintf(stderr, "pregate: %s has no tokenizer; use --prompt-tokens N\n", model_path); goto done; }
        if (pg_tokenize(m->tok, prompt, strlen(prompt), pg_tokenizer_add_bos(m->tok), false, &tokens, &n_tok, &e)) {
            fprintf(stderr, "pregate: %s\n", e.msg);
            goto done;
        }
        if (!n_tok) { fprintf(stderr, "pregate: empty prompt\n"); goto done; }
    } else {
        n_tok = (size_t)n_prompt;
        tokens = xmalloc(n_tok * sizeof(int32_t));
        uint64_t x = 0x9E3779B97F4A7C15ull;
        for (size_t i = 0; i < n_tok; i++) {
            x ^= x << 13; x ^= x >> 7; x ^= x << 17;
            tokens[i] = (int32_t)(x % (uint64_t)V);
        }
    }
    int P = (int)n_tok, N = (int)n_gen;
    tokens = xrealloc(tokens, (size_t)(P + N) * sizeof(int32_t));
    ref_hash = xcalloc((size_t)N, sizeof(uint64_t));
    s = pg_session_new(m, P + N + 1, (int)n_threads, &e);
    if (!s) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }

    /* measured limits and the reference run (on the device, if one is used) */
    if (off.dev && cli_offload_attach(&off, PG_PREFETCH_RESIDENT, NULL, s, &e)) {
        fprintf(stderr, "pregate: %s\n", e.msg);
        goto done;
    }
    /* Random weights decode greedily into loops (a few tokens over and over),
     * whose repeated routing flatters the cache: synthetic models decode
     * seeded random tokens instead, teacher-forced like the greedy ones. */
    bool synthetic = false;
    if (m->gguf) gguf_get_bool(m->gguf, "pregate.synthetic", &synthetic);
    bool greedy = decode ? !strcmp(decode, "greedy") : !synthetic;
    double mem_bw = bench_read_bandwidth(s->pool, (size_t)256 << 20, 3);
    double h2d_bw = off.dev ? h2d_bandwidth_(off.dev) : 0;
    double active = active_bytes_(m);
    s->trace = &trace;
    if (eval_prompt_(s, tokens, P, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    uint64_t rng = 0x2545F4914F6CDD1Dull;
    for (int i = 0; i < N; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        tokens[P + i] = greedy ? pg_argmax(s->logits, V) : (int32_t)(rng % (uint64_t)V);
        ref_hash[i] = fnv_(s->logits, (size_t)V);
        if (i + 1 < N && pg_session_eval(s, &tokens[P + i], 1, NULL, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
    }
    s->trace = NULL;

    fprintf(stderr, "pregate bench: %s | %s, %d layers, %d experts (top-%d), %.1f MiB of experts, %.1f MiB dense | "
                    "prompt %d tokens, decode %d tokens, %ld repeats, %d threads\n",
            model_path, pg_arch_get(m->hp.arch)->name, m->hp.n_layer, m->hp.n_expert, m->hp.n_expert_used,
            m->bytes_experts / 1048576.0, m->bytes_dense / 1048576.0, P, N, repeat, pg_pool_size(s->pool));
    fprintf(stderr, "pregate bench: expert-mem %s | link %s | store %s | evict %s | prefetch-extra %d depth %d\n",
            off.mem_spec ? off.mem_spec : "-", off.p.link.name,
            off.p.host_tier ? "host" : pg_store_kind_name(off.store_given ? off.p.store
                                                          : off.dev ? PG_STORE_MMAP : pg_store_default(&off.p.link)),
            pg_evict_name(off.p.evict),
            off.p.extra, off.p.depth);
    if (synthetic)
        fprintf(stderr, "pregate bench: random weights: routing is near-uniform, the hardest case for caching and prediction\n");
    if (off.store_given && !off.p.host_tier && off.p.store == PG_STORE_TIMED)
        fprintf(stderr, "pregate bench: store timed: each transfer takes the link's time but copies nothing (as a copy "
                        "engine would); experts are computed from the file mapping, so RSS counts all of it\n");
    {
        int distinct = 0;
        unsigned char *seen = xcalloc((size_t)V, 1);
        for (int i = 0; i < N; i++) {
            distinct += !seen[tokens[P + i]];
            seen[tokens[P + i]] = 1;
        }
        free(seen);
        fprintf(stderr, "pregate bench: decode %s: %d distinct tokens of %d%s\n",
                greedy ? "greedy" : decode ? "seeded random tokens" : "seeded random tokens (--decode greedy to change)",
                distinct, N,
                greedy && distinct * 2 < N ? " (repeated tokens repeat routing: caching looks easier than on real text)" : "");
        double reuse, used, k_e = (double)m->hp.n_expert_used / m->hp.n_expert;
        /* an encoder-decoder's decoder layers, from its position 0 */
        routing_stats_(&trace, m->hp.n_enc_layer, s->ed ? 0 : P, s->ed ? N : P + N, &reuse, &used);
        fprintf(stderr, "pregate bench: routing while decoding: %.1f%% of a token's experts were the previous token's, "
                        "a layer used %.1f of its %d experts (independent uniform routing: %.1f%%, %.1f)\n",
                100 * reuse, used, m->hp.n_expert, 100 * k_e, m->hp.n_expert * (1 - pow(1 - k_e, N)));
    }

    res = xcalloc((size_t)repeat, sizeof *res);
    for (long r = 0; r < repeat; r++) {
        for (int mi = 0; mi < n_modes; mi++) {
            run_result *rr = &res[r][mi];
            if (cli_offload_attach(&off, modes[mi], &trace, s, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
            pg_session_reset(s);
            reset_peak_rss_(m);
            double t0 = pg_time_s();
            if (eval_prompt_(s, tokens, P, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
            double t1 = pg_time_s();
            rr->prompt_tok_s = P / (t1 - t0);
            if (s->off) pg_cache_stats_reset(s->off->cache);
            t0 = pg_time_s();
            for (int i = 0; i < N; i++) {
                if (fnv_(s->logits, (size_t)V) != ref_hash[i]) rr->mismatches++;
                if (i + 1 < N && pg_session_eval(s, &tokens[P + i], 1, NULL, &e)) { fprintf(stderr, "pregate: %s\n", e.msg); goto done; }
            }
            double dt = pg_time_s() - t0;
            int steps = N - 1 > 0 ? N - 1 : 1; /* decode evaluations timed */
            rr->tok_s = steps / dt;
            rr->peak_rss = (double)pg_peak_rss_bytes();
            if (s->off) {
                cli_totals t;
                cli_offload_totals(s, &t);
                rr->stall_ms = t.stall_s * 1e3 / steps;
                rr->bytes_tok = (double)t.bytes_read / steps;
                rr->hit = t.acquires ? (double)t.hits / t.acquires : 0;
                rr->precision = t.pred_total ? (double)t.pred_true / t.pred_total : 0;
                rr->recall = t.actual_total ? (double)t.pred_true / t.actual_total : 0;
                rr->peak_fast = (double)pg_cache_peak_bytes(s->off->cache);
            } else {
                rr->hit = 1;
                rr->peak_fast = (double)m->bytes_experts;
            }
            cli_offload_attach(&off, PG_PREFETCH_RESIDENT, NULL, s, &e);
        }
    }

    /* medians */
    run_result med[MAX_MODES];
    double *col = xmalloc((size_t)repeat * sizeof(double));
#define MED(field) do { for (long r = 0; r < repeat; r++) col[r] = res[r][mi].field; med[mi].field = median_(col, (int)repeat); } while (0)
    for (int mi = 0; mi < n_modes; mi++) {
        MED(tok_s); MED(stall_ms); MED(bytes_tok); MED(hit); MED(precision); MED(recall); MED(peak_fast);
        MED(peak_rss); MED(prompt_tok_s);
        med[mi].mismatches = 0;
        for (long r = 0; r < repeat; r++) med[mi].mismatches += res[r][mi].mismatches;
    }
#undef MED
    free(col);
    double resident_tok_s = 0;
    for (int mi = 0; mi < n_modes; mi++)
        if (modes[mi] == PG_PREFETCH_RESIDENT) resident_tok_s = med[mi].tok_s;
    /* on a device, experts also cross the host-to-device link, whichever is slower */
    double link_bw = off.p.link.bandwidth;
    if (h2d_bw > 0 && (link_bw <= 0 || h2d_bw < link_bw)) link_bw = h2d_bw;
    printf("%-15s %9s %8s %9s %11s %6s %6s %6s %9s %9s %10s %6s %s\n", "mode", "tok/s", "ratio", "stall ms", "MiB read/t",
           "hit", "prec", "recall", "fast MiB", "RSS MiB", "bound t/s", "%bnd", "logits");
    for (int mi = 0; mi < n_modes; mi++) {
        run_result *x = &med[mi];
        /* overlap bound: compute time (resident) and link time, whichever is longer */
        double bound;
        if (modes[mi] == PG_PREFETCH_RESIDENT) bound = off.dev ? x->tok_s : mem_bw / active; /* device: not measured */
        else {
            double t_compute = resident_tok_s > 0 ? 1.0 / resident_tok_s : active / mem_bw;
            double t_link = link_bw > 0 ? x->bytes_tok / link_bw + (x->bytes_tok > 0 ? off.p.link.latency : 0) : 0;
            bound = 1.0 / (t_compute > t_link ? t_compute : t_link);
        }
        char ratio[16] = "-";
        if (resident_tok_s > 0) snprintf(ratio, sizeof ratio, "%.3f", x->tok_s / resident_tok_s);
        printf("%-15s %9.2f %8s %9.2f %11.2f %6.3f %6.3f %6.3f %9.1f %9.1f %10.2f %5.0f%% %s\n", pg_prefetch_name(modes[mi]),
               x->tok_s, ratio, x->stall_ms, x->bytes_tok / 1048576.0, x->hit, x->precision, x->recall,
               x->peak_fast / 1048576.0, x->peak_rss / 1048576.0, bound, 100.0 * x->tok_s / bound,
               x->mismatches ? "DIFFER" : "identical");
    }
    if (off.dev)
        printf("limits: %s: device memory bandwidth not measured (resident's bound is itself); host-to-device copies "
               "%.2f GB/s (measured, pinned, 64 MiB); bound = max(resident time per token, MiB read per token / "
               "%.2f GB/s)\n", off.dev->name, h2d_bw / 1e9, link_bw / 1e9);
    else {
        printf("limits: memory read bandwidth %.2f GB/s (measured), %.2f MiB read per token with all experts resident "
               "-> %.2f tok/s at most;\n", mem_bw / 1e9, active / 1048576.0, mem_bw / active);
        if (link_bw > 0)
            printf("        link %s: %.2f GB/s, %.0f us per transfer; bound = max(resident time per token, MiB read "
                   "per token / link bandwidth)\n", off.p.link.name, link_bw / 1e9, off.p.link.latency * 1e6);
        else
            printf("        link none: real reads from the file; bound for offloaded modes = resident compute time "
                   "only\n");
    }
    if (json_path) {
        FILE *f = fopen(json_path, "w");
        if (!f) { fprintf(stderr, "pregate: %s: cannot write: %s\n", json_path, strerror(errno)); goto done; }
        fprintf(f, "[\n");
        for (int mi = 0; mi < n_modes; mi++) {
            run_result *x = &med[mi];
            fprintf(f, "  {\"mode\": \"%s\", \"tokens_per_s\": %.6f, \"ratio_to_resident\": %.6f, \"stall_ms_per_token\": %.6f, "
                       "\"bytes_read_per_token\": %.1f, \"hit_rate\": %.6f, \"precision\": %.6f, \"recall\": %.6f, "
                       "\"peak_fast_bytes\": %.0f, \"peak_rss_bytes\": %.0f, \"prompt_tokens_per_s\": %.6f, "
                       "\"logits_identical\": %s, \"link\": \"%s\", \"expert_mem\": \"%s\"}%s\n",
                    pg_prefetch_name(modes[mi]), x->tok_s, resident_tok_s > 0 ? x->tok_s / resident_tok_s : 0.0,
                    x->stall_ms, x->bytes_tok, x->hit, x->precision, x->recall, x->peak_fast, x->peak_rss,
                    x->prompt_tok_s, x->mismatches ? "false" : "true", off.p.link.name, off.mem_spec ? off.mem_spec : "",
                    mi + 1 < n_modes ? "," : "");
        }
        fprintf(f, "]\n");
        fclose(f);
    }
    rc = 0;
    for (int mi = 0; mi < n_modes; mi++)
        if (med[mi].mismatches) rc = 1;
    if (rc) fprintf(stderr, "pregate bench: some mode's logits differ from resident: this is a bug\n");
done:
    free(res);
    pg_session_free(s);
    pg_trace_free(&trace);
    free(tokens);
    free(ref_hash);
    cli_offload_free(&off);
    pg_model_free(m);
    return rc;
}
