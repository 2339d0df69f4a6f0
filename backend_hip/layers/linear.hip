/* linear.hip: y = x W^T + b through the GEMM of core/gemm.hip: fp32 W and x, or in a bf16
 * context the bf16 copy of W against x rounded to bf16 (both fp32-accumulated). */
#include "core/device.h"
#include "layers/hip_layers.h"

/* y [T, n] += b [n] */
__global__ void add_bias_kernel(float *y, const float *b, int64_t T, int64_t n)
{
    for (int64_t i = hylo_first(); i < T * n; i += hylo_stride()) y[i] += b[i % n];
}

/* x [T, in], W [out, in] (host pointer of an uploaded weight), b [out] or NULL, y [T, out]. */
void hylo_hip_linear(void *vctx, const float *x, const float *W, const float *b, float *y,
                     int64_t T, int64_t in, int64_t out)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const uint16_t *W16 = hylo_hip_find_bf16(ctx, W);
    const float *W32 = W16 ? NULL : hylo_hip_find(ctx, W, "a projection matrix");
    const float *b_dev = b ? hylo_hip_find(ctx, b, "a bias") : NULL;
    if ((!W16 && !W32) || (b && !b_dev) || T <= 0) return;
    if (W16) {
        uint16_t *x16 = (uint16_t *)hylo_hip_workspace(ctx, HYLO_HIP_GEMM,
                                                       (size_t)(T * in) * sizeof(uint16_t));
        if (!x16) return;
        hylo_hip_to_bf16(ctx, x, x16, T * in);
        hylo_hip_gemm(ctx, HYLO_BF16, false, true, T, out, in, 1.0f, x16, in, W16, in, 0.0f, y, out);
    } else {
        hylo_hip_gemm(ctx, HYLO_F32, false, true, T, out, in, 1.0f, x, in, W32, in, 0.0f, y, out);
    }
    if (!b_dev || !hylo_hip_ok(ctx)) return;
    add_bias_kernel<<<hylo_hip_blocks(T * out), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        y, b_dev, T, out);
    hylo_hip_launched(ctx, "bias");
}
