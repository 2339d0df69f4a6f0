/* mlp.hip: the SwiGLU MLP of Llama / Qwen (spec sec. 2): two GEMMs, the gate, one GEMM; a
 * decode step without biases streams gate and up through one gated matrix-vector kernel. */
#include "core/device.h"
#include "layers/hip_layers.h"

/* g [n] <- silu(g) u */
__global__ void silu_mul_kernel(float *g, const float *u, int64_t n)
{
    for (int64_t i = hylo_first(); i < n; i += hylo_stride()) g[i] = hylo_silu(g[i]) * u[i];
}

/* x [T, D], Wg, Wu [F, D], Wd [D, F], biases [F] / [D] or NULL (host pointers), y [T, D]:
 *   h = silu(x Wg^T + bg) * (x Wu^T + bu) ;  y = h Wd^T + bd                                */
hylo_status hylo_hip_swiglu_mlp(void *vctx, const float *x, const float *Wg, const float *bg,
                                const float *Wu, const float *bu, const float *Wd,
                                const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    float *g = (float *)hylo_hip_workspace(ctx, HYLO_HIP_LAYER, (size_t)(2 * T * F) * sizeof(float));
    if (!g) return hylo_hip_status(ctx, err);
    float *u = g + T * F;
    if (T == 1 && !bg && !bu) {
        /* a decode step: one kernel streams both matrices and applies the gate */
        hylo_hip_gated_gemv(ctx, x, Wg, Wu, g, D, F);
        hylo_hip_linear(ctx, g, Wd, bd, y, T, F, D);
        return hylo_hip_status(ctx, err);
    }
    hylo_hip_linear(ctx, x, Wg, bg, g, T, D, F);
    hylo_hip_linear(ctx, x, Wu, bu, u, T, D, F);
    if (hylo_hip_ok(ctx)) {
        silu_mul_kernel<<<hylo_hip_blocks(T * F), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
            g, u, T * F);
        hylo_hip_launched(ctx, "silu mul");
    }
    hylo_hip_linear(ctx, g, Wd, bd, y, T, F, D);
    return hylo_hip_status(ctx, err);
}
