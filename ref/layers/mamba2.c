/* mamba2.c: the Mamba2 mixer (spec sec. 4) around the selective scan of ssd.c: input
 * projection, short causal conv, dt and A, the scan, the gated group RMSNorm, out projection. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "layers/mamba2.h"

/* conv_dim = x_heads P + b_groups N + c_groups N: the xBC channels that go through the conv. */
int64_t hylo_mamba2_conv_dim(const hylo_mamba2_dims *d)
{
    return d->x_heads * d->headdim + (d->b_groups + d->c_groups) * d->d_state;
}

/* in_proj rows = d_inner (z) + conv_dim (xBC) + nheads (dt). */
int64_t hylo_mamba2_in_proj_rows(const hylo_mamba2_dims *d)
{
    return d->nheads * d->headdim + hylo_mamba2_conv_dim(d) + d->nheads;
}

hylo_status hylo_mamba2_check_dims(const hylo_mamba2_dims *d, hylo_error *err)
{
    const struct { const char *name; int64_t value; } sizes[] = {
        {"hidden", d->hidden},     {"nheads", d->nheads},           {"headdim", d->headdim},
        {"d_state", d->d_state},   {"x_heads", d->x_heads},         {"b_groups", d->b_groups},
        {"c_groups", d->c_groups}, {"norm_groups", d->norm_groups}, {"d_conv", d->d_conv},
        {"chunk", d->chunk},
    };
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++)
        if (sizes[i].value <= 0)
            return hylo_error_set(err, HYLO_ERR_USAGE, "mamba2: %s = %lld must be positive",
                                  sizes[i].name, (long long)sizes[i].value);
    const struct { const char *name; int64_t value; } head_blocks[] = {
        {"x_heads", d->x_heads}, {"b_groups", d->b_groups}, {"c_groups", d->c_groups},
    };
    for (size_t i = 0; i < sizeof head_blocks / sizeof head_blocks[0]; i++)
        if (d->nheads % head_blocks[i].value != 0)
            return hylo_error_set(err, HYLO_ERR_USAGE,
                                  "mamba2: %s = %lld does not divide nheads = %lld",
                                  head_blocks[i].name, (long long)head_blocks[i].value,
                                  (long long)d->nheads);
    if ((d->nheads * d->headdim) % d->norm_groups != 0)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "mamba2: norm_groups = %lld does not divide d_inner = %lld",
                              (long long)d->norm_groups, (long long)(d->nheads * d->headdim));
    if (!(d->eps >= 0.0) || !isfinite(d->eps))
        return hylo_error_set(err, HYLO_ERR_USAGE, "mamba2: eps = %g must be finite and >= 0",
                              d->eps);
    return HYLO_OK;
}

/* dst [T, width] = src[:, offset : offset + width] of a row-major src [T, stride]. */
static void copy_columns(const float *src, int64_t stride, int64_t offset, int64_t width,
                         float *dst, int64_t T)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < width; i++) dst[t * width + i] = src[t * stride + offset + i];
}

/* softplus(v) = log(1 + exp(v)) = max(v, 0) + log1p(exp(-|v|)): exp never overflows, and for
 * large v the correction underflows so that softplus(v) = v. */
static double softplus(double v)
{
    return fmax(v, 0.0) + log1p(exp(-fabs(v)));
}

static double silu(double v)
{
    return v / (1.0 + exp(-v));
}

/* dt_raw [T, stride] read at columns offset .. offset + H - 1, dt_bias [H], dt [T, H]:
 *   dt[t, h] = softplus(dt_raw[t, offset + h] + dt_bias[h])                                 */
static void time_steps(const float *dt_raw, int64_t stride, int64_t offset, const float *dt_bias,
                       float *dt, int64_t T, int64_t H)
{
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++) {
            const double v = (double)dt_raw[t * stride + offset + h] + (double)dt_bias[h];
            dt[t * H + h] = (float)softplus(v);
        }
}

/* y [T, n], z [T, z_stride] read at columns 0 .. n-1, w [n], out [T, n]. Over each group of
 * gs = n / groups consecutive channels of a token:
 *   g_i = y_i silu(z_i) ;  out_i = w_i g_i / sqrt(mean_{group} g^2 + eps)                  */
static void gated_group_rmsnorm(const float *y, const float *z, int64_t z_stride, const float *w,
                                float *out, int64_t T, int64_t n, int64_t groups, double eps)
{
    const int64_t gs = n / groups;
#pragma omp parallel for schedule(static)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t g = 0; g < groups; g++) {
            const float *yg = y + t * n + g * gs, *zg = z + t * z_stride + g * gs;
            double sum_sq = 0.0;
            for (int64_t i = 0; i < gs; i++) {
                double gi = (double)yg[i] * silu((double)zg[i]);
                sum_sq += gi * gi;
            }
            const double inv_rms = 1.0 / sqrt(sum_sq / (double)gs + eps);
            for (int64_t i = 0; i < gs; i++) {
                double gi = (double)yg[i] * silu((double)zg[i]);
                out[t * n + g * gs + i] = (float)((double)w[g * gs + i] * gi * inv_rms);
            }
        }
    }
}

/* x [T, D], y [T, D]; weights and state as in mamba2.h. With d_inner = H P, conv_dim as above:
 *   proj = x in_proj^T                                   [T, d_inner + conv_dim + H]
 *   z = proj[:, :d_inner] ; xBC = proj[:, d_inner : d_inner + conv_dim] ; dt = proj[:, -H:]
 *   xBC = silu(conv(xBC) + conv_b)    (conv state carried)   ; x, B, C = split(xBC)
 *   dt = softplus(dt + dt_bias) ; A = -exp(A_log)
 *   s = scan(x, dt, A, B, C, D)      (ssm state carried)      [T, d_inner]
 *   y = (norm * GroupRMS(s * silu(z))) out_proj^T                                           */
hylo_status hylo_ref_mamba2_forward(const hylo_mamba2_dims *d, const hylo_mamba2_weights *w,
                                    hylo_mamba2_state *state, const float *x, int64_t T,
                                    float *y, hylo_scan scan, const hylo_tracer *tr,
                                    hylo_error *err)
{
    hylo_status st = hylo_mamba2_check_dims(d, err);
    if (st != HYLO_OK) return st;
    if (T < 0) return hylo_error_set(err, HYLO_ERR_USAGE, "mamba2: T = %lld", (long long)T);
    if (T == 0) return HYLO_OK;
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state, d_inner = H * P;
    const int64_t conv_dim = hylo_mamba2_conv_dim(d), rows = hylo_mamba2_in_proj_rows(d);
    const int64_t x_width = d->x_heads * P, B_width = d->b_groups * N, C_width = d->c_groups * N;

    /* one arena: proj [T, rows], xBC before and after the conv [T, conv_dim] each, x, B, C,
     * dt [T, H], A [H], scan output and normed output [T, d_inner] each, and the new conv
     * state [conv_dim, d_conv - 1], committed only once the scan has succeeded */
    const int64_t conv_state_len = conv_dim * (d->d_conv - 1);
    const int64_t per_token = rows + 2 * conv_dim + x_width + B_width + C_width + H + 2 * d_inner;
    const int64_t total = T * per_token + H + conv_state_len;
    float *arena = malloc((size_t)total * sizeof *arena);
    if (!arena)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "mamba2: cannot allocate %lld floats",
                              (long long)total);
    float *proj = arena, *xbc_in = proj + T * rows, *xbc = xbc_in + T * conv_dim;
    float *xs = xbc + T * conv_dim, *Bs = xs + T * x_width, *Cs = Bs + T * B_width;
    float *dt = Cs + T * C_width, *A = dt + T * H, *s = A + H, *normed = s + T * d_inner;
    float *conv_state = normed + T * d_inner;
    memcpy(conv_state, state->conv, (size_t)conv_state_len * sizeof *conv_state);

    hylo_ref_linear(x, w->in_proj, NULL, proj, T, d->hidden, rows);
    copy_columns(proj, rows, d_inner, conv_dim, xbc_in, T);
    hylo_ref_causal_conv1d_silu(xbc_in, w->conv_w, w->conv_b, conv_state, xbc, T, conv_dim,
                                d->d_conv);
    copy_columns(xbc, conv_dim, 0, x_width, xs, T);
    copy_columns(xbc, conv_dim, x_width, B_width, Bs, T);
    copy_columns(xbc, conv_dim, x_width + B_width, C_width, Cs, T);
    time_steps(proj, rows, d_inner + conv_dim, w->dt_bias, dt, T, H);
    for (int64_t h = 0; h < H; h++) A[h] = (float)-exp((double)w->A_log[h]);

    st = hylo_ref_ssd_scan(d, xs, dt, A, Bs, Cs, w->D, state->ssm, s, T, scan, err);
    if (st == HYLO_OK) {
        memcpy(state->conv, conv_state, (size_t)conv_state_len * sizeof *conv_state);
        gated_group_rmsnorm(s, proj, rows, w->norm, normed, T, d_inner, d->norm_groups, d->eps);
        hylo_ref_linear(normed, w->out_proj, NULL, y, T, d_inner, d->hidden);
        /* trace: mamba.xBC [T, conv_dim] (after conv + silu), mamba.dt [T, H] (after softplus),
         * mamba.y [T, H, P] (scan output, D x included), mamba.gated [T, d_inner] (after the
         * gated norm), mamba.ssm_state [H, P, N], mamba.conv_state [conv_dim, d_conv - 1] */
        hylo_trace_emit(tr, "mamba.xBC", xbc, 2, (int64_t[]){T, conv_dim});
        hylo_trace_emit(tr, "mamba.dt", dt, 2, (int64_t[]){T, H});
        hylo_trace_emit(tr, "mamba.y", s, 3, (int64_t[]){T, H, P});
        hylo_trace_emit(tr, "mamba.gated", normed, 2, (int64_t[]){T, d_inner});
        hylo_trace_emit(tr, "mamba.ssm_state", state->ssm, 3, (int64_t[]){H, P, N});
        hylo_trace_emit(tr, "mamba.conv_state", state->conv, 2,
                        (int64_t[]){conv_dim, d->d_conv - 1});
    }
    free(arena);
    return st;
}
