/* blas.c: OpenBLAS in the CPU backend: one thread inside the backend's OpenMP regions, the GEMM
 * wrappers, and the kernel choice of hylo_blas_coretype_hint. */
#include <cblas.h>
#include <omp.h>
#include <pthread.h>
#include <stdlib.h>
#include <strings.h>

#include "cpu.h"

/* The one piece of process-wide state: OpenBLAS's thread count, set once (pthread_once) to 1
 * because the backend parallelizes around its calls. */
static pthread_once_t blas_once = PTHREAD_ONCE_INIT;

static void blas_one_thread(void)
{
    openblas_set_num_threads(1);
}

void hylo_cpu_blas_init(void)
{
    pthread_once(&blas_once, blas_one_thread);
}

int hylo_cpu_threads(void)
{
    return omp_get_max_threads();
}

void hylo_cpu_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc)
{
    if (M <= 0 || N <= 0) return;
    if (K <= 0) { /* C = beta C: BLAS would do the same, spelled out for K = 0 */
        for (int64_t i = 0; i < M; i++) hylo_cpu_scale(C + i * ldc, beta, N);
        return;
    }
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, (blasint)M, (blasint)N, (blasint)K, alpha, A,
                (blasint)lda, B, (blasint)ldb, beta, C, (blasint)ldc);
}

/* Each thread takes a contiguous share of the output: columns (rows of W, so that each thread
 * streams its own part of the weights) in multiples of 16 when there are enough of them,
 * otherwise rows of X. */
void hylo_cpu_gemm_xwt(const float *X, const float *W, const float *b, float *Y, int64_t M,
                       int64_t K, int64_t N)
{
    const int threads = hylo_cpu_threads();
    const bool by_columns = N >= 64 * threads || M < threads;
#pragma omp parallel num_threads(threads)
    {
        const int64_t id = omp_get_thread_num(), n = omp_get_num_threads();
        const int64_t extent = by_columns ? (N + 15) / 16 : M;
        int64_t lo = extent * id / n, hi = extent * (id + 1) / n;
        if (by_columns) {
            lo *= 16;
            hi = hi * 16 < N ? hi * 16 : N;
        }
        const int64_t rows = by_columns ? M : hi - lo, cols = by_columns ? hi - lo : N;
        const int64_t row0 = by_columns ? 0 : lo, col0 = by_columns ? lo : 0;
        float *Yb = Y + row0 * N + col0;
        if (rows > 0 && cols > 0) {
            if (b)
                for (int64_t i = 0; i < rows; i++) memcpy(Yb + i * N, b + col0, (size_t)cols * sizeof *b);
            hylo_cpu_gemm(false, true, rows, cols, K, 1.0f, X + row0 * K, K, W + col0 * K, K,
                          b ? 1.0f : 0.0f, Yb, N);
        }
    }
}

const char *hylo_blas_coretype_hint(void)
{
    static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids"};
    if (getenv("OPENBLAS_CORETYPE") || !__builtin_cpu_supports("avx512f")) return NULL;
    const char *core = openblas_get_corename();
    for (size_t i = 0; i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (core && strcasecmp(core, avx512_cores[i]) == 0) return NULL;
    return "SkylakeX";
}
