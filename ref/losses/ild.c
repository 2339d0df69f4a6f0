/* ild.c: the Enhanced ILD of stage I (spec sec. 8): un-squared per-token L2 distances between
 * the student's and the teacher's layer outputs, mixer outputs and final-norm outputs, each
 * averaged over tokens, summed over layers (formulas and the value at d = 0 in hylo.h). */
#include <math.h>
#include <stdlib.h>

#include "losses/losses.h"

/* s, t [T, D]: false when an entry of either is NaN or Inf. */
static bool all_finite(const float *s, const float *t, int64_t n)
{
    bool ok = true;
#pragma omp parallel for reduction(&& : ok) schedule(static) \
    if (n >= HYLO_KD_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) ok = ok && isfinite(s[i]) && isfinite(t[i]);
    return ok;
}

/* student, teacher [T, D]; grad [T, D] or NULL.
 *   value = (1/T) sum_t ||d_t||_2,   d_t = s_t - t_t          (d_t and its norm in double)
 *   grad_t = d_t / (T ||d_t||)  where d_t != 0,   0 where d_t = 0 (least-norm subgradient) */
hylo_status hylo_ild_distance(const float *student, const float *teacher, int64_t T, int64_t D,
                              double *out, float *grad, hylo_error *err)
{
    if (T < 1 || D < 1)
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "ILD of [T = %lld, D = %lld]: both must be >= 1", (long long)T,
                              (long long)D);
    if (!student || !teacher || !out)
        return hylo_error_set(err, HYLO_ERR_USAGE,
                              "hylo_ild_distance: tensors and out are required");
    if (!all_finite(student, teacher, T * D))
        return hylo_error_set(err, HYLO_ERR_NUMERIC, "ILD input [%lld, %lld] holds a NaN or Inf",
                              (long long)T, (long long)D);
    double *norms = malloc((size_t)T * sizeof *norms);
    if (!norms)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate %lld token norms",
                              (long long)T);
#pragma omp parallel for schedule(static) if (T * D >= HYLO_KD_PARALLEL_MIN)
    for (int64_t t = 0; t < T; t++) {
        const float *s = student + t * D, *r = teacher + t * D;
        double ss = 0.0;
        for (int64_t d = 0; d < D; d++) {
            const double diff = (double)s[d] - r[d];
            ss += diff * diff;
        }
        norms[t] = sqrt(ss);
        const double scale = norms[t] > 0 ? 1.0 / ((double)T * norms[t]) : 0.0;
        for (int64_t d = 0; grad && d < D; d++)
            grad[t * D + d] = (float)(((double)s[d] - r[d]) * scale);
    }
    double sum = 0.0;
    for (int64_t t = 0; t < T; t++) sum += norms[t];
    free(norms);
    *out = sum / (double)T;
    return HYLO_OK;
}

/* student, teacher: hidden, mixer [L, T, D], final [T, D]; grad's tensors the student's shapes.
 *   loss = sum_l (hidden[l] + mixer[l]) + final,  each term a hylo_ild_distance */
hylo_status hylo_ild_loss(const hylo_ild_tensors *student, const hylo_ild_tensors *teacher,
                          int64_t L, int64_t T, int64_t D, hylo_ild_result *out,
                          const hylo_ild_grads *grad, hylo_error *err)
{
    if (L < 1 || L > HYLO_MAX_LAYERS)
        return hylo_error_set(err, HYLO_ERR_RANGE, "ILD over %lld layers: expected 1 to %d",
                              (long long)L, HYLO_MAX_LAYERS);
    if (!student || !teacher || !out)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_ild_loss: tensors and out are required");
    const hylo_ild_grads none = {NULL, NULL, NULL};
    const hylo_ild_grads *g = grad ? grad : &none;
    const int64_t TD = T * D;
    hylo_status st = HYLO_OK;
    *out = (hylo_ild_result){0};
    for (int64_t l = 0; l < L && st == HYLO_OK; l++) {
        st = hylo_ild_distance(student->hidden + l * TD, teacher->hidden + l * TD, T, D,
                               &out->hidden[l], g->hidden ? g->hidden + l * TD : NULL, err);
        if (st == HYLO_OK)
            st = hylo_ild_distance(student->mixer + l * TD, teacher->mixer + l * TD, T, D,
                                   &out->mixer[l], g->mixer ? g->mixer + l * TD : NULL, err);
        if (st != HYLO_OK) hylo_error_wrap(err, "layer %lld", (long long)l);
        else out->loss += out->hidden[l] + out->mixer[l];
    }
    if (st == HYLO_OK) {
        st = hylo_ild_distance(student->final, teacher->final, T, D, &out->final, g->final, err);
        if (st != HYLO_OK) hylo_error_wrap(err, "final norm");
    }
    if (st == HYLO_OK) out->loss += out->final;
    return st;
}
