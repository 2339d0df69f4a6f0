/* attention.hip: causal attention over a cache (spec sec. 2 and 3), shared by the teacher's GQA
 * and both MLA forms. Prefill: tiles of queries against tiles of keys in shared memory with an
 * online softmax. Decode (one query): the positions split across blocks, each block's partial
 * softmax merged by a second kernel (flash decoding). fp32 throughout. */
#include <math.h>

#include "core/device.h"
#include "layers/hip_layers.h"

#define TILED_THREADS 128       /* 16 pairs of query rows x 8 column groups        */
#define TQ 32                   /* queries of a tiled block                        */
#define TK 32                   /* keys of a tiled step                            */
#define MAX_COLS 16             /* value columns a tiled thread holds: nv <= 128   */
#define SPLIT_THREADS 256
#define SPAN 128                /* positions of a decode block                     */
#define SHARED_LIMIT (48 * 1024) /* shared memory of a block without opting in      */
#define TILED_SHARED (64 * 1024) /* the tiled blocks opt in to this much (AMD's LDS) */
#define COMBINE_COLS 32         /* output columns of a combining block             */

/* Part X (ka, kb, v) of position j in group g. */
__device__ inline const float *row_of(const float *base, int64_t row, int64_t head, int64_t j,
                                      int64_t g)
{
    return base + j * row + g * head;
}

/* Block (query tile, head h): queries t0 .. t0 + TQ - 1 of head h, group g. For each key tile of
 * TK positions (up to the last position these queries see), with S the masked scaled scores of
 * the tile:
 *   m' = max(m, max_j S_ij) ;  P_ij = e^(S_ij - m') ;  l = l e^(m - m') + sum_j P_ij
 *   O_i = O_i e^(m - m') + sum_j P_ij v_j                       and finally out_i = O_i / l.
 * Thread t owns query rows r0, r0 + 1 (r0 = 2 (t / 8)): their scores against keys c0 .. c0 + 3
 * (c0 = 4 (t % 8)) and their outputs at columns t % 8 + 8 c, in registers, so that each value
 * read from shared memory feeds several multiply-adds. Shared: Q [TQ][nq + 1], K [TK][nq + 1]
 * (rows padded against bank conflicts), V [TK][nv], S [TQ][TK + 1], m, l, e^(m - m') [TQ]. */
__global__ void __launch_bounds__(TILED_THREADS) attend_tiled(hylo_hip_attend_args a)
{
    extern __shared__ float smem[];
    const int64_t nq = a.na + a.nb, nv = a.nv, qs = nq + 1, ss = TK + 1;
    const int64_t h = blockIdx.y, g = h / (a.H / a.Hkv), t0 = (int64_t)blockIdx.x * TQ;
    const int64_t rows = a.T - t0 < TQ ? a.T - t0 : TQ, first = a.len - a.T;
    float *Qs = smem, *Ks = Qs + TQ * qs, *Vs = Ks + TK * qs, *S = Vs + TK * nv;
    float *m = S + TQ * ss, *l = m + TQ, *rescale = l + TQ;
    const int r0 = (threadIdx.x / 8) * 2, c0 = (threadIdx.x % 8) * 4, lane = threadIdx.x % 8;
    const float scale = (float)a.scale;
    float acc[2][MAX_COLS];
#pragma unroll
    for (int c = 0; c < MAX_COLS; c++) acc[0][c] = acc[1][c] = 0.0f;
    for (int64_t e = threadIdx.x; e < TQ * nq; e += blockDim.x) {
        const int64_t i = e / nq, d = e % nq;
        Qs[i * qs + d] = i < rows ? a.q[((t0 + i) * a.H + h) * nq + d] : 0.0f;
    }
    for (int64_t i = threadIdx.x; i < TQ; i += blockDim.x) {
        m[i] = -INFINITY;
        l[i] = 0.0f;
    }
    __syncthreads();
    const int64_t last = first + t0 + rows - 1;
    for (int64_t k0 = 0; k0 <= last; k0 += TK) {
        for (int64_t e = threadIdx.x; e < TK * nq; e += blockDim.x) {
            const int64_t jj = e / nq, d = e % nq, j = k0 + jj;
            float v = 0.0f;
            if (j < a.len)
                v = d < a.na ? row_of(a.ka, a.ka_row, a.ka_head, j, g)[d]
                             : row_of(a.kb, a.kb_row, a.kb_head, j, g)[d - a.na];
            Ks[jj * qs + d] = v;
        }
        for (int64_t e = threadIdx.x; e < TK * nv; e += blockDim.x) {
            const int64_t j = k0 + e / nv;
            Vs[e] = j < a.len ? row_of(a.v, a.v_row, a.v_head, j, g)[e % nv] : 0.0f;
        }
        __syncthreads();
        float sc[2][4];
#pragma unroll
        for (int u = 0; u < 4; u++) sc[0][u] = sc[1][u] = 0.0f;
        for (int64_t d = 0; d < nq; d++) {
            const float q0 = Qs[r0 * qs + d], q1 = Qs[(r0 + 1) * qs + d];
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const float k = Ks[(c0 + u) * qs + d];
                sc[0][u] += q0 * k;
                sc[1][u] += q1 * k;
            }
        }
#pragma unroll
        for (int rr = 0; rr < 2; rr++)
#pragma unroll
            for (int u = 0; u < 4; u++) {
                const int64_t i = r0 + rr, j = k0 + c0 + u;
                S[i * ss + c0 + u] = i < rows && j <= first + t0 + i ? sc[rr][u] * scale : -INFINITY;
            }
        __syncthreads();
        for (int64_t i = threadIdx.x; i < TQ; i += blockDim.x) {
            float *Si = S + i * ss;
            float mx = m[i];
            for (int jj = 0; jj < TK; jj++) mx = fmaxf(mx, Si[jj]);
            float r = 1.0f, sum = 0.0f;
            if (mx == -INFINITY) {
                for (int jj = 0; jj < TK; jj++) Si[jj] = 0.0f;
            } else {
                r = expf(m[i] - mx);
                for (int jj = 0; jj < TK; jj++) {
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
        const float r_0 = rescale[r0], r_1 = rescale[r0 + 1];
#pragma unroll
        for (int c = 0; c < MAX_COLS; c++) {
            acc[0][c] *= r_0;
            acc[1][c] *= r_1;
        }
        for (int jj = 0; jj < TK; jj++) {
            const float p0 = S[r0 * ss + jj], p1 = S[(r0 + 1) * ss + jj];
            const float *vj = Vs + jj * nv;
#pragma unroll
            for (int c = 0; c < MAX_COLS; c++) {
                const int64_t d = lane + 8 * c;
                if (d < nv) {
                    acc[0][c] += p0 * vj[d];
                    acc[1][c] += p1 * vj[d];
                }
            }
        }
        __syncthreads();
    }
#pragma unroll
    for (int rr = 0; rr < 2; rr++) {
        const int64_t i = r0 + rr;
        if (i >= rows) continue;
        float *o = a.out + ((t0 + i) * a.H + h) * nv;
#pragma unroll
        for (int c = 0; c < MAX_COLS; c++) {
            const int64_t d = lane + 8 * c;
            if (d < nv) o[d] = acc[rr][c] / l[i];
        }
    }
}

/* Block (split s, group g), one query: the group's heads over positions
 * j0 = s SPAN .. j0 + n - 1. Per head: scores P = scale q.k_j, m = max P, P <- e^(P - m),
 * l = sum P, o = sum_j P_j v_j; partials o [nsplit, H, nv] and (m, l) [nsplit, H, 2].
 * Shared: Q [group][nq + 1] and P [group][SPAN + 1], rows padded so that threads reading
 * different heads at the same offset hit different banks. */
__global__ void __launch_bounds__(SPLIT_THREADS)
    attend_split(hylo_hip_attend_args a, float *part_o, float *part_ml)
{
    extern __shared__ float smem[];
    const int64_t group = a.H / a.Hkv, g = blockIdx.y, s = blockIdx.x, nq = a.na + a.nb;
    const int64_t j0 = s * SPAN, n = a.len - j0 < SPAN ? a.len - j0 : SPAN;
    const int64_t qs = nq + 1, ps = SPAN + 1; /* padded row strides */
    float *Qs = smem, *P = Qs + group * qs;
    for (int64_t e = threadIdx.x; e < group * nq; e += blockDim.x)
        Qs[(e / nq) * qs + e % nq] = a.q[g * group * nq + e];
    __syncthreads();
    for (int64_t e = threadIdx.x; e < n * group; e += blockDim.x) {
        const int64_t jj = e / group, hh = e % group, j = j0 + jj;
        const float *qa = Qs + hh * qs, *qb = qa + a.na;
        const float *ka = row_of(a.ka, a.ka_row, a.ka_head, j, g);
        float dot = 0.0f;
        for (int64_t d = 0; d < a.na; d++) dot += qa[d] * ka[d];
        if (a.nb > 0) {
            const float *kb = row_of(a.kb, a.kb_row, a.kb_head, j, g);
            for (int64_t d = 0; d < a.nb; d++) dot += qb[d] * kb[d];
        }
        P[hh * ps + jj] = dot * (float)a.scale;
    }
    __syncthreads();
    for (int64_t hh = threadIdx.x; hh < group; hh += blockDim.x) {
        float *Ph = P + hh * ps;
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
        const float *Ph = P + hh * ps;
        float acc = 0.0f;
        for (int64_t jj = 0; jj < n; jj++)
            acc += Ph[jj] * row_of(a.v, a.v_row, a.v_head, j0 + jj, g)[d];
        part_o[(s * a.H + g * group + hh) * a.nv + d] = acc;
    }
}

/* Block (column block, h), COMBINE_COLS output columns from d0, the splits spread over the
 * threads: M = max_s m_s, w_s = e^(m_s - M), out[h, d] = sum_s w_s o_s[d] / sum_s w_s l_s. */
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    attend_combine(const float *part_o, const float *part_ml, int64_t nsplit, int64_t H,
                   int64_t nv, float *out)
{
    __shared__ float red[HYLO_HIP_THREADS];
    __shared__ float sums[HYLO_HIP_THREADS][COMBINE_COLS + 1];
    const int64_t h = blockIdx.y, d0 = (int64_t)blockIdx.x * COMBINE_COLS;
    const int64_t width = nv - d0 < COMBINE_COLS ? nv - d0 : COMBINE_COLS;
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
    float l = 0.0f, acc[COMBINE_COLS];
#pragma unroll
    for (int c = 0; c < COMBINE_COLS; c++) acc[c] = 0.0f;
    for (int64_t s = threadIdx.x; s < nsplit; s += blockDim.x) {
        const float *ml = part_ml + (s * H + h) * 2, *o = part_o + (s * H + h) * nv + d0;
        const float w = expf(ml[0] - M);
        l += w * ml[1];
#pragma unroll
        for (int c = 0; c < COMBINE_COLS; c++)
            if (c < width) acc[c] += w * o[c];
    }
    const float L = hylo_block_sum(l, red);
#pragma unroll
    for (int c = 0; c < COMBINE_COLS; c++) sums[threadIdx.x][c] = acc[c];
    __syncthreads();
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        float total = 0.0f;
        for (unsigned t = 0; t < blockDim.x; t++) total += sums[t][c];
        out[h * nv + d0 + c] = total / L;
    }
}

static size_t tiled_bytes(const hylo_hip_attend_args *a)
{
    const int64_t qs = a->na + a->nb + 1;
    return (size_t)(TQ * qs + TK * qs + TK * a->nv + TQ * (TK + 1) + 3 * TQ) * sizeof(float);
}

void hylo_hip_attend(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    if (a->T <= 0 || !hylo_hip_ok(ctx)) return;
    const hipStream_t stream = hylo_hip_stream(ctx);
    const int64_t nq = a->na + a->nb;
    if (a->T > 1) {
        const size_t shared = tiled_bytes(a);
        if (shared > TILED_SHARED || a->nv > 8 * MAX_COLS) {
            hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: attention heads of %lld + %lld dims "
                          "do not fit a tile", (long long)nq, (long long)a->nv);
            return;
        }
        if (shared > SHARED_LIMIT &&
            !hylo_hip_check(ctx, hipFuncSetAttribute((const void *)attend_tiled,
                                                     hipFuncAttributeMaxDynamicSharedMemorySize,
                                                     (int)shared),
                            "attention shared memory"))
            return;
        const dim3 grid((unsigned)((a->T + TQ - 1) / TQ), (unsigned)a->H);
        attend_tiled<<<grid, TILED_THREADS, shared, stream>>>(*a);
        hylo_hip_launched(ctx, "attention (tiled)");
        return;
    }
    const int64_t group = a->H / a->Hkv, nsplit = (a->len + SPAN - 1) / SPAN;
    const size_t shared = (size_t)(group * (nq + 1) + group * (SPAN + 1)) * sizeof(float);
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
    const dim3 columns((unsigned)((a->nv + COMBINE_COLS - 1) / COMBINE_COLS), (unsigned)a->H);
    attend_combine<<<columns, HYLO_HIP_THREADS, 0, stream>>>(part, part_ml, nsplit, a->H, a->nv,
                                                             a->out);
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
