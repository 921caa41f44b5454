/* quantize.c - see quantize.h.
 *
 * Which type a tensor gets (pg_quantize_tensor_type), following llama.cpp's
 * llama_tensor_get_type at the level that matters for the models pregate
 * runs:
 *  - Only weight matrices are quantized: tensors of 2 or more dimensions
 *    whose name is not a norm and not a router (ffn_gate_inp, which picks
 *    experts: small, and its errors change which experts run). Those stay
 *    (or become) F32, lossless for F16/BF16 sources.
 *  - For a float target (F16, BF16, F32) every weight gets that type.
 *  - The output head (output.weight, or token_embd.weight when the output is
 *    tied to it) gets Q6_K unless the target is Q8_0: its errors hit every
 *    logit directly, and it is read once per token.
 *  - Q4_K_M and Q5_K_M: Q4_K / Q5_K for most weights, but Q6_K for attn_v
 *    and ffn_down (dense, shared or expert) in the layers picked by
 *    use_more_bits: the first and last eighth of the layers and every third
 *    layer between. With 8 experts (Mixtral-like) attn_v and attn_k get
 *    Q8_0 and attn_output Q5_K: attention is a small share of such models.
 *  - MXFP4_MOE: experts MXFP4 (gpt-oss ships them so), other weights Q8_0.
 *  - --expert-type overrides the type of the *_exps tensors.
 *  - Fallback: K-quants, TQ* and IQ4_XS need rows that are a multiple of
 *    256. Otherwise Q4_K -> Q5_0, Q5_K -> Q5_1, Q6_K -> Q8_0 (a 32-block
 *    format of about the same bits), Q2_K/Q3_K/IQ4_XS -> IQ4_NL, TQ1_0/TQ2_0
 *    -> Q4_0; then F16 if the row is not a multiple of 32 either.
 */
#include "quantize.h"

#include <inttypes.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "kernels/quants.h"
#include "threadpool.h"

/* ---- target names ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    pg_type base;
    pg_quant_mix mix;
    int ftype; /* llama_ftype */
} target_;

static const target_ targets_[] = {
    {"F32", PG_TYPE_F32, PG_MIX_NONE, 0},        {"F16", PG_TYPE_F16, PG_MIX_NONE, 1},
    {"BF16", PG_TYPE_BF16, PG_MIX_NONE, 32},     {"Q4_0", PG_TYPE_Q4_0, PG_MIX_NONE, 2},
    {"Q4_1", PG_TYPE_Q4_1, PG_MIX_NONE, 3},      {"Q5_0", PG_TYPE_Q5_0, PG_MIX_NONE, 8},
    {"Q5_1", PG_TYPE_Q5_1, PG_MIX_NONE, 9},      {"Q8_0", PG_TYPE_Q8_0, PG_MIX_NONE, 7},
    {"Q2_K", PG_TYPE_Q2_K, PG_MIX_NONE, 10},     {"Q3_K", PG_TYPE_Q3_K, PG_MIX_NONE, 12},
    {"Q4_K", PG_TYPE_Q4_K, PG_MIX_NONE, 14},     {"Q5_K", PG_TYPE_Q5_K, PG_MIX_NONE, 16},
    {"Q6_K", PG_TYPE_Q6_K, PG_MIX_NONE, 18},     {"TQ1_0", PG_TYPE_TQ1_0, PG_MIX_NONE, 36},
    {"TQ2_0", PG_TYPE_TQ2_0, PG_MIX_NONE, 37},   {"MXFP4", PG_TYPE_MXFP4, PG_MIX_NONE, 38},
    {"IQ4_NL", PG_TYPE_IQ4_NL, PG_MIX_NONE, 25}, {"IQ4_XS", PG_TYPE_IQ4_XS, PG_MIX_NONE, 30},
    {"Q4_K_M", PG_TYPE_Q4_K, PG_MIX_Q4_K_M, 15}, {"Q5_K_M", PG_TYPE_Q5_K, PG_MIX_Q5_K_M, 17},
    {"MXFP4_MOE", PG_TYPE_MXFP4, PG_MIX_MXFP4_MOE, 38},
};
#define N_TARGETS (int)(sizeof targets_ / sizeof targets_[0])

int pg_quantize_parse_type(const char *name, pg_quantize_params *p, pg_error *e) {
    for (int i = 0; i < N_TARGETS; i++)
        if (!strcasecmp(name, targets_[i].name)) {
            p->base = targets_[i].base;
            p->mix = targets_[i].mix;
            p->ftype = targets_[i].ftype;
            return 0;
        }
    char list[512];
    size_t n = 0;
    for (int i = 0; i < N_TARGETS && n < sizeof list; i++)
        n += (size_t)snprintf(list + n, sizeof list - n, "%s%s", i ? ", " : "", targets_[i].name);
    return pg_fail(e, "unknown quantization type '%s' (one of: %s)", name, list);
}

int pg_quantize_parse_format(const char *name) {
    for (int i = 0; i < N_TARGETS; i++)
        if (targets_[i].mix == PG_MIX_NONE && !strcasecmp(name, targets_[i].name)) return targets_[i].base;
    return -1;
}

/* ---- which type each tensor gets ---------------------------------------------------------- */

static bool is_float_(pg_type t) { return t == PG_TYPE_F32 || t == PG_TYPE_F16 || t == PG_TYPE_BF16; }

static bool name_has_(const char *name, const char *part) { return strstr(name, part) != NULL; }

/* The layer of "blk.N.…", or -1. */
static int layer_of_(const char *name) {
    int l;
    return sscanf(name, "blk.%d.", &l) == 1 ? l : -1;
}

/* llama.cpp's use_more_bits: the first and last eighth, and every third layer between. */
static bool use_more_bits_(int i, int n) { return i < n / 8 || i >= 7 * n / 8 || (i - n / 8) % 3 == 2; }

static pg_type fallback_(pg_type t, int64_t cols) {
    if (cols % pg_type_info(t)->blck == 0) return t;
    switch (t) {
    case PG_TYPE_Q4_K: t = PG_TYPE_Q5_0; break;
    case PG_TYPE_Q5_K: t = PG_TYPE_Q5_1; break;
    case PG_TYPE_Q6_K: t = PG_TYPE_Q8_0; break;
    case PG_TYPE_Q2_K:
    case PG_TYPE_Q3_K:
    case PG_TYPE_IQ4_XS: t = PG_TYPE_IQ4_NL; break;
    case PG_TYPE_TQ1_0:
    case PG_TYPE_TQ2_0: t = PG_TYPE_Q4_0; break;
    default: break;
    }
    return cols % pg_type_info(t)->blck == 0 ? t : PG_TYPE_F16;
}

pg_type pg_quantize_tensor_type(const pg_quantize_params *p, const pg_tensor *t, int n_layer, int n_expert,
                                bool has_output) {
    const char *name = t->name;
    /* biases stay float, 2-D ones too (gpt-oss's ffn_*_exps.bias [F, E]), as llama.cpp quantizes only *weight */
    const size_t len = strlen(name);
    const bool is_bias = len >= 5 && !strcmp(name + len - 5, ".bias");
    const bool weight = t->n_dims >= 2 && !is_bias && !name_has_(name, "_norm") && !name_has_(name, "ffn_gate_inp");
    if (!weight) return PG_TYPE_F32;
    const bool expert = name_has_(name, "_exps");
    pg_type ty = p->base;
    if (!is_float_(p->base)) {
        const bool head = !strcmp(name, "output.weight") || (!has_output && !strcmp(name, "token_embd.weight"));
        const int l = layer_of_(name);
        const bool k_mix = p->mix == PG_MIX_Q4_K_M || p->mix == PG_MIX_Q5_K_M;
        if (head) {
            ty = p->base == PG_TYPE_Q8_0 ? PG_TYPE_Q8_0 : PG_TYPE_Q6_K;
            /* llama.cpp: a head whose rows do not split into 256 goes Q8_0 */
            if (t->ne[0] % PG_QK_K) ty = PG_TYPE_Q8_0;
        } else if (p->mix == PG_MIX_MXFP4_MOE) {
            ty = expert ? PG_TYPE_MXFP4 : PG_TYPE_Q8_0;
        } else if (k_mix && name_has_(name, "attn_v.weight")) {
            if (n_expert == 8) ty = PG_TYPE_Q8_0;
            else if (l >= 0 && use_more_bits_(l, n_layer)) ty = PG_TYPE_Q6_K;
        } else if (k_mix && name_has_(name, "attn_k.weight") && n_expert == 8) {
            ty = PG_TYPE_Q8_0;
        } else if (k_mix && name_has_(name, "attn_output.weight") && n_expert == 8 && p->mix == PG_MIX_Q4_K_M) {
            ty = PG_TYPE_Q5_K;
        } else if (k_mix && name_has_(name, "ffn_down") && l >= 0 && use_more_bits_(l, n_layer)) {
            ty = PG_TYPE_Q6_K;
        }
    }
    if (expert && p->expert_type >= 0) ty = (pg_type)p->expert_type;
    return fallback_(ty, t->ne[0]);
}

/* ---- row conversion ---------------------------------------------------------------------- */

static bool convertible_(pg_type t) {
    const pg_type_traits *tt = pg_type_info(t);
    return tt && (is_float_(t) || (tt->can_compute && tt->blck > 1));
}

int pg_convert_rows(pg_type st, const void *src, pg_type dt, void *dst, int64_t n_rows, int64_t cols,
                    float *scratch, const char *what, pg_error *e) {
    const size_t sb = pg_row_bytes(st, cols), db = pg_row_bytes(dt, cols);
    PG_ASSERT(sb && db && convertible_(st) && convertible_(dt));
    for (int64_t r = 0; r < n_rows; r++) {
        const uint8_t *in = (const uint8_t *)src + (size_t)r * sb;
        uint8_t *out = (uint8_t *)dst + (size_t)r * db;
        pg_dequantize_row_ref(st, cols, in, scratch);
        for (int64_t i = 0; i < cols; i++)
            if (!isfinite(scratch[i]))
                return pg_fail(e, "%s: row %" PRId64 " holds a non-finite value (%g at column %" PRId64 ")", what, r,
                               scratch[i], i);
        if (st == dt) {
            memcpy(out, in, db);
            continue;
        }
        pg_quantize_row_ref(dt, cols, scratch, out);
        /* a scale can still overflow its half (or E8M0) field */
        pg_dequantize_row_ref(dt, cols, out, scratch);
        for (int64_t i = 0; i < cols; i++)
            if (!isfinite(scratch[i]))
                return pg_fail(e, "%s: row %" PRId64 " has values too large for %s (a block scale overflows)", what, r,
                               pg_type_name(dt));
    }
    return 0;
}

/* ---- streaming one tensor ------------------------------------------------------------------ */

#define STAGE_BYTES ((size_t)4 << 20)

typedef struct quant_file_ quant_file_;

typedef struct {
    quant_file_ *qf;
    const pg_tensor *t;
    pg_type out;
    int64_t cols, rows;
    size_t in_rb, out_rb;
    uint8_t *stage;        /* converted rows [row0, row0 + nrows) */
    int64_t row0, nrows, cap_rows;
    _Atomic int failed;
    pg_error err;          /* the first failing thread's message */
    char what[400];        /* "FILE: tensor 'NAME'" */
} tensor_job_;

struct quant_file_ {
    pg_pool *pool;
    float *scratch;        /* per thread: max_cols floats */
    int64_t max_cols;
    uint64_t done, total;
    const pg_quantize_params *p;
    tensor_job_ *jobs;
};

static void convert_task_(void *arg, int ith, int nth) {
    tensor_job_ *j = arg;
    long lo, hi;
    pg_split((long)j->nrows, ith, nth, &lo, &hi);
    if (hi <= lo) return;
    pg_error e;
    if (pg_convert_rows(j->t->type, (const uint8_t *)j->t->data + (size_t)(j->row0 + lo) * j->in_rb, j->out,
                        j->stage + (size_t)lo * j->out_rb, hi - lo, j->cols, j->qf->scratch + (size_t)ith * j->qf->max_cols,
                        j->what, &e)) {
        int expect = 0;
        if (atomic_compare_exchange_strong(&j->failed, &expect, 1)) j->err = e;
    }
}

static int fill_(void *ctx, uint64_t offset, void *buf, size_t len) {
    tensor_job_ *j = ctx;
    quant_file_ *qf = j->qf;
    uint8_t *dst = buf;
    while (len > 0) {
        size_t n;
        if (j->out == j->t->type) { /* kept as it is: the bytes of the file */
            n = len;
            memcpy(dst, (const uint8_t *)j->t->data + offset, n);
        } else {
            const int64_t row = (int64_t)(offset / j->out_rb);
            if (!j->stage || row < j->row0 || row >= j->row0 + j->nrows) {
                if (!j->stage) j->stage = xmalloc((size_t)j->cap_rows * j->out_rb);
                j->row0 = row;
                j->nrows = j->rows - row < j->cap_rows ? j->rows - row : j->cap_rows;
                pg_pool_run(qf->pool, convert_task_, j);
                if (atomic_load(&j->failed)) return -1;
            }
            const uint64_t stage_off = (uint64_t)j->row0 * j->out_rb, stage_end = stage_off + (uint64_t)j->nrows * j->out_rb;
            n = (size_t)(stage_end - offset) < len ? (size_t)(stage_end - offset) : len;
            memcpy(dst, j->stage + (offset - stage_off), n);
        }
        dst += n, offset += n, len -= n;
        qf->done += n;
        if (qf->p->progress) qf->p->progress(qf->p->progress_ctx, qf->done, qf->total, j->t->name);
    }
    if (offset == (uint64_t)j->rows * j->out_rb) { /* last chunk: the stage is no longer needed */
        free(j->stage);
        j->stage = NULL;
    }
    return 0;
}

/* ---- the file ---------------------------------------------------------------------------------- */

static int64_t meta_int_(const gguf_file *g, const char *arch, const char *key, int64_t dflt) {
    char k[160];
    snprintf(k, sizeof k, "%s.%s", arch, key);
    int64_t v;
    return gguf_get_int(g, k, &v) ? v : dflt;
}

int pg_quantize_file(const char *in, const char *out, const pg_quantize_params *p, pg_error *e) {
    gguf_file g;
    if (gguf_open(&g, in, NULL, e)) return -1;
    char *arch = gguf_get_str(&g, "general.architecture");
    const int n_layer = arch ? (int)meta_int_(&g, arch, "block_count", 0) : 0;
    const int n_expert = arch ? (int)meta_int_(&g, arch, "expert_count", 0) : 0;
    free(arch);
    const bool has_output = gguf_find_tensor(&g, "output.weight") != NULL;
    quant_file_ qf = {.p = p};
    qf.jobs = xcalloc(g.n_tensors ? g.n_tensors : 1, sizeof *qf.jobs);
    gguf_writer *w = gguf_writer_new();
    int rc = -1;
    for (uint64_t i = 0; i < g.n_kv; i++) {
        const char *k = g.kv[i].key;
        if (!strcmp(k, "general.file_type") || !strcmp(k, "general.quantization_version")) continue;
        gguf_writer_copy_kv(w, &g.kv[i]);
    }
    gguf_writer_set_u32(w, "general.quantization_version", 2);
    gguf_writer_set_u32(w, "general.file_type", (uint32_t)p->ftype);
    for (uint64_t i = 0; i < g.n_tensors; i++) {
        const pg_tensor *t = &g.tensors[i];
        tensor_job_ *j = &qf.jobs[i];
        j->qf = &qf;
        j->t = t;
        j->cols = t->ne[0];
        j->rows = t->ne[0] ? pg_tensor_nelements(t) / t->ne[0] : 0;
        snprintf(j->what, sizeof j->what, "%s: tensor '%s'", in, t->name);
        j->out = pg_quantize_tensor_type(p, t, n_layer, n_expert, has_output);
        if (!convertible_(t->type) && j->out != t->type) {
            pg_fail(e, "%s has type %s, which pregate cannot convert", j->what, pg_type_name(t->type));
            goto done;
        }
        j->in_rb = pg_row_bytes(t->type, j->cols);
        j->out_rb = pg_row_bytes(j->out, j->cols);
        if (j->rows && !j->out_rb) {
            pg_fail(e, "%s: row length %" PRId64 " does not fit type %s", j->what, j->cols, pg_type_name(j->out));
            goto done;
        }
        j->cap_rows = j->out_rb ? (int64_t)(STAGE_BYTES / j->out_rb) : 1;
        if (j->cap_rows < 1) j->cap_rows = 1;
        if (j->cols > qf.max_cols) qf.max_cols = j->cols;
        const size_t nbytes = (size_t)j->rows * j->out_rb;
        qf.total += nbytes;
        gguf_writer_add_tensor_cb(w, t->name, j->out, t->n_dims, t->ne, nbytes, fill_, j);
    }
    qf.pool = pg_pool_new(p->n_threads > 0 ? p->n_threads : 1);
    qf.scratch = xmalloc((size_t)pg_pool_size(qf.pool) * (size_t)(qf.max_cols ? qf.max_cols : 1) * sizeof(float));
    rc = gguf_writer_write(w, out, e);
    if (rc) /* a conversion error says more than the writer's "callback failed" */
        for (uint64_t i = 0; i < g.n_tensors; i++)
            if (atomic_load(&qf.jobs[i].failed)) {
                if (e) *e = qf.jobs[i].err;
                break;
            }
done:
    for (uint64_t i = 0; i < g.n_tensors; i++) free(qf.jobs[i].stage);
    free(qf.jobs);
    free(qf.scratch);
    pg_pool_free(qf.pool);
    gguf_writer_free(w);
    gguf_close(&g);
    return rc;
}
