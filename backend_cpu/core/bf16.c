/* bf16.c: bf16 copies of a model's projection matrices for decode (HYLO_WEIGHTS_BF16) and the
 * GEMV that streams them, half the bytes of fp32. With AVX512-BF16 the activation is split
 * into two bf16 terms (x = hi + lo to 16 bits) and each row gets two vdpbf16ps dot products
 * into fp32 lanes: the step stays bound by the weight stream, and the result differs from an
 * fp32 product with the same (bf16) weights by ~2^-17 relative instead of bf16's 2^-9.
 * Elsewhere the weights are widened to fp32 (a shift) against x itself. */
#include <stdlib.h>
#if defined(__x86_64__) && defined(__GNUC__)
#define HYLO_CPU_AVX512BF16 1
#include <immintrin.h>
#endif

#include "cpu.h"

typedef struct {
    const float *fp32;  /* the key: the model's fp32 matrix */
    uint16_t *bf16;     /* its copy                          */
} weight_entry;

struct hylo_cpu_weights {
    weight_entry *entries;  /* sorted by fp32 address */
    size_t count;
};

static int compare_entries(const void *a, const void *b)
{
    const uintptr_t x = (uintptr_t)((const weight_entry *)a)->fp32;
    const uintptr_t y = (uintptr_t)((const weight_entry *)b)->fp32;
    return x < y ? -1 : x > y;
}

/* bf16 = the top half of fp32 rounded to nearest even: add 0x7fff plus the lowest kept bit. */
HYLO_CPU_CLONES
void hylo_cpu_to_bf16(const float *src, uint16_t *dst, int64_t n)
{
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, &src[i], sizeof bits);
        dst[i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
}

hylo_status hylo_cpu_weights_new(const float *const *matrices, const int64_t *numel,
                                 size_t count, hylo_cpu_weights **out, hylo_error *err)
{
    *out = NULL;
    hylo_cpu_weights *w = calloc(1, sizeof *w);
    if (w) w->entries = calloc(count ? count : 1, sizeof *w->entries);
    bool ok = w && w->entries;
    for (size_t i = 0; ok && i < count; i++) {
        weight_entry *e = &w->entries[w->count];
        e->fp32 = matrices[i];
        e->bf16 = aligned_alloc(64, (size_t)(numel[i] + 31) / 32 * 64); /* whole 64-byte lines */
        ok = e->bf16 != NULL;
        if (!ok) break;
        w->count++;
        const int64_t block = 1 << 16, blocks = (numel[i] + block - 1) / block;
#pragma omp parallel for schedule(static)
        for (int64_t b = 0; b < blocks; b++) {
            const int64_t lo = b * block, hi = lo + block < numel[i] ? lo + block : numel[i];
            hylo_cpu_to_bf16(matrices[i] + lo, e->bf16 + lo, hi - lo);
        }
    }
    if (!ok) {
        hylo_cpu_weights_free(w);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cpu backend: cannot allocate bf16 weights");
    }
    qsort(w->entries, w->count, sizeof *w->entries, compare_entries);
    *out = w;
    return HYLO_OK;
}

void hylo_cpu_weights_free(void *weights)
{
    hylo_cpu_weights *w = weights;
    if (!w) return;
    for (size_t i = 0; i < w->count; i++) free(w->entries[i].bf16);
    free(w->entries);
    free(w);
}

const uint16_t *hylo_cpu_weights_find(const hylo_cpu_weights *w, const float *W)
{
    if (!w) return NULL;
    const weight_entry key = {W, NULL};
    const weight_entry *e = bsearch(&key, w->entries, w->count, sizeof key, compare_entries);
    return e ? e->bf16 : NULL;
}

/* x [n] -> xs [2n]: xs[0, n) = bf16(x) and xs[n, 2n) = bf16(x - bf16(x)), so that the two
 * halves sum to x within a relative 2^-16 (bf16 keeps 8 significant bits; the remainder
 * another 8). */
HYLO_CPU_CLONES
void hylo_cpu_split_bf16(const float *x, uint16_t *xs, int64_t n)
{
    hylo_cpu_to_bf16(x, xs, n);
#pragma omp simd
    for (int64_t i = 0; i < n; i++) {
        const uint32_t hi_bits = (uint32_t)xs[i] << 16;
        float hi, rest;
        memcpy(&hi, &hi_bits, sizeof hi);
        rest = x[i] - hi; /* exact: x and hi share their leading bits */
        uint32_t bits;
        memcpy(&bits, &rest, sizeof bits);
        xs[n + i] = (uint16_t)((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
    }
}

#ifdef HYLO_CPU_AVX512BF16
/* acc += W row . (hi + lo) over 32 columns: two vdpbf16ps, each adding the products of 16
 * adjacent bf16 pairs to 16 fp32 lanes. */
#define DOT32(acc, w, hi, lo) (acc) = _mm512_dpbf16_ps(_mm512_dpbf16_ps((acc), (w), (hi)), (w), (lo))

/* Rows [0, rows) of W [rows, n] against both halves of xs: four rows at a time share each load
 * of x (four accumulators held in registers), then the remaining rows one by one; the tail of
 * a row is a masked load. */
__attribute__((target("avx512f,avx512bw,avx512bf16")))
static void gemv_bf16_avx512(const uint16_t *W, const uint16_t *xs, float *y, int64_t rows,
                             int64_t n)
{
    const int64_t full = n / 32 * 32;
    const __mmask32 tail = (__mmask32)((1ull << (n - full)) - 1);
    int64_t r = 0;
    for (; r + 4 <= rows; r += 4) {
        const uint16_t *w0 = W + r * n, *w1 = w0 + n, *w2 = w1 + n, *w3 = w2 + n;
        __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
        for (int64_t i = 0; i < full; i += 32) {
            const __m512bh hi = (__m512bh)_mm512_loadu_si512(xs + i);
            const __m512bh lo = (__m512bh)_mm512_loadu_si512(xs + n + i);
            DOT32(a0, (__m512bh)_mm512_loadu_si512(w0 + i), hi, lo);
            DOT32(a1, (__m512bh)_mm512_loadu_si512(w1 + i), hi, lo);
            DOT32(a2, (__m512bh)_mm512_loadu_si512(w2 + i), hi, lo);
            DOT32(a3, (__m512bh)_mm512_loadu_si512(w3 + i), hi, lo);
        }
        if (tail) {
            const __m512bh hi = (__m512bh)_mm512_maskz_loadu_epi16(tail, xs + full);
            const __m512bh lo = (__m512bh)_mm512_maskz_loadu_epi16(tail, xs + n + full);
            DOT32(a0, (__m512bh)_mm512_maskz_loadu_epi16(tail, w0 + full), hi, lo);
            DOT32(a1, (__m512bh)_mm512_maskz_loadu_epi16(tail, w1 + full), hi, lo);
            DOT32(a2, (__m512bh)_mm512_maskz_loadu_epi16(tail, w2 + full), hi, lo);
            DOT32(a3, (__m512bh)_mm512_maskz_loadu_epi16(tail, w3 + full), hi, lo);
        }
        y[r] = _mm512_reduce_add_ps(a0);
        y[r + 1] = _mm512_reduce_add_ps(a1);
        y[r + 2] = _mm512_reduce_add_ps(a2);
        y[r + 3] = _mm512_reduce_add_ps(a3);
    }
    for (; r < rows; r++) {
        const uint16_t *w = W + r * n;
        __m512 a = _mm512_setzero_ps();
        for (int64_t i = 0; i < full; i += 32)
            DOT32(a, (__m512bh)_mm512_loadu_si512(w + i), (__m512bh)_mm512_loadu_si512(xs + i),
                  (__m512bh)_mm512_loadu_si512(xs + n + i));
        if (tail)
            DOT32(a, (__m512bh)_mm512_maskz_loadu_epi16(tail, w + full),
                  (__m512bh)_mm512_maskz_loadu_epi16(tail, xs + full),
                  (__m512bh)_mm512_maskz_loadu_epi16(tail, xs + n + full));
        y[r] = _mm512_reduce_add_ps(a);
    }
}
#undef DOT32
#endif

static inline float bf16_value(uint16_t h)
{
    const uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

/* The portable form: each bf16 weight widened to fp32 (a shift) against x itself. */
HYLO_CPU_CLONES
static void gemv_bf16_widen(const uint16_t *W, const float *x, float *y, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        const uint16_t *w = W + r * n;
        float s = 0.0f;
#pragma omp simd reduction(+ : s)
        for (int64_t i = 0; i < n; i++) s += bf16_value(w[i]) * x[i];
        y[r] = s;
    }
}

void hylo_cpu_gemv_bf16(const uint16_t *W, const float *x, const uint16_t *xs, float *y,
                        int64_t rows, int64_t n)
{
#ifdef HYLO_CPU_AVX512BF16
    if (__builtin_cpu_supports("avx512bf16")) {
        gemv_bf16_avx512(W, xs, y, rows, n);
        return;
    }
#endif
    gemv_bf16_widen(W, x, y, rows, n);
}
