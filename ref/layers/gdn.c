/* gdn.c: the Gated DeltaNet mixer (spec sec. 5): projections, short convs, q/k normalization,
 * gates, the gated delta rule (delta_rule.c), gated output RMSNorm and output projection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/gdn.h"
#include "layers/layers.h"

/* x [rows, n]:  x_r <- scale * x_r / sqrt(sum_i x_r,i^2 + eps) */
void hylo_ref_l2norm(float *x, int64_t rows, int64_t n, double eps, double scale)
{
    for (int64_t r = 0; r < rows; r++) {
        float *xr = x + r * n;
        double sum_sq = 0.0;
        for (int64_t i = 0; i < n; i++) sum_sq += (double)xr[i] * (double)xr[i];
        double factor = scale / sqrt(sum_sq + eps);
        for (int64_t i = 0; i < n; i++) xr[i] = (float)((double)xr[i] * factor);
    }
}

/* softplus(x) = log(1 + exp(x)) = max(x, 0) + log1p(exp(-|x|)), which cannot overflow. */
static double softplus(double x)
{
    return fmax(x, 0.0) + log1p(exp(-fabs(x)));
}

/* a, b, g, beta [T, Hv]; A_log, dt_bias [Hv].
 *   g[t, h] = -exp(A_log[h]) * softplus(a[t, h] + dt_bias[h]) ;  beta[t, h] = sigmoid(b[t, h]) */
void hylo_ref_gdn_gates(const float *a, const float *b, const float *A_log,
                        const float *dt_bias, float *g, float *beta, int64_t T, int64_t H_v)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H_v; h++) {
            int64_t i = t * H_v + h;
            g[i] = (float)(-exp((double)A_log[h]) * softplus((double)a[i] + (double)dt_bias[h]));
            beta[i] = (float)(1.0 / (1.0 + exp(-(double)b[i])));
        }
}

/* The activations of one forward call and copies of the conv states (committed to the
 * caller's state only once the call has succeeded), carved out of one allocation. */
typedef struct {
    float *block;
    float *raw;               /* [T, max(Hk*dk, Hv*dv)] a projection before its conv */
    float *q, *k;             /* [T, Hk, dk]                                        */
    float *v, *gate, *o;      /* [T, Hv, dv]                                        */
    float *a, *b, *g, *beta;  /* [T, Hv]                                            */
    float *q_conv, *k_conv;   /* [Hk*dk, K-1]                                       */
    float *v_conv;            /* [Hv*dv, K-1]                                       */
} gdn_buffers;

static hylo_status gdn_buffers_alloc(const hylo_gdn_dims *d, int64_t T, gdn_buffers *buf,
                                     hylo_error *err)
{
    const int64_t nk = d->k_heads * d->head_k, nv = d->v_heads * d->head_v;
    const int64_t raw = nk > nv ? nk : nv, K1 = d->d_conv - 1;
    const size_t total =
        (size_t)(T * (raw + 2 * nk + 3 * nv + 4 * d->v_heads) + (2 * nk + nv) * K1);
    buf->block = malloc(total * sizeof *buf->block);
    if (!buf->block)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "gdn: cannot allocate %zu floats", total);
    buf->raw = buf->block;
    buf->q = buf->raw + T * raw;
    buf->k = buf->q + T * nk;
    buf->v = buf->k + T * nk;
    buf->gate = buf->v + T * nv;
    buf->o = buf->gate + T * nv;
    buf->a = buf->o + T * nv;
    buf->b = buf->a + T * d->v_heads;
    buf->g = buf->b + T * d->v_heads;
    buf->beta = buf->g + T * d->v_heads;
    buf->q_conv = buf->beta + T * d->v_heads;
    buf->k_conv = buf->q_conv + nk * K1;
    buf->v_conv = buf->k_conv + nk * K1;
    return HYLO_OK;
}

/* x [T, D], W [C, D], conv_w [C, K], conv_state [C, K-1] (a copy of the caller's), raw [T, C]
 * scratch, out [T, C]:
 *   out = silu(conv(x W^T))  (the short conv carries conv_state; no bias)                */
static void project_conv(const float *x, const float *W, const float *conv_w,
                         const float *conv_state, float *state_copy, float *raw, float *out,
                         int64_t T, int64_t D, int64_t C, int64_t K)
{
    memcpy(state_copy, conv_state, (size_t)(C * (K - 1)) * sizeof *state_copy);
    hylo_ref_linear(x, W, NULL, raw, T, D, C);
    hylo_ref_causal_conv1d_silu(raw, conv_w, NULL, state_copy, out, T, C, K);
}

/* o, gate [n]:  o <- o * silu(gate) = o * gate / (1 + exp(-gate)) */
static void apply_output_gate(float *o, const float *gate, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        double z = gate[i];
        o[i] = (float)((double)o[i] * (z / (1.0 + exp(-z))));
    }
}

static hylo_status check_gdn_dims(const hylo_gdn_dims *d, int64_t T, hylo_scan scan,
                                  hylo_error *err)
{
    if (T < 0 || d->hidden < 1 || d->d_conv < 1 || !(d->eps >= 0.0))
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "gdn: T %lld, hidden %lld, d_conv %lld, eps %g: expected T >= 0, "
                              "positive sizes and eps >= 0",
                              (long long)T, (long long)d->hidden, (long long)d->d_conv, d->eps);
    return hylo_ref_gated_delta_rule_check(d, scan, err);
}

/* x [T, D], y [T, D]; weights and state as in gdn.h (Hk, Hv heads of dk, dv channels).
 *   q = silu(conv(x q_proj^T)), k = silu(conv(x k_proj^T))      [T, Hk, dk]
 *   v = silu(conv(x v_proj^T))                                   [T, Hv, dv]
 *   q^ = q / sqrt(sum q^2 + 1e-6) * dk^-0.5 ;  k^ = k / sqrt(sum k^2 + 1e-6)   (per head)
 *   g = -exp(A_log) softplus(x a_proj^T + dt_bias) ;  beta = sigmoid(x b_proj^T)  [T, Hv]
 *   o = gated delta rule(q^, k^, v, g, beta; S)                  [T, Hv, dv]
 *   o <- RMSNorm_dv(o) * o_norm * silu(x g_proj^T)               (per head, norm first)
 *   y = o o_proj^T
 * On failure the state is left as it was. */
hylo_status hylo_ref_gdn_forward(const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                                 hylo_gdn_state *state, const float *x, int64_t T, float *y,
                                 hylo_scan scan, const hylo_tracer *tr, hylo_error *err)
{
    hylo_status st = check_gdn_dims(d, T, scan, err);
    if (st != HYLO_OK || T == 0) return st;
    const int64_t D = d->hidden, Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k,
                  dv = d->head_v, K = d->d_conv;
    gdn_buffers buf = {0};
    st = gdn_buffers_alloc(d, T, &buf, err);
    if (st != HYLO_OK) return st;

    project_conv(x, w->q_proj, w->q_conv, state->q_conv, buf.q_conv, buf.raw, buf.q, T, D,
                 Hk * dk, K);
    project_conv(x, w->k_proj, w->k_conv, state->k_conv, buf.k_conv, buf.raw, buf.k, T, D,
                 Hk * dk, K);
    project_conv(x, w->v_proj, w->v_conv, state->v_conv, buf.v_conv, buf.raw, buf.v, T, D,
                 Hv * dv, K);
    hylo_ref_l2norm(buf.q, T * Hk, dk, 1e-6, 1.0 / sqrt((double)dk));
    hylo_ref_l2norm(buf.k, T * Hk, dk, 1e-6, 1.0);

    hylo_ref_linear(x, w->a_proj, NULL, buf.a, T, D, Hv);
    hylo_ref_linear(x, w->b_proj, NULL, buf.b, T, D, Hv);
    hylo_ref_gdn_gates(buf.a, buf.b, w->A_log, w->dt_bias, buf.g, buf.beta, T, Hv);

    st = hylo_ref_gated_delta_rule(d, buf.q, buf.k, buf.v, buf.g, buf.beta, state->S, buf.o, T,
                                   scan, err);
    if (st == HYLO_OK) {
        /* trace: gdn.q, gdn.k [T, Hk, dk] (normalized, q scaled), gdn.v [T, Hv, dv],
         * gdn.g, gdn.beta [T, Hv], gdn.o [T, Hv, dv] (the rule's output), gdn.state [Hv, dk, dv],
         * then gdn.gated [T, Hv, dv] (after norm and gate) */
        hylo_trace_emit(tr, "gdn.q", buf.q, 3, (int64_t[]){T, Hk, dk});
        hylo_trace_emit(tr, "gdn.k", buf.k, 3, (int64_t[]){T, Hk, dk});
        hylo_trace_emit(tr, "gdn.v", buf.v, 3, (int64_t[]){T, Hv, dv});
        hylo_trace_emit(tr, "gdn.g", buf.g, 2, (int64_t[]){T, Hv});
        hylo_trace_emit(tr, "gdn.beta", buf.beta, 2, (int64_t[]){T, Hv});
        hylo_trace_emit(tr, "gdn.o", buf.o, 3, (int64_t[]){T, Hv, dv});
        hylo_trace_emit(tr, "gdn.state", state->S, 3, (int64_t[]){Hv, dk, dv});
        hylo_ref_rmsnorm(buf.o, w->o_norm, buf.o, T * Hv, dv, d->eps);
        hylo_ref_linear(x, w->g_proj, NULL, buf.gate, T, D, Hv * dv);
        apply_output_gate(buf.o, buf.gate, T * Hv * dv);
        hylo_trace_emit(tr, "gdn.gated", buf.o, 3, (int64_t[]){T, Hv, dv});
        hylo_ref_linear(buf.o, w->o_proj, NULL, y, T, Hv * dv, D);
        /* commit the conv states */
        memcpy(state->q_conv, buf.q_conv, (size_t)(Hk * dk * (K - 1)) * sizeof *buf.q_conv);
        memcpy(state->k_conv, buf.k_conv, (size_t)(Hk * dk * (K - 1)) * sizeof *buf.k_conv);
        memcpy(state->v_conv, buf.v_conv, (size_t)(Hv * dv * (K - 1)) * sizeof *buf.v_conv);
    }
    free(buf.block);
    return st;
}
