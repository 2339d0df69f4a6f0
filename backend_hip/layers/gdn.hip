/* gdn.hip: the Gated DeltaNet mixer (spec sec. 5), as ref/layers/gdn.c: projections, short
 * convs, q/k normalization, gates, the rule of delta_rule.hip, gated output norm, o_proj. A
 * decode step takes six launches: the projections (one GEMV), the three convs, the q/k norms
 * with the gates, the recurrence, the gated norm, o_proj. */
#include <math.h>

#include "core/device.h"
#include "layers/hip_layers.h"

/* q, k [T, Hk, dk] (q's rows then k's: rows r < 2 T Hk of qk [2 T Hk, dk]), a, b, g, beta
 * [T, Hv], A_log, dt_bias [Hv]. Block r < 2 T Hk normalizes row r:
 *   x_r <- s_r x_r / sqrt(sum_i x_r,i^2 + 1e-6) ,  s_r = q_scale (q, dk^-0.5) or 1 (k)
 * and the blocks after them compute the gates, item i of T Hv (h = i % Hv):
 *   g_i = -exp(A_log_h) softplus(a_i + dt_bias_h) ;  beta_i = sigmoid(b_i)                   */
__global__ void qk_norm_gates_kernel(float *qk, float q_scale, const float *a, const float *b,
                                     const float *A_log, const float *dt_bias, float *g,
                                     float *beta, int64_t T, int64_t Hk, int64_t Hv, int64_t dk)
{
    __shared__ float red[HYLO_HIP_THREADS];
    const int64_t rows = 2 * T * Hk;
    if (blockIdx.x < rows) {
        float *xr = qk + (int64_t)blockIdx.x * dk;
        const float scale = blockIdx.x < T * Hk ? q_scale : 1.0f;
        float sum_sq = 0.0f;
        for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) sum_sq += xr[i] * xr[i];
        const float factor = scale / sqrtf(hylo_block_sum(sum_sq, red) + 1e-6f);
        for (int64_t i = threadIdx.x; i < dk; i += blockDim.x) xr[i] *= factor;
        return;
    }
    const int64_t stride = (int64_t)(gridDim.x - rows) * blockDim.x;
    for (int64_t i = (blockIdx.x - rows) * blockDim.x + threadIdx.x; i < T * Hv; i += stride) {
        const int64_t h = i % Hv;
        g[i] = -expf(A_log[h]) * hylo_softplus(a[i] + dt_bias[h]);
        beta[i] = 1.0f / (1.0f + expf(-b[i]));
    }
}

/* o, gate [rows, n], w [n]; block r:
 *   o_r,i <- (w_i o_r,i / sqrt(mean_i o_r,i^2 + eps)) silu(gate_r,i)                         */
__global__ void gdn_gated_norm_kernel(float *o, const float *gate, const float *w, int64_t n,
                                      float eps)
{
    __shared__ float red[HYLO_HIP_THREADS];
    float *orow = o + (int64_t)blockIdx.x * n;
    const float *gr = gate + (int64_t)blockIdx.x * n;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum_sq += orow[i] * orow[i];
    const float inv_rms = 1.0f / sqrtf(hylo_block_sum(sum_sq, red) / (float)n + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x)
        orow[i] = w[i] * (orow[i] * inv_rms) * hylo_silu(gr[i]);
}

/* x [T, D], y [T, D] (device), weights host pointers, state device:
 *   q, k, v = silu(conv(x q_proj^T)), silu(conv(x k_proj^T)), silu(conv(x v_proj^T))
 *   q^ = q / sqrt(sum q^2 + 1e-6) dk^-0.5 ;  k^ = k / sqrt(sum k^2 + 1e-6)
 *   g = -exp(A_log) softplus(x a_proj^T + dt_bias) ;  beta = sigmoid(x b_proj^T)
 *   o = rule(q^, k^, v, g, beta; S) ;  y = (RMSNorm_dv(o) o_norm silu(x g_proj^T)) o_proj^T
 * Trace: gdn.q, gdn.k [T, Hk, dk], gdn.v [T, Hv, dv], gdn.g, gdn.beta [T, Hv], gdn.o
 * [T, Hv, dv], gdn.state [Hv, dk, dv], gdn.gated [T, Hv, dv]. */
hylo_status hylo_hip_gdn_forward(void *vctx, const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, const hylo_tracer *tr, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_status st = hylo_ref_gated_delta_rule_check(d, scan, err);
    if (st != HYLO_OK || T <= 0) return st;
    const int64_t D = d->hidden, Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k;
    const int64_t dv = d->head_v, K = d->d_conv, nk = Hk * dk, nv = Hv * dv;
    const float *A_log = hylo_hip_find(ctx, w->A_log, "gdn A_log");
    const float *dt_bias = hylo_hip_find(ctx, w->dt_bias, "gdn dt_bias");
    const float *o_norm = hylo_hip_find(ctx, w->o_norm, "gdn o_norm.weight");
    /* one LAYER block: the projections raw_q, raw_k [T, nk], raw_v [T, nv] (before their
     * convs), q, k [T, nk], v, gate, o [T, nv], a, b, g, beta [T, Hv] */
    float *raw_q = (float *)hylo_hip_workspace(
        ctx, HYLO_HIP_LAYER, (size_t)(T * (4 * nk + 4 * nv + 4 * Hv)) * sizeof(float));
    if (!A_log || !dt_bias || !o_norm || !raw_q) return hylo_hip_status(ctx, err);
    float *raw_k = raw_q + T * nk, *raw_v = raw_k + T * nk, *q = raw_v + T * nv, *k = q + T * nk;
    float *v = k + T * nk, *gate = v + T * nv, *o = gate + T * nv, *a = o + T * nv;
    float *b = a + T * Hv, *g = b + T * Hv, *beta = g + T * Hv;
    const hipStream_t stream = hylo_hip_stream(ctx);

    /* the six projections of x (one launch in a decode step) */
    const float *const W[] = {w->q_proj, w->k_proj, w->v_proj, w->a_proj, w->b_proj, w->g_proj};
    const float *const none[6] = {NULL};
    float *const proj[] = {raw_q, raw_k, raw_v, a, b, gate};
    const int64_t widths[] = {nk, nk, nv, Hv, Hv, nv};
    hylo_hip_linears(ctx, x, T, D, 6, W, none, proj, widths);
    const float *conv_w[] = {hylo_hip_find(ctx, w->q_conv, "gdn q_conv"),
                             hylo_hip_find(ctx, w->k_conv, "gdn k_conv"),
                             hylo_hip_find(ctx, w->v_conv, "gdn v_conv")};
    float *const conv_state[] = {state->q_conv, state->k_conv, state->v_conv};
    float *const conv_out[] = {q, k, v};
    if (T == 1) /* raw_q, raw_k, raw_v and q, k, v are contiguous: one launch */
        hylo_hip_conv_silu_step(ctx, 3, raw_q, conv_w, NULL, conv_state, q, widths, K);
    else
        for (int i = 0; i < 3; i++)
            hylo_hip_conv_silu(ctx, proj[i], widths[i], conv_w[i], NULL, conv_state[i],
                               conv_out[i], T, widths[i], K);
    if (hylo_hip_ok(ctx)) {
        qk_norm_gates_kernel<<<(unsigned)(2 * T * Hk) + hylo_hip_blocks(T * Hv),
                               HYLO_HIP_THREADS, 0, stream>>>(
            q, (float)(1.0 / sqrt((double)dk)), a, b, A_log, dt_bias, g, beta, T, Hk, Hv, dk);
        hylo_hip_launched(ctx, "gdn q/k norms and gates");
    }
    hylo_hip_gated_delta_rule(ctx, d, q, k, v, g, beta, state->S, o, T, scan);
    const int64_t qk_shape[] = {T, Hk, dk}, v_shape[] = {T, Hv, dv}, gate_shape[] = {T, Hv};
    const int64_t S_shape[] = {Hv, dk, dv};
    hylo_hip_trace(ctx, tr, "gdn.q", q, 3, qk_shape);
    hylo_hip_trace(ctx, tr, "gdn.k", k, 3, qk_shape);
    hylo_hip_trace(ctx, tr, "gdn.v", v, 3, v_shape);
    hylo_hip_trace(ctx, tr, "gdn.g", g, 2, gate_shape);
    hylo_hip_trace(ctx, tr, "gdn.beta", beta, 2, gate_shape);
    hylo_hip_trace(ctx, tr, "gdn.o", o, 3, v_shape);
    hylo_hip_trace(ctx, tr, "gdn.state", state->S, 3, S_shape);
    if (hylo_hip_ok(ctx)) {
        gdn_gated_norm_kernel<<<(unsigned)(T * Hv), HYLO_HIP_THREADS, 0, stream>>>(
            o, gate, o_norm, dv, (float)d->eps);
        hylo_hip_launched(ctx, "gdn gated norm");
    }
    hylo_hip_trace(ctx, tr, "gdn.gated", o, 3, v_shape);
    hylo_hip_linear(ctx, o, w->o_proj, NULL, y, T, nv, D);
    return hylo_hip_status(ctx, err);
}
