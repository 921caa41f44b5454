/* bench_kernels.c - `pregate bench-kernels`: how close the matrix-vector
 * kernels come to the memory bandwidth, the physical limit of decoding, and
 * how fast a prompt goes through them.
 *
 *   pregate bench-kernels [-t N] [--mb SIZE] [--cache-mb CACHE] [--reps R]
 *                         [--types LIST] [--prompt T] [--compare]
 *
 * (a) memory bandwidth on the pool: a copy (memcpy per thread) and a
 *     read-only sum of a buffer of SIZE MiB, best of R;
 * (b) decode, y = W x (T = 1), for every weight type (F32, F16, BF16 and
 *     each quantized format) with W of about SIZE MiB and 4096 columns, in
 *     GB/s of weight bytes streamed (median and best of R) and as a fraction
 *     of the read bandwidth: each repetition follows a read pass, and the
 *     median of the per-repetition ratios is reported (steadier than best
 *     against best when other processes load the machine). Beside it, the
 *     same product with W of CACHE MiB, small enough to stay in the L3:
 *     how fast the kernels go when memory is not the limit. A format whose
 *     in-cache rate is below the read bandwidth is compute-bound on these
 *     threads, and the last column is its GB/s over the lower of the two;
 * (c) prompt, Y = W X through pg_matmul for a batch of T = 512 tokens with a
 *     4096 x 4096 W (activation quantization included), in GFLOP/s and
 *     tokens/s.
 * Each for the best kernels this CPU runs; --compare adds the other variants
 * (AVX-512 without VNNI, AVX2, the scalar reference). SIZE defaults to
 * 256 MiB so that nothing is served from the (32 MiB) L3.
 */
#include <emmintrin.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cli.h"
#include "kernels/kernels.h"
#include "threadpool.h"
#include "util.h"

#define BENCH_COLS 4096

static volatile uint64_t bench_sink;

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* ---- memory bandwidth ------------------------------------------------------------ */

typedef struct {
    char *a, *b;
    size_t bytes;
    uint64_t sums[256];
    int op; /* 0 fill, 1 copy, 2 read */
} bw_task;

static void bw_fn(void *v, int ith, int nth) {
    bw_task *t = v;
    long lo, hi;
    /* split in 64-byte lines so each part stays aligned */
    pg_split((long)(t->bytes / 64), ith, nth, &lo, &hi);
    char *a = t->a + lo * 64, *b = t->b + lo * 64;
    size_t n = (size_t)(hi - lo) * 64;
    if (t->op == 0) { /* distinct contents, so that no page can be shared or deduplicated */
        uint64_t *a8 = (uint64_t *)a, *b8 = (uint64_t *)b;
        for (size_t i = 0; i < n / 8; i++) {
            uint64_t k = ((uint64_t)lo * 8 + i) * 0x9e3779b97f4a7c15ull;
            a8[i] = k ^ (k >> 29);
            if (b != a) b8[i] = k;
        }
    } else if (t->op == 1) {
        memcpy(b, a, n);
    } else {
        __m128i s0 = _mm_setzero_si128(), s1 = s0, s2 = s0, s3 = s0;
        for (size_t i = 0; i + 64 <= n; i += 64) {
            s0 = _mm_add_epi64(s0, _mm_load_si128((const __m128i *)(a + i)));
            s1 = _mm_add_epi64(s1, _mm_load_si128((const __m128i *)(a + i + 16)));
            s2 = _mm_add_epi64(s2, _mm_load_si128((const __m128i *)(a + i + 32)));
            s3 = _mm_add_epi64(s3, _mm_load_si128((const __m128i *)(a + i + 48)));
        }
        s0 = _mm_add_epi64(_mm_add_epi64(s0, s1), _mm_add_epi64(s2, s3));
        uint64_t out[2];
        _mm_storeu_si128((__m128i *)out, s0);
        if (ith < 256) t->sums[ith] = out[0] + out[1];
    }
}

/* Best of `reps` read-only passes over t->a, in GB/s. */
static double read_bandwidth(pg_pool *pool, bw_task *t, int reps) {
    double best = 0;
    t->op = 2;
    for (int r = 0; r < reps; r++) {
        double t0 = pg_time_s();
        pg_pool_run(pool, bw_fn, t);
        double dt = pg_time_s() - t0;
        if (t->bytes / dt > best) best = t->bytes / dt;
        bench_sink += t->sums[0];
    }
    return best / 1e9;
}

/* Read bandwidth of the pool's threads over a fresh buffer of `bytes`, best
 * of `reps` after a warm-up pass, in bytes per second (used by `pregate bench`). */
double bench_read_bandwidth(pg_pool *pool, size_t bytes, int reps) {
    bytes &= ~(size_t)63;
    bw_task t = {.a = xmalloc_aligned(4096, bytes), .bytes = bytes};
    t.b = t.a;
    t.op = 0;
    pg_pool_run(pool, bw_fn, &t);
    read_bandwidth(pool, &t, 1);
    const double gbs = read_bandwidth(pool, &t, reps < 1 ? 1 : reps);
    free(t.a);
    return gbs * 1e9;
}

/* Prints the copy and read bandwidth (best of reps, after a warm-up). */
static void bench_bandwidth(pg_pool *pool, bw_task *t, int reps) {
    t->op = 0;
    pg_pool_run(pool, bw_fn, t); /* first touch by the threads that use the pages */
    double best_copy = 0;
    for (int r = 0; r < reps + 1; r++) { /* rep 0 warms up */
        t->op = 1;
        double t0 = pg_time_s();
        pg_pool_run(pool, bw_fn, t);
        double dt = pg_time_s() - t0;
        if (r && 2.0 * t->bytes / dt > best_copy) best_copy = 2.0 * t->bytes / dt;
    }
    read_bandwidth(pool, t, 1);
    const double rd = read_bandwidth(pool, t, reps);
    printf("memory bandwidth, %zu MiB buffers, best of %d:\n", t->bytes >> 20, reps);
    printf("  copy  %7.2f GB/s  (bytes read + bytes written, memcpy per thread)\n", best_copy / 1e9);
    printf("  read  %7.2f GB/s  (read-only sum: the physical limit of a matrix-vector product)\n\n", rd);
}

/* ---- matrices ------------------------------------------------------------------------ */

#define FILL_ROWS 64 /* distinct rows, repeated through the matrix */

typedef struct {
    pg_mat *W;
    const char *rows; /* FILL_ROWS rows of W->row_bytes */
} fill_task;

/* Copies the prepared rows through the matrix, each thread its share, so
 * that the pages are first touched by the threads that read them. */
static void fill_fn(void *v, int ith, int nth) {
    fill_task *f = v;
    long lo, hi;
    pg_split(f->W->rows, ith, nth, &lo, &hi);
    for (long r = lo; r < hi; r++)
        memcpy((char *)f->W->data + (size_t)r * f->W->row_bytes, f->rows + (size_t)(r % FILL_ROWS) * f->W->row_bytes,
               f->W->row_bytes);
}

/* A rows x cols matrix of `type`: FILL_ROWS rows of small Gaussian-like
 * values quantized by the reference quantizer, repeated (quantizing the
 * whole matrix would take minutes for the K-quants; the kernels do not
 * depend on the values). */
static pg_mat make_matrix(pg_pool *pool, pg_type type, int rows, int cols) {
    pg_mat W = {.type = type, .rows = rows, .cols = cols, .row_bytes = pg_row_bytes(type, cols)};
    char *src = xmalloc(W.row_bytes * FILL_ROWS);
    float *f = xmalloc(sizeof(float) * (size_t)cols);
    uint64_t s = 0x9e3779b97f4a7c15ull;
    for (int r = 0; r < FILL_ROWS; r++) {
        for (int c = 0; c < cols; c++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            /* sum of two uniforms: a triangular bump, scales varying per 256 */
            const float u = (float)((s >> 40) & 0xFFFFFF) + (float)((s >> 16) & 0xFFFFFF);
            f[c] = (u / (float)(1 << 24) - 1.0f) * 0.05f * (float)(1 + (c / 256 + r) % 4);
        }
        pg_quantize_row_ref(type, cols, f, src + (size_t)r * W.row_bytes);
    }
    W.data = xmalloc_aligned(4096, W.row_bytes * (size_t)rows);
    fill_task ft = {&W, src};
    pg_pool_run(pool, fill_fn, &ft);
    free(f);
    free(src);
    return W;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof(double), cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

typedef struct {
    double median, best; /* seconds */
} timing;

static timing time_matmul(pg_pool *pool, const pg_mat *W, int T, const float *X, float *Y, void *scratch,
                          int reps) {
    double *t = xmalloc(sizeof(double) * (size_t)reps);
    pg_matmul(pool, W, T, X, W->cols, Y, W->rows, scratch); /* warm-up */
    for (int r = 0; r < reps; r++) {
        double t0 = pg_time_s();
        pg_matmul(pool, W, T, X, W->cols, Y, W->rows, scratch);
        t[r] = pg_time_s() - t0;
    }
    timing out = {0, 0};
    out.median = median(t, reps); /* sorts t */
    out.best = t[0];
    free(t);
    return out;
}

typedef struct {
    double median_gbs, best_gbs; /* weight bytes streamed by y = W x */
    double best_limit;           /* best read bandwidth of the passes, GB/s */
    double median_ratio;         /* median over reps of GB/s / the read bandwidth just before */
} decode_result;

/* Decode y = W x, each repetition right after one read-bandwidth pass, so
 * that both see the same load on the machine: the per-repetition ratio is
 * steadier than best against best when other processes come and go. */
static decode_result time_decode(pg_pool *pool, bw_task *bw, const pg_mat *W, const float *X, float *Y,
                                 void *scratch, int reps) {
    const double wbytes = (double)W->row_bytes * W->rows;
    double *gbs = xmalloc(sizeof(double) * (size_t)reps), *ratio = xmalloc(sizeof(double) * (size_t)reps);
    decode_result out = {0};
    pg_matmul(pool, W, 1, X, W->cols, Y, W->rows, scratch); /* warm-up */
    for (int r = 0; r < reps; r++) {
        const double limit = read_bandwidth(pool, bw, 1);
        const double t0 = pg_time_s();
        pg_matmul(pool, W, 1, X, W->cols, Y, W->rows, scratch);
        gbs[r] = wbytes / (pg_time_s() - t0) / 1e9;
        ratio[r] = gbs[r] / limit;
        if (gbs[r] > out.best_gbs) out.best_gbs = gbs[r];
        if (limit > out.best_limit) out.best_limit = limit;
    }
    out.median_gbs = median(gbs, reps);
    out.median_ratio = median(ratio, reps);
    free(gbs);
    free(ratio);
    return out;
}

/* Decode y = W x over a W that stays in the cache, called back to back
 * until about 256 MiB went through: the kernels' own rate, in GB/s
 * (median of reps). */
static double time_in_cache(pg_pool *pool, const pg_mat *W, const float *X, float *Y, void *scratch, int reps) {
    const double wbytes = (double)W->row_bytes * W->rows;
    int calls = (int)((256.0 * 1048576.0) / wbytes);
    if (calls < 1) calls = 1;
    double *gbs = xmalloc(sizeof(double) * (size_t)reps);
    pg_matmul(pool, W, 1, X, W->cols, Y, W->rows, scratch); /* brings W into the cache */
    for (int r = 0; r < reps; r++) {
        const double t0 = pg_time_s();
        for (int c = 0; c < calls; c++) pg_matmul(pool, W, 1, X, W->cols, Y, W->rows, scratch);
        gbs[r] = wbytes * calls / (pg_time_s() - t0) / 1e9;
    }
    const double out = median(gbs, reps);
    free(gbs);
    return out;
}

/* ---- kernel variants ------------------------------------------------------------------ */

typedef struct {
    const char *name;
    pg_isa isa;
    int novnni;
} variant;

static const variant VARIANTS[] = {
    {"avx512", PG_ISA_AVX512, 0},
    {"avx512-novnni", PG_ISA_AVX512, 1},
    {"avx2", PG_ISA_AVX2, 0},
    {"scalar", PG_ISA_SCALAR, 0},
};
#define NVARIANTS (int)(sizeof VARIANTS / sizeof VARIANTS[0])

/* Selects variant v (PREGATE_VNNI=0 for the one without VNNI); 0 if the CPU
 * (or PREGATE_ISA) does not run it or it would repeat another. */
static int variant_init(int v) {
    if (VARIANTS[v].novnni) setenv("PREGATE_VNNI", "0", 1);
    const pg_isa got = pg_kernels_init(VARIANTS[v].isa);
    if (VARIANTS[v].novnni) unsetenv("PREGATE_VNNI");
    if (got != VARIANTS[v].isa) return 0;
    if (VARIANTS[v].isa == PG_ISA_AVX512 && !VARIANTS[v].novnni && !pgk.vnni) return 0;
    return 1;
}

static const pg_type ALL_TYPES[] = {PG_TYPE_F32,  PG_TYPE_F16,  PG_TYPE_BF16,  PG_TYPE_Q8_0,   PG_TYPE_Q6_K,
                                    PG_TYPE_Q5_K, PG_TYPE_Q4_K, PG_TYPE_Q4_0,  PG_TYPE_MXFP4,  PG_TYPE_Q4_1,
                                    PG_TYPE_Q5_0, PG_TYPE_Q5_1, PG_TYPE_Q3_K,  PG_TYPE_Q2_K,   PG_TYPE_IQ4_NL,
                                    PG_TYPE_IQ4_XS, PG_TYPE_TQ1_0, PG_TYPE_TQ2_0};
#define N_ALL_TYPES (int)(sizeof ALL_TYPES / sizeof ALL_TYPES[0])

/* Types named in a comma-separated list (GGUF names, any case); the count. */
static int parse_types(const char *list, pg_type *out) {
    int n = 0;
    char buf[256];
    snprintf(buf, sizeof buf, "%s", list);
    for (char *tok = strtok(buf, ","); tok; tok = strtok(NULL, ",")) {
        int found = 0;
        for (int k = 0; k < N_ALL_TYPES; k++)
            if (!strcasecmp(tok, pg_type_name(ALL_TYPES[k]))) out[n++] = ALL_TYPES[k], found = 1;
        if (!found) {
            fprintf(stderr, "bench-kernels: unknown or unsupported type '%s'\n", tok);
            return -1;
        }
        if (n == N_ALL_TYPES) break;
    }
    return n;
}

static void usage(void) {
    fprintf(stderr, "usage: pregate bench-kernels [-t N] [--mb SIZE] [--cache-mb CACHE] [--reps R] [--types LIST]\n"
                    "                              [--prompt T] [--compare]\n"
                    "  -t N          threads (default: all %d CPUs)\n"
                    "  --mb SIZE     decode matrix and buffer size in MiB (default 256; keep it above the L3)\n"
                    "  --cache-mb C  the in-cache matrix in MiB (default 8; keep it inside the L3; 0 skips it)\n"
                    "  --reps R      repetitions (default 5); best and median are reported\n"
                    "  --types LIST  weight types, comma-separated (default: all, e.g. Q4_K,Q8_0)\n"
                    "  --prompt T    tokens of the prompt batch (default 512; 0 skips it)\n"
                    "  --compare     also the other kernel variants: avx512 without VNNI, avx2, scalar\n"
                    "  PREGATE_ISA=scalar|avx2|avx512 caps the ISA, PREGATE_VNNI=0 turns VNNI off\n",
            pg_cpu_count());
}

#define PROMPT_ROWS 4096
#define PROMPT_COLS 4096

int cmd_bench_kernels(int argc, char **argv) {
    int n_threads = 0, mb = 256, cache_mb = 8, reps = 5, prompt_T = 512, compare = 0, n_types = N_ALL_TYPES;
    pg_type types[N_ALL_TYPES];
    memcpy(types, ALL_TYPES, sizeof types);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--mb") && i + 1 < argc) mb = atoi(argv[++i]);
        else if (!strcmp(a, "--cache-mb") && i + 1 < argc) cache_mb = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--prompt") && i + 1 < argc) prompt_T = atoi(argv[++i]);
        else if (!strcmp(a, "--compare")) compare = 1;
        else if (!strcmp(a, "--types") && i + 1 < argc) {
            if ((n_types = parse_types(argv[++i], types)) <= 0) { usage(); return 2; }
        }
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else { fprintf(stderr, "bench-kernels: unknown or incomplete option '%s'\n", a); usage(); return 2; }
    }
    if (mb < 1 || cache_mb < 0 || reps < 1 || n_threads < 0 || prompt_T < 0) { usage(); return 2; }
    pg_pool *pool = pg_pool_new(n_threads);
    const pg_isa isa = pg_kernels_init(-1);
    printf("pregate bench-kernels: isa %s%s (cpu supports %s), %d threads, %d MiB, %d reps\n\n", pg_isa_name(isa),
           isa == PG_ISA_AVX512 ? (pgk.vnni ? " with VNNI" : " without VNNI") : "", pg_isa_name(pg_cpu_isa()),
           pg_pool_size(pool), mb, reps);
    fflush(stdout);

    const size_t bytes = (size_t)mb << 20;
    bw_task bw = {.a = xmalloc_aligned(4096, bytes), .b = xmalloc_aligned(4096, bytes), .bytes = bytes};
    bench_bandwidth(pool, &bw, reps);
    free(bw.b);

    /* the variants to run: the best one, or all with --compare */
    int vlist[NVARIANTS], nv = 0;
    for (int v = 0; v < NVARIANTS; v++)
        if (variant_init(v) && (compare || nv == 0)) vlist[nv++] = v;
    const int max_T = prompt_T > 1 ? prompt_T : 1;
    const int xcols = BENCH_COLS > PROMPT_COLS ? BENCH_COLS : PROMPT_COLS;
    float *X = xmalloc_aligned(64, sizeof(float) * (size_t)xcols * max_T);
    for (size_t i = 0; i < (size_t)xcols * max_T; i++) X[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;

    printf("decode: y = W x, T = 1, %d columns: GB/s of weight bytes (median, best of %d). Each repetition\n"
           "follows one read-bandwidth pass; limit = the best of those passes, ratio = the median over the\n"
           "repetitions of GB/s over the bandwidth measured just before (steady when other load comes and goes)\n",
           BENCH_COLS, reps);
    if (cache_mb > 0)
        printf("in-cache = the same product over a %d MiB W that stays in the cache (median): the kernels' own\n"
               "rate; below the limit, the format is compute-bound on these threads. of-bound = median GB/s\n"
               "over the lower of limit and in-cache\n",
               cache_mb);
    printf("  %-7s %-14s %7s %8s %9s %9s %8s %8s", "type", "kernels", "rows", "MiB", "median", "best", "limit",
           "ratio");
    if (cache_mb > 0) printf(" %9s %8s", "in-cache", "of-bound");
    printf("\n");
    for (int ti = 0; ti < n_types; ti++) {
        const size_t row_bytes = pg_row_bytes(types[ti], BENCH_COLS);
        int rows = (int)(((size_t)mb << 20) / row_bytes);
        rows -= rows % 64;
        if (rows < 64) rows = 64;
        pg_mat W = make_matrix(pool, types[ti], rows, BENCH_COLS);
        const size_t wbytes = W.row_bytes * (size_t)W.rows;
        float *Y = xmalloc(sizeof(float) * (size_t)W.rows);
        void *scratch = xmalloc(pg_matmul_scratch_bytes(&W, 1) + 1);
        pg_mat C = {0};
        if (cache_mb > 0) {
            int crows = (int)(((size_t)cache_mb << 20) / row_bytes);
            crows -= crows % 64;
            C = make_matrix(pool, types[ti], crows < 64 ? 64 : crows, BENCH_COLS);
        }
        for (int k = 0; k < nv; k++) {
            variant_init(vlist[k]);
            const int r = VARIANTS[vlist[k]].isa == PG_ISA_SCALAR ? 1 : reps;
            const decode_result d = time_decode(pool, &bw, &W, X, Y, scratch, r);
            printf("  %-7s %-14s %7d %8.1f %9.2f %9.2f %8.2f %7.0f%%", pg_type_name(W.type), VARIANTS[vlist[k]].name,
                   W.rows, wbytes / 1048576.0, d.median_gbs, d.best_gbs, d.best_limit, 100.0 * d.median_ratio);
            if (cache_mb > 0) {
                const double in_cache = time_in_cache(pool, &C, X, Y, scratch, r);
                const double bound = in_cache < d.best_limit ? in_cache : d.best_limit;
                printf(" %9.2f %7.0f%%", in_cache, 100.0 * d.median_gbs / bound);
            }
            printf("\n");
            fflush(stdout);
        }
        free((void *)C.data);
        free(scratch);
        free(Y);
        free((void *)W.data);
    }

    if (prompt_T > 0) {
        printf("\nprompt: Y = W X through pg_matmul, T = %d tokens, W %d x %d (activations quantized in the call):\n"
               "GFLOP/s (median, best of %d; the scalar reference once) and tokens/s at best\n",
               prompt_T, PROMPT_ROWS, PROMPT_COLS, reps);
        printf("  %-7s %-14s %9s %9s %9s\n", "type", "kernels", "median", "best", "tokens/s");
        for (int ti = 0; ti < n_types; ti++) {
            pg_mat W = make_matrix(pool, types[ti], PROMPT_ROWS, PROMPT_COLS);
            float *Y = xmalloc(sizeof(float) * (size_t)W.rows * prompt_T);
            void *scratch = xmalloc(pg_matmul_scratch_bytes(&W, prompt_T) + 1);
            for (int k = 0; k < nv; k++) {
                variant_init(vlist[k]);
                const int r = VARIANTS[vlist[k]].isa == PG_ISA_SCALAR ? 1 : reps;
                timing tm = time_matmul(pool, &W, prompt_T, X, Y, scratch, r);
                const double flop = 2.0 * W.rows * (double)W.cols * prompt_T;
                printf("  %-7s %-14s %9.2f %9.2f %9.1f\n", pg_type_name(W.type), VARIANTS[vlist[k]].name,
                       flop / tm.median / 1e9, flop / tm.best / 1e9, prompt_T / tm.best);
                fflush(stdout);
            }
            free(scratch);
            free(Y);
            free((void *)W.data);
        }
    }
    pg_kernels_init(isa);
    free(X);
    free(bw.a);
    pg_pool_free(pool);
    return 0;
}
