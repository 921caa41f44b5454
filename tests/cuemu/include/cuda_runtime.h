/* Host emulation of the CUDA runtime subset dev_cuda.cu uses (emu.cpp):
 * every call is synchronous (streams and events do nothing), a kernel launch
 * runs each block in turn with one fiber per CUDA thread, in a random order,
 * and __syncthreads and warp shuffles are real barriers. For checking the
 * kernels' logic on a machine without a GPU (make cuda-emu); not part of
 * pregate. */
#pragma once
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __shared__ static

struct alignas(16) uint4 { unsigned x, y, z, w; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned x_ = 1, unsigned y_ = 1, unsigned z_ = 1) : x(x_), y(y_), z(z_) {}
};
typedef enum { cudaSuccess = 0, cudaErrorInvalidConfiguration = 9, cudaErrorInvalidValue = 1 } cudaError_t;
typedef struct emu_stream *cudaStream_t;
typedef struct emu_event *cudaEvent_t;
struct cudaDeviceProp { char name[256]; size_t totalGlobalMem; };
enum { cudaStreamNonBlocking = 1, cudaEventDisableTiming = 2, cudaHostAllocDefault = 0, cudaHostAllocPortable = 1,
       cudaHostAllocMapped = 2 };
enum cudaMemcpyKind { cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost };

extern dim3 threadIdx, blockIdx, blockDim, gridDim;
extern cudaError_t emu_last_error;
extern unsigned char emu_dyn_shared[];

/* Cooperative barriers: the threads of a block are fibers of one OS thread
 * that run in turn until they wait at a barrier or finish. */
struct emu_bar { int expected, count; unsigned gen; };
void emu_yield();
void emu_bar_wait(emu_bar *b);
extern emu_bar emu_block_bar, emu_warp_bar[32];
extern double emu_warp_slot[32][32];

static inline void __syncthreads() { emu_bar_wait(&emu_block_bar); }
template <class V> static inline V __shfl_xor_sync(unsigned, V v, int o) {
    const int w = threadIdx.x / 32, lane = threadIdx.x % 32;
    memcpy(&emu_warp_slot[w][lane], &v, sizeof v);
    emu_bar_wait(&emu_warp_bar[w]);
    V r;
    memcpy(&r, &emu_warp_slot[w][lane ^ o], sizeof r);
    emu_bar_wait(&emu_warp_bar[w]);
    return r;
}
void emu_launch(dim3 grid, dim3 block, size_t shared, cudaStream_t, std::function<void()> body);

static inline float __uint_as_float(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }

cudaError_t cudaGetLastError();
const char *cudaGetErrorString(cudaError_t);
cudaError_t cudaGetDeviceCount(int *n);
cudaError_t cudaSetDevice(int);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int);
cudaError_t cudaMalloc(void **p, size_t n);
cudaError_t cudaFree(void *p);
cudaError_t cudaHostAlloc(void **p, size_t n, unsigned);
cudaError_t cudaFreeHost(void *p);
cudaError_t cudaHostGetDevicePointer(void **d, void *h, unsigned);
cudaError_t cudaMallocAsync(void **p, size_t n, cudaStream_t);
cudaError_t cudaFreeAsync(void *p, cudaStream_t);
cudaError_t cudaMemcpyAsync(void *d, const void *s, size_t n, cudaMemcpyKind, cudaStream_t);
cudaError_t cudaMemsetAsync(void *d, int v, size_t n, cudaStream_t);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned);
cudaError_t cudaStreamDestroy(cudaStream_t);
cudaError_t cudaStreamSynchronize(cudaStream_t);
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned);
cudaError_t cudaEventDestroy(cudaEvent_t);
cudaError_t cudaEventRecord(cudaEvent_t, cudaStream_t);
cudaError_t cudaEventSynchronize(cudaEvent_t);
