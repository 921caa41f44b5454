/* dev_cuda.cu - the CUDA device (dev.h): device memory, one compute stream,
 * expert-slot copies on streams of their own, and the kernels of the
 * device pass. Built with `make CUDA=1`.
 *
 * Streams. Every kernel and upload_async is queued on `stream`, the compute
 * stream (non-blocking: nothing else, not even the legacy default stream,
 * orders it). fill_slot copies on the I/O thread's own copy stream after a
 * cudaStreamWaitEvent on the slot's fence, an event recorded on the compute
 * stream by fence_slot.
 *
 * Errors. A kernel call cannot fail where it is made: a failed launch, an
 * unsupported weight type, or an out-of-range token is recorded in `err`
 * (the first one is kept) and reported by every later sync or download.
 *
 * Numbers. The per-element arithmetic (dequantisation, RoPE, SiLU) is in
 * cuda_math.h, checked bit for bit against the CPU references by
 * tests/test_cuda_math.c. Sums differ in order from the CPU's (warp
 * reductions, float accumulation in the matrix-vector kernel where the F32
 * reference accumulates in double; cuBLAS's own order), so matmul and
 * attention agree with the CPU within rounding, not bit for bit.
 * Quantised weights are dequantised and multiplied by float32 activations
 * (the CPU quantises the activations to Q8_0/Q8_K first).
 */
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <cuda_runtime.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cuda_math.h" /* first: it makes the C11 headers' _Static_assert valid C++ */
extern "C" {
#include "dev/dev.h"
}

/* T (rows of X) from which F32/F16/BF16 weights go to cuBLAS rather than
 * to the matrix-vector kernel, which is made for the few rows of decoding
 * (its 8-row passes each read the weights again; cuBLAS tiles the product,
 * on tensor cores for 16-bit weights). Not tuned: no GPU measured it. */
#define PG_CUDA_GEMM_MIN_T 8
/* Rows of X per pass of the matrix-vector kernel (its largest tile): more
 * rows are split into passes of this many, each reading the weights again. */
#define PG_CUDA_MV_MAX_T 8
#define PG_CUDA_MV_WARPS 8       /* output rows (one warp each) per block */
#define PG_CUDA_THREADS 256      /* threads per block of the other kernels */
#define PG_CUDA_ATT_WARPS 8      /* warps per (row, head) block of attention */
#define PG_CUDA_RING_SEGS 4      /* upload_async's staging ring: segments ... */
#define PG_CUDA_RING_SEG (4u << 20) /* ... of 4 MiB of pinned memory */
#define PG_CUDA_FAULT_TOKEN 1    /* `fault` bit: embed met a token id out of range */

typedef struct {
    pg_dev base; /* first member: a pg_dev * is a cuda_dev * */
    int ordinal;
    cudaStream_t stream; /* the compute stream */
    cublasHandle_t blas; /* bound to `stream` */
    char err[PG_ERR_MAX]; /* first failure of the compute stream ("" if none) */
    /* upload_async stages the host bytes in a pinned ring of segments; a
     * segment is reused once the copies out of it, fenced by its event
     * when the ring moved on, have run. */
    uint8_t *ring;
    cudaEvent_t ring_done[PG_CUDA_RING_SEGS];
    int seg;         /* the segment being filled */
    size_t seg_used; /* its bytes in use */
    /* matmul: X converted to 16 bits for cuBLAS; grown on the stream */
    void *xh;
    size_t xh_bytes;
    /* kernels' faults, in mapped host memory: read after a sync without a copy */
    int *fault, *fault_dev;
} cuda_dev;

/* An expert cache's slots: a fence event per slot, recorded on the compute
 * stream, and a copy stream per I/O thread. */
struct pg_dev_slots {
    int n_slots, n_io;
    cudaEvent_t *fence; /* [n_slots] */
    cudaStream_t *io;   /* [n_io] */
};

/* The device, made current on the calling thread (kernels are queued from
 * the host's thread, copies from the I/O threads). */
static cuda_dev *cd_(pg_dev *d) {
    cuda_dev *c = (cuda_dev *)d;
    cudaSetDevice(c->ordinal);
    return c;
}

/* ---- errors ------------------------------------------------------------------------- */

static void fail_(cuda_dev *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void fail_(cuda_dev *c, const char *fmt, ...) {
    if (c->err[0]) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err, sizeof c->err, fmt, ap);
    va_end(ap);
}

static void check_(cuda_dev *c, cudaError_t r, const char *what) {
    if (r != cudaSuccess) fail_(c, "%s: %s: %s", c->base.name, what, cudaGetErrorString(r));
}

/* After a kernel launch: a bad configuration or a dead context shows here. */
static void launched_(cuda_dev *c, const char *kernel) { check_(c, cudaGetLastError(), kernel); }

/* Waits for the compute stream, then reports its first failure. */
static int finish_(cuda_dev *c, pg_error *e) {
    check_(c, cudaStreamSynchronize(c->stream), "compute stream");
    if (*(volatile int *)c->fault & PG_CUDA_FAULT_TOKEN)
        fail_(c, "%s: embed: a token id is outside the embedding matrix", c->base.name);
    return c->err[0] ? pg_fail(e, "%s", c->err) : 0;
}

/* ---- launch shapes -------------------------------------------------------------------- */

/* Blocks for a grid-stride loop over n elements. */
static unsigned blocks_for_(size_t n) {
    const size_t b = (n + PG_CUDA_THREADS - 1) / PG_CUDA_THREADS;
    return (unsigned)(b < 65536 ? b : 65536);
}

#define GRID_STRIDE(i, n)                                                                          \
    for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n); i += (size_t)gridDim.x * blockDim.x)

/* Sum of v over the block (blockDim.x a multiple of 32, at most 1024); every thread gets it. */
template <class V> __device__ V block_sum_(V v) {
    __shared__ V part[32];
    for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, n_warps = blockDim.x / 32;
    if (lane == 0) part[warp] = v;
    __syncthreads();
    V s = 0;
    for (int w = 0; w < n_warps; w++) s += part[w];
    return s;
}

/* ---- weight formats ------------------------------------------------------------------------- */

/* A format reads a row in groups of `group` consecutive elements: load(row,
 * g, y) writes elements g*group .. g*group + group-1 of the row. */
struct fmt_f32_ {
    static constexpr int group = 1;
    __device__ static void load(const uint8_t *row, int g, float *y) { y[0] = ((const float *)row)[g]; }
};
struct fmt_f16_ {
    static constexpr int group = 1;
    __device__ static void load(const uint8_t *row, int g, float *y) { y[0] = pg_cm_f16(((const uint16_t *)row)[g]); }
};
struct fmt_bf16_ {
    static constexpr int group = 1;
    __device__ static void load(const uint8_t *row, int g, float *y) { y[0] = pg_cm_bf16(((const uint16_t *)row)[g]); }
};
/* 16-bit weights eight at a time: one 16-byte load per lane and step, where
 * a row is 16-byte aligned (with_format_ checks), instead of one element. */
template <float (*CV)(uint16_t)> struct fmt_16x8_ {
    static constexpr int group = 8;
    __device__ static void load(const uint8_t *row, int g, float *y) {
        const uint4 v = ((const uint4 *)row)[g];
        const uint32_t w[4] = {v.x, v.y, v.z, v.w};
#pragma unroll
        for (int i = 0; i < 4; i++) {
            y[2 * i] = CV((uint16_t)(w[i] & 0xffffu));
            y[2 * i + 1] = CV((uint16_t)(w[i] >> 16));
        }
    }
};
typedef fmt_16x8_<pg_cm_f16> fmt_f16x8_;
typedef fmt_16x8_<pg_cm_bf16> fmt_bf16x8_;

/* A block format of QK elements per block B, dequantised by DQ (cuda_math.h). */
template <class B, int QK, void (*DQ)(const B *, int, float *)> struct fmt_block_ {
    static constexpr int group = PG_CM_GROUP;
    __device__ static void load(const uint8_t *row, int g, float *y) {
        constexpr int per_block = QK / PG_CM_GROUP;
        DQ((const B *)row + g / per_block, (g % per_block) * PG_CM_GROUP, y);
    }
};
typedef fmt_block_<block_q4_0, PG_QK4_0, pg_cm_q4_0> fmt_q4_0_;
typedef fmt_block_<block_q5_0, PG_QK5_0, pg_cm_q5_0> fmt_q5_0_;
typedef fmt_block_<block_q5_1, PG_QK5_1, pg_cm_q5_1> fmt_q5_1_;
typedef fmt_block_<block_q8_0, PG_QK8_0, pg_cm_q8_0> fmt_q8_0_;
typedef fmt_block_<block_mxfp4, PG_QK_MXFP4, pg_cm_mxfp4> fmt_mxfp4_;
typedef fmt_block_<block_q4_K, PG_QK_K, pg_cm_q4_K> fmt_q4_K_;
typedef fmt_block_<block_q5_K, PG_QK_K, pg_cm_q5_K> fmt_q5_K_;
typedef fmt_block_<block_q6_K, PG_QK_K, pg_cm_q6_K> fmt_q6_K_;

/* Calls op(format) for W's type; -1 if the type has no format here. */
template <class Op> static int with_format_(const pg_mat *W, Op &&op) {
    /* 16-bit rows that are whole 16-byte units, from a 16-byte aligned start */
    const bool x8 = W->cols % 8 == 0 && W->row_bytes % 16 == 0 && (uintptr_t)W->data % 16 == 0;
    switch (W->type) {
    case PG_TYPE_F32: op(fmt_f32_()); return 0;
    case PG_TYPE_F16: if (x8) op(fmt_f16x8_()); else op(fmt_f16_()); return 0;
    case PG_TYPE_BF16: if (x8) op(fmt_bf16x8_()); else op(fmt_bf16_()); return 0;
    case PG_TYPE_Q4_0: op(fmt_q4_0_()); return 0;
    case PG_TYPE_Q5_0: op(fmt_q5_0_()); return 0;
    case PG_TYPE_Q5_1: op(fmt_q5_1_()); return 0;
    case PG_TYPE_Q8_0: op(fmt_q8_0_()); return 0;
    case PG_TYPE_MXFP4: op(fmt_mxfp4_()); return 0;
    case PG_TYPE_Q4_K: op(fmt_q4_K_()); return 0;
    case PG_TYPE_Q5_K: op(fmt_q5_K_()); return 0;
    case PG_TYPE_Q6_K: op(fmt_q6_K_()); return 0;
    default: return -1;
    }
}

/* W can be read on this device: a format above, whole blocks per row. */
static int mat_ok_(cuda_dev *c, const pg_mat *W, const char *op) {
    const pg_type_traits *tt = pg_type_info(W->type);
    const bool known = with_format_(W, [](auto) {}) == 0;
    if (!tt || !known) {
        fail_(c, "%s of type %s is not supported on CUDA", op, pg_type_name(W->type));
        return 0;
    }
    if (W->cols % tt->blck || W->row_bytes < pg_row_bytes(W->type, W->cols)) {
        fail_(c, "%s: a %s matrix of %d columns with rows of %zu bytes", op, tt->name, W->cols, W->row_bytes);
        return 0;
    }
    return 1;
}

/* ---- memory ------------------------------------------------------------------------------- */

static void *alloc_(pg_dev *d, size_t bytes) {
    cd_(d);
    void *p = NULL;
    if (cudaMalloc(&p, bytes ? bytes : 1) != cudaSuccess) {
        cudaGetLastError(); /* out of memory is an answer, not a stream failure */
        return NULL;
    }
    return p;
}

static void free_(pg_dev *d, void *p) {
    cd_(d);
    cudaFree(p);
}

static void *host_alloc_(pg_dev *d, size_t bytes) {
    cd_(d);
    void *p = NULL;
    if (cudaHostAlloc(&p, bytes ? bytes : 1, cudaHostAllocPortable) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

static void host_free_(pg_dev *d, void *p) {
    cd_(d);
    if (p) cudaFreeHost(p);
}

/* Ordered after the queued kernels, and complete when it returns. */
static int upload_(pg_dev *d, void *dst, const void *src, size_t n, pg_error *e) {
    cuda_dev *c = cd_(d);
    check_(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, c->stream), "upload");
    return finish_(c, e);
}

static int download_(pg_dev *d, void *dst, const void *src, size_t n, pg_error *e) {
    cuda_dev *c = cd_(d);
    check_(c, cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, c->stream), "download");
    return finish_(c, e);
}

/* Moves to the next ring segment: fences the one left, and waits until the
 * copies out of the next one (fenced when the ring last left it) have run. */
static void ring_next_(cuda_dev *c) {
    check_(c, cudaEventRecord(c->ring_done[c->seg], c->stream), "upload_async");
    c->seg = (c->seg + 1) % PG_CUDA_RING_SEGS;
    c->seg_used = 0;
    check_(c, cudaEventSynchronize(c->ring_done[c->seg]), "upload_async");
}

static void upload_async_(pg_dev *d, void *dst, const void *src, size_t n) {
    cuda_dev *c = cd_(d);
    while (n > 0) {
        if (c->seg_used == PG_CUDA_RING_SEG) ring_next_(c);
        const size_t room = PG_CUDA_RING_SEG - c->seg_used, piece = n < room ? n : room;
        uint8_t *stage = c->ring + (size_t)c->seg * PG_CUDA_RING_SEG + c->seg_used;
        memcpy(stage, src, piece);
        check_(c, cudaMemcpyAsync(dst, stage, piece, cudaMemcpyHostToDevice, c->stream), "upload_async");
        dst = (uint8_t *)dst + piece;
        src = (const uint8_t *)src + piece;
        n -= piece;
        /* the next piece starts 16-byte aligned; PG_CUDA_RING_SEG being a
         * multiple of 16, this never passes the segment's end */
        c->seg_used = (c->seg_used + piece + 15) & ~(size_t)15;
    }
}

static int sync_(pg_dev *d, pg_error *e) { return finish_(cd_(d), e); }

/* ---- expert slots ------------------------------------------------------------------------- */

/* Waits for the fences still queued, then releases everything (NULL-safe). */
static void slots_free_(pg_dev *d, pg_dev_slots *s) {
    cd_(d);
    if (!s) return;
    for (int i = 0; s->fence && i < s->n_slots; i++)
        if (s->fence[i]) {
            cudaEventSynchronize(s->fence[i]);
            cudaEventDestroy(s->fence[i]);
        }
    for (int i = 0; s->io && i < s->n_io; i++)
        if (s->io[i]) cudaStreamDestroy(s->io[i]);
    free(s->fence);
    free(s->io);
    free(s);
}

static pg_dev_slots *slots_new_(pg_dev *d, int n_slots, int n_io, pg_error *e) {
    cuda_dev *c = cd_(d);
    if (n_slots < 0 || n_io < 1) {
        pg_fail(e, "%s: %d slots and %d I/O streams", c->base.name, n_slots, n_io);
        return NULL;
    }
    pg_dev_slots *s = (pg_dev_slots *)xcalloc(1, sizeof *s);
    s->n_slots = n_slots;
    s->n_io = n_io;
    s->fence = (cudaEvent_t *)xcalloc((size_t)n_slots + 1, sizeof(cudaEvent_t));
    s->io = (cudaStream_t *)xcalloc((size_t)n_io, sizeof(cudaStream_t));
    cudaError_t r = cudaSuccess;
    for (int i = 0; r == cudaSuccess && i < n_slots; i++)
        r = cudaEventCreateWithFlags(&s->fence[i], cudaEventDisableTiming);
    for (int i = 0; r == cudaSuccess && i < n_io; i++)
        r = cudaStreamCreateWithFlags(&s->io[i], cudaStreamNonBlocking);
    if (r == cudaSuccess) return s;
    slots_free_(d, s);
    pg_fail(e, "%s: cannot create %d slot fences and %d copy streams: %s", c->base.name, n_slots, n_io,
            cudaGetErrorString(r));
    return NULL;
}

static void fence_slot_(pg_dev *d, pg_dev_slots *s, int slot) {
    cuda_dev *c = cd_(d);
    PG_ASSERT(slot >= 0 && slot < s->n_slots);
    check_(c, cudaEventRecord(s->fence[slot], c->stream), "fence_slot");
}

/* On I/O thread `io`: only its own stream is used, so the threads do not
 * wait for each other. A slot never fenced has an event never recorded,
 * which cudaStreamWaitEvent does not wait for. */
static int fill_slot_(pg_dev *d, pg_dev_slots *s, int io, int slot, void *dst, const void *src, size_t n, pg_error *e) {
    cuda_dev *c = cd_(d);
    PG_ASSERT(io >= 0 && io < s->n_io && slot >= 0 && slot < s->n_slots);
    cudaError_t r = cudaStreamWaitEvent(s->io[io], s->fence[slot], 0);
    if (r == cudaSuccess) r = cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s->io[io]);
    if (r == cudaSuccess) r = cudaStreamSynchronize(s->io[io]);
    if (r == cudaSuccess) return 0;
    return pg_fail(e, "%s: copy of %zu bytes into expert slot %d: %s", c->base.name, n, slot, cudaGetErrorString(r));
}

/* ---- embed, matmul ---------------------------------------------------------------------------- */

/* One block per token: x[t] = row tokens[t] of W. */
template <class F>
__global__ void embed_kernel_(const uint8_t *W, size_t row_bytes, int rows, int cols, const int32_t *tokens, float *x,
                              int *fault) {
    const int t = blockIdx.x, tok = tokens[t];
    if (tok < 0 || tok >= rows) {
        if (threadIdx.x == 0) *(volatile int *)fault = PG_CUDA_FAULT_TOKEN;
        return;
    }
    const uint8_t *row = W + (size_t)tok * row_bytes;
    float *out = x + (size_t)t * cols;
    for (int g = threadIdx.x; g < cols / F::group; g += blockDim.x) F::load(row, g, out + g * F::group);
}

static void embed_(pg_dev *d, const pg_mat *W, int T, const int32_t *tokens, float *x) {
    cuda_dev *c = cd_(d);
    if (T <= 0 || !mat_ok_(c, W, "embed")) return;
    with_format_(W, [&](auto f) {
        embed_kernel_<decltype(f)><<<T, PG_CUDA_THREADS, 0, c->stream>>>(
            (const uint8_t *)W->data, W->row_bytes, W->rows, W->cols, tokens, x, c->fault_dev);
    });
    launched_(c, "embed");
}

/* The matrix-vector kernel: one warp per output row r, for NT rows of X
 * (t0 = blockIdx.y * NT ..). Each lane dequantises its groups of the weight
 * row once and multiplies them into all NT rows, so the weights are read
 * once per pass; the lanes' partial sums meet in a shuffle reduction. */
template <class F, int NT>
__global__ void matvec_kernel_(const uint8_t *W, size_t row_bytes, int rows, int cols, int T, const float *X, int ldx,
                               float *Y, int ldy) {
    const int r = blockIdx.x * PG_CUDA_MV_WARPS + threadIdx.x / 32, lane = threadIdx.x % 32;
    if (r >= rows) return; /* the whole warp: the shuffles below see full warps */
    const int t0 = blockIdx.y * NT, nt = T - t0 < NT ? T - t0 : NT;
    const uint8_t *row = W + (size_t)r * row_bytes;
    float acc[NT];
    for (int t = 0; t < NT; t++) acc[t] = 0.0f;
    for (int g = lane; g < cols / F::group; g += 32) {
        float w[F::group];
        F::load(row, g, w);
        const float *x = X + (size_t)t0 * ldx + (size_t)g * F::group;
#pragma unroll
        for (int t = 0; t < NT; t++) {
            if (t >= nt) break;
            float s = 0.0f;
#pragma unroll
            for (int i = 0; i < F::group; i++) s += w[i] * x[(size_t)t * ldx + i];
            acc[t] += s;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; t++)
        for (int o = 16; o > 0; o >>= 1) acc[t] += __shfl_xor_sync(0xffffffffu, acc[t], o);
    if (lane == 0)
        for (int t = 0; t < nt; t++) Y[(size_t)(t0 + t) * ldy + r] = acc[t];
}

template <class F, int NT>
static void matvec_launch_(cuda_dev *c, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    const unsigned passes = (unsigned)((T + NT - 1) / NT);
    if (passes > 65535) {
        fail_(c, "%s: matmul of %d rows at once (at most %d)", c->base.name, T, 65535 * NT);
        return;
    }
    const dim3 grid((unsigned)((W->rows + PG_CUDA_MV_WARPS - 1) / PG_CUDA_MV_WARPS), passes);
    matvec_kernel_<F, NT><<<grid, 32 * PG_CUDA_MV_WARPS, 0, c->stream>>>((const uint8_t *)W->data, W->row_bytes,
                                                                        W->rows, W->cols, T, X, ldx, Y, ldy);
    launched_(c, "matmul");
}

/* The smallest tile that holds T rows (decode is T = 1). */
template <class F>
static void matvec_(cuda_dev *c, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    if (T <= 1) matvec_launch_<F, 1>(c, W, T, X, ldx, Y, ldy);
    else if (T <= 2) matvec_launch_<F, 2>(c, W, T, X, ldx, Y, ldy);
    else if (T <= 4) matvec_launch_<F, 4>(c, W, T, X, ldx, Y, ldy);
    else matvec_launch_<F, PG_CUDA_MV_MAX_T>(c, W, T, X, ldx, Y, ldy);
}

__device__ static void to16_(__half *p, float v) { *p = __float2half_rn(v); }
__device__ static void to16_(__nv_bfloat16 *p, float v) { *p = __float2bfloat16_rn(v); }

/* One block per row: xh[t][:cols] = X[t][:cols] in 16 bits, for cuBLAS. */
template <class H> __global__ void to16_kernel_(int cols, const float *X, int ldx, H *xh) {
    const float *x = X + (size_t)blockIdx.x * ldx;
    H *y = xh + (size_t)blockIdx.x * cols;
    for (int i = threadIdx.x; i < cols; i += blockDim.x) to16_(&y[i], x[i]);
}

/* X as the 16-bit type of W for cuBLAS (which multiplies like types only):
 * a scratch buffer on the device, grown in stream order. NULL on failure. */
static const void *x_to16_(cuda_dev *c, pg_type t, int T, int cols, const float *X, int ldx) {
    const size_t bytes = (size_t)T * cols * 2;
    if (bytes > c->xh_bytes) {
        if (c->xh) check_(c, cudaFreeAsync(c->xh, c->stream), "matmul scratch");
        c->xh = NULL;
        c->xh_bytes = 0;
        cudaError_t r = cudaMallocAsync(&c->xh, bytes, c->stream);
        check_(c, r, "matmul scratch");
        if (r != cudaSuccess) return NULL;
        c->xh_bytes = bytes;
    }
    if (t == PG_TYPE_F16) to16_kernel_<<<T, PG_CUDA_THREADS, 0, c->stream>>>(cols, X, ldx, (__half *)c->xh);
    else to16_kernel_<<<T, PG_CUDA_THREADS, 0, c->stream>>>(cols, X, ldx, (__nv_bfloat16 *)c->xh);
    launched_(c, "matmul (activations to 16 bits)");
    return c->xh;
}

/* Y = X W^T with cuBLAS for float weights. In cuBLAS's column-major terms W
 * (row-major rows x cols) is a cols x rows matrix A, X is cols x T and Y is
 * rows x T: Y = A^T X, accumulated in float32. */
static void gemm_(cuda_dev *c, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    const size_t es = W->type == PG_TYPE_F32 ? 4 : 2;
    if (W->row_bytes % es) {
        fail_(c, "%s: matmul: rows of %zu bytes are not whole elements", c->base.name, W->row_bytes);
        return;
    }
    cudaDataType wt = CUDA_R_32F;
    const void *B = X;
    int ldb = ldx;
    if (W->type != PG_TYPE_F32) {
        wt = W->type == PG_TYPE_F16 ? CUDA_R_16F : CUDA_R_16BF;
        if (!(B = x_to16_(c, W->type, T, W->cols, X, ldx))) return;
        ldb = W->cols;
    }
    const float one = 1.0f, zero = 0.0f;
    const int lda = (int)(W->row_bytes / es);
    const cublasStatus_t s = cublasGemmEx(c->blas, CUBLAS_OP_T, CUBLAS_OP_N, W->rows, T, W->cols, &one, W->data, wt,
                                          lda, B, wt, ldb, &zero, Y, CUDA_R_32F, ldy, CUBLAS_COMPUTE_32F,
                                          CUBLAS_GEMM_DEFAULT);
    if (s != CUBLAS_STATUS_SUCCESS) fail_(c, "%s: matmul: cuBLAS: %s", c->base.name, cublasGetStatusString(s));
}

static void matmul_(pg_dev *d, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy) {
    cuda_dev *c = cd_(d);
    if (T <= 0 || W->rows <= 0 || !mat_ok_(c, W, "matmul")) return;
    const bool float_w = W->type == PG_TYPE_F32 || W->type == PG_TYPE_F16 || W->type == PG_TYPE_BF16;
    if (float_w && T >= PG_CUDA_GEMM_MIN_T) {
        gemm_(c, W, T, X, ldx, Y, ldy);
        return;
    }
    with_format_(W, [&](auto f) { matvec_<decltype(f)>(c, W, T, X, ldx, Y, ldy); });
}

/* ---- element-wise and row kernels ------------------------------------------------------------------------- */

/* One block per row; sum of squares in double, as pg_rmsnorm_ref. */
__global__ void rmsnorm_kernel_(int n, const float *x, const float *w, float eps, float *y) {
    const float *xr = x + (size_t)blockIdx.x * n;
    float *yr = y + (size_t)blockIdx.x * n;
    double ss = 0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) ss += (double)xr[i] * xr[i];
    ss = block_sum_(ss);
    const float scale = (float)(1.0 / sqrt(ss / n + eps));
    for (int i = threadIdx.x; i < n; i += blockDim.x) yr[i] = xr[i] * scale * w[i];
}

static void rmsnorm_(pg_dev *d, int rows, int n, const float *x, const float *w, float eps, float *y) {
    cuda_dev *c = cd_(d);
    if (rows <= 0) return;
    rmsnorm_kernel_<<<rows, PG_CUDA_THREADS, 0, c->stream>>>(n, x, w, eps, y);
    launched_(c, "rmsnorm");
}

__global__ void add_bias_kernel_(int n, float *x, const float *b) {
    float *xr = x + (size_t)blockIdx.x * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) xr[i] += b[i];
}

static void add_bias_(pg_dev *d, int T, int n, float *x, const float *b) {
    cuda_dev *c = cd_(d);
    if (T <= 0) return;
    add_bias_kernel_<<<T, PG_CUDA_THREADS, 0, c->stream>>>(n, x, b);
    launched_(c, "add_bias");
}

__global__ void add_kernel_(size_t n, float *y, const float *x) {
    GRID_STRIDE(i, n) y[i] += x[i];
}

static void add_(pg_dev *d, size_t n, float *y, const float *x) {
    cuda_dev *c = cd_(d);
    if (!n) return;
    add_kernel_<<<blocks_for_(n), PG_CUDA_THREADS, 0, c->stream>>>(n, y, x);
    launched_(c, "add");
}

__global__ void clamp_kernel_(size_t n, float *x, float lim) {
    GRID_STRIDE(i, n) x[i] = pg_cm_clamp(x[i], lim);
}

static void clamp_(pg_dev *d, size_t n, float *x, float lim) {
    cuda_dev *c = cd_(d);
    if (!n) return;
    clamp_kernel_<<<blocks_for_(n), PG_CUDA_THREADS, 0, c->stream>>>(n, x, lim);
    launched_(c, "clamp");
}

static void zero_(pg_dev *d, size_t n, float *x) {
    cuda_dev *c = cd_(d);
    if (n) check_(c, cudaMemsetAsync(x, 0, n * sizeof(float), c->stream), "zero");
}

/* One block per row t: the n_rot/2 angles of pos[t] into shared memory,
 * then every (head, pair). */
__global__ void rope_kernel_(float *x, int n_heads, int hd, int n_rot, const int *pos, const float *inv_freq,
                             float attn_factor, int neox) {
    extern __shared__ float cs[]; /* [n_rot / 2][cos, sin] */
    const int half = n_rot / 2, p = pos[blockIdx.x];
    for (int i = threadIdx.x; i < half; i += blockDim.x)
        pg_cm_rope_cs(p, inv_freq[i], attn_factor, &cs[2 * i], &cs[2 * i + 1]);
    __syncthreads();
    float *xt = x + (size_t)blockIdx.x * n_heads * hd;
    for (int k = threadIdx.x; k < n_heads * half; k += blockDim.x) {
        const int i = k % half;
        float *xh = xt + (size_t)(k / half) * hd;
        pg_cm_rope_pair(&xh[neox ? i : 2 * i], &xh[neox ? i + half : 2 * i + 1], cs[2 * i], cs[2 * i + 1]);
    }
}

static void rope_(pg_dev *d, int T, float *x, int n_heads, int hd, int n_rot, const int *pos, const float *inv_freq,
                  float attn_factor, int neox) {
    cuda_dev *c = cd_(d);
    if (T <= 0 || n_rot < 2) return;
    const size_t shared = (size_t)(n_rot / 2) * 2 * sizeof(float);
    rope_kernel_<<<T, PG_CUDA_THREADS, shared, c->stream>>>(x, n_heads, hd, n_rot, pos, inv_freq, attn_factor, neox);
    launched_(c, "rope");
}

__global__ void set_rows_kernel_(int n, const float *src, const int *pos, float *dst) {
    const float *s = src + (size_t)blockIdx.x * n;
    float *o = dst + (size_t)pos[blockIdx.x] * n;
    for (int i = threadIdx.x; i < n; i += blockDim.x) o[i] = s[i];
}

static void set_rows_(pg_dev *d, int T, int n, const float *src, const int *pos, float *dst) {
    cuda_dev *c = cd_(d);
    if (T <= 0) return;
    set_rows_kernel_<<<T, PG_CUDA_THREADS, 0, c->stream>>>(n, src, pos, dst);
    launched_(c, "set_rows");
}

__global__ void silu_mul_kernel_(size_t n, const float *g, const float *u, float *y) {
    GRID_STRIDE(i, n) y[i] = pg_cm_silu_mul(g[i], u[i]);
}

static void silu_mul_(pg_dev *d, size_t n, const float *g, const float *u, float *y) {
    cuda_dev *c = cd_(d);
    if (!n) return;
    silu_mul_kernel_<<<blocks_for_(n), PG_CUDA_THREADS, 0, c->stream>>>(n, g, u, y);
    launched_(c, "silu_mul");
}

__global__ void swiglu_oai_kernel_(size_t n, const float *g, const float *u, float alpha, float limit, float *y) {
    GRID_STRIDE(i, n) y[i] = pg_cm_swiglu_oai(g[i], u[i], alpha, limit);
}

static void swiglu_oai_(pg_dev *d, size_t n, const float *g, const float *u, float alpha, float limit, float *y) {
    cuda_dev *c = cd_(d);
    if (!n) return;
    swiglu_oai_kernel_<<<blocks_for_(n), PG_CUDA_THREADS, 0, c->stream>>>(n, g, u, alpha, limit, y);
    launched_(c, "swiglu_oai");
}

/* One block per row i: dst[dst_idx(i)][:] = src[src_idx(i)][:], where an
 * index array (NULL: identity) maps row numbers. */
__global__ void copy_rows_kernel_(int D, const float *src, const int *src_idx, const int *dst_idx, float *dst) {
    const int i = blockIdx.x;
    const float *s = src + (size_t)(src_idx ? src_idx[i] : i) * D;
    float *o = dst + (size_t)(dst_idx ? dst_idx[i] : i) * D;
    for (int k = threadIdx.x; k < D; k += blockDim.x) o[k] = s[k];
}

static void gather_rows_(pg_dev *d, int n, int D, const float *src, const int *idx, float *dst) {
    cuda_dev *c = cd_(d);
    if (n <= 0) return;
    copy_rows_kernel_<<<n, PG_CUDA_THREADS, 0, c->stream>>>(D, src, idx, NULL, dst);
    launched_(c, "gather_rows");
}

static void scatter_rows_(pg_dev *d, int n, int D, const float *src, const int *idx, float *dst) {
    cuda_dev *c = cd_(d);
    if (n <= 0) return;
    copy_rows_kernel_<<<n, PG_CUDA_THREADS, 0, c->stream>>>(D, src, NULL, idx, dst);
    launched_(c, "scatter_rows");
}

/* One block per token t; each element sums its K experts in slot order. */
__global__ void moe_combine_kernel_(int K, int D, const float *src, const float *w, float *acc) {
    const size_t t = blockIdx.x;
    for (int k = threadIdx.x; k < D; k += blockDim.x) {
        float s = 0.0f;
        for (int j = 0; j < K; j++) s += w[t * K + j] * src[(t * K + j) * D + k];
        acc[t * D + k] = s;
    }
}

static void moe_combine_(pg_dev *d, int T, int K, int D, const float *src, const float *w, float *acc) {
    cuda_dev *c = cd_(d);
    if (T <= 0) return;
    moe_combine_kernel_<<<T, PG_CUDA_THREADS, 0, c->stream>>>(K, D, src, w, acc);
    launched_(c, "moe_combine");
}

__global__ void gated_add_kernel_(int D, float *acc, const float *x, const float *z) {
    const size_t t = blockIdx.x;
    const float g = z ? pg_cm_sigmoid(z[t]) : 1.0f;
    for (int k = threadIdx.x; k < D; k += blockDim.x) acc[t * D + k] += g * x[t * D + k];
}

static void gated_add_(pg_dev *d, int T, int D, float *acc, const float *x, const float *z) {
    cuda_dev *c = cd_(d);
    if (T <= 0) return;
    gated_add_kernel_<<<T, PG_CUDA_THREADS, 0, c->stream>>>(D, acc, x, z);
    launched_(c, "gated_add");
}

/* ---- attention ----------------------------------------------------------------------------------- */

/* One block per (row t, head h), blockIdx.x = t * H + h. Each warp runs an
 * online softmax over its share of the positions first..pos[t] (position
 * j to warp (j - first) % warps): a running maximum m, the sum l of
 * exp(score - m) and the weighted sum o of the values, rescaled whenever m
 * grows. The warps' partial results are then merged, with the sink's logit
 * joining the denominator only. Shared memory: q, then o of each warp,
 * then m and l of each warp. */
__global__ void attention_kernel_(const float *q, const float *k, const float *v, int kv_stride, const int *pos,
                                  int window, int H, int group, int hd, const float *sinks, float scale, float *out) {
    extern __shared__ float sh[];
    float *qs = sh, *o = sh + hd, *wm = o + PG_CUDA_ATT_WARPS * hd, *wl = wm + PG_CUDA_ATT_WARPS;
    const int t = blockIdx.x / H, h = blockIdx.x % H, kvh = h / group;
    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const size_t row = (size_t)t * H * hd + (size_t)h * hd;
    for (int i = threadIdx.x; i < hd; i += blockDim.x) qs[i] = q[row + i];
    float *ow = o + warp * hd;
    for (int i = lane; i < hd; i += 32) ow[i] = 0.0f;
    __syncthreads();

    const int last = pos[t], first = window > 0 && last + 1 - window > 0 ? last + 1 - window : 0;
    float m = -INFINITY, l = 0.0f;
    for (int j = first + warp; j <= last; j += PG_CUDA_ATT_WARPS) {
        const float *kj = k + (size_t)j * kv_stride + (size_t)kvh * hd;
        const float *vj = v + (size_t)j * kv_stride + (size_t)kvh * hd;
        float s = 0.0f;
        for (int i = lane; i < hd; i += 32) s += qs[i] * kj[i];
        for (int off = 16; off > 0; off >>= 1) s += __shfl_xor_sync(0xffffffffu, s, off);
        s *= scale;
        const float m_new = fmaxf(m, s), corr = expf(m - m_new), p = expf(s - m_new);
        l = l * corr + p;
        for (int i = lane; i < hd; i += 32) ow[i] = ow[i] * corr + p * vj[i];
        m = m_new;
    }
    if (lane == 0) {
        wm[warp] = m;
        wl[warp] = l;
    }
    __syncthreads();

    /* merge: a warp that saw no position has m = -inf and weighs 0 */
    float M = sinks ? sinks[h] : -INFINITY;
    for (int w = 0; w < PG_CUDA_ATT_WARPS; w++) M = fmaxf(M, wm[w]);
    float L = sinks ? expf(sinks[h] - M) : 0.0f;
    for (int w = 0; w < PG_CUDA_ATT_WARPS; w++) L += wl[w] * expf(wm[w] - M);
    for (int i = threadIdx.x; i < hd; i += blockDim.x) {
        float acc = 0.0f;
        for (int w = 0; w < PG_CUDA_ATT_WARPS; w++) acc += o[w * hd + i] * expf(wm[w] - M);
        out[row + i] = acc / L;
    }
}

static void attention_(pg_dev *d, int T, const float *q, const float *k, const float *v, int kv_stride, const int *pos,
                       int window, int H, int KV, int hd, const float *sinks, float *out) {
    cuda_dev *c = cd_(d);
    PG_ASSERT(KV > 0 && H % KV == 0 && hd > 0);
    if (T <= 0) return;
    const size_t shared = ((size_t)(1 + PG_CUDA_ATT_WARPS) * hd + 2 * PG_CUDA_ATT_WARPS) * sizeof(float);
    if (shared > 48 * 1024) {
        fail_(c, "%s: attention with heads of %d (at most %d)", c->base.name, hd,
              (int)((48 * 1024 / sizeof(float) - 2 * PG_CUDA_ATT_WARPS) / (1 + PG_CUDA_ATT_WARPS)));
        return;
    }
    const float scale = 1.0f / sqrtf((float)hd);
    attention_kernel_<<<(unsigned)T * H, 32 * PG_CUDA_ATT_WARPS, shared, c->stream>>>(
        q, k, v, kv_stride, pos, window, H, H / KV, hd, sinks, scale, out);
    launched_(c, "attention");
}

/* ---- lifetime ----------------------------------------------------------------------------------- */

static void destroy_(pg_dev *d) {
    cuda_dev *c = cd_(d);
    if (c->xh) cudaFreeAsync(c->xh, c->stream);
    if (c->stream) cudaStreamSynchronize(c->stream);
    for (int i = 0; i < PG_CUDA_RING_SEGS; i++)
        if (c->ring_done[i]) cudaEventDestroy(c->ring_done[i]);
    if (c->ring) cudaFreeHost(c->ring);
    if (c->fault) cudaFreeHost(c->fault);
    if (c->blas) cublasDestroy(c->blas);
    if (c->stream) cudaStreamDestroy(c->stream);
    free(c);
}

/* Filled field by field: C++17 has no designated initializers. */
static pg_dev_ops cuda_ops_make_(void) {
    pg_dev_ops o;
    memset(&o, 0, sizeof o);
    o.name = "cuda";
    o.destroy = destroy_;
    o.alloc = alloc_;
    o.free = free_;
    o.host_alloc = host_alloc_;
    o.host_free = host_free_;
    o.upload = upload_;
    o.download = download_;
    o.upload_async = upload_async_;
    o.sync = sync_;
    o.slots_new = slots_new_;
    o.slots_free = slots_free_;
    o.fence_slot = fence_slot_;
    o.fill_slot = fill_slot_;
    o.embed = embed_;
    o.rmsnorm = rmsnorm_;
    o.matmul = matmul_;
    o.add_bias = add_bias_;
    o.add = add_;
    o.clamp = clamp_;
    o.zero = zero_;
    o.rope = rope_;
    o.set_rows = set_rows_;
    o.attention = attention_;
    o.silu_mul = silu_mul_;
    o.swiglu_oai = swiglu_oai_;
    o.gather_rows = gather_rows_;
    o.scatter_rows = scatter_rows_;
    o.moe_combine = moe_combine_;
    o.gated_add = gated_add_;
    return o;
}
static const pg_dev_ops cuda_ops = cuda_ops_make_();

static int open_fail_(cuda_dev *c, pg_error *e, const char *what, const char *why) {
    return pg_fail(e, "%s: cannot create its %s: %s", c->base.name, what, why);
}

/* The stream, cuBLAS, the staging ring and the fault word. */
static int open_(cuda_dev *c, pg_error *e) {
    cudaError_t r;
    cublasStatus_t s;
    if ((r = cudaStreamCreateWithFlags(&c->stream, cudaStreamNonBlocking)) != cudaSuccess)
        return open_fail_(c, e, "compute stream", cudaGetErrorString(r));
    if ((s = cublasCreate(&c->blas)) != CUBLAS_STATUS_SUCCESS ||
        (s = cublasSetStream(c->blas, c->stream)) != CUBLAS_STATUS_SUCCESS)
        return open_fail_(c, e, "cuBLAS handle", cublasGetStatusString(s));
    const size_t ring_bytes = (size_t)PG_CUDA_RING_SEGS * PG_CUDA_RING_SEG;
    if ((r = cudaHostAlloc((void **)&c->ring, ring_bytes, cudaHostAllocDefault)) != cudaSuccess)
        return open_fail_(c, e, "upload staging ring", cudaGetErrorString(r));
    for (int i = 0; i < PG_CUDA_RING_SEGS; i++)
        if ((r = cudaEventCreateWithFlags(&c->ring_done[i], cudaEventDisableTiming)) != cudaSuccess)
            return open_fail_(c, e, "upload events", cudaGetErrorString(r));
    if ((r = cudaHostAlloc((void **)&c->fault, sizeof(int), cudaHostAllocMapped)) != cudaSuccess ||
        (r = cudaHostGetDevicePointer((void **)&c->fault_dev, c->fault, 0)) != cudaSuccess)
        return open_fail_(c, e, "fault word", cudaGetErrorString(r));
    *c->fault = 0;
    return 0;
}

extern "C" pg_dev *pg_dev_cuda_new(int ordinal, pg_error *e) {
    int n = 0;
    cudaError_t r = cudaGetDeviceCount(&n);
    if (r != cudaSuccess || n == 0) {
        pg_fail(e, "no CUDA device: %s", r != cudaSuccess ? cudaGetErrorString(r) : "cudaGetDeviceCount found none");
        return NULL;
    }
    if (ordinal < 0 || ordinal >= n) {
        pg_fail(e, "no CUDA device %d (%d present)", ordinal, n);
        return NULL;
    }
    cudaDeviceProp prop;
    if ((r = cudaSetDevice(ordinal)) != cudaSuccess || (r = cudaGetDeviceProperties(&prop, ordinal)) != cudaSuccess) {
        pg_fail(e, "CUDA device %d: %s", ordinal, cudaGetErrorString(r));
        return NULL;
    }
    cuda_dev *c = (cuda_dev *)xcalloc(1, sizeof *c);
    c->base.ops = &cuda_ops;
    snprintf(c->base.name, sizeof c->base.name, "%.63s", prop.name); /* the name field holds 63 chars */
    c->base.mem_total = prop.totalGlobalMem;
    c->ordinal = ordinal;
    if (open_(c, e)) {
        destroy_(&c->base);
        return NULL;
    }
    return &c->base;
}
