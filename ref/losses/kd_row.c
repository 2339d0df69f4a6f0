/* kd_row.c: the per-row kernel of every form of the distillation loss. A row's vocabulary
 * arrives in tiles (the whole row is one tile for the logits forms); pass 1 runs the
 * log-sum-exps online, pass 2 adds the KL terms and writes the gradient:
 *   lse(a) = m + log sum_v exp(a_v - m),  m = max_v a_v        (online: rescale on a new max)
 *   log p_T = a_T - lse(a_T),  log p_S = a_S - lse(a_S),  a = z / tau
 *   KL_r   = sum_v p_T (log p_T - log p_S)       term 0 where z_T = -Inf, +Inf where only z_S is
 *   dL/dz_S = c_kl (p_S - p_T) + c_ce (softmax(z_S) - [v = y])
 * The KL factor: KL = sum_v p_T log p_T - sum_v p_T log softmax(a_S)_v; the first sum does not
 * depend on z_S, the second (with its sign) has d/da_S = p_S - p_T as sum_v p_T = 1, and
 * da_S/dz_S = 1/tau: d/dz_S [tau^2 KL] = tau (p_S - p_T), so c_kl = kl_weight tau / den.     */
#include <math.h>
#include <stdlib.h>

#include "losses/losses.h"

/* acc <- the log-sum-exp state of acc's values and scale x [n]:
 *   m' = max(m, max_i scale x_i),   s' = s exp(m - m') + sum_i exp(scale x_i - m')
 * A tile of only -Inf leaves acc as it is (this also keeps exp(-Inf - -Inf) out). */
static void lse_add(hylo_lse *acc, const float *x, int64_t n, double scale)
{
    double m = -INFINITY;
    for (int64_t i = 0; i < n; i++) m = scale * x[i] > m ? scale * x[i] : m; /* no NaN here */
    if (m == -INFINITY) return;
    const double new_max = fmax(acc->max, m);
    double s = acc->sum * exp(acc->max - new_max);
    for (int64_t i = 0; i < n; i++) s += exp(scale * x[i] - new_max);
    acc->max = new_max;
    acc->sum = s;
}

/* log sum_i exp(x_i) = max + log(sum); -Inf when nothing finite was seen. */
static double lse_value(const hylo_lse *acc)
{
    return acc->max + log(acc->sum);
}

/* zs, zt [n]: entries v0 .. v0 + n - 1 of the row. */
void hylo_kd_row_scan(hylo_kd_row *row, const hylo_kd_plan *plan, const float *zs,
                      const float *zt, int64_t v0, int64_t n)
{
    lse_add(&row->t, zt, n, plan->inv_tau);
    lse_add(&row->s, zs, n, plan->inv_tau);
    if (row->target < 0) return;
    lse_add(&row->s1, zs, n, 1.0);
    if (row->target >= v0 && row->target < v0 + n) row->target_logit = zs[row->target - v0];
}

/* The row's three log-sum-exps, once every tile has been scanned. */
void hylo_kd_row_close(hylo_kd_row *row)
{
    row->lse_t = lse_value(&row->t);
    row->lse_s = lse_value(&row->s);
    row->lse_s1 = row->target >= 0 ? lse_value(&row->s1) : 0.0;
}

/* zs, zt [n], g [n] or NULL (may be zs): entries v0 .. v0 + n - 1 of the row.
 *   term_v = 0                          where z_T = -Inf  (p_T = 0; 0 log 0 = 0)
 *          = +Inf                       where z_S = -Inf < z_T
 *          = p_T (log p_T - log p_S)    otherwise (p_T may underflow to 0: the term is then 0)
 *   g_v    = c_kl (p_S - p_T) + c_ce (p_S1 - [v = y])      p_S1 = softmax(z_S) at tau 1     */
void hylo_kd_row_grad(hylo_kd_row *row, const hylo_kd_plan *plan, const float *zs,
                      const float *zt, int64_t v0, int64_t n, float *g)
{
    double kl = 0.0;
    for (int64_t i = 0; i < n; i++) {
        const double log_ps = plan->inv_tau * zs[i] - row->lse_s; /* -Inf where z_S = -Inf */
        const double ps = exp(log_ps);
        double pt = 0.0;
        if (zt[i] != -INFINITY) {
            const double log_pt = plan->inv_tau * zt[i] - row->lse_t;
            pt = exp(log_pt);
            kl += zs[i] == -INFINITY ? INFINITY : pt * (log_pt - log_ps);
        }
        if (!g) continue;
        double gv = plan->c_kl * (ps - pt);
        if (row->target >= 0)
            gv += plan->c_ce * (exp(zs[i] - row->lse_s1) - (v0 + i == row->target ? 1.0 : 0.0));
        g[i] = (float)gv;
    }
    row->kl += kl;
}

/* -log softmax(z_S)[y] = lse(z_S) - z_S[y]; +Inf for a masked target (not Inf - Inf). */
double hylo_kd_row_ce(const hylo_kd_row *row)
{
    return row->target_logit == -INFINITY ? INFINITY : row->lse_s1 - row->target_logit;
}

/* zs, zt [n, V], grad [n, V] or NULL: rows r0 .. r0 + n - 1, each one tile wide. */
hylo_status hylo_kd_rows(const hylo_kd_plan *plan, const float *zs, const float *zt, int64_t r0,
                         int64_t n, float *grad, hylo_kd_sums *sums, hylo_error *err)
{
    const int64_t V = plan->V;
    hylo_kd_row *rows = malloc((size_t)n * sizeof *rows);
    if (!rows)
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate the state of %lld rows",
                              (long long)n);
#pragma omp parallel for schedule(dynamic, 4) if (n * V >= HYLO_KD_PARALLEL_MIN)
    for (int64_t i = 0; i < n; i++) {
        const float *s = zs + i * V, *t = zt + i * V;
        hylo_kd_row_init(&rows[i], plan, r0 + i);
        hylo_kd_row_scan(&rows[i], plan, s, t, 0, V);
        hylo_kd_row_close(&rows[i]);
        hylo_kd_row_grad(&rows[i], plan, s, t, 0, V, grad ? grad + i * V : NULL);
    }
    hylo_kd_sums_add(sums, rows, n);
    free(rows);
    return HYLO_OK;
}
