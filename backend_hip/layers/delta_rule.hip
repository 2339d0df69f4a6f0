/* delta_rule.hip: the gated delta rule of Gated DeltaNet (spec sec. 5): the token recurrence
 * for decode steps and the chunked WY / UT-transform form for prefills, as equations (1)-(4)
 * of ref/layers/delta_rule.c. The columns of a head's state S [dk, dv] evolve independently,
 * so both split every head across blocks of columns. Chunked: each chunk's WY factors are
 * built in parallel, then one pass over the chunks per column block carries the state. fp32,
 * the state updated in place. Value head hv reads q/k head hv / (Hv / Hk). */
#include "core/device.h"
#include "layers/hip_layers.h"

#define COLS 32               /* state columns of a recurrence block      */
#define RULE_THREADS 256
#define SHARED_LIMIT (48 * 1024)

/* Block (column block, hv), thread (row group rg, column e): for each token, with
 * k, q the token's vectors and RG = blockDim / COLS row groups splitting the dk rows,
 *   S <- e^g S ;  u = beta (v - S^T k) ;  S <- S + k u^T ;  o = S^T q                         */
__global__ void __launch_bounds__(RULE_THREADS)
    rule_recurrent(const float *q, const float *k, const float *v, const float *g,
                   const float *beta, float *S, float *o, int64_t T, int64_t Hk, int64_t Hv,
                   int64_t dk, int64_t dv)
{
    extern __shared__ float sh[];
    const int64_t RG = blockDim.x / COLS, rg = threadIdx.x / COLS, col = threadIdx.x % COLS;
    const int64_t hv = blockIdx.y, hk = hv / (Hv / Hk), e = (int64_t)blockIdx.x * COLS + col;
    const bool on = e < dv;
    float *ks = sh, *qs = ks + dk, *red = qs + dk, *u = red + RG * COLS;
    float *Sh = S + hv * dk * dv;
    for (int64_t t = 0; t < T; t++) {
        const int64_t i = t * Hv + hv;
        for (int64_t d = threadIdx.x; d < dk; d += blockDim.x) {
            ks[d] = k[(t * Hk + hk) * dk + d];
            qs[d] = q[(t * Hk + hk) * dk + d];
        }
        __syncthreads();
        const float decay = expf(g[i]);
        float part = 0.0f;
        if (on)
            for (int64_t d = rg; d < dk; d += RG) {
                const float s = Sh[d * dv + e] * decay;
                Sh[d * dv + e] = s;
                part += ks[d] * s;
            }
        red[rg * COLS + col] = part;
        __syncthreads();
        if (rg == 0) {
            float kS = 0.0f;
            for (int64_t r = 0; r < RG; r++) kS += red[r * COLS + col];
            u[col] = on ? beta[i] * (v[i * dv + e] - kS) : 0.0f;
        }
        __syncthreads();
        part = 0.0f;
        if (on)
            for (int64_t d = rg; d < dk; d += RG) {
                const float s = Sh[d * dv + e] + ks[d] * u[col];
                Sh[d * dv + e] = s;
                part += qs[d] * s;
            }
        red[rg * COLS + col] = part;
        __syncthreads();
        if (rg == 0 && on) {
            float out = 0.0f;
            for (int64_t r = 0; r < RG; r++) out += red[r * COLS + col];
            o[i * dv + e] = out;
        }
        __syncthreads();
    }
}

/* Block (chunk c, hv): the chunk's n tokens from t0, with G the cumulative log-decays and
 * D_ij = e^(G_i - G_j):
 *   A = diag(beta) (K K^T o D)_strict ;  T = (I + A)^-1 (forward substitution, row by row:
 *   T_i = e_i - sum_{m<i} A_im T_m) ;  W = T diag(beta e^G) K ;  U = T diag(beta) V ;
 *   L = (Q K^T o D)_lower (diagonal kept)
 * into Gc [Hv, nc, C], W [Hv, nc, C, dk], U [Hv, nc, C, dv], L [Hv, nc, C, C] (rows and
 * columns past n zero). Shared: G, beta, beta e^G [C], A then T [C][C], one row [C]. */
__global__ void __launch_bounds__(RULE_THREADS)
    rule_chunk_prep(const float *q, const float *k, const float *v, const float *g,
                    const float *beta, float *Gc, float *W, float *U, float *L, int64_t T,
                    int64_t Hk, int64_t Hv, int64_t dk, int64_t dv, int64_t C, int64_t nc)
{
    extern __shared__ float sh[];
    const int64_t c = blockIdx.x, hv = blockIdx.y, hk = hv / (Hv / Hk), t0 = c * C;
    const int64_t n = T - t0 < C ? T - t0 : C, slot = hv * nc + c;
    float *Gs = sh, *bs = Gs + C, *bw = bs + C, *At = bw + C, *row = At + C * C;
    const int64_t kq = Hk * dk; /* row stride of q and k */
    const float *K = k + t0 * kq + hk * dk, *Qm = q + t0 * kq + hk * dk;
    const float *V = v + (t0 * Hv + hv) * dv;
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) bs[i] = i < n ? beta[(t0 + i) * Hv + hv] : 0.0f;
    if (threadIdx.x == 0) {
        double acc = 0.0;
        for (int64_t i = 0; i < C; i++) {
            if (i < n) acc += g[(t0 + i) * Hv + hv];
            Gs[i] = (float)acc;
        }
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) bw[i] = bs[i] * expf(Gs[i]);
    for (int64_t e = threadIdx.x; e < C * C; e += blockDim.x) {
        const int64_t i = e / C, j = e % C;
        float a = 0.0f, l = 0.0f;
        if (i < n && j <= i) {
            float kk = 0.0f, qk = 0.0f;
            for (int64_t d = 0; d < dk; d++) {
                const float kj = K[j * kq + d];
                kk += K[i * kq + d] * kj;
                qk += Qm[i * kq + d] * kj;
            }
            const float decay = expf(Gs[i] - Gs[j]);
            if (j < i) a = bs[i] * kk * decay;
            l = qk * decay;
        }
        At[e] = a;
        L[slot * C * C + e] = l;
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
    for (int64_t i = threadIdx.x; i < C; i += blockDim.x) Gc[slot * C + i] = Gs[i];
    for (int64_t e = threadIdx.x; e < C * dk; e += blockDim.x) {
        const int64_t i = e / dk, d = e % dk;
        float acc = 0.0f;
        if (i < n)
            for (int64_t m = 0; m <= i; m++) acc += At[i * C + m] * bw[m] * K[m * kq + d];
        W[slot * C * dk + e] = acc;
    }
    for (int64_t e = threadIdx.x; e < C * dv; e += blockDim.x) {
        const int64_t i = e / dv, col = e % dv;
        float acc = 0.0f;
        if (i < n)
            for (int64_t m = 0; m <= i; m++) acc += At[i * C + m] * bs[m] * V[m * Hv * dv + col];
        U[slot * C * dv + e] = acc;
    }
}

/* Block (column block of BC columns from e0, hv): the state columns Ss [dk][BC] carried over
 * the chunks in order. Per chunk (n tokens from t0, G its log-decays, G_last = G[n-1]):
 *   U~ = U - W S                                                  [n, BC]
 *   O_i = e^(G_i) q_i^T S + sum_{j<=i} L_ij U~_j                   (the state on entry)
 *   S <- e^(G_last) S + sum_j e^(G_last - G_j) k_j U~_j^T
 * Shared: Ss [dk][BC], U~ [C][BC], and per chunk e^(G_i), e^(G_last - G_j) [C] each. */
__global__ void __launch_bounds__(RULE_THREADS)
    rule_chunk_scan(const float *q, const float *k, const float *Gc, const float *W,
                    const float *U, const float *L, float *S, float *o, int64_t T, int64_t Hk,
                    int64_t Hv, int64_t dk, int64_t dv, int64_t C, int64_t nc, int64_t BC)
{
    extern __shared__ float sh[];
    const int64_t hv = blockIdx.y, hk = hv / (Hv / Hk), e0 = (int64_t)blockIdx.x * BC;
    const int64_t width = dv - e0 < BC ? dv - e0 : BC, kq = Hk * dk;
    float *Ss = sh, *Ut = Ss + dk * BC, *eg = Ut + C * BC, *tail = eg + C;
    float *Sh = S + hv * dk * dv + e0;
    for (int64_t e = threadIdx.x; e < dk * BC; e += blockDim.x) {
        const int64_t d = e / BC, col = e % BC;
        Ss[e] = col < width ? Sh[d * dv + col] : 0.0f;
    }
    for (int64_t c = 0; c < nc; c++) {
        const int64_t t0 = c * C, n = T - t0 < C ? T - t0 : C, slot = hv * nc + c;
        const float *Wc = W + slot * C * dk, *Uc = U + slot * C * dv, *Lc = L + slot * C * C;
        const float G_last = Gc[slot * C + n - 1];
        for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
            eg[i] = expf(Gc[slot * C + i]);
            tail[i] = expf(G_last - Gc[slot * C + i]);
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < n * BC; e += blockDim.x) {
            const int64_t i = e / BC, col = e % BC;
            float acc = col < width ? Uc[i * dv + e0 + col] : 0.0f;
            for (int64_t d = 0; d < dk; d++) acc -= Wc[i * dk + d] * Ss[d * BC + col];
            Ut[e] = acc;
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < n * BC; e += blockDim.x) {
            const int64_t i = e / BC, col = e % BC;
            if (col >= width) continue;
            const float *qi = q + (t0 + i) * kq + hk * dk;
            float from_state = 0.0f;
            for (int64_t d = 0; d < dk; d++) from_state += qi[d] * Ss[d * BC + col];
            float acc = eg[i] * from_state;
            for (int64_t j = 0; j <= i; j++) acc += Lc[i * C + j] * Ut[j * BC + col];
            o[((t0 + i) * Hv + hv) * dv + e0 + col] = acc;
        }
        __syncthreads();
        const float decay = expf(G_last);
        for (int64_t e = threadIdx.x; e < dk * BC; e += blockDim.x) {
            const int64_t d = e / BC, col = e % BC;
            float acc = decay * Ss[e];
            for (int64_t j = 0; j < n; j++)
                acc += tail[j] * k[(t0 + j) * kq + hk * dk + d] * Ut[j * BC + col];
            Ss[e] = acc;
        }
        __syncthreads();
    }
    for (int64_t e = threadIdx.x; e < dk * BC; e += blockDim.x) {
        const int64_t d = e / BC, col = e % BC;
        if (col < width) Sh[d * dv + col] = Ss[e];
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
        const size_t shared = (size_t)(2 * dk + (RULE_THREADS / COLS + 1) * COLS) * sizeof(float);
        if (shared > SHARED_LIMIT) {
            hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: gdn head_k %lld too large",
                          (long long)dk);
            return;
        }
        const dim3 grid((unsigned)((dv + COLS - 1) / COLS), (unsigned)Hv);
        rule_recurrent<<<grid, RULE_THREADS, shared, stream>>>(q, k, v, g, beta, S, o, T, Hk,
                                                               Hv, dk, dv);
        hylo_hip_launched(ctx, "delta rule recurrence");
        return;
    }
    const int64_t C = d->chunk < T ? d->chunk : T, nc = (T + C - 1) / C;
    const size_t prep_shared = (size_t)(C * C + 4 * C) * sizeof(float);
    /* 16 columns a block: Hv dv / 16 blocks in flight (192 for HyLo-1B) */
    int64_t BC = 16;
    while (BC > 4 && (size_t)(dk * BC + C * BC + 2 * C) * sizeof(float) > SHARED_LIMIT) BC /= 2;
    const size_t scan_shared = (size_t)(dk * BC + C * BC + 2 * C) * sizeof(float);
    if (prep_shared > SHARED_LIMIT || scan_shared > SHARED_LIMIT) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: gdn chunk %lld with head_k %lld too large",
                      (long long)C, (long long)dk);
        return;
    }
    /* OP workspace: Gc [Hv, nc, C], W [.., C, dk], U [.., C, dv], L [.., C, C] */
    const int64_t slots = Hv * nc;
    float *Gc = (float *)hylo_hip_workspace(
        ctx, HYLO_HIP_OP, (size_t)(slots * C * (1 + dk + dv + C)) * sizeof(float));
    if (!Gc) return;
    float *W = Gc + slots * C, *U = W + slots * C * dk, *L = U + slots * C * dv;
    rule_chunk_prep<<<dim3((unsigned)nc, (unsigned)Hv), RULE_THREADS, prep_shared, stream>>>(
        q, k, v, g, beta, Gc, W, U, L, T, Hk, Hv, dk, dv, C, nc);
    if (!hylo_hip_launched(ctx, "delta rule chunk factors")) return;
    const dim3 grid((unsigned)((dv + BC - 1) / BC), (unsigned)Hv);
    rule_chunk_scan<<<grid, RULE_THREADS, scan_shared, stream>>>(q, k, Gc, W, U, L, S, o, T, Hk,
                                                                 Hv, dk, dv, C, nc, BC);
    hylo_hip_launched(ctx, "delta rule chunk pass");
}
