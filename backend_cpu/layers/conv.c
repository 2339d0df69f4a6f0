/* conv.c: the causal depthwise short convolution + SiLU for the CPU backend, vectorized across
 * channels: the taps are transposed to [K, C] so that each tap is one contiguous multiply-add
 * over a token's channels. */
#include "cpu_layers.h"

/* wT [K, C] and the state transposed to sT [K-1, C]. */
hylo_cpu_need hylo_cpu_conv_need(int64_t C, int64_t K)
{
    hylo_cpu_need need = {{0, hylo_cpu_round16(K * C) + hylo_cpu_round16((K - 1) * C)}};
    return need;
}

/* y_i += w_i x_i */
HYLO_CPU_CLONES
static void mul_add(float *y, const float *w, const float *x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] += w[i] * x[i];
}

/* x [T, C], w [C, K], b [C] or NULL, state [C, K-1] (oldest first), y [T, C]. With
 * row(i) = x[i] for i >= 0 and the state's column K-1+i for i < 0:
 *   y[t] = silu(b + sum_{j<K} wT[j] * row(t + j - (K-1)))       (per channel)
 * and the state keeps the last K-1 rows of [state; x]. */
hylo_status hylo_cpu_causal_conv1d_silu(void *ctx, const float *x, const float *w,
                                        const float *b, float *state, float *y, int64_t T,
                                        int64_t C, int64_t K, hylo_error *err)
{
    float *wT = hylo_cpu_workspace(ctx, HYLO_CPU_OP, hylo_cpu_conv_need(C, K).floats[HYLO_CPU_OP],
                                   err);
    if (!wT) return HYLO_ERR_NOMEM;
    float *sT = wT + hylo_cpu_round16(K * C);
    for (int64_t c = 0; c < C; c++) {
        for (int64_t j = 0; j < K; j++) wT[j * C + c] = w[c * K + j];
        for (int64_t j = 0; j < K - 1; j++) sT[j * C + c] = state[c * (K - 1) + j];
    }
#pragma omp parallel for schedule(static) if (T * C * K >= 65536)
    for (int64_t t = 0; t < T; t++) {
        float *yt = y + t * C;
        if (b) memcpy(yt, b, (size_t)C * sizeof *yt);
        else memset(yt, 0, (size_t)C * sizeof *yt);
        for (int64_t j = 0; j < K; j++) {
            const int64_t i = t + j - (K - 1);
            mul_add(yt, wT + j * C, i >= 0 ? x + i * C : sT + (K - 1 + i) * C, C);
        }
        hylo_cpu_silu_inplace(yt, C);
    }
    for (int64_t j = 0; j < K - 1; j++) {
        const int64_t i = T - (K - 1) + j;
        const float *row = i >= 0 ? x + i * C : sT + (j + T) * C;
        for (int64_t c = 0; c < C; c++) state[c * (K - 1) + j] = row[c];
    }
    return HYLO_OK;
}
