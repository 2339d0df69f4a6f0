/* rmsnorm.hip: RMSNorm (spec sec. 2), one block per row, statistics in fp32; also fused with
 * the residual add before it. */
#include "core/device.h"
#include "layers/hip_layers.h"

#define FEW_ROWS 64  /* up to this many rows (a decode step's) take the held kernel */
#define HELD 16      /* values of a row a thread of the held kernel keeps             */
#define HELD_THREADS_MAX 1024

/* Block r: y[r, i] = w[i] x[r, i] / sqrt(mean_i x[r, i]^2 + eps) (y may alias x: each
 * element is read and written by the same thread); with a residual res, first
 * x[r, i] += res[r, i] (written back: the residual stream). Loops are unrolled so that a
 * thread's loads are in flight together. For many rows (prefills). */
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    rmsnorm_kernel(float *x, const float *res, const float *w, float *y, int64_t n, float eps)
{
    __shared__ float red[HYLO_HIP_THREADS];
    float *xr = x + (int64_t)blockIdx.x * n;
    float *yr = y + (int64_t)blockIdx.x * n;
    float sum_sq = 0.0f;
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
        float v = xr[i];
        if (res) {
            v += res[(int64_t)blockIdx.x * n + i];
            xr[i] = v;
        }
        sum_sq += v * v;
    }
    const float inv_rms = 1.0f / sqrtf(hylo_block_sum(sum_sq, red) / (float)n + eps);
#pragma unroll 4
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) yr[i] = w[i] * (xr[i] * inv_rms);
}

/* The same for a few rows of n <= HELD blockDim: thread j keeps x[r, j + k blockDim] and
 * w[j + k blockDim] (k < HELD) in registers, all loaded before the reduction, so a decode
 * step's norm waits for memory once. */
__global__ void __launch_bounds__(HELD_THREADS_MAX)
    rmsnorm_held(float *x, const float *res, const float *w, float *y, int64_t n, float eps)
{
    __shared__ float red[HELD_THREADS_MAX];
    float *xr = x + (int64_t)blockIdx.x * n;
    float v[HELD], wv[HELD];
    float sum_sq = 0.0f;
#pragma unroll
    for (int k = 0; k < HELD; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
        v[k] = i < n ? xr[i] + (res ? res[(int64_t)blockIdx.x * n + i] : 0.0f) : 0.0f;
        wv[k] = i < n ? w[i] : 0.0f;
        sum_sq += v[k] * v[k];
    }
    const float inv_rms = 1.0f / sqrtf(hylo_block_sum(sum_sq, red) / (float)n + eps);
    float *yr = y + (int64_t)blockIdx.x * n;
#pragma unroll
    for (int k = 0; k < HELD; k++) {
        const int64_t i = threadIdx.x + (int64_t)k * blockDim.x;
        if (i >= n) break;
        if (res) xr[i] = v[k];
        yr[i] = wv[k] * (v[k] * inv_rms);
    }
}

/* y = rmsnorm(x (+= res when res is not NULL)) over rows of n. */
static void rmsnorm_launch(hylo_hip_ctx *ctx, float *x, const float *res, const float *w,
                           float *y, int64_t rows, int64_t n, double eps)
{
    if (rows <= 0 || !hylo_hip_ok(ctx)) return;
    if (rows > INT32_MAX) {
        hylo_hip_fail(ctx, HYLO_ERR_RANGE, "hip backend: rmsnorm of %lld rows", (long long)rows);
        return;
    }
    const hipStream_t stream = hylo_hip_stream(ctx);
    if (rows <= FEW_ROWS && n <= (int64_t)HELD * HELD_THREADS_MAX) {
        unsigned threads = 64; /* the fewest (a power of two) that hold the row */
        while ((int64_t)threads * HELD < n) threads *= 2;
        rmsnorm_held<<<(unsigned)rows, threads, 0, stream>>>(x, res, w, y, n, (float)eps);
    } else {
        rmsnorm_kernel<<<(unsigned)rows, HYLO_HIP_THREADS, 0, stream>>>(x, res, w, y, n,
                                                                       (float)eps);
    }
    hylo_hip_launched(ctx, "rmsnorm");
}

void hylo_hip_rmsnorm_rows(hylo_hip_ctx *ctx, const float *x, const float *w, float *y,
                           int64_t rows, int64_t n, double eps)
{
    /* without a residual the kernel only reads x */
    rmsnorm_launch(ctx, (float *)x, NULL, w, y, rows, n, eps);
}

/* x [rows, n], w [n] (host pointer of an uploaded weight), y [rows, n]. */
void hylo_hip_rmsnorm(void *vctx, const float *x, const float *w, float *y, int64_t rows,
                      int64_t n, double eps)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const float *w_dev = hylo_hip_find(ctx, w, "a norm weight");
    if (w_dev) hylo_hip_rmsnorm_rows(ctx, x, w_dev, y, rows, n, eps);
}

/* x [rows, n] += y ; xn = RMSNorm(x) w (w a host pointer of an uploaded weight), one kernel. */
void hylo_hip_add_rmsnorm(void *vctx, float *x, const float *y, const float *w, float *xn,
                          int64_t rows, int64_t n, double eps)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const float *w_dev = hylo_hip_find(ctx, w, "a norm weight");
    if (w_dev) rmsnorm_launch(ctx, x, y, w_dev, xn, rows, n, eps);
}
