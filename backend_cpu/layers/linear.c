/* linear.c: y = x W^T + b for the CPU backend. Prefill rows go through an OpenBLAS GEMM split
 * across threads; a decode step's few rows stream W once as a GEMV (the step is bound by the
 * bandwidth of reading the weights), from the bf16 copy of W when the context has one. */
#include <omp.h>

#include "cpu_layers.h"

/* Rows of W per GEMV work item: small enough to share out, large enough to amortize. */
#define GEMV_BLOCK 16

hylo_cpu_need hylo_cpu_linear_need(int64_t T, int64_t in)
{
    /* x split into two bf16 halves: 2 T in halves */
    hylo_cpu_need need = {{0, T <= HYLO_CPU_GEMV_ROWS ? T * in : 0}};
    return need;
}

/* x [T, in], W [out, in] fp32, y [T, out]:  y[t, o] = sum_i W[o, i] x[t, i] */
static void gemv_f32(const float *x, const float *W, float *y, int64_t T, int64_t in,
                     int64_t out)
{
    const int64_t blocks = (out + GEMV_BLOCK - 1) / GEMV_BLOCK;
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t o0 = blk * GEMV_BLOCK, n = out - o0 < GEMV_BLOCK ? out - o0 : GEMV_BLOCK;
        for (int64_t t = 0; t < T; t++)
            hylo_cpu_gemv(W + o0 * in, x + t * in, y + t * out + o0, n, in, false);
    }
}

/* The same with W in bf16, x [T, in] and its bf16 halves xs [T, 2 in], fp32 sums. */
static void gemv_bf16(const float *x, const uint16_t *xs, const uint16_t *Wb, float *y, int64_t T,
                      int64_t in, int64_t out)
{
    const int64_t blocks = (out + GEMV_BLOCK - 1) / GEMV_BLOCK;
#pragma omp parallel for schedule(static) if (blocks > 1)
    for (int64_t blk = 0; blk < blocks; blk++) {
        const int64_t o0 = blk * GEMV_BLOCK, n = out - o0 < GEMV_BLOCK ? out - o0 : GEMV_BLOCK;
        for (int64_t t = 0; t < T; t++)
            hylo_cpu_gemv_bf16(Wb + o0 * in, x + t * in, xs + 2 * t * in, y + t * out + o0, n,
                               in);
    }
}

/* x [T, in], W [out, in], b [out] or NULL, y [T, out]:
 *   y = x W^T + b
 * T > HYLO_CPU_GEMV_ROWS: one GEMM (hylo_cpu_gemm_xwt). Otherwise a GEMV per row of x, over
 * the bf16 copy of W (against x split into bf16 halves) when the context has one and its
 * workspace can hold the halves, else over W itself. */
void hylo_cpu_linear(void *ctx, const float *x, const float *W, const float *b, float *y,
                     int64_t T, int64_t in, int64_t out)
{
    hylo_cpu_ctx *c = ctx;
    if (T <= 0 || out <= 0) return;
    if (T > HYLO_CPU_GEMV_ROWS) {
        hylo_cpu_gemm_xwt(x, W, b, y, T, in, out);
        return;
    }
    const uint16_t *Wb = hylo_cpu_weights_find(c->bf16, W);
    uint16_t *xs = Wb ? (uint16_t *)hylo_cpu_workspace(c, HYLO_CPU_OP,
                                                       hylo_cpu_linear_need(T, in).floats[HYLO_CPU_OP],
                                                       NULL)
                      : NULL;
    if (xs) {
        for (int64_t t = 0; t < T; t++) hylo_cpu_split_bf16(x + t * in, xs + 2 * t * in, in);
        gemv_bf16(x, xs, Wb, y, T, in, out);
    } else {
        gemv_f32(x, W, y, T, in, out);
    }
    if (b)
        for (int64_t t = 0; t < T; t++) hylo_cpu_axpy(y + t * out, 1.0f, b, out);
}
