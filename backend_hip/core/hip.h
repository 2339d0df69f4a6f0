/* hip.h: the machinery of the HIP backend (internal), shared by its C host code and its HIP
 * sources: the uploaded weights, the per-state context with its stream, BLAS handle and
 * workspaces, device memory through checked calls, traces of device tensors, and GEMMs.
 *
 * Memory: weights are uploaded once per model (hylo_hip_weights); a context allocates its
 * workspaces once and grows them geometrically (a decode step after the first of its size
 * allocates nothing). Weight arguments that carry the ref layers' names are the model's HOST
 * pointers, mapped onto their device copies by hylo_hip_find*; every other pointer given to a
 * launcher is device memory.
 *
 * Errors: every HIP call and kernel launch is checked where it happens; the first failure is
 * kept in the context (later work is skipped where a pointer would be missing) and returned by
 * the next op that returns a status, or by hylo_hip_finish. */
#ifndef HYLO_HIP_H
#define HYLO_HIP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "core/trace.h"
#include "hylo.h"
#include "model/model.h"

/* ------------------------------------------------------------------------------------------ */
/* Uploaded weights                                                                            */
/* ------------------------------------------------------------------------------------------ */

typedef struct hylo_hip_weights hylo_hip_weights;

/* A host array to upload: numel elements of elem_size bytes (4: float, 8: double); a `matrix`
 * (fp32) also gets a bf16 copy when the weights are bf16. */
typedef struct {
    const void *host;
    int64_t numel;
    size_t elem_size;
    bool matrix;
} hylo_hip_array;

/* Device copies of `count` arrays (duplicates uploaded once), bf16 copies of the matrices too
 * when `bf16`. */
hylo_status hylo_hip_weights_new(const hylo_hip_array *arrays, size_t count, bool bf16,
                                 hylo_hip_weights **out, hylo_error *err);
/* Adds the bf16 copies of the matrices if they are missing. */
hylo_status hylo_hip_weights_add_bf16(hylo_hip_weights *w, hylo_error *err);
void hylo_hip_weights_free(void *weights);
/* Device bytes held (fp32 and bf16 copies). */
int64_t hylo_hip_weights_bytes(const hylo_hip_weights *w);

/* ------------------------------------------------------------------------------------------ */
/* Context                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Workspace levels, so that a caller may hold its buffer while what it calls uses another:
 * LAYER for the blocks (mixers, MLP), OP for attention and the scans, GEMM for the bf16
 * rounding of a GEMM's activation input. One request per level per call: carve it. */
typedef enum { HYLO_HIP_LAYER = 0, HYLO_HIP_OP, HYLO_HIP_GEMM, HYLO_HIP_LEVELS } hylo_hip_level;

/* Decode steps recorded once and replayed (core/step.hip): a step's kernels read its position
 * and token from device memory, so that one recording (a HIP graph) serves the following
 * steps for as long as the host-side choices made while recording hold. */
typedef struct {
    int64_t pos;   /* the step's position                                               */
    int32_t token; /* its token id                                                      */
} hylo_hip_step_input;

typedef struct {
    bool off;                    /* HYLO_HIP_GRAPH=0: every step runs its ops one by one  */
    hylo_hip_step_input *input;  /* device: what the recorded kernels read               */
    hylo_hip_step_input host;    /* the next step's, copied to `input` before it runs    */
    bool recording;              /* the ops are being recorded at position host.pos      */
    int64_t lo, hi;              /* positions the recording holds for (while recording:   */
                                 /* narrowed by the ops, see hylo_hip_pos_holds)          */
    void *exec;                  /* hipGraphExec_t of the recording, or NULL              */
    int64_t layout;              /* the state's layout (capacity) it was recorded over    */
    uint64_t generation;         /* the workspaces' generation it was recorded over       */
    int failures;                /* recordings that failed in a row                       */
    int64_t recordings, replays; /* counts, for the checks                                */
} hylo_hip_steps;

typedef struct {
    void *stream;                      /* hipStream_t: the state's work, in order          */
    void *blas;                        /* hipblasHandle_t, or NULL: the built-in GEMM      */
    const hylo_hip_weights *weights;
    bool bf16;                         /* projections multiply the bf16 copies             */
    void *work[HYLO_HIP_LEVELS];       /* device workspaces, grow-only                     */
    size_t work_bytes[HYLO_HIP_LEVELS];
    uint64_t work_generation;          /* counts the workspaces' reallocations             */
    int32_t *tokens;                   /* device token ids of embed [token_cap]            */
    int64_t token_cap;
    float *host;                       /* host staging of traced tensors [host_floats]     */
    int64_t host_floats;
    hylo_error failure;                /* the first failure since the last finish (or OK)  */
    hylo_hip_steps steps;
} hylo_hip_ctx;

/* Whether the build multiplies through hipBLAS / cuBLAS (else the built-in GEMM only). */
bool hylo_hip_has_blas(void);

/* A context on the current device over `weights`. The GEMMs go through hipBLAS / cuBLAS when
 * the build has it, unless the environment sets HYLO_HIP_GEMM=builtin. */
hylo_status hylo_hip_context_new(const hylo_hip_weights *weights, bool bf16, hylo_hip_ctx **out,
                                 hylo_error *err);
void hylo_hip_context_free(void *ctx);

/* Records a failure (the first one is kept). */
void hylo_hip_fail(hylo_hip_ctx *ctx, hylo_status status, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
bool hylo_hip_ok(const hylo_hip_ctx *ctx);
/* The recorded failure into err (and cleared), after waiting for the queued work. */
hylo_status hylo_hip_finish(void *ctx, hylo_error *err);
/* The recorded failure into err without waiting (HYLO_OK when none; it stays recorded). */
hylo_status hylo_hip_status(const hylo_hip_ctx *ctx, hylo_error *err);

/* Bytes of OP workspace a chunked pass (attention prefill, GDN, SSD) plans its blocks of work
 * for: HYLO_HIP_OP_BUDGET unless the environment variable `env` gives another (the checks
 * force several blocks with it). */
#define HYLO_HIP_OP_BUDGET ((size_t)256 << 20)
size_t hylo_hip_op_budget(const char *env);

/* The level's workspace with room for `bytes` (contents not kept on growth), or NULL with the
 * failure recorded. */
void *hylo_hip_workspace(hylo_hip_ctx *ctx, hylo_hip_level level, size_t bytes);

/* Zero-filled device memory, or NULL with the failure recorded; freed by hylo_hip_release. */
void *hylo_hip_alloc(void *ctx, size_t bytes);
void hylo_hip_release(void *ctx, void *p);
/* Copies on the context's stream; copies to the host wait for it. */
hylo_status hylo_hip_copy(void *ctx, void *dst, const void *src, size_t bytes, hylo_copy_kind kind,
                          hylo_error *err);

/* The same without a context (weights), on the default stream, waiting for completion. */
hylo_status hylo_hip_device_alloc(void **p, size_t bytes, hylo_error *err);
void hylo_hip_device_free(void *p);
/* Bytes of the current device's memory in use (by every process), or -1. */
int64_t hylo_hip_device_used(void);
hylo_status hylo_hip_device_upload(void *dst, const void *src, size_t bytes, hylo_error *err);
/* dst [n] = src [n] rounded to bf16 (nearest even), both device memory. */
hylo_status hylo_hip_device_to_bf16(const float *src, uint16_t *dst, int64_t n, hylo_error *err);
/* The same on the context's stream. */
void hylo_hip_to_bf16(hylo_hip_ctx *ctx, const float *src, uint16_t *dst, int64_t n);

/* The device copy of the host array that contains `host` (at the same offset), or NULL with
 * the failure recorded; `what` names the tensor in the message. */
const float *hylo_hip_find(hylo_hip_ctx *ctx, const float *host, const char *what);
const double *hylo_hip_find_f64(hylo_hip_ctx *ctx, const double *host, const char *what);
/* Its bf16 copy when the context multiplies in bf16 and the array has one, else NULL. */
const uint16_t *hylo_hip_find_bf16(hylo_hip_ctx *ctx, const float *host);

/* hylo_trace_emit_slice / hylo_trace_emit of device memory: copied to the host first, only
 * while tracing. */
void hylo_hip_trace_slice(hylo_hip_ctx *ctx, const hylo_tracer *tr, const char *name,
                          const float *src, int64_t rows, int64_t stride, int64_t offset,
                          int64_t width, int ndim, const int64_t *shape);
void hylo_hip_trace(hylo_hip_ctx *ctx, const hylo_tracer *tr, const char *name, const float *src,
                    int ndim, const int64_t *shape);

/* ------------------------------------------------------------------------------------------ */
/* Recorded decode steps (core/step.hip)                                                       */
/* ------------------------------------------------------------------------------------------ */

/* A value that depends on the step's position, as a kernel reads it (hylo_pos in device.h):
 * `offset`, plus the position read from `at` while a step is recorded (then offset is the
 * value minus the recording's position), so that a replay at a later position sees its own. */
typedef struct {
    int64_t offset;
    const int64_t *at;
} hylo_hip_pos;

/* `value` (the host's, at the current step) as its kernels must read it. */
hylo_hip_pos hylo_hip_pos_of(const hylo_hip_ctx *ctx, int64_t value);
/* The caller chose its launches (grid, workspace, plan) from `value`; they stay right for
 * values in [lo, hi]: a recording in progress then replays only at positions that keep
 * `value` there. Nothing while not recording. */
void hylo_hip_pos_holds(hylo_hip_ctx *ctx, int64_t value, int64_t lo, int64_t hi);

/* The ops table's step entries (see hylo_ops): replays the recording for `token` at `pos`
 * when it holds there (true), else starts recording the step's ops unless recording is off
 * or failed on the previous step (false: forward.c runs the ops). */
bool hylo_hip_step_begin(void *ctx, int32_t token, int64_t pos, int64_t layout);
/* Ends a recording: replays it (HYLO_OK), or, when it failed (nothing ran), sets *again and
 * clears the failure. Nothing when no recording was in progress. */
hylo_status hylo_hip_step_end(void *ctx, bool *again, hylo_error *err);
/* A context's step input (context creation; HYLO_HIP_GRAPH read there) and the recording's
 * resources (context_free). */
hylo_status hylo_hip_steps_init(hylo_hip_ctx *ctx, hylo_error *err);
void hylo_hip_steps_free(hylo_hip_ctx *ctx);

/* ------------------------------------------------------------------------------------------ */
/* GEMM (core/gemm.hip)                                                                        */
/* ------------------------------------------------------------------------------------------ */

/* C [M, N] = alpha op(A) op(B) + beta C, row-major: op(A) is [M, K] (A [M, K] with row stride
 * lda, or [K, M] when trans_a), op(B) is [K, N] (B [K, N], or [N, K] when trans_b). A and B
 * are both fp32 (HYLO_F32) or both bf16 (HYLO_BF16, as uint16_t); C and the accumulation are
 * fp32. beta 0 never reads C. hipBLAS / cuBLAS when the context has a handle, else the built-in
 * tiled kernel (64 x 64 tiles, operands staged in shared memory). */
void hylo_hip_gemm(hylo_hip_ctx *ctx, hylo_dtype type, bool trans_a, bool trans_b, int64_t M,
                   int64_t N, int64_t K, float alpha, const void *A, int64_t lda, const void *B,
                   int64_t ldb, float beta, float *C, int64_t ldc);
/* `batch` such products: product b reads A + b stride_a and B + b stride_b and writes
 * C + b stride_c (strides in elements of the operand's type; 0 reuses an operand, e.g. one key
 * block for every head of a group). One strided-batched BLAS call, or the built-in kernel over
 * a grid of products. */
void hylo_hip_gemm_batched(hylo_hip_ctx *ctx, hylo_dtype type, bool trans_a, bool trans_b,
                           int64_t M, int64_t N, int64_t K, float alpha, const void *A,
                           int64_t lda, int64_t stride_a, const void *B, int64_t ldb,
                           int64_t stride_b, float beta, float *C, int64_t ldc, int64_t stride_c,
                           int64_t batch);

#ifdef __cplusplus
}
#endif

#endif
