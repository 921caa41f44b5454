/* synth.c - `pregate synth`: write a random-weight MoE model as GGUF. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"
#include "synth.h"

static void synth_usage_(FILE *f) {
    fprintf(f,
            "usage: pregate synth --arch qwen3moe|mixtral|switch --layers L --dim D --experts E --top-k K\n"
            "                     --expert-ffn F --heads H --kv-heads KV [--head-dim HD] --vocab V\n"
            "                     --type F16|BF16|F32|Q8_0|Q4_K_M|... --seed S [--ctx N] -o FILE.gguf\n"
            "       pregate synth --preset qwen3-30b-a3b|mixtral-8x7b|tiny [any option above] -o FILE.gguf\n"
            "  writes a model with random weights (deterministic from the seed) for offloading benchmarks.\n"
            "  presets: qwen3-30b-a3b  qwen3moe, dim 2048, 128 experts, top-8, expert-ffn 768, 32/4 heads,\n"
            "                          head-dim 128, vocab 32000 (the real one has 151936), 4 layers\n"
            "           mixtral-8x7b   mixtral, dim 4096, 8 experts, top-2, expert-ffn 14336, 32/8 heads,\n"
            "                          vocab 32000, 2 layers\n"
            "           tiny           qwen3moe, dim 64, 8 experts, top-2, expert-ffn 64, 4/2 heads,\n"
            "                          vocab 300, 2 layers\n"
            "           switch-base-8, switch-base-64, switch-base-128\n"
            "                          switch (encoder-decoder), dim 768, 8/64/128 experts in every\n"
            "                          other block, top-1, ffn 3072, 12 heads of 64, vocab 32128,\n"
            "                          12 blocks per stack (--layers: per stack), ctx 512\n"
            "  with a preset, --type defaults to F16 and --seed to 0. --type takes any type of\n"
            "  pregate quantize too (Q4_K_M, Q5_K_M, Q6_K, Q4_0, MXFP4, ...): matrices are quantized from\n"
            "  the same random floats with the types pregate quantize would choose.\n");
}

typedef struct {
    const char *flag;
    long long lo, hi;
    long long v;
    bool set;
} iopt;

enum { O_LAYERS, O_DIM, O_EXPERTS, O_TOPK, O_FFN, O_HEADS, O_KV, O_HD, O_VOCAB, O_CTX, O_COUNT };

static int parse_ll_(const char *flag, const char *s, long long lo, long long hi, long long *out) {
    char *end;
    errno = 0;
    long long x = strtoll(s, &end, 10);
    if (errno || end == s || *end || x < lo || x > hi) {
        fprintf(stderr, "pregate synth: %s expects an integer in [%lld, %lld], got '%s'\n", flag, lo, hi, s);
        return -1;
    }
    *out = x;
    return 0;
}

static const char *human_(uint64_t b, char *buf, size_t cap) {
    if (b >= (1ull << 30)) snprintf(buf, cap, "%.2f GiB", b / 1073741824.0);
    else if (b >= (1ull << 20)) snprintf(buf, cap, "%.2f MiB", b / 1048576.0);
    else snprintf(buf, cap, "%.2f KiB", b / 1024.0);
    return buf;
}

typedef struct {
    int last;
    bool tty;
} progress_state;

static void progress_(void *ctx, uint64_t done, uint64_t total) {
    progress_state *ps = ctx;
    int pct = total ? (int)(done * 100 / total) : 100;
    int step = ps->tty ? 1 : 10;
    if (pct / step == ps->last / step) return;
    ps->last = pct;
    if (ps->tty) fprintf(stderr, "\rpregate synth: writing %3d%%", pct);
    else fprintf(stderr, "pregate synth: writing %d%%\n", pct);
    if (ps->tty && pct == 100) fprintf(stderr, "\n");
    fflush(stderr);
}

int cmd_synth(int argc, char **argv) {
    iopt o[O_COUNT] = {
        [O_LAYERS] = {"--layers", 1, 4096, 0, false},
        [O_DIM] = {"--dim", 1, 1 << 17, 0, false},
        [O_EXPERTS] = {"--experts", 1, 1024, 0, false},
        [O_TOPK] = {"--top-k", 1, 64, 0, false},
        [O_FFN] = {"--expert-ffn", 1, 1 << 20, 0, false},
        [O_HEADS] = {"--heads", 1, 4096, 0, false},
        [O_KV] = {"--kv-heads", 1, 4096, 0, false},
        [O_HD] = {"--head-dim", 2, 4096, 0, false},
        [O_VOCAB] = {"--vocab", PG_SYNTH_MIN_VOCAB, 1 << 24, 0, false},
        [O_CTX] = {"--ctx", 1, 1 << 30, 0, false},
    };
    const char *arch = NULL, *type = NULL, *seed = NULL, *preset = NULL, *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            synth_usage_(stdout);
            return 0;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "pregate synth: %s '%s' (try pregate synth --help)\n",
                    a[0] == '-' ? "missing value after" : "unexpected argument", a);
            return 2;
        }
        const char *v = argv[++i];
        int k = -1;
        for (int j = 0; j < O_COUNT; j++)
            if (!strcmp(a, o[j].flag)) k = j;
        if (k >= 0) {
            if (parse_ll_(a, v, o[k].lo, o[k].hi, &o[k].v)) return 2;
            o[k].set = true;
        } else if (!strcmp(a, "--arch")) arch = v;
        else if (!strcmp(a, "--type")) type = v;
        else if (!strcmp(a, "--seed")) seed = v;
        else if (!strcmp(a, "--preset")) preset = v;
        else if (!strcmp(a, "-o")) out = v;
        else {
            fprintf(stderr, "pregate synth: unknown option '%s' (try pregate synth --help)\n", a);
            return 2;
        }
    }

    /* preset defaults, for what was not given */
    if (preset) {
        /* layers dim experts topk ffn heads kv hd vocab */
        static const struct { const char *name, *arch; long long v[9]; } presets[] = {
            {"qwen3-30b-a3b", "qwen3moe", {4, 2048, 128, 8, 768, 32, 4, 128, 32000}},
            {"mixtral-8x7b", "mixtral", {2, 4096, 8, 2, 14336, 32, 8, 0, 32000}},
            {"tiny", "qwen3moe", {2, 64, 8, 2, 64, 4, 2, 0, 300}},
            {"switch-base-8", "switch", {12, 768, 8, 1, 3072, 12, 12, 64, 32128}},
            {"switch-base-64", "switch", {12, 768, 64, 1, 3072, 12, 12, 64, 32128}},
            {"switch-base-128", "switch", {12, 768, 128, 1, 3072, 12, 12, 64, 32128}},
        };
        int pi = -1;
        for (int j = 0; j < (int)(sizeof presets / sizeof *presets); j++)
            if (!strcmp(preset, presets[j].name)) pi = j;
        if (pi < 0) {
            fprintf(stderr, "pregate synth: unknown preset '%s' (qwen3-30b-a3b, mixtral-8x7b, tiny, switch-base-8, "
                            "switch-base-64, switch-base-128)\n", preset);
            return 2;
        }
        static const int slot[9] = {O_LAYERS, O_DIM, O_EXPERTS, O_TOPK, O_FFN, O_HEADS, O_KV, O_HD, O_VOCAB};
        for (int j = 0; j < 9; j++)
            if (!o[slot[j]].set && presets[pi].v[j]) {
                o[slot[j]].v = presets[pi].v[j];
                o[slot[j]].set = true;
            }
        if (!arch) arch = presets[pi].arch;
        if (!type) type = "F16";
        if (!seed) seed = "0";
    }
    const char *missing = !arch ? "--arch" : !type ? "--type" : !seed ? "--seed" : !out ? "-o" : NULL;
    for (int j = 0; j < O_COUNT && !missing; j++)
        if (!o[j].set && j != O_HD && j != O_CTX) missing = o[j].flag;
    if (missing) {
        fprintf(stderr, "pregate synth: missing %s (or give --preset NAME; see pregate synth --help)\n", missing);
        return 2;
    }

    pg_synth_params p = {0};
    if (!strcmp(arch, "qwen3moe")) p.arch = PG_SYNTH_QWEN3MOE;
    else if (!strcmp(arch, "mixtral")) p.arch = PG_SYNTH_MIXTRAL;
    else if (!strcmp(arch, "switch")) p.arch = PG_SYNTH_SWITCH;
    else {
        fprintf(stderr, "pregate synth: --arch must be qwen3moe, mixtral or switch, got '%s'\n", arch);
        return 2;
    }
    int ty = pg_synth_parse_type(type);
    pg_quantize_params qp = {.expert_type = -1};
    pg_error qe;
    if (ty < 0 && pg_quantize_parse_type(type, &qp, &qe) == 0) { /* a quantized target: types per tensor */
        p.quant = &qp;
        ty = qp.base;
    }
    if (ty < 0) {
        fprintf(stderr, "pregate synth: --type must be F16, BF16, F32, Q8_0 or a pregate quantize type "
                        "(Q4_K_M, Q5_K_M, Q6_K, Q4_0, MXFP4, ...), got '%s'\n", type);
        return 2;
    }
    p.type = (pg_type)ty;
    {
        char *end;
        errno = 0;
        unsigned long long s = strtoull(seed, &end, 10);
        if (errno || end == seed || *end || seed[0] == '-' || seed[0] == '+' || seed[0] == ' ') {
            fprintf(stderr, "pregate synth: --seed expects an integer in [0, %llu], got '%s'\n",
                    (unsigned long long)UINT64_MAX, seed);
            return 2;
        }
        p.seed = s;
    }
    if (!out[0]) {
        fprintf(stderr, "pregate synth: -o needs a file name\n");
        return 2;
    }
    p.n_layer = (int)o[O_LAYERS].v;
    p.dim = (int)o[O_DIM].v;
    p.n_expert = (int)o[O_EXPERTS].v;
    p.n_expert_used = (int)o[O_TOPK].v;
    p.expert_ffn = (int)o[O_FFN].v;
    p.n_head = (int)o[O_HEADS].v;
    p.n_head_kv = (int)o[O_KV].v;
    p.head_dim = o[O_HD].set ? (int)o[O_HD].v : 0;
    p.vocab = (int)o[O_VOCAB].v;
    p.n_ctx = o[O_CTX].set ? (int)o[O_CTX].v : p.arch == PG_SYNTH_SWITCH ? 512 : 4096;

    pg_error e = {{0}};
    pg_synth_sizes sz;
    if (pg_synth_sizes_of(&p, &sz, &e)) {
        /* "synth: problem" -> "pregate synth: problem" */
        fprintf(stderr, "pregate %s\n", e.msg);
        return 2;
    }
    char h1[32], h2[32], h3[32], h4[32];
    int hd = p.head_dim ? p.head_dim : p.dim / p.n_head;
    fprintf(stderr, "pregate synth: %s, %d layers, dim %d, %d experts (top-%d, ffn %d), heads %d/%d x %d, "
                    "vocab %d, %s, seed %" PRIu64 "\n",
            p.arch == PG_SYNTH_QWEN3MOE ? "qwen3moe" : p.arch == PG_SYNTH_SWITCH ? "switch" : "mixtral", p.n_layer, p.dim, p.n_expert, p.n_expert_used,
            p.expert_ffn, p.n_head, p.n_head_kv, hd, p.vocab, p.quant ? type : pg_type_name(p.type), p.seed);
    fprintf(stderr, "  tensor data:      %s (%" PRIu64 " bytes)\n", human_(sz.data_bytes, h1, sizeof h1),
            sz.data_bytes);
    fprintf(stderr, "  dense bytes:      %s (%" PRIu64 ")\n", human_(sz.dense_bytes, h2, sizeof h2), sz.dense_bytes);
    fprintf(stderr, "  expert bytes:     %s (%" PRIu64 ")\n", human_(sz.expert_bytes, h3, sizeof h3),
            sz.expert_bytes);
    fprintf(stderr, "  bytes per expert: %s (%" PRIu64 ", one expert of one layer)\n",
            human_(sz.bytes_per_expert, h4, sizeof h4), sz.bytes_per_expert);
    fprintf(stderr, "  random weights: routing is near-uniform, the hardest case for caching\n");

    progress_state ps = {.last = -1, .tty = isatty(2)};
    if (sz.data_bytes > (256ull << 20)) {
        p.progress = progress_;
        p.progress_ctx = &ps;
    }
    double t0 = pg_time_s();
    if (pg_synth_write(&p, out, &e)) {
        if (ps.tty && ps.last >= 0 && ps.last < 100) fprintf(stderr, "\n");
        fprintf(stderr, "pregate: %s\n", e.msg);
        return 1;
    }
    double dt = pg_time_s() - t0;
    struct stat st;
    uint64_t fsize = stat(out, &st) == 0 ? (uint64_t)st.st_size : sz.data_bytes;
    fprintf(stderr, "pregate synth: wrote %s: total size %s (%" PRIu64 " bytes) in %.2f s (%.0f MiB/s)\n", out,
            human_(fsize, h1, sizeof h1), fsize, dt, dt > 0 ? fsize / 1048576.0 / dt : 0.0);
    return 0;
}
