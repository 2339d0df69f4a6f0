/* device.h: what the HIP sources share (HIP C++ only): checked launches, grid sizes, bf16
 * conversions and block reductions. Kernels use plain loops over blockDim / gridDim,
 * shared-memory reductions, and shuffles only within groups no wider than `warpSize`, so
 * nothing depends on the warp size (64 on AMD, 32 on NVIDIA). */
#ifndef HYLO_HIP_DEVICE_H
#define HYLO_HIP_DEVICE_H

#include "hip_compat.h"
#include "core/hip.h"

/* Threads per block of the elementwise and row kernels (a power of two). */
#define HYLO_HIP_THREADS 256

/* true when `e` is hipSuccess; otherwise the failure "what: <HIP's message>" is recorded. */
bool hylo_hip_check(hylo_hip_ctx *ctx, hipError_t e, const char *what);

/* Checks the launch just made (configuration errors; faults surface at the next sync). */
static inline bool hylo_hip_launched(hylo_hip_ctx *ctx, const char *kernel)
{
    return hylo_hip_check(ctx, hipGetLastError(), kernel);
}

static inline hipStream_t hylo_hip_stream(const hylo_hip_ctx *ctx)
{
    return (hipStream_t)ctx->stream;
}

/* Blocks of HYLO_HIP_THREADS for n items; grid-stride loops cover what a capped grid misses. */
static inline unsigned hylo_hip_blocks(int64_t n)
{
    const int64_t b = (n + HYLO_HIP_THREADS - 1) / HYLO_HIP_THREADS;
    return b < 1 ? 1u : b > (1 << 20) ? (1u << 20) : (unsigned)b;
}

/* The first index and the stride of a grid-stride loop. */
__device__ inline int64_t hylo_first(void)
{
    return (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
}

__device__ inline int64_t hylo_stride(void)
{
    return (int64_t)gridDim.x * blockDim.x;
}

/* A position-dependent value (hip.h): read at the step's position when recorded. */
__device__ inline int64_t hylo_pos(hylo_hip_pos p)
{
    return p.at ? *p.at + p.offset : p.offset;
}

__device__ inline float hylo_bf16_widen(uint16_t h)
{
    return __uint_as_float((unsigned)h << 16);
}

/* Round to nearest even, NaN kept (as hylo_f32_to_bf16). */
__device__ inline uint16_t hylo_bf16_round(float f)
{
    const unsigned u = __float_as_uint(f);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u);
    return (uint16_t)((u + 0x7fffu + ((u >> 16) & 1u)) >> 16);
}

/* One value of fp32 or bf16 memory (the caches' two types), widened; and stored, rounded. */
__device__ inline float hylo_load(const float *p, int64_t i)
{
    return p[i];
}

__device__ inline float hylo_load(const uint16_t *p, int64_t i)
{
    return hylo_bf16_widen(p[i]);
}

__device__ inline void hylo_store(float *p, int64_t i, float v)
{
    p[i] = v;
}

__device__ inline void hylo_store(uint16_t *p, int64_t i, float v)
{
    p[i] = hylo_bf16_round(v);
}

/* v of the thread whose lane index is this one's XOR mask, within aligned groups of width
 * lanes (a power of two no wider than a warp; every lane of the warp calls). */
__device__ inline float hylo_shfl_xor(float v, int mask, int width)
{
#if defined(HYLO_HIP_NVIDIA)
    return __shfl_xor_sync(0xffffffffu, v, mask, width);
#else
    return __shfl_xor(v, mask, width);
#endif
}

/* The sum of v over each aligned group of `lanes` threads (a power of two dividing blockDim),
 * returned to the group's first thread: shuffles within a warp, then (groups wider than a
 * warp) the warps' sums through red [blockDim.x] in shared memory. Every thread of the block
 * calls; red may be reused only after a __syncthreads. */
__device__ inline float hylo_group_sum(float v, int lanes, float *red)
{
    const int width = lanes < warpSize ? lanes : warpSize;
    for (int s = width / 2; s > 0; s >>= 1) v += hylo_shfl_xor(v, s, width);
    if (lanes <= warpSize) return v;
    red[threadIdx.x] = v;
    __syncthreads();
    if (threadIdx.x % lanes == 0)
        for (int k = warpSize; k < lanes; k += warpSize) v += red[threadIdx.x + k];
    return v;
}

/* The sum (or, with Max, the max) of every thread's v over the block (blockDim.x a power of
 * two), returned to all; red [blockDim.x] in shared memory, free again on return. */
template <bool Max>
__device__ inline float hylo_block_reduce(float v, float *red)
{
    red[threadIdx.x] = v;
    __syncthreads();
    for (unsigned s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) {
            const float o = red[threadIdx.x + s];
            red[threadIdx.x] = Max ? fmaxf(red[threadIdx.x], o) : red[threadIdx.x] + o;
        }
        __syncthreads();
    }
    const float total = red[0];
    __syncthreads();
    return total;
}

__device__ inline float hylo_block_sum(float v, float *red)
{
    return hylo_block_reduce<false>(v, red);
}

__device__ inline float hylo_block_max(float v, float *red)
{
    return hylo_block_reduce<true>(v, red);
}

__device__ inline float hylo_silu(float x)
{
    return x / (1.0f + expf(-x));
}

/* log(1 + e^x) without overflow. */
__device__ inline float hylo_softplus(float x)
{
    return fmaxf(x, 0.0f) + log1pf(expf(-fabsf(x)));
}

#endif
