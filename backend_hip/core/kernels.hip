/* kernels.hip: the elementwise work of the forward itself: residual adds, the embedding gather,
 * strided row copies that the layers share, and the caches' stores and loads. */
#include "core/device.h"
#include "layers/hip_layers.h"

__global__ void add_kernel(float *x, const float *y, int64_t n)
{
    for (int64_t i = hylo_first(); i < n; i += hylo_stride()) x[i] += y[i];
}

void hylo_hip_add(void *vctx, float *x, const float *y, int64_t n)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    if (n <= 0 || !hylo_hip_ok(ctx)) return;
    add_kernel<<<hylo_hip_blocks(n), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(x, y, n);
    hylo_hip_launched(ctx, "add");
}

/* x [T, D]: x[t, i] = table[tokens[t], i] */
__global__ void embed_kernel(const float *table, const int32_t *tokens, int64_t T, int64_t D,
                             float *x)
{
    for (int64_t i = hylo_first(); i < T * D; i += hylo_stride())
        x[i] = table[(int64_t)tokens[i / D] * D + i % D];
}

void hylo_hip_embed(void *vctx, const float *table, const int32_t *tokens, int64_t T, int64_t D,
                    float *x)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const float *table_dev = hylo_hip_find(ctx, table, "the embedding");
    if (!table_dev || T <= 0) return;
    if (T > ctx->token_cap && !ctx->steps.recording) {
        hylo_hip_release(ctx, ctx->tokens);
        ctx->token_cap = 0;
        ctx->tokens = (int32_t *)hylo_hip_alloc(ctx, (size_t)T * sizeof(int32_t));
        if (!ctx->tokens) return;
        ctx->token_cap = T;
    }
    /* a recorded step reads its token from the step's input, set before each replay */
    const int32_t *ids = &ctx->steps.input->token;
    if (!ctx->steps.recording) {
        if (hylo_hip_copy(ctx, ctx->tokens, tokens, (size_t)T * sizeof(int32_t),
                          HYLO_COPY_TO_DEVICE, NULL) != HYLO_OK)
            return;
        ids = ctx->tokens;
    }
    embed_kernel<<<hylo_hip_blocks(T * D), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(
        table_dev, ids, T, D, x);
    hylo_hip_launched(ctx, "embed");
}

/* dst rows [f, f + rows) (f = hylo_pos(first)) = src [rows, width], either side fp32 or bf16
 * (rounded on the way). */
template <typename S, typename D>
__global__ void copy_rows_kernel(D *dst, hylo_hip_pos first, int64_t dst_stride, const S *src,
                                 int64_t src_stride, int64_t rows, int64_t width)
{
    D *rows_at = dst + hylo_pos(first) * dst_stride;
    for (int64_t i = hylo_first(); i < rows * width; i += hylo_stride()) {
        const int64_t r = i / width, c = i % width;
        hylo_store(rows_at, r * dst_stride + c, hylo_load(src, r * src_stride + c));
    }
}

template <typename S, typename D>
static void copy_rows(hylo_hip_ctx *ctx, D *dst, hylo_hip_pos first, int64_t dst_stride,
                      const S *src, int64_t src_stride, int64_t rows, int64_t width)
{
    if (rows <= 0 || width <= 0 || !hylo_hip_ok(ctx)) return;
    copy_rows_kernel<<<hylo_hip_blocks(rows * width), HYLO_HIP_THREADS, 0,
                       hylo_hip_stream(ctx)>>>(dst, first, dst_stride, src, src_stride, rows,
                                               width);
    hylo_hip_launched(ctx, "copy rows");
}

static const hylo_hip_pos row_zero = {0, NULL};

void hylo_hip_copy_rows(hylo_hip_ctx *ctx, float *dst, int64_t dst_stride, const float *src,
                        int64_t src_stride, int64_t rows, int64_t width)
{
    copy_rows(ctx, dst, row_zero, dst_stride, src, src_stride, rows, width);
}

/* The caches: bf16 in a bf16 context (the precision its projections already round their
 * inputs to), else fp32. */
size_t hylo_hip_cache_value_bytes(const void *ctx)
{
    return ((const hylo_hip_ctx *)ctx)->bf16 ? sizeof(uint16_t) : sizeof(float);
}

void hylo_hip_cache_write_rows(hylo_hip_ctx *ctx, void *cache, hylo_hip_pos first,
                               int64_t cache_stride, const float *src, int64_t src_stride,
                               int64_t rows, int64_t width)
{
    if (ctx->bf16)
        copy_rows(ctx, (uint16_t *)cache, first, cache_stride, src, src_stride, rows, width);
    else
        copy_rows(ctx, (float *)cache, first, cache_stride, src, src_stride, rows, width);
}

void hylo_hip_cache_read_rows(hylo_hip_ctx *ctx, float *dst, int64_t dst_stride,
                              const void *cache, int64_t cache_stride, int64_t rows,
                              int64_t width)
{
    if (ctx->bf16)
        copy_rows(ctx, dst, row_zero, dst_stride, (const uint16_t *)cache, cache_stride, rows,
                  width);
    else
        copy_rows(ctx, dst, row_zero, dst_stride, (const float *)cache, cache_stride, rows,
                  width);
}

/* Rows at the position being computed: a recorded step's own at each replay. */
void hylo_hip_cache_store(void *vctx, float *cache, int64_t row, int64_t width, const float *src,
                          int64_t rows)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_hip_cache_write_rows(ctx, cache, hylo_hip_pos_of(ctx, row), width, src, width, rows,
                              width);
}
