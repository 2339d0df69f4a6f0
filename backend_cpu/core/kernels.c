/* kernels.c: the vector kernels of the CPU backend: plain loops marked `omp simd`, each
 * compiled for AVX-512, AVX2 + FMA and the x86-64 baseline (HYLO_CPU_CLONES). fp32
 * accumulation; the order of additions differs from the reference's, within rounding. */
#include "cpu.h"

/* Four rows at a time: four independent accumulator chains share each load of x. */
HYLO_CPU_CLONES
void hylo_cpu_gemv(const float *W, const float *x, float *y, int64_t rows, int64_t n,
                   bool accumulate)
{
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const float *w0 = W + r * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        float s0 = 0.0f, s1 = 0.0f, s2 = 0.0f, s3 = 0.0f;
#pragma omp simd reduction(+ : s0, s1, s2, s3)
        for (int64_t i = 0; i < n; i++) {
            s0 += w0[i] * x[i];
            s1 += w1[i] * x[i];
            s2 += w2[i] * x[i];
            s3 += w3[i] * x[i];
        }
        if (accumulate) {
            y[r] += s0, y[r + 1] += s1, y[r + 2] += s2, y[r + 3] += s3;
        } else {
            y[r] = s0, y[r + 1] = s1, y[r + 2] = s2, y[r + 3] = s3;
        }
    }
    for (; r < rows; r++) {
        const float *w = W + r * n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++) s += w[i] * x[i];
        y[r] = accumulate ? y[r] + s : s;
    }
}

HYLO_CPU_CLONES
void hylo_cpu_axpy(float *y, float a, const float *x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] += a * x[i];
}

HYLO_CPU_CLONES
void hylo_cpu_scale(float *x, float a, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) x[i] *= a;
}

HYLO_CPU_CLONES
float hylo_cpu_max(const float *x, int64_t n)
{
    float m = x[0];
#pragma omp simd reduction(max : m)
    for (int64_t i = 1; i < n; i++) m = x[i] > m ? x[i] : m;
    return m;
}

HYLO_CPU_CLONES
float hylo_cpu_exp_shift_sum(float *x, float m, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) {
        x[i] = hylo_cpu_expf(x[i] - m);
        s += x[i];
    }
    return s;
}

HYLO_CPU_CLONES
float hylo_cpu_sum_squares(const float *x, int64_t n)
{
    float s = 0.0f;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; i++) s += x[i] * x[i];
    return s;
}

HYLO_CPU_CLONES
void hylo_cpu_scale_mul(float *y, const float *x, const float *w, float s, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) y[i] = w[i] * (x[i] * s);
}

HYLO_CPU_CLONES
void hylo_cpu_silu_mul(float *g, const float *u, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) g[i] = hylo_cpu_silu(g[i]) * u[i];
}

HYLO_CPU_CLONES
void hylo_cpu_silu_inplace(float *x, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) x[i] = hylo_cpu_silu(x[i]);
}

void hylo_cpu_silu_mul_parallel(float *g, const float *u, int64_t n)
{
    const int64_t block = 4096, blocks = (n + block - 1) / block;
#pragma omp parallel for schedule(static) if (blocks > 4)
    for (int64_t b = 0; b < blocks; b++) {
        const int64_t lo = b * block, len = n - lo < block ? n - lo : block;
        hylo_cpu_silu_mul(g + lo, u + lo, len);
    }
}
