/* mamba2.c: the Mamba2 mixer for the CPU backend around its SSD scan (ssd.c): the same steps
 * as ref/layers/mamba2.c with the backend's projections, conv, scan and a vectorized gated
 * group RMSNorm. */
#include <math.h>

#include "cpu_layers.h"

/* The arena of one call (LAYER level): proj [T, rows], xBC before and after the conv
 * [T, conv_dim] each, x, B, C [T, width], dt [T, H], A [H], scan and normed outputs
 * [T, d_inner] each, and the new conv state [conv_dim, d_conv - 1]. */
typedef struct {
    float *proj, *xbc_in, *xbc, *xs, *Bs, *Cs, *dt, *A, *s, *normed, *conv_state;
} mamba2_buffers;

static int64_t arena_floats(const hylo_mamba2_dims *d, int64_t T, mamba2_buffers *b, float *base)
{
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state, d_inner = H * P;
    const int64_t conv_dim = hylo_mamba2_conv_dim(d), rows = hylo_mamba2_in_proj_rows(d);
    const int64_t sizes[11] = {T * rows,          T * conv_dim,      T * conv_dim,
                               T * d->x_heads * P, T * d->b_groups * N, T * d->c_groups * N,
                               T * H,             H,                 T * d_inner,
                               T * d_inner,       conv_dim * (d->d_conv - 1)};
    float **slots[11] = {&b->proj, &b->xbc_in, &b->xbc, &b->xs, &b->Bs, &b->Cs,
                         &b->dt,   &b->A,      &b->s,   &b->normed, &b->conv_state};
    int64_t total = 0;
    for (int i = 0; i < 11; i++) {
        if (base) *slots[i] = base + total;
        total += hylo_cpu_round16(sizes[i]);
    }
    return total;
}

hylo_cpu_need hylo_cpu_mamba2_need(const hylo_mamba2_dims *d, int64_t T, hylo_scan scan)
{
    mamba2_buffers b;
    hylo_cpu_need need = {{arena_floats(d, T, &b, NULL), 0}};
    const int64_t d_inner = d->nheads * d->headdim;
    const hylo_cpu_need parts[3] = {
        hylo_cpu_linear_need(T, d->hidden > d_inner ? d->hidden : d_inner),
        hylo_cpu_conv_need(hylo_mamba2_conv_dim(d), d->d_conv),
        hylo_cpu_ssd_scan_need(d, T, scan),
    };
    for (int i = 0; i < 3; i++) hylo_cpu_need_max(&need, &parts[i]);
    return need;
}

/* dst [T, width] = src[:, offset : offset + width] of src [T, stride] */
static void copy_columns(const float *src, int64_t stride, int64_t offset, int64_t width,
                         float *dst, int64_t T)
{
    for (int64_t t = 0; t < T; t++)
        memcpy(dst + t * width, src + t * stride + offset, (size_t)width * sizeof *dst);
}

/* softplus(v) = max(v, 0) + log1p(e^-|v|) */
static double softplus(double v)
{
    return fmax(v, 0.0) + log1p(exp(-fabs(v)));
}

/* g_i = y_i silu(z_i) over one group of n channels; out_i = w_i g_i / sqrt(mean g^2 + eps) */
HYLO_CPU_CLONES
static void gated_rmsnorm_group(const float *y, const float *z, const float *w, float *out,
                                int64_t n, double eps)
{
    float sum_sq = 0.0f;
#pragma omp simd reduction(+ : sum_sq)
    for (int64_t i = 0; i < n; i++) {
        out[i] = y[i] * hylo_cpu_silu(z[i]);
        sum_sq += out[i] * out[i];
    }
    const float inv_rms = (float)(1.0 / sqrt((double)sum_sq / (double)n + eps));
#pragma omp simd
    for (int64_t i = 0; i < n; i++) out[i] = w[i] * (out[i] * inv_rms);
}

/* x [T, D], y [T, D]:
 *   proj = x in_proj^T ;  [z | xBC | dt] = proj
 *   xBC = silu(conv(xBC) + conv_b) ;  x, B, C = split(xBC)
 *   dt = softplus(dt + dt_bias) ;  A = -exp(A_log)
 *   s = scan(x, dt, A, B, C, D) ;  y = (norm * GroupRMS(s * silu(z))) out_proj^T          */
hylo_status hylo_cpu_mamba2_forward(void *ctx, const hylo_mamba2_dims *d,
                                    const hylo_mamba2_weights *w, hylo_mamba2_state *state,
                                    const float *x, int64_t T, float *y, hylo_scan scan,
                                    const hylo_tracer *tr, hylo_error *err)
{
    hylo_status st = hylo_mamba2_check_dims(d, err);
    if (st != HYLO_OK) return st;
    if (T < 0) return hylo_error_set(err, HYLO_ERR_USAGE, "mamba2: T = %lld", (long long)T);
    if (T == 0) return HYLO_OK;
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state, d_inner = H * P;
    const int64_t conv_dim = hylo_mamba2_conv_dim(d), rows = hylo_mamba2_in_proj_rows(d);
    const int64_t x_width = d->x_heads * P, B_width = d->b_groups * N, C_width = d->c_groups * N;
    const int64_t conv_state_len = conv_dim * (d->d_conv - 1);
    mamba2_buffers b;
    float *arena = hylo_cpu_workspace(ctx, HYLO_CPU_LAYER, arena_floats(d, T, &b, NULL), err);
    if (!arena) return HYLO_ERR_NOMEM;
    arena_floats(d, T, &b, arena);
    memcpy(b.conv_state, state->conv, (size_t)conv_state_len * sizeof *b.conv_state);

    hylo_cpu_linear(ctx, x, w->in_proj, NULL, b.proj, T, d->hidden, rows);
    copy_columns(b.proj, rows, d_inner, conv_dim, b.xbc_in, T);
    st = hylo_cpu_causal_conv1d_silu(ctx, b.xbc_in, w->conv_w, w->conv_b, b.conv_state, b.xbc, T,
                                     conv_dim, d->d_conv, err);
    if (st != HYLO_OK) return st;
    copy_columns(b.xbc, conv_dim, 0, x_width, b.xs, T);
    copy_columns(b.xbc, conv_dim, x_width, B_width, b.Bs, T);
    copy_columns(b.xbc, conv_dim, x_width + B_width, C_width, b.Cs, T);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            b.dt[t * H + h] = (float)softplus((double)b.proj[t * rows + d_inner + conv_dim + h] +
                                              (double)w->dt_bias[h]);
    for (int64_t h = 0; h < H; h++) b.A[h] = (float)-exp((double)w->A_log[h]);

    st = hylo_cpu_ssd_scan(ctx, d, b.xs, b.dt, b.A, b.Bs, b.Cs, w->D, state->ssm, b.s, T, scan,
                           err);
    if (st != HYLO_OK) return st;
    memcpy(state->conv, b.conv_state, (size_t)conv_state_len * sizeof *b.conv_state);
    const int64_t gs = d_inner / d->norm_groups;
#pragma omp parallel for collapse(2) schedule(static) if (T * d_inner >= 65536)
    for (int64_t t = 0; t < T; t++)
        for (int64_t g = 0; g < d->norm_groups; g++)
            gated_rmsnorm_group(b.s + t * d_inner + g * gs, b.proj + t * rows + g * gs,
                                w->norm + g * gs, b.normed + t * d_inner + g * gs, gs, d->eps);
    hylo_cpu_linear(ctx, b.normed, w->out_proj, NULL, y, T, d_inner, d->hidden);
    /* trace: the names and shapes of ref/layers/mamba2.c */
    hylo_trace_emit(tr, "mamba.xBC", b.xbc, 2, (int64_t[]){T, conv_dim});
    hylo_trace_emit(tr, "mamba.dt", b.dt, 2, (int64_t[]){T, H});
    hylo_trace_emit(tr, "mamba.y", b.s, 3, (int64_t[]){T, H, P});
    hylo_trace_emit(tr, "mamba.gated", b.normed, 2, (int64_t[]){T, d_inner});
    hylo_trace_emit(tr, "mamba.ssm_state", state->ssm, 3, (int64_t[]){H, P, N});
    hylo_trace_emit(tr, "mamba.conv_state", state->conv, 2, (int64_t[]){conv_dim, d->d_conv - 1});
    return HYLO_OK;
}
