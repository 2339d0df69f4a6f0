/* kd.c: the full form of the distillation loss, from student and teacher logits [N, V]
 * (formulas in hylo.h "Distillation losses"; the row kernel is kd_row.c). */
#include <math.h>

#include "losses/losses.h"

/* What is wrong with row r of z [N, V], or NULL: a NaN, a +Inf, or no finite entry. */
static const char *row_fault(const float *z, int64_t V, int64_t r, int64_t *at)
{
    bool finite = false;
    *at = 0;
    for (int64_t v = 0; v < V; v++) {
        float x = z[r * V + v];
        *at = v;
        if (isnan(x)) return "is NaN";
        if (x == INFINITY) return "is +Inf";
        finite = finite || x != -INFINITY;
    }
    return finite ? NULL : "and every other entry of the row are -Inf";
}

/* z [N, V]: every row must be a distribution once softmaxed (see row_fault). */
static hylo_status check_logits(const float *z, int64_t N, int64_t V, const char *what,
                                hylo_error *err)
{
    int64_t first = N;
#pragma omp parallel for reduction(min : first) schedule(static) \
    if (N * V >= HYLO_KD_PARALLEL_MIN)
    for (int64_t r = 0; r < N; r++) {
        int64_t at;
        if (row_fault(z, V, r, &at) && r < first) first = r;
    }
    if (first == N) return HYLO_OK;
    int64_t at;
    const char *fault = row_fault(z, V, first, &at);
    return hylo_error_set(err, HYLO_ERR_NUMERIC, "%s logits: row %lld, entry %lld %s", what,
                          (long long)first, (long long)at, fault);
}

/* student, teacher [N, V]; labels [N] or NULL; grad [N, V] or NULL. */
hylo_status hylo_kd_loss(const float *student, const float *teacher, const int32_t *labels,
                         int64_t N, int64_t V, const hylo_kd_options *opt, hylo_kd_result *out,
                         float *grad, hylo_error *err)
{
    hylo_kd_plan plan;
    hylo_status st = hylo_kd_plan_make(opt, labels, N, V, &plan, err);
    if (st == HYLO_OK && (!student || !teacher || !out))
        st = hylo_error_set(err, HYLO_ERR_USAGE, "hylo_kd_loss: logits and out are required");
    if (st == HYLO_OK) st = check_logits(student, N, V, "student", err);
    if (st == HYLO_OK) st = check_logits(teacher, N, V, "teacher", err);
    hylo_kd_sums sums = {0};
    if (st == HYLO_OK) st = hylo_kd_rows(&plan, student, teacher, 0, N, grad, &sums, err);
    if (st == HYLO_OK) hylo_kd_finish(&plan, &sums, out);
    return st;
}
