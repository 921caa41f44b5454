/* emu.cpp - runs dev_cuda.cu's kernels on the CPU (make cuda-emu): the
 * CUDA runtime and cuBLAS calls it makes, each synchronous, and kernel
 * launches in which every CUDA thread is a fiber (ucontext) of one OS
 * thread. The threads of a block run in a random order and switch only at
 * __syncthreads or a warp shuffle, both real barriers, so a missing barrier
 * or a wrong reduction shows as a wrong result. cublasGemmEx is its
 * definition, in double. What it cannot show: anything about concurrency
 * (streams, events, copies overlapping kernels), timing, or the GPU's own
 * expf/cos/sin. tests/cuemu/convert.py rewrites `kernel<<<...>>>(args)`
 * into emu_launch calls. */
#include "cublas_v2.h"
#include <cstdio>
extern "C" {
#include "util.h"
}
#include <ucontext.h>
dim3 threadIdx, blockIdx, blockDim, gridDim;
cudaError_t emu_last_error = cudaSuccess;
alignas(16) unsigned char emu_dyn_shared[48 * 1024];
emu_bar emu_block_bar, emu_warp_bar[32];
double emu_warp_slot[32][32];
long emu_gemms;

enum { STACK = 256 * 1024 };
static ucontext_t sched_, fiber_[1024];
static char *stacks_;
static bool done_[1024];
static unsigned cur_;
static std::function<void()> *body_;

void emu_yield() { swapcontext(&fiber_[cur_], &sched_); }
void emu_bar_wait(emu_bar *b) {
    const unsigned g = b->gen;
    if (++b->count == b->expected) {
        b->count = 0;
        b->gen++;
        return;
    }
    while (b->gen == g) emu_yield();
}
static void emu_bar_drop(emu_bar *b) {
    if (--b->expected > 0 && b->count == b->expected) {
        b->count = 0;
        b->gen++;
    }
}
static void fiber_main_() {
    (*body_)();
    emu_bar_drop(&emu_warp_bar[threadIdx.x / 32]);
    emu_bar_drop(&emu_block_bar);
    done_[cur_] = true;
}

void emu_launch(dim3 grid, dim3 block, size_t shared, cudaStream_t, std::function<void()> body) {
    if (grid.x == 0 || grid.y == 0 || grid.y > 65535 || block.x == 0 || block.x > 1024 || shared > 48 * 1024) {
        emu_last_error = cudaErrorInvalidConfiguration;
        return;
    }
    if (!stacks_) stacks_ = (char *)malloc((size_t)1024 * STACK);
    gridDim = grid;
    blockDim = block;
    body_ = &body;
    for (unsigned by = 0; by < grid.y; by++)
        for (unsigned bx = 0; bx < grid.x; bx++) {
            memset(emu_dyn_shared, 0xff, sizeof emu_dyn_shared); /* garbage, as a GPU's shared memory */
            blockIdx = dim3(bx, by);
            emu_block_bar = emu_bar{(int)block.x, 0, 0};
            for (unsigned w = 0; w < (block.x + 31) / 32; w++)
                emu_warp_bar[w] = emu_bar{(int)std::min<unsigned>(32, block.x - 32 * w), 0, 0};
            for (unsigned t = 0; t < block.x; t++) {
                getcontext(&fiber_[t]);
                fiber_[t].uc_stack.ss_sp = stacks_ + (size_t)t * STACK;
                fiber_[t].uc_stack.ss_size = STACK;
                fiber_[t].uc_link = &sched_;
                makecontext(&fiber_[t], fiber_main_, 0);
                done_[t] = false;
            }
            /* threads run in a random order, so that a missing barrier shows */
            static unsigned order[1024];
            static uint64_t rng = 12345;
            for (unsigned t = 0; t < block.x; t++) order[t] = t;
            for (unsigned t = block.x - 1; t > 0; t--) {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                std::swap(order[t], order[(rng >> 33) % (t + 1)]);
            }
            for (unsigned left = block.x; left > 0;)
                for (unsigned k = 0; k < block.x; k++) {
                    const unsigned t = order[k];
                    if (done_[t]) continue;
                    cur_ = t;
                    threadIdx = dim3(t);
                    swapcontext(&sched_, &fiber_[t]);
                    left -= done_[t];
                }
        }
}

cudaError_t cudaGetLastError() { cudaError_t r = emu_last_error; emu_last_error = cudaSuccess; return r; }
const char *cudaGetErrorString(cudaError_t r) { return r == cudaSuccess ? "no error" : r == cudaErrorInvalidConfiguration ? "invalid configuration argument" : "invalid value"; }
cudaError_t cudaGetDeviceCount(int *n) { *n = 1; return cudaSuccess; }
cudaError_t cudaSetDevice(int) { return cudaSuccess; }
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int) { snprintf(p->name, sizeof p->name, "emulated GPU"); p->totalGlobalMem = 1ull << 30; return cudaSuccess; }
cudaError_t cudaMalloc(void **p, size_t n) { if (posix_memalign(p, 256, n ? n : 1)) return cudaErrorInvalidValue; return cudaSuccess; }
cudaError_t cudaFree(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned) { *p = malloc(n); return cudaSuccess; }
cudaError_t cudaFreeHost(void *p) { free(p); return cudaSuccess; }
cudaError_t cudaHostGetDevicePointer(void **d, void *h, unsigned) { *d = h; return cudaSuccess; }
cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t) { return cudaMalloc(p, n); }
cudaError_t cudaFreeAsync(void *p, cudaStream_t) { free(p); return cudaSuccess; }
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t) { memcpy(d, s, n); return cudaSuccess; }
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t) { memset(d, v, n); return cudaSuccess; }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned) { *s = (cudaStream_t)malloc(1); return cudaSuccess; }
cudaError_t cudaStreamDestroy(cudaStream_t s) { free(s); return cudaSuccess; }
cudaError_t cudaStreamSynchronize(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned) { return cudaSuccess; }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned) { *e = (cudaEvent_t)malloc(1); return cudaSuccess; }
cudaError_t cudaEventDestroy(cudaEvent_t e) { free(e); return cudaSuccess; }
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t) { return cudaSuccess; }
cudaError_t cudaEventSynchronize(cudaEvent_t) { return cudaSuccess; }

cublasStatus_t cublasCreate(cublasHandle_t *h) { *h = (cublasHandle_t)malloc(1); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasDestroy(cublasHandle_t h) { free(h); return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t cublasSetStream(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
const char *cublasGetStatusString(cublasStatus_t s) { return s ? "CUBLAS_STATUS_INVALID_VALUE" : "CUBLAS_STATUS_SUCCESS"; }
static double elem_(const void *p, cudaDataType t, size_t i) {
    if (t == CUDA_R_32F) return ((const float *)p)[i];
    uint16_t h = ((const uint16_t *)p)[i];
    return t == CUDA_R_16F ? pg_f16_to_f32(h) : pg_bf16_to_f32(h);
}
/* cuBLAS's definition: C = alpha op(A) op(B) + beta C, column-major, C m x n. */
cublasStatus_t cublasGemmEx(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType At, int lda, const void *B, cudaDataType Bt,
                            int ldb, const void *beta, void *C, cudaDataType Ct, int ldc, cublasComputeType_t,
                            cublasGemmAlgo_t) {
    emu_gemms++;
    if (At != Bt || Ct != CUDA_R_32F) return CUBLAS_STATUS_INVALID_VALUE;
    if (lda < (ta == CUBLAS_OP_N ? m : k) || ldb < (tb == CUBLAS_OP_N ? k : n) || ldc < m) return CUBLAS_STATUS_INVALID_VALUE;
    const float a = *(const float *)alpha, b = *(const float *)beta;
    for (int j = 0; j < n; j++)
        for (int i = 0; i < m; i++) {
            double s = 0;
            for (int l = 0; l < k; l++) {
                double av = ta == CUBLAS_OP_N ? elem_(A, At, i + (size_t)l * lda) : elem_(A, At, l + (size_t)i * lda);
                double bv = tb == CUBLAS_OP_N ? elem_(B, Bt, l + (size_t)j * ldb) : elem_(B, Bt, j + (size_t)l * ldb);
                s += av * bv;
            }
            float *c = (float *)C + i + (size_t)j * ldc;
            *c = (float)(a * s + (b != 0 ? b * *c : 0));
        }
    return CUBLAS_STATUS_SUCCESS;
}
