/* kd_hidden.c: the pieces the hidden-state forms of the distillation loss share: checking the
 * two sides, the logits of one tile, and one tile's gradient into the hidden states and head. */
#include <float.h>
#include <math.h>

#include "losses/losses.h"

/* x [rows, D]: the largest row norm ||x_r||_2 in double, or -1 when some entry is not finite. */
static double max_row_norm(const float *x, int64_t rows, int64_t D)
{
    double worst = 0.0;
    bool finite = true;
#pragma omp parallel for reduction(max : worst) reduction(&& : finite) schedule(static) \
    if (rows * D >= HYLO_KD_PARALLEL_MIN)
    for (int64_t r = 0; r < rows; r++) {
        double ss = 0.0;
        for (int64_t d = 0; d < D; d++) {
            finite = finite && isfinite(x[r * D + d]);
            ss += (double)x[r * D + d] * x[r * D + d];
        }
        worst = fmax(worst, sqrt(ss));
    }
    return finite ? worst : -1.0;
}

/* hidden [N, D], lm_head [V, D] of one side; by Cauchy-Schwarz |z| <= max ||h|| max ||W||. */
static hylo_status check_side(const hylo_kd_side *side, const char *what, int64_t N, int64_t V,
                              hylo_error *err)
{
    if (!side || !side->hidden || !side->lm_head)
        return hylo_error_set(err, HYLO_ERR_USAGE, "%s: hidden states and LM head are required",
                              what);
    if (side->dim < 1)
        return hylo_error_set(err, HYLO_ERR_RANGE, "%s: hidden size D = %lld (must be >= 1)",
                              what, (long long)side->dim);
    const double h = max_row_norm(side->hidden, N, side->dim);
    const double w = max_row_norm(side->lm_head, V, side->dim);
    if (h < 0 || w < 0)
        return hylo_error_set(err, HYLO_ERR_NUMERIC, "%s: %s holds a NaN or Inf", what,
                              h < 0 ? "hidden [N, D]" : "lm_head [V, D]");
    if (h * w > FLT_MAX)
        return hylo_error_set(err, HYLO_ERR_NUMERIC,
                              "%s: logits could overflow fp32 (max ||hidden|| %.3e x max "
                              "||lm_head row|| %.3e > %.3e)",
                              what, h, w, (double)FLT_MAX);
    return HYLO_OK;
}

/* Both sides: hidden [N, D_S or D_T], lm_head [V, D_S or D_T]. */
hylo_status hylo_kd_check_sides(const hylo_kd_side *student, const hylo_kd_side *teacher,
                                int64_t N, int64_t V, hylo_error *err)
{
    hylo_status st = check_side(student, "student", N, V, err);
    return st == HYLO_OK ? check_side(teacher, "teacher", N, V, err) : st;
}

/* h [C, D], W [n, D]; scratch wt [D, n], acc [C, n]; z [C, n].
 *   z[c, j] = fp32( sum_{d = 0}^{D-1} h[c, d] W[j, d] )
 * Each product of two floats is exact in double, so only the additions round, in increasing d
 * from 0 as in hylo_ref_linear: the same bits. The loops run d outside and j inside so that
 * the j loop (independent sums) vectorizes; W is transposed into wt for it. */
void hylo_kd_logits_tile(const float *h, const float *W, int64_t C, int64_t n, int64_t D,
                         double *wt, double *acc, float *z)
{
#pragma omp parallel for schedule(static) if (n * D >= HYLO_KD_PARALLEL_MIN)
    for (int64_t d = 0; d < D; d++)
        for (int64_t j = 0; j < n; j++) wt[d * n + j] = W[j * D + d];
#pragma omp parallel for schedule(dynamic, 8) if (C * n * D >= HYLO_KD_PARALLEL_MIN)
    for (int64_t c = 0; c < C; c++) {
        double *restrict a = acc + c * n;
        for (int64_t j = 0; j < n; j++) a[j] = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double hcd = h[c * D + d];
            const double *restrict w = wt + d * n;
#pragma omp simd
            for (int64_t j = 0; j < n; j++) a[j] += hcd * w[j];
        }
        for (int64_t j = 0; j < n; j++) z[c * n + j] = (float)a[j];
    }
}

/* G [C, n], h [C, D], W [n, D]; dh [C, D] or NULL, dW [n, D] or NULL (see losses.h). Each
 * output element is summed by one thread in a fixed order: no dependence on thread count
 * (dynamic schedules only share the rows out, and keep a busy machine's cores all working). */
void hylo_kd_backprop_tile(const float *G, const float *h, const float *W, int64_t C, int64_t n,
                           int64_t D, double *dh, double *dW)
{
    if (dh) {
#pragma omp parallel for schedule(dynamic, 8) \
    if (C * n * D >= HYLO_KD_PARALLEL_MIN)
        for (int64_t c = 0; c < C; c++) {
            double *restrict out = dh + c * D;
            for (int64_t j = 0; j < n; j++) {
                const double g = G[c * n + j];
                const float *restrict w = W + j * D;
#pragma omp simd
                for (int64_t d = 0; d < D; d++) out[d] += g * w[d];
            }
        }
    }
    if (dW) {
#pragma omp parallel for schedule(dynamic, 64) \
    if (C * n * D >= HYLO_KD_PARALLEL_MIN)
        for (int64_t j = 0; j < n; j++) {
            double *restrict out = dW + j * D;
            for (int64_t c = 0; c < C; c++) {
                const double g = G[c * n + j];
                const float *restrict x = h + c * D;
#pragma omp simd
                for (int64_t d = 0; d < D; d++) out[d] += g * x[d];
            }
        }
    }
}
