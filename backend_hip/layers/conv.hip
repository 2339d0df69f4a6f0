/* conv.hip: the causal depthwise short convolution + SiLU of Mamba2 and Gated DeltaNet, with
 * the state that carries the last K - 1 inputs between calls; a decode step convolves and
 * shifts the state in one kernel, several convs of a layer in one launch. */
#include "core/device.h"
#include "layers/hip_layers.h"

/* Item (t, c), with xp the inputs of channel c after its state,
 * xp = [state[c, 0 .. K-2], x[0, c], ..., x[T-1, c]]:
 *   y[t, c] = silu(b[c] + sum_{j<K} w[c, j] xp[t + j])                                       */
__global__ void conv_kernel(const float *x, int64_t x_stride, const float *w, const float *b,
                            const float *state, float *y, int64_t T, int64_t C, int64_t K)
{
    for (int64_t item = hylo_first(); item < T * C; item += hylo_stride()) {
        const int64_t t = item / C, c = item % C;
        float acc = b ? b[c] : 0.0f;
        for (int64_t j = 0; j < K; j++) {
            const int64_t i = t + j - (K - 1); /* negative: a state entry */
            const float xv = i >= 0 ? x[i * x_stride + c] : state[c * (K - 1) + (K - 1) + i];
            acc += w[c * K + j] * xv;
        }
        y[item] = hylo_silu(acc);
    }
}

/* Channel c: state[c] <- the last K - 1 entries of xp (after conv_kernel has read it). The
 * writes go left to right and each reads an entry at or right of its own, so one thread per
 * channel updates in place. */
__global__ void conv_state_kernel(const float *x, int64_t x_stride, float *state, int64_t T,
                                  int64_t C, int64_t K)
{
    for (int64_t c = hylo_first(); c < C; c += hylo_stride()) {
        float *sc = state + c * (K - 1);
        for (int64_t j = 0; j < K - 1; j++) {
            const int64_t i = T - (K - 1) + j;
            sc[j] = i >= 0 ? x[i * x_stride + c] : sc[j + T];
        }
    }
}

/* One token (a decode step) through n <= HYLO_HIP_CONV_PARTS convs: part p takes channels
 * [first_p, first_p + C_p) of x and y [sum_p C_p], with its own w_p [C_p, K], b_p [C_p] or
 * NULL and state_p [C_p, K-1] (C = sum_p C_p); channel c of part p, both of the above in one
 * pass:
 *   y[c] = silu(b[c] + sum_{j<K-1} w[c, j] state[c, j] + w[c, K-1] x[c]) ;
 *   state[c] <- [state[c, 1 .. K-2], x[c]]                                                   */
typedef struct {
    const float *w[HYLO_HIP_CONV_PARTS], *b[HYLO_HIP_CONV_PARTS];
    float *state[HYLO_HIP_CONV_PARTS];
    int64_t end[HYLO_HIP_CONV_PARTS]; /* first_p + C_p */
    int n;
} conv_parts;

__global__ void conv_step_kernel(const float *x, conv_parts parts, float *y, int64_t C,
                                 int64_t K)
{
    for (int64_t ch = hylo_first(); ch < C; ch += hylo_stride()) {
        const float *w = parts.w[0], *b = parts.b[0];
        float *state = parts.state[0];
        int64_t c = ch;
#pragma unroll
        for (int p = 1; p < HYLO_HIP_CONV_PARTS; p++) /* constant indices: no local copy */
            if (p < parts.n && ch >= parts.end[p - 1]) {
                w = parts.w[p];
                b = parts.b[p];
                state = parts.state[p];
                c = ch - parts.end[p - 1];
            }
        float *sc = state + c * (K - 1);
        const float xc = x[ch];
        float acc = (b ? b[c] : 0.0f) + w[c * K + K - 1] * xc;
        for (int64_t j = 0; j < K - 1; j++) {
            acc += w[c * K + j] * sc[j];
            sc[j] = j + 1 < K - 1 ? sc[j + 1] : xc;
        }
        y[ch] = hylo_silu(acc);
    }
}

void hylo_hip_conv_silu_step(hylo_hip_ctx *ctx, int n, const float *x, const float *const *w,
                             const float *const *b, float *const *state, float *y,
                             const int64_t *C, int64_t K)
{
    if (n < 1 || n > HYLO_HIP_CONV_PARTS) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: a conv step of %d parts (1 to %d)", n,
                      HYLO_HIP_CONV_PARTS);
        return;
    }
    if (!hylo_hip_ok(ctx)) return;
    conv_parts parts = {{NULL}, {NULL}, {NULL}, {0}, n};
    for (int p = 0; p < n; p++) {
        parts.w[p] = w[p];
        parts.b[p] = b ? b[p] : NULL;
        parts.state[p] = state[p];
        parts.end[p] = (p > 0 ? parts.end[p - 1] : 0) + C[p];
    }
    const int64_t total = parts.end[n - 1];
    conv_step_kernel<<<hylo_hip_blocks(total), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        x, parts, y, total, K);
    hylo_hip_launched(ctx, "conv step");
}

void hylo_hip_conv_silu(hylo_hip_ctx *ctx, const float *x, int64_t x_stride, const float *w,
                        const float *b, float *state, float *y, int64_t T, int64_t C, int64_t K)
{
    if (T <= 0 || !hylo_hip_ok(ctx)) return;
    if (T == 1 && K >= 2) {
        hylo_hip_conv_silu_step(ctx, 1, x, &w, &b, &state, y, &C, K);
        return;
    }
    conv_kernel<<<hylo_hip_blocks(T * C), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        x, x_stride, w, b, state, y, T, C, K);
    if (!hylo_hip_launched(ctx, "conv") || K < 2) return;
    conv_state_kernel<<<hylo_hip_blocks(C), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        x, x_stride, state, T, C, K);
    hylo_hip_launched(ctx, "conv state");
}
