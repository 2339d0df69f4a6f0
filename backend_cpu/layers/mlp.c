/* mlp.c: the SwiGLU MLP for the CPU backend: two projections, the fused silu(g) * u, the down
 * projection. */
#include "cpu_layers.h"

hylo_cpu_need hylo_cpu_swiglu_mlp_need(int64_t T, int64_t D, int64_t F)
{
    hylo_cpu_need need = {{2 * hylo_cpu_round16(T * F), 0}};
    hylo_cpu_need linear = hylo_cpu_linear_need(T, D > F ? D : F);
    hylo_cpu_need_max(&need, &linear);
    return need;
}

/* x [T, D], Wg, Wu [F, D], Wd [D, F], bg, bu [F], bd [D] or NULL, y [T, D]:
 *   g = x Wg^T + bg ;  u = x Wu^T + bu ;  y = (silu(g) * u) Wd^T + bd                       */
hylo_status hylo_cpu_swiglu_mlp(void *ctx, const float *x, const float *Wg, const float *bg,
                                const float *Wu, const float *bu, const float *Wd,
                                const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                hylo_error *err)
{
    float *g = hylo_cpu_workspace(ctx, HYLO_CPU_LAYER,
                                  hylo_cpu_swiglu_mlp_need(T, D, F).floats[HYLO_CPU_LAYER], err);
    if (!g) return HYLO_ERR_NOMEM;
    float *u = g + hylo_cpu_round16(T * F);
    hylo_cpu_linear(ctx, x, Wg, bg, g, T, D, F);
    hylo_cpu_linear(ctx, x, Wu, bu, u, T, D, F);
    hylo_cpu_silu_mul_parallel(g, u, T * F);
    hylo_cpu_linear(ctx, g, Wd, bd, y, T, F, D);
    return HYLO_OK;
}
