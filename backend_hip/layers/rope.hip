/* rope.hip: rotary position embedding (spec sec. 2 and 6): the teacher's rotate-half pairs and
 * the MLA slice's adjacent pairs. Angles, cos and sin in double as the reference computes them
 * (positions reach millions of radians). */
#include "core/device.h"
#include "layers/hip_layers.h"

/* Item (t, h, i), i < dim/2: with a = (p0 + t) inv_freq_i (p0 = hylo_pos(pos0)), c = scale cos a,
 * s = scale sin a,
 * the pair (u, w) of slice x + t row_stride + h head_stride becomes
 *   u <- u c - w s ,  w <- w c + u s
 * where (u, w) = (x_i, x_{i + dim/2}) or, interleaved, (x_{2i}, x_{2i+1}). One pair per item,
 * its angle computed by its own thread: no thread walks the heads in a dependent chain. */
__global__ void rope_kernel(float *x, int64_t T, int64_t heads, int64_t dim, int64_t row_stride,
                            int64_t head_stride, hylo_hip_pos pos0, const double *inv_freq,
                            double scale, bool interleaved)
{
    const int64_t half = dim / 2, p0 = hylo_pos(pos0);
    for (int64_t item = hylo_first(); item < T * heads * half; item += hylo_stride()) {
        const int64_t i = item % half, th = item / half, t = th / heads, h = th % heads;
        double sin_a, cos_a;
        sincos((double)(p0 + t) * inv_freq[i], &sin_a, &cos_a);
        const double c = scale * cos_a, s = scale * sin_a;
        const int64_t iu = interleaved ? 2 * i : i, iw = interleaved ? 2 * i + 1 : i + half;
        float *xh = x + t * row_stride + h * head_stride;
        const double u = xh[iu], w = xh[iw];
        xh[iu] = (float)(u * c - w * s);
        xh[iw] = (float)(w * c + u * s);
    }
}

void hylo_hip_rope_rows(hylo_hip_ctx *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                        int64_t row_stride, int64_t head_stride, hylo_hip_pos pos0,
                        const double *inv_freq, double scale, bool interleaved)
{
    if (T <= 0 || dim < 2 || !hylo_hip_ok(ctx)) return;
    rope_kernel<<<hylo_hip_blocks(T * heads * (dim / 2)), HYLO_HIP_THREADS, 0,
                  hylo_hip_stream(ctx)>>>(
        x, T, heads, dim, row_stride, head_stride, pos0, inv_freq, scale, interleaved);
    hylo_hip_launched(ctx, "rope");
}

/* x [T, heads, dim] in place; inv_freq [dim/2] the model's host table (uploaded). */
void hylo_hip_rope_rotate_half(void *vctx, float *x, int64_t T, int64_t heads, int64_t dim,
                               int64_t pos0, const double *inv_freq, double scale)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const double *f = hylo_hip_find_f64(ctx, inv_freq, "the rope frequencies");
    if (f)
        hylo_hip_rope_rows(ctx, x, T, heads, dim, heads * dim, dim, hylo_hip_pos_of(ctx, pos0), f,
                           scale, false);
}
