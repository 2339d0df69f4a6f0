/* mlp.c: the SwiGLU MLP of Llama / Qwen (spec sec. 2). */
#include <math.h>
#include <stdlib.h>

#include "layers/layers.h"

/* x [T, D], Wg, Wu [F, D], Wd [D, F], bg, bu [F] and bd [D] or NULL, y [T, D].
 *   g = x Wg^T + bg ;  u = x Wu^T + bu ;  h = silu(g) * u = g / (1 + exp(-g)) * u
 *   y = h Wd^T + bd                                                                       */
hylo_status hylo_ref_swiglu_mlp(const float *x, const float *Wg, const float *bg,
                                const float *Wu, const float *bu, const float *Wd,
                                const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                hylo_error *err)
{
    float *g = malloc((size_t)(T * F) * sizeof *g);
    float *u = malloc((size_t)(T * F) * sizeof *u);
    if (!g || !u) {
        free(g);
        free(u);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "mlp: cannot allocate 2 x [%lld, %lld]",
                              (long long)T, (long long)F);
    }
    hylo_ref_linear(x, Wg, bg, g, T, D, F);
    hylo_ref_linear(x, Wu, bu, u, T, D, F);
    for (int64_t i = 0; i < T * F; i++) {
        double gi = g[i];
        g[i] = (float)(gi / (1.0 + exp(-gi)) * (double)u[i]);
    }
    hylo_ref_linear(g, Wd, bd, y, T, F, D);
    free(g);
    free(u);
    return HYLO_OK;
}
