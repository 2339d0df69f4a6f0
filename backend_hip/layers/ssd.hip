/* ssd.hip: the selective scan of Mamba2 (spec sec. 4): the token recurrence for decode steps and
 * the chunked SSD form for prefills, its per-chunk products through the batched GEMMs (fp32).
 * Head h reads x block h / (H / x_heads), B group h / (H / b_groups) and C group
 * h / (H / c_groups); x, B and C are column ranges of one [T, stride] buffer (mamba2.hip's
 * xBC after the conv). The state is updated in place. HYLO_HIP_SSD_BUDGET (bytes) replaces
 * HYLO_HIP_OP_BUDGET, the chunked form's workspace. */
#include "core/device.h"
#include "layers/hip_layers.h"

#define MAX_STATE 1024                 /* d_state a recurrence block can hold (a thread each) */

/* Token t's vectors of head h. */
typedef struct {
    const float *x, *B, *C;
    int64_t stride, P, N, H, x_group, b_group, c_group;
} ssd_view;

__device__ inline const float *x_of(const ssd_view &v, int64_t t, int64_t h)
{
    return v.x + t * v.stride + (h / v.x_group) * v.P;
}

__device__ inline const float *B_of(const ssd_view &v, int64_t t, int64_t h)
{
    return v.B + t * v.stride + (h / v.b_group) * v.N;
}

__device__ inline const float *C_of(const ssd_view &v, int64_t t, int64_t h)
{
    return v.C + t * v.stride + (h / v.c_group) * v.N;
}

/* Block (p, h), thread n < N: row p of head h's state, S [H, P, N]. For each token:
 *   S[p, n] <- e^(dt A) S[p, n] + dt x_p B_n ;  y[t, h, p] = sum_n S[p, n] C_n + D x_p      */
__global__ void ssd_recurrent(ssd_view v, const float *dt, const float *A, const float *D,
                              float *ssm, float *y, int64_t T)
{
    __shared__ float red[MAX_STATE];
    const int64_t p = blockIdx.x, h = blockIdx.y, n = threadIdx.x;
    const bool on = n < v.N;
    float *S = ssm + (h * v.P + p) * v.N;
    float s = on ? S[n] : 0.0f;
    for (int64_t t = 0; t < T; t++) {
        const float xp = x_of(v, t, h)[p], dt_t = dt[t * v.H + h];
        const float b = on ? B_of(v, t, h)[n] : 0.0f, c = on ? C_of(v, t, h)[n] : 0.0f;
        s = expf(dt_t * A[h]) * s + dt_t * xp * b;
        const float sum = hylo_block_sum(s * c, red);
        if (threadIdx.x == 0) y[(t * v.H + h) * v.P + p] = sum + D[h] * xp;
    }
    if (on) S[n] = s;
}

/* The chunked form, as ref/layers/ssd.c's four steps. Chunks of Q tokens (the last one padded
 * with zero rows), a slab of nb chunks at a time (as many as the workspace budget holds, at
 * least one); product b = c H + h of a slab is its chunk c's head h, so every GEMM is one
 * strided batch of nb H products. Per product, with t0 the chunk's first token, q <= Q its
 * tokens, a_i = sum_{i' <= i} dt_{i'} A_h (in double; a_i = a_{q-1} on padding rows, where
 * dt_i = 0) and w_j = e^(a_{Q-1} - a_j) dt_j, in launch order:
 *   gather    X [Q, P], B [Q, N], C [Q, N]: the head's rows of xBC;  Bw [Q, N] = diag(w) B
 *   step 1a   G [Q, Q] = C B^T                                       GEMM [Q, N] x [N, Q]
 *   step 2    S [P, N] = X^T Bw        (the chunk's own state)       GEMM [P, Q] x [Q, N]
 *   step 3    S_prev(c) = ssm for the slab's first chunk, e^(a_{Q-1}(c-1)) S_prev(c-1) +
 *             S(c-1) after it (over S in place); ssm <- the state after the slab's last chunk
 *   step 4    Y [Q, P] = C S_prev^T                                  GEMM [Q, N] x [N, P]
 *   decays    M [Q, Q] = G o L, L[i, j] = e^(a_i - a_j) dt_j (j <= i, else 0), over G;
 *             Y[i, :] *= e^(a_i)       (Y_off = diag(e^a) C S_prev^T)
 *   step 1b   Y += M X                 (Y_diag, the intra-chunk output) GEMM [Q, Q] x [Q, P]
 *   output    y[t0 + i, h, :] = Y[i, :] + D_h x_i                    (rows i < q)           */
typedef struct {
    float *a;  /* [nb H, Q]    cumulative log-decay                       */
    float *dt; /* [nb H, Q]    time steps (0 on padding rows)             */
    float *X;  /* [nb H, Q, P]                                            */
    float *B;  /* [nb H, Q, N]                                            */
    float *Bw; /* [nb H, Q, N] B rows weighted by w                       */
    float *C;  /* [nb H, Q, N]                                            */
    float *G;  /* [nb H, Q, Q] C B^T, then M                              */
    float *Y;  /* [nb H, Q, P]                                            */
    float *S;  /* [nb H, P, N] the chunks' own states, then S_prev        */
} ssd_slab;

/* Floats of one chunk's products in a slab (all heads). */
static int64_t slab_floats(int64_t H, int64_t P, int64_t N, int64_t Q)
{
    return H * (2 * Q + 2 * Q * P + 3 * Q * N + Q * Q + P * N);
}

static ssd_slab slab_carve(float *ws, int64_t products, int64_t P, int64_t N, int64_t Q)
{
    ssd_slab s;
    s.a = ws;
    s.dt = s.a + products * Q;
    s.X = s.dt + products * Q;
    s.B = s.X + products * Q * P;
    s.Bw = s.B + products * Q * N;
    s.C = s.Bw + products * Q * N;
    s.G = s.C + products * Q * N;
    s.Y = s.G + products * Q * Q;
    s.S = s.Y + products * Q * P;
    return s;
}

/* Block (c, h) of a slab starting at chunk c0: the product's a, dt, X, B, Bw and C. */
__global__ void ssd_gather(ssd_view v, const float *dt, const float *A, ssd_slab s, int64_t T,
                           int64_t Q, int64_t c0)
{
    extern __shared__ float chunk[]; /* sdt [Q], sa [Q] */
    float *sdt = chunk, *sa = chunk + Q;
    const int64_t h = blockIdx.y, b = blockIdx.x * v.H + h, t0 = (c0 + blockIdx.x) * Q;
    const int64_t q = T - t0 < Q ? T - t0 : Q, P = v.P, N = v.N;
    for (int64_t i = threadIdx.x; i < Q; i += blockDim.x)
        sdt[i] = i < q ? dt[(t0 + i) * v.H + h] : 0.0f;
    __syncthreads();
    if (threadIdx.x == 0) {
        double acc = 0.0;
        for (int64_t i = 0; i < Q; i++) {
            acc += (double)sdt[i] * (double)A[h];
            sa[i] = (float)acc;
        }
    }
    __syncthreads();
    for (int64_t i = threadIdx.x; i < Q; i += blockDim.x) {
        s.a[b * Q + i] = sa[i];
        s.dt[b * Q + i] = sdt[i];
    }
    for (int64_t e = threadIdx.x; e < Q * P; e += blockDim.x) {
        const int64_t i = e / P;
        s.X[b * Q * P + e] = i < q ? x_of(v, t0 + i, h)[e % P] : 0.0f;
    }
    const float a_last = sa[Q - 1];
    for (int64_t e = threadIdx.x; e < Q * N; e += blockDim.x) {
        const int64_t i = e / N, n = e % N, k = b * Q * N + e;
        const float Bv = i < q ? B_of(v, t0 + i, h)[n] : 0.0f;
        s.B[k] = Bv;
        s.Bw[k] = expf(a_last - sa[i]) * sdt[i] * Bv;
        s.C[k] = i < q ? C_of(v, t0 + i, h)[n] : 0.0f;
    }
}

/* Thread (h, e) of the state entries: step 3 over the slab's nb chunks. */
__global__ void ssd_state_pass(ssd_slab s, float *ssm, int64_t H, int64_t PN, int64_t Q,
                               int64_t nb)
{
    for (int64_t item = hylo_first(); item < H * PN; item += hylo_stride()) {
        const int64_t h = item / PN, e = item % PN;
        float S = ssm[item];
        for (int64_t c = 0; c < nb; c++) {
            const int64_t b = c * H + h;
            float *slot = s.S + b * PN + e;
            const float local = *slot;
            *slot = S;
            S = expf(s.a[b * Q + Q - 1]) * S + local;
        }
        ssm[item] = S;
    }
}

/* Row r = b Q + i of the slab's products: the decays on G's row i and on Y's. */
__global__ void ssd_decays(ssd_slab s, int64_t rows, int64_t Q, int64_t P)
{
    for (int64_t r = blockIdx.x; r < rows; r += gridDim.x) {
        const int64_t i = r % Q;
        const float *a = s.a + (r - i), *dt = s.dt + (r - i);
        const float ai = a[i];
        float *G = s.G + r * Q, *Y = s.Y + r * P;
        for (int64_t j = threadIdx.x; j < Q; j += blockDim.x)
            G[j] = j <= i ? G[j] * expf(ai - a[j]) * dt[j] : 0.0f;
        const float decay = expf(ai);
        for (int64_t p = threadIdx.x; p < P; p += blockDim.x) Y[p] *= decay;
    }
}

/* Thread per y entry of the slab's tokens t0 .. t0 + n / (H P) - 1: y = Y + D x. */
__global__ void ssd_output(ssd_view v, const ssd_slab s, const float *D, float *y, int64_t t0,
                           int64_t n, int64_t Q)
{
    const int64_t P = v.P, HP = v.H * P;
    for (int64_t e = hylo_first(); e < n; e += hylo_stride()) {
        const int64_t r = e / HP, h = (e / P) % v.H, p = e % P;
        const int64_t b = (r / Q) * v.H + h, i = r % Q;
        y[t0 * HP + e] = s.Y[(b * Q + i) * P + p] + D[h] * x_of(v, t0 + r, h)[p];
    }
}


/* The chunked form over T tokens (see above): per slab, a gather, four batched GEMMs, the
 * state pass, the decays and the output; 8 launches. */
static void ssd_chunked(hylo_hip_ctx *ctx, const ssd_view &v, const float *dt, const float *A,
                        const float *D, float *ssm, float *y, int64_t T, int64_t chunk)
{
    const int64_t H = v.H, P = v.P, N = v.N, Q = chunk < T ? chunk : T, nc = (T + Q - 1) / Q;
    if ((size_t)(2 * Q) * sizeof(float) > 48 * 1024) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: mamba2 chunk %lld too long", (long long)Q);
        return;
    }
    const int64_t per_chunk = slab_floats(H, P, N, Q);
    int64_t nb = (int64_t)(hylo_hip_op_budget("HYLO_HIP_SSD_BUDGET") / ((size_t)per_chunk * sizeof(float)));
    nb = nb < 1 ? 1 : nb > nc ? nc : nb;
    const int64_t slabs = (nc + nb - 1) / nb;
    nb = (nc + slabs - 1) / slabs; /* slabs of even size */
    float *ws = (float *)hylo_hip_workspace(ctx, HYLO_HIP_OP,
                                            (size_t)(nb * per_chunk) * sizeof(float));
    if (!ws) return;
    const hipStream_t stream = hylo_hip_stream(ctx);
    for (int64_t c0 = 0; c0 < nc; c0 += nb) {
        const int64_t n = nc - c0 < nb ? nc - c0 : nb, bn = n * H, t0 = c0 * Q;
        const int64_t tokens = (T < t0 + n * Q ? T : t0 + n * Q) - t0;
        const ssd_slab s = slab_carve(ws, bn, P, N, Q);
        ssd_gather<<<dim3((unsigned)n, (unsigned)H), HYLO_HIP_THREADS,
                     (size_t)(2 * Q) * sizeof(float), stream>>>(v, dt, A, s, T, Q, c0);
        if (!hylo_hip_launched(ctx, "ssd gather")) return;
        hylo_hip_gemm_batched(ctx, HYLO_F32, false, true, Q, Q, N, 1.0f, s.C, N, Q * N, s.B, N,
                              Q * N, 0.0f, s.G, Q, Q * Q, bn);
        hylo_hip_gemm_batched(ctx, HYLO_F32, true, false, P, N, Q, 1.0f, s.X, P, Q * P, s.Bw, N,
                              Q * N, 0.0f, s.S, N, P * N, bn);
        if (!hylo_hip_ok(ctx)) return;
        ssd_state_pass<<<hylo_hip_blocks(H * P * N), HYLO_HIP_THREADS, 0, stream>>>(s, ssm, H,
                                                                                   P * N, Q, n);
        if (!hylo_hip_launched(ctx, "ssd state pass")) return;
        hylo_hip_gemm_batched(ctx, HYLO_F32, false, true, Q, P, N, 1.0f, s.C, N, Q * N, s.S, N,
                              P * N, 0.0f, s.Y, P, Q * P, bn);
        if (!hylo_hip_ok(ctx)) return;
        ssd_decays<<<hylo_hip_blocks(bn * Q * HYLO_HIP_THREADS), HYLO_HIP_THREADS, 0, stream>>>(
            s, bn * Q, Q, P);
        if (!hylo_hip_launched(ctx, "ssd decays")) return;
        hylo_hip_gemm_batched(ctx, HYLO_F32, false, false, Q, P, Q, 1.0f, s.G, Q, Q * Q, s.X, P,
                              Q * P, 1.0f, s.Y, P, Q * P, bn);
        if (!hylo_hip_ok(ctx)) return;
        ssd_output<<<hylo_hip_blocks(tokens * H * P), HYLO_HIP_THREADS, 0, stream>>>(
            v, s, D, y, t0, tokens * H * P, Q);
        if (!hylo_hip_launched(ctx, "ssd output")) return;
    }
}

void hylo_hip_ssd_scan(hylo_hip_ctx *ctx, const hylo_mamba2_dims *d, const float *xbc,
                       int64_t stride, const float *dt, const float *A, const float *D,
                       float *ssm_state, float *y, int64_t T, hylo_scan scan)
{
    if (T <= 0 || !hylo_hip_ok(ctx)) return;
    const int64_t H = d->nheads, P = d->headdim, N = d->d_state;
    const ssd_view v = {xbc,    xbc + d->x_heads * P, xbc + d->x_heads * P + d->b_groups * N,
                        stride, P,                    N,
                        H,      H / d->x_heads,       H / d->b_groups,
                        H / d->c_groups};
    if (scan != HYLO_SCAN_RECURRENT) {
        ssd_chunked(ctx, v, dt, A, D, ssm_state, y, T, d->chunk);
        return;
    }
    if (N > MAX_STATE) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: mamba2 d_state %lld > %d", (long long)N,
                      MAX_STATE);
        return;
    }
    unsigned threads = 32;
    while (threads < N) threads *= 2;
    ssd_recurrent<<<dim3((unsigned)P, (unsigned)H), threads, 0, hylo_hip_stream(ctx)>>>(
        v, dt, A, D, ssm_state, y, T);
    hylo_hip_launched(ctx, "ssd recurrence");
}
