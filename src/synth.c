/* synth.c - see synth.h.
 *
 * Each tensor's data is a sequence of "units" of 32 consecutive elements (one
 * Q8_0 block; for float types 32 elements, the last unit maybe shorter), or
 * of one block for the 256-element formats.
 * Element i of tensor t is a pure function of (seed, t, i), so any byte range
 * the writer asks for is produced by generating the units it overlaps; whole
 * units go straight into the writer's buffer, split units at the edges
 * through a small scratch block. Units are shared out to the thread pool.
 */
#include "synth.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <strings.h>

#include "gguf.h"
#include "kernels/kernels.h"
#include "threadpool.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define SYNTH_X86 1
#endif

#define UNIT 32
#define UNIT_MAX 256 /* a K-quant block */
#define GOLDEN 0x9e3779b97f4a7c15ull

static inline uint64_t mix64_(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

typedef enum { FILL_RANDOM, FILL_ONES } fill_kind;

struct synth_run_;

typedef struct {
    struct synth_run_ *run;
    pg_type type;
    fill_kind kind;
    int64_t nel;       /* elements */
    float amp;         /* uniform in (-amp, amp) */
    uint64_t key;      /* per-tensor stream key */
    int unit_n;        /* elements of a full unit */
    size_t unit_bytes; /* bytes of a full unit */
} synth_tensor;

typedef struct synth_run_ {
    pg_pool *pool;
    bool f16c; /* convert to F16 with the F16C instructions (same rounding as pg_f32_to_f16) */
    uint64_t done, total;
    void (*progress)(void *ctx, uint64_t done, uint64_t total);
    void *progress_ctx;
} synth_run;

/* 24 random bits -> odd integers in [-(2^24-1), 2^24-1] (exact in float)
 * -> (-amp, amp), symmetric about 0. */
static inline float bits_to_float_(uint64_t r24, float amp) {
    return (float)(2 * (int32_t)r24 - 16777215) * (amp * (1.0f / 16777216.0f));
}

/* Elements i and i+1 (i even) of a random tensor come from one hash of i/2. */
static inline void rand_pair_(const synth_tensor *st, int64_t i, float *out) {
    uint64_t h = mix64_(st->key + (uint64_t)(i >> 1) * GOLDEN);
    out[0] = bits_to_float_(h >> 40, st->amp);
    out[1] = bits_to_float_((h >> 8) & 0xffffff, st->amp);
}

#ifdef SYNTH_X86
__attribute__((target("avx,f16c"))) static void unit_to_f16_f16c_(const float *f, uint8_t *dst) {
    for (int k = 0; k < UNIT; k += 8)
        _mm_storeu_si128((__m128i *)(dst + 2 * k),
                         _mm256_cvtps_ph(_mm256_loadu_ps(f + k), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
#endif

/* Writes unit u (elements [32u, min(32u+32, nel))) to dst; returns its bytes. */
static size_t gen_unit_(const synth_tensor *st, int64_t u, uint8_t *dst) {
    float f[UNIT_MAX];
    int64_t i0 = u * st->unit_n;
    int n = st->nel - i0 < st->unit_n ? (int)(st->nel - i0) : st->unit_n;
    if (st->kind == FILL_ONES)
        for (int k = 0; k < n; k++) f[k] = 1.0f;
    else
        for (int k = 0; k < st->unit_n; k += 2) rand_pair_(st, i0 + k, f + k); /* the tail of a short unit is unused */
    switch (st->type) {
    case PG_TYPE_F32:
        memcpy(dst, f, (size_t)n * 4);
        return (size_t)n * 4;
    case PG_TYPE_F16:
#ifdef SYNTH_X86
        if (n == UNIT && st->run->f16c) {
            unit_to_f16_f16c_(f, dst);
            return (size_t)n * 2;
        }
#endif
        for (int k = 0; k < n; k++) {
            uint16_t h = pg_f32_to_f16(f[k]);
            memcpy(dst + 2 * k, &h, 2);
        }
        return (size_t)n * 2;
    case PG_TYPE_BF16:
        for (int k = 0; k < n; k++) {
            uint16_t h = pg_f32_to_bf16(f[k]);
            memcpy(dst + 2 * k, &h, 2);
        }
        return (size_t)n * 2;
    case PG_TYPE_Q8_0: {
        PG_ASSERT(n == UNIT); /* row lengths are multiples of 32 (checked) */
        block_q8_0 b;
        pgk.quantize_q8_0(UNIT, f, &b); /* bit-identical to pg_quantize_q8_0_ref (test_kernels) */
        memcpy(dst, &b, sizeof b);
        return sizeof b;
    }
    default: /* the other quantized formats: one block (row lengths are multiples of it) */
        PG_ASSERT(n == st->unit_n);
        pg_quantize_row_ref(st->type, n, f, dst);
        return st->unit_bytes;
    }
}

/* Bytes [off, off+len) of the tensor from units [u0, u1). */
static void gen_range_(const synth_tensor *st, uint64_t off, uint8_t *buf, size_t len, int64_t u0, int64_t u1) {
    uint64_t ub = st->unit_bytes, end = off + len;
    uint8_t tmp[sizeof(float) * UNIT_MAX];
    for (int64_t u = u0; u < u1; u++) {
        uint64_t us = (uint64_t)u * ub;
        if (us >= off && us + ub <= end) {
            gen_unit_(st, u, buf + (us - off));
        } else { /* split unit at an edge, or the short last unit */
            size_t n = gen_unit_(st, u, tmp);
            uint64_t a = us > off ? us : off, b = us + n < end ? us + n : end;
            if (b > a) memcpy(buf + (a - off), tmp + (a - us), (size_t)(b - a));
        }
    }
}

typedef struct {
    const synth_tensor *st;
    uint64_t off;
    uint8_t *buf;
    size_t len;
    int64_t u0, u1;
} range_task;

static void range_task_(void *arg, int ith, int nth) {
    const range_task *t = arg;
    long lo, hi;
    pg_split((long)(t->u1 - t->u0), ith, nth, &lo, &hi);
    gen_range_(t->st, t->off, t->buf, t->len, t->u0 + lo, t->u0 + hi);
}

static int fill_(void *ctx, uint64_t off, void *buf, size_t len) {
    const synth_tensor *st = ctx;
    synth_run *run = st->run;
    uint64_t ub = st->unit_bytes;
    int64_t u0 = (int64_t)(off / ub), u1 = (int64_t)((off + len + ub - 1) / ub);
    range_task t = {st, off, buf, len, u0, u1};
    if (run->pool && len >= (64u << 10)) pg_pool_run(run->pool, range_task_, &t);
    else range_task_(&t, 0, 1);
    run->done += len;
    if (run->progress) run->progress(run->progress_ctx, run->done, run->total);
    return 0;
}

/* ---- parameters ---- */

static int head_dim_(const pg_synth_params *p) { return p->head_dim > 0 ? p->head_dim : p->dim / (p->n_head > 0 ? p->n_head : 1); }

int pg_synth_parse_type(const char *name) {
    static const struct { const char *n; pg_type t; } types[] = {
        {"F32", PG_TYPE_F32}, {"F16", PG_TYPE_F16}, {"BF16", PG_TYPE_BF16}, {"Q8_0", PG_TYPE_Q8_0}};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++)
        if (strcasecmp(name, types[i].n) == 0) return (int)types[i].t;
    return -1;
}

int pg_synth_check(const pg_synth_params *p, pg_error *e) {
    if (p->arch != PG_SYNTH_QWEN3MOE && p->arch != PG_SYNTH_MIXTRAL && p->arch != PG_SYNTH_SWITCH)
        return pg_fail(e, "synth: unknown architecture %d (qwen3moe, mixtral or switch)", (int)p->arch);
    if (p->arch == PG_SYNTH_SWITCH && (p->n_expert_used != 1 || p->n_head_kv != p->n_head))
        return pg_fail(e, "synth: switch routes to 1 expert (top-k %d) and has as many KV heads as heads (%d, %d)",
                       p->n_expert_used, p->n_head_kv, p->n_head);
    if (p->n_layer < 1 || p->n_layer > 4096) return pg_fail(e, "synth: layers %d (must be 1..4096)", p->n_layer);
    if (p->dim < 1 || p->dim > (1 << 17)) return pg_fail(e, "synth: dim %d (must be 1..131072)", p->dim);
    if (p->n_expert < 1 || p->n_expert > 1024) return pg_fail(e, "synth: experts %d (must be 1..1024)", p->n_expert);
    int kmax = p->n_expert < 64 ? p->n_expert : 64;
    if (p->n_expert_used < 1 || p->n_expert_used > kmax)
        return pg_fail(e, "synth: top-k %d (must be 1..%d with %d experts)", p->n_expert_used, kmax, p->n_expert);
    if (p->expert_ffn < 1 || p->expert_ffn > (1 << 20))
        return pg_fail(e, "synth: expert-ffn %d (must be 1..1048576)", p->expert_ffn);
    if (p->n_head < 1 || p->n_head > 4096) return pg_fail(e, "synth: heads %d (must be 1..4096)", p->n_head);
    if (p->n_head_kv < 1 || p->n_head_kv > p->n_head || p->n_head % p->n_head_kv)
        return pg_fail(e, "synth: kv-heads %d must divide heads %d", p->n_head_kv, p->n_head);
    if (p->head_dim < 0) return pg_fail(e, "synth: head-dim %d (must be positive)", p->head_dim);
    if (p->head_dim == 0 && p->dim % p->n_head)
        return pg_fail(e, "synth: heads %d do not divide dim %d (give head-dim explicitly)", p->n_head, p->dim);
    int hd = head_dim_(p);
    if (hd < 2 || hd > 4096 || hd % 2) return pg_fail(e, "synth: head-dim %d (must be even, 2..4096)", hd);
    if ((int64_t)hd * p->n_head > (1 << 20))
        return pg_fail(e, "synth: heads x head-dim = %lld is too large", (long long)hd * p->n_head);
    if (p->vocab < PG_SYNTH_MIN_VOCAB || p->vocab > (1 << 24))
        return pg_fail(e, "synth: vocab %d (must be %d..16777216: 256 bytes + <|endoftext|>)", p->vocab,
                       PG_SYNTH_MIN_VOCAB);
    if (!p->quant && p->type != PG_TYPE_F32 && p->type != PG_TYPE_F16 && p->type != PG_TYPE_BF16 &&
        p->type != PG_TYPE_Q8_0)
        return pg_fail(e, "synth: type %s cannot be synthesized (F32, F16, BF16, Q8_0, or a pregate quantize type)",
                       pg_type_name(p->type));
    if (!p->quant && p->type == PG_TYPE_Q8_0) {
        const char *what = NULL;
        long long v = 0;
        if (p->dim % 32) what = "dim", v = p->dim;
        else if ((hd * p->n_head) % 32) what = "heads x head-dim", v = (long long)hd * p->n_head;
        else if (p->expert_ffn % 32) what = "expert-ffn", v = p->expert_ffn;
        if (what)
            return pg_fail(e, "synth: Q8_0 needs row lengths that are multiples of 32, but %s is %lld", what, v);
    }
    if (p->n_ctx < 0 || p->n_ctx > (1 << 30)) return pg_fail(e, "synth: ctx %d (must be 1..%d)", p->n_ctx, 1 << 30);
    return 0;
}

/* ---- the tensors ---- */

typedef enum { CLASS_DENSE, CLASS_EXPERT, CLASS_NORM } tensor_class;

/* Called for every tensor of the model, in file order. */
typedef void (*plan_fn)(void *ctx, const char *name, pg_type type, fill_kind kind, tensor_class c, int n_dims,
                        int64_t ne0, int64_t ne1, int64_t ne2);

/* Norms and routers F32; matrices p->type, or what pregate quantize's rules
 * give them for p->quant. */
static pg_type tensor_type_(const pg_synth_params *p, const char *name, fill_kind kind, int n_dims, int64_t ne0,
                            int64_t ne1, int64_t ne2) {
    if (kind == FILL_ONES || strstr(name, "ffn_gate_inp") || strstr(name, "attn_rel_b")) return PG_TYPE_F32;
    if (!p->quant) return p->type;
    pg_tensor t = {.name = (char *)name, .n_dims = n_dims, .ne = {ne0, ne1, ne2, 1}};
    return pg_quantize_tensor_type(p->quant, &t, p->n_layer, p->n_expert, true);
}

#define SWITCH_BUCKETS 32
#define SWITCH_MAX_DISTANCE 128

/* Switch: the encoder's blocks, then the decoder's (with cross-attention);
 * experts in the odd blocks of each stack, as transformers' sparse step 2. */
static void plan_switch_(const pg_synth_params *p, plan_fn fn, void *ctx) {
    const int D = p->dim, V = p->vocab, E = p->n_expert, F = p->expert_ffn, Q = head_dim_(p) * p->n_head;
    char name[128];
#define T_(nm, kind, c, nd, a, b, cc) fn(ctx, nm, tensor_type_(p, nm, kind, nd, a, b, cc), kind, c, nd, a, b, cc)
    T_("token_embd.weight", FILL_RANDOM, CLASS_DENSE, 2, D, V, 1);
    T_("enc.output_norm.weight", FILL_ONES, CLASS_NORM, 1, D, 1, 1);
    T_("dec.output_norm.weight", FILL_ONES, CLASS_NORM, 1, D, 1, 1);
    for (int st = 0; st < 2; st++)
        for (int l = 0; l < p->n_layer; l++) {
            const char *sn = st ? "dec" : "enc";
#define N(s) (snprintf(name, sizeof name, "%s.blk.%d." s, sn, l), name)
            T_(N("attn_norm.weight"), FILL_ONES, CLASS_NORM, 1, D, 1, 1);
            T_(N("attn_q.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
            T_(N("attn_k.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
            T_(N("attn_v.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
            T_(N("attn_o.weight"), FILL_RANDOM, CLASS_DENSE, 2, Q, D, 1);
            if (l == 0) T_(N("attn_rel_b.weight"), FILL_RANDOM, CLASS_NORM, 2, p->n_head, SWITCH_BUCKETS, 1);
            if (st) {
                T_(N("cross_attn_norm.weight"), FILL_ONES, CLASS_NORM, 1, D, 1, 1);
                T_(N("cross_attn_q.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
                T_(N("cross_attn_k.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
                T_(N("cross_attn_v.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
                T_(N("cross_attn_o.weight"), FILL_RANDOM, CLASS_DENSE, 2, Q, D, 1);
            }
            T_(N("ffn_norm.weight"), FILL_ONES, CLASS_NORM, 1, D, 1, 1);
            if (l % 2 == 0) {
                T_(N("ffn_up.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, F, 1);
                T_(N("ffn_down.weight"), FILL_RANDOM, CLASS_DENSE, 2, F, D, 1);
            } else {
                T_(N("ffn_gate_inp.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, E, 1);
                T_(N("ffn_up_exps.weight"), FILL_RANDOM, CLASS_EXPERT, 3, D, F, E);
                T_(N("ffn_down_exps.weight"), FILL_RANDOM, CLASS_EXPERT, 3, F, D, E);
            }
#undef N
        }
#undef T_
}

static void plan_(const pg_synth_params *p, plan_fn fn, void *ctx) {
    if (p->arch == PG_SYNTH_SWITCH) {
        plan_switch_(p, fn, ctx);
        return;
    }
    const bool qwen = p->arch == PG_SYNTH_QWEN3MOE;
    const int D = p->dim, V = p->vocab, E = p->n_expert, F = p->expert_ffn, hd = head_dim_(p);
    const int Q = hd * p->n_head, KV = hd * p->n_head_kv;
    char name[128];
#define T_(nm, kind, c, nd, a, b, cc)                                                                     \
    fn(ctx, nm, tensor_type_(p, nm, kind, nd, a, b, cc), kind, c, nd, a, b, cc)
    T_("token_embd.weight", FILL_RANDOM, CLASS_DENSE, 2, D, V, 1);
    T_("output_norm.weight", FILL_ONES, CLASS_NORM, 1, D, 1, 1);
    T_("output.weight", FILL_RANDOM, CLASS_DENSE, 2, D, V, 1);
    for (int l = 0; l < p->n_layer; l++) {
#define N(s) (snprintf(name, sizeof name, "blk.%d." s, l), name)
        T_(N("attn_norm.weight"), FILL_ONES, CLASS_NORM, 1, D, 1, 1);
        T_(N("attn_q.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, Q, 1);
        T_(N("attn_k.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, KV, 1);
        T_(N("attn_v.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, KV, 1);
        T_(N("attn_output.weight"), FILL_RANDOM, CLASS_DENSE, 2, Q, D, 1);
        if (qwen) {
            T_(N("attn_q_norm.weight"), FILL_ONES, CLASS_NORM, 1, hd, 1, 1);
            T_(N("attn_k_norm.weight"), FILL_ONES, CLASS_NORM, 1, hd, 1, 1);
        }
        T_(N("ffn_norm.weight"), FILL_ONES, CLASS_NORM, 1, D, 1, 1);
        T_(N("ffn_gate_inp.weight"), FILL_RANDOM, CLASS_DENSE, 2, D, E, 1);
        T_(N("ffn_gate_exps.weight"), FILL_RANDOM, CLASS_EXPERT, 3, D, F, E);
        T_(N("ffn_up_exps.weight"), FILL_RANDOM, CLASS_EXPERT, 3, D, F, E);
        T_(N("ffn_down_exps.weight"), FILL_RANDOM, CLASS_EXPERT, 3, F, D, E);
#undef N
    }
#undef T_
}

typedef struct {
    pg_synth_sizes *s;
    int n_expert;
    int n_expert_tensors;  /* per layer with experts: 3 (gate, up, down), switch 2 */
    uint64_t layer_expert; /* bytes of the current layer's 3 expert tensors */
    int n_in_layer;
    bool bad;              /* a row length does not fit its type */
    char bad_name[128];
    pg_type bad_type;
    int64_t bad_cols;
} sizes_ctx;

static void size_one_(void *vctx, const char *name, pg_type type, fill_kind kind, tensor_class c, int n_dims,
                      int64_t ne0, int64_t ne1, int64_t ne2) {
    sizes_ctx *x = vctx;
    const uint64_t rb = pg_row_bytes(type, ne0);
    if (!rb && !x->bad) {
        x->bad = true;
        snprintf(x->bad_name, sizeof x->bad_name, "%s", name);
        x->bad_type = type;
        x->bad_cols = ne0;
    }
    const uint64_t bytes = rb * (uint64_t)(n_dims > 1 ? ne1 : 1) * (uint64_t)(n_dims > 2 ? ne2 : 1);
    x->s->data_bytes += bytes;
    x->s->n_tensors++;
    if (c == CLASS_DENSE) x->s->dense_bytes += bytes;
    if (c == CLASS_EXPERT) {
        x->s->expert_bytes += bytes;
        x->layer_expert += bytes;
        if (++x->n_in_layer == x->n_expert_tensors) { /* the largest expert of any layer (layers may differ in type) */
            const uint64_t per = x->layer_expert / (uint64_t)x->n_expert;
            if (per > x->s->bytes_per_expert) x->s->bytes_per_expert = per;
            x->layer_expert = 0;
            x->n_in_layer = 0;
        }
    }
    (void)kind;
}

int pg_synth_sizes_of(const pg_synth_params *p, pg_synth_sizes *s, pg_error *e) {
    memset(s, 0, sizeof *s);
    if (pg_synth_check(p, e)) return -1;
    sizes_ctx x = {.s = s, .n_expert = p->n_expert, .n_expert_tensors = p->arch == PG_SYNTH_SWITCH ? 2 : 3};
    plan_(p, size_one_, &x);
    if (x.bad)
        return pg_fail(e, "synth: tensor '%s' has rows of %" PRId64 ", not a multiple of the block of %s", x.bad_name,
                       x.bad_cols, pg_type_name(x.bad_type));
    return 0;
}

/* ---- tokenizer ---- */

/* GPT-2's byte-to-unicode alphabet: printable bytes stand for themselves, the
 * other 68 take U+0100.. in byte order. Writes UTF-8 (NUL-terminated). */
static void byte_token_(int b, char out[4]) {
    unsigned cp;
    if ((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255)) {
        cp = (unsigned)b;
    } else {
        int n = 0;
        for (int x = 0; x < b; x++)
            if (!((x >= 33 && x <= 126) || (x >= 161 && x <= 172) || (x >= 174 && x <= 255))) n++;
        cp = 256u + (unsigned)n;
    }
    if (cp < 0x80) {
        out[0] = (char)cp;
        out[1] = 0;
    } else { /* cp < 0x800 */
        out[0] = (char)(0xc0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3f));
        out[2] = 0;
    }
}

static void tokenizer_(gguf_writer *w, int vocab) {
    char **tok = xmalloc((size_t)vocab * sizeof(char *));
    int32_t *type = xmalloc((size_t)vocab * sizeof(int32_t));
    for (int i = 0; i < vocab; i++) {
        char buf[32];
        if (i < 256) {
            byte_token_(i, buf);
            type[i] = 1; /* normal */
        } else if (i == 256) {
            snprintf(buf, sizeof buf, "<|endoftext|>");
            type[i] = 3; /* control */
        } else {
            snprintf(buf, sizeof buf, "<|synth_%d|>", i);
            type[i] = 3;
        }
        tok[i] = xstrdup(buf);
    }
    gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    gguf_writer_set_str(w, "tokenizer.ggml.pre", "gpt-2");
    gguf_writer_set_arr_str(w, "tokenizer.ggml.tokens", (const char *const *)tok, (uint64_t)vocab);
    gguf_writer_set_arr_i32(w, "tokenizer.ggml.token_type", type, (uint64_t)vocab);
    gguf_writer_set_arr_str(w, "tokenizer.ggml.merges", NULL, 0);
    gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 256);
    gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 256);
    gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", false);
    for (int i = 0; i < vocab; i++) free(tok[i]);
    free(tok);
    free(type);
}

/* ---- the model ---- */

typedef struct {
    gguf_writer *w;
    synth_run *run;
    synth_tensor *ts;
    int n, cap;
    uint64_t seed;
} builder;

/* Weights have std 1/sqrt(fan_in), so that every product keeps unit scale,
 * with two exceptions that keep routing independent from token to token,
 * as the benchmarks claim (bench prints the measured reuse): random
 * attention is near uniform, so its output is nearly the same average for
 * every token, and at full scale it would dominate the residual stream and
 * route every token alike (58% of a token's experts were the previous
 * token's, against 6% for independent routing). Token embeddings get std 1
 * and attention outputs a quarter of the usual scale. */
static float std_scale_(const char *name, int64_t fan_in) {
    if (strstr(name, "token_embd")) return sqrtf((float)fan_in);
    if (strstr(name, "attn_output") || strstr(name, "attn_o.")) return 0.25f;
    return 1.0f;
}

static void add_(void *vb, const char *name, pg_type type, fill_kind kind, tensor_class c, int n_dims, int64_t ne0,
                 int64_t ne1, int64_t ne2) {
    builder *b = vb;
    PG_ASSERT(b->n < b->cap);
    int64_t ne[3] = {ne0, ne1, ne2};
    synth_tensor *st = &b->ts[b->n];
    st->run = b->run;
    st->type = type;
    st->kind = kind;
    st->nel = ne0 * (n_dims > 1 ? ne1 : 1) * (n_dims > 2 ? ne2 : 1);
    st->amp = sqrtf(3.0f / (float)ne0) * std_scale_(name, ne0); /* std = amp / sqrt(3) */
    st->key = mix64_(b->seed ^ mix64_(0x5eed0000ull + (uint64_t)b->n));
    const int blck = pg_type_info(type)->blck;
    st->unit_n = blck > UNIT ? blck : UNIT;
    PG_ASSERT(st->unit_n <= UNIT_MAX && st->unit_n % blck == 0);
    st->unit_bytes = pg_row_bytes(type, st->unit_n);
    size_t nbytes = pg_row_bytes(type, ne0) * (size_t)(st->nel / ne0);
    b->run->total += nbytes;
    gguf_writer_add_tensor_cb(b->w, name, type, n_dims, ne, nbytes, fill_, st);
    b->n++;
    (void)c;
}

int pg_synth_write(const pg_synth_params *p, const char *out, pg_error *e) {
    pg_synth_sizes sz;
    if (pg_synth_sizes_of(p, &sz, e)) return -1;
    bool qwen = p->arch == PG_SYNTH_QWEN3MOE, sw = p->arch == PG_SYNTH_SWITCH;
    const char *a = qwen ? "qwen3moe" : sw ? "switch" : "llama";
    int D = p->dim, V = p->vocab, E = p->n_expert, F = p->expert_ffn, hd = head_dim_(p);
    pg_type t = p->type;

    gguf_writer *w = gguf_writer_new();
    char key[128], name[128];
#define KEY(k) (snprintf(key, sizeof key, "%s." k, a), key)
    gguf_writer_set_str(w, "general.architecture", a);
    snprintf(name, sizeof name, "synthetic random-weight %s MoE (seed %" PRIu64 ")",
             qwen ? "qwen3moe" : sw ? "switch" : "mixtral", p->seed);
    gguf_writer_set_str(w, "general.name", name);
    gguf_writer_set_u32(w, "general.file_type",
                        p->quant ? (uint32_t)p->quant->ftype
                        : t == PG_TYPE_F32 ? 0 : t == PG_TYPE_F16 ? 1 : t == PG_TYPE_Q8_0 ? 7 : 32);
    gguf_writer_set_bool(w, "pregate.synthetic", true);
    gguf_writer_set_u64(w, "pregate.synthetic.seed", p->seed);
    gguf_writer_set_u32(w, KEY("block_count"), (uint32_t)p->n_layer);
    gguf_writer_set_u32(w, KEY("context_length"), (uint32_t)(p->n_ctx > 0 ? p->n_ctx : 4096));
    gguf_writer_set_u32(w, KEY("embedding_length"), (uint32_t)D);
    gguf_writer_set_u32(w, KEY("feed_forward_length"), (uint32_t)F);
    gguf_writer_set_u32(w, KEY("attention.head_count"), (uint32_t)p->n_head);
    gguf_writer_set_u32(w, KEY("attention.head_count_kv"), (uint32_t)p->n_head_kv);
    gguf_writer_set_u32(w, KEY("attention.key_length"), (uint32_t)hd);
    gguf_writer_set_u32(w, KEY("attention.value_length"), (uint32_t)hd);
    gguf_writer_set_u32(w, KEY("rope.dimension_count"), (uint32_t)hd);
    gguf_writer_set_f32(w, KEY("rope.freq_base"), 1000000.0f);
    gguf_writer_set_f32(w, KEY("attention.layer_norm_rms_epsilon"), qwen || sw ? 1e-6f : 1e-5f);
    gguf_writer_set_u32(w, KEY("expert_count"), (uint32_t)E);
    gguf_writer_set_u32(w, KEY("expert_used_count"), (uint32_t)p->n_expert_used);
    if (qwen || sw) gguf_writer_set_u32(w, KEY("expert_feed_forward_length"), (uint32_t)F);
    if (sw) {
        gguf_writer_set_u32(w, KEY("decoder_block_count"), (uint32_t)p->n_layer);
        gguf_writer_set_u32(w, KEY("attention.relative_buckets_count"), SWITCH_BUCKETS);
        gguf_writer_set_u32(w, KEY("attention.relative_max_distance"), SWITCH_MAX_DISTANCE);
        gguf_writer_set_u32(w, KEY("decoder_start_token_id"), 0);
    }
#undef KEY
    tokenizer_(w, V);

    pg_kernels_init(-1);
    synth_run run = {.progress = p->progress, .progress_ctx = p->progress_ctx};
#ifdef SYNTH_X86
    run.f16c = pg_cpu_has_f16c();
#endif
    builder b = {.w = w, .run = &run, .cap = sz.n_tensors, .seed = p->seed};
    b.ts = xcalloc((size_t)b.cap, sizeof *b.ts);
    plan_(p, add_, &b);
    PG_ASSERT(b.n == sz.n_tensors && run.total == sz.data_bytes);
    /* small models are not worth the threads */
    if (run.total >= (16u << 20)) run.pool = pg_pool_new(p->n_threads);
    int rc = gguf_writer_write(w, out, e);
    pg_pool_free(run.pool);
    gguf_writer_free(w);
    free(b.ts);
    return rc;
}
