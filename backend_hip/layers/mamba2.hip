/* mamba2.hip: the Mamba2 mixer (spec sec. 4), as ref/layers/mamba2.c: in_proj, the causal conv
 * over the xBC columns, time steps, the scan of ssd.hip, the gated group RMSNorm, out_proj. */
#include <math.h>

#include "core/device.h"
#include "layers/hip_layers.h"

/* dt [T, H] = softplus(proj[t, offset + h] + dt_bias[h]) (proj rows `stride` apart);
 * A [H] = -exp(A_log) (rounded from double, as the reference). */
__global__ void time_steps_kernel(const float *proj, int64_t stride, int64_t offset,
                                  const float *dt_bias, const float *A_log, float *dt, float *A,
                                  int64_t T, int64_t H)
{
    for (int64_t i = hylo_first(); i < T * H; i += hylo_stride()) {
        const int64_t t = i / H, h = i % H;
        dt[i] = hylo_softplus(proj[t * stride + offset + h] + dt_bias[h]);
        if (i < H) A[i] = (float)-exp((double)A_log[i]);
    }
}

/* Block (t, group) of gs = n / groups channels, z rows z_stride apart:
 *   g_i = y_i silu(z_i) ;  out_i = w_i g_i / sqrt(mean_group g^2 + eps)                      */
__global__ void gated_norm_kernel(const float *y, const float *z, int64_t z_stride,
                                  const float *w, float *out, int64_t n, int64_t groups,
                                  float eps)
{
    __shared__ float red[HYLO_HIP_THREADS];
    const int64_t gs = n / groups, t = blockIdx.x / groups, first = (blockIdx.x % groups) * gs;
    const float *yg = y + t * n + first, *zg = z + t * z_stride + first;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < gs; i += blockDim.x) {
        const float gi = yg[i] * hylo_silu(zg[i]);
        sum_sq += gi * gi;
    }
    const float inv_rms = 1.0f / sqrtf(hylo_block_sum(sum_sq, red) / (float)gs + eps);
    for (int64_t i = threadIdx.x; i < gs; i += blockDim.x)
        out[t * n + first + i] = w[first + i] * (yg[i] * hylo_silu(zg[i])) * inv_rms;
}

/* x [T, D], y [T, D] (device), weights host pointers, state device. With d_inner = H P:
 *   proj = x in_proj^T [T, d_inner + conv_dim + H] = [z | xBC | dt]
 *   xBC = silu(conv(xBC) + conv_b) ;  dt = softplus(dt + dt_bias) ;  A = -exp(A_log)
 *   s = scan(x, dt, A, B, C, D) ;  y = (norm * GroupRMS(s * silu(z))) out_proj^T
 * Trace: mamba.xBC [T, conv_dim], mamba.dt [T, H], mamba.y [T, H, P], mamba.gated
 * [T, d_inner], mamba.ssm_state [H, P, N], mamba.conv_state [conv_dim, d_conv - 1]. */
hylo_status hylo_hip_mamba2_forward(void *vctx, const hylo_mamba2_dims *d,
                                    const hylo_mamba2_weights *w, hylo_mamba2_state *state,
                                    const float *x, int64_t T, float *y, hylo_scan scan,
                                    const hylo_tracer *tr, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_status st = hylo_mamba2_check_dims(d, err);
    if (st != HYLO_OK || T <= 0) return st;
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state, d_inner = H * P;
    const int64_t conv_dim = hylo_mamba2_conv_dim(d), rows = hylo_mamba2_in_proj_rows(d);
    const float *conv_w = hylo_hip_find(ctx, w->conv_w, "mamba conv1d.weight");
    const float *conv_b = w->conv_b ? hylo_hip_find(ctx, w->conv_b, "mamba conv1d.bias") : NULL;
    const float *dt_bias = hylo_hip_find(ctx, w->dt_bias, "mamba dt_bias");
    const float *A_log = hylo_hip_find(ctx, w->A_log, "mamba A_log");
    const float *D = hylo_hip_find(ctx, w->D, "mamba D");
    const float *norm = hylo_hip_find(ctx, w->norm, "mamba norm.weight");
    /* one LAYER block: proj [T, rows], xbc [T, conv_dim], dt [T, H], A [H], s and normed
     * [T, d_inner] */
    float *proj = (float *)hylo_hip_workspace(
        ctx, HYLO_HIP_LAYER,
        (size_t)(T * (rows + conv_dim + H + 2 * d_inner) + H) * sizeof(float));
    if (!conv_w || (w->conv_b && !conv_b) || !dt_bias || !A_log || !D || !norm || !proj)
        return hylo_hip_status(ctx, err);
    float *xbc = proj + T * rows, *dt = xbc + T * conv_dim, *A = dt + T * H, *s = A + H;
    float *normed = s + T * d_inner;
    const hipStream_t stream = hylo_hip_stream(ctx);

    hylo_hip_linear(ctx, x, w->in_proj, NULL, proj, T, d->hidden, rows);
    hylo_hip_conv_silu(ctx, proj + d_inner, rows, conv_w, conv_b, state->conv, xbc, T, conv_dim,
                       d->d_conv);
    if (hylo_hip_ok(ctx)) {
        time_steps_kernel<<<hylo_hip_blocks(T * H), HYLO_HIP_THREADS, 0, stream>>>(
            proj, rows, d_inner + conv_dim, dt_bias, A_log, dt, A, T, H);
        hylo_hip_launched(ctx, "mamba time steps");
    }
    hylo_hip_ssd_scan(ctx, d, xbc, conv_dim, dt, A, D, state->ssm, s, T, scan);
    if (hylo_hip_ok(ctx)) {
        gated_norm_kernel<<<(unsigned)(T * d->norm_groups), HYLO_HIP_THREADS, 0, stream>>>(
            s, proj, rows, norm, normed, d_inner, d->norm_groups, (float)d->eps);
        hylo_hip_launched(ctx, "mamba gated norm");
    }
    hylo_hip_linear(ctx, normed, w->out_proj, NULL, y, T, d_inner, d->hidden);
    const int64_t xbc_shape[] = {T, conv_dim}, dt_shape[] = {T, H}, y_shape[] = {T, H, P};
    const int64_t gated_shape[] = {T, d_inner}, ssm_shape[] = {H, P, N};
    const int64_t conv_shape[] = {conv_dim, d->d_conv - 1};
    hylo_hip_trace(ctx, tr, "mamba.xBC", xbc, 2, xbc_shape);
    hylo_hip_trace(ctx, tr, "mamba.dt", dt, 2, dt_shape);
    hylo_hip_trace(ctx, tr, "mamba.y", s, 3, y_shape);
    hylo_hip_trace(ctx, tr, "mamba.gated", normed, 2, gated_shape);
    hylo_hip_trace(ctx, tr, "mamba.ssm_state", state->ssm, 3, ssm_shape);
    hylo_hip_trace(ctx, tr, "mamba.conv_state", state->conv, 2, conv_shape);
    return hylo_hip_status(ctx, err);
}
