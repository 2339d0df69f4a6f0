/* rope.c: rotary position embedding for the CPU backend: tokens in parallel, angles in double
 * (as the reference), rotations in fp32. */
#include <math.h>

#include "cpu_layers.h"

/* x [T, heads, dim], inv_freq [dim/2]; token t at position p = pos0 + t. With
 * a = p inv_freq_i, c = scale cos a, s = scale sin a:
 *   x_i <- x_i c - x_{i+dim/2} s ;  x_{i+dim/2} <- x_{i+dim/2} c + x_i s                    */
void hylo_cpu_rope_rotate_half(void *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                               int64_t pos0, const double *inv_freq, double scale)
{
    (void)ctx;
    const int64_t half = dim / 2;
#pragma omp parallel for schedule(static) if (T * heads * dim >= 65536)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < half; i++) {
            const double angle = (double)(pos0 + t) * inv_freq[i];
            const float c = (float)(scale * cos(angle)), s = (float)(scale * sin(angle));
            for (int64_t h = 0; h < heads; h++) {
                float *xh = x + (t * heads + h) * dim;
                const float a = xh[i], b = xh[i + half];
                xh[i] = a * c - b * s;
                xh[i + half] = b * c + a * s;
            }
        }
    }
}

/* Slice (t, h) [dim] at x + t t_stride + h h_stride, position p = pos0 + t, adjacent pairs:
 *   x_{2i} <- x_{2i} c - x_{2i+1} s ;  x_{2i+1} <- x_{2i+1} c + x_{2i} s                     */
void hylo_cpu_rope_interleaved(float *x, int64_t T, int64_t t_stride, int64_t heads,
                               int64_t h_stride, int64_t dim, int64_t pos0,
                               const double *inv_freq, double scale)
{
#pragma omp parallel for schedule(static) if (T * heads * dim >= 65536)
    for (int64_t t = 0; t < T; t++) {
        for (int64_t i = 0; i < dim / 2; i++) {
            const double angle = (double)(pos0 + t) * inv_freq[i];
            const float c = (float)(scale * cos(angle)), s = (float)(scale * sin(angle));
            for (int64_t h = 0; h < heads; h++) {
                float *xh = x + t * t_stride + h * h_stride;
                const float a = xh[2 * i], b = xh[2 * i + 1];
                xh[2 * i] = a * c - b * s;
                xh[2 * i + 1] = b * c + a * s;
            }
        }
    }
}
