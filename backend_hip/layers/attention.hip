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
#define HEAD_SLOTS 4            /* heads a score thread takes                      */
#define MAX_GROUP 32            /* query heads of a decode block, at most          */
#define PREFETCH 8              /* 16-byte chunks of the next tile a thread loads  */
#define SCORE_PARTS (MAX_GROUP * 33) /* per head and position group of a decode block: */
                                     /* the score threads' maxima, then sums            */
#define Q_LOADS 24              /* query values a thread loads at a time           */
#define PROJ_LOADS 32           /* weights a projecting thread loads at a time     */
#define MIN_SPAN 16             /* positions of a decode block, at least            */
#define HEAD_BLOCK 4            /* heads of a decode block's slice, at least        */
#define PLAN_BUCKET 128         /* lengths a decode plan is made for, at least      */
#define SHARED_LIMIT (48 * 1024) /* shared memory of a block without opting in      */
#define TILED_SHARED (64 * 1024) /* blocks opt in to this much (AMD's LDS)          */
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

/* Four values of staged memory at p (16-byte aligned in fp32, 8-byte in bf16), widened. */
__device__ inline void load4(const float *p, float (&out)[4])
{
    const float4 v = *(const float4 *)p;
    out[0] = v.x;
    out[1] = v.y;
    out[2] = v.z;
    out[3] = v.w;
}

__device__ inline void load4(const uint16_t *p, float (&out)[4])
{
    const uint2 v = *(const uint2 *)p;
    out[0] = __uint_as_float(v.x << 16);
    out[1] = __uint_as_float(v.x & 0xffff0000u);
    out[2] = __uint_as_float(v.y << 16);
    out[3] = __uint_as_float(v.y & 0xffff0000u);
}

/* How a decode block works through its positions and where its shared memory goes (chosen on
 * the host, see attend_decode). Shared memory, bytes from its start: the queries Q [heads][qs]
 * (fp32, zeros past na + nb); at k the staged tile, its keys K [tile][ks] ([ka | kb], zeros
 * past na + nb up to a multiple of 4) and at v its values V [tile][vs] in the caches' type
 * (none when the values are the first nv columns of ka, MLA's latent: V is then K); at p the
 * probabilities P [tile][hp] (fp32). The value sums of the position subsets
 * [subsets][heads][nvp] reuse the tile's room once the positions are done. Row strides of
 * 4 mod 8 values keep the reads of 8 key rows (or 4 query rows) at one offset, and the writes
 * of 8 positions of P, on distinct banks. */
typedef struct {
    int64_t span;    /* positions of a block                                               */
    int64_t tile;    /* positions staged at a time, at most 2 pgroups                      */
    int pgroups;     /* score threads: pgroups position groups (2 positions of a tile      */
                     /* each) x SPLIT_THREADS / pgroups head groups (HEAD_SLOTS heads each) */
    int64_t heads;   /* query heads of a block: the group's, or a slice of them            */
    int64_t slices;  /* blocks that share a group's positions, each with its heads         */
    int64_t subsets; /* position subsets the value pass sums apart                         */
    bool chunked;    /* key and value rows of whole 16-byte chunks on 16-byte boundaries:  */
                     /* staged through registers, the next tile's loads in flight           */
    bool v_in_k;     /* the values are K's first nv columns                                */
    int qs, ks, vs, hp, nvp; /* row strides of Q, K, V, P; nvp = nv rounded up to 4         */
    int k, v, p, bytes;      /* offsets of K, V, P and the dynamic shared bytes              */
} split_plan;

/* The 16-byte chunks of the parts of a staged row: ka's, then kb's, then v's (none when V is
 * K); chunk c of a row goes to column c per of K (c < kb_end) or (c - kb_end) per of V. */
struct tile_rows {
    int ka_end, kb_end, width;
};

/* Part chunk c of position j (group g), per = 16 / sizeof(C) values. */
template <typename C>
__device__ inline const uint4 *chunk_of(const hylo_hip_attend_args &a, const tile_rows &tr,
                                        int64_t j, int64_t g, int c)
{
    constexpr int per = 16 / sizeof(C);
    if (c < tr.ka_end) return (const uint4 *)(row_of<C>(a.ka, a.ka_row, a.ka_head, j, g) + c * per);
    if (c < tr.kb_end)
        return (const uint4 *)(row_of<C>(a.kb, a.kb_row, a.kb_head, j, g) + (c - tr.ka_end) * per);
    return (const uint4 *)(row_of<C>(a.v, a.v_row, a.v_head, j, g) + (c - tr.kb_end) * per);
}

/* Chunked rows: the tile of positions j0 .. j0 + n - 1 into registers, chunk
 * threadIdx.x + u blockDim.x of the tile in buf[u] (the plan keeps a tile within PREFETCH
 * chunks a thread). Nothing otherwise. */
template <typename C>
__device__ inline void fetch_tile(uint4 (&buf)[PREFETCH], const hylo_hip_attend_args &a,
                                  const split_plan &plan, const tile_rows &tr, int64_t g,
                                  int64_t j0, int n)
{
    if (!plan.chunked) return;
#pragma unroll
    for (int u = 0; u < PREFETCH; u++) {
        const int e = threadIdx.x + u * blockDim.x, jj = e / tr.width;
        if (jj < n) buf[u] = *chunk_of<C>(a, tr, j0 + jj, g, e % tr.width);
    }
}

/* The tile into shared memory: the fetched chunks (two 8-byte halves: a bf16 row of K starts
 * on 8 bytes), or for rows not of whole chunks each value read here. */
template <typename C>
__device__ inline void place_tile(const uint4 (&buf)[PREFETCH], const hylo_hip_attend_args &a,
                                  const split_plan &plan, const tile_rows &tr, int64_t g,
                                  int64_t j0, int n, C *K, C *V)
{
    constexpr int per = 16 / sizeof(C);
    if (plan.chunked) {
#pragma unroll
        for (int u = 0; u < PREFETCH; u++) {
            const int e = threadIdx.x + u * blockDim.x, jj = e / tr.width, c = e % tr.width;
            if (jj >= n) continue;
            uint2 *dst = (uint2 *)(c < tr.kb_end ? K + jj * plan.ks + c * per
                                                 : V + jj * plan.vs + (c - tr.kb_end) * per);
            dst[0] = make_uint2(buf[u].x, buf[u].y);
            dst[1] = make_uint2(buf[u].z, buf[u].w);
        }
        return;
    }
    const int nq = (int)(a.na + a.nb), width = nq + (plan.v_in_k ? 0 : (int)a.nv);
    for (int e = threadIdx.x; e < n * width; e += blockDim.x) {
        const int jj = e / width, d = e % width;
        const int64_t j = j0 + jj;
        if (d < a.na) K[jj * plan.ks + d] = row_of<C>(a.ka, a.ka_row, a.ka_head, j, g)[d];
        else if (d < nq) K[jj * plan.ks + d] = row_of<C>(a.kb, a.kb_row, a.kb_head, j, g)[d - a.na];
        else V[jj * plan.vs + d - nq] = row_of<C>(a.v, a.v_row, a.v_head, j, g)[d - nq];
    }
}

/* Block b (split s = b / (slices Hkv), group g = b / slices % Hkv, slice b % slices), one
 * query: the slice's heads (plan.heads of the group's, from (b % slices) plan.heads) over
 * positions j0 = s span .. min(len, j0 + span) - 1, tile by tile (positions staged in shared
 * memory, the next tile's loads in flight while this one is used), with the online softmax:
 *   S_hj = scale q_h . k_j             score thread (position group pg < PG, head group
 *                                      hg < HG = SPLIT_THREADS / PG): heads hg + HG i
 *                                      (i < HEAD_SLOTS) at positions pg, pg + PG of the tile,
 *                                      K and Q read 4 values at a time from shared memory
 *   m'_h = max(m_h, max_j S_hj) ;  alpha_h = e^(m_h - m'_h) ;  P_hj = e^(S_hj - m'_h)
 *   l_h = alpha_h l_h + sum_j P_hj     (per score thread, added up at the end)
 *   o_h = alpha_h o_h + sum_j P_hj v_j value thread (column chunk c, head block hb, subset ks):
 *                                      columns 4c .., heads 4hb .. at positions ks,
 *                                      ks + subsets, ...; the subsets added in a fixed order
 * (adjacent threads take adjacent positions, or columns, 8 at a time, so that a 32-wide warp
 * reads few distinct rows). Partials o [nsplit, H, nvp] (the softmax of the block's positions,
 * unnormalized) and (m, l) [nsplit, H, 2]; a block's heads are a.H / a.Hkv at most
 * HEAD_SLOTS HG. */
template <typename C>
__global__ void __launch_bounds__(SPLIT_THREADS, 2)
    attend_split(hylo_hip_attend_args a, hylo_hip_pos len_at, split_plan plan, float *part_o,
                 float *part_ml)
{
    constexpr int per = 16 / sizeof(C);
    extern __shared__ float smem[];
    __shared__ float part[SCORE_PARTS]; /* [heads][PG + 1] */
    __shared__ float m_run[MAX_GROUP], alpha[MAX_GROUP];
    const int64_t b = blockIdx.x, group = a.H / a.Hkv, g = b / plan.slices % a.Hkv;
    const int64_t s = b / (plan.slices * a.Hkv), h0 = g * group + b % plan.slices * plan.heads;
    const int heads = (int)((g + 1) * group - h0 < plan.heads ? (g + 1) * group - h0 : plan.heads);
    const int64_t len = hylo_pos(len_at); /* a.len, or a recorded step's at each replay */
    const int64_t j0 = s * plan.span, end = len < j0 + plan.span ? len : j0 + plan.span;
    const int nq = (int)(a.na + a.nb), nq4 = (nq + 3) / 4 * 4, tile = (int)plan.tile;
    float *Q = smem, *P = (float *)((char *)smem + plan.p);
    C *K = (C *)((char *)smem + plan.k), *V = plan.v_in_k ? K : (C *)((char *)smem + plan.v);
    const int v_stride = plan.v_in_k ? plan.ks : plan.vs;
    const int v_chunks = plan.v_in_k ? 0 : (int)a.nv / per;
    const tile_rows tr = {(int)a.na / per, nq / per, nq / per + v_chunks};
    /* score thread: tid = pl + 8 (hg + HG ph), position group pg = pl + 8 ph */
    const int PG = plan.pgroups, HG = SPLIT_THREADS / PG, tid = threadIdx.x;
    const int hg = tid / 8 % HG, pg = tid % 8 + 8 * (tid / (8 * HG));
    /* value thread: tid = cl + 8 (hb + hblocks (cg + cgroups ks)), column chunk c = cl + 8 cg */
    const int chunks = plan.nvp / 4, cgroups = (chunks + 7) / 8, hblocks = (heads + 3) / 4;
    const int hb = tid / 8 % hblocks, c = tid % 8 + 8 * (tid / 8 / hblocks % cgroups);
    const int ks = tid / 8 / hblocks / cgroups, subsets = (int)plan.subsets;
    const bool valuer = c < chunks && ks < subsets;
    uint4 next[PREFETCH];
    fetch_tile<C>(next, a, plan, tr, g, j0, (int)(end - j0 < tile ? end - j0 : tile));
    /* the queries, Q_LOADS loads of a thread in flight at a time */
    for (int e0 = tid; e0 < heads * plan.qs; e0 += Q_LOADS * SPLIT_THREADS) {
        float v[Q_LOADS];
#pragma unroll
        for (int u = 0; u < Q_LOADS; u++) {
            const int e = e0 + u * SPLIT_THREADS, d = e % plan.qs;
            v[u] = e < heads * plan.qs && d < nq ? a.q[(h0 + e / plan.qs) * nq + d] : 0.0f;
        }
#pragma unroll
        for (int u = 0; u < Q_LOADS; u++)
            if (e0 + u * SPLIT_THREADS < heads * plan.qs) Q[e0 + u * SPLIT_THREADS] = v[u];
    }
    for (int e = tid; e < tile * (nq4 - nq); e += SPLIT_THREADS)
        hylo_store(K + e / (nq4 - nq) * plan.ks, nq + e % (nq4 - nq), 0.0f);
    if (tid < MAX_GROUP) m_run[tid] = -INFINITY;
    float l[HEAD_SLOTS], o[4][4];
#pragma unroll
    for (int i = 0; i < HEAD_SLOTS; i++) l[i] = 0.0f;
#pragma unroll
    for (int k = 0; k < 4; k++)
#pragma unroll
        for (int u = 0; u < 4; u++) o[k][u] = 0.0f;
    for (int64_t t0 = j0; t0 < end; t0 += tile) {
        const int n = (int)(end - t0 < tile ? end - t0 : tile);
        __syncthreads(); /* the previous tile's readers are done */
        place_tile<C>(next, a, plan, tr, g, t0, n, K, V);
        __syncthreads();
        if (t0 + tile < end)
            fetch_tile<C>(next, a, plan, tr, g, t0 + tile,
                          (int)(end - t0 - tile < tile ? end - t0 - tile : tile));
        /* scores of rows pg, pg + PG (clamped to the tile's rows; masked below) */
        float sc[HEAD_SLOTS][2];
#pragma unroll
        for (int i = 0; i < HEAD_SLOTS; i++) sc[i][0] = sc[i][1] = 0.0f;
        const C *k0 = K + (pg < n ? pg : n - 1) * plan.ks;
        const C *k1 = K + (pg + PG < n ? pg + PG : n - 1) * plan.ks;
#pragma unroll 2
        for (int d = 0; d < nq4; d += 4) {
            float x0[4], x1[4];
            load4(k0 + d, x0);
            load4(k1 + d, x1);
#pragma unroll
            for (int i = 0; i < HEAD_SLOTS; i++) {
                if (hg + HG * i >= heads) break;
                const float4 q = *(const float4 *)(Q + (hg + HG * i) * plan.qs + d);
                sc[i][0] += q.x * x0[0];
                sc[i][0] += q.y * x0[1];
                sc[i][0] += q.z * x0[2];
                sc[i][0] += q.w * x0[3];
                sc[i][1] += q.x * x1[0];
                sc[i][1] += q.y * x1[1];
                sc[i][1] += q.z * x1[2];
                sc[i][1] += q.w * x1[3];
            }
        }
#pragma unroll
        for (int i = 0; i < HEAD_SLOTS; i++) {
            if (hg + HG * i >= heads) break;
            sc[i][0] = pg < n ? sc[i][0] * (float)a.scale : -INFINITY;
            sc[i][1] = pg + PG < n ? sc[i][1] * (float)a.scale : -INFINITY;
            part[(hg + HG * i) * (PG + 1) + pg] = fmaxf(sc[i][0], sc[i][1]);
        }
        __syncthreads();
        if (tid < heads) {
            float mx = -INFINITY;
            for (int i = 0; i < PG; i++) mx = fmaxf(mx, part[tid * (PG + 1) + i]);
            mx = fmaxf(m_run[tid], mx);
            alpha[tid] = expf(m_run[tid] - mx);
            m_run[tid] = mx;
        }
        __syncthreads();
#pragma unroll
        for (int i = 0; i < HEAD_SLOTS; i++) {
            const int h = hg + HG * i;
            if (h >= heads) break;
            float sum = 0.0f;
#pragma unroll
            for (int r = 0; r < 2; r++) {
                const int j = pg + PG * r;
                if (j >= n) continue;
                const float p = expf(sc[i][r] - m_run[h]);
                P[j * plan.hp + h] = p;
                sum += p;
            }
            l[i] = l[i] * alpha[h] + sum;
        }
        __syncthreads();
        if (!valuer) continue;
#pragma unroll
        for (int k = 0; k < 4; k++) {
            const float al = 4 * hb + k < heads ? alpha[4 * hb + k] : 0.0f;
#pragma unroll
            for (int u = 0; u < 4; u++) o[k][u] *= al;
        }
#pragma unroll 4
        for (int j = ks; j < n; j += subsets) {
            const float4 p = *(const float4 *)(P + j * plan.hp + 4 * hb);
            float v[4];
            load4(V + j * v_stride + 4 * c, v);
#pragma unroll
            for (int u = 0; u < 4; u++) {
                o[0][u] += p.x * v[u];
                o[1][u] += p.y * v[u];
                o[2][u] += p.z * v[u];
                o[3][u] += p.w * v[u];
            }
        }
    }
    __syncthreads(); /* the tiles are done: part and the tile's room are free */
#pragma unroll
    for (int i = 0; i < HEAD_SLOTS; i++)
        if (hg + HG * i < heads) part[(hg + HG * i) * (PG + 1) + pg] = l[i];
    /* one subset: the sums are the outputs; several: added below in order */
    float *sums = (float *)K, *out = part_o + (s * a.H + h0) * plan.nvp; /* [heads, nvp] */
    float *dst = subsets == 1 ? out : sums + ks * heads * plan.nvp;
    if (valuer)
#pragma unroll
        for (int k = 0; k < 4; k++)
            if (4 * hb + k < heads)
                *(float4 *)(dst + (4 * hb + k) * plan.nvp + 4 * c) =
                    make_float4(o[k][0], o[k][1], o[k][2], o[k][3]);
    __syncthreads();
    if (tid < heads) {
        float sum = 0.0f;
        for (int i = 0; i < PG; i++) sum += part[tid * (PG + 1) + i];
        float *ml = part_ml + (s * a.H + h0 + tid) * 2;
        ml[0] = m_run[tid];
        ml[1] = sum;
    }
    if (subsets == 1) return;
    for (int e = tid; e < heads * plan.nvp; e += SPLIT_THREADS) {
        float total = 0.0f;
        for (int k = 0; k < subsets; k++) total += sums[k * heads * plan.nvp + e];
        out[e] = total;
    }
}

/* Weights w[m] = W[i, d0 + lane + lanes m] (m < PROJ_LOADS, zeros past the row's nv or the
 * projection's rows), loaded together. */
__device__ inline void fetch_weights(float (&w)[PROJ_LOADS], const float *W,
                                     const hylo_hip_attend_args &a, int64_t i, int64_t d0,
                                     int64_t lane, int64_t lanes)
{
#pragma unroll
    for (int m = 0; m < PROJ_LOADS; m++) {
        const int64_t d = d0 + lane + lanes * m;
        w[m] = i < a.wo_rows && d < a.nv ? W[i * a.wo_row + d] : 0.0f;
    }
}

/* Block h: the splits' partials of head h merged,
 *   M = max_s m_s ,  w_s = e^(m_s - M) ,  o[d] = sum_s w_s o_s[d] / sum_s w_s l_s   (d < nv)
 * thread (column chunk c, split group sg) summing columns 4c .. 4c + 3 over the splits
 * sg, sg + groups, ... (the groups then added in a fixed order); and out[h] = o, or with an
 * output projection (a.wo) out[h, i] = sum_d W[i, d] o[d] (i < wo_rows), a segment of lanes
 * per row, PROJ_LOADS weights of a thread loaded at a time (the first ones before the merge).
 * Shared: the groups' sums [groups][nvp], o [nvp]. */
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    attend_combine(hylo_hip_attend_args a, const float *part_o, const float *part_ml,
                   int64_t nsplit, int64_t nvp, float *out)
{
    extern __shared__ float smem[];
    __shared__ float red[HYLO_HIP_THREADS];
    const int64_t h = blockIdx.x, H = a.H, chunks = nvp / 4, groups = blockDim.x / chunks;
    const int64_t c = threadIdx.x % chunks, sg = threadIdx.x / chunks;
    float *o = smem + groups * nvp;
    int64_t lanes = 1; /* a power of two: all rows in one pass where they fit */
    while (a.wo && lanes * 2 * a.wo_rows <= (int64_t)blockDim.x) lanes *= 2;
    const int64_t rows = blockDim.x / lanes, lane = threadIdx.x % lanes;
    const float *W = a.wo ? a.wo + h / a.wo_group * a.wo_head : NULL;
    float w[PROJ_LOADS];
    if (W) fetch_weights(w, W, a, threadIdx.x / lanes, 0, lane, lanes);
    float mx = -INFINITY;
    for (int64_t s = threadIdx.x; s < nsplit; s += blockDim.x)
        mx = fmaxf(mx, part_ml[(s * H + h) * 2]);
    const float M = hylo_block_max(mx, red);
    float l = 0.0f;
    for (int64_t s = threadIdx.x; s < nsplit; s += blockDim.x)
        l += expf(part_ml[(s * H + h) * 2] - M) * part_ml[(s * H + h) * 2 + 1];
    const float L = hylo_block_sum(l, red);
    if (sg < groups) {
        float4 acc = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
#pragma unroll 8
        for (int64_t s = sg; s < nsplit; s += groups) {
            const float ws = expf(part_ml[(s * H + h) * 2] - M);
            const float4 v = *(const float4 *)(part_o + (s * H + h) * nvp + 4 * c);
            acc.x += ws * v.x;
            acc.y += ws * v.y;
            acc.z += ws * v.z;
            acc.w += ws * v.w;
        }
        *(float4 *)(smem + sg * nvp + 4 * c) = acc;
    }
    __syncthreads();
    for (int64_t d = threadIdx.x; d < a.nv; d += blockDim.x) {
        float total = 0.0f;
        for (int64_t k = 0; k < groups; k++) total += smem[k * nvp + d];
        if (W) o[d] = total / L;
        else out[h * a.nv + d] = total / L;
    }
    if (!W) return;
    __syncthreads();
    for (int64_t i0 = 0; i0 < a.wo_rows; i0 += rows) {
        const int64_t i = i0 + threadIdx.x / lanes;
        float acc = 0.0f;
        for (int64_t d0 = 0; d0 < a.nv; d0 += lanes * PROJ_LOADS) {
            if (i0 > 0 || d0 > 0) fetch_weights(w, W, a, i, d0, lane, lanes);
#pragma unroll
            for (int m = 0; m < PROJ_LOADS; m++) {
                const int64_t d = d0 + lane + lanes * m;
                if (d < a.nv) acc += w[m] * o[d];
            }
        }
        acc = segment_reduce(acc, red, lanes, false);
        if (i < a.wo_rows && lane == 0) out[h * a.wo_rows + i] = acc;
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

static int64_t round_up(int64_t n, int64_t m)
{
    return (n + m - 1) / m * m;
}

/* Value threads a block of `heads` needs: 8-chunk runs of columns times blocks of 4 heads. */
static int64_t value_combos(int64_t nv, int64_t heads)
{
    return round_up((nv + 3) / 4, 8) * ((heads + 3) / 4);
}

/* The plan's shared memory (see split_plan) for its tile and heads; false when it exceeds
 * what a block may have beside `fixed` bytes of static shared memory. */
static bool split_layout(split_plan *p, const hylo_hip_attend_args *a, size_t value,
                         size_t fixed)
{
    const int64_t qs = round_up(a->na + a->nb, 8) + 4, vs = p->v_in_k ? 0 : round_up(a->nv, 8);
    const int64_t hp = round_up(p->heads, 8) + 4, nvp = round_up(a->nv, 4);
    p->subsets = SPLIT_THREADS / value_combos(a->nv, p->heads);
    const int64_t stage = p->tile * (qs + vs) * (int64_t)value;
    const int64_t sums = p->subsets > 1 ? p->subsets * p->heads * nvp * 4 : 0;
    const int64_t k = p->heads * qs * 4, v = k + p->tile * qs * (int64_t)value;
    const int64_t at_p = k + round_up(stage > sums ? stage : sums, 16);
    const int64_t bytes = at_p + p->tile * hp * 4;
    if ((size_t)bytes + fixed > TILED_SHARED) return false;
    p->qs = p->ks = (int)qs;
    p->vs = (int)vs;
    p->hp = (int)hp;
    p->nvp = (int)nvp;
    p->k = (int)k;
    p->v = (int)v;
    p->p = (int)at_p;
    p->bytes = (int)bytes;
    return true;
}

/* The size of the bucket of decode lengths that len is in: buckets of PLAN_BUCKET lengths
 * below 16 PLAN_BUCKET, then of 1/16 to 1/8 of the length (a power of two), so that a
 * recorded step holds for ~len/16 steps or more. Bucket k of size g: lengths k g + 1 ..
 * (k + 1) g. */
static int64_t decode_bucket(int64_t len)
{
    int64_t g = PLAN_BUCKET;
    while (16 * g < len) g *= 2;
    return g;
}

/* One query (flash decoding): the positions split over blocks (attend_split), the blocks'
 * partials merged per head (attend_combine, with MLA's output projection when a->wo). The
 * plan: tiles of 128 positions for groups of up to 16 heads, else 64 (shorter where a
 * thread's prefetch registers or the shared memory would not hold one, then slices of the
 * group's heads); a block's span the longest run of tiles that leaves DECODE_BLOCKS blocks,
 * or for a short context shorter spans down to MIN_SPAN positions, then slices of the heads
 * down to HEAD_BLOCK, until there are that many. The plan is made for the last length of
 * len's bucket (decode_bucket), so that it holds, and a recorded step replays, for every
 * length of the bucket: the splits past len have no positions (their partials weigh 0 in
 * the combine). */
template <typename C>
static void attend_decode(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    const hipStream_t stream = hylo_hip_stream(ctx);
    const int64_t group = a->H / a->Hkv, nq = a->na + a->nb, per = 16 / (int64_t)sizeof(C);
    const size_t fixed = (SCORE_PARTS + 2 * MAX_GROUP) * sizeof(float);
    if (group > MAX_GROUP) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: %lld query heads per KV group exceed "
                      "a decode block's %d", (long long)group, MAX_GROUP);
        return;
    }
    split_plan plan = {};
    plan.heads = group;
    plan.slices = 1;
    /* long tiles for few heads: 64 position groups where 4 head groups hold them */
    plan.pgroups = group <= HEAD_SLOTS * SPLIT_THREADS / 64 ? 64 : 32;
    plan.tile = 2 * plan.pgroups;
    plan.v_in_k = a->v == a->ka && a->v_row == a->ka_row && a->v_head == a->ka_head &&
                  a->nv <= a->na;
    plan.chunked = chunked(a->ka, a->na, a->ka_row, a->ka_head, sizeof(C)) &&
                   (a->nb == 0 || chunked(a->kb, a->nb, a->kb_row, a->kb_head, sizeof(C))) &&
                   chunked(a->v, a->nv, a->v_row, a->v_head, sizeof(C));
    const int64_t width = (nq + (plan.v_in_k ? 0 : a->nv)) / per; /* chunks of a row */
    while (plan.chunked && plan.tile > MIN_SPAN && plan.tile * width > PREFETCH * SPLIT_THREADS)
        plan.tile /= 2;
    /* rows too wide for the registers: staged value by value */
    plan.chunked = plan.chunked && plan.tile * width <= PREFETCH * SPLIT_THREADS;
    auto slice = [&](int64_t heads) {
        plan.heads = heads;
        plan.slices = (group + heads - 1) / heads;
    };
    while (plan.heads > 1 && value_combos(a->nv, plan.heads) > SPLIT_THREADS)
        slice((plan.heads + 1) / 2);
    while (!split_layout(&plan, a, sizeof(C), fixed) && (plan.tile > MIN_SPAN || plan.heads > 1)) {
        if (plan.tile > MIN_SPAN) plan.tile /= 2;
        else slice((plan.heads + 1) / 2);
    }
    if (value_combos(a->nv, plan.heads) > SPLIT_THREADS ||
        !split_layout(&plan, a, sizeof(C), fixed)) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: attention heads of %lld + %lld dims "
                      "do not fit a decode block", (long long)nq, (long long)a->nv);
        return;
    }
    const int64_t bucket = decode_bucket(a->len);
    const int64_t last = (a->len + bucket - 1) / bucket * bucket; /* the bucket's last length */
    auto blocks = [&](int64_t span) { return (last + span - 1) / span * a->Hkv * plan.slices; };
    const int64_t aim = decode_blocks();
    plan.span = plan.tile;
    while (plan.span < last && blocks(2 * plan.span) >= aim) plan.span *= 2;
    while (plan.span > MIN_SPAN && blocks(plan.span) < aim) plan.span /= 2;
    while (plan.heads > HEAD_BLOCK && blocks(plan.span) < aim) slice((plan.heads + 1) / 2);
    plan.tile = plan.tile < plan.span ? plan.tile : plan.span;
    split_layout(&plan, a, sizeof(C), fixed); /* smaller than the one that fit */
    if (!allow_shared(ctx, (const void *)attend_split<C>, (size_t)plan.bytes, fixed)) return;
    const int64_t nsplit = (last + plan.span - 1) / plan.span;
    /* the plan and the workspace hold for every length of the bucket */
    hylo_hip_pos_holds(ctx, a->len, last - bucket + 1, last);
    float *part = (float *)hylo_hip_workspace(
        ctx, HYLO_HIP_OP, (size_t)(nsplit * a->H * (plan.nvp + 2)) * sizeof(float));
    if (!part) return;
    float *part_ml = part + nsplit * a->H * plan.nvp;
    attend_split<C><<<(unsigned)(nsplit * a->Hkv * plan.slices), SPLIT_THREADS,
                      (size_t)plan.bytes, stream>>>(*a, hylo_hip_pos_of(ctx, a->len), plan, part,
                                                    part_ml);
    if (!hylo_hip_launched(ctx, "attention (split)")) return;
    const int64_t groups = HYLO_HIP_THREADS / (plan.nvp / 4);
    attend_combine<<<(unsigned)a->H, HYLO_HIP_THREADS,
                     (size_t)((groups + 1) * plan.nvp) * sizeof(float), stream>>>(
        *a, part, part_ml, nsplit, plan.nvp, a->out);
    hylo_hip_launched(ctx, "attention (combine)");
}

void hylo_hip_attend(hylo_hip_ctx *ctx, const hylo_hip_attend_args *a)
{
    if (a->T <= 0 || !hylo_hip_ok(ctx)) return;
    if (a->wo && a->T > 1) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: an attention output projection "
                      "takes one query");
        return;
    }
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
