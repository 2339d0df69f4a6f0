/* delta_rule.hip: the gated delta rule of Gated DeltaNet (spec sec. 5): the token recurrence
 * for decode steps and the chunked WY / UT-transform form for prefills, as equations (1)-(4)
 * of ref/layers/delta_rule.c. fp32, the state updated in place. Value head hv reads q/k head
 * hv / (Hv / Hk). Recurrence: the columns of a head's state S [dk, dv] evolve independently,
 * so it splits every head across blocks of columns, each thread keeping its rows of a column
 * in registers for the whole call. Chunked: every product of a chunk goes through the GEMM
 * launcher (cuBLAS / hipBLAS or the built-in kernel), the state-free ones batched over every
 * (head, chunk) of a segment of chunks, the two that read the state batched over the heads,
 * chunk after chunk.
 *
 * Environment (checks): HYLO_HIP_GDN_BUDGET (bytes) replaces HYLO_HIP_OP_BUDGET. */
#include "core/device.h"
#include "layers/hip_layers.h"

#define RULE_THREADS 256               /* threads of a chunked-form block                */
#define SHARED_LIMIT (48 * 1024)       /* shared memory of a block without opting in     */
#define RULE_COLS 16                   /* state columns of a recurrence block            */
#define RULE_ROWS 16                   /* state rows of a column a recurrence thread keeps */
#define RULE_MAX_THREADS 512           /* of a recurrence block: head_k up to 512        */

/* The sum over a recurrence block's row groups of `part` (thread (rg, c) = threadIdx.x /
 * RULE_COLS, threadIdx.x % RULE_COLS), returned to every thread of column c, each adding the
 * RG partials in the same order. buf [blockDim.x] (shared): its readers of the previous use
 * must have passed a barrier since (rule_recurrent alternates two buffers). */
__device__ inline float rule_column_sum(float part, float *buf, int RG, int c)
{
    buf[threadIdx.x] = part;
    __syncthreads();
    float sum = 0.0f;
    for (int r = 0; r < RG; r++) sum += buf[r * RULE_COLS + c];
    return sum;
}

/* q, k [T, Hk, dk], v, o [T, Hv, dv], g, beta [T, Hv], S [Hv, dk, dv]. Block (column block,
 * hv), RG = blockDim.x / RULE_COLS row groups (RG RULE_ROWS >= dk); thread (rg, c) keeps
 * S[d, e] of its column e and rows d = rg + j RG (j < RULE_ROWS) in registers over the T
 * tokens, so that S is read once and written once. For each token, with k, q the token's
 * vectors of head hk = hv / (Hv / Hk):
 *   S <- e^g S ;  u = beta (v - S^T k) ;  S <- S + k u^T ;  o = S^T q
 * the two products over d summed across the row groups in shared memory. */
__global__ void __launch_bounds__(RULE_MAX_THREADS)
    rule_recurrent(const float *q, const float *k, const float *v, const float *g,
                   const float *beta, float *S, float *o, int64_t T, int64_t Hk, int64_t Hv,
                   int64_t dk, int64_t dv)
{
    __shared__ float red[2][RULE_MAX_THREADS];
    const int RG = blockDim.x / RULE_COLS, rg = threadIdx.x / RULE_COLS;
    const int c = threadIdx.x % RULE_COLS, rows = (int)dk;
    const int64_t e = (int64_t)blockIdx.x * RULE_COLS + c, hv = blockIdx.y, hk = hv / (Hv / Hk);
    const bool on = e < dv;
    float *Se = S + (hv * dk + rg) * dv + e; /* row rg of column e */
    const int64_t step = RG * dv;           /* from row d to row d + RG */
    float s[RULE_ROWS];
#pragma unroll
    for (int j = 0; j < RULE_ROWS; j++) s[j] = on && rg + j * RG < rows ? Se[j * step] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const float *kt = k + (t * Hk + hk) * dk + rg, *qt = q + (t * Hk + hk) * dk + rg;
        const int64_t i = t * Hv + hv;
        const float decay = expf(g[i]), b = beta[i], vi = on ? v[i * dv + e] : 0.0f;
        float kd[RULE_ROWS], qd[RULE_ROWS], part = 0.0f;
#pragma unroll
        for (int j = 0; j < RULE_ROWS; j++) {
            const bool in = rg + j * RG < rows;
            kd[j] = in ? kt[j * RG] : 0.0f;
            qd[j] = in ? qt[j * RG] : 0.0f;
            s[j] *= decay;
            part += kd[j] * s[j];
        }
        const float kS = rule_column_sum(part, red[0], RG, c); /* every thread: a barrier */
        const float u = on ? b * (vi - kS) : 0.0f;
        part = 0.0f;
#pragma unroll
        for (int j = 0; j < RULE_ROWS; j++) {
            s[j] += kd[j] * u;
            part += qd[j] * s[j];
        }
        const float out = rule_column_sum(part, red[1], RG, c);
        if (rg == 0 && on) o[i * dv + e] = out;
    }
#pragma unroll
    for (int j = 0; j < RULE_ROWS; j++)
        if (on && rg + j * RG < rows) Se[j * step] = s[j];
}

/* ------------------------------------------------------------------------------------------ */
/* Chunked form through the GEMM launcher                                                      */
/* ------------------------------------------------------------------------------------------ */
/* Chunk of n <= C tokens from t0, value head h (q/k head h / (Hv / Hk)), state S_0 [dk, dv] on
 * entry, G_i = sum_{s <= i} g_s, G_last = G_(n-1); K, Q [C, dk], V [C, dv] its rows (zero past
 * n). Equations (2)-(4) of ref/layers/delta_rule.c with
 *   A = diag(beta) (K K^T o D)_strict ,  D_ij = e^(G_i - G_j) ;  T = (I + A)^-1
 *   W = T diag(beta e^G) K [C, dk] ;  U = T diag(beta) V [C, dv] ;  L = (Q K^T o D)_lower
 *   Qs = diag(e^G) Q ;  Kt = diag(e^(G_last - G)) K
 * give U~ = U - W S_0, O = Qs S_0 + L U~ and S_n = e^(G_last) S_0 + Kt^T U~. Since L U~ =
 * L U - (L W) S_0, the output needs only S-free factors besides S_0:
 *   O = L U + Q' S_0 ,  Q' = Qs - L W                                                     (5)
 * so that one GEMM with A = [W; -Q'] [2C, dk] and C = [U; L U] [2C, dv], alpha -1, beta 1,
 * yields [U~; O] (the same terms as U - W S_0 and Qs S_0 + L U~, associated differently).
 * Every exponent is <= 0 (g <= 0, e^(G_i - G_j) formed only for j <= i).
 *
 * The sequence runs in segments of cs chunks (as many as the OP workspace budget holds), the
 * state carried across them. A segment's slots s = h cs + c (head h, chunk c of the segment)
 * each hold, in the OP workspace:
 *   Gc [C]            G (past n: G_last)
 *   X  [2C, dk]       [K; Q]
 *   Kt [C, dk]        diag(e^(G_last - G)) K
 *   B  [C, dk + dv]   [diag(beta e^G) K | diag(beta) V]
 *   R  [2C, C]        [K; Q] K^T, then [T; L]
 *   F  [2C, dk + dv]  [W | U ; -Q' | L U], then [. | U~ ; . | O]
 * (rows past n zero), slot arrays one after the other, so that a slot is a fixed stride from
 * the next and a head's slot of chunk c a fixed stride (cs slots) from the next head's.
 * Per segment (launches):
 *   load     Gc, X, Kt, B, F's lower half [-Qs | 0]                       (kernel)
 *   R = X X_top^T                          batched over the slots  [2C, C], K dk  (GEMM)
 *   factor   A, T (forward substitution), L, over R                      (kernel)
 *   F_top = T B            = [W | U]       batched over the slots  [C, dk + dv], K C  (GEMM)
 *   F_bot += L F_top       = [-Q' | L U]   batched over the slots  [C, dk + dv], K C  (GEMM)
 *   per chunk c, in order, batched over the heads (the state S [Hv, dk, dv], dk dv apart):
 *     F[:, dk:] -= F[:, :dk] S     = [U~; O]          [C + n, dv], K dk  (GEMM)
 *     S <- e^(G_last) S            (per-head factor: BLAS beta is one per batch)  (kernel)
 *     S += Kt^T F_top[:, dk:]      = + Kt^T U~        [dk, dv], K n      (GEMM)
 *   output   o rows t0 .. of head h <- O                                   (kernel)
 * GEMMs in fp32 (fp32 operands and accumulation, as core/gemm.hip runs them). */

/* Block (c, h) of a segment starting at chunk c0, slot s = h cs + c: writes Gc, X, Kt, B and
 * the lower half of F ([-diag(e^G) Q | 0]); rows past n zero. Shared: G, g then e^G, beta,
 * e^(G_last - G) [C] each. */
__global__ void __launch_bounds__(RULE_THREADS)
    rule_chunk_load(const float *q, const float *k, const float *v, const float *g,
                    const float *beta, float *Gc, float *X, float *Kt, float *B, float *F,
                    int64_t T, int64_t Hk, int64_t Hv, int64_t dk, int64_t dv, int64_t C,
                    int64_t c0, int64_t cs)
{
    extern __shared__ float sh[];
    const int64_t c = blockIdx.x, hv = blockIdx.y, hk = hv / (Hv / Hk), t0 = (c0 + c) * C;
    const int64_t n = T - t0 < C ? T - t0 : C, s = hv * cs + c, DW = dk + dv, kq = Hk * dk;
    float *Gs = sh, *eg = Gs + C, *bs = eg + C, *tail = bs + C;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        eg[i] = i < n ? g[(t0 + i) * Hv + hv] : 0.0f; /* g, summed below */
        bs[i] = i < n ? beta[(t0 + i) * Hv + hv] : 0.0f;
    }
    __syncthreads();
    if (threadIdx.x == 0) {
        double acc = 0.0;
        for (int64_t i = 0; i < C; i++) {
            acc += eg[i];
            Gs[i] = (float)acc;
        }
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        eg[i] = expf(Gs[i]);
        tail[i] = i < n ? expf(Gs[C - 1] - Gs[i]) : 0.0f;
        Gc[s * C + i] = Gs[i];
    }
    __syncthreads();
    float *Xs = X + s * 2 * C * dk, *Kts = Kt + s * C * dk, *Bs = B + s * C * DW;
    float *Fb = F + (s * 2 * C + C) * DW;
    for (int64_t i = 0; i < C; i++) {
        const bool on = i < n;
        const float *ki = k + (t0 + i) * kq + hk * dk, *qi = q + (t0 + i) * kq + hk * dk;
        const float *vi = v + ((t0 + i) * Hv + hv) * dv;
        for (int64_t d = threadIdx.x; d < dk; d += blockDim.x) {
            const float kv = on ? ki[d] : 0.0f, qv = on ? qi[d] : 0.0f;
            Xs[i * dk + d] = kv;
            Xs[(C + i) * dk + d] = qv;
            Kts[i * dk + d] = tail[i] * kv;
            Bs[i * DW + d] = bs[i] * eg[i] * kv;
            Fb[i * DW + d] = -eg[i] * qv;
        }
        for (int64_t col = threadIdx.x; col < dv; col += blockDim.x) {
            Bs[i * DW + dk + col] = on ? bs[i] * vi[col] : 0.0f;
            Fb[i * DW + dk + col] = 0.0f;
        }
    }
}

/* Block (c, h), slot s = h cs + c, over R_s = [K K^T; Q K^T] [2C, C]:
 *   A_ij = beta_i e^(G_i - G_j) (K K^T)_ij (j < i < n) ;  T = (I + A)^-1 by forward
 *   substitution, row by row: T_i = e_i - sum_{m<i} A_im T_m ;  L_ij = e^(G_i - G_j) (Q K^T)_ij
 *   (j <= i < n)
 * written over R_s as [T; L] (rows and columns past n zero). Shared: A then T [C][C], G and
 * beta [C], one row [C]. */
__global__ void __launch_bounds__(RULE_THREADS)
    rule_chunk_factor(const float *Gc, const float *beta, float *R, int64_t T, int64_t Hv,
                      int64_t C, int64_t c0, int64_t cs)
{
    extern __shared__ float sh[];
    const int64_t c = blockIdx.x, hv = blockIdx.y, t0 = (c0 + c) * C;
    const int64_t n = T - t0 < C ? T - t0 : C, s = hv * cs + c;
    float *At = sh, *Gs = At + C * C, *bs = Gs + C, *row = bs + C;
    float *Rs = R + s * 2 * C * C;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) {
        Gs[i] = Gc[s * C + i];
        bs[i] = i < n ? beta[(t0 + i) * Hv + hv] : 0.0f;
    }
    __syncthreads();
    for (int64_t e = threadIdx.x; e < C * C; e += blockDim.x) {
        const int64_t i = e / C, j = e % C;
        float a = 0.0f, l = 0.0f;
        if (i < n && j <= i) {
            const float decay = expf(Gs[i] - Gs[j]);
            if (j < i) a = bs[i] * Rs[e] * decay;
            l = Rs[C * C + e] * decay;
        }
        At[e] = a;
        Rs[C * C + e] = l;
    }
    __syncthreads();
    for (int64_t i = 0; i < n; i++) {
        for (int64_t col = threadIdx.x; col < C; col += blockDim.x) {
            float t = col == i ? 1.0f : 0.0f;
            for (int64_t m = col; m < i; m++) t -= At[i * C + m] * At[m * C + col];
            row[col] = t;
        }
        __syncthreads();
        for (int64_t col = threadIdx.x; col < C; col += blockDim.x) At[i * C + col] = row[col];
        __syncthreads();
    }
    for (int64_t e = threadIdx.x; e < C * C; e += blockDim.x) Rs[e] = At[e];
}

/* Block (x, h): head h's state S_h [dk, dv] (per_head values, S [Hv, dk, dv]) times
 * e^(G_last) of its slot h cs + c (Gc's last entry). */
__global__ void rule_state_decay(const float *Gc, float *S, int64_t per_head, int64_t C,
                                 int64_t cs, int64_t c)
{
    const int64_t h = blockIdx.y;
    const float decay = expf(Gc[(h * cs + c) * C + C - 1]);
    float *Sh = S + h * per_head;
    for (int64_t i = hylo_first(); i < per_head; i += hylo_stride()) Sh[i] *= decay;
}

/* o [T, Hv, dv] rows t0 .. t0 + count - 1 (the segment's tokens, from its first chunk) <- O,
 * the columns dk .. of F's rows C + i of slot h cs + i / C. */
__global__ void rule_chunk_output(const float *F, float *o, int64_t t0, int64_t count,
                                  int64_t Hv, int64_t dk, int64_t dv, int64_t C, int64_t cs)
{
    const int64_t row = Hv * dv, DW = dk + dv;
    for (int64_t e = hylo_first(); e < count * row; e += hylo_stride()) {
        const int64_t t = e / row, hv = (e % row) / dv, col = e % dv;
        const int64_t s = hv * cs + t / C;
        o[t0 * row + e] = F[(s * 2 * C + C + t % C) * DW + dk + col];
    }
}


void hylo_hip_gated_delta_rule(hylo_hip_ctx *ctx, const hylo_gdn_dims *d, const float *q,
                               const float *k, const float *v, const float *g, const float *beta,
                               float *S, float *o, int64_t T, hylo_scan scan)
{
    if (T <= 0 || !hylo_hip_ok(ctx)) return;
    const int64_t Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k, dv = d->head_v;
    const hipStream_t stream = hylo_hip_stream(ctx);
    if (scan == HYLO_SCAN_RECURRENT) {
        const int64_t RG = (dk + RULE_ROWS - 1) / RULE_ROWS;
        if (RG * RULE_COLS > RULE_MAX_THREADS) {
            hylo_hip_fail(ctx, HYLO_ERR_USAGE,
                          "hip backend: gdn head_k %lld over %d (the recurrence keeps %d rows of "
                          "a state column per thread)",
                          (long long)dk, RULE_ROWS * RULE_MAX_THREADS / RULE_COLS, RULE_ROWS);
            return;
        }
        const dim3 grid((unsigned)((dv + RULE_COLS - 1) / RULE_COLS), (unsigned)Hv);
        rule_recurrent<<<grid, (unsigned)(RG * RULE_COLS), 0, stream>>>(q, k, v, g, beta, S, o,
                                                                        T, Hk, Hv, dk, dv);
        hylo_hip_launched(ctx, "delta rule recurrence");
        return;
    }
    const int64_t C = d->chunk < T ? d->chunk : T, nc = (T + C - 1) / C, DW = dk + dv;
    const size_t factor_shared = (size_t)(C * C + 3 * C) * sizeof(float);
    if (factor_shared > SHARED_LIMIT &&
        !hylo_hip_check(ctx, hipFuncSetAttribute((const void *)rule_chunk_factor,
                                                 hipFuncAttributeMaxDynamicSharedMemorySize,
                                                 (int)factor_shared),
                        "gdn chunk factors: shared memory for the chunk length"))
        return;
    /* floats of a slot: Gc C, X 2C dk, Kt C dk, B C DW, R 2C C, F 2C DW; cs chunks a segment */
    const int64_t slot_n = C * (1 + 3 * dk + 3 * DW + 2 * C);
    const size_t chunk_bytes = (size_t)(Hv * slot_n) * sizeof(float);
    const int64_t fit = (int64_t)(hylo_hip_op_budget("HYLO_HIP_GDN_BUDGET") / chunk_bytes);
    const int64_t seg = fit < 1 ? 1 : fit < nc ? fit : nc;
    float *work = (float *)hylo_hip_workspace(ctx, HYLO_HIP_OP, (size_t)seg * chunk_bytes);
    if (!work) return;
    const unsigned decay_blocks = hylo_hip_blocks((dk * dv + 3) / 4); /* 4 values a thread */
    for (int64_t c0 = 0; c0 < nc; c0 += seg) {
        const int64_t cs = nc - c0 < seg ? nc - c0 : seg, slots = Hv * cs;
        const int64_t t_seg = c0 * C, count = (T - t_seg < cs * C ? T - t_seg : cs * C);
        float *Gc = work, *X = Gc + slots * C, *Kt = X + slots * 2 * C * dk;
        float *B = Kt + slots * C * dk, *R = B + slots * C * DW, *F = R + slots * 2 * C * C;
        const dim3 grid((unsigned)cs, (unsigned)Hv);
        rule_chunk_load<<<grid, RULE_THREADS, 4 * C * sizeof(float), stream>>>(
            q, k, v, g, beta, Gc, X, Kt, B, F, T, Hk, Hv, dk, dv, C, c0, cs);
        if (!hylo_hip_launched(ctx, "gdn chunk load")) return;
        /* R = [K; Q] K^T */
        hylo_hip_gemm_batched(ctx, HYLO_F32, false, true, 2 * C, C, dk, 1.0f, X, dk, 2 * C * dk,
                              X, dk, 2 * C * dk, 0.0f, R, C, 2 * C * C, slots);
        rule_chunk_factor<<<grid, RULE_THREADS, factor_shared, stream>>>(Gc, beta, R, T, Hv, C,
                                                                         c0, cs);
        if (!hylo_hip_launched(ctx, "gdn chunk factors")) return;
        /* F_top = T B = [W | U] ;  F_bot += L F_top = [-Q' | L U] */
        hylo_hip_gemm_batched(ctx, HYLO_F32, false, false, C, DW, C, 1.0f, R, C, 2 * C * C, B,
                              DW, C * DW, 0.0f, F, DW, 2 * C * DW, slots);
        hylo_hip_gemm_batched(ctx, HYLO_F32, false, false, C, DW, C, 1.0f, R + C * C, C,
                              2 * C * C, F, DW, 2 * C * DW, 1.0f, F + C * DW, DW, 2 * C * DW,
                              slots);
        for (int64_t c = 0; c < cs; c++) {
            const int64_t n = T - (c0 + c) * C < C ? T - (c0 + c) * C : C;
            float *Fc = F + c * 2 * C * DW;
            /* [U~; O] = [U; L U] - [W; -Q'] S   (rows C + n past: padding) */
            hylo_hip_gemm_batched(ctx, HYLO_F32, false, false, C + n, dv, dk, -1.0f, Fc, DW,
                                  cs * 2 * C * DW, S, dv, dk * dv, 1.0f, Fc + dk, DW,
                                  cs * 2 * C * DW, Hv);
            if (!hylo_hip_ok(ctx)) return;
            rule_state_decay<<<dim3(decay_blocks, (unsigned)Hv), HYLO_HIP_THREADS, 0, stream>>>(
                Gc, S, dk * dv, C, cs, c);
            if (!hylo_hip_launched(ctx, "gdn state decay")) return;
            /* S += Kt^T U~ */
            hylo_hip_gemm_batched(ctx, HYLO_F32, true, false, dk, dv, n, 1.0f, Kt + c * C * dk,
                                  dk, cs * C * dk, Fc + dk, DW, cs * 2 * C * DW, 1.0f, S, dv,
                                  dk * dv, Hv);
        }
        if (!hylo_hip_ok(ctx)) return;
        rule_chunk_output<<<hylo_hip_blocks(count * Hv * dv), HYLO_HIP_THREADS, 0, stream>>>(
            F, o, t_seg, count, Hv, dk, dv, C, cs);
        if (!hylo_hip_launched(ctx, "gdn chunk output")) return;
    }
}
