/* bench_kernels.c - `pregate bench-kernels`: how close the matrix-vector
 * kernels come to the memory bandwidth, the physical limit of decoding.
 *
 *   pregate bench-kernels [-t N] [--mb SIZE] [--reps R] [--types F16,Q4_K,...]
 *
 * (a) memory bandwidth on the pool: a copy (memcpy per thread) and a
 *     read-only sum of a buffer of SIZE MiB, best of R;
 * (b) y = W x (T = 1) for F32, F16, BF16, Q8_0 and the main quantized
 *     formats (or --types) with W of about SIZE MiB
 *     and 4096 columns, in GB/s of weight bytes streamed (median and best of
 *     R) and as a fraction of the measured read bandwidth, for the chosen ISA
 *     and the scalar reference;
 * (c) a T = 16 matmul per type in GFLOP/s.
 * SIZE defaults to 256 MiB so that nothing is served from the (32 MiB) L3.
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
#define BENCH_T 16

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

typedef struct {
    pg_mat *W;
} fill_task;

static void fill_fn(void *v, int ith, int nth) {
    pg_mat *W = ((fill_task *)v)->W;
    long lo, hi;
    pg_split(W->rows, ith, nth, &lo, &hi);
    uint64_t s = 0x9e3779b97f4a7c15ull * (uint64_t)(ith + 1);
    for (long r = lo; r < hi; r++) {
        char *row = (char *)W->data + (size_t)r * W->row_bytes;
        for (int c = 0; c < W->cols; c++) {
            s = s * 6364136223846793005ull + 1442695040888963407ull;
            float f = (float)((int)(s >> 40) - (1 << 23)) / (float)(1 << 23) * 0.05f;
            switch (W->type) {
            case PG_TYPE_F32: ((float *)row)[c] = f; break;
            case PG_TYPE_F16: ((uint16_t *)row)[c] = pg_f32_to_f16(f); break;
            case PG_TYPE_BF16: ((uint16_t *)row)[c] = pg_f32_to_bf16(f); break;
            case PG_TYPE_Q8_0: {
                block_q8_0 *b = (block_q8_0 *)row + c / 32;
                b->qs[c % 32] = (int8_t)((int)(s >> 56) - 128 + ((s >> 56) == 0));
                b->d = pg_f32_to_f16(0.0004f);
                break;
            }
            default: break; /* the other formats: below */
            }
        }
        if (W->type != PG_TYPE_F32 && W->type != PG_TYPE_F16 && W->type != PG_TYPE_BF16 && W->type != PG_TYPE_Q8_0) {
            /* one of 64 quantized random rows: quantizing every row would take longer than the benchmark */
            if (r % 64 == 0 || r == lo) {
                float *f = xmalloc(sizeof(float) * (size_t)W->cols);
                for (int c = 0; c < W->cols; c++) {
                    s = s * 6364136223846793005ull + 1442695040888963407ull;
                    f[c] = (float)((int)(s >> 40) - (1 << 23)) / (float)(1 << 23) * 0.05f;
                }
                pg_quantize_row_ref(W->type, W->cols, f, row);
                free(f);
            } else {
                memcpy(row, (char *)W->data + (size_t)(r - r % 64 > lo ? r - r % 64 : lo) * W->row_bytes, W->row_bytes);
            }
        }
    }
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
    qsort(t, (size_t)reps, sizeof(double), cmp_double);
    timing out = {reps % 2 ? t[reps / 2] : 0.5 * (t[reps / 2 - 1] + t[reps / 2]), t[0]};
    free(t);
    return out;
}

static void usage(void) {
    fprintf(stderr, "usage: pregate bench-kernels [-t N] [--mb SIZE] [--reps R] [--types LIST]\n"
                    "  -t N        threads (default: all %d CPUs)\n"
                    "  --mb SIZE   matrix and buffer size in MiB (default 256; keep it above the L3)\n"
                    "  --reps R    repetitions (default 5); best and median are reported\n"
                    "  --types L   weight types, comma separated (default F32,F16,BF16,Q8_0,Q4_0,Q4_K,Q5_K,Q6_K,MXFP4)\n"
                    "  PREGATE_ISA=scalar|avx2|avx512 caps the ISA\n",
            pg_cpu_count());
}

int cmd_bench_kernels(int argc, char **argv) {
    int n_threads = 0, mb = 256, reps = 5;
    const char *type_list = "F32,F16,BF16,Q8_0,Q4_0,Q4_K,Q5_K,Q6_K,MXFP4";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if ((!strcmp(a, "-t") || !strcmp(a, "--threads")) && i + 1 < argc) n_threads = atoi(argv[++i]);
        else if (!strcmp(a, "--mb") && i + 1 < argc) mb = atoi(argv[++i]);
        else if (!strcmp(a, "--reps") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(a, "--types") && i + 1 < argc) type_list = argv[++i];
        else if (!strcmp(a, "-h") || !strcmp(a, "--help")) { usage(); return 0; }
        else { fprintf(stderr, "bench-kernels: unknown or incomplete option '%s'\n", a); usage(); return 2; }
    }
    if (mb < 1 || reps < 1 || n_threads < 0) { usage(); return 2; }
    pg_type types[PG_TYPE_COUNT];
    int n_types = 0;
    for (const char *p = type_list; *p;) {
        const size_t len = strcspn(p, ",");
        int found = -1;
        for (int t = 0; t < PG_TYPE_COUNT; t++)
            if (pg_type_info(t) && strlen(pg_type_name(t)) == len && !strncasecmp(pg_type_name(t), p, len) &&
                pg_dot_ref((pg_type)t))
                found = t;
        if (found < 0 || n_types == PG_TYPE_COUNT) {
            fprintf(stderr, "bench-kernels: --types: '%.*s' is not a weight type with kernels\n", (int)len, p);
            return 2;
        }
        types[n_types++] = (pg_type)found;
        p += len + (p[len] == ',');
    }
    pg_pool *pool = pg_pool_new(n_threads);
    const pg_isa isa = pg_kernels_init(-1);
    printf("pregate bench-kernels: isa %s (cpu supports %s), %d threads, %d MiB, %d reps\n\n", pg_isa_name(isa),
           pg_isa_name(pg_cpu_isa()), pg_pool_size(pool), mb, reps);
    fflush(stdout);

    const size_t bytes = (size_t)mb << 20;
    bw_task bw = {.a = xmalloc_aligned(4096, bytes), .b = xmalloc_aligned(4096, bytes), .bytes = bytes};
    bench_bandwidth(pool, &bw, reps);
    free(bw.b);

    const pg_isa isas[2] = {isa, PG_ISA_SCALAR};
    const int n_isas = isa == PG_ISA_SCALAR ? 1 : 2;
    float *X = xmalloc_aligned(64, sizeof(float) * BENCH_COLS * BENCH_T);
    for (int i = 0; i < BENCH_COLS * BENCH_T; i++) X[i] = (float)((i * 7919) % 2001 - 1000) / 1000.0f;
    char (*gflops)[2][64] = xcalloc((size_t)n_types, sizeof *gflops);

    printf("y = W x, T = 1, %d columns: GB/s of weight bytes (median, best of %d); limit = read bandwidth\n"
           "measured (best of %d) just before each row, as other load on the machine changes it\n",
           BENCH_COLS, reps, reps);
    printf("  %-5s %-7s %7s %8s %9s %9s %8s %8s\n", "type", "isa", "rows", "MiB", "median", "best", "limit",
           "best/lim");
    for (int ti = 0; ti < n_types; ti++) {
        pg_mat W = {.type = types[ti], .cols = BENCH_COLS};
        W.row_bytes = pg_row_bytes(W.type, BENCH_COLS);
        W.rows = (int)(((size_t)mb << 20) / W.row_bytes);
        W.rows -= W.rows % 64;
        if (W.rows < 64) W.rows = 64;
        const size_t wbytes = W.row_bytes * (size_t)W.rows;
        W.data = xmalloc_aligned(4096, wbytes);
        fill_task ft = {&W};
        pg_pool_run(pool, fill_fn, &ft);
        float *Y = xmalloc(sizeof(float) * (size_t)W.rows * BENCH_T);
        void *scratch = xmalloc(pg_matmul_scratch_bytes(&W, BENCH_T) + 1);
        for (int k = 0; k < n_isas; k++) {
            pg_kernels_init(isas[k]);
            const double limit = read_bandwidth(pool, &bw, reps);
            timing tm = time_matmul(pool, &W, 1, X, Y, scratch, reps);
            printf("  %-6s %-7s %7d %8.1f %9.2f %9.2f %8.2f %7.0f%%\n", pg_type_name(W.type), pg_isa_name(pgk.isa),
                   W.rows, wbytes / 1048576.0, wbytes / tm.median / 1e9, wbytes / tm.best / 1e9, limit,
                   100.0 * wbytes / tm.best / 1e9 / limit);
            fflush(stdout);
            /* T = 16: compute-bound; the scalar reference gets one repetition */
            timing t16 = time_matmul(pool, &W, BENCH_T, X, Y, scratch, k == 0 ? reps : 1);
            const double flop = 2.0 * W.rows * (double)W.cols * BENCH_T;
            snprintf(gflops[ti][k], sizeof gflops[ti][k], "  %-6s %-7s %9.2f %9.2f %9.2f", pg_type_name(W.type),
                     pg_isa_name(pgk.isa), flop / t16.median / 1e9, flop / t16.best / 1e9,
                     wbytes / t16.best / 1e9);
        }
        pg_kernels_init(isa);
        free(scratch);
        free(Y);
        free((void *)W.data);
    }
    printf("\nmatmul T = %d, same matrices: GFLOP/s (median, best) and weight GB/s at best\n", BENCH_T);
    printf("  %-5s %-7s %9s %9s %9s\n", "type", "isa", "median", "best", "GB/s");
    for (int ti = 0; ti < n_types; ti++)
        for (int k = 0; k < n_isas; k++) printf("%s\n", gflops[ti][k]);
    free(gflops);
    free(X);
    free(bw.a);
    pg_pool_free(pool);
    return 0;
}
