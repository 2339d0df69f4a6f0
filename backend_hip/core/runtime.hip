/* runtime.hip: the HIP backend's contexts, device memory, copies, sticky failures and traces of
 * device tensors: every HIP runtime call of the backend's host code goes through here. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/device.h"

bool hylo_hip_check(hylo_hip_ctx *ctx, hipError_t e, const char *what)
{
    if (e == hipSuccess) return true;
    hylo_hip_fail(ctx, HYLO_ERR_IO, "hip backend: %s: %s", what, hipGetErrorString(e));
    return false;
}

void hylo_hip_fail(hylo_hip_ctx *ctx, hylo_status status, const char *fmt, ...)
{
    if (ctx->failure.status != HYLO_OK) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ctx->failure.message, sizeof ctx->failure.message, fmt, ap);
    va_end(ap);
    ctx->failure.status = status;
}

bool hylo_hip_ok(const hylo_hip_ctx *ctx)
{
    return ctx->failure.status == HYLO_OK;
}

hylo_status hylo_hip_status(const hylo_hip_ctx *ctx, hylo_error *err)
{
    if (ctx->failure.status != HYLO_OK && err) *err = ctx->failure;
    return ctx->failure.status;
}

hylo_status hylo_hip_finish(void *vctx, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    hylo_hip_check(ctx, hipStreamSynchronize(hylo_hip_stream(ctx)), "synchronize");
    const hylo_status st = hylo_hip_status(ctx, err);
    ctx->failure.status = HYLO_OK;
    ctx->failure.message[0] = '\0';
    return st;
}

/* ------------------------------------------------------------------------------------------ */
/* Memory without a context (weights): default stream, waits                                   */
/* ------------------------------------------------------------------------------------------ */

hylo_status hylo_hip_device_alloc(void **p, size_t bytes, hylo_error *err)
{
    *p = NULL;
    hipError_t e = hipMalloc(p, bytes > 0 ? bytes : 1);
    if (e != hipSuccess) {
        *p = NULL;
        return hylo_error_set(err, HYLO_ERR_NOMEM, "hip backend: cannot allocate %zu bytes: %s",
                              bytes, hipGetErrorString(e));
    }
    return HYLO_OK;
}

size_t hylo_hip_op_budget(const char *env)
{
    const char *e = getenv(env);
    const unsigned long long b = e ? strtoull(e, NULL, 10) : 0;
    return b > 0 ? (size_t)b : HYLO_HIP_OP_BUDGET;
}

int64_t hylo_hip_device_used(void)
{
    size_t free_bytes = 0, total = 0;
    if (hipMemGetInfo(&free_bytes, &total) != hipSuccess) {
        (void)hipGetLastError();
        return -1;
    }
    return (int64_t)(total - free_bytes);
}

void hylo_hip_device_free(void *p)
{
    if (p) (void)hipFree(p); /* nothing to report a failed release to */
}

hylo_status hylo_hip_device_upload(void *dst, const void *src, size_t bytes, hylo_error *err)
{
    hipError_t e = hipMemcpy(dst, src, bytes, hipMemcpyHostToDevice);
    if (e != hipSuccess)
        return hylo_error_set(err, HYLO_ERR_IO, "hip backend: cannot upload %zu bytes: %s",
                              bytes, hipGetErrorString(e));
    return HYLO_OK;
}

__global__ void to_bf16_kernel(const float *src, uint16_t *dst, int64_t n)
{
    for (int64_t i = hylo_first(); i < n; i += hylo_stride()) dst[i] = hylo_bf16_round(src[i]);
}

hylo_status hylo_hip_device_to_bf16(const float *src, uint16_t *dst, int64_t n, hylo_error *err)
{
    to_bf16_kernel<<<hylo_hip_blocks(n), HYLO_HIP_THREADS>>>(src, dst, n);
    hipError_t e = hipGetLastError();
    if (e == hipSuccess) e = hipDeviceSynchronize();
    if (e != hipSuccess)
        return hylo_error_set(err, HYLO_ERR_IO, "hip backend: bf16 copy of %lld values: %s",
                              (long long)n, hipGetErrorString(e));
    return HYLO_OK;
}

void hylo_hip_to_bf16(hylo_hip_ctx *ctx, const float *src, uint16_t *dst, int64_t n)
{
    if (n <= 0 || !hylo_hip_ok(ctx)) return;
    to_bf16_kernel<<<hylo_hip_blocks(n), HYLO_HIP_THREADS, 0, hylo_hip_stream(ctx)>>>(src, dst, n);
    hylo_hip_launched(ctx, "bf16 rounding");
}

/* ------------------------------------------------------------------------------------------ */
/* Contexts                                                                                    */
/* ------------------------------------------------------------------------------------------ */

bool hylo_hip_has_blas(void)
{
#if defined(HYLO_HIP_BLAS)
    return true;
#else
    return false;
#endif
}

hylo_status hylo_hip_context_new(const hylo_hip_weights *weights, bool bf16, hylo_hip_ctx **out,
                                 hylo_error *err)
{
    *out = NULL;
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)calloc(1, sizeof *ctx);
    if (!ctx) return hylo_error_set(err, HYLO_ERR_NOMEM, "hip backend: cannot allocate a context");
    ctx->weights = weights;
    ctx->bf16 = bf16;
    hipStream_t stream = NULL;
    hipError_t e = hipStreamCreate(&stream);
    if (e != hipSuccess) {
        free(ctx);
        return hylo_error_set(err, HYLO_ERR_IO, "hip backend: no usable GPU (stream creation: %s)",
                              hipGetErrorString(e));
    }
    ctx->stream = stream;
    hylo_status st = hylo_hip_steps_init(ctx, err);
    if (st != HYLO_OK) {
        hylo_hip_context_free(ctx);
        return st;
    }
#if defined(HYLO_HIP_BLAS)
    const char *gemm = getenv("HYLO_HIP_GEMM");
    if (!gemm || strcmp(gemm, "builtin") != 0) {
        hipblasHandle_t handle = NULL;
        if (hipblasCreate(&handle) != HIPBLAS_STATUS_SUCCESS ||
            hipblasSetStream(handle, stream) != HIPBLAS_STATUS_SUCCESS) {
            if (handle) hipblasDestroy(handle);
            hylo_hip_context_free(ctx);
            return hylo_error_set(err, HYLO_ERR_IO, "hip backend: cannot create a BLAS handle");
        }
        ctx->blas = handle;
    }
#endif
    *out = ctx;
    return HYLO_OK;
}

void hylo_hip_context_free(void *vctx)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    if (!ctx) return;
    if (ctx->stream) (void)hipStreamSynchronize(hylo_hip_stream(ctx));
#if defined(HYLO_HIP_BLAS)
    if (ctx->blas) hipblasDestroy((hipblasHandle_t)ctx->blas);
#endif
    for (int l = 0; l < HYLO_HIP_LEVELS; l++) hylo_hip_device_free(ctx->work[l]);
    hylo_hip_device_free(ctx->tokens);
    hylo_hip_steps_free(ctx);
    if (ctx->stream) (void)hipStreamDestroy(hylo_hip_stream(ctx));
    free(ctx->host);
    free(ctx);
}

/* Growth waits for the queued work (which may still read the old buffer) and is geometric, so
 * that a need creeping up with the context (attention partials) reallocates O(log) times. */
void *hylo_hip_workspace(hylo_hip_ctx *ctx, hylo_hip_level level, size_t bytes)
{
    if (bytes <= ctx->work_bytes[level] && ctx->work[level]) return ctx->work[level];
    const size_t at_least = ctx->work_bytes[level] + ctx->work_bytes[level] / 2;
    bytes = bytes > at_least ? bytes : at_least;
    bytes = bytes < 256 ? 256 : (bytes + 255) / 256 * 256;
    if (ctx->steps.recording) {
        /* a recording names the workspace it was recorded over: the step runs unrecorded */
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: a workspace must grow during a "
                      "recorded step");
        return NULL;
    }
    if (!hylo_hip_check(ctx, hipStreamSynchronize(hylo_hip_stream(ctx)), "synchronize"))
        return NULL;
    hylo_hip_device_free(ctx->work[level]);
    ctx->work[level] = NULL;
    ctx->work_bytes[level] = 0;
    void *p = NULL;
    hipError_t e = hipMalloc(&p, bytes);
    if (e != hipSuccess) {
        hylo_hip_fail(ctx, HYLO_ERR_NOMEM, "hip backend: cannot grow a workspace to %zu bytes: %s",
                      bytes, hipGetErrorString(e));
        return NULL;
    }
    ctx->work[level] = p;
    ctx->work_bytes[level] = bytes;
    ctx->work_generation++;
    return p;
}

void *hylo_hip_alloc(void *vctx, size_t bytes)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    void *p = NULL;
    hipError_t e = hipMalloc(&p, bytes > 0 ? bytes : 1);
    if (e != hipSuccess) {
        hylo_hip_fail(ctx, HYLO_ERR_NOMEM, "hip backend: cannot allocate %zu bytes: %s", bytes,
                      hipGetErrorString(e));
        return NULL;
    }
    if (!hylo_hip_check(ctx, hipMemsetAsync(p, 0, bytes, hylo_hip_stream(ctx)), "zero fill")) {
        (void)hipFree(p);
        return NULL;
    }
    return p;
}

void hylo_hip_release(void *vctx, void *p)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    if (!p) return;
    /* hipFree may not wait for work queued on another stream that still reads p */
    hylo_hip_check(ctx, hipStreamSynchronize(hylo_hip_stream(ctx)), "synchronize");
    hylo_hip_check(ctx, hipFree(p), "free");
}

hylo_status hylo_hip_copy(void *vctx, void *dst, const void *src, size_t bytes,
                          hylo_copy_kind kind, hylo_error *err)
{
    hylo_hip_ctx *ctx = (hylo_hip_ctx *)vctx;
    const hipMemcpyKind k = kind == HYLO_COPY_TO_DEVICE ? hipMemcpyHostToDevice
                            : kind == HYLO_COPY_TO_HOST ? hipMemcpyDeviceToHost
                                                        : hipMemcpyDeviceToDevice;
    hipError_t e = hipMemcpyAsync(dst, src, bytes, k, hylo_hip_stream(ctx));
    /* a host buffer may be reused as soon as the call returns: wait for both directions */
    if (e == hipSuccess && kind != HYLO_COPY_ON_DEVICE) e = hipStreamSynchronize(hylo_hip_stream(ctx));
    if (e != hipSuccess) {
        hylo_hip_check(ctx, e, "copy");
        return hylo_error_set(err, HYLO_ERR_IO, "hip backend: copy of %zu bytes: %s", bytes,
                              hipGetErrorString(e));
    }
    return HYLO_OK;
}

/* ------------------------------------------------------------------------------------------ */
/* Traces                                                                                      */
/* ------------------------------------------------------------------------------------------ */

void hylo_hip_trace_slice(hylo_hip_ctx *ctx, const hylo_tracer *tr, const char *name,
                          const float *src, int64_t rows, int64_t stride, int64_t offset,
                          int64_t width, int ndim, const int64_t *shape)
{
    if (!hylo_tracer_on(tr) || !hylo_hip_ok(ctx)) return;
    /* the rows' span: row r's slice ends at r * stride + offset + width */
    const int64_t n = rows > 0 ? (rows - 1) * stride + offset + width : 0;
    if (n > ctx->host_floats) {
        float *grown = (float *)realloc(ctx->host, (size_t)n * sizeof(float));
        if (!grown) {
            hylo_hip_fail(ctx, HYLO_ERR_NOMEM, "hip backend: cannot stage %lld floats of %s",
                          (long long)n, name);
            return;
        }
        ctx->host = grown;
        ctx->host_floats = n;
    }
    if (n > 0 && hylo_hip_copy(ctx, ctx->host, src, (size_t)n * sizeof(float), HYLO_COPY_TO_HOST,
                               NULL) != HYLO_OK)
        return;
    hylo_trace_emit_slice(tr, name, ctx->host, rows, stride, offset, width, ndim, shape);
}

void hylo_hip_trace(hylo_hip_ctx *ctx, const hylo_tracer *tr, const char *name, const float *src,
                    int ndim, const int64_t *shape)
{
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    hylo_hip_trace_slice(ctx, tr, name, src, 1, n, 0, n, ndim, shape);
}
