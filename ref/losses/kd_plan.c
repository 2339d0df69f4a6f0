/* kd_plan.c: the options of a distillation loss call, checked once, and the final reduction:
 *   KL = tau^2 / den sum_r KL_r,  CE = sum_r CE_r / M,  loss = kl_weight KL + ce_weight CE. */
#include <math.h>

#include "losses/losses.h"

/* The defaults of spec sec. 8: KL alone, no temperature, batchmean, HF's ignore index. */
hylo_kd_options hylo_kd_options_default(void)
{
    hylo_kd_options o = {.batch = 1,
                         .reduction = HYLO_KL_BATCHMEAN,
                         .temperature = 1.0,
                         .kl_weight = 1.0,
                         .ce_weight = 0.0,
                         .ignore_index = -100,
                         .progress = NULL};
    return o;
}

/* labels [N]: each in [0, V) or ignore_index. */
static hylo_status check_labels(const int32_t *labels, int64_t N, int64_t V, int32_t ignore,
                                hylo_error *err)
{
    for (int64_t r = 0; r < N; r++)
        if (labels[r] != ignore && (labels[r] < 0 || labels[r] >= V))
            return hylo_error_set(err, HYLO_ERR_RANGE,
                                  "label %lld is %d: expected a token id in [0, %lld) or the "
                                  "ignore index %d",
                                  (long long)r, labels[r], (long long)V, ignore);
    return HYLO_OK;
}

/* Row r = b T + t predicts labels[r + 1] when t < T - 1 and that label is not ignored. */
static int64_t target_of(const hylo_kd_plan *p, int64_t r)
{
    if (!p->labels || r % p->T == p->T - 1) return -1;
    int32_t y = p->labels[r + 1];
    return y == p->ignore_index ? -1 : y;
}

/* labels [N] or NULL. den = B (batchmean) or N; M = the rows with a target. */
hylo_status hylo_kd_plan_make(const hylo_kd_options *opt, const int32_t *labels, int64_t N,
                              int64_t V, hylo_kd_plan *plan, hylo_error *err)
{
    const hylo_kd_options o = opt ? *opt : hylo_kd_options_default();
    if (N < 1 || V < 1 || o.batch < 1)
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "empty batch: N = %lld rows, V = %lld, B = %lld (each must be >= 1)",
                              (long long)N, (long long)V, (long long)o.batch);
    if (N % o.batch != 0)
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "N = %lld rows is not a multiple of the batch size B = %lld",
                              (long long)N, (long long)o.batch);
    if (!isfinite(o.temperature) || o.temperature <= 0)
        return hylo_error_set(err, HYLO_ERR_RANGE, "temperature %g: expected a finite tau > 0",
                              o.temperature);
    if (!isfinite(o.kl_weight) || !isfinite(o.ce_weight) || o.kl_weight < 0 || o.ce_weight < 0)
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "weights kl %g, ce %g: expected finite values >= 0", o.kl_weight,
                              o.ce_weight);
    if (o.reduction != HYLO_KL_BATCHMEAN && o.reduction != HYLO_KL_TOKEN_MEAN)
        return hylo_error_set(err, HYLO_ERR_USAGE, "unknown KL reduction %d", (int)o.reduction);
    if (o.ce_weight != 0 && !labels)
        return hylo_error_set(err, HYLO_ERR_USAGE, "ce_weight %g needs labels", o.ce_weight);
    const double tau = o.temperature;
    const double den = o.reduction == HYLO_KL_BATCHMEAN ? (double)o.batch : (double)N;
    *plan = (hylo_kd_plan){.N = N,
                           .V = V,
                           .T = N / o.batch,
                           .inv_tau = 1.0 / tau,
                           .kl_scale = tau * tau / den,
                           .c_kl = o.kl_weight * tau / den,
                           .kl_weight = o.kl_weight,
                           .ce_weight = o.ce_weight,
                           .labels = labels,
                           .ignore_index = o.ignore_index,
                           .progress = o.progress};
    if (!labels) return HYLO_OK;
    hylo_status st = check_labels(labels, N, V, o.ignore_index, err);
    if (st != HYLO_OK) return st;
    for (int64_t r = 0; r < N; r++) plan->targets += target_of(plan, r) >= 0;
    if (plan->targets == 0)
        return hylo_error_set(err, HYLO_ERR_RANGE,
                              "labels give no next-token target (T = %lld tokens per sequence, "
                              "every label after the first of a sequence ignored)",
                              (long long)plan->T);
    plan->c_ce = o.ce_weight / (double)plan->targets;
    return HYLO_OK;
}

/* Row r before its first tile: empty log-sum-exps, its target (or -1), no KL yet. */
void hylo_kd_row_init(hylo_kd_row *row, const hylo_kd_plan *plan, int64_t r)
{
    const hylo_lse empty = {-INFINITY, 0.0};
    *row = (hylo_kd_row){.t = empty, .s = empty, .s1 = empty, .target = target_of(plan, r),
                         .target_logit = -INFINITY};
}

/* rows [n]: sum_r KL_r and sum_r CE_r (rows with a target), in increasing r. */
void hylo_kd_sums_add(hylo_kd_sums *sums, const hylo_kd_row *rows, int64_t n)
{
    for (int64_t i = 0; i < n; i++) {
        sums->kl += rows[i].kl;
        if (rows[i].target >= 0) sums->ce += hylo_kd_row_ce(&rows[i]);
    }
}

/* A term of weight 0 is left out, so that 0 * +Inf never makes a NaN. */
void hylo_kd_finish(const hylo_kd_plan *plan, const hylo_kd_sums *sums, hylo_kd_result *out)
{
    out->kl = plan->kl_scale * sums->kl;
    out->targets = plan->targets;
    out->ce = plan->targets > 0 ? sums->ce / (double)plan->targets : 0.0;
    out->loss = (plan->kl_weight != 0 ? plan->kl_weight * out->kl : 0.0) +
                (plan->ce_weight != 0 ? plan->ce_weight * out->ce : 0.0);
}
