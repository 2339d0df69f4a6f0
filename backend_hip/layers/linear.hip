/* linear.hip: y = x W^T + b: fp32 W and x, or in a bf16 context the bf16 copy of W against x
 * rounded to bf16 (both fp32-accumulated). One token (a decode step) streams W through the
 * matrix-vector kernel below; more go through the GEMM of core/gemm.hip. */
#include <stdint.h>

#include "core/device.h"
#include "layers/hip_layers.h"

#define GEMV_UNROLL 8    /* 16-byte chunks of W a thread loads before it uses the first */
#define GEMV_MAX_LANES 64 /* threads of a row, at most (a block: HYLO_HIP_THREADS / lanes  */
                          /* rows)                                                        */

/* Element k of a 16-byte chunk of fp32 (k < 4) or bf16 (k < 8) weights. */
__device__ inline float chunk_at(const uint4 &c, int k, const float *)
{
    return __uint_as_float(k == 0 ? c.x : k == 1 ? c.y : k == 2 ? c.z : c.w);
}

__device__ inline float chunk_at(const uint4 &c, int k, const uint16_t *)
{
    const int w = k / 2;
    const unsigned u = w == 0 ? c.x : w == 1 ? c.y : w == 2 ? c.z : c.w;
    return hylo_bf16_widen((uint16_t)(k % 2 ? u >> 16 : u & 0xffffu));
}

/* x as the GEMM would see it: rounded to bf16 against bf16 weights. */
__device__ inline float input_for(const float *, float v)
{
    return v;
}

__device__ inline float input_for(const uint16_t *, float v)
{
    return hylo_bf16_widen(hylo_bf16_round(v));
}

/* sum_k c_k x_k over one 16-byte chunk c of weights (4 fp32 or 8 bf16) and the matching x
 * (16-byte aligned), x as the GEMM would see it. */
template <typename T>
__device__ inline float chunk_dot(const uint4 &c, const float *x, const T *tag)
{
    constexpr int per = 16 / sizeof(T);
    const float4 *x4 = (const float4 *)x;
    float acc = 0.0f;
#pragma unroll
    for (int k4 = 0; k4 < per / 4; k4++) {
        const float4 v = x4[k4];
        acc += chunk_at(c, 4 * k4, tag) * input_for(tag, v.x) +
               chunk_at(c, 4 * k4 + 1, tag) * input_for(tag, v.y) +
               chunk_at(c, 4 * k4 + 2, tag) * input_for(tag, v.z) +
               chunk_at(c, 4 * k4 + 3, tag) * input_for(tag, v.w);
    }
    return acc;
}

/* The matrices of one matrix-vector launch: rows first[i] .. first[i + 1] - 1 of the
 * concatenation are matrix i's (W[i] [rows, in], and U[i] for the gated product), written to
 * y[i] with b[i] added where given (not in the gated product). */
#define GEMV_MATS 8
template <typename T>
struct gemv_set {
    const T *W[GEMV_MATS], *U[GEMV_MATS];
    const float *b[GEMV_MATS]; /* biases (device) or NULL */
    float *y[GEMV_MATS];
    int64_t first[GEMV_MATS + 1];
    int count;
};

/* Row `row` of the concatenation, y = W x (of its matrix), group of `lanes` threads (a power
 * of two dividing blockDim): each accumulates every lanes-th 16-byte chunk of the row,
 * GEMV_UNROLL chunks loaded at a time so that enough bytes are in flight (or every lanes-th
 * element when the rows or x are not 16-byte aligned), then the group's partial sums are added
 * (hylo_group_sum: shuffles, and shared memory only across warps). With NM = 2 the block
 * computes the same row of W and U, their loads interleaved, and writes the gated product
 *   y = silu(W x) * (U x)                            (SwiGLU's gate and up projections). */
template <typename T, int NM>
__global__ void __launch_bounds__(HYLO_HIP_THREADS)
    gemv_kernel(gemv_set<T> set, const float *x, int64_t in, int64_t lanes, bool vectors)
{
    __shared__ float red[NM][HYLO_HIP_THREADS];
    const int64_t lane = threadIdx.x % lanes;
    const int64_t row = (int64_t)blockIdx.x * (blockDim.x / lanes) + threadIdx.x / lanes;
    const bool on = row < set.first[set.count];
    int mat = 0;
    while (on && row >= set.first[mat + 1]) mat++;
    const int64_t local = on ? row - set.first[mat] : 0;
    const T *const Ws[2] = {set.W[mat] + local * in, set.U[mat] + local * in};
    float acc[NM];
#pragma unroll
    for (int m = 0; m < NM; m++) acc[m] = 0.0f;
    if (on) {
        if (vectors) {
            constexpr int per = 16 / sizeof(T); /* elements per 16-byte chunk */
            const int64_t n = in / per;
            int64_t i = lane;
            for (; i + (GEMV_UNROLL - 1) * lanes < n; i += GEMV_UNROLL * lanes) {
                uint4 chunk[NM][GEMV_UNROLL];
#pragma unroll
                for (int m = 0; m < NM; m++)
#pragma unroll
                    for (int u = 0; u < GEMV_UNROLL; u++)
                        chunk[m][u] = ((const uint4 *)Ws[m])[i + u * lanes];
#pragma unroll
                for (int m = 0; m < NM; m++)
#pragma unroll
                    for (int u = 0; u < GEMV_UNROLL; u++)
                        acc[m] += chunk_dot(chunk[m][u], x + (i + u * lanes) * per, Ws[0]);
            }
            for (; i < n; i += lanes)
#pragma unroll
                for (int m = 0; m < NM; m++)
                    acc[m] += chunk_dot(((const uint4 *)Ws[m])[i], x + i * per, Ws[0]);
        } else {
            for (int64_t i = lane; i < in; i += lanes)
#pragma unroll
                for (int m = 0; m < NM; m++)
                    acc[m] += hylo_load(Ws[m], i) * input_for(Ws[0], x[i]);
        }
    }
#pragma unroll
    for (int m = 0; m < NM; m++) acc[m] = hylo_group_sum(acc[m], (int)lanes, red[m]);
    if (lane == 0 && on)
        set.y[mat][local] = NM == 1 ? acc[0] + (set.b[mat] ? set.b[mat][local] : 0.0f)
                                    : hylo_silu(acc[0]) * acc[NM - 1];
}

/* One launch over the set's rows: y = W x (NM = 1) or silu(W x) * (U x) (NM = 2). */
template <int NM, typename T>
static void gemv(hylo_hip_ctx *ctx, const gemv_set<T> &set, const float *x, int64_t in)
{
    bool vectors = in % (16 / (int64_t)sizeof(T)) == 0 && (uintptr_t)x % 16 == 0;
    for (int i = 0; i < set.count; i++)
        vectors = vectors && (uintptr_t)set.W[i] % 16 == 0 && (uintptr_t)set.U[i] % 16 == 0;
    /* lanes enough for GEMV_UNROLL chunks each: one round of loads covers a short row */
    const int64_t chunks = in / (16 / (int64_t)sizeof(T));
    int64_t lanes = GEMV_MAX_LANES;
    while (lanes > 8 && lanes * GEMV_UNROLL > chunks) lanes /= 2;
    const int64_t rows = set.first[set.count], per_block = HYLO_HIP_THREADS / lanes;
    gemv_kernel<T, NM><<<(unsigned)((rows + per_block - 1) / per_block), HYLO_HIP_THREADS, 0,
                         hylo_hip_stream(ctx)>>>(set, x, in, lanes, vectors);
    hylo_hip_launched(ctx, "gemv");
}

/* The set of one matrix (and its gated partner U, or W again), its bias b or NULL. */
template <typename T>
static gemv_set<T> one_matrix(const T *W, const T *U, const float *b, float *y, int64_t out)
{
    gemv_set<T> set = {};
    set.W[0] = W;
    set.U[0] = U;
    set.b[0] = b;
    set.y[0] = y;
    set.first[1] = out;
    set.count = 1;
    return set;
}

/* y [T, n] += b [n] */
__global__ void add_bias_kernel(float *y, const float *b, int64_t T, int64_t n)
{
    for (int64_t i = hylo_first(); i < T * n; i += hylo_stride()) y[i] += b[i % n];
}

/* x [T, in], W [out, in] (host pointer of an uploaded weight), b [out] or NULL, y [T, out]. */
void hylo_hip_linear(void *vctx, const float *x, const float *W, const float *b, float *y,
                     int64_t T, int64_t in, int64_t out)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const uint16_t *W16 = hylo_hip_find_bf16(ctx, W);
    const float *W32 = W16 ? NULL : hylo_hip_find(ctx, W, "a projection matrix");
    const float *b_dev = b ? hylo_hip_find(ctx, b, "a bias") : NULL;
    if ((!W16 && !W32) || (b && !b_dev) || T <= 0 || !hylo_hip_ok(ctx)) return;
    if (T == 1) { /* the bias added by the kernel */
        if (W16) gemv<1>(ctx, one_matrix(W16, W16, b_dev, y, out), x, in);
        else gemv<1>(ctx, one_matrix(W32, W32, b_dev, y, out), x, in);
        return;
    }
    if (W16) {
        uint16_t *x16 = (uint16_t *)hylo_hip_workspace(ctx, HYLO_HIP_GEMM,
                                                       (size_t)(T * in) * sizeof(uint16_t));
        if (!x16) return;
        hylo_hip_to_bf16(ctx, x, x16, T * in);
        hylo_hip_gemm(ctx, HYLO_BF16, false, true, T, out, in, 1.0f, x16, in, W16, in, 0.0f, y, out);
    } else {
        hylo_hip_gemm(ctx, HYLO_F32, false, true, T, out, in, 1.0f, x, in, W32, in, 0.0f, y, out);
    }
    if (!b_dev || !hylo_hip_ok(ctx)) return;
    add_bias_kernel<<<hylo_hip_blocks(T * out), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        y, b_dev, T, out);
    hylo_hip_launched(ctx, "bias");
}

/* One token: h [F] = silu(x Wg^T) * (x Wu^T), x [D], Wg and Wu [F, D] (host pointers of
 * uploaded weights, bf16 copies in a bf16 context), both rows streamed by one kernel. */
void hylo_hip_gated_gemv(hylo_hip_ctx *ctx, const float *x, const float *Wg, const float *Wu,
                         float *h, int64_t D, int64_t F)
{
    const uint16_t *g16 = hylo_hip_find_bf16(ctx, Wg), *u16 = hylo_hip_find_bf16(ctx, Wu);
    if (g16 && u16) {
        if (hylo_hip_ok(ctx)) gemv<2>(ctx, one_matrix(g16, u16, NULL, h, F), x, D);
        return;
    }
    const float *g32 = hylo_hip_find(ctx, Wg, "the MLP gate");
    const float *u32 = hylo_hip_find(ctx, Wu, "the MLP up");
    if (g32 && u32 && hylo_hip_ok(ctx)) gemv<2>(ctx, one_matrix(g32, u32, NULL, h, F), x, D);
}

/* y [T, out] = x W^T with x [T, in] read from a cache (the caches' type: bf16 in a bf16
 * context, which is what linear would round x to; else fp32). */
void hylo_hip_linear_cache(hylo_hip_ctx *ctx, const void *x, const float *W, float *y, int64_t T,
                           int64_t in, int64_t out)
{
    if (!ctx->bf16) {
        hylo_hip_linear(ctx, (const float *)x, W, NULL, y, T, in, out);
        return;
    }
    const uint16_t *W16 = hylo_hip_find_bf16(ctx, W);
    if (!W16) {
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: a bf16 cache meets a matrix without "
                      "a bf16 copy");
        return;
    }
    if (T > 0 && hylo_hip_ok(ctx))
        hylo_hip_gemm(ctx, HYLO_BF16, false, true, T, out, in, 1.0f, x, in, W16, in, 0.0f, y, out);
}

/* The set of n matrices W[i] [out[i], in] in the context's weight type with their biases, or
 * false when one of them has no copy of that type (a failure recorded unless it is only a
 * missing bf16 copy). */
template <typename T>
static bool matrix_set(hylo_hip_ctx *ctx, int n, const float *const *W, const float *const *b,
                       float *const *y, const int64_t *out, gemv_set<T> *set)
{
    *set = {};
    for (int i = 0; i < n; i++) {
        const T *w;
        if constexpr (sizeof(T) == sizeof(uint16_t)) w = hylo_hip_find_bf16(ctx, W[i]);
        else w = hylo_hip_find(ctx, W[i], "a projection matrix");
        if (!w) return false;
        set->b[i] = b[i] ? hylo_hip_find(ctx, b[i], "a bias") : NULL;
        if (b[i] && !set->b[i]) return false;
        set->W[i] = set->U[i] = w;
        set->y[i] = y[i];
        set->first[i + 1] = set->first[i] + out[i];
    }
    set->count = n;
    return true;
}

/* y_i [T, out_i] = x [T, in] W_i^T + b_i for i < n (weights and biases host pointers, b_i
 * may be NULL): one token in one matrix-vector launch over the matrices' rows, more tokens one
 * GEMM each. */
void hylo_hip_linears(void *vctx, const float *x, int64_t T, int64_t in, int n,
                      const float *const *W, const float *const *b, float *const *y,
                      const int64_t *out)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    if (T <= 0 || n <= 0 || !hylo_hip_ok(ctx)) return;
    gemv_set<uint16_t> set16;
    gemv_set<float> set32;
    if (T == 1 && n <= GEMV_MATS) {
        if (ctx->bf16 && matrix_set(ctx, n, W, b, y, out, &set16)) {
            gemv<1>(ctx, set16, x, in);
            return;
        }
        if (!ctx->bf16 && matrix_set(ctx, n, W, b, y, out, &set32)) {
            gemv<1>(ctx, set32, x, in);
            return;
        }
        if (!hylo_hip_ok(ctx)) return;
    }
    for (int i = 0; i < n; i++) hylo_hip_linear(ctx, x, W[i], b[i], y[i], T, in, out[i]);
}
