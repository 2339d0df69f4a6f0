/* rmsnorm.c: RMSNorm for the CPU backend, rows in parallel, fp32 statistics. */
#include <math.h>

#include "cpu_layers.h"

/* x [rows, n], w [n], y [rows, n] (y may alias x):
 *   y[r, i] = w[i] x[r, i] / sqrt(mean_i x[r, i]^2 + eps)                                   */
void hylo_cpu_rmsnorm(void *ctx, const float *x, const float *w, float *y, int64_t rows,
                      int64_t n, double eps)
{
    (void)ctx;
#pragma omp parallel for schedule(static) if (rows * n >= 65536)
    for (int64_t r = 0; r < rows; r++) {
        const double mean_sq = (double)hylo_cpu_sum_squares(x + r * n, n) / (double)n;
        hylo_cpu_scale_mul(y + r * n, x + r * n, w, (float)(1.0 / sqrt(mean_sq + eps)), n);
    }
}
