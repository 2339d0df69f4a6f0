/* linear.c: the affine map of nn.Linear, y = x W^T + b. */
#include "layers/layers.h"

/* x [T, in], W [out, in], b [out] or NULL, y [T, out].
 *   y[t, o] = b[o] + sum_i x[t, i] W[o, i]      (double accumulator)
 * Each output element is summed by one thread in index order, so results do not depend on
 * the thread count. */
void hylo_ref_linear(const float *x, const float *W, const float *b, float *y, int64_t T,
                     int64_t in, int64_t out)
{
#pragma omp parallel for collapse(2) schedule(static)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t o = 0; o < out; o++) {
            const float *xt = x + t * in;
            const float *wo = W + o * in;
            double acc = b ? (double)b[o] : 0.0;
            for (int64_t i = 0; i < in; i++) acc += (double)xt[i] * (double)wo[i];
            y[t * out + o] = (float)acc;
        }
    }
}
