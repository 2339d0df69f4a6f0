/* rope.hip: rotary position embedding (spec sec. 2 and 6): the teacher's rotate-half pairs and
 * the MLA slice's adjacent pairs. Angles, cos and sin in double as the reference computes them
 * (positions reach millions of radians). */
#include "core/device.h"
#include "layers/hip_layers.h"

/* The indices (iu, iw) of pair i (i < dim/2) of a slice: (i, i + dim/2), or interleaved
 * (2i, 2i + 1). */
__device__ inline int2 pair_of(int64_t i, int64_t dim, bool interleaved)
{
    return interleaved ? make_int2((int)(2 * i), (int)(2 * i + 1))
                       : make_int2((int)i, (int)(i + dim / 2));
}

/* Pair i (i < dim/2) of the slice xh at position p: with a = p inv_freq_i, c = scale cos a,
 * s = scale sin a, the pair (u, w) = (x_iu, x_iw) becomes
 *   u <- u c - w s ,  w <- w c + u s
 * Returns the pair's two indices. */
__device__ inline int2 rotate_pair(float *xh, int64_t i, int64_t dim, int64_t p,
                                   const double *inv_freq, double scale, bool interleaved)
{
    double sin_a, cos_a;
    sincos((double)p * inv_freq[i], &sin_a, &cos_a);
    const double c = scale * cos_a, s = scale * sin_a;
    const int2 pair = pair_of(i, dim, interleaved);
    const double u = xh[pair.x], w = xh[pair.y];
    xh[pair.x] = (float)(u * c - w * s);
    xh[pair.y] = (float)(w * c + u * s);
    return pair;
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

/* A layer's RoPE and cache append in one launch (hylo_hip_rope_append_args), at positions
 * p0 + t:
 *   q_h [dim] at q + (t H + h) q_head <- RoPE(q_h)         k [T, Hkv, dim] <- RoPE(k) (or raw)
 *   k_cache [p0 + t] <- k [t]  (rows of Hkv dim)           v_cache [p0 + t] <- v [t]  (rows of
 *                                                          v_width; both in the caches' type)
 *   with q_cat: q_cat[h] = [q_h before the slice . W | the rotated slice]
 * Items: the T H dim/2 query pairs (each also copied into q_cat by the thread that rotates it),
 * the T Hkv dim/2 key pairs (each stored by the thread that rotates it), the T v_width
 * values, then the H w_cols products (a thread's loads issued together). */
template <typename C>
__global__ void rope_append_kernel(hylo_hip_rope_append_args a)
{
    const int64_t half = a.dim / 2, p0 = hylo_pos(a.pos0), row = a.Hkv * a.dim;
    const int64_t nq = a.T * a.H * half, nk = a.T * a.Hkv * half, nv = a.T * a.v_width;
    const int64_t np = a.q_cat ? a.H * a.w_cols : 0, cat = a.w_cols + a.dim;
    for (int64_t item = hylo_first(); item < nq + nk + nv + np; item += hylo_stride()) {
        if (item < nq) {
            const int64_t i = item % half, th = item / half;
            float *qh = a.q + th * a.q_head;
            const int2 pair = rotate_pair(qh, i, a.dim, p0 + th / a.H, a.inv_freq, a.scale,
                                          a.interleaved);
            if (!a.q_cat) continue;
            a.q_cat[th * cat + a.w_cols + pair.x] = qh[pair.x];
            a.q_cat[th * cat + a.w_cols + pair.y] = qh[pair.y];
        } else if (item < nq + nk) {
            const int64_t i = (item - nq) % half, th = (item - nq) / half, t = th / a.Hkv;
            float *kh = a.k + th * a.dim;
            const int2 pair = a.raw_k ? pair_of(i, a.dim, a.interleaved)
                                      : rotate_pair(kh, i, a.dim, p0 + t, a.inv_freq, a.scale,
                                                    a.interleaved);
            C *cached = (C *)a.k_cache + (p0 + t) * row + th % a.Hkv * a.dim;
            hylo_store(cached, pair.x, kh[pair.x]);
            hylo_store(cached, pair.y, kh[pair.y]);
        } else if (item < nq + nk + nv) {
            const int64_t e = item - nq - nk;
            hylo_store((C *)a.v_cache + p0 * a.v_width, e, a.v[e]);
        } else {
            const int64_t e = item - nq - nk - nv, h = e / a.w_cols, c = e % a.w_cols;
            const float *qh = a.q + h * a.q_head - a.q_off;
            const float *w = a.w + h / a.w_group * a.w_head + c;
            float acc = 0.0f;
#pragma unroll 32
            for (int64_t i = 0; i < a.q_off; i++) acc += qh[i] * w[i * a.w_cols];
            a.q_cat[h * cat + c] = acc;
        }
    }
}

void hylo_hip_rope_append(hylo_hip_ctx *ctx, const hylo_hip_rope_append_args *a)
{
    if (a->T <= 0 || !hylo_hip_ok(ctx)) return;
    if (a->q_cat && a->T != 1) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: absorbed queries of one token only");
        return;
    }
    const unsigned blocks = hylo_hip_blocks(a->T * (a->H + a->Hkv) * (a->dim / 2) +
                                            a->T * a->v_width + (a->q_cat ? a->H * a->w_cols : 0));
    const hipStream_t stream = hylo_hip_stream(ctx);
    if (ctx->bf16) rope_append_kernel<uint16_t><<<blocks, HYLO_HIP_THREADS, 0, stream>>>(*a);
    else rope_append_kernel<float><<<blocks, HYLO_HIP_THREADS, 0, stream>>>(*a);
    hylo_hip_launched(ctx, "rope and cache append");
}

void hylo_hip_rope_store(void *vctx, float *q, float *k, const float *v, int64_t T, int64_t H,
                         int64_t Hkv, int64_t hd, int64_t pos0, const double *inv_freq,
                         double scale, float *k_cache, float *v_cache)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const double *f = hylo_hip_find_f64(ctx, inv_freq, "the rope frequencies");
    if (!f) return;
    hylo_hip_rope_append_args a = {};
    a.q = q;
    a.H = H;
    a.q_head = hd;
    a.k = k;
    a.Hkv = Hkv;
    a.v = v;
    a.v_width = Hkv * hd;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.T = T;
    a.dim = hd;
    a.pos0 = hylo_hip_pos_of(ctx, pos0);
    a.inv_freq = f;
    a.scale = scale;
    hylo_hip_rope_append(ctx, &a);
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
