/* rope.hip: rotary position embedding (spec sec. 2 and 6): the teacher's rotate-half pairs and
 * the MLA slice's adjacent pairs. Angles, cos and sin in double as the reference computes them
 * (positions reach millions of radians). */
#include "core/device.h"
#include "layers/hip_layers.h"

/* Pair i (i < dim/2) of the slice xh at position p: with a = p inv_freq_i, c = scale cos a,
 * s = scale sin a, the pair (u, w) = (x_i, x_{i + dim/2}) or, interleaved, (x_{2i}, x_{2i+1})
 * becomes
 *   u <- u c - w s ,  w <- w c + u s
 * Returns the pair's two indices (iu, iw). */
__device__ inline int2 rotate_pair(float *xh, int64_t i, int64_t dim, int64_t p,
                                   const double *inv_freq, double scale, bool interleaved)
{
    double sin_a, cos_a;
    sincos((double)p * inv_freq[i], &sin_a, &cos_a);
    const double c = scale * cos_a, s = scale * sin_a;
    const int iu = (int)(interleaved ? 2 * i : i), iw = (int)(interleaved ? 2 * i + 1 : i + dim / 2);
    const double u = xh[iu], w = xh[iw];
    xh[iu] = (float)(u * c - w * s);
    xh[iw] = (float)(w * c + u * s);
    return make_int2(iu, iw);
}

/* Item (t, h, i): pair i of slice x + t row_stride + h head_stride to position p0 + t
 * (p0 = hylo_pos(pos0)). One pair per item, its angle computed by its own thread: no thread
 * walks the heads in a dependent chain. */
__global__ void rope_kernel(float *x, int64_t T, int64_t heads, int64_t dim, int64_t row_stride,
                            int64_t head_stride, hylo_hip_pos pos0, const double *inv_freq,
                            double scale, bool interleaved)
{
    const int64_t half = dim / 2, p0 = hylo_pos(pos0);
    for (int64_t item = hylo_first(); item < T * heads * half; item += hylo_stride()) {
        const int64_t i = item % half, th = item / half, t = th / heads, h = th % heads;
        rotate_pair(x + t * row_stride + h * head_stride, i, dim, p0 + t, inv_freq, scale,
                    interleaved);
    }
}

/* The attention block's RoPE and cache append in one launch, at positions p0 + t:
 *   q [T, H, hd], k [T, Hkv, hd] <- RoPE(q), RoPE(k)        (rotate-half pairs, in place)
 *   k_cache, v_cache [p0 + t] <- k [t], v [t]                (rows of Hkv hd, the caches' type)
 * Items: the T H hd/2 query pairs, the T Hkv hd/2 key pairs (each stored by the thread that
 * rotates it), then the T Hkv hd values. */
template <typename C>
__global__ void rope_store_kernel(float *q, float *k, const float *v, C *k_cache, C *v_cache,
                                  int64_t T, int64_t H, int64_t Hkv, int64_t hd, hylo_hip_pos pos0,
                                  const double *inv_freq, double scale)
{
    const int64_t half = hd / 2, p0 = hylo_pos(pos0), row = Hkv * hd;
    const int64_t nq = T * H * half, nk = T * Hkv * half, nv = T * row;
    for (int64_t item = hylo_first(); item < nq + nk + nv; item += hylo_stride()) {
        if (item < nq) {
            const int64_t i = item % half, th = item / half;
            rotate_pair(q + th * hd, i, hd, p0 + th / H, inv_freq, scale, false);
        } else if (item < nq + nk) {
            const int64_t i = (item - nq) % half, th = (item - nq) / half, t = th / Hkv;
            float *kh = k + th * hd;
            const int2 pair = rotate_pair(kh, i, hd, p0 + t, inv_freq, scale, false);
            C *cached = k_cache + (p0 + t) * row + th % Hkv * hd;
            hylo_store(cached, pair.x, kh[pair.x]);
            hylo_store(cached, pair.y, kh[pair.y]);
        } else {
            const int64_t e = item - nq - nk;
            hylo_store(v_cache + p0 * row, e, v[e]);
        }
    }
}

void hylo_hip_rope_store(void *vctx, float *q, float *k, const float *v, int64_t T, int64_t H,
                         int64_t Hkv, int64_t hd, int64_t pos0, const double *inv_freq,
                         double scale, float *k_cache, float *v_cache)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const double *f = hylo_hip_find_f64(ctx, inv_freq, "the rope frequencies");
    if (!f || T <= 0 || !hylo_hip_ok(ctx)) return;
    const hylo_hip_pos p0 = hylo_hip_pos_of(ctx, pos0);
    const unsigned blocks = hylo_hip_blocks(T * (H + Hkv) * (hd / 2) + T * Hkv * hd);
    const hipStream_t stream = hylo_hip_stream(ctx);
    if (ctx->bf16)
        rope_store_kernel<<<blocks, HYLO_HIP_THREADS, 0, stream>>>(
            q, k, v, (uint16_t *)k_cache, (uint16_t *)v_cache, T, H, Hkv, hd, p0, f, scale);
    else
        rope_store_kernel<<<blocks, HYLO_HIP_THREADS, 0, stream>>>(q, k, v, k_cache, v_cache, T,
                                                                   H, Hkv, hd, p0, f, scale);
    hylo_hip_launched(ctx, "rope and cache append");
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
