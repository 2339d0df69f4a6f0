/* test_losses.c: the distillation losses (spec sec. 8) against hand-computed closed forms,
 * central finite differences and one another: full, chunked and logit-free KD, and the
 * Enhanced ILD.
 *
 * Finite differences: the losses return double values computed in double from fp32 inputs.
 * Inputs are dyadic (k / 2^q, few bits), so that x +- h with h = 2^-10 is exact in fp32 and the
 * perturbed loss is the exact function evaluated in double; the central difference then errs by
 * h^2 / 6 |f'''| ~ 2e-7 relative to the gradient (its third derivative is of the gradient's
 * size for these O(1) logits), and the fp32 gradient itself by 2^-24 ~ 6e-8. Hence the bound
 * 1e-6 x max|grad| used throughout. */
#include <float.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "losses/losses.h"
#include "testutil.h"

static const double FD_STEP = 0x1p-10;
static const double FD_TOL = 1e-6;

static float *fvec(size_t n)
{
    float *x = calloc(n ? n : 1, sizeof *x);
    ck_assert_ptr_nonnull(x);
    return x;
}

/* x [n] = step * k, k uniform in [-range, range]. */
static void fill_dyadic(hylo_test_rng *rng, float *x, size_t n, int range, double step)
{
    for (size_t i = 0; i < n; i++) {
        int k = (int)floor(hylo_test_uniform(rng) * (2 * range + 1)) - range;
        x[i] = (float)(step * k);
    }
}

static hylo_kd_result kd(const float *zs, const float *zt, const int32_t *labels, int64_t N,
                         int64_t V, const hylo_kd_options *opt, float *grad)
{
    hylo_kd_result r;
    hylo_error err = {0};
    ck_assert_ok(hylo_kd_loss(zs, zt, labels, N, V, opt, &r, grad, &err), &err);
    return r;
}

/* Fails unless |a - b| <= tol (both finite). */
static void expect_close(double a, double b, double tol, const char *what)
{
    ck_assert_msg(isfinite(a) && fabs(a - b) <= tol, "%s: %.17g vs %.17g (tol %.1e)", what, a, b,
                  tol);
}

static void expect_all_finite(const float *x, size_t n, const char *what)
{
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(isfinite(x[i]), "%s[%zu] = %g is not finite", what, i, (double)x[i]);
}

static hylo_status kd_status(const float *zs, const float *zt, const int32_t *labels, int64_t N,
                             int64_t V, const hylo_kd_options *opt, hylo_error *err)
{
    hylo_kd_result r;
    return hylo_kd_loss(zs, zt, labels, N, V, opt, &r, NULL, err);
}

/* ---- closed forms ---------------------------------------------------------------------------- */

START_TEST(kl_two_and_three_class_closed_forms)
{
    /* Two classes, no temperature, B = 1. Teacher logits (0, 1): p_T = (1/(1+e), e/(1+e)) =
     * (0.268941, 0.731059); student (0, 0): p_S = (1/2, 1/2).
     *   KL = sum p_T ln(2 p_T) = 0.268941 ln 0.537883 + 0.731059 ln 1.462117
     *      = -0.166774 + 0.277718 = 0.110944
     *   grad = p_S - p_T = (0.231059, -0.231059)
     * The value is compared with the same closed form evaluated by libm: both are double
     * evaluations a few ulps apart (1e-15); the gradient is stored in fp32 (2^-24 relative). */
    const float zs2[2] = {0, 0}, zt2[2] = {0, 1};
    float g2[2];
    const double e = exp(1.0), p0 = 1 / (1 + e), p1 = e / (1 + e);
    hylo_kd_result r = kd(zs2, zt2, NULL, 1, 2, NULL, g2);
    expect_close(r.kl, p0 * log(2 * p0) + p1 * log(2 * p1), 1e-15, "2-class KL");
    expect_close(r.kl, 0.110944, 1e-6, "2-class KL (hand value)");
    expect_close(r.loss, r.kl, 0, "loss = kl with the default weights");
    expect_close(g2[0], 0.5 - p0, 1e-7, "2-class grad 0");
    expect_close(g2[1], 0.5 - p1, 1e-7, "2-class grad 1");

    /* Three classes at tau = 2: teacher (0, 2, 4) / 2 = (0, 1, 2), p_T = (1, e, e^2) / (1 + e +
     * e^2) = (0.090031, 0.244728, 0.665241); student uniform (1, 1, 1), p_S = 1/3.
     *   KL = tau^2 sum p_T ln(3 p_T) = 4 x 0.266217 = 1.064867
     *   grad = tau (p_S - p_T) = 2 (1/3 - p_T) = (0.486606, 0.177210, -0.663815) */
    const float zs3[3] = {1, 1, 1}, zt3[3] = {0, 2, 4};
    float g3[3];
    hylo_kd_options opt = hylo_kd_options_default();
    opt.temperature = 2;
    r = kd(zs3, zt3, NULL, 1, 3, &opt, g3);
    const double Z = 1 + e + e * e, p[3] = {1 / Z, e / Z, e * e / Z};
    double want = 0;
    for (int i = 0; i < 3; i++) want += 4 * p[i] * log(3 * p[i]);
    expect_close(r.kl, want, 1e-14, "3-class KL at tau 2"); /* a few ulps of 1.06 */
    expect_close(r.kl, 1.064867, 1e-6, "3-class KL (hand value)");
    const double hand[3] = {0.486606, 0.177210, -0.663815};
    for (int i = 0; i < 3; i++) {
        expect_close(g3[i], 2 * (1.0 / 3 - p[i]), 1e-7, "3-class grad");
        expect_close(g3[i], hand[i], 1e-6, "3-class grad (hand value)");
    }

    /* Two sequences of two tokens, every row the 2-class case: batchmean divides the sum of 4
     * row KLs by B = 2, token mean by N = 4; the gradients by the same. */
    const float zs4[8] = {0, 0, 0, 0, 0, 0, 0, 0}, zt4[8] = {0, 1, 0, 1, 0, 1, 0, 1};
    float g4[8];
    opt = hylo_kd_options_default();
    opt.batch = 2;
    r = kd(zs4, zt4, NULL, 4, 2, &opt, g4);
    expect_close(r.kl, 2 * 0.110944071671727, 1e-14, "batchmean");
    expect_close(g4[7], (0.5 - p1) / 2, 1e-7, "batchmean grad");
    opt.reduction = HYLO_KL_TOKEN_MEAN;
    r = kd(zs4, zt4, NULL, 4, 2, &opt, g4);
    expect_close(r.kl, 0.110944071671727, 1e-14, "token mean");
    expect_close(g4[7], (0.5 - p1) / 4, 1e-7, "token mean grad");
}
END_TEST

START_TEST(kl_is_positive_and_zero_only_for_equal_distributions)
{
    enum { N = 16, V = 50 };
    hylo_test_rng rng = {5};
    float *zs = fvec(N * V), *zt = fvec(N * V), *g = fvec(N * V);
    fill_dyadic(&rng, zs, N * V, 256, 1.0 / 64);
    fill_dyadic(&rng, zt, N * V, 256, 1.0 / 64);
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = 4;
    for (int r = 0; r < N; r++) /* every single row */
        ck_assert_double_gt(kd(zs + r * V, zt + r * V, NULL, 1, V, NULL, NULL).kl, 1e-3);
    ck_assert_double_gt(kd(zs, zt, NULL, N, V, &opt, NULL).kl, 1e-2);
    /* identical logits: the same double operations on both sides, so exactly 0 */
    hylo_kd_result r = kd(zt, zt, NULL, N, V, &opt, g);
    ck_assert_msg(r.kl == 0.0 && r.loss == 0.0, "KL(p || p) = %.3e", r.kl);
    for (int i = 0; i < N * V; i++) ck_assert_msg(g[i] == 0.0f, "grad %d = %g", i, (double)g[i]);
    /* the same distributions from logits shifted by a constant per row (exact in fp32 for these
     * dyadic values): 0 up to the rounding of the log-sum-exps, a few 1e-16 per row */
    for (int i = 0; i < N * V; i++) zs[i] = zt[i] + (float)(i / V) - 7.5f;
    r = kd(zs, zt, NULL, N, V, &opt, g);
    ck_assert_msg(fabs(r.kl) < 1e-14, "shifted logits: KL %.3e", r.kl);
    for (int i = 0; i < N * V; i++) ck_assert_msg(fabs(g[i]) < 1e-15, "grad %d = %g", i, g[i]);
    free(zs);
    free(zt);
    free(g);
}
END_TEST

/* ---- gradients against central differences --------------------------------------------------- */

/* max_v |g - (L(z + h e_v) - L(z - h e_v)) / 2h| / max |g| over every student logit. */
static double kd_fd_error(float *zs, const float *zt, const int32_t *labels, int64_t N,
                          int64_t V, const hylo_kd_options *opt)
{
    float *g = fvec((size_t)(N * V));
    kd(zs, zt, labels, N, V, opt, g);
    double worst = 0, scale = 0;
    for (int64_t i = 0; i < N * V; i++) {
        const float z = zs[i];
        zs[i] = (float)(z + FD_STEP);
        const double up = kd(zs, zt, labels, N, V, opt, NULL).loss;
        zs[i] = (float)(z - FD_STEP);
        const double down = kd(zs, zt, labels, N, V, opt, NULL).loss;
        zs[i] = z;
        worst = fmax(worst, fabs(g[i] - (up - down) / (2 * FD_STEP)));
        scale = fmax(scale, fabs(g[i]));
    }
    free(g);
    ck_assert_double_gt(scale, 0);
    return worst / scale;
}

START_TEST(kd_gradient_matches_central_differences)
{
    enum { B = 2, T = 3, N = B * T, V = 7 };
    hylo_test_rng rng = {17};
    float zs[N * V], zt[N * V];
    fill_dyadic(&rng, zs, N * V, 192, 1.0 / 64); /* |z| <= 3 */
    fill_dyadic(&rng, zt, N * V, 192, 1.0 / 64);
    const int32_t labels[N] = {3, 6, -100, 0, 2, 5};
    struct {
        double tau, kl, ce;
        hylo_kl_reduction red;
    } cases[] = {
        {1.0, 1.0, 0.0, HYLO_KL_BATCHMEAN},  {2.5, 0.7, 0.3, HYLO_KL_TOKEN_MEAN},
        {0.75, 1.0, 1.0, HYLO_KL_BATCHMEAN}, {1.5, 0.0, 1.0, HYLO_KL_BATCHMEAN},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hylo_kd_options opt = hylo_kd_options_default();
        opt.batch = B;
        opt.temperature = cases[c].tau;
        opt.kl_weight = cases[c].kl;
        opt.ce_weight = cases[c].ce;
        opt.reduction = cases[c].red;
        const double rel = kd_fd_error(zs, zt, cases[c].ce != 0 ? labels : NULL, N, V, &opt);
        ck_assert_msg(rel <= FD_TOL, "case %zu: FD relative error %.3e", c, rel);
    }
}
END_TEST

/* ---- cross-entropy and labels ---------------------------------------------------------------- */

START_TEST(ce_shifts_labels_and_skips_ignored)
{
    /* Two sequences of 3 tokens. Row r = 3b + t predicts labels[r + 1] inside its sequence:
     * row 0 -> 4, row 1 -> ignored, row 2 -> none (last token), row 3 -> 2, row 4 -> 3,
     * row 5 -> none. CE = mean over rows 0, 3, 4 of lse(z_S[r]) - z_S[r, y]. */
    enum { N = 6, V = 5 };
    hylo_test_rng rng = {23};
    float zs[N * V], zt[N * V], g[N * V];
    hylo_test_fill_normal(&rng, zs, N * V, 2.0);
    hylo_test_fill_normal(&rng, zt, N * V, 2.0);
    const int32_t labels[N] = {1, 4, -100, 0, 2, 3};
    const int rows[3] = {0, 3, 4}, ys[3] = {4, 2, 3};
    double want = 0;
    for (int k = 0; k < 3; k++) {
        double s = 0;
        for (int v = 0; v < V; v++) s += exp((double)zs[rows[k] * V + v]);
        want += (log(s) - zs[rows[k] * V + ys[k]]) / 3;
    }
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = 2;
    opt.kl_weight = 0;
    opt.ce_weight = 1;
    hylo_kd_result r = kd(zs, zt, labels, N, V, &opt, g);
    /* a direct double evaluation with another summation order: a few ulps */
    expect_close(r.ce, want, 1e-14, "CE");
    expect_close(r.loss, want, 1e-14, "loss = CE");
    ck_assert_int_eq(r.targets, 3);
    /* rows without a target get no gradient from CE; rows with one get (softmax - onehot)/M */
    for (int v = 0; v < V; v++) {
        ck_assert_float_eq(g[1 * V + v], 0.0f);
        ck_assert_float_eq(g[2 * V + v], 0.0f);
        ck_assert_float_eq(g[5 * V + v], 0.0f);
    }
    double s = 0;
    for (int v = 0; v < V; v++) s += exp((double)zs[v]);
    expect_close(g[4], (exp((double)zs[4]) / s - 1) / 3, 1e-7, "CE grad at the target");
    /* the default ignore index is -100; another one can be chosen */
    int32_t other[N] = {1, 4, 7, 0, 2, 3};
    opt.ignore_index = 7;
    expect_close(kd(zs, zt, other, N, V, &opt, NULL).ce, want, 1e-14, "ignore_index 7");
    /* ce is reported alongside the KL even at weight 0, and the loss is then the KL alone */
    opt = hylo_kd_options_default();
    opt.batch = 2;
    r = kd(zs, zt, labels, N, V, &opt, NULL);
    expect_close(r.ce, want, 1e-14, "CE at weight 0");
    expect_close(r.loss, r.kl, 0, "loss without CE");
}
END_TEST

START_TEST(labels_are_checked)
{
    enum { N = 4, V = 3 };
    const float z[N * V] = {0};
    hylo_error err = {0};
    hylo_kd_options opt = hylo_kd_options_default();
    const int32_t bad[N] = {0, 1, 3, 2};
    ck_assert_int_eq(kd_status(z, z, bad, N, V, &opt, &err), HYLO_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(err.message, "label 2 is 3"));
    const int32_t negative[N] = {0, -5, 1, 2};
    ck_assert_int_eq(kd_status(z, z, negative, N, V, &opt, &err), HYLO_ERR_RANGE);
    const int32_t ignored[N] = {0, -100, -100, -100};
    ck_assert_int_eq(kd_status(z, z, ignored, N, V, &opt, &err), HYLO_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(err.message, "no next-token target"));
    const int32_t fine[N] = {0, 1, 2, 0};
    opt.batch = N; /* T = 1: no token has a next one */
    ck_assert_int_eq(kd_status(z, z, fine, N, V, &opt, &err), HYLO_ERR_RANGE);
    opt.batch = 1;
    opt.ce_weight = 1;
    ck_assert_int_eq(kd_status(z, z, NULL, N, V, &opt, &err), HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "needs labels"));
    ck_assert_int_eq(kd_status(z, z, fine, N, V, &opt, &err), HYLO_OK);
}
END_TEST

/* ---- masks, extremes and errors -------------------------------------------------------------- */

START_TEST(masked_entries_follow_the_documented_rules)
{
    const float inf = INFINITY;
    float g[4], g3[3];
    /* -Inf at the same index in both: that entry adds nothing and gets no gradient; the rest
     * equals the distribution over the other entries (identical arithmetic up to the order of
     * the sums: 1e-15). */
    const float zs[4] = {0.5f, -1, -inf, 2}, zt[4] = {1, 0.25f, -inf, -3};
    const float zs3[3] = {0.5f, -1, 2}, zt3[3] = {1, 0.25f, -3};
    hylo_kd_result r = kd(zs, zt, NULL, 1, 4, NULL, g);
    hylo_kd_result r3 = kd(zs3, zt3, NULL, 1, 3, NULL, g3);
    expect_close(r.kl, r3.kl, 1e-15, "both -Inf");
    ck_assert_float_eq(g[2], 0.0f);
    expect_close(g[3], g3[2], 1e-7, "both -Inf, grad");
    /* -Inf in the teacher only: p_T = 0 there, the term is 0 and the gradient is p_S */
    const float zt_masked[4] = {1, 0.25f, -inf, -3};
    const float zs_open[4] = {0.5f, -1, 0, 2};
    r = kd(zs_open, zt_masked, NULL, 1, 4, NULL, g);
    ck_assert(isfinite(r.kl) && r.kl > 0);
    double s = 0;
    for (int v = 0; v < 4; v++) s += exp((double)zs_open[v]);
    expect_close(g[2], 1 / s, 1e-7, "teacher -Inf: grad = p_S");
    /* -Inf in the student where the teacher has mass: KL = +Inf, gradient finite, p_S = 0 there */
    const float zs_masked[4] = {0.5f, -1, -inf, 2}, zt_open[4] = {1, 0.25f, 0, -3};
    r = kd(zs_masked, zt_open, NULL, 1, 4, NULL, g);
    ck_assert_msg(isinf(r.kl) && r.kl > 0 && isinf(r.loss), "KL %g, loss %g", r.kl, r.loss);
    expect_all_finite(g, 4, "grad with KL = +Inf");
    s = 0;
    for (int v = 0; v < 4; v++) s += exp((double)zt_open[v]);
    expect_close(g[2], -1 / s, 1e-7, "student -Inf: grad = -p_T");
    /* ... which a zero KL weight leaves out of the loss (no 0 x Inf) */
    const int32_t labels[2] = {0, 1};
    hylo_kd_options opt = hylo_kd_options_default();
    opt.kl_weight = 0;
    opt.ce_weight = 1;
    float zs2[8] = {0.5f, -1, -inf, 2, 0, 0, 0, 0}, zt2[8] = {1, 0.25f, 0, -3, 0, 0, 0, 0};
    float gg[8];
    r = kd(zs2, zt2, labels, 2, 4, &opt, gg);
    ck_assert(isinf(r.kl) && isfinite(r.loss) && r.loss == r.ce);
    expect_all_finite(gg, 8, "grad");
    /* a target whose student logit is -Inf: CE = +Inf, gradient still finite */
    const int32_t to_masked[2] = {0, 2};
    r = kd(zs2, zt2, to_masked, 2, 4, &opt, gg);
    ck_assert(isinf(r.ce) && r.ce > 0 && isinf(r.loss));
    expect_all_finite(gg, 8, "grad with CE = +Inf");
}
END_TEST

START_TEST(huge_logits_stay_finite)
{
    /* Teacher (1e4, -1e4), student (-1e4, 1e4): p_T = (1, e^-2e4 = 0 in double), so
     *   KL = 1 x (log 1 - log e^-2e4) = 2e4 exactly,   grad = p_S - p_T = (-1, 1). */
    const float zs[2] = {-1e4f, 1e4f}, zt[2] = {1e4f, -1e4f};
    float g[2];
    hylo_kd_result r = kd(zs, zt, NULL, 1, 2, NULL, g);
    expect_close(r.kl, 2e4, 0, "KL of opposite certainties");
    ck_assert(g[0] == -1.0f && g[1] == 1.0f);
    /* at tau = 0.25 the scaled logits are +-4e4; a mix of extremes and -Inf, with CE */
    enum { N = 4, V = 6 };
    const float inf = INFINITY;
    const float s[N * V] = {1e4f, -1e4f, 0, 3, -inf, 1e4f,     -1e4f, -1e4f, -1e4f, 5, 6, -inf,
                            0,    0,     0, 0, 0,    -1e4f,    1e4f,  9999,  -1e4f, 1, 2, 3};
    const float t[N * V] = {-1e4f, 1e4f, 1, 2, -inf, -1e4f,    1e4f, 1e4f, -1e4f, -inf, 0, -inf,
                            -1e4f, 0,    0, 0, 1e4f, 0,        -1e4f, 1e4f, 0, 0, 0, 0};
    const int32_t labels[N] = {0, 1, 3, 2};
    float gg[N * V];
    hylo_kd_options opt = hylo_kd_options_default();
    opt.temperature = 0.25;
    opt.ce_weight = 0.5;
    r = kd(s, t, labels, N, V, &opt, gg);
    ck_assert_msg(isfinite(r.kl) && isfinite(r.ce) && isfinite(r.loss), "kl %g ce %g", r.kl,
                  r.ce);
    /* row 0 alone: p_T ~ onehot(1), log p_S[1] = -4e4 - (4e4 + log 2), times tau^2 = 1/16 */
    ck_assert_double_gt(r.kl, 5000 + log(2.0) / 16 - 1e-9);
    expect_all_finite(gg, N * V, "grad");
}
END_TEST

START_TEST(bad_logits_and_empty_batches_are_errors)
{
    const float ok[3] = {0, 1, 2};
    const float nan_row[3] = {0, NAN, 2}, pinf_row[3] = {0, INFINITY, 2};
    const float masked[3] = {-INFINITY, -INFINITY, -INFINITY};
    hylo_error err = {0};
    ck_assert_int_eq(kd_status(nan_row, ok, NULL, 1, 3, NULL, &err), HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "student logits: row 0, entry 1 is NaN"));
    ck_assert_int_eq(kd_status(ok, pinf_row, NULL, 1, 3, NULL, &err), HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "teacher logits: row 0, entry 1 is +Inf"));
    ck_assert_int_eq(kd_status(ok, masked, NULL, 1, 3, NULL, &err), HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "-Inf"));
    ck_assert_int_eq(kd_status(ok, ok, NULL, 0, 3, NULL, &err), HYLO_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(err.message, "empty batch"));
    ck_assert_int_eq(kd_status(ok, ok, NULL, 1, 0, NULL, &err), HYLO_ERR_RANGE);
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = 0;
    ck_assert_int_eq(kd_status(ok, ok, NULL, 1, 3, &opt, &err), HYLO_ERR_RANGE);
    opt.batch = 2;
    ck_assert_int_eq(kd_status(ok, ok, NULL, 1, 3, &opt, &err), HYLO_ERR_RANGE);
    ck_assert_ptr_nonnull(strstr(err.message, "not a multiple"));
    const double bad_tau[4] = {0, -1, INFINITY, NAN};
    for (int i = 0; i < 4; i++) {
        opt = hylo_kd_options_default();
        opt.temperature = bad_tau[i];
        ck_assert_int_eq(kd_status(ok, ok, NULL, 1, 3, &opt, &err), HYLO_ERR_RANGE);
    }
    opt = hylo_kd_options_default();
    opt.kl_weight = -1;
    ck_assert_int_eq(kd_status(ok, ok, NULL, 1, 3, &opt, &err), HYLO_ERR_RANGE);
    opt.kl_weight = NAN;
    ck_assert_int_eq(kd_status(ok, ok, NULL, 1, 3, &opt, &err), HYLO_ERR_RANGE);
    ck_assert_int_eq(kd_status(NULL, ok, NULL, 1, 3, NULL, &err), HYLO_ERR_USAGE);
}
END_TEST

/* ---- the three forms agree ------------------------------------------------------------------- */

typedef struct {
    int64_t N, V, Ds, Dt;
    float *hs, *ws, *ht, *wt;      /* [N, Ds], [V, Ds], [N, Dt], [V, Dt]          */
    float *zs, *zt, *g;            /* [N, V] full-form logits and dL/dz_S          */
    float *dh, *dw;                /* [N, Ds], [V, Ds] the chain rule from g       */
    hylo_kd_result full;
} kd_problem;

/* dh = G W_S, dW = G^T h_S, summed in double by the test itself. */
static void chain_rule(kd_problem *p)
{
    for (int64_t n = 0; n < p->N; n++)
        for (int64_t d = 0; d < p->Ds; d++) {
            double acc = 0;
            for (int64_t v = 0; v < p->V; v++)
                acc += (double)p->g[n * p->V + v] * p->ws[v * p->Ds + d];
            p->dh[n * p->Ds + d] = (float)acc;
        }
    for (int64_t v = 0; v < p->V; v++)
        for (int64_t d = 0; d < p->Ds; d++) {
            double acc = 0;
            for (int64_t n = 0; n < p->N; n++)
                acc += (double)p->g[n * p->V + v] * p->hs[n * p->Ds + d];
            p->dw[v * p->Ds + d] = (float)acc;
        }
}

/* Random hidden states and heads; the full form on their logits (hylo_ref_linear, the sums of
 * hylo_lm_head) and its gradient carried back by chain_rule. */
static kd_problem make_problem(int64_t N, int64_t V, int64_t Ds, int64_t Dt, uint64_t seed,
                               const int32_t *labels, const hylo_kd_options *opt)
{
    kd_problem p = {.N = N, .V = V, .Ds = Ds, .Dt = Dt};
    hylo_test_rng rng = {seed};
    p.hs = fvec((size_t)(N * Ds));
    p.ws = fvec((size_t)(V * Ds));
    p.ht = fvec((size_t)(N * Dt));
    p.wt = fvec((size_t)(V * Dt));
    p.zs = fvec((size_t)(N * V));
    p.zt = fvec((size_t)(N * V));
    p.g = fvec((size_t)(N * V));
    p.dh = fvec((size_t)(N * Ds));
    p.dw = fvec((size_t)(V * Ds));
    hylo_test_fill_normal(&rng, p.hs, (size_t)(N * Ds), 1.0);
    hylo_test_fill_normal(&rng, p.ws, (size_t)(V * Ds), 0.7);
    hylo_test_fill_normal(&rng, p.ht, (size_t)(N * Dt), 1.0);
    hylo_test_fill_normal(&rng, p.wt, (size_t)(V * Dt), 0.6);
    hylo_ref_linear(p.hs, p.ws, NULL, p.zs, N, Ds, V);
    hylo_ref_linear(p.ht, p.wt, NULL, p.zt, N, Dt, V);
    p.full = kd(p.zs, p.zt, labels, N, V, opt, p.g);
    chain_rule(&p);
    return p;
}

static void free_problem(kd_problem *p)
{
    free(p->hs);
    free(p->ws);
    free(p->ht);
    free(p->wt);
    free(p->zs);
    free(p->zt);
    free(p->g);
    free(p->dh);
    free(p->dw);
}

/* The hidden-state forms see the full form's logits bit for bit, so their row KLs differ only
 * in the order of additions within a row (logit-free: tile by tile): a few ulps of the 1e0
 * loss. Their gradients equal G up to the fp32 rounding of G and of the products, each 2^-24
 * relative, so NMSE <= ~1e-14 (observed ~1e-16). */
static const double VALUE_TOL = 1e-13, GRAD_NMSE = 1e-13;

static void expect_agreement(const kd_problem *p, const hylo_kd_result *r, const float *dh,
                             const float *dw, const char *what)
{
    ck_assert_msg(fabs(r->loss - p->full.loss) <= VALUE_TOL * fabs(p->full.loss),
                  "%s: loss %.17g vs full %.17g", what, r->loss, p->full.loss);
    ck_assert_msg(fabs(r->kl - p->full.kl) <= VALUE_TOL * fabs(p->full.kl), "%s: kl", what);
    ck_assert_msg(fabs(r->ce - p->full.ce) <= VALUE_TOL * fabs(p->full.ce), "%s: ce", what);
    ck_assert_nmse(dh, p->dh, (size_t)(p->N * p->Ds), GRAD_NMSE, what);
    ck_assert_nmse(dw, p->dw, (size_t)(p->V * p->Ds), GRAD_NMSE, what);
}

START_TEST(chunked_and_logit_free_equal_the_full_form)
{
    /* N = 36 rows (3 sequences of 12), V = 101 (prime: no tile divides it), D_S 8 != D_T 12,
     * temperature, token mean, KL and CE with an ignored label. */
    enum { N = 36, V = 101, Ds = 8, Dt = 12 };
    int32_t labels[N];
    for (int i = 0; i < N; i++) labels[i] = (i * 37 + 11) % V;
    labels[7] = -100;
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = 3;
    opt.temperature = 1.7;
    opt.reduction = HYLO_KL_TOKEN_MEAN;
    opt.ce_weight = 0.5;
    kd_problem p = make_problem(N, V, Ds, Dt, 41, labels, &opt);
    hylo_kd_side s = {p.hs, p.ws, Ds}, t = {p.ht, p.wt, Dt};
    float *dh = fvec(N * Ds), *dw = fvec(V * Ds);
    hylo_error err = {0};
    hylo_kd_result r;
    char what[64];
    const int64_t chunks[] = {1, 5, 12, 36, 50};
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++) {
        ck_assert_ok(hylo_kd_loss_chunked(&s, &t, labels, N, V, chunks[c], &opt, &r, dh, dw,
                                          &err), &err);
        snprintf(what, sizeof what, "chunked, chunk %lld", (long long)chunks[c]);
        expect_agreement(&p, &r, dh, dw, what);
        /* the same logits, row kernel and order of additions as the full form: equal bits */
        ck_assert_msg(r.loss == p.full.loss, "%s: loss %.17g != %.17g", what, r.loss,
                      p.full.loss);
    }
    const int64_t tiles[][2] = {{1, 1}, {5, 7}, {7, 32}, {36, 101}, {50, 200}, {16, 100}, {3, 1}};
    for (size_t c = 0; c < sizeof tiles / sizeof tiles[0]; c++) {
        ck_assert_ok(hylo_kd_loss_logit_free(&s, &t, labels, N, V, tiles[c][0], tiles[c][1],
                                             &opt, &r, dh, dw, &err), &err);
        snprintf(what, sizeof what, "logit-free, chunk %lld, tile %lld", (long long)tiles[c][0],
                 (long long)tiles[c][1]);
        expect_agreement(&p, &r, dh, dw, what);
    }
    /* values alone, and one gradient without the other */
    ck_assert_ok(hylo_kd_loss_logit_free(&s, &t, labels, N, V, 4, 9, &opt, &r, NULL, NULL, &err),
                 &err);
    ck_assert(fabs(r.loss - p.full.loss) <= VALUE_TOL * p.full.loss);
    memset(dw, 0, V * Ds * sizeof(float));
    ck_assert_ok(hylo_kd_loss_logit_free(&s, &t, labels, N, V, 4, 9, &opt, &r, NULL, dw, &err),
                 &err);
    ck_assert_nmse(dw, p.dw, V * Ds, GRAD_NMSE, "logit-free, head gradient only");
    ck_assert_ok(hylo_kd_loss_chunked(&s, &t, labels, N, V, 7, &opt, &r, dh, NULL, &err), &err);
    ck_assert_nmse(dh, p.dh, N * Ds, GRAD_NMSE, "chunked, hidden gradient only");
    free(dh);
    free(dw);
    free_problem(&p);
}
END_TEST

START_TEST(logit_free_gradients_match_central_differences)
{
    /* Entries k/8, |k| <= 16, D <= 8: every logit sum_d h W is a multiple of 2^-6 below 32, and
     * with one entry moved by 2^-10 a multiple of 2^-13 below 33: exact in fp32, so the loss
     * seen by the difference is the exact function (see the top of the file). */
    enum { B = 2, T = 5, N = B * T, V = 13, Ds = 4, Dt = 6 };
    hylo_test_rng rng = {3};
    float hs[N * Ds], ws[V * Ds], ht[N * Dt], wt[V * Dt], dh[N * Ds], dw[V * Ds];
    fill_dyadic(&rng, hs, N * Ds, 16, 0.125);
    fill_dyadic(&rng, ws, V * Ds, 16, 0.125);
    fill_dyadic(&rng, ht, N * Dt, 16, 0.125);
    fill_dyadic(&rng, wt, V * Dt, 16, 0.125);
    const int32_t labels[N] = {1, 2, 3, -100, 5, 6, 7, 8, 9, 10};
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = B;
    opt.temperature = 2.0;
    opt.ce_weight = 0.25;
    hylo_kd_side s = {hs, ws, Ds}, t = {ht, wt, Dt};
    hylo_error err = {0};
    hylo_kd_result r;
    ck_assert_ok(hylo_kd_loss_logit_free(&s, &t, labels, N, V, 3, 5, &opt, &r, dh, dw, &err),
                 &err);
    float *params[2] = {hs, ws};
    const float *grads[2] = {dh, dw};
    const int counts[2] = {N * Ds, V * Ds};
    for (int k = 0; k < 2; k++) {
        double worst = 0, scale = 0;
        for (int i = 0; i < counts[k]; i++) {
            const float x = params[k][i];
            double loss[2];
            for (int side = 0; side < 2; side++) {
                params[k][i] = (float)(x + (side ? -FD_STEP : FD_STEP));
                ck_assert_ok(hylo_kd_loss_logit_free(&s, &t, labels, N, V, 3, 5, &opt, &r, NULL,
                                                     NULL, &err), &err);
                loss[side] = r.loss;
            }
            params[k][i] = x;
            worst = fmax(worst, fabs(grads[k][i] - (loss[0] - loss[1]) / (2 * FD_STEP)));
            scale = fmax(scale, fabs(grads[k][i]));
        }
        ck_assert_msg(worst <= FD_TOL * scale, "%s: FD error %.3e of max %.3e",
                      k ? "dL/dW_S" : "dL/dh_S", worst, scale);
    }
}
END_TEST

START_TEST(logits_tile_equals_linear_bitwise)
{
    enum { C = 7, n = 19, D = 13 };
    hylo_test_rng rng = {8};
    float h[C * D], W[n * D], z[C * n], want[C * n];
    double wt[D * n], acc[C * n];
    hylo_test_fill_normal(&rng, h, C * D, 1.0);
    hylo_test_fill_normal(&rng, W, n * D, 1.0);
    hylo_kd_logits_tile(h, W, C, n, D, wt, acc, z);
    hylo_ref_linear(h, W, NULL, want, C, D, n);
    ck_assert_mem_eq(z, want, sizeof z);
}
END_TEST

START_TEST(results_do_not_depend_on_the_thread_count)
{
    /* large enough for every loop to run in parallel (HYLO_KD_PARALLEL_MIN) */
    enum { N = 128, V = 1100, Ds = 24, Dt = 20 };
    hylo_kd_options opt = hylo_kd_options_default();
    opt.batch = 2;
    kd_problem p = make_problem(N, V, Ds, Dt, 99, NULL, &opt);
    hylo_kd_side s = {p.hs, p.ws, Ds}, t = {p.ht, p.wt, Dt};
    float *dh[2] = {fvec(N * Ds), fvec(N * Ds)}, *dw[2] = {fvec(V * Ds), fvec(V * Ds)};
    float *g[2] = {fvec(N * V), fvec(N * V)};
    hylo_kd_result r[2], full[2];
    hylo_error err = {0};
    const int threads[2] = {1, 3};
    for (int k = 0; k < 2; k++) {
        omp_set_num_threads(threads[k]);
        ck_assert_ok(hylo_kd_loss_logit_free(&s, &t, NULL, N, V, 128, 600, &opt, &r[k], dh[k],
                                             dw[k], &err), &err);
        full[k] = kd(p.zs, p.zt, NULL, N, V, &opt, g[k]);
    }
    ck_assert(r[0].loss == r[1].loss && full[0].loss == full[1].loss);
    ck_assert_mem_eq(dh[0], dh[1], N * Ds * sizeof(float));
    ck_assert_mem_eq(dw[0], dw[1], V * Ds * sizeof(float));
    ck_assert_mem_eq(g[0], g[1], N * V * sizeof(float));
    for (int k = 0; k < 2; k++) {
        free(dh[k]);
        free(dw[k]);
        free(g[k]);
    }
    free_problem(&p);
}
END_TEST

START_TEST(hidden_state_forms_check_their_inputs)
{
    enum { N = 2, V = 3, D = 2 };
    float h[N * D] = {1, 2, 3, 4}, w[V * D] = {1, 0, 0, 1, 1, 1}, dh[N * D], dw[V * D];
    hylo_kd_side s = {h, w, D}, t = {h, w, D};
    hylo_kd_result r;
    hylo_error err = {0};
    ck_assert_int_eq(hylo_kd_loss_chunked(&s, &t, NULL, N, V, 0, NULL, &r, dh, dw, &err),
                     HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_kd_loss_logit_free(&s, &t, NULL, N, V, 1, 0, NULL, &r, dh, dw, &err),
                     HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_kd_loss_logit_free(&s, &t, NULL, 0, V, 1, 1, NULL, &r, dh, dw, &err),
                     HYLO_ERR_RANGE);
    hylo_kd_side no_dim = {h, w, 0};
    ck_assert_int_eq(hylo_kd_loss_chunked(&no_dim, &t, NULL, N, V, 1, NULL, &r, dh, dw, &err),
                     HYLO_ERR_RANGE);
    hylo_kd_side missing = {NULL, w, D};
    ck_assert_int_eq(hylo_kd_loss_chunked(&s, &missing, NULL, N, V, 1, NULL, &r, dh, dw, &err),
                     HYLO_ERR_USAGE);
    h[3] = NAN;
    ck_assert_int_eq(hylo_kd_loss_logit_free(&s, &t, NULL, N, V, 1, 1, NULL, &r, dh, dw, &err),
                     HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "student: hidden"));
    /* |z| <= ||h|| ||w|| = 3e20 x 2e20 = 6e40 > FLT_MAX ~ 3.4e38: refused before any logit */
    h[3] = 4;
    float big_h[N * D] = {3e20f, 0, 0, 0}, big_w[V * D] = {2e20f, 0, 0, 0, 0, 0};
    hylo_kd_side big = {big_h, big_w, D};
    ck_assert_int_eq(hylo_kd_loss_logit_free(&s, &big, NULL, N, V, 1, 1, NULL, &r, dh, dw, &err),
                     HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "teacher: logits could overflow"));
    ck_assert_ok(hylo_kd_loss_chunked(&s, &t, NULL, N, V, 1, NULL, &r, dh, dw, &err), &err);
    ck_assert(r.kl == 0.0);
}
END_TEST

/* ---- Enhanced ILD ---------------------------------------------------------------------------- */

START_TEST(ild_closed_form_and_zero_difference)
{
    /* Token 0 differs by (3, 4), norm 5; token 1 not at all. mean = (5 + 0) / 2 = 2.5;
     * grad_0 = (3, 4) / (2 x 5) = (0.3, 0.4); grad_1 = 0 (the least-norm subgradient). */
    const float s[4] = {3, 5, 1, 1}, t[4] = {0, 1, 1, 1};
    float g[4];
    double v;
    hylo_error err = {0};
    ck_assert_ok(hylo_ild_distance(s, t, 2, 2, &v, g, &err), &err);
    ck_assert_double_eq(v, 2.5);
    expect_close(g[0], 0.3, 1e-7, "grad");
    expect_close(g[1], 0.4, 1e-7, "grad");
    ck_assert(g[2] == 0.0f && g[3] == 0.0f);
    /* identical tensors: 0 and a zero gradient, no NaN */
    ck_assert_ok(hylo_ild_distance(s, s, 2, 2, &v, g, &err), &err);
    ck_assert(v == 0.0);
    for (int i = 0; i < 4; i++) ck_assert(g[i] == 0.0f);
    /* extremes: differences of 6e38 (beyond fp32) stay finite in double */
    const float big_s[2] = {3e38f, -3e38f}, big_t[2] = {-3e38f, 3e38f};
    ck_assert_ok(hylo_ild_distance(big_s, big_t, 1, 2, &v, g, &err), &err);
    expect_close(v / (6e38 * sqrt(2.0)), 1.0, 1e-7, "huge difference");
    expect_all_finite(g, 2, "grad of a huge difference");
    const float tiny_s[2] = {1e-45f, 0}, tiny_t[2] = {0, 0};
    ck_assert_ok(hylo_ild_distance(tiny_s, tiny_t, 1, 2, &v, g, &err), &err);
    ck_assert(v > 0 && g[0] == 1.0f && g[1] == 0.0f);
}
END_TEST

START_TEST(ild_loss_sums_layers_and_matches_central_differences)
{
    enum { L = 3, T = 5, D = 4, LTD = L * T * D, TD = T * D };
    hylo_test_rng rng = {31};
    float hs[LTD], ht[LTD], as[LTD], at[LTD], fs[TD], ft[TD];
    float gh[LTD], ga[LTD], gf[TD];
    float *all[6] = {hs, ht, as, at, fs, ft};
    const int sizes[6] = {LTD, LTD, LTD, LTD, TD, TD};
    for (int k = 0; k < 6; k++) fill_dyadic(&rng, all[k], (size_t)sizes[k], 128, 1.0 / 32);
    hylo_ild_tensors s = {hs, as, fs}, t = {ht, at, ft};
    hylo_ild_grads g = {gh, ga, gf};
    hylo_ild_result r;
    hylo_error err = {0};
    ck_assert_ok(hylo_ild_loss(&s, &t, L, T, D, &r, &g, &err), &err);
    double sum = 0, v;
    for (int l = 0; l < L; l++) {
        ck_assert_ok(hylo_ild_distance(hs + l * TD, ht + l * TD, T, D, &v, NULL, &err), &err);
        ck_assert(v == r.hidden[l]);
        ck_assert_ok(hylo_ild_distance(as + l * TD, at + l * TD, T, D, &v, NULL, &err), &err);
        ck_assert(v == r.mixer[l]);
        sum += r.hidden[l] + r.mixer[l];
    }
    sum += r.final;
    ck_assert(r.loss == sum && r.loss > 0);
    /* every student entry by central differences (dyadic inputs: exact perturbations) */
    float *params[3] = {hs, as, fs};
    const float *grads[3] = {gh, ga, gf};
    const int counts[3] = {LTD, LTD, TD};
    for (int k = 0; k < 3; k++) {
        double worst = 0, scale = 0;
        for (int i = 0; i < counts[k]; i++) {
            const float x = params[k][i];
            hylo_ild_result up, down;
            params[k][i] = (float)(x + FD_STEP);
            ck_assert_ok(hylo_ild_loss(&s, &t, L, T, D, &up, NULL, &err), &err);
            params[k][i] = (float)(x - FD_STEP);
            ck_assert_ok(hylo_ild_loss(&s, &t, L, T, D, &down, NULL, &err), &err);
            params[k][i] = x;
            worst = fmax(worst, fabs(grads[k][i] - (up.loss - down.loss) / (2 * FD_STEP)));
            scale = fmax(scale, fabs(grads[k][i]));
        }
        ck_assert_msg(worst <= FD_TOL * scale, "tensor %d: FD error %.3e of max %.3e", k, worst,
                      scale);
    }
    /* the teacher against itself: exactly 0 */
    ck_assert_ok(hylo_ild_loss(&t, &t, L, T, D, &r, &g, &err), &err);
    ck_assert(r.loss == 0.0);
    for (int i = 0; i < LTD; i++) ck_assert(gh[i] == 0.0f && ga[i] == 0.0f);
}
END_TEST

START_TEST(ild_errors)
{
    const float x[4] = {1, 2, 3, 4}, bad[4] = {1, INFINITY, 3, 4};
    double v;
    hylo_ild_result r;
    hylo_error err = {0};
    ck_assert_int_eq(hylo_ild_distance(x, x, 0, 2, &v, NULL, &err), HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_ild_distance(x, x, 2, 0, &v, NULL, &err), HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_ild_distance(x, bad, 2, 2, &v, NULL, &err), HYLO_ERR_NUMERIC);
    hylo_ild_tensors s = {x, x, x}, t = {x, bad, x};
    ck_assert_int_eq(hylo_ild_loss(&s, &s, 0, 2, 2, &r, NULL, &err), HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_ild_loss(&s, &s, HYLO_MAX_LAYERS + 1, 2, 2, &r, NULL, &err),
                     HYLO_ERR_RANGE);
    ck_assert_int_eq(hylo_ild_loss(&s, &t, 1, 2, 2, &r, NULL, &err), HYLO_ERR_NUMERIC);
    ck_assert_ptr_nonnull(strstr(err.message, "layer 0"));
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("losses");
    TCase *kd_case = tcase_create("kd");
    tcase_add_test(kd_case, kl_two_and_three_class_closed_forms);
    tcase_add_test(kd_case, kl_is_positive_and_zero_only_for_equal_distributions);
    tcase_add_test(kd_case, kd_gradient_matches_central_differences);
    tcase_add_test(kd_case, ce_shifts_labels_and_skips_ignored);
    tcase_add_test(kd_case, labels_are_checked);
    tcase_add_test(kd_case, masked_entries_follow_the_documented_rules);
    tcase_add_test(kd_case, huge_logits_stay_finite);
    tcase_add_test(kd_case, bad_logits_and_empty_batches_are_errors);
    suite_add_tcase(s, kd_case);
    TCase *forms = tcase_create("memory-bounded");
    tcase_add_test(forms, chunked_and_logit_free_equal_the_full_form);
    tcase_add_test(forms, logit_free_gradients_match_central_differences);
    tcase_add_test(forms, logits_tile_equals_linear_bitwise);
    tcase_add_test(forms, results_do_not_depend_on_the_thread_count);
    tcase_add_test(forms, hidden_state_forms_check_their_inputs);
    suite_add_tcase(s, forms);
    TCase *ild = tcase_create("ild");
    tcase_add_test(ild, ild_closed_form_and_zero_difference);
    tcase_add_test(ild, ild_loss_sums_layers_and_matches_central_differences);
    tcase_add_test(ild, ild_errors);
    suite_add_tcase(s, ild);
    return s;
}

HYLO_TEST_MAIN
