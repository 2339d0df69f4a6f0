/* rmsnorm.c: RMSNorm (spec sec. 2), statistics in double. */
#include <math.h>

#include "layers/layers.h"

/* x [rows, n], w [n], y [rows, n] (y may alias x).
 *   y[r, i] = w[i] * x[r, i] / sqrt(mean_i(x[r, i]^2) + eps) */
void hylo_ref_rmsnorm(const float *x, const float *w, float *y, int64_t rows, int64_t n,
                      double eps)
{
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x + r * n;
        float *yr = y + r * n;
        double sum_sq = 0.0;
        for (int64_t i = 0; i < n; i++) sum_sq += (double)xr[i] * (double)xr[i];
        double inv_rms = 1.0 / sqrt(sum_sq / (double)n + eps);
        for (int64_t i = 0; i < n; i++) yr[i] = (float)((double)w[i] * ((double)xr[i] * inv_rms));
    }
}
