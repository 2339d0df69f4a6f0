/* gemm.hip: C = alpha op(A) op(B) + beta C (row-major, fp32 accumulation) for fp32 or bf16
 * operands, one product or a strided batch of them: hipBLAS / cuBLAS when the context has a
 * handle, else the built-in tiled kernel. */
#include "core/device.h"

#define TILE 64   /* C tile of a block: TILE x TILE                          */
#define DEPTH 16  /* k-slice staged in shared memory per step                */
#define SIDE 16   /* threads per tile side: each owns 4 x 4 outputs, SIDE apart */
#define MAX_LAYERS 65535 /* products of one built-in launch (the grid's z extent)   */

__device__ inline float widen(float v)
{
    return v;
}

__device__ inline float widen(uint16_t v)
{
    return hylo_bf16_widen(v);
}

/* Block (bx, by) computes C rows [by TILE, +TILE), columns [bx TILE, +TILE): per k-slice of
 * DEPTH, both operands are staged in shared memory (reads coalesced along the operand's
 * contiguous dimension, zeros past the edges); thread (tx, ty) accumulates
 *   acc[i][j] += sum_k A(ty + SIDE i, k) B(k, tx + SIDE j)
 * and writes C = alpha acc + beta C (C not read when beta is 0). Layer blockIdx.z of the grid
 * computes product blockIdx.z of a batch (operands stride_a, stride_b, stride_c further on). */
template <typename T>
__global__ void __launch_bounds__(SIDE *SIDE)
    gemm_tiled(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
               const T *A, int64_t lda, int64_t stride_a, const T *B, int64_t ldb,
               int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c)
{
    A += (int64_t)blockIdx.z * stride_a; /* product blockIdx.z of a batch */
    B += (int64_t)blockIdx.z * stride_b;
    C += (int64_t)blockIdx.z * stride_c;
    __shared__ float As[DEPTH][TILE + 1]; /* As[k][m] */
    __shared__ float Bs[DEPTH][TILE + 1]; /* Bs[k][n] */
    const int tx = threadIdx.x % SIDE, ty = threadIdx.x / SIDE;
    const int64_t m0 = (int64_t)blockIdx.y * TILE, n0 = (int64_t)blockIdx.x * TILE;
    float acc[4][4];
#pragma unroll
    for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;
    for (int64_t k0 = 0; k0 < K; k0 += DEPTH) {
        for (int e = threadIdx.x; e < DEPTH * TILE; e += blockDim.x) {
            int kk = trans_a ? e / TILE : e % DEPTH;
            const int mm = trans_a ? e % TILE : e / DEPTH;
            int64_t gm = m0 + mm, gk = k0 + kk;
            As[kk][mm] = gm < M && gk < K ? widen(A[trans_a ? gk * lda + gm : gm * lda + gk]) : 0.0f;
            kk = trans_b ? e % DEPTH : e / TILE;
            const int nn = trans_b ? e / DEPTH : e % TILE;
            const int64_t gn = n0 + nn;
            gk = k0 + kk;
            Bs[kk][nn] = gn < N && gk < K ? widen(B[trans_b ? gn * ldb + gk : gk * ldb + gn]) : 0.0f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < DEPTH; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + SIDE * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + SIDE * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
        }
        __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < 4; i++) {
        const int64_t m = m0 + ty + SIDE * i;
#pragma unroll
        for (int j = 0; j < 4; j++) {
            const int64_t n = n0 + tx + SIDE * j;
            if (m >= M || n >= N) continue;
            float *c = C + m * ldc + n;
            *c = beta != 0.0f ? alpha * acc[i][j] + beta * *c : alpha * acc[i][j];
        }
    }
}

void hylo_hip_gemm(hylo_hip_ctx *ctx, hylo_dtype type, bool trans_a, bool trans_b, int64_t M,
                   int64_t N, int64_t K, float alpha, const void *A, int64_t lda, const void *B,
                   int64_t ldb, float beta, float *C, int64_t ldc)
{
    hylo_hip_gemm_batched(ctx, type, trans_a, trans_b, M, N, K, alpha, A, lda, 0, B, ldb, 0, beta,
                          C, ldc, 0, 1);
}

/* One BLAS call (GemmEx for a single product, GemmStridedBatchedEx for more), or the built-in
 * kernel over grids of at most MAX_LAYERS products. */
void hylo_hip_gemm_batched(hylo_hip_ctx *ctx, hylo_dtype type, bool trans_a, bool trans_b,
                           int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                           int64_t lda, int64_t stride_a, const void *B, int64_t ldb,
                           int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                           int64_t batch)
{
    if (M <= 0 || N <= 0 || batch <= 0 || !hylo_hip_ok(ctx)) return;
#if defined(HYLO_HIP_BLAS)
    if (ctx->blas) {
        /* row-major C [M, N] is column-major C^T [N, M] = op(B)^T op(A)^T */
        const hipDataType t = type == HYLO_BF16 ? HIP_R_16BF : HIP_R_32F;
        const hipblasHandle_t h = (hipblasHandle_t)ctx->blas;
        const hipblasOperation_t op_b = trans_b ? HIPBLAS_OP_T : HIPBLAS_OP_N;
        const hipblasOperation_t op_a = trans_a ? HIPBLAS_OP_T : HIPBLAS_OP_N;
        hipblasStatus_t s;
        if (batch == 1)
            s = hipblasGemmEx(h, op_b, op_a, (int)N, (int)M, (int)K, &alpha, B, t, (int)ldb, A, t,
                              (int)lda, &beta, C, HIP_R_32F, (int)ldc, HIPBLAS_COMPUTE_32F,
                              HIPBLAS_GEMM_DEFAULT);
        else
            s = hipblasGemmStridedBatchedEx(h, op_b, op_a, (int)N, (int)M, (int)K, &alpha, B, t,
                                            (int)ldb, (long long)stride_b, A, t, (int)lda,
                                            (long long)stride_a, &beta, C, HIP_R_32F, (int)ldc,
                                            (long long)stride_c, (int)batch,
                                            HIPBLAS_COMPUTE_32F, HIPBLAS_GEMM_DEFAULT);
        if (s != HIPBLAS_STATUS_SUCCESS)
            hylo_hip_fail(ctx, HYLO_ERR_IO,
                          "hip backend: BLAS GEMM [%lld, %lld, %lld] x %lld failed (%d)",
                          (long long)M, (long long)N, (long long)K, (long long)batch, (int)s);
        return;
    }
#endif
    const size_t value = type == HYLO_BF16 ? sizeof(uint16_t) : sizeof(float);
    for (int64_t b0 = 0; b0 < batch; b0 += MAX_LAYERS) {
        const int64_t layers = batch - b0 < MAX_LAYERS ? batch - b0 : MAX_LAYERS;
        const dim3 grid((unsigned)((N + TILE - 1) / TILE), (unsigned)((M + TILE - 1) / TILE),
                        (unsigned)layers);
        const char *a = (const char *)A + b0 * stride_a * (int64_t)value;
        const char *b = (const char *)B + b0 * stride_b * (int64_t)value;
        float *c = C + b0 * stride_c;
        if (type == HYLO_BF16)
            gemm_tiled<uint16_t><<<grid, SIDE * SIDE, 0, hylo_hip_stream(ctx)>>>(
                trans_a, trans_b, M, N, K, alpha, (const uint16_t *)a, lda, stride_a,
                (const uint16_t *)b, ldb, stride_b, beta, c, ldc, stride_c);
        else
            gemm_tiled<float><<<grid, SIDE * SIDE, 0, hylo_hip_stream(ctx)>>>(
                trans_a, trans_b, M, N, K, alpha, (const float *)a, lda, stride_a,
                (const float *)b, ldb, stride_b, beta, c, ldc, stride_c);
        if (!hylo_hip_launched(ctx, "gemm")) return;
    }
}
