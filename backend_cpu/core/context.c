/* context.c: the CPU backend's per-state context: two grow-only workspace buffers, sized at
 * creation for a decode step of the state's model so that decode steps never allocate. */
#include <stdlib.h>

#include "cpu.h"

void hylo_cpu_need_max(hylo_cpu_need *need, const hylo_cpu_need *other)
{
    for (int l = 0; l < HYLO_CPU_LEVELS; l++)
        if (other->floats[l] > need->floats[l]) need->floats[l] = other->floats[l];
}

/* A 64-byte aligned buffer of n floats (n > 0). */
static float *aligned_floats(int64_t n)
{
    return aligned_alloc(64, (size_t)hylo_cpu_round16(n) * sizeof(float));
}

hylo_status hylo_cpu_context_new(const hylo_cpu_weights *bf16, const hylo_cpu_need *need,
                                 hylo_cpu_ctx **out, hylo_error *err)
{
    *out = NULL;
    hylo_cpu_blas_init();
    hylo_cpu_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx) return hylo_error_set(err, HYLO_ERR_NOMEM, "cpu backend: cannot allocate a context");
    ctx->bf16 = bf16;
    for (int l = 0; l < HYLO_CPU_LEVELS; l++) {
        const int64_t n = need && need->floats[l] > 0 ? need->floats[l] : 16;
        ctx->buffer[l] = aligned_floats(n);
        ctx->capacity[l] = hylo_cpu_round16(n);
        if (!ctx->buffer[l]) {
            hylo_cpu_context_free(ctx);
            return hylo_error_set(err, HYLO_ERR_NOMEM,
                                  "cpu backend: cannot allocate a %lld-float workspace",
                                  (long long)n);
        }
    }
    *out = ctx;
    return HYLO_OK;
}

void hylo_cpu_context_free(hylo_cpu_ctx *ctx)
{
    if (!ctx) return;
    for (int l = 0; l < HYLO_CPU_LEVELS; l++) free(ctx->buffer[l]);
    free(ctx);
}

/* Growth is geometric (at least 1.5 times), so that a need that creeps up with the context
 * (an MLA layer with a k_norm rebuilds every cached key) reallocates O(log) times. */
float *hylo_cpu_workspace(hylo_cpu_ctx *ctx, hylo_cpu_level level, int64_t n, hylo_error *err)
{
    if (n <= ctx->capacity[level]) return ctx->buffer[level];
    const int64_t at_least = ctx->capacity[level] + ctx->capacity[level] / 2;
    n = n > at_least ? n : at_least;
    float *grown = aligned_floats(n);
    if (!grown) {
        hylo_error_set(err, HYLO_ERR_NOMEM, "cpu backend: cannot grow a workspace to %lld floats",
                       (long long)n);
        return NULL;
    }
    free(ctx->buffer[level]);
    ctx->buffer[level] = grown;
    ctx->capacity[level] = hylo_cpu_round16(n);
    ctx->grows++;
    return grown;
}
