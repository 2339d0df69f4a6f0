/* conv.hip: the causal depthwise short convolution + SiLU of Mamba2 and Gated DeltaNet, with
 * the state that carries the last K - 1 inputs between calls; a decode step convolves and
 * shifts the state in one kernel. */
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

/* Channel c, one token (a decode step), both of the above in one pass:
 *   y[c] = silu(b[c] + sum_{j<K-1} w[c, j] state[c, j] + w[c, K-1] x[c]) ;
 *   state[c] <- [state[c, 1 .. K-2], x[c]]                                                   */
__global__ void conv_step_kernel(const float *x, const float *w, const float *b, float *state,
                                 float *y, int64_t C, int64_t K)
{
    for (int64_t c = hylo_first(); c < C; c += hylo_stride()) {
        float *sc = state + c * (K - 1);
        const float xc = x[c];
        float acc = (b ? b[c] : 0.0f) + w[c * K + K - 1] * xc;
        for (int64_t j = 0; j < K - 1; j++) {
            acc += w[c * K + j] * sc[j];
            sc[j] = j + 1 < K - 1 ? sc[j + 1] : xc;
        }
        y[c] = hylo_silu(acc);
    }
}

void hylo_hip_conv_silu(hylo_hip_ctx *ctx, const float *x, int64_t x_stride, const float *w,
                        const float *b, float *state, float *y, int64_t T, int64_t C, int64_t K)
{
    if (T <= 0 || !hylo_hip_ok(ctx)) return;
    if (T == 1 && K >= 2) {
        conv_step_kernel<<<hylo_hip_blocks(C), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
            x, w, b, state, y, C, K);
        hylo_hip_launched(ctx, "conv step");
        return;
    }
    conv_kernel<<<hylo_hip_blocks(T * C), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        x, x_stride, w, b, state, y, T, C, K);
    if (!hylo_hip_launched(ctx, "conv") || K < 2) return;
    conv_state_kernel<<<hylo_hip_blocks(C), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        x, x_stride, state, T, C, K);
    hylo_hip_launched(ctx, "conv state");
}
