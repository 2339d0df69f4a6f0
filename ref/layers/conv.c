/* conv.c: the causal depthwise short convolution of Mamba2 and Gated DeltaNet, with the state
 * that carries the last d_conv - 1 inputs from one call to the next (prefill or decode). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"

/* x [T, C], w [C, K] (PyTorch conv1d weight [C, 1, K]), b [C] or NULL, state [C, K-1] (oldest
 * input first; zeros at the start of a sequence), y [T, C]. With xp the inputs of channel c
 * preceded by its state, xp = [state[c, 0..K-2], x[0, c], ..., x[T-1, c]]:
 *   y[t, c] = silu(b[c] + sum_{j=0}^{K-1} w[c, j] xp[t + j])
 * and on return state[c] holds the last K - 1 entries of xp. */
void hylo_ref_causal_conv1d_silu(const float *x, const float *w, const float *b, float *state,
                                 float *y, int64_t T, int64_t C, int64_t K)
{
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < C; c++) {
        const float *wc = w + c * K;
        float *sc = state + c * (K - 1);
        for (int64_t t = 0; t < T; t++) {
            double acc = b ? (double)b[c] : 0.0;
            for (int64_t j = 0; j < K; j++) {
                int64_t i = t + j - (K - 1); /* index into x; negative indices read the state */
                double xv = i >= 0 ? (double)x[i * C + c] : (double)sc[K - 1 + i];
                acc += (double)wc[j] * xv;
            }
            y[t * C + c] = (float)(acc / (1.0 + exp(-acc)));
        }
        /* the new state: the last K - 1 entries of [state; x] */
        for (int64_t j = 0; j < K - 1; j++) {
            int64_t i = T - (K - 1) + j;
            sc[j] = i >= 0 ? x[i * C + c] : sc[j + T];
        }
    }
}
