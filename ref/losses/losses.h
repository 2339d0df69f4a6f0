/* losses.h: what the three forms of the distillation loss share (internal, not public API):
 * the checked options of one call, the per-row online log-sum-exp and KL/CE kernel applied to
 * one vocabulary tile at a time, and the logit and gradient products of the hidden-state forms.
 * The formulas are those of hylo.h "Distillation losses". */
#ifndef HYLO_LOSSES_H
#define HYLO_LOSSES_H

#include <stdbool.h>
#include <stdint.h>

#include "hylo.h"

/* Loops with less work than this (multiply-adds, logits) run on one thread: starting threads
 * and meeting at barriers would cost more, most of all on a busy machine. */
#define HYLO_KD_PARALLEL_MIN 65536

/* The checked options of one call and the constants of its loss and gradient. */
typedef struct {
    int64_t N, V, T;          /* rows, vocabulary, tokens per sequence (N = B T)             */
    double inv_tau;           /* 1 / tau: a = z / tau is computed as z * inv_tau             */
    double kl_scale;          /* tau^2 / den: KL = kl_scale sum_r KL_r                       */
    double c_kl;              /* kl_weight tau / den: the factor of (p_S - p_T) in dL/dz_S   */
    double c_ce;              /* ce_weight / M: the factor of (softmax(z_S) - onehot(y))     */
    double kl_weight, ce_weight;
    const int32_t *labels;    /* [N] or NULL                                                 */
    int32_t ignore_index;
    int64_t targets;          /* M                                                           */
    const char *progress;
} hylo_kd_plan;

/* Checks the options, sizes and labels (see hylo.h for each error) and fills *plan. */
hylo_status hylo_kd_plan_make(const hylo_kd_options *opt, const int32_t *labels, int64_t N,
                              int64_t V, hylo_kd_plan *plan, hylo_error *err);

/* Online log-sum-exp: log sum_i exp(x_i) = max + log(sum), sum = sum_i exp(x_i - max).
 * Nothing seen yet (or only -Inf): max = -Inf, sum = 0. */
typedef struct {
    double max, sum;
} hylo_lse;

/* The state of one row while its vocabulary streams past in tiles. */
typedef struct {
    hylo_lse t, s;         /* of a_T = z_T / tau and a_S = z_S / tau                          */
    hylo_lse s1;           /* of z_S (the CE softmax, tau 1); used when the row has a target  */
    int64_t target;        /* y_r, or -1                                                      */
    double target_logit;   /* z_S[y_r], seen by pass 1                                        */
    double lse_t, lse_s, lse_s1; /* the finished log-sum-exps, set between the passes         */
    double kl;             /* sum_v p_T (log p_T - log p_S), added up by pass 2               */
} hylo_kd_row;

void hylo_kd_row_init(hylo_kd_row *row, const hylo_kd_plan *plan, int64_t r);
/* Pass 1 over vocabulary entries v0 .. v0 + n - 1 of the row: zs, zt [n]. */
void hylo_kd_row_scan(hylo_kd_row *row, const hylo_kd_plan *plan, const float *zs,
                      const float *zt, int64_t v0, int64_t n);
/* Between the passes: the log-sum-exps of the whole row. */
void hylo_kd_row_close(hylo_kd_row *row);
/* Pass 2 over the same entries: adds their KL terms to row->kl and, when g is not NULL, writes
 * g [n] = dL/dz_S of them (g may be zs itself: each entry is read before it is written). */
void hylo_kd_row_grad(hylo_kd_row *row, const hylo_kd_plan *plan, const float *zs,
                      const float *zt, int64_t v0, int64_t n, float *g);
/* CE of a row with a target: logsumexp(z_S) - z_S[y] (+Inf when z_S[y] = -Inf). */
double hylo_kd_row_ce(const hylo_kd_row *row);

/* Sums over rows, added in row order by every form so that they round alike. */
typedef struct {
    double kl, ce;
} hylo_kd_sums;

/* Adds the rows' KL and CE into sums in row order. */
void hylo_kd_sums_add(hylo_kd_sums *sums, const hylo_kd_row *rows, int64_t n);
void hylo_kd_finish(const hylo_kd_plan *plan, const hylo_kd_sums *sums, hylo_kd_result *out);

/* Both passes over whole rows r0 .. r0 + n - 1 of zs, zt [n, V], one row per thread;
 * grad [n, V] or NULL (it may be zs). Adds into sums in row order. */
hylo_status hylo_kd_rows(const hylo_kd_plan *plan, const float *zs, const float *zt, int64_t r0,
                         int64_t n, float *grad, hylo_kd_sums *sums, hylo_error *err);

/* The hidden-state forms: both sides finite, D >= 1, and |z| <= FLT_MAX for every logit. */
hylo_status hylo_kd_check_sides(const hylo_kd_side *student, const hylo_kd_side *teacher,
                                int64_t N, int64_t V, hylo_error *err);

/* Logits of a tile: z [C, n] = fp32(h [C, D] W [n, D]^T), each z[c, j] = sum_d h[c,d] W[j,d]
 * accumulated in double from 0 in increasing d: the sums hylo_ref_linear makes, in its order,
 * hence the same bits. wt [D, n] and acc [C, n] are scratch. */
void hylo_kd_logits_tile(const float *h, const float *W, int64_t C, int64_t n, int64_t D,
                         double *wt, double *acc, float *z);

/* Gradient of a tile into the hidden states and the head (double accumulators):
 *   dh [C, D] += G [C, n] W [n, D]      dh[c, d] += sum_j G[c, j] W[j, d]   (j increasing)
 *   dW [n, D] += G^T h [C, D]           dW[j, d] += sum_c G[c, j] h[c, d]   (c increasing)
 * Either output may be NULL. */
void hylo_kd_backprop_tile(const float *G, const float *h, const float *W, int64_t C, int64_t n,
                           int64_t D, double *dh, double *dW);

#endif
