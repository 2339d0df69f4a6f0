/* mma.h: the matrix cores (tensor cores) for kernels that tile their work in 16 x 16 blocks
 * (layers/flash.hip): one warp's product C [16, 16] += A [16, 16] B [16, 16] with bf16
 * operands and fp32 accumulators, the loads of its operands from shared memory, where each
 * lane's accumulator values sit in the tile (so that row statistics and masks can work on
 * them in registers), and the few warp-level pieces a kernel needs around the products:
 * reductions over the lanes of a row, a warp barrier, a vote, a fast exp2, and asynchronous
 * 16-byte copies from global to shared memory to stage operand tiles. Everything that depends
 * on the warp size (32 on NVIDIA, 64 on AMD) or on the fragments' register layout stays in
 * this header.
 *
 * NVIDIA (HYLO_HIP_NVIDIA, sm_80 and later): the PTX instructions mma.sync m16n8k16 (two per
 * 16 x 16 product) and ldmatrix, whose register layouts the PTX ISA documents ("Matrix
 * Fragments for mma.m16n8k16"). nvcuda::wmma would give the same products, but it leaves the
 * accumulator layout unspecified (the softmax would then go through shared memory) and its
 * bf16 loads compile to generic 4-byte loads rather than ldmatrix. AMD: HYLO_MMA is 0 and
 * nothing else is defined; the kernels built on this header are left out and their launchers
 * decline (a port would implement these primitives with the MFMA instructions, e.g.
 * __builtin_amdgcn_mfma_f32_16x16x16bf16_1k, whose layouts AMD documents). */
#ifndef HYLO_HIP_MMA_H
#define HYLO_HIP_MMA_H

#include "hip_compat.h"

#if defined(HYLO_HIP_NVIDIA)

#include <cuda_bf16.h>
#include <cuda_pipeline_primitives.h>
#include <stdint.h>

#define HYLO_MMA 1
#define HYLO_MMA_WARP 32      /* threads of a warp                                      */
#define HYLO_MMA_VALUES 8     /* accumulator values a lane holds                        */
#define HYLO_MMA_LANE_ROWS 2  /* rows of a 16-row tile a lane holds values of           */

/* A [16, 16] bf16 (a product's left operand), B [16, 16] bf16 (its right operand: two
 * m16n8k16 B fragments, columns 0-7 then 8-15), C [16, 16] fp32. Lane l (g = l / 4,
 * t = l % 4) holds C's values e = 0 .. 7 at row g + 8 ((e / 2) % 2), column
 * 8 (e / 4) + 2 t + e % 2. */
typedef struct {
    uint32_t r[4];
} hylo_mma_a;

typedef struct {
    uint32_t r[4];
} hylo_mma_b;

typedef struct {
    float c[HYLO_MMA_VALUES];
} hylo_mma_acc;

__device__ inline int hylo_mma_lane(void)
{
    return (int)(threadIdx.x % HYLO_MMA_WARP);
}

/* The row of the tile of the lane's row i (0 .. HYLO_MMA_LANE_ROWS - 1); which of the lane's
 * rows value e lies in, and its column. */
__device__ inline int hylo_mma_row(int i)
{
    return hylo_mma_lane() / 4 + 8 * i;
}

__host__ __device__ constexpr int hylo_mma_value_row(int e)
{
    return (e / 2) % 2;
}

__device__ inline int hylo_mma_value_col(int e)
{
    return 8 * (e / 4) + 2 * (hylo_mma_lane() % 4) + e % 2;
}

/* Four 8 x 8 bf16 matrices from shared memory, the calling lane giving the address of one
 * row (16 bytes, 16-byte aligned): lanes 8 i .. 8 i + 7 the rows of matrix i into r[i];
 * `trans` delivers each matrix transposed. */
template <bool trans>
__device__ inline void hylo_mma_ldmatrix(uint32_t (&r)[4], const uint16_t *row)
{
    const unsigned addr = (unsigned)__cvta_generic_to_shared(row);
    if (trans)
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
    else
        asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];"
                     : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                     : "r"(addr));
}

/* Loads from shared memory, rows `ld` values apart (a multiple of 8), p 16-byte aligned:
 * A from row-major A [16][ld]; B from the rows of B^T [16][ld] (B^T row-major); B from
 * row-major B [16][ld]. */
__device__ inline void hylo_mma_load_a(hylo_mma_a &f, const uint16_t *p, int ld)
{
    const int l = hylo_mma_lane();
    hylo_mma_ldmatrix<false>(f.r, p + (l % 16) * ld + 8 * (l / 16));
}

__device__ inline void hylo_mma_load_bt(hylo_mma_b &f, const uint16_t *p, int ld)
{
    const int l = hylo_mma_lane();
    hylo_mma_ldmatrix<false>(f.r, p + (l % 8 + 8 * (l / 16)) * ld + 8 * ((l / 8) % 2));
}

__device__ inline void hylo_mma_load_b(hylo_mma_b &f, const uint16_t *p, int ld)
{
    const int l = hylo_mma_lane();
    hylo_mma_ldmatrix<true>(f.r, p + (l % 16) * ld + 8 * (l / 16));
}

__device__ inline void hylo_mma_zero(hylo_mma_acc &c)
{
#pragma unroll
    for (int e = 0; e < HYLO_MMA_VALUES; e++) c.c[e] = 0.0f;
}

/* c += a b */
__device__ inline void hylo_mma(hylo_mma_acc &c, const hylo_mma_a &a, const hylo_mma_b &b)
{
#pragma unroll
    for (int h = 0; h < 2; h++) {
        float *d = c.c + 4 * h;
        asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
                     "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};"
                     : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
                     : "r"(a.r[0]), "r"(a.r[1]), "r"(a.r[2]), "r"(a.r[3]), "r"(b.r[2 * h]),
                       "r"(b.r[2 * h + 1]));
    }
}

/* The bf16 bits of lo and hi (rounded to nearest even), lo in the low half. */
__device__ inline uint32_t hylo_mma_pack_bf16(float lo, float hi)
{
    const __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *(const uint32_t *)&v;
}

/* The left operand A = c rounded to bf16 (a product's result fed to the next product). */
__device__ inline void hylo_mma_a_of(hylo_mma_a &a, const hylo_mma_acc &c)
{
#pragma unroll
    for (int i = 0; i < 4; i++) a.r[i] = hylo_mma_pack_bf16(c.c[2 * i], c.c[2 * i + 1]);
}

/* The max and the sum of v over the lanes holding values of the same rows (every lane of the
 * warp calls). */
__device__ inline float hylo_mma_row_max(float v)
{
    v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
    return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
}

__device__ inline float hylo_mma_row_sum(float v)
{
    v += __shfl_xor_sync(0xffffffffu, v, 1);
    return v + __shfl_xor_sync(0xffffffffu, v, 2);
}

/* Orders the warp's shared-memory accesses before the call before those after it. */
__device__ inline void hylo_mma_sync(void)
{
    __syncwarp();
}

/* Whether p holds on any lane of the warp (every lane calls). */
__device__ inline bool hylo_mma_any(bool p)
{
    return __any_sync(0xffffffffu, p);
}

/* 2^x to about 2 ulp, results below the normal range flushed to zero (the hardware's
 * approximation, for the exponentials of a softmax). */
__device__ inline float hylo_mma_exp2(float x)
{
    float y;
    asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
    return y;
}

/* 16 bytes from global `src` (16-byte aligned) to shared `dst`, or 16 zero bytes when
 * !valid (src is then not read but must still be a valid address), in flight until the
 * batch they are committed with is waited for. */
__device__ inline void hylo_mma_copy16(void *dst, const void *src, bool valid)
{
    __pipeline_memcpy_async(dst, src, 16, valid ? 0 : 16);
}

/* Closes the batch of the copies issued since the last commit. */
__device__ inline void hylo_mma_commit(void)
{
    __pipeline_commit();
}

/* Waits until at most `pending` committed batches of this thread are still in flight (a
 * barrier then shows every thread's copies to the block). */
__device__ inline void hylo_mma_wait(int pending)
{
    __pipeline_wait_prior((size_t)pending);
}

#else /* AMD */

#define HYLO_MMA 0

#endif

#endif
