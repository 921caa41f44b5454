/* dev.h - a compute device for the forward pass (devfwd.h): its memory, one
 * in-order compute stream, copies into expert slots, and the kernels the
 * device pass launches.
 *
 * Implementations:
 *   "standin"  dev_standin.c: device memory is host memory and the compute
 *              stream is a thread of its own that runs the queued kernels
 *              in order with the CPU kernels, later than the host queued
 *              them (optionally slowed down), so that the host-side
 *              scheduling (events, slot fences, what waits for what) is
 *              exercised and tested on a machine without a GPU;
 *   "cuda"     src/cuda/dev_cuda.cu (make CUDA=1): a CUDA GPU.
 *
 * Conventions. Device pointers are opaque to the host: never dereference
 * them. Every kernel call only queues work on the compute stream and returns
 * at once; kernels run in the order queued. Arguments passed by value (the
 * pg_mat, sizes, scalars) are copied at the call; device arrays (tokens,
 * pos, idx, w, z, inv_freq, sinks) are read when the kernel runs, so the
 * host fills them with upload_async, ordered with the kernels. Host memory
 * passed to upload_async is copied before the call returns, so the caller
 * may reuse it. upload and download wait for everything queued before
 * them; a kernel's failure is reported by the next sync, upload or
 * download. Free device memory only when no queued kernel uses it (sync
 * first). A matrix (pg_mat) on the device is the model file's own layout
 * (GGUF block formats, rows of row_bytes) with `data` a device address.
 *
 * What each kernel computes is what the CPU pass (forward.c) computes with
 * the function named beside it; the stand-in calls exactly those, a GPU
 * sums in other orders (tests/test_dev.c states the tolerances).
 *
 * Expert slots (the fast tier, cache.h) live in device memory. Their
 * copies run on the I/O threads' own copy streams: fill_slot copies host
 * bytes into slot `slot` once every kernel queued before the slot's last
 * fence has finished reading it (fence_slot, queued after the kernels that
 * read an expert and before the host releases it), and returns when the
 * bytes are in place. Without the fence a refill could overwrite an expert
 * that a queued kernel has not read yet.
 */
#ifndef PG_DEV_H
#define PG_DEV_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../kernels/kernels.h"
#include "../util.h"

typedef struct pg_dev pg_dev;
typedef struct pg_dev_slots pg_dev_slots;

typedef struct {
    const char *name;
    void (*destroy)(pg_dev *d);

    /* ---- memory ---- */
    void *(*alloc)(pg_dev *d, size_t bytes);                 /* device memory; NULL if there is none left */
    void (*free)(pg_dev *d, void *p);                        /* NULL-safe */
    void *(*host_alloc)(pg_dev *d, size_t bytes);            /* host memory for fast copies (pinned); NULL on failure */
    void (*host_free)(pg_dev *d, void *p);
    /* Synchronous copies (setup, and results): upload returns when the
     * bytes are on the device; download first waits for the compute stream. */
    int (*upload)(pg_dev *d, void *dst, const void *src, size_t n, pg_error *e);
    int (*download)(pg_dev *d, void *dst, const void *src, size_t n, pg_error *e);
    /* Queued on the compute stream (ordered with the kernels); src is copied
     * before the call returns. */
    void (*upload_async)(pg_dev *d, void *dst, const void *src, size_t n);
    /* Waits until the compute stream is idle; reports a kernel failure. */
    int (*sync)(pg_dev *d, pg_error *e);

    /* ---- expert slots ---- */
    /* A set of n_slots slot fences and n_io copy streams, one per expert
     * cache (a device may serve several). NULL with e set on failure. */
    pg_dev_slots *(*slots_new)(pg_dev *d, int n_slots, int n_io, pg_error *e);
    /* After the last fill_slot has returned; waits for fences still queued. */
    void (*slots_free)(pg_dev *d, pg_dev_slots *s);
    /* Queues slot `slot`'s fence after the kernels queued so far. */
    void (*fence_slot)(pg_dev *d, pg_dev_slots *s, int slot);
    /* On I/O thread `io`: waits for the slot's last fence (the one queued
     * before the call; a slot never fenced is filled at once), copies n
     * host bytes (host_alloc memory is fastest) to dst in the slot, and
     * returns 0 when they have arrived. Never called for a slot whose
     * fence_slot may run at the same time (the cache owns the slot then). */
    int (*fill_slot)(pg_dev *d, pg_dev_slots *s, int io, int slot, void *dst, const void *src, size_t n, pg_error *e);

    /* ---- kernels (queued; rows are contiguous unless a stride is given) ---- */
    /* x[t] = row tokens[t] of W, dequantised (embedding lookup). */
    void (*embed)(pg_dev *d, const pg_mat *W, int T, const int32_t *tokens, float *x);
    /* y[r] = x[r] / rms(x[r]) * w for `rows` rows of n; y may be x. */
    void (*rmsnorm)(pg_dev *d, int rows, int n, const float *x, const float *w, float eps, float *y);
    /* Y[t][r] = W[r] . X[t], t < T, r < W->rows, row strides ldx, ldy floats. */
    void (*matmul)(pg_dev *d, const pg_mat *W, int T, const float *X, int ldx, float *Y, int ldy);
    /* x[t][i] += b[i] for T rows of n. */
    void (*add_bias)(pg_dev *d, int T, int n, float *x, const float *b);
    /* y[i] += x[i]. */
    void (*add)(pg_dev *d, size_t n, float *y, const float *x);
    /* x[i] = clamp(x[i], -c, c). */
    void (*clamp)(pg_dev *d, size_t n, float *x, float c);
    /* x[i] = 0. */
    void (*zero)(pg_dev *d, size_t n, float *x);
    /* RoPE of T rows of n_heads heads of hd floats (row stride n_heads*hd)
     * at positions pos[t]: pair i rotates by pos * inv_freq[i], cos and sin
     * scaled by attn_factor (pg_rope_cache_freqs), adjacent pairs or neox
     * halves (pg_rope_apply) over the first n_rot dims. */
    void (*rope)(pg_dev *d, int T, float *x, int n_heads, int hd, int n_rot, const int *pos, const float *inv_freq,
                 float attn_factor, int neox);
    /* dst[pos[t]][:] = src[t][:], rows of n floats (KV cache writes). */
    void (*set_rows)(pg_dev *d, int T, int n, const float *src, const int *pos, float *dst);
    /* Causal attention (pg_attention_ext) of T query rows: row t sees
     * cache positions first..pos[t], first = pos[t] + 1 - window when
     * window > 0 and that is positive, else 0. q, out: [T][H*hd]; k, v:
     * cache rows at stride kv_stride floats; sinks: [H] or NULL. */
    void (*attention)(pg_dev *d, int T, const float *q, const float *k, const float *v, int kv_stride,
                      const int *pos, int window, int H, int KV, int hd, const float *sinks, float *out);
    /* y = silu(g) * u (pgk.silu_mul); y may be g. */
    void (*silu_mul)(pg_dev *d, size_t n, const float *g, const float *u, float *y);
    /* gpt-oss's clamped SwiGLU (pgk.swiglu_oai); y may be g. */
    void (*swiglu_oai)(pg_dev *d, size_t n, const float *g, const float *u, float alpha, float limit, float *y);
    /* dst[i][:] = src[idx[i]][:], n rows of D floats. */
    void (*gather_rows)(pg_dev *d, int n, int D, const float *src, const int *idx, float *dst);
    /* dst[idx[i]][:] = src[i][:], n rows of D floats. */
    void (*scatter_rows)(pg_dev *d, int n, int D, const float *src, const int *idx, float *dst);
    /* acc[t][:] = sum over j < K, in order (pgk.axpy from zero), of w[t*K+j] * src[t*K+j][:]
     * (the MoE combination, independent of the order experts ran in). */
    void (*moe_combine)(pg_dev *d, int T, int K, int D, const float *src, const float *w, float *acc);
    /* acc[t][:] += sigmoid(z[t]) * x[t][:] (z NULL: gate 1): shared experts. */
    void (*gated_add)(pg_dev *d, int T, int D, float *acc, const float *x, const float *z);
} pg_dev_ops;

struct pg_dev {
    const pg_dev_ops *ops;
    char name[64];          /* what it is, for messages ("NVIDIA H100 80GB HBM3", "CPU stand-in") */
    size_t mem_total;       /* device memory in bytes (0: unknown) */
};

/* "cpu" (no device: forward.c), "standin", "cuda" */
typedef enum { PG_BACKEND_CPU = 0, PG_BACKEND_STANDIN, PG_BACKEND_CUDA } pg_backend;
const char *pg_backend_name(pg_backend b);
int pg_backend_parse(const char *s, pg_backend *out, pg_error *e);

/* The stand-in: delay_us (>= 0) is added to every kernel it runs, so the
 * compute stream lags behind the host as a GPU's does (tests). */
pg_dev *pg_dev_standin_new(int delay_us, pg_error *e);
/* A CUDA device (index `ordinal`); fails with a clear message when pregate
 * was built without CUDA (make CUDA=1) or no device is present. */
pg_dev *pg_dev_cuda_new(int ordinal, pg_error *e);
/* Opens the backend b (not PG_BACKEND_CPU). */
pg_dev *pg_dev_open(pg_backend b, pg_error *e);
void pg_dev_free(pg_dev *d); /* NULL-safe */

#endif
