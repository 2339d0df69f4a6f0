/* rmsnorm.hip: RMSNorm (spec sec. 2), one block per row, statistics in fp32; also fused with
 * the residual add before it. */
#include "core/device.h"
#include "layers/hip_layers.h"

#define FEW_ROWS 64      /* up to this many rows of at least ROW_THREADS_FEW values, */
#define ROW_THREADS_FEW 1024 /* blocks of this many threads                          */

/* Block r: y[r, i] = w[i] x[r, i] / sqrt(mean_i x[r, i]^2 + eps) (y may alias x: each
 * element is read and written by the same thread); with a residual res, first
 * x[r, i] += res[r, i] (written back: the residual stream). The loops are unrolled so that a
 * thread's loads are in flight together; a few rows (a decode step) get wide blocks, so that
 * each thread has few loads to wait for. */
__global__ void __launch_bounds__(ROW_THREADS_FEW)
    rmsnorm_kernel(float *x, const float *res, const float *w, float *y, int64_t n, float eps)
{
    __shared__ float red[ROW_THREADS_FEW];
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

/* y = rmsnorm(x (+= res when res is not NULL)) over rows of n. */
static void rmsnorm_launch(hylo_hip_ctx *ctx, float *x, const float *res, const float *w,
                           float *y, int64_t rows, int64_t n, double eps)
{
    if (rows <= 0 || !hylo_hip_ok(ctx)) return;
    if (rows > INT32_MAX) {
        hylo_hip_fail(ctx, HYLO_ERR_RANGE, "hip backend: rmsnorm of %lld rows", (long long)rows);
        return;
    }
    const unsigned threads =
        rows <= FEW_ROWS && n >= ROW_THREADS_FEW ? ROW_THREADS_FEW : HYLO_HIP_THREADS;
    rmsnorm_kernel<<<(unsigned)rows, threads, 0, hylo_hip_stream(ctx)>>>(x, res, w, y, n,
                                                                        (float)eps);
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
