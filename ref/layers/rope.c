/* rope.c: rotary position embedding frequencies (default, linear, llama3, yarn) and the
 * rotate-half rotation of the teacher (spec sec. 2 and 6). Frequencies and angles are computed
 * in double: HF computes them in fp32, which differs by rounding only. */
#include <math.h>

#include "layers/layers.h"

/* llama3 (spec sec. 2): with wavelength w = 2 pi / f and L0 the original context,
 *   w > L0 / low:   f / factor               (long wavelengths: interpolate)
 *   w < L0 / high:  f                        (short wavelengths: keep)
 *   otherwise:      (1 - s) f / factor + s f,  s = (L0 / w - low) / (high - low)          */
static double llama3_frequency(const hylo_rope_config *rope, double f)
{
    double L0 = (double)rope->original_max_position;
    double wavelen = 2.0 * M_PI / f;
    if (wavelen > L0 / rope->low_freq_factor) return f / rope->factor;
    if (wavelen < L0 / rope->high_freq_factor) return f;
    double s = (L0 / wavelen - rope->low_freq_factor) /
               (rope->high_freq_factor - rope->low_freq_factor);
    return (1.0 - s) * f / rope->factor + s * f;
}

/* YaRN's multiplier of cos/sin: 0.1 m ln(s) + 1 for s > 1, else 1. */
static double yarn_mscale(double factor, double m)
{
    return factor <= 1.0 ? 1.0 : 0.1 * m * log(factor) + 1.0;
}

/* corr(n) = dim ln(L0 / (2 pi n)) / (2 ln base): the pair index that turns n times over L0. */
static double yarn_correction_dim(double rotations, int64_t dim, double base, double L0)
{
    return (double)dim * log(L0 / (rotations * 2.0 * M_PI)) / (2.0 * log(base));
}

/* YaRN (spec sec. 6): pairs below `low` keep their frequency, above `high` are divided by the
 * factor, and a linear ramp blends the two in between. */
static void yarn_frequencies(const hylo_rope_config *rope, int64_t dim, double *inv_freq,
                             double *cos_sin_scale)
{
    double L0 = (double)rope->original_max_position;
    double low = yarn_correction_dim(rope->beta_fast, dim, rope->theta, L0);
    double high = yarn_correction_dim(rope->beta_slow, dim, rope->theta, L0);
    if (rope->truncate) {
        low = floor(low);
        high = ceil(high);
    }
    low = fmax(low, 0.0);
    high = fmin(high, (double)(dim - 1));
    if (low == high) high += 0.001;
    for (int64_t i = 0; i < dim / 2; i++) {
        double f = pow(rope->theta, -2.0 * (double)i / (double)dim);
        double ramp = fmin(fmax(((double)i - low) / (high - low), 0.0), 1.0);
        inv_freq[i] = (f / rope->factor) * ramp + f * (1.0 - ramp);
    }
    if (rope->attention_factor > 0.0) *cos_sin_scale = rope->attention_factor;
    else if (rope->mscale > 0.0 && rope->mscale_all_dim > 0.0)
        *cos_sin_scale = yarn_mscale(rope->factor, rope->mscale) /
                         yarn_mscale(rope->factor, rope->mscale_all_dim);
    else *cos_sin_scale = yarn_mscale(rope->factor, 1.0);
}

/* inv_freq [dim/2]: f_i = theta^(-2i/dim), then the scaling of rope->type. */
void hylo_ref_rope_frequencies(const hylo_rope_config *rope, int64_t dim, double *inv_freq,
                               double *cos_sin_scale)
{
    *cos_sin_scale = 1.0;
    if (rope->type == HYLO_ROPE_YARN) {
        yarn_frequencies(rope, dim, inv_freq, cos_sin_scale);
        return;
    }
    for (int64_t i = 0; i < dim / 2; i++) {
        double f = pow(rope->theta, -2.0 * (double)i / (double)dim);
        switch (rope->type) {
        case HYLO_ROPE_LINEAR: f /= rope->factor; break;
        case HYLO_ROPE_LLAMA3: f = llama3_frequency(rope, f); break;
        case HYLO_ROPE_DEFAULT:
        case HYLO_ROPE_YARN: break;
        }
        inv_freq[i] = f;
    }
}

/* x [heads, dim], inv_freq [dim/2]. With a = pos * inv_freq_i, c = scale cos a, s = scale sin a:
 *   x_i         <- x_i c - x_{i+dim/2} s
 *   x_{i+dim/2} <- x_{i+dim/2} c + x_i s                                                  */
void hylo_ref_rope_rotate_half(float *x, int64_t heads, int64_t dim, int64_t pos,
                               const double *inv_freq, double scale)
{
    int64_t half = dim / 2;
    for (int64_t i = 0; i < half; i++) {
        double angle = (double)pos * inv_freq[i];
        double c = scale * cos(angle), s = scale * sin(angle);
        for (int64_t h = 0; h < heads; h++) {
            float *xh = x + h * dim;
            double a = xh[i], b = xh[i + half];
            xh[i] = (float)(a * c - b * s);
            xh[i + half] = (float)(b * c + a * s);
        }
    }
}

/* x [heads, dim], inv_freq [dim/2]. The MLA rope slice rotates adjacent pairs (spec sec. 3):
 *   x_{2i}   <- x_{2i} c - x_{2i+1} s
 *   x_{2i+1} <- x_{2i+1} c + x_{2i} s,      c = scale cos(pos f_i), s = scale sin(pos f_i)  */
void hylo_ref_rope_interleaved(float *x, int64_t heads, int64_t dim, int64_t pos,
                               const double *inv_freq, double scale)
{
    for (int64_t i = 0; i < dim / 2; i++) {
        double angle = (double)pos * inv_freq[i];
        double c = scale * cos(angle), s = scale * sin(angle);
        for (int64_t h = 0; h < heads; h++) {
            float *xh = x + h * dim;
            double a = xh[2 * i], b = xh[2 * i + 1];
            xh[2 * i] = (float)(a * c - b * s);
            xh[2 * i + 1] = (float)(b * c + a * s);
        }
    }
}
