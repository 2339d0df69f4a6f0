/* ssd.hip: the selective scan of Mamba2 (spec sec. 4): the token recurrence for decode steps and
 * the chunked SSD form for prefills (chunk-local states in parallel, a pass over the chunks
 * that carries the state, then every chunk's output in parallel). fp32, the state updated in
 * place. Head h reads x block h / (H / x_heads), B group h / (H / b_groups) and C group
 * h / (H / c_groups); x, B and C are column ranges of one [T, stride] buffer (mamba2.hip's
 * xBC after the conv). */
#include "core/device.h"
#include "layers/hip_layers.h"

#define MAX_STATE 1024 /* d_state a recurrence block can hold (one thread per state entry) */
#define ROW_TILE 16    /* output rows of a chunk computed together                         */

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

/* Thread (h, c): a[h, c, i] = sum_{i' <= i} dt_{i'} A_h over the chunk's tokens (in double). */
__global__ void ssd_cumsum(const float *dt, const float *A, float *a, int64_t T, int64_t H,
                           int64_t Q, int64_t nc)
{
    for (int64_t item = hylo_first(); item < H * nc; item += hylo_stride()) {
        const int64_t h = item / nc, c = item % nc, t0 = c * Q;
        const int64_t q = T - t0 < Q ? T - t0 : Q;
        double acc = 0.0;
        for (int64_t i = 0; i < q; i++) {
            acc += (double)dt[(t0 + i) * H + h] * (double)A[h];
            a[item * Q + i] = (float)acc;
        }
    }
}

/* Block (c, h): the state the chunk's own tokens leave, starting from zero,
 *   L[p, n] = sum_i e^(a_last - a_i) dt_i x_i[p] B_i[n]          into states [H, nc, P, N]   */
__global__ void ssd_chunk_state(ssd_view v, const float *dt, const float *a, float *states,
                                int64_t T, int64_t Q, int64_t nc)
{
    extern __shared__ float weight[]; /* [Q] */
    const int64_t c = blockIdx.x, h = blockIdx.y, t0 = c * Q;
    const int64_t q = T - t0 < Q ? T - t0 : Q;
    const float *ah = a + (h * nc + c) * Q;
    for (int64_t i = threadIdx.x; i < q; i += blockDim.x)
        weight[i] = expf(ah[q - 1] - ah[i]) * dt[(t0 + i) * v.H + h];
    __syncthreads();
    float *L = states + (h * nc + c) * v.P * v.N;
    for (int64_t e = threadIdx.x; e < v.P * v.N; e += blockDim.x) {
        const int64_t p = e / v.N, n = e % v.N;
        float acc = 0.0f;
        for (int64_t i = 0; i < q; i++) acc += weight[i] * x_of(v, t0 + i, h)[p] * B_of(v, t0 + i, h)[n];
        L[e] = acc;
    }
}

/* Thread (h, p, n): carries the state across chunks. states[h, c] holds chunk c's local state
 * on entry and the state entering chunk c on return:
 *   S_0 = ssm ;  S_{c+1} = e^(a_last(c)) S_c + L_c ;  ssm <- S_nc                             */
__global__ void ssd_state_pass(const float *a, float *states, float *ssm, int64_t T, int64_t H,
                               int64_t PN, int64_t Q, int64_t nc)
{
    for (int64_t item = hylo_first(); item < H * PN; item += hylo_stride()) {
        const int64_t h = item / PN, e = item % PN;
        float S = ssm[item];
        for (int64_t c = 0; c < nc; c++) {
            const int64_t q = T - c * Q < Q ? T - c * Q : Q;
            float *slot = states + (h * nc + c) * PN + e;
            const float local = *slot;
            *slot = S;
            S = expf(a[(h * nc + c) * Q + q - 1]) * S + local;
        }
        ssm[item] = S;
    }
}

/* Block (c, h), rows i0 .. i0 + ROW_TILE - 1 at a time: with S the state entering the chunk,
 *   G[i, j] = (C_i . B_j) e^(a_i - a_j) dt_j   (j <= i, else 0)
 *   y_i[p] = e^(a_i) sum_n C_i[n] S[p, n] + sum_j G[i, j] x_j[p] + D x_i[p]                  */
__global__ void ssd_chunk_out(ssd_view v, const float *dt, const float *a, const float *states,
                              const float *D, float *y, int64_t T, int64_t Q, int64_t nc)
{
    extern __shared__ float G[]; /* [ROW_TILE][Q] */
    const int64_t c = blockIdx.x, h = blockIdx.y, t0 = c * Q;
    const int64_t q = T - t0 < Q ? T - t0 : Q, P = v.P, N = v.N;
    const float *ah = a + (h * nc + c) * Q, *S = states + (h * nc + c) * P * N;
    for (int64_t i0 = 0; i0 < q; i0 += ROW_TILE) {
        const int64_t rows = q - i0 < ROW_TILE ? q - i0 : ROW_TILE;
        for (int64_t e = threadIdx.x; e < rows * q; e += blockDim.x) {
            const int64_t i = i0 + e / q, j = e % q;
            float g = 0.0f;
            if (j <= i) {
                const float *Ci = C_of(v, t0 + i, h), *Bj = B_of(v, t0 + j, h);
                float dot = 0.0f;
                for (int64_t n = 0; n < N; n++) dot += Ci[n] * Bj[n];
                g = dot * expf(ah[i] - ah[j]) * dt[(t0 + j) * v.H + h];
            }
            G[e] = g;
        }
        __syncthreads();
        for (int64_t e = threadIdx.x; e < rows * P; e += blockDim.x) {
            const int64_t ii = e / P, i = i0 + ii, p = e % P;
            const float *Ci = C_of(v, t0 + i, h), *Sp = S + p * N;
            float from_state = 0.0f;
            for (int64_t n = 0; n < N; n++) from_state += Ci[n] * Sp[n];
            float acc = expf(ah[i]) * from_state;
            for (int64_t j = 0; j <= i; j++) acc += G[ii * q + j] * x_of(v, t0 + j, h)[p];
            y[((t0 + i) * v.H + h) * P + p] = acc + D[h] * x_of(v, t0 + i, h)[p];
        }
        __syncthreads();
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
    const hipStream_t stream = hylo_hip_stream(ctx);
    if (scan == HYLO_SCAN_RECURRENT) {
        if (N > MAX_STATE) {
            hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: mamba2 d_state %lld > %d",
                          (long long)N, MAX_STATE);
            return;
        }
        unsigned threads = 32;
        while (threads < N) threads *= 2;
        ssd_recurrent<<<dim3((unsigned)P, (unsigned)H), threads, 0, stream>>>(v, dt, A, D,
                                                                              ssm_state, y, T);
        hylo_hip_launched(ctx, "ssd recurrence");
        return;
    }
    const int64_t Q = d->chunk < T ? d->chunk : T, nc = (T + Q - 1) / Q;
    if ((size_t)(ROW_TILE * Q) * sizeof(float) > 48 * 1024) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: mamba2 chunk %lld too long", (long long)Q);
        return;
    }
    float *a = (float *)hylo_hip_workspace(ctx, HYLO_HIP_OP,
                                           (size_t)(H * nc * (Q + P * N)) * sizeof(float));
    if (!a) return;
    float *states = a + H * nc * Q;
    const dim3 chunks((unsigned)nc, (unsigned)H);
    ssd_cumsum<<<hylo_hip_blocks(H * nc), HYLO_HIP_THREADS, 0, stream>>>(dt, A, a, T, H, Q, nc);
    if (!hylo_hip_launched(ctx, "ssd cumsum")) return;
    ssd_chunk_state<<<chunks, HYLO_HIP_THREADS, (size_t)Q * sizeof(float), stream>>>(
        v, dt, a, states, T, Q, nc);
    if (!hylo_hip_launched(ctx, "ssd chunk states")) return;
    ssd_state_pass<<<hylo_hip_blocks(H * P * N), HYLO_HIP_THREADS, 0, stream>>>(
        a, states, ssm_state, T, H, P * N, Q, nc);
    if (!hylo_hip_launched(ctx, "ssd state pass")) return;
    ssd_chunk_out<<<chunks, HYLO_HIP_THREADS, (size_t)(ROW_TILE * Q) * sizeof(float), stream>>>(
        v, dt, a, states, D, y, T, Q, nc);
    hylo_hip_launched(ctx, "ssd chunk outputs");
}
