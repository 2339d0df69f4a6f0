/* gdn.c: the Gated DeltaNet mixer for the CPU backend: the steps of ref/layers/gdn.c with the
 * backend's projections, convs and delta rule (delta_rule.c), and vectorized norms and gate. */
#include <math.h>

#include "cpu_layers.h"

/* The arena of one call (LAYER level): raw [T, max(nk, nv)], q, k [T, nk], v, gate, o [T, nv],
 * a, b, g, beta [T, Hv], and copies of the three conv states. */
typedef struct {
    float *raw, *q, *k, *v, *gate, *o, *a, *b, *g, *beta, *q_conv, *k_conv, *v_conv;
} gdn_buffers;

static int64_t arena_floats(const hylo_gdn_dims *d, int64_t T, gdn_buffers *b, float *base)
{
    const int64_t nk = d->k_heads * d->head_k, nv = d->v_heads * d->head_v, K1 = d->d_conv - 1;
    const int64_t sizes[13] = {T * (nk > nv ? nk : nv), T * nk, T * nk, T * nv, T * nv, T * nv,
                               T * d->v_heads, T * d->v_heads, T * d->v_heads, T * d->v_heads,
                               nk * K1, nk * K1, nv * K1};
    float **slots[13] = {&b->raw, &b->q, &b->k, &b->v, &b->gate, &b->o, &b->a,
                         &b->b,   &b->g, &b->beta, &b->q_conv, &b->k_conv, &b->v_conv};
    int64_t total = 0;
    for (int i = 0; i < 13; i++) {
        if (base) *slots[i] = base + total;
        total += hylo_cpu_round16(sizes[i]);
    }
    return total;
}

hylo_cpu_need hylo_cpu_gdn_need(const hylo_gdn_dims *d, int64_t T, hylo_scan scan)
{
    gdn_buffers b;
    hylo_cpu_need need = {{arena_floats(d, T, &b, NULL), 0}};
    const int64_t nk = d->k_heads * d->head_k, nv = d->v_heads * d->head_v;
    const int64_t widest = d->hidden > nv ? d->hidden : nv;
    const hylo_cpu_need parts[3] = {
        hylo_cpu_linear_need(T, widest),
        hylo_cpu_conv_need(nk > nv ? nk : nv, d->d_conv),
        hylo_cpu_gated_delta_rule_need(d, T, scan),
    };
    for (int i = 0; i < 3; i++) hylo_cpu_need_max(&need, &parts[i]);
    return need;
}

/* x_r <- scale x_r / sqrt(sum_i x_r,i^2 + eps), rows in parallel. x [rows, n]. */
static void l2norm(float *x, int64_t rows, int64_t n, double eps, double scale)
{
#pragma omp parallel for schedule(static) if (rows * n >= 65536)
    for (int64_t r = 0; r < rows; r++)
        hylo_cpu_scale(x + r * n,
                       (float)(scale / sqrt((double)hylo_cpu_sum_squares(x + r * n, n) + eps)), n);
}

/* out = silu(conv(x W^T)), the conv carrying `state` (a copy of the caller's). */
static hylo_status project_conv(void *ctx, const float *x, const float *W, const float *conv_w,
                                const float *conv_state, float *state_copy, float *raw,
                                float *out, int64_t T, int64_t D, int64_t C, int64_t K,
                                hylo_error *err)
{
    memcpy(state_copy, conv_state, (size_t)(C * (K - 1)) * sizeof *state_copy);
    hylo_cpu_linear(ctx, x, W, NULL, raw, T, D, C);
    return hylo_cpu_causal_conv1d_silu(ctx, raw, conv_w, NULL, state_copy, out, T, C, K, err);
}

/* g = -exp(A_log) softplus(a + dt_bias) ;  beta = sigmoid(b)      (in double, as the reference) */
static void gates(const float *a, const float *b, const float *A_log, const float *dt_bias,
                  float *g, float *beta, int64_t T, int64_t Hv)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hv; h++) {
            const int64_t i = t * Hv + h;
            const double v = (double)a[i] + (double)dt_bias[h];
            g[i] = (float)(-exp((double)A_log[h]) * (fmax(v, 0.0) + log1p(exp(-fabs(v)))));
            beta[i] = (float)(1.0 / (1.0 + exp(-(double)b[i])));
        }
}

/* x [T, D], y [T, D]:
 *   q, k, v = silu(conv(x q_proj^T)), silu(conv(x k_proj^T)), silu(conv(x v_proj^T))
 *   q^ = q / sqrt(sum q^2 + 1e-6) dk^-0.5 ;  k^ = k / sqrt(sum k^2 + 1e-6)
 *   g = -exp(A_log) softplus(x a_proj^T + dt_bias) ;  beta = sigmoid(x b_proj^T)
 *   o = gated delta rule ;  y = (RMSNorm_dv(o) o_norm silu(x g_proj^T)) o_proj^T
 * On failure the state is left as it was. */
hylo_status hylo_cpu_gdn_forward(void *ctx, const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, const hylo_tracer *tr, hylo_error *err)
{
    if (T < 0 || d->hidden < 1 || d->d_conv < 1 || !(d->eps >= 0.0))
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "gdn: T %lld, hidden %lld, d_conv %lld, eps %g: expected T >= 0, "
                              "positive sizes and eps >= 0",
                              (long long)T, (long long)d->hidden, (long long)d->d_conv, d->eps);
    hylo_status st = hylo_ref_gated_delta_rule_check(d, scan, err);
    if (st != HYLO_OK || T == 0) return st;
    const int64_t D = d->hidden, Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k,
                  dv = d->head_v, K = d->d_conv;
    gdn_buffers b;
    float *arena = hylo_cpu_workspace(ctx, HYLO_CPU_LAYER, arena_floats(d, T, &b, NULL), err);
    if (!arena) return HYLO_ERR_NOMEM;
    arena_floats(d, T, &b, arena);

    st = project_conv(ctx, x, w->q_proj, w->q_conv, state->q_conv, b.q_conv, b.raw, b.q, T, D,
                      Hk * dk, K, err);
    if (st == HYLO_OK)
        st = project_conv(ctx, x, w->k_proj, w->k_conv, state->k_conv, b.k_conv, b.raw, b.k, T,
                          D, Hk * dk, K, err);
    if (st == HYLO_OK)
        st = project_conv(ctx, x, w->v_proj, w->v_conv, state->v_conv, b.v_conv, b.raw, b.v, T,
                          D, Hv * dv, K, err);
    if (st != HYLO_OK) return st;
    l2norm(b.q, T * Hk, dk, 1e-6, 1.0 / sqrt((double)dk));
    l2norm(b.k, T * Hk, dk, 1e-6, 1.0);
    hylo_cpu_linear(ctx, x, w->a_proj, NULL, b.a, T, D, Hv);
    hylo_cpu_linear(ctx, x, w->b_proj, NULL, b.b, T, D, Hv);
    gates(b.a, b.b, w->A_log, w->dt_bias, b.g, b.beta, T, Hv);

    st = hylo_cpu_gated_delta_rule(ctx, d, b.q, b.k, b.v, b.g, b.beta, state->S, b.o, T, scan,
                                   err);
    if (st != HYLO_OK) return st;
    /* trace: the names, shapes and order of ref/layers/gdn.c */
    hylo_trace_emit(tr, "gdn.q", b.q, 3, (int64_t[]){T, Hk, dk});
    hylo_trace_emit(tr, "gdn.k", b.k, 3, (int64_t[]){T, Hk, dk});
    hylo_trace_emit(tr, "gdn.v", b.v, 3, (int64_t[]){T, Hv, dv});
    hylo_trace_emit(tr, "gdn.g", b.g, 2, (int64_t[]){T, Hv});
    hylo_trace_emit(tr, "gdn.beta", b.beta, 2, (int64_t[]){T, Hv});
    hylo_trace_emit(tr, "gdn.o", b.o, 3, (int64_t[]){T, Hv, dv});
    hylo_trace_emit(tr, "gdn.state", state->S, 3, (int64_t[]){Hv, dk, dv});
    hylo_cpu_rmsnorm(ctx, b.o, w->o_norm, b.o, T * Hv, dv, d->eps);
    hylo_cpu_linear(ctx, x, w->g_proj, NULL, b.gate, T, D, Hv * dv);
    hylo_cpu_silu_mul_parallel(b.gate, b.o, T * Hv * dv); /* gate <- silu(gate) * o */
    hylo_trace_emit(tr, "gdn.gated", b.gate, 3, (int64_t[]){T, Hv, dv});
    hylo_cpu_linear(ctx, b.gate, w->o_proj, NULL, y, T, Hv * dv, D);
    memcpy(state->q_conv, b.q_conv, (size_t)(Hk * dk * (K - 1)) * sizeof *b.q_conv);
    memcpy(state->k_conv, b.k_conv, (size_t)(Hk * dk * (K - 1)) * sizeof *b.k_conv);
    memcpy(state->v_conv, b.v_conv, (size_t)(Hv * dv * (K - 1)) * sizeof *b.v_conv);
    return HYLO_OK;
}
