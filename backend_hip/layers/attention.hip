/* attention.hip: causal attention over a cache (spec sec. 2 and 3), shared by the teacher's GQA
 * and both MLA forms. Prefill: tiles of queries against tiles of keys in shared memory with an
 * online softmax. Decode (one query): the positions split across blocks, each block's partial
 * softmax merged by a second kernel (flash decoding). fp32 throughout. */
#include <math.h>

#include "core/device.h"
#include "layers/hip_layers.h"

#define TILED_THREADS 128
#define QUERY_TILE 16           /* queries of a tiled block                     */
#define SPLIT_THREADS 256
#define SPAN 128                /* positions of a decode block                  */
#define SHARED_LIMIT (48 * 1024) /* bytes of shared memory a block may take      */

/* Part X (ka, kb, v) of position j in group g. */
__device__ inline const float *row_of(const float *base, int64_t row, int64_t head, int64_t j,
                                      int64_t g)
{
    return base + j * row + g * head;
}

/* Block (query tile, head h): queries t0 .. t0 + QUERY_TILE - 1 of head h, group g. For each
 * key tile of BK positions (up to the last position these queries see), with S the masked
 * scaled scores of the tile:
 *   m' = max(m, max_j S_ij) ;  P_ij = e^(S_ij - m') ;  l = l e^(m - m') + sum_j P_ij
 *   O_i = O_i e^(m - m') + sum_j P_ij v_j                       and finally out_i = O_i / l.
 * Shared: Q [QT][nq], K [BK][nq + 1] (padded against bank conflicts), V [BK][nv], S [QT][BK],
 * O [QT][nv], m, l, e^(m - m') [QT]. */
__global__ void __launch_bounds__(TILED_THREADS)
    attend_tiled(hylo_hip_attend_args a, int BK)
{
    extern __shared__ float smem[];
    const int64_t nq = a.na + a.nb, nv = a.nv, QT = QUERY_TILE;
    const int64_t h = blockIdx.y, g = h / (a.H / a.Hkv), t0 = (int64_t)blockIdx.x * QT;
    const int64_t rows = a.T - t0 < QT ? a.T - t0 : QT, first = a.len - a.T;
    float *Qs = smem, *Ks = Qs + QT * nq, *Vs = Ks + BK * (nq + 1), *S = Vs + BK * nv;
    float *O = S + QT * BK, *m = O + QT * nv, *l = m + QT, *rescale = l + QT;
    const float scale = (float)a.scale;
    for (int64_t e = threadIdx.x; e < QT * nq; e += blockDim.x) {
        const int64_t i = e / nq;
        Qs[e] = i < rows ? a.q[((t0 + i) * a.H + h) * nq + e % nq] : 0.0f;
    }
    for (int64_t e = threadIdx.x; e < QT * nv; e += blockDim.x) O[e] = 0.0f;
    for (int64_t i = threadIdx.x; i < QT; i += blockDim.x) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    __syncthreads();
    const int64_t last = first + t0 + rows - 1;
    for (int64_t k0 = 0; k0 <= last; k0 += BK) {
        for (int64_t e = threadIdx.x; e < BK * nq; e += blockDim.x) {
            const int64_t jj = e / nq, d = e % nq, j = k0 + jj;
            float v = 0.0f;
            if (j < a.len)
                v = d < a.na ? row_of(a.ka, a.ka_row, a.ka_head, j, g)[d]
                             : row_of(a.kb, a.kb_row, a.kb_head, j, g)[d - a.na];
            Ks[jj * (nq + 1) + d] = v;
        }
        for (int64_t e = threadIdx.x; e < BK * nv; e += blockDim.x) {
            const int64_t j = k0 + e / nv;
            Vs[e] = j < a.len ? row_of(a.v, a.v_row, a.v_head, j, g)[e % nv] : 0.0f;
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < QT * BK; e += blockDim.x) {
            const int64_t i = e / BK, jj = e % BK;
            float s = -INFINITY;
            if (i < rows && k0 + jj <= first + t0 + i) {
                const float *qi = Qs + i * nq, *kj = Ks + jj * (nq + 1);
                float dot = 0.0f;
                for (int64_t d = 0; d < nq; d++) dot += qi[d] * kj[d];
                s = dot * scale;
            }
            S[e] = s;
        }
        __syncthreads();
        for (int64_t i = threadIdx.x; i < QT; i += blockDim.x) {
            float *Si = S + i * BK;
            float mx = m[i];
            for (int64_t jj = 0; jj < BK; jj++) mx = fmaxf(mx, Si[jj]);
            float r = 1.0f, sum = 0.0f;
            if (mx == -INFINITY) {
                for (int64_t jj = 0; jj < BK; jj++) Si[jj] = 0.0f;
            } else {
                r = expf(m[i] - mx);
                for (int64_t jj = 0; jj < BK; jj++) {
                    const float p = expf(Si[jj] - mx);
                    Si[jj] = p;
                    sum += p;
                }
            }
            l[i] = l[i] * r + sum;
            m[i] = mx;
            rescale[i] = r;
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < QT * nv; e += blockDim.x) {
            const int64_t i = e / nv, d = e % nv;
            const float *Si = S + i * BK;
            float acc = O[e] * rescale[i];
            for (int64_t jj = 0; jj < BK; jj++) acc += Si[jj] * Vs[jj * nv + d];
            O[e] = acc;
        }
        __syncthreads();
    }
    for (int64_t e = threadIdx.x; e < rows * nv; e += blockDim.x) {
        const int64_t i = e / nv;
        a.out[((t0 + i) * a.H + h) * nv + e % nv] = O[e] / l[i];
    }
}

/* Block (split s, group g), one query: the group's heads over positions
 * j0 = s SPAN .. j0 + n - 1. Per head: scores P = scale q.k_j, m = max P, P <- e^(P - m),
 * l = sum P, o = sum_j P_j v_j; partials o [nsplit, H, nv] and (m, l) [nsplit, H, 2]. */
__global__ void __launch_bounds__(SPLIT_THREADS)
    attend_split(hylo_hip_attend_args a, float *part_o, float *part_ml)
{
    extern __shared__ float smem[];
    const int64_t group = a.H / a.Hkv, g = blockIdx.y, s = blockIdx.x, nq = a.na + a.nb;
    const int64_t j0 = s * SPAN, n = a.len - j0 < SPAN ? a.len - j0 : SPAN;
    float *Qs = smem, *P = Qs + group * nq;
    for (int64_t e = threadIdx.x; e < group * nq; e += blockDim.x)
        Qs[e] = a.q[g * group * nq + e];
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n * group; e += blockDim.x) {
        const int64_t jj = e / group, hh = e % group, j = j0 + jj;
        const float *qa = Qs + hh * nq, *qb = qa + a.na;
        const float *ka = row_of(a.ka, a.ka_row, a.ka_head, j, g);
        float dot = 0.0f;
        for (int64_t d = 0; d < a.na; d++) dot += qa[d] * ka[d];
        if (a.nb > 0) {
            const float *kb = row_of(a.kb, a.kb_row, a.kb_head, j, g);
            for (int64_t d = 0; d < a.nb; d++) dot += qb[d] * kb[d];
        }
        P[hh * SPAN + jj] = dot * (float)a.scale;
    }
    __syncthreads();
    for (int64_t hh = threadIdx.x; hh < group; hh += blockDim.x) {
        float *Ph = P + hh * SPAN;
        float mx = -INFINITY, sum = 0.0f;
        for (int64_t jj = 0; jj < n; jj++) mx = fmaxf(mx, Ph[jj]);
        for (int64_t jj = 0; jj < n; jj++) {
            Ph[jj] = expf(Ph[jj] - mx);
            sum += Ph[jj];
        }
        float *ml = part_ml + (s * a.H + g * group + hh) * 2;
        ml[0] = mx;
        ml[1] = sum;
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < group * a.nv; e += blockDim.x) {
        const int64_t hh = e / a.nv, d = e % a.nv;
        const float *Ph = P + hh * SPAN;
        float acc = 0.0f;
        for (int64_t jj = 0; jj < n; jj++)
            acc += Ph[jj] * row_of(a.v, a.v_row, a.v_head, j0 + jj, g)[d];
        part_o[(s * a.H + g * group + hh) * a.nv + d] = acc;
    }
}

/* Block h: M = max_s m_s, w_s = e^(m_s - M), out[h] = sum_s w_s o_s / sum_s w_s l_s. */
__global__ void attend_combine(const float *part_o, const float *part_ml, int64_t nsplit,
                               int64_t H, int64_t nv, float *out)
{
    __shared__ float red[HYLO_HIP_THREADS];
    const int64_t h = blockIdx.x;
    float mx = -INFINITY;
    for (int64_t s = threadIdx.x; s < nsplit; s += blockDim.x)
        mx = fmaxf(mx, part_ml[(s * H + h) * 2]);
    red[threadIdx.x] = mx;
    __syncthreads();
    for (unsigned k = blockDim.x / 2; k > 0; k >>= 1) {
        if (threadIdx.x < k) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + k]);
        __syncthreads();
    }
    const float M = red[0];
    __syncthreads();
    float l = 0.0f;
    for (int64_t s = threadIdx.x; s < nsplit; s += blockDim.x) {
        const float *ml = part_ml + (s * H + h) * 2;
        l += expf(ml[0] - M) * ml[1];
    }
    const float L = hylo_block_sum(l, red);
    for (int64_t d = threadIdx.x; d < nv; d += blockDim.x) {
        float acc = 0.0f;
        for (int64_t s = 0; s < nsplit; s++)
            acc += expf(part_ml[(s * H + h) * 2] - M) * part_o[(s * H + h) * nv + d];
        out[h * nv + d] = acc / L;
    }
}

static size_t tiled_bytes(const hylo_hip_attend_args *a, int64_t BK)
{
    const int64_t nq = a->na + a->nb, QT = QUERY_TILE;
    return (size_t)(QT * nq + BK * (nq + 1) + BK * a->nv + QT * BK + QT * a->nv + 3 * QT) *
           sizeof(float);
}

void hylo_hip_attend(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    if (a->T <= 0 || !hylo_hip_ok(ctx)) return;
    const hipStream_t stream = hylo_hip_stream(ctx);
    const int64_t nq = a->na + a->nb;
    if (a->T > 1) {
        int64_t BK = 64;
        while (BK > 8 && tiled_bytes(a, BK) > SHARED_LIMIT) BK /= 2;
        if (tiled_bytes(a, BK) > SHARED_LIMIT) {
            hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: attention heads of %lld + %lld dims "
                          "do not fit a tile", (long long)nq, (long long)a->nv);
            return;
        }
        const dim3 grid((unsigned)((a->T + QUERY_TILE - 1) / QUERY_TILE), (unsigned)a->H);
        attend_tiled<<<grid, TILED_THREADS, tiled_bytes(a, BK), stream>>>(*a, (int)BK);
        hylo_hip_launched(ctx, "attention (tiled)");
        return;
    }
    const int64_t group = a->H / a->Hkv, nsplit = (a->len + SPAN - 1) / SPAN;
    const size_t shared = (size_t)(group * nq + group * SPAN) * sizeof(float);
    if (shared > SHARED_LIMIT) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: %lld heads of %lld dims per group do "
                      "not fit a decode block", (long long)group, (long long)nq);
        return;
    }
    float *part = (float *)hylo_hip_workspace(
        ctx, HYLO_HIP_OP, (size_t)(nsplit * a->H * (a->nv + 2)) * sizeof(float));
    if (!part) return;
    float *part_ml = part + nsplit * a->H * a->nv;
    attend_split<<<dim3((unsigned)nsplit, (unsigned)a->Hkv), SPLIT_THREADS, shared, stream>>>(
        *a, part, part_ml);
    if (!hylo_hip_launched(ctx, "attention (split)")) return;
    attend_combine<<<(unsigned)a->H, HYLO_HIP_THREADS, 0, stream>>>(part, part_ml, nsplit, a->H,
                                                                    a->nv, a->out);
    hylo_hip_launched(ctx, "attention (combine)");
}

/* q [T, H, hd], k_cache, v_cache [len, Hkv, hd], out [T, H, hd]. */
hylo_status hylo_hip_attention(void *vctx, const float *q, const float *k_cache,
                               const float *v_cache, float *out, int64_t T, int64_t len,
                               int64_t H, int64_t Hkv, int64_t hd, double scale, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const hylo_hip_attend_args a = {q,  hd,      0,   hd,  k_cache, NULL, v_cache,
                                    Hkv * hd, hd, 0, 0, Hkv * hd, hd, out, T, len, H, Hkv,
                                    scale};
    hylo_hip_attend(ctx, &a);
    return hylo_hip_status(ctx, err);
}
