/* attention.hip: causal attention over a cache (spec sec. 2 and 3), shared by the teacher's GQA
 * and both MLA forms. Prefill of GEMM_MIN_T queries or more: over bf16 caches the flash kernel
 * of flash.hip where it handles the heads (one kernel on the tensor cores); otherwise blocks
 * of query rows through the GEMM launcher (scores, a softmax row kernel, values; bf16 operands
 * on the tensor cores over bf16 caches, fp32 otherwise). Smaller prefills (and the fallback
 * when the GEMM path's workspace cannot be had): tiles of queries against tiles of keys in
 * shared memory with an online softmax. Decode (one query): the positions split across
 * blocks, each block's partial softmax merged by a second kernel (flash decoding). Keys and
 * values are read in the caches' type (fp32, or bf16 in a bf16 context); fp32 arithmetic and
 * accumulation throughout, the flash and GEMM paths' bf16 operands (queries, probabilities)
 * rounded once.
 *
 * Environment (comparisons and checks): HYLO_HIP_ATTENTION=tiled keeps every prefill on the
 * tiled kernel, =gemm sends every prefill (T > 1) through the GEMMs, =flash every bf16 prefill
 * (T > 1) that the flash kernel handles through it; HYLO_HIP_ATTENTION_BUDGET (bytes) replaces
 * HYLO_HIP_OP_BUDGET. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"
#include "layers/hip_layers.h"

#define TILED_THREADS 128       /* 16 pairs of query rows x 8 column groups        */
#define TQ 32                   /* queries of a tiled block                        */
#define TK 32                   /* keys of a tiled step                            */
#define MAX_COLS 16             /* value columns a tiled thread holds: nv <= 128   */
#define SPLIT_THREADS 256       /* threads of a decode block                       */
#define MAX_SPAN 256            /* positions of a decode block, at most            */
#define HEAD_BLOCK 4            /* heads a decode thread sums values for           */
#define MAX_GROUP 32            /* query heads per KV group a decode block serves  */
#define SHARED_LIMIT (48 * 1024) /* shared memory of a block without opting in      */
#define TILED_SHARED (64 * 1024) /* blocks opt in to this much (AMD's LDS)          */
#define COMBINE_COLS 32         /* output columns of a combining block             */
#define PAD 8                   /* query rows of a decode block: multiples of 8    */
#define GEMM_MIN_T 64           /* prefills of this many queries go through GEMMs  */
#define LONG_ROWS 128                     /* query rows a block holds at any context      */
#define GEMM_MAX_ROWS 512       /* query rows of a block at most: the scores of the  */
                                /* diagonal block's upper half, computed and masked, */
                                /* stay a small part (6% at 8K)                     */
#define GEMM_ROW_ALIGN 64       /* blocks short of the last: multiples of this many  */
#define SCORE_ALIGN 8           /* score rows padded to 8 values (16-byte bf16 rows) */
#define SOFTMAX_THREADS 256     /* threads of a softmax row block                  */

/* Part X (ka, kb, v) of position j in group g, in the caches' type C. */
template <typename C>
__device__ inline const C *row_of(const void *base, int64_t row, int64_t head, int64_t j,
                                  int64_t g)
{
    return (const C *)base + j * row + g * head;
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
template <typename C>
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
                v = d < a.na ? hylo_load(row_of<C>(a.ka, a.ka_row, a.ka_head, j, g), d)
                             : hylo_load(row_of<C>(a.kb, a.kb_row, a.kb_head, j, g), d - a.na);
            Ks[jj * qs + d] = v;
        }
        for (int64_t e = threadIdx.x; e < TK * nv; e += blockDim.x) {
            const int64_t j = k0 + e / nv;
            Vs[e] = j < a.len ? hylo_load(row_of<C>(a.v, a.v_row, a.v_head, j, g), e % nv) : 0.0f;
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

/* acc[hh] += Q_hh [q0 .. q0 + n) . k [n] for the group's heads hh < group: k read in 16-byte
 * chunks when `vec` (n and k's address multiples of a chunk), else value by value. Q rows hold
 * na + nb values then at least PAD zeros (qs = na + nb rounded up to PAD, plus PAD), so a
 * chunk's reads past n (up to q0 + n + 7) stay inside the row and meet zeros or the next part's
 * values times a zero key. */
template <typename C>
__device__ inline void score_part(float (&acc)[MAX_GROUP], const float *Qs, int64_t qs,
                                  int64_t q0, const C *k, int64_t n, int64_t group, bool vec)
{
    constexpr int per = 16 / sizeof(C); /* values of a 16-byte chunk: 4 fp32 or 8 bf16 */
#pragma unroll 4
    for (int64_t d = 0; d < n; d += per) {
        float kv[per];
        if (vec) {
            hylo_load16(k + d, kv);
        } else {
#pragma unroll
            for (int u = 0; u < per; u++) kv[u] = d + u < n ? hylo_load(k, d + u) : 0.0f;
        }
#pragma unroll
        for (int hh = 0; hh < MAX_GROUP; hh++) {
            if (hh >= group) break;
            const float *qh = Qs + hh * qs + q0 + d;
#pragma unroll
            for (int u = 0; u < per; u++) acc[hh] += qh[u] * kv[u];
        }
    }
}

/* The max (or the sum) of v over each segment of `lanes` consecutive threads (a power of two),
 * returned to the segment's threads; red [blockDim.x] in shared memory. */
__device__ inline float segment_reduce(float v, float *red, int64_t lanes, bool max)
{
    const int64_t lane = threadIdx.x % lanes;
    red[threadIdx.x] = v;
    __syncthreads();
    for (int64_t s = lanes / 2; s > 0; s >>= 1) {
        if (lane < s) {
            const float o = red[threadIdx.x + s];
            red[threadIdx.x] = max ? fmaxf(red[threadIdx.x], o) : red[threadIdx.x] + o;
        }
        __syncthreads();
    }
    const float r = red[threadIdx.x - lane];
    __syncthreads();
    return r;
}

/* How a decode block works through its positions (chosen on the host, see attend_decode). */
typedef struct {
    int64_t span;    /* positions of a block                                              */
    int64_t heads;   /* query heads of a block: the group's, or a slice of them           */
    int64_t slices;  /* blocks that share a group's positions, each with its heads        */
    int64_t heads2;  /* `heads` rounded up to a power of two                              */
    int64_t subsets; /* key subsets summed apart in the value pass (chunked values)       */
    bool vec_k;      /* key rows of whole 16-byte chunks, 16-byte aligned                 */
    bool vec_v;      /* value rows likewise                                               */
} split_plan;

/* Block (split s, slice y of group g = y / slices), one query: the slice's heads (plan.heads
 * of the group's, from (y % slices) plan.heads) over positions j0 = s span .. j0 + n - 1.
 *   scores:  thread jj computes P_hh,jj = scale q_hh . k_(j0+jj) for every head hh of the group
 *            (the key row read once, in 16-byte chunks);
 *   softmax: per head, over a segment of blockDim / heads2 threads,
 *            m = max P ,  P <- e^(P - m) ,  l = sum P ;
 *   values:  o_hh = sum_j P_hh,j v_j. With chunked value rows, thread (chunk c, head block
 *            hb, key subset ks) reads one 16-byte chunk of v per position (adjacent threads,
 *            adjacent chunks) and accumulates it for HEAD_BLOCK heads over the positions
 *            ks, ks + subsets, ...; the subsets' sums are then added in a fixed order (the
 *            result does not depend on scheduling). Otherwise thread (hh, d) sums column d.
 * Partials o [nsplit, H, nv] and (m, l) [nsplit, H, 2]. Shared: Q [heads][qs] (see
 * score_part), P [heads][span + 1], and the subsets' sums [subsets][heads][nv] when chunked over
 * several subsets. ("group" below counts the block's heads.) */
template <typename C>
__global__ void __launch_bounds__(SPLIT_THREADS)
    attend_split(hylo_hip_attend_args a, hylo_hip_pos len_at, split_plan plan, float *part_o,
                 float *part_ml)
{
    extern __shared__ float smem[];
    __shared__ float red[SPLIT_THREADS];
    constexpr int per = 16 / sizeof(C); /* values of a 16-byte chunk */
    const int64_t g = blockIdx.y / plan.slices, s = blockIdx.x, nq = a.na + a.nb;
    const int64_t h0 = g * (a.H / a.Hkv) + blockIdx.y % plan.slices * plan.heads; /* 1st head */
    const int64_t group_end = (g + 1) * (a.H / a.Hkv);
    const int64_t group = group_end - h0 < plan.heads ? group_end - h0 : plan.heads;
    const int64_t len = hylo_pos(len_at); /* a.len, or a recorded step's at each replay */
    const int64_t span = plan.span, j0 = s * span, n = len - j0 < span ? len - j0 : span;
    const int64_t qs = (nq + 2 * PAD - 1) / PAD * PAD, ps = span + 1;
    float *Qs = smem, *P = Qs + group * qs, *sums = P + group * ps;
    for (int64_t e = threadIdx.x; e < group * qs; e += blockDim.x) {
        const int64_t hh = e / qs, d = e % qs;
        Qs[e] = hh < group && d < nq ? a.q[(h0 + hh) * nq + d] : 0.0f;
    }
    __syncthreads();
    for (int64_t jj = threadIdx.x; jj < n; jj += blockDim.x) {
        float acc[MAX_GROUP];
#pragma unroll
        for (int hh = 0; hh < MAX_GROUP; hh++) acc[hh] = 0.0f;
        score_part(acc, Qs, qs, 0, row_of<C>(a.ka, a.ka_row, a.ka_head, j0 + jj, g), a.na,
                   group, plan.vec_k);
        if (a.nb > 0)
            score_part(acc, Qs, qs, a.na, row_of<C>(a.kb, a.kb_row, a.kb_head, j0 + jj, g),
                       a.nb, group, plan.vec_k);
#pragma unroll
        for (int hh = 0; hh < MAX_GROUP; hh++)
            if (hh < group) P[hh * ps + jj] = acc[hh] * (float)a.scale;
    }
    __syncthreads();
    const int64_t lanes = blockDim.x / plan.heads2, hh = threadIdx.x / lanes;
    const int64_t lane = threadIdx.x % lanes;
    float *Ph = P + (hh < group ? hh : 0) * ps;
    float mx = -INFINITY, sum = 0.0f;
    if (hh < group)
        for (int64_t jj = lane; jj < n; jj += lanes) mx = fmaxf(mx, Ph[jj]);
    mx = segment_reduce(mx, red, lanes, true);
    if (hh < group)
        for (int64_t jj = lane; jj < n; jj += lanes) {
            const float p = expf(Ph[jj] - mx);
            Ph[jj] = p;
            sum += p;
        }
    sum = segment_reduce(sum, red, lanes, false);
    if (hh < group && lane == 0) {
        float *ml = part_ml + (s * a.H + h0 + hh) * 2;
        ml[0] = mx;
        ml[1] = sum;
    }
    __syncthreads();
    const C *v0 = row_of<C>(a.v, a.v_row, a.v_head, j0, g);
    float *out = part_o + (s * a.H + h0) * a.nv; /* [group, nv] */
    if (!plan.vec_v) {
        for (int64_t e = threadIdx.x; e < group * a.nv; e += blockDim.x) {
            const float *Pe = P + (e / a.nv) * ps;
            const int64_t d = e % a.nv;
            float acc = 0.0f;
#pragma unroll 8
            for (int64_t jj = 0; jj < n; jj++) acc += Pe[jj] * hylo_load(v0, jj * a.v_row + d);
            out[e] = acc;
        }
        return;
    }
    const int64_t chunks = a.nv / per, hblocks = (group + HEAD_BLOCK - 1) / HEAD_BLOCK;
    const int64_t combos = chunks * hblocks;
    for (int64_t w = threadIdx.x; w < combos * plan.subsets; w += blockDim.x) {
        const int64_t c = w % chunks, hb0 = (w / chunks) % hblocks * HEAD_BLOCK, ks = w / combos;
        float acc[HEAD_BLOCK][per];
#pragma unroll
        for (int k = 0; k < HEAD_BLOCK; k++)
#pragma unroll
            for (int u = 0; u < per; u++) acc[k][u] = 0.0f;
#pragma unroll 4
        for (int64_t jj = ks; jj < n; jj += plan.subsets) {
            float vv[per];
            hylo_load16(v0 + jj * a.v_row + c * per, vv);
#pragma unroll
            for (int k = 0; k < HEAD_BLOCK; k++) {
                const float p = hb0 + k < group ? P[(hb0 + k) * ps + jj] : 0.0f;
#pragma unroll
                for (int u = 0; u < per; u++) acc[k][u] += p * vv[u];
            }
        }
        /* one subset: the sums are the outputs; several: added below in order */
        float *dst = plan.subsets == 1 ? out : sums + ks * group * a.nv;
#pragma unroll
        for (int k = 0; k < HEAD_BLOCK; k++)
            if (hb0 + k < group)
#pragma unroll
                for (int u = 0; u < per; u++) dst[(hb0 + k) * a.nv + c * per + u] = acc[k][u];
    }
    if (plan.subsets == 1) return;
    __syncthreads();
    for (int64_t e = threadIdx.x; e < group * a.nv; e += blockDim.x) {
        float total = 0.0f;
        for (int64_t ks = 0; ks < plan.subsets; ks++) total += sums[ks * group * a.nv + e];
        out[e] = total;
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
    const float M = hylo_block_max(mx, red);
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
    /* threads past the splits summed nothing */
    const int64_t summed = nsplit < (int64_t)blockDim.x ? nsplit : (int64_t)blockDim.x;
    for (int64_t c = threadIdx.x; c < width; c += blockDim.x) {
        float total = 0.0f;
        for (int64_t t = 0; t < summed; t++) total += sums[t][c];
        out[h * nv + d0 + c] = total / L;
    }
}

/* Block r: row r of the scores S [rows, ld] (rows = heads x Tq, row r of query i = r % Tq,
 * which sees keys 0 .. n - 1, n = vis0 + i), its probabilities into row r of P [rows, ld]
 * (the GEMM operand type: bf16, or fp32 over S itself), columns 0 .. Lk - 1:
 *   m = max_{j<n} S_j ;  l = sum_{j<n} e^(S_j - m) ;  P_j = e^(S_j - m) / l (j < n), 0 (j >= n)
 * Each thread keeps a running max and sum over its columns (its sum rescaled when its max
 * grows), rescaled to the block's max before the block sum. fp32 throughout. */
template <typename P>
__global__ void __launch_bounds__(SOFTMAX_THREADS)
    softmax_rows(const float *S, P *out, int64_t Tq, int64_t ld, int64_t Lk, int64_t vis0)
{
    __shared__ float red[SOFTMAX_THREADS];
    const int64_t r = blockIdx.x, n = vis0 + r % Tq;
    const float *s = S + r * ld;
    P *p = out + r * ld;
    float m = -INFINITY, l = 0.0f;
    for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
        const float x = s[j];
        if (x > m) {
            l = l * expf(m - x) + 1.0f;
            m = x;
        } else {
            l += expf(x - m);
        }
    }
    const float M = hylo_block_max(m, red);
    const float L = hylo_block_sum(m == -INFINITY ? 0.0f : l * expf(m - M), red);
    const float inv = 1.0f / L;
    for (int64_t j = threadIdx.x; j < Lk; j += blockDim.x)
        hylo_store(p, j, j < n ? expf(s[j] - M) * inv : 0.0f);
}

static size_t tiled_bytes(const hylo_hip_attend_args *a)
{
    const int64_t qs = a->na + a->nb + 1;
    return (size_t)(TQ * qs + TK * qs + TK * a->nv + TQ * (TK + 1) + 3 * TQ) * sizeof(float);
}

/* Lets `kernel`, which declares `fixed` bytes of static shared memory, use `shared` more
 * (beyond SHARED_LIMIT in all it must opt in). */
static bool allow_shared(hylo_hip_ctx *ctx, const void *kernel, size_t shared, size_t fixed)
{
    return shared + fixed <= SHARED_LIMIT ||
           hylo_hip_check(ctx, hipFuncSetAttribute(kernel,
                                                   hipFuncAttributeMaxDynamicSharedMemorySize,
                                                   (int)shared),
                          "attention shared memory");
}

/* The OP workspace with room for `bytes`, or NULL when the device has no room for it: that
 * failure is taken back (the caller falls back to the tiled kernel, which needs none); any
 * other failure (a fault surfacing at the growth's synchronization) is kept. */
static void *spare_workspace(hylo_hip_ctx *ctx, size_t bytes)
{
    void *p = hylo_hip_workspace(ctx, HYLO_HIP_OP, bytes);
    if (!p && ctx->failure.status == HYLO_ERR_NOMEM) {
        (void)hipGetLastError(); /* the failed allocation's error, not the next launch's */
        ctx->failure.status = HYLO_OK;
        ctx->failure.message[0] = '\0';
    }
    return p;
}

/* Prefill through the GEMM launcher, for blocks of query rows t0 .. t0 + Tq - 1 (first =
 * len - T: query t sees keys 0 .. first + t) and, per block, slices of `batch` heads:
 *   Lk = first + t0 + Tq                          (keys the block's last query sees)
 *   S_h [Tq, Lk] = scale Q_h,a Ka_g^T (+ scale Q_h,b Kb_g^T, beta 1)    g = h / (H / Hkv)
 *   P_h = softmax of the rows of S_h over keys j <= first + t, 0 past them (softmax_rows)
 *   O_h [Tq, nv] = P_h V_g                        straight into out rows t0 .., H nv apart
 * Q_h rows are read in place (H (na + nb) apart; in a bf16 context, C = uint16_t, the block's
 * queries are first rounded into a bf16 copy of the same layout), key and value rows of group
 * g in place (ka + g ka_head, ka_row apart, and so on). Slices: the group's heads against one
 * key block (batch = H / Hkv, key stride 0) when the group has at least Hkv heads, else head
 * hh of every group (batch = Hkv, key stride ka_head); one batched GEMM per part per slice.
 * GEMM operands are bf16 (fp32 accumulation, tensor cores) when the parts are bf16 (a bf16
 * context's caches, or MLA's naive form there, which hands over bf16 copies), fp32 otherwise
 * (no rounding: exact to the fp32 limits). OP workspace, `budget` bytes at most (or
 * what LONG_ROWS rows at len take, if more):
 * S [batch, Tq, ld] fp32 (ld = Lk rounded up to SCORE_ALIGN), then for bf16 P [batch, Tq, ld]
 * and the queries [Tq, H, na + nb] (fp32: P overwrites S); Tq is the most rows that fit (at
 * most GEMM_MAX_ROWS, multiples of GEMM_ROW_ALIGN but the last), so blocks shrink as Lk
 * grows. Returns false, with nothing queued and no failure recorded, when the device has no
 * room for the workspace. */
template <typename C>
static bool attend_gemm(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a, size_t budget)
{
    const bool bf = sizeof(C) == sizeof(uint16_t);
    const hylo_dtype type = bf ? HYLO_BF16 : HYLO_F32;
    const int64_t T = a->T, H = a->H, nq = a->na + a->nb, nv = a->nv, first = a->len - T;
    const int64_t group = H / a->Hkv;
    const bool by_group = group >= a->Hkv;
    const int64_t batch = by_group ? group : a->Hkv, slices = H / batch;
    const int64_t per_score = bf ? 6 : 4;        /* S fp32, + P bf16 beside it */
    const int64_t per_row = bf ? 2 * H * nq : 0; /* the bf16 queries of a row  */
    /* bytes of a block of `rows` queries over `lk` keys, 256 bytes of slack per region */
    auto need = [&](int64_t rows, int64_t lk) {
        const int64_t ld = (lk + SCORE_ALIGN - 1) / SCORE_ALIGN * SCORE_ALIGN;
        return (size_t)(batch * rows * ld * per_score + rows * per_row + 3 * 256);
    };
    /* a long context gets room for LONG_ROWS rows beyond the budget (out of memory still
     * falls back to the tiled kernel) */
    const size_t long_rows = need(T < LONG_ROWS ? T : LONG_ROWS, a->len);
    budget = budget > long_rows ? budget : long_rows;
    const size_t bytes = need(T, a->len) < budget ? need(T, a->len) : budget;
    char *ws = (char *)spare_workspace(ctx, bytes);
    if (!ws) return false;
    const C *ka = (const C *)a->ka, *kb = (const C *)a->kb, *v = (const C *)a->v;
    for (int64_t t0 = 0, Tq = 0; t0 < T && hylo_hip_ok(ctx); t0 += Tq) {
        /* the most rows that fit: need(Tq, first + t0 + Tq) <= bytes (increasing in Tq) */
        const double qa = (double)batch * per_score;
        const double qb = qa * (double)(first + t0 + SCORE_ALIGN) + (double)per_row;
        Tq = (int64_t)((-qb + sqrt(qb * qb + 4.0 * qa * (double)bytes)) / (2.0 * qa));
        Tq = Tq < 1 ? 1 : Tq > T - t0 ? T - t0 : Tq;
        while (Tq > 1 && need(Tq, first + t0 + Tq) > bytes) Tq--;
        while (Tq < T - t0 && need(Tq + 1, first + t0 + Tq + 1) <= bytes) Tq++;
        Tq = Tq > GEMM_MAX_ROWS ? GEMM_MAX_ROWS : Tq;
        if (Tq < T - t0 && Tq > GEMM_ROW_ALIGN) Tq -= Tq % GEMM_ROW_ALIGN;
        const int64_t Lk = first + t0 + Tq;
        const int64_t ld = (Lk + SCORE_ALIGN - 1) / SCORE_ALIGN * SCORE_ALIGN;
        const int64_t scores = batch * Tq * ld;
        float *S = (float *)ws;
        uint16_t *P16 = (uint16_t *)(ws + (scores * 4 + 255) / 256 * 256);
        uint16_t *q16 = (uint16_t *)((char *)P16 + (scores * 2 + 255) / 256 * 256);
        C *P = bf ? (C *)P16 : (C *)S;
        const C *Q = bf ? (const C *)q16 : (const C *)(a->q + t0 * H * nq);
        if (bf) hylo_hip_to_bf16(ctx, a->q + t0 * H * nq, q16, Tq * H * nq);
        for (int64_t sl = 0; sl < slices; sl++) {
            /* head of product b: h0 + b hstep; its group: kg + b (by_group: kg, every b) */
            const int64_t h0 = by_group ? sl * group : sl, hstep = by_group ? 1 : group;
            const int64_t kg = by_group ? sl : 0;
            hylo_hip_gemm_batched(ctx, type, false, true, Tq, Lk, a->na, (float)a->scale,
                                  Q + h0 * nq, H * nq, hstep * nq, ka + kg * a->ka_head,
                                  a->ka_row, by_group ? 0 : a->ka_head, 0.0f, S, ld, Tq * ld,
                                  batch);
            if (a->nb > 0)
                hylo_hip_gemm_batched(ctx, type, false, true, Tq, Lk, a->nb, (float)a->scale,
                                      Q + h0 * nq + a->na, H * nq, hstep * nq,
                                      kb + kg * a->kb_head, a->kb_row, by_group ? 0 : a->kb_head,
                                      1.0f, S, ld, Tq * ld, batch);
            if (!hylo_hip_ok(ctx)) return true;
            softmax_rows<C><<<(unsigned)(batch * Tq), SOFTMAX_THREADS, 0, hylo_hip_stream(ctx)>>>(
                S, P, Tq, ld, Lk, first + t0 + 1);
            if (!hylo_hip_launched(ctx, "attention (softmax rows)")) return true;
            hylo_hip_gemm_batched(ctx, type, false, false, Tq, nv, Lk, 1.0f, P, ld, Tq * ld,
                                  v + kg * a->v_head, a->v_row, by_group ? 0 : a->v_head, 0.0f,
                                  a->out + (t0 * H + h0) * nv, H * nv, hstep * nv, batch);
        }
    }
    return true;
}

/* HYLO_HIP_ATTENTION: 1 for "tiled", 2 for "gemm", 3 for "flash", else 0 (by size). */
static int attention_override(void)
{
    const char *e = getenv("HYLO_HIP_ATTENTION");
    return !e                           ? 0
           : strcmp(e, "tiled") == 0 ? 1
           : strcmp(e, "gemm") == 0  ? 2
           : strcmp(e, "flash") == 0 ? 3
                                     : 0;
}

/* T > 1: a bf16 prefill of T >= GEMM_MIN_T (any T with HYLO_HIP_ATTENTION=flash) through the
 * flash kernel where it handles the heads; else through the GEMMs when T >= GEMM_MIN_T (or
 * the heads do not fit a tile) and the workspace can be had; else tiled. */
template <typename C>
static void attend_prefill(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    const size_t shared = tiled_bytes(a);
    const bool fits = shared <= TILED_SHARED && a->nv <= 8 * MAX_COLS;
    const int force = attention_override();
    if ((force == 3 || (force == 0 && a->T >= GEMM_MIN_T)) && hylo_hip_attend_flash(ctx, a))
        return;
    if (force != 1 && (force == 2 || a->T >= GEMM_MIN_T || !fits) &&
        attend_gemm<C>(ctx, a, hylo_hip_op_budget("HYLO_HIP_ATTENTION_BUDGET")))
        return;
    if (!hylo_hip_ok(ctx)) return;
    if (!fits) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: attention heads of %lld + %lld dims "
                      "do not fit a tile", (long long)(a->na + a->nb), (long long)a->nv);
        return;
    }
    if (!allow_shared(ctx, (const void *)attend_tiled<C>, shared, 0)) return;
    const dim3 grid((unsigned)((a->T + TQ - 1) / TQ), (unsigned)a->H);
    attend_tiled<C><<<grid, TILED_THREADS, shared, hylo_hip_stream(ctx)>>>(*a);
    hylo_hip_launched(ctx, "attention (tiled)");
}

/* Whether rows of `width` values, `row` and `head` apart from `base`, start on 16-byte
 * boundaries and hold whole 16-byte chunks. */
static bool chunked(const void *base, int64_t width, int64_t row, int64_t head, size_t value)
{
    const int64_t per = 16 / (int64_t)value;
    return width % per == 0 && row % per == 0 && head % per == 0 && (uintptr_t)base % 16 == 0;
}

/* Decode blocks to aim for: enough to fill a large GPU (an H100 has 132 multiprocessors)
 * several blocks deep, so that many key rows are in flight; HYLO_HIP_DECODE_BLOCKS sets
 * another number (tuning). */
#define DECODE_BLOCKS 256

static int64_t decode_blocks(void)
{
    const char *e = getenv("HYLO_HIP_DECODE_BLOCKS");
    const long long n = e ? atoll(e) : 0;
    return n > 0 ? n : DECODE_BLOCKS;
}

template <typename C>
static void attend_decode(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    const hipStream_t stream = hylo_hip_stream(ctx);
    const int64_t group = a->H / a->Hkv, nq = a->na + a->nb;
    const int64_t qs = (nq + 2 * PAD - 1) / PAD * PAD, per = 16 / (int64_t)sizeof(C);
    if (group > MAX_GROUP) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: %lld query heads per KV group exceed "
                      "a decode block's %d", (long long)group, MAX_GROUP);
        return;
    }
    /* A short context has few spans: its blocks then take shorter spans and, for a large
     * group (MLA's absorbed form: every head on one latent), slices of the group's heads,
     * halving while a slice has more than HEAD_BLOCK, until there are DECODE_BLOCKS blocks. */
    split_plan plan = {MAX_SPAN, group, 1, 1, 1, false, false};
    auto blocks = [&](const split_plan &p) {
        return (a->len + p.span - 1) / p.span * a->Hkv * p.slices;
    };
    const int64_t aim = decode_blocks();
    while (plan.span > 32 && blocks(plan) < aim) plan.span /= 2;
    while (plan.heads > HEAD_BLOCK && blocks(plan) < aim) {
        plan.heads = (plan.heads + 1) / 2;
        plan.slices = (group + plan.heads - 1) / plan.heads;
    }
    while (plan.heads2 < plan.heads) plan.heads2 *= 2;
    plan.vec_k = chunked(a->ka, a->na, a->ka_row, a->ka_head, sizeof(C)) &&
                 (a->nb == 0 || chunked(a->kb, a->nb, a->kb_row, a->kb_head, sizeof(C)));
    plan.vec_v = chunked(a->v, a->nv, a->v_row, a->v_head, sizeof(C));
    if (plan.vec_v) {
        /* as many key subsets as leave every thread of the block a (chunk, head block); none
         * when half the threads have one already (their shared sums would shorten the span) */
        const int64_t combos = a->nv / per * ((plan.heads + HEAD_BLOCK - 1) / HEAD_BLOCK);
        plan.subsets = 2 * combos < SPLIT_THREADS ? SPLIT_THREADS / combos : 1;
    }
    /* the longest span (up to the one chosen) whose block fits the shared memory, the
     * kernel's static reduction buffer included */
    const size_t fixed = SPLIT_THREADS * sizeof(float);
    size_t shared = 0;
    for (; plan.span >= 32; plan.span /= 2) {
        const int64_t sums = plan.vec_v && plan.subsets > 1 ? plan.subsets * plan.heads * a->nv : 0;
        shared = (size_t)(plan.heads * qs + plan.heads * (plan.span + 1) + sums) * sizeof(float);
        if (shared + fixed <= TILED_SHARED) break;
    }
    if (plan.span < 32) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: %lld heads of %lld dims per group do "
                      "not fit a decode block", (long long)group, (long long)nq);
        return;
    }
    if (!allow_shared(ctx, (const void *)attend_split<C>, shared, fixed)) return;
    const int64_t nsplit = (a->len + plan.span - 1) / plan.span;
    /* the plan (see above: its blocks count whole spans) and the workspace hold for every
     * length of the last span */
    hylo_hip_pos_holds(ctx, a->len, (nsplit - 1) * plan.span + 1, nsplit * plan.span);
    float *part = (float *)hylo_hip_workspace(
        ctx, HYLO_HIP_OP, (size_t)(nsplit * a->H * (a->nv + 2)) * sizeof(float));
    if (!part) return;
    float *part_ml = part + nsplit * a->H * a->nv;
    const dim3 grid((unsigned)nsplit, (unsigned)(a->Hkv * plan.slices));
    attend_split<C><<<grid, SPLIT_THREADS, shared, stream>>>(*a, hylo_hip_pos_of(ctx, a->len),
                                                             plan, part, part_ml);
    if (!hylo_hip_launched(ctx, "attention (split)")) return;
    const dim3 columns((unsigned)((a->nv + COMBINE_COLS - 1) / COMBINE_COLS), (unsigned)a->H);
    attend_combine<<<columns, HYLO_HIP_THREADS, 0, stream>>>(part, part_ml, nsplit, a->H, a->nv,
                                                             a->out);
    hylo_hip_launched(ctx, "attention (combine)");
}

void hylo_hip_attend(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    if (a->T <= 0 || !hylo_hip_ok(ctx)) return;
    if (a->T > 1) {
        if (a->bf16) attend_prefill<uint16_t>(ctx, a);
        else attend_prefill<float>(ctx, a);
    } else {
        if (a->bf16) attend_decode<uint16_t>(ctx, a);
        else attend_decode<float>(ctx, a);
    }
}

/* q [T, H, hd], k_cache, v_cache [len, Hkv, hd] in the caches' type, out [T, H, hd]. */
hylo_status hylo_hip_attention(void *vctx, const float *q, const float *k_cache,
                               const float *v_cache, float *out, int64_t T, int64_t len,
                               int64_t H, int64_t Hkv, int64_t hd, double scale, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_hip_attend_args a = {};
    a.q = q;
    a.na = a.nv = hd;
    a.ka = k_cache;
    a.v = v_cache;
    a.bf16 = ctx->bf16;
    a.ka_row = a.v_row = Hkv * hd;
    a.ka_head = a.v_head = hd;
    a.out = out;
    a.T = T;
    a.len = len;
    a.H = H;
    a.Hkv = Hkv;
    a.scale = scale;
    hylo_hip_attend(ctx, &a);
    return hylo_hip_status(ctx, err);
}
