/* test_layers.c: each reference layer against a closed form or an independent formulation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/layers.h"
#include "testutil.h"

START_TEST(linear_matches_hand_computed)
{
    /* y = x W^T + b with x [2, 3], W [2, 3] */
    const float x[6] = {1, 2, 3, -1, 0.5f, 4};
    const float W[6] = {0.5f, -1, 2, 3, 0, -0.25f};
    const float b[2] = {0.125f, -2};
    const float want[4] = {0.125f + 0.5f - 2 + 6, -2 + 3 - 0.75f, 0.125f - 0.5f - 0.5f + 8,
                           -2 - 3 - 1};
    float y[4];
    hylo_ref_linear(x, W, b, y, 2, 3, 2);
    ck_assert_mem_eq(y, want, sizeof want);
}
END_TEST

START_TEST(rmsnorm_closed_form)
{
    /* A constant row c gives w * c / sqrt(c^2 + eps); a row and its multiple give the same
     * output up to eps. */
    const float w[4] = {1, 2, -1, 0.5f};
    const float x[8] = {3, 3, 3, 3, 1, -2, 3, -4};
    float scaled[4], y[8], ys[4];
    hylo_ref_rmsnorm(x, w, y, 2, 4, 1e-5);
    for (int i = 0; i < 4; i++) {
        double want = w[i] * 3.0 / sqrt(9.0 + 1e-5);
        ck_assert_double_eq_tol(y[i], want, 1e-6);
        scaled[i] = 1000.0f * x[4 + i];
    }
    hylo_ref_rmsnorm(scaled, w, ys, 1, 4, 1e-5);
    ck_assert_nmse(ys, y + 4, 4, 1e-12, "rmsnorm scale invariance");
}
END_TEST

static hylo_rope_config llama32_rope(void)
{
    hylo_rope_config r = {0};
    r.type = HYLO_ROPE_LLAMA3;
    r.theta = 500000.0;
    r.factor = 32.0;
    r.low_freq_factor = 1.0;
    r.high_freq_factor = 4.0;
    r.original_max_position = 8192;
    return r;
}

START_TEST(llama3_reference_values)
{
    /* Spec sec. 2: Llama-3.2-1B (hd 64) inverse frequencies. */
    hylo_rope_config r = llama32_rope();
    double f[32], scale;
    hylo_ref_rope_frequencies(&r, 64, f, &scale);
    const double first[4] = {1.0, 0.66360, 0.44037, 0.29223};
    for (int i = 0; i < 4; i++) ck_assert_double_eq_tol(f[i], first[i], 5e-6);
    ck_assert_double_eq_tol(f[30] / 1.41927e-7, 1.0, 5e-5);
    ck_assert_double_eq_tol(f[31] / 9.41831e-8, 1.0, 5e-5);
    ck_assert_double_eq(scale, 1.0);
}
END_TEST

/* Spec sec. 6 table: (dim, base, s, L0) -> mscale, (low, high). Pairs up to `low` keep their
 * frequency, pairs from `high` on are divided by s, pairs in between are blended. */
START_TEST(yarn_reference_values)
{
    const struct { int dim; double base, s; int64_t L0; double mscale; int low, high; } cases[] = {
        {32, 5e5, 32, 8192, 1.346574, 4, 9},   {64, 5e5, 8, 8192, 1.207944, 9, 18},
        {64, 5e5, 32, 8192, 1.346574, 9, 18},  {32, 5e5, 32, 4096, 1.346574, 3, 8},
        {128, 1e6, 4, 32768, 1.138629, 23, 40},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hylo_rope_config r = {0};
        r.type = HYLO_ROPE_YARN;
        r.theta = cases[c].base;
        r.factor = cases[c].s;
        r.original_max_position = cases[c].L0;
        r.beta_fast = 32;
        r.beta_slow = 1;
        r.truncate = true;
        double f[64], scale;
        int dim = cases[c].dim, lo = cases[c].low, hi = cases[c].high;
        hylo_ref_rope_frequencies(&r, dim, f, &scale);
        ck_assert_double_eq_tol(scale, cases[c].mscale, 1e-6);
        for (int i = 0; i < dim / 2; i++) {
            double base_f = pow(cases[c].base, -2.0 * i / dim);
            if (i <= lo) ck_assert_double_eq_tol(f[i] / base_f, 1.0, 1e-12);
            else if (i >= hi) ck_assert_double_eq_tol(f[i] / (base_f / cases[c].s), 1.0, 1e-12);
            else {
                double ramp = (double)(i - lo) / (hi - lo);
                ck_assert_double_eq_tol(f[i] / (base_f / cases[c].s * ramp + base_f * (1 - ramp)),
                                        1.0, 1e-12);
            }
        }
    }
}
END_TEST

START_TEST(rope_linear_and_default)
{
    hylo_rope_config r = {0};
    r.type = HYLO_ROPE_DEFAULT;
    r.theta = 10000.0;
    double f[8], g[8], scale;
    hylo_ref_rope_frequencies(&r, 16, f, &scale);
    for (int i = 0; i < 8; i++) ck_assert_double_eq_tol(f[i], pow(10000.0, -i / 8.0), 1e-15);
    r.type = HYLO_ROPE_LINEAR;
    r.factor = 4.0;
    hylo_ref_rope_frequencies(&r, 16, g, &scale);
    for (int i = 0; i < 8; i++) ck_assert_double_eq_tol(g[i], f[i] / 4.0, 1e-15);
}
END_TEST

static double dot(const float *a, const float *b, int n)
{
    double s = 0;
    for (int i = 0; i < n; i++) s += (double)a[i] * b[i];
    return s;
}

START_TEST(rope_keeps_norms_and_depends_on_relative_position)
{
    hylo_rope_config r = llama32_rope();
    double f[32], scale;
    hylo_ref_rope_frequencies(&r, 64, f, &scale);
    hylo_test_rng rng = {11};
    float q[64], k[64], q1[64], k1[64], q2[64], k2[64];
    hylo_test_fill_normal(&rng, q, 64, 1.0);
    hylo_test_fill_normal(&rng, k, 64, 1.0);
    memcpy(q1, q, sizeof q);
    memcpy(k1, k, sizeof k);
    memcpy(q2, q, sizeof q);
    memcpy(k2, k, sizeof k);
    hylo_ref_rope_rotate_half(q1, 1, 64, 7, f, scale);
    hylo_ref_rope_rotate_half(k1, 1, 64, 3, f, scale);
    hylo_ref_rope_rotate_half(q2, 1, 64, 1007, f, scale);
    hylo_ref_rope_rotate_half(k2, 1, 64, 1003, f, scale);
    ck_assert_double_eq_tol(dot(q1, q1, 64), dot(q, q, 64), 1e-4);
    ck_assert_double_eq_tol(dot(q2, q2, 64), dot(q, q, 64), 1e-4);
    /* <R(p) q, R(p') k> depends on p - p' only */
    ck_assert_double_eq_tol(dot(q1, k1, 64), dot(q2, k2, 64), 1e-4);
    /* position 0 is the identity */
    memcpy(q1, q, sizeof q);
    hylo_ref_rope_rotate_half(q1, 1, 64, 0, f, scale);
    ck_assert_mem_eq(q1, q, sizeof q);
}
END_TEST

START_TEST(rope_rotate_half_pairs)
{
    /* A unit vector on channel i rotates into channel i + dim/2 (sin) and keeps cos on i. */
    hylo_rope_config r = {0};
    r.type = HYLO_ROPE_DEFAULT;
    r.theta = 10000.0;
    double f[4], scale;
    hylo_ref_rope_frequencies(&r, 8, f, &scale);
    for (int i = 0; i < 4; i++) {
        float x[8] = {0};
        x[i] = 1.0f;
        hylo_ref_rope_rotate_half(x, 1, 8, 5, f, 1.0);
        for (int j = 0; j < 8; j++) {
            double want = j == i ? cos(5 * f[i]) : j == i + 4 ? sin(5 * f[i]) : 0.0;
            ck_assert_double_eq_tol(x[j], want, 1e-7);
        }
    }
}
END_TEST

/* The same attention written as an explicit masked score matrix, one head at a time. */
static void naive_attention(const float *q, const float *k, const float *v, float *out,
                            int T, int len, int H, int Hkv, int hd, double scale)
{
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            int g = h * Hkv / H;
            double *p = calloc((size_t)len, sizeof *p);
            double z = 0;
            for (int j = 0; j < len; j++) {
                if (j > len - T + t) continue; /* causal mask */
                p[j] = exp(scale * dot(q + (t * H + h) * hd, k + (j * Hkv + g) * hd, hd));
                z += p[j];
            }
            for (int d = 0; d < hd; d++) {
                double acc = 0;
                for (int j = 0; j < len; j++) acc += p[j] / z * v[(j * Hkv + g) * hd + d];
                out[(t * H + h) * hd + d] = (float)acc;
            }
            free(p);
        }
}

START_TEST(attention_matches_masked_softmax)
{
    enum { T = 5, LEN = 9, H = 6, HKV = 2, HD = 8 };
    hylo_test_rng rng = {3};
    float q[T * H * HD], k[LEN * HKV * HD], v[LEN * HKV * HD], out[T * H * HD], ref[T * H * HD];
    hylo_test_fill_normal(&rng, q, T * H * HD, 1.0);
    hylo_test_fill_normal(&rng, k, LEN * HKV * HD, 1.0);
    hylo_test_fill_normal(&rng, v, LEN * HKV * HD, 1.0);
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_attention(q, k, v, out, T, LEN, H, HKV, HD, 0.35, &err), &err);
    naive_attention(q, k, v, ref, T, LEN, H, HKV, HD, 0.35);
    ck_assert_nmse(out, ref, T * H * HD, 1e-12, "attention vs masked softmax");
}
END_TEST

START_TEST(attention_one_token_returns_v)
{
    enum { H = 4, HKV = 2, HD = 8 };
    hylo_test_rng rng = {5};
    float q[H * HD], k[HKV * HD], v[HKV * HD], out[H * HD];
    hylo_test_fill_normal(&rng, q, H * HD, 3.0);
    hylo_test_fill_normal(&rng, k, HKV * HD, 3.0);
    hylo_test_fill_normal(&rng, v, HKV * HD, 1.0);
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_attention(q, k, v, out, 1, 1, H, HKV, HD, 0.125, &err), &err);
    for (int h = 0; h < H; h++) ck_assert_mem_eq(out + h * HD, v + (h / 2) * HD, HD * sizeof(float));
}
END_TEST

START_TEST(gqa_equals_mha_with_repeated_heads)
{
    enum { T = 4, H = 6, HKV = 3, HD = 4 };
    hylo_test_rng rng = {9};
    float q[T * H * HD], k[T * HKV * HD], v[T * HKV * HD], kr[T * H * HD], vr[T * H * HD];
    float gqa[T * H * HD], mha[T * H * HD];
    hylo_test_fill_normal(&rng, q, sizeof q / sizeof *q, 1.0);
    hylo_test_fill_normal(&rng, k, sizeof k / sizeof *k, 1.0);
    hylo_test_fill_normal(&rng, v, sizeof v / sizeof *v, 1.0);
    for (int t = 0; t < T; t++)
        for (int h = 0; h < H; h++) {
            memcpy(kr + (t * H + h) * HD, k + (t * HKV + h / 2) * HD, HD * sizeof(float));
            memcpy(vr + (t * H + h) * HD, v + (t * HKV + h / 2) * HD, HD * sizeof(float));
        }
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_attention(q, k, v, gqa, T, T, H, HKV, HD, 0.5, &err), &err);
    ck_assert_ok(hylo_ref_attention(q, kr, vr, mha, T, T, H, H, HD, 0.5, &err), &err);
    ck_assert_mem_eq(gqa, mha, sizeof gqa);
}
END_TEST

START_TEST(attention_is_causal)
{
    enum { T = 6, H = 2, HD = 4 };
    hylo_test_rng rng = {13};
    float q[T * H * HD], k[T * H * HD], v[T * H * HD], a[T * H * HD], b[T * H * HD];
    hylo_test_fill_normal(&rng, q, T * H * HD, 1.0);
    hylo_test_fill_normal(&rng, k, T * H * HD, 1.0);
    hylo_test_fill_normal(&rng, v, T * H * HD, 1.0);
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_attention(q, k, v, a, T, T, H, H, HD, 0.5, &err), &err);
    for (int i = 3 * H * HD; i < T * H * HD; i++) k[i] = v[i] = 100.0f; /* change the future */
    ck_assert_ok(hylo_ref_attention(q, k, v, b, T, T, H, H, HD, 0.5, &err), &err);
    ck_assert_mem_eq(a, b, 3 * H * HD * sizeof(float));
}
END_TEST

START_TEST(swiglu_scalar_closed_form)
{
    /* D = F = 1: y = wd * silu(wg x + bg) * (wu x + bu) + bd */
    const float x = 0.7f, wg = 1.5f, bg = -0.2f, wu = -0.8f, bu = 0.1f, wd = 2.0f, bd = 0.3f;
    float y;
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_swiglu_mlp(&x, &wg, &bg, &wu, &bu, &wd, &bd, &y, 1, 1, 1, &err), &err);
    double g = wg * x + bg, want = wd * (g / (1 + exp(-g))) * (wu * x + bu) + bd;
    ck_assert_double_eq_tol(y, want, 1e-6);
}
END_TEST

/* Interleaved pairs are the rotate-half pairs after a de-interleaving permutation. */
START_TEST(rope_interleaved_equals_permuted_rotate_half)
{
    hylo_rope_config r = {0};
    r.type = HYLO_ROPE_DEFAULT;
    r.theta = 5e5;
    double f[16], scale;
    hylo_ref_rope_frequencies(&r, 32, f, &scale);
    hylo_test_rng rng = {21};
    float x[3 * 32], perm[3 * 32];
    hylo_test_fill_normal(&rng, x, 3 * 32, 1.0);
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < 16; i++) {
            perm[h * 32 + i] = x[h * 32 + 2 * i];
            perm[h * 32 + 16 + i] = x[h * 32 + 2 * i + 1];
        }
    hylo_ref_rope_interleaved(x, 3, 32, 77, f, 1.25);
    hylo_ref_rope_rotate_half(perm, 3, 32, 77, f, 1.25);
    for (int h = 0; h < 3; h++)
        for (int i = 0; i < 16; i++) {
            ck_assert_float_eq(x[h * 32 + 2 * i], perm[h * 32 + i]);
            ck_assert_float_eq(x[h * 32 + 2 * i + 1], perm[h * 32 + 16 + i]);
        }
}
END_TEST

/* The convolution against its definition on a zero-padded sequence, and split calls (prefill
 * of 5 then 1-token steps, including T < K - 1) against one call. */
START_TEST(causal_conv_matches_definition_and_carries_state)
{
    enum { T = 9, C = 3, K = 4 };
    hylo_test_rng rng = {17};
    float x[T * C], w[C * K], b[C], y[T * C], y2[T * C], state[C * (K - 1)] = {0},
        state2[C * (K - 1)] = {0};
    hylo_test_fill_normal(&rng, x, T * C, 1.0);
    hylo_test_fill_normal(&rng, w, C * K, 0.5);
    hylo_test_fill_normal(&rng, b, C, 0.1);
    hylo_ref_causal_conv1d_silu(x, w, b, state, y, T, C, K);
    for (int t = 0; t < T; t++)
        for (int c = 0; c < C; c++) {
            double acc = b[c];
            for (int j = 0; j < K; j++) {
                int i = t - (K - 1) + j;
                if (i >= 0) acc += (double)w[c * K + j] * x[i * C + c];
            }
            ck_assert_double_eq_tol(y[t * C + c], acc / (1 + exp(-acc)), 1e-6);
        }
    const int splits[] = {5, 1, 2, 1};
    for (int s = 0, t0 = 0; s < 4; t0 += splits[s++])
        hylo_ref_causal_conv1d_silu(x + t0 * C, w, b, state2, y2 + t0 * C, splits[s], C, K);
    ck_assert_mem_eq(y, y2, sizeof y);
    ck_assert_mem_eq(state, state2, sizeof state);
    for (int c = 0; c < C; c++)
        for (int j = 0; j < K - 1; j++) ck_assert_float_eq(state[c * (K - 1) + j], x[(T - (K - 1) + j) * C + c]);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("layers");
    TCase *tc = tcase_create("reference");
    tcase_add_test(tc, linear_matches_hand_computed);
    tcase_add_test(tc, rmsnorm_closed_form);
    tcase_add_test(tc, llama3_reference_values);
    tcase_add_test(tc, yarn_reference_values);
    tcase_add_test(tc, rope_linear_and_default);
    tcase_add_test(tc, rope_keeps_norms_and_depends_on_relative_position);
    tcase_add_test(tc, rope_rotate_half_pairs);
    tcase_add_test(tc, attention_matches_masked_softmax);
    tcase_add_test(tc, attention_one_token_returns_v);
    tcase_add_test(tc, gqa_equals_mha_with_repeated_heads);
    tcase_add_test(tc, attention_is_causal);
    tcase_add_test(tc, swiglu_scalar_closed_form);
    tcase_add_test(tc, rope_interleaved_equals_permuted_rotate_half);
    tcase_add_test(tc, causal_conv_matches_definition_and_carries_state);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
