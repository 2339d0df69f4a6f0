/* cpu.h: the machinery of the optimized CPU backend (internal): the per-state context and its
 * workspace, the single-threaded GEMM that the layers call inside their OpenMP regions, and
 * the vector kernels.
 *
 * Threads: the backend drives all parallelism with OpenMP (across rows, heads, tiles and
 * chunks) and runs OpenBLAS single-threaded inside those regions, so that one pool of threads
 * does all the work (OpenBLAS's own pool would spin against OpenMP's on a small machine).
 * Accumulation is fp32 throughout (the reference accumulates in double).
 *
 * SIMD: the kernels are plain C loops marked `omp simd` and compiled for three ISA levels
 * (x86-64-v4 = AVX-512, v3 = AVX2 + FMA, and the baseline) with GCC's target_clones; the
 * dynamic loader picks the best one the CPU has, so the build runs on any x86-64. */
#ifndef HYLO_CPU_H
#define HYLO_CPU_H

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hylo.h"

#if defined(__GNUC__) && defined(__x86_64__) && !defined(__clang__)
#define HYLO_CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define HYLO_CPU_CLONES
#endif

/* ------------------------------------------------------------------------------------------ */
/* Context and workspace                                                                       */
/* ------------------------------------------------------------------------------------------ */

typedef struct hylo_cpu_weights hylo_cpu_weights; /* bf16 copies of a model's matrices */

/* The workspace has two levels so that a layer may hold its buffers while the ops it calls use
 * theirs: LAYER for the blocks (mixers, MLP), OP for the leaf kernels (linear, attention,
 * conv, scans), which never call one another while holding theirs. */
typedef enum { HYLO_CPU_LAYER = 0, HYLO_CPU_OP, HYLO_CPU_LEVELS } hylo_cpu_level;

/* Floats a call needs at each level. */
typedef struct {
    int64_t floats[HYLO_CPU_LEVELS];
} hylo_cpu_need;

typedef struct {
    const hylo_cpu_weights *bf16;           /* the model's bf16 matrices, NULL for fp32 */
    float *buffer[HYLO_CPU_LEVELS];         /* 64-byte aligned                           */
    int64_t capacity[HYLO_CPU_LEVELS];      /* floats                                    */
    int64_t grows;                          /* times a buffer grew after creation        */
} hylo_cpu_ctx;

/* A context whose buffers already hold `need` (the largest decode step of its model), so that
 * decode steps never allocate. */
hylo_status hylo_cpu_context_new(const hylo_cpu_weights *bf16, const hylo_cpu_need *need,
                                 hylo_cpu_ctx **out, hylo_error *err);
void hylo_cpu_context_free(hylo_cpu_ctx *ctx);
/* The level's buffer with room for n floats (previous contents are not kept), or NULL with
 * err set. */
float *hylo_cpu_workspace(hylo_cpu_ctx *ctx, hylo_cpu_level level, int64_t n, hylo_error *err);
/* need <- max(need, other), level by level. */
void hylo_cpu_need_max(hylo_cpu_need *need, const hylo_cpu_need *other);
/* The number of OpenMP threads a parallel region of the backend gets. */
int hylo_cpu_threads(void);
/* n rounded up to a multiple of 16 floats (64 bytes), to carve aligned sub-buffers. */
static inline int64_t hylo_cpu_round16(int64_t n)
{
    return (n + 15) / 16 * 16;
}

/* ------------------------------------------------------------------------------------------ */
/* GEMM                                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* Sets OpenBLAS to one thread (once; a process-wide setting of OpenBLAS). Every context
 * creation calls it. */
void hylo_cpu_blas_init(void);

/* C [M, N] = alpha op(A) op(B) + beta C, row-major, single-threaded (call it from inside a
 * parallel region, or for work too small to share). op(A) is [M, K]: A is [M, K] with row
 * stride lda, or [K, M] when trans_a; op(B) is [K, N]: B is [K, N], or [N, K] when trans_b. */
void hylo_cpu_gemm(bool trans_a, bool trans_b, int64_t M, int64_t N, int64_t K, float alpha,
                   const float *A, int64_t lda, const float *B, int64_t ldb, float beta, float *C,
                   int64_t ldc);

/* Y [M, N] = X [M, K] W^T + b (W [N, K], b [N] or NULL), the output split across threads by
 * columns (rows of W) or, for narrow outputs, by rows. */
void hylo_cpu_gemm_xwt(const float *X, const float *W, const float *b, float *Y, int64_t M,
                       int64_t K, int64_t N);

/* ------------------------------------------------------------------------------------------ */
/* Vector kernels (vectorized by target_clones; single-threaded unless named _parallel)        */
/* ------------------------------------------------------------------------------------------ */

/* e^x in fp32 for x <= 88: round x / ln 2 to n, r = x - n ln 2 in [-ln2/2, ln2/2], a degree-7
 * Taylor polynomial of e^r (relative error < 1e-7 before rounding), times 2^n built in the
 * exponent bits. Below x = -60 it returns exactly 0: such a factor (e^-60 ~ 9e-27: a softmax
 * weight, a decay over a chunk) cannot change the fp32 sum it joins, and products of it would
 * reach the denormal range, where x86 cores compute about a hundred times slower (a random
 * 32K-position cache made MLA decode 3x slower before). Branch-free, so it vectorizes. */
static inline float hylo_cpu_expf(float x)
{
    const float log2e = 1.44269504f, ln2_hi = 0.693145752f, ln2_lo = 1.42860677e-6f;
    const float shifter = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    const float keep = x < -60.0f ? 0.0f : 1.0f;
    x = x < -60.0f ? -60.0f : x;
    x = x > 88.0f ? 88.0f : x;
    float t = x * log2e + shifter;
    float n = t - shifter;
    float r = x - n * ln2_hi - n * ln2_lo;
    float p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    int32_t bits, ni;
    memcpy(&bits, &t, sizeof bits);
    ni = bits - 0x4B400000; /* the integer n from t's mantissa */
    memcpy(&bits, &p, sizeof bits);
    bits += ni * (1 << 23);
    memcpy(&p, &bits, sizeof p);
    return p * keep;
}

/* silu(x) = x / (1 + e^-x) */
static inline float hylo_cpu_silu(float x)
{
    return x / (1.0f + hylo_cpu_expf(-x));
}

/* y [rows] = W [rows, n] x [n] (+ y when accumulate) */
void hylo_cpu_gemv(const float *W, const float *x, float *y, int64_t rows, int64_t n,
                   bool accumulate);
/* y_i += a x_i */
void hylo_cpu_axpy(float *y, float a, const float *x, int64_t n);
/* x_i *= a */
void hylo_cpu_scale(float *x, float a, int64_t n);
/* max_i x_i (n >= 1) */
float hylo_cpu_max(const float *x, int64_t n);
/* x_i <- e^(x_i - m); returns sum_i of the new x_i */
float hylo_cpu_exp_shift_sum(float *x, float m, int64_t n);
/* sum_i x_i^2 */
float hylo_cpu_sum_squares(const float *x, int64_t n);
/* y_i = w_i x_i s */
void hylo_cpu_scale_mul(float *y, const float *x, const float *w, float s, int64_t n);
/* g_i <- silu(g_i) u_i */
void hylo_cpu_silu_mul(float *g, const float *u, int64_t n);
/* the same in blocks of 4096 shared by the threads (the one kernel here with its own OpenMP
 * region: call it outside parallel regions) */
void hylo_cpu_silu_mul_parallel(float *g, const float *u, int64_t n);
/* x_i <- silu(x_i) */
void hylo_cpu_silu_inplace(float *x, int64_t n);

/* ------------------------------------------------------------------------------------------ */
/* BF16 weights                                                                                */
/* ------------------------------------------------------------------------------------------ */

/* The bf16 copies of a set of fp32 matrices, looked up by the fp32 pointer. */
hylo_status hylo_cpu_weights_new(const float *const *matrices, const int64_t *numel,
                                 size_t count, hylo_cpu_weights **out, hylo_error *err);
void hylo_cpu_weights_free(void *weights);
/* The bf16 copy of W, or NULL when W has none (or `weights` is NULL). */
const uint16_t *hylo_cpu_weights_find(const hylo_cpu_weights *weights, const float *W);

/* dst [n] <- src rounded to bf16 (nearest even) */
void hylo_cpu_to_bf16(const float *src, uint16_t *dst, int64_t n);
/* xs [2n] <- x [n] as bf16 hi = bf16(x) then lo = bf16(x - hi) */
void hylo_cpu_split_bf16(const float *x, uint16_t *xs, int64_t n);
/* y [rows] = W [rows, n] x [n] for bf16 W, fp32 accumulation: AVX512-BF16 dot products with
 * both halves of xs (hylo_cpu_split_bf16 of x) when the CPU has them, else W widened against
 * x. */
void hylo_cpu_gemv_bf16(const uint16_t *W, const float *x, const uint16_t *xs, float *y,
                        int64_t rows, int64_t n);

#endif
