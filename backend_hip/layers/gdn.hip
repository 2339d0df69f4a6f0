/* gdn.hip: the Gated DeltaNet mixer (spec sec. 5), as ref/layers/gdn.c: projections, short
 * convs, q/k normalization, gates, the rule of delta_rule.hip, gated output norm, o_proj. */
#include <math.h>

#include "core/device.h"
#include "layers/hip_layers.h"

/* Block r: x_r <- scale x_r / sqrt(sum_i x_r,i^2 + eps), rows of n. */
__global__ void l2norm_kernel(float *x, int64_t n, float eps, float scale)
{
    __shared__ float red[HYLO_HIP_THREADS];
    float *xr = x + (int64_t)blockIdx.x * n;
    float sum_sq = 0.0f;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) sum_sq += xr[i] * xr[i];
    const float factor = scale / sqrtf(hylo_block_sum(sum_sq, red) + eps);
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) xr[i] *= factor;
}

/* a, b, g, beta [T, Hv]:  g = -exp(A_log) softplus(a + dt_bias) ;  beta = sigmoid(b) */
__global__ void gates_kernel(const float *a, const float *b, const float *A_log,
                             const float *dt_bias, float *g, float *beta, int64_t n, int64_t Hv)
{
    for (int64_t i = hylo_first(); i < n; i += hylo_stride()) {
        const int64_t h = i % Hv;
        g[i] = -expf(A_log[h]) * hylo_softplus(a[i] + dt_bias[h]);
        beta[i] = 1.0f / (1.0f + expf(-b[i]));
    }
}

/* o [n] <- o silu(gate) */
__global__ void output_gate_kernel(float *o, const float *gate, int64_t n)
{
    for (int64_t i = hylo_first(); i < n; i += hylo_stride()) o[i] *= hylo_silu(gate[i]);
}

/* out = silu(conv(raw)) [T, C] carrying the state (no bias). */
static void conv(hylo_hip_ctx *ctx, const float *raw, const float *conv_w, float *state,
                 float *out, int64_t T, int64_t C, int64_t K, const char *what)
{
    const float *w_dev = hylo_hip_find(ctx, conv_w, what);
    if (w_dev) hylo_hip_conv_silu(ctx, raw, C, w_dev, NULL, state, out, T, C, K);
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
    conv(ctx, raw_q, w->q_conv, state->q_conv, q, T, nk, K, "gdn q_conv");
    conv(ctx, raw_k, w->k_conv, state->k_conv, k, T, nk, K, "gdn k_conv");
    conv(ctx, raw_v, w->v_conv, state->v_conv, v, T, nv, K, "gdn v_conv");
    if (hylo_hip_ok(ctx)) {
        l2norm_kernel<<<(unsigned)(T * Hk), HYLO_HIP_THREADS, 0, stream>>>(
            q, dk, 1e-6f, (float)(1.0 / sqrt((double)dk)));
        l2norm_kernel<<<(unsigned)(T * Hk), HYLO_HIP_THREADS, 0, stream>>>(k, dk, 1e-6f, 1.0f);
        hylo_hip_launched(ctx, "gdn l2norm");
    }
    if (hylo_hip_ok(ctx)) {
        gates_kernel<<<hylo_hip_blocks(T * Hv), HYLO_HIP_THREADS, 0, stream>>>(
            a, b, A_log, dt_bias, g, beta, T * Hv, Hv);
        hylo_hip_launched(ctx, "gdn gates");
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
    hylo_hip_rmsnorm_rows(ctx, o, o_norm, o, T * Hv, dv, d->eps);
    if (hylo_hip_ok(ctx)) {
        output_gate_kernel<<<hylo_hip_blocks(T * nv), HYLO_HIP_THREADS, 0, stream>>>(o, gate,
                                                                                     T * nv);
        hylo_hip_launched(ctx, "gdn output gate");
    }
    hylo_hip_trace(ctx, tr, "gdn.gated", o, 3, v_shape);
    hylo_hip_linear(ctx, o, w->o_proj, NULL, y, T, nv, D);
    return hylo_hip_status(ctx, err);
}
