/* test_backend_cpu.c: the CPU backend against the reference. Every layer of backend_cpu/ on
 * random shapes (T = 1, T across the edges of its tiles and chunks, GQA ratios, every MLA
 * variant, both Mamba2 layouts) against its ref/layers counterpart; whole models on both
 * backends, every traced tensor; bf16 weights; decode steps without allocation; decode over a
 * long random cache.
 *
 * NMSE bounds by tensor class (spec sec. 11). The backend stores fp32 like the reference but
 * accumulates in fp32 where the reference accumulates in double, in other orders (GEMM
 * blocking, key tiles, chunks). A sum of K random-sign O(1) products then carries a relative
 * error of about sqrt(K) u (u = 2^-24), an NMSE of about K u^2 / 3 ~ 1.2e-15 K. Bounds, with
 * the largest NMSE measured by these tests:
 *   POINTWISE  1e-12  norms, rope, conv, gates: a few roundings per element        (1.1e-14)
 *   PROJECTION 1e-10  GEMM / GEMV, K up to 4096 here (5e-12 expected at most)      (1.1e-13)
 *   ATTENTION  1e-10  fp32 scores, polynomial exp (relative 2e-7), online rescaling (1.7e-13)
 *   SCAN       1e-9   chunked SSD and delta rule: fp32 GEMMs inside chunks, exponentials of
 *                     cumulative decays, the UT inverse, states carried across chunks (3.6e-13)
 *   MODEL      1e-9   every traced tensor of a whole model and logits after 700 random cache
 *                     positions: the errors above compound through the layers       (1.6e-12)
 *   BF16_SPLIT 1e-8   bf16 weights of a bf16 checkpoint (exact copies): only the activation's
 *                     split into two bf16 terms (16 bits, relative 2^-17, NMSE ~2e-11 per
 *                     projection), compounded through a model                       (5.4e-10)
 *   BF16_ROUND 1e-3   bf16 copies of fp32 weights: each weight rounded (relative 2^-9, NMSE
 *                     ~1.3e-6 per projection), compounded through a model           (1.0e-4)
 * A wrong index, mask or term gives 1e-3 or more (the weight rounding of BF16_ROUND is the one
 * class that loose, and it is only a check that the bf16 path computes the same function). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../backend_cpu/layers/cpu_layers.h"
#include "layers/layers.h"
#include "model/model.h"
#include "testutil.h"

#define POINTWISE 1e-12
#define PROJECTION 1e-10
#define ATTENTION 1e-10
#define SCAN 1e-9
#define MODEL 1e-9
#define BF16_SPLIT 1e-8
#define BF16_ROUND 1e-3

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Buffers of one test, freed together. */
typedef struct {
    void *items[64];
    int count;
    hylo_test_rng rng;
} pool;

static float *zeros(pool *p, int64_t n)
{
    ck_assert_int_lt(p->count, 64);
    float *x = calloc((size_t)(n > 0 ? n : 1), sizeof *x);
    ck_assert_ptr_nonnull(x);
    p->items[p->count++] = x;
    return x;
}

/* mean + N(0, std^2) entries */
static float *random_floats(pool *p, int64_t n, double mean, double std)
{
    float *x = zeros(p, n);
    hylo_test_fill_normal(&p->rng, x, (size_t)n, std);
    for (int64_t i = 0; i < n; i++) x[i] += (float)mean;
    return x;
}

static float *copy_of(pool *p, const float *src, int64_t n)
{
    float *x = zeros(p, n);
    memcpy(x, src, (size_t)n * sizeof *x);
    return x;
}

static void pool_free(pool *p)
{
    for (int i = 0; i < p->count; i++) free(p->items[i]);
    p->count = 0;
}

static hylo_cpu_ctx *new_ctx(void)
{
    hylo_cpu_ctx *ctx = NULL;
    hylo_error err = {0};
    ck_assert_ok(hylo_cpu_context_new(NULL, NULL, &ctx, &err), &err);
    return ctx;
}

/* ------------------------------------------------------------------------------------------ */
/* Teacher layers                                                                              */
/* ------------------------------------------------------------------------------------------ */

/* GEMV rows (T <= 4), GEMM rows, narrow and wide outputs, long reductions, with and without
 * bias. */
START_TEST(linear_matches_reference)
{
    const struct { int64_t T, in, out; bool bias; } shapes[] = {
        {1, 64, 48, true}, {3, 33, 17, false}, {4, 200, 130, true}, {5, 64, 48, false},
        {70, 96, 300, true}, {9, 4096, 40, false}, {2, 4096, 70, true}, {17, 5, 3, true},
    };
    hylo_cpu_ctx *ctx = new_ctx();
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        pool p = {.rng = {100 + i}};
        const int64_t T = shapes[i].T, in = shapes[i].in, out = shapes[i].out;
        const float *x = random_floats(&p, T * in, 0.0, 1.0);
        const float *W = random_floats(&p, out * in, 0.0, 1.0 / sqrt((double)in));
        const float *b = shapes[i].bias ? random_floats(&p, out, 0.0, 0.1) : NULL;
        float *want = zeros(&p, T * out), *got = zeros(&p, T * out);
        hylo_ref_linear(x, W, b, want, T, in, out);
        hylo_cpu_linear(ctx, x, W, b, got, T, in, out);
        char what[64];
        snprintf(what, sizeof what, "linear T %lld in %lld out %lld", (long long)T, (long long)in,
                 (long long)out);
        ck_assert_nmse(got, want, (size_t)(T * out), PROJECTION, what);
        pool_free(&p);
    }
    hylo_cpu_context_free(ctx);
}
END_TEST

START_TEST(norm_and_rope_match_reference)
{
    pool p = {.rng = {7}};
    hylo_cpu_ctx *ctx = new_ctx();
    const int64_t T = 13, H = 3, hd = 16;
    const float *x = random_floats(&p, T * H * hd, 0.0, 2.0), *w = random_floats(&p, hd, 1.0, 0.1);
    float *want = zeros(&p, T * H * hd), *got = zeros(&p, T * H * hd);
    hylo_ref_rmsnorm(x, w, want, T * H, hd, 1e-5);
    hylo_cpu_rmsnorm(ctx, x, w, got, T * H, hd, 1e-5);
    ck_assert_nmse(got, want, (size_t)(T * H * hd), POINTWISE, "rmsnorm");
    const hylo_rope_config rope = {.type = HYLO_ROPE_YARN, .theta = 1e4, .factor = 4.0,
                                   .original_max_position = 8, .beta_fast = 32, .beta_slow = 1,
                                   .truncate = true};
    double inv_freq[8], scale;
    hylo_ref_rope_frequencies(&rope, hd, inv_freq, &scale);
    const int64_t pos0 = 1000;
    memcpy(want, x, (size_t)(T * H * hd) * sizeof *x);
    memcpy(got, x, (size_t)(T * H * hd) * sizeof *x);
    for (int64_t t = 0; t < T; t++)
        hylo_ref_rope_rotate_half(want + t * H * hd, H, hd, pos0 + t, inv_freq, scale);
    hylo_cpu_rope_rotate_half(ctx, got, T, H, hd, pos0, inv_freq, scale);
    ck_assert_nmse(got, want, (size_t)(T * H * hd), POINTWISE, "rope rotate-half");
    /* interleaved on the last 8 channels of each head (the MLA rope slice) */
    memcpy(want, x, (size_t)(T * H * hd) * sizeof *x);
    memcpy(got, x, (size_t)(T * H * hd) * sizeof *x);
    hylo_ref_rope_frequencies(&rope, 8, inv_freq, &scale);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < H; h++)
            hylo_ref_rope_interleaved(want + (t * H + h) * hd + 8, 1, 8, pos0 + t, inv_freq, scale);
    hylo_cpu_rope_interleaved(got + 8, T, H * hd, H, hd, 8, pos0, inv_freq, scale);
    ck_assert_nmse(got, want, (size_t)(T * H * hd), POINTWISE, "rope interleaved");
    hylo_cpu_context_free(ctx);
    pool_free(&p);
}
END_TEST

/* Decode (T = 1), prefills across the 64-row and 256-key tiles, a continued prefill, group
 * sizes 1, 2, 4, 8 and 32, one group over a long cache (its keys split across threads and
 * merged). */
START_TEST(gqa_attention_matches_reference)
{
    const struct { int64_t T, len, H, Hkv, hd; } shapes[] = {
        {1, 1, 4, 4, 16},    {1, 300, 8, 2, 32},  {70, 70, 6, 3, 16},   {37, 600, 4, 1, 64},
        {130, 130, 8, 1, 8}, {1, 513, 8, 8, 24},  {1, 5000, 8, 1, 16},  {1, 4500, 32, 1, 32},
        {2, 4500, 32, 1, 8},
    };
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; i++) {
        pool p = {.rng = {200 + i}};
        const int64_t T = shapes[i].T, len = shapes[i].len, H = shapes[i].H,
                      Hkv = shapes[i].Hkv, hd = shapes[i].hd;
        const float *q = random_floats(&p, T * H * hd, 0.0, 1.0);
        const float *k = random_floats(&p, len * Hkv * hd, 0.0, 1.0);
        const float *v = random_floats(&p, len * Hkv * hd, 0.0, 1.0);
        float *want = zeros(&p, T * H * hd), *got = zeros(&p, T * H * hd);
        const double scale = 1.0 / sqrt((double)hd);
        ck_assert_ok(hylo_ref_attention(q, k, v, want, T, len, H, Hkv, hd, scale, &err), &err);
        ck_assert_ok(hylo_cpu_gqa_attention(ctx, q, k, v, got, T, len, H, Hkv, hd, scale, &err),
                     &err);
        char what[80];
        snprintf(what, sizeof what, "attention T %lld len %lld H %lld Hkv %lld", (long long)T,
                 (long long)len, (long long)H, (long long)Hkv);
        ck_assert_nmse(got, want, (size_t)(T * H * hd), ATTENTION, what);
        pool_free(&p);
    }
    hylo_cpu_context_free(ctx);
}
END_TEST

START_TEST(swiglu_mlp_matches_reference)
{
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    for (int64_t T = 1; T <= 9; T += 8) {
        pool p = {.rng = {300 + (uint64_t)T}};
        const int64_t D = 40, F = 112;
        const float *x = random_floats(&p, T * D, 0.0, 1.0);
        const float *Wg = random_floats(&p, F * D, 0.0, 1.0 / sqrt(D));
        const float *Wu = random_floats(&p, F * D, 0.0, 1.0 / sqrt(D));
        const float *Wd = random_floats(&p, D * F, 0.0, 1.0 / sqrt(F));
        const float *bg = random_floats(&p, F, 0.0, 0.1), *bu = random_floats(&p, F, 0.0, 0.1);
        const float *bd = random_floats(&p, D, 0.0, 0.1);
        float *want = zeros(&p, T * D), *got = zeros(&p, T * D);
        ck_assert_ok(hylo_ref_swiglu_mlp(x, Wg, bg, Wu, bu, Wd, bd, want, T, D, F, &err), &err);
        ck_assert_ok(hylo_cpu_swiglu_mlp(ctx, x, Wg, bg, Wu, bu, Wd, bd, got, T, D, F, &err), &err);
        ck_assert_nmse(got, want, (size_t)(T * D), PROJECTION, "swiglu");
        pool_free(&p);
    }
    hylo_cpu_context_free(ctx);
}
END_TEST

/* Calls of 1, 5, 1 and 2 tokens carry the state from one to the next, K = 2 and 4. */
START_TEST(conv_matches_reference_across_calls)
{
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    for (int64_t K = 2; K <= 4; K += 2) {
        pool p = {.rng = {400 + (uint64_t)K}};
        const int64_t C = 37, T = 9, pieces[] = {1, 5, 1, 2};
        const float *x = random_floats(&p, T * C, 0.0, 1.0);
        const float *w = random_floats(&p, C * K, 0.0, 0.5), *b = random_floats(&p, C, 0.0, 0.1);
        float *state_ref = random_floats(&p, C * (K - 1), 0.0, 1.0);
        float *state_cpu = copy_of(&p, state_ref, C * (K - 1));
        float *want = zeros(&p, T * C), *got = zeros(&p, T * C);
        for (int64_t i = 0, t0 = 0; i < 4; t0 += pieces[i++]) {
            hylo_ref_causal_conv1d_silu(x + t0 * C, w, K == 4 ? b : NULL, state_ref, want + t0 * C,
                                        pieces[i], C, K);
            ck_assert_ok(hylo_cpu_causal_conv1d_silu(ctx, x + t0 * C, w, K == 4 ? b : NULL,
                                                     state_cpu, got + t0 * C, pieces[i], C, K, &err),
                         &err);
        }
        ck_assert_nmse(got, want, (size_t)(T * C), POINTWISE, "conv output");
        ck_assert_nmse(state_cpu, state_ref, (size_t)(C * (K - 1)), 0.0, "conv state");
        pool_free(&p);
    }
    hylo_cpu_context_free(ctx);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Mamba2                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* The upcycled layout (x and B at KV width, C per head) and the stock one (groups), chunks
 * that do and do not divide T, recurrent steps, from a random state. */
static const hylo_mamba2_dims mamba2_shapes[] = {
    /* D, H, P, N, x_heads, b_groups, c_groups, norm_groups, d_conv, chunk, eps */
    {24, 8, 8, 6, 2, 2, 8, 8, 4, 16, 1e-5},
    {24, 4, 8, 16, 4, 2, 2, 2, 4, 8, 1e-5},
    {16, 2, 4, 4, 2, 1, 1, 1, 3, 64, 1e-5},
};

START_TEST(ssd_scan_matches_reference)
{
    const hylo_mamba2_dims *d = &mamba2_shapes[_i];
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    const int64_t Ts[] = {1, 3, 37};
    for (size_t k = 0; k < 3; k++) {
        for (int scan = 0; scan < 2; scan++) {
            pool p = {.rng = {500 + k * 2 + (uint64_t)scan}};
            const int64_t T = Ts[k], H = d->nheads, P = d->headdim, N = d->d_state;
            const float *x = random_floats(&p, T * d->x_heads * P, 0.0, 1.0);
            const float *B = random_floats(&p, T * d->b_groups * N, 0.0, 1.0);
            const float *C = random_floats(&p, T * d->c_groups * N, 0.0, 1.0);
            float *dt = random_floats(&p, T * H, 0.0, 1.0), *A = random_floats(&p, H, 0.0, 1.0);
            for (int64_t i = 0; i < T * H; i++) dt[i] = 0.05f + 0.1f * fabsf(dt[i]);
            for (int64_t h = 0; h < H; h++) A[h] = -1.0f - 4.0f * fabsf(A[h]);
            const float *Dv = random_floats(&p, H, 1.0, 0.1);
            float *S_ref = random_floats(&p, H * P * N, 0.0, 0.5);
            float *S_cpu = copy_of(&p, S_ref, H * P * N);
            float *want = zeros(&p, T * H * P), *got = zeros(&p, T * H * P);
            ck_assert_ok(hylo_ref_ssd_scan(d, x, dt, A, B, C, Dv, S_ref, want, T, HYLO_SCAN_CHUNKED,
                                           &err), &err);
            ck_assert_ok(hylo_cpu_ssd_scan(ctx, d, x, dt, A, B, C, Dv, S_cpu, got, T,
                                           (hylo_scan)scan, &err), &err);
            char what[64];
            snprintf(what, sizeof what, "ssd %s T %lld", scan ? "recurrent" : "chunked",
                     (long long)T);
            ck_assert_nmse(got, want, (size_t)(T * H * P), SCAN, what);
            ck_assert_nmse(S_cpu, S_ref, (size_t)(H * P * N), SCAN, what);
            pool_free(&p);
        }
    }
    hylo_cpu_context_free(ctx);
}
END_TEST

static hylo_mamba2_weights mamba2_weights(pool *p, const hylo_mamba2_dims *d)
{
    const int64_t D = d->hidden, d_inner = d->nheads * d->headdim;
    const int64_t conv_dim = hylo_mamba2_conv_dim(d), rows = hylo_mamba2_in_proj_rows(d);
    hylo_mamba2_weights w;
    w.in_proj = random_floats(p, rows * D, 0.0, 1.0 / sqrt((double)D));
    w.conv_w = random_floats(p, conv_dim * d->d_conv, 0.0, 0.5);
    w.conv_b = random_floats(p, conv_dim, 0.0, 0.1);
    w.dt_bias = random_floats(p, d->nheads, -3.0, 0.5);
    w.A_log = random_floats(p, d->nheads, 1.0, 0.5);
    w.D = random_floats(p, d->nheads, 1.0, 0.1);
    w.norm = random_floats(p, d_inner, 1.0, 0.1);
    w.out_proj = random_floats(p, D * d_inner, 0.0, 1.0 / sqrt((double)d_inner));
    return w;
}

/* A prefill across chunk edges, then decode steps, each output and the states. */
START_TEST(mamba2_mixer_matches_reference)
{
    const hylo_mamba2_dims *d = &mamba2_shapes[_i];
    pool p = {.rng = {600 + (uint64_t)_i}};
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    const hylo_mamba2_weights w = mamba2_weights(&p, d);
    const int64_t D = d->hidden, conv_n = hylo_mamba2_conv_dim(d) * (d->d_conv - 1);
    const int64_t ssm_n = d->nheads * d->headdim * d->d_state, T = 21, pieces[] = {18, 1, 1, 1};
    hylo_mamba2_state ref = {zeros(&p, conv_n), zeros(&p, ssm_n)};
    hylo_mamba2_state cpu = {zeros(&p, conv_n), zeros(&p, ssm_n)};
    const float *x = random_floats(&p, T * D, 0.0, 1.0);
    float *want = zeros(&p, T * D), *got = zeros(&p, T * D);
    for (int64_t i = 0, t0 = 0; i < 4; t0 += pieces[i++]) {
        const hylo_scan scan = pieces[i] > 1 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
        ck_assert_ok(hylo_ref_mamba2_forward(d, &w, &ref, x + t0 * D, pieces[i], want + t0 * D,
                                             scan, NULL, &err), &err);
        ck_assert_ok(hylo_cpu_mamba2_forward(ctx, d, &w, &cpu, x + t0 * D, pieces[i], got + t0 * D,
                                             scan, NULL, &err), &err);
    }
    ck_assert_nmse(got, want, (size_t)(T * D), SCAN, "mamba2 output");
    ck_assert_nmse(cpu.ssm, ref.ssm, (size_t)ssm_n, SCAN, "mamba2 ssm state");
    ck_assert_nmse(cpu.conv, ref.conv, (size_t)conv_n, POINTWISE, "mamba2 conv state");
    hylo_cpu_context_free(ctx);
    pool_free(&p);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Gated DeltaNet                                                                              */
/* ------------------------------------------------------------------------------------------ */

static const hylo_gdn_dims gdn_shapes[] = {
    /* D, Hk, Hv, dk, dv, d_conv, chunk, eps */
    {24, 2, 4, 16, 24, 4, 8, 1e-5},
    {16, 1, 1, 8, 70, 4, 64, 1e-5},
    {20, 3, 3, 12, 8, 3, 5, 1e-5},
};

/* q, k normalized as the mixer does, g <= 0, beta in (0, 1). */
START_TEST(delta_rule_matches_reference)
{
    const hylo_gdn_dims *d = &gdn_shapes[_i];
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    const int64_t Ts[] = {1, 5, 21};
    for (size_t k = 0; k < 3; k++) {
        for (int scan = 0; scan < 2; scan++) {
            pool p = {.rng = {700 + k * 2 + (uint64_t)scan}};
            const int64_t T = Ts[k], Hk = d->k_heads, Hv = d->v_heads, dk = d->head_k,
                          dv = d->head_v;
            float *q = random_floats(&p, T * Hk * dk, 0.0, 1.0);
            float *kk = random_floats(&p, T * Hk * dk, 0.0, 1.0);
            hylo_ref_l2norm(q, T * Hk, dk, 1e-6, 1.0 / sqrt((double)dk));
            hylo_ref_l2norm(kk, T * Hk, dk, 1e-6, 1.0);
            const float *v = random_floats(&p, T * Hv * dv, 0.0, 1.0);
            float *g = random_floats(&p, T * Hv, 0.0, 1.0), *beta = random_floats(&p, T * Hv, 0.0, 1.0);
            for (int64_t i = 0; i < T * Hv; i++) {
                g[i] = -0.5f * fabsf(g[i]);
                beta[i] = 1.0f / (1.0f + expf(-beta[i]));
            }
            float *S_ref = random_floats(&p, Hv * dk * dv, 0.0, 0.3);
            float *S_cpu = copy_of(&p, S_ref, Hv * dk * dv);
            float *want = zeros(&p, T * Hv * dv), *got = zeros(&p, T * Hv * dv);
            ck_assert_ok(hylo_ref_gated_delta_rule(d, q, kk, v, g, beta, S_ref, want, T,
                                                   HYLO_SCAN_RECURRENT, &err), &err);
            ck_assert_ok(hylo_cpu_gated_delta_rule(ctx, d, q, kk, v, g, beta, S_cpu, got, T,
                                                   (hylo_scan)scan, &err), &err);
            char what[64];
            snprintf(what, sizeof what, "delta rule %s T %lld", scan ? "recurrent" : "chunked",
                     (long long)T);
            ck_assert_nmse(got, want, (size_t)(T * Hv * dv), SCAN, what);
            ck_assert_nmse(S_cpu, S_ref, (size_t)(Hv * dk * dv), SCAN, what);
            pool_free(&p);
        }
    }
    hylo_cpu_context_free(ctx);
}
END_TEST

static hylo_gdn_weights gdn_weights(pool *p, const hylo_gdn_dims *d)
{
    const int64_t D = d->hidden, nk = d->k_heads * d->head_k, nv = d->v_heads * d->head_v;
    const double s = 1.0 / sqrt((double)D);
    hylo_gdn_weights w;
    w.q_proj = random_floats(p, nk * D, 0.0, s);
    w.k_proj = random_floats(p, nk * D, 0.0, s);
    w.v_proj = random_floats(p, nv * D, 0.0, s);
    w.g_proj = random_floats(p, nv * D, 0.0, s);
    w.a_proj = random_floats(p, d->v_heads * D, 0.0, s);
    w.b_proj = random_floats(p, d->v_heads * D, 0.0, s);
    w.A_log = random_floats(p, d->v_heads, 0.0, 0.5);
    w.dt_bias = random_floats(p, d->v_heads, -2.0, 0.5);
    w.q_conv = random_floats(p, nk * d->d_conv, 0.0, 0.5);
    w.k_conv = random_floats(p, nk * d->d_conv, 0.0, 0.5);
    w.v_conv = random_floats(p, nv * d->d_conv, 0.0, 0.5);
    w.o_norm = random_floats(p, d->head_v, 1.0, 0.1);
    w.o_proj = random_floats(p, D * nv, 0.0, 1.0 / sqrt((double)nv));
    return w;
}

START_TEST(gdn_mixer_matches_reference)
{
    const hylo_gdn_dims *d = &gdn_shapes[_i];
    pool p = {.rng = {800 + (uint64_t)_i}};
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    const hylo_gdn_weights w = gdn_weights(&p, d);
    const int64_t D = d->hidden, nk = d->k_heads * d->head_k, nv = d->v_heads * d->head_v;
    const int64_t K1 = d->d_conv - 1, S_n = d->v_heads * d->head_k * d->head_v;
    const int64_t T = 21, pieces[] = {18, 1, 1, 1};
    hylo_gdn_state ref = {zeros(&p, nk * K1), zeros(&p, nk * K1), zeros(&p, nv * K1), zeros(&p, S_n)};
    hylo_gdn_state cpu = {zeros(&p, nk * K1), zeros(&p, nk * K1), zeros(&p, nv * K1), zeros(&p, S_n)};
    const float *x = random_floats(&p, T * D, 0.0, 1.0);
    float *want = zeros(&p, T * D), *got = zeros(&p, T * D);
    for (int64_t i = 0, t0 = 0; i < 4; t0 += pieces[i++]) {
        const hylo_scan scan = pieces[i] > 1 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
        ck_assert_ok(hylo_ref_gdn_forward(d, &w, &ref, x + t0 * D, pieces[i], want + t0 * D, scan,
                                          NULL, &err), &err);
        ck_assert_ok(hylo_cpu_gdn_forward(ctx, d, &w, &cpu, x + t0 * D, pieces[i], got + t0 * D,
                                          scan, NULL, &err), &err);
    }
    ck_assert_nmse(got, want, (size_t)(T * D), SCAN, "gdn output");
    ck_assert_nmse(cpu.S, ref.S, (size_t)S_n, SCAN, "gdn state");
    ck_assert_nmse(cpu.v_conv, ref.v_conv, (size_t)(nv * K1), POINTWISE, "gdn v conv state");
    hylo_cpu_context_free(ctx);
    pool_free(&p);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* MLA                                                                                         */
/* ------------------------------------------------------------------------------------------ */

/* Variant bits: 1 Hm < H, 2 q_a / q_b, 4 latent norms, 8 q/k norms (every combination). */
START_TEST(mla_matches_reference)
{
    const int variant = _i;
    enum { D = 24, H = 4, R_Q = 16, R_KV = 10, NOPE = 6, ROPE = 8, V = 5, DQ = NOPE + ROPE };
    pool p = {.rng = {900 + (uint64_t)variant}};
    hylo_cpu_ctx *ctx = new_ctx();
    hylo_error err = {0};
    const int64_t Hm = variant & 1 ? 2 : H;
    hylo_mla_layer L = {0};
    L.dims = (hylo_mla_dims){D, H, Hm, variant & 2 ? R_Q : 0, R_KV, NOPE, ROPE, V, 1e-6};
    if (variant & 2) {
        L.w.q_a = random_floats(&p, R_Q * D, 0.0, 1.0 / sqrt(D));
        L.w.q_b = random_floats(&p, H * DQ * R_Q, 0.0, 1.0 / sqrt(R_Q));
        if (variant & 4) L.w.q_a_norm = random_floats(&p, R_Q, 1.0, 0.2);
    } else {
        L.w.q_proj = random_floats(&p, H * DQ * D, 0.0, 1.0 / sqrt(D));
    }
    L.w.kv_a = random_floats(&p, (R_KV + ROPE) * D, 0.0, 1.0 / sqrt(D));
    if (variant & 4) L.w.kv_a_norm = random_floats(&p, R_KV, 1.0, 0.2);
    L.w.kv_b = random_floats(&p, Hm * (NOPE + V) * R_KV, 0.0, 1.0 / sqrt(R_KV));
    L.w.out = random_floats(&p, D * H * V, 0.0, 1.0 / sqrt(H * V));
    if (variant & 8) {
        L.w.q_norm = random_floats(&p, DQ, 1.0, 0.2);
        L.w.k_norm = random_floats(&p, DQ, 1.0, 0.2);
    }
    const hylo_rope_config rope = {.type = HYLO_ROPE_YARN, .theta = 1e4, .factor = 4.0,
                                   .original_max_position = 8, .beta_fast = 32, .beta_slow = 1,
                                   .truncate = true};
    double inv_freq[ROPE / 2];
    hylo_ref_rope_frequencies(&rope, ROPE, inv_freq, &L.rope_scale);
    L.rope_inv_freq = inv_freq;
    L.softmax_scale = 1.0 / sqrt(DQ);
    /* a prefill across the 256-key tile, decode steps, a continued prefill */
    const int64_t T = 300, pieces[] = {270, 1, 1, 25, 1, 1, 1};
    hylo_mla_cache ref = {zeros(&p, T * R_KV), zeros(&p, T * ROPE)};
    hylo_mla_cache cpu = {zeros(&p, T * R_KV), zeros(&p, T * ROPE)};
    const float *x = random_floats(&p, T * D, 0.0, 1.0);
    float *want = zeros(&p, T * D), *got = zeros(&p, T * D);
    for (int64_t i = 0, t0 = 0; i < 7; t0 += pieces[i++]) {
        const bool decode = pieces[i] == 1;
        ck_assert_ok((decode ? hylo_ref_mla_forward_absorbed : hylo_ref_mla_forward)(
                         &L, &ref, t0, x + t0 * D, pieces[i], want + t0 * D, NULL, &err), &err);
        ck_assert_ok((decode ? hylo_cpu_mla_decode : hylo_cpu_mla_prefill)(
                         ctx, &L, &cpu, t0, x + t0 * D, pieces[i], got + t0 * D, NULL, &err), &err);
    }
    ck_assert_nmse(got, want, (size_t)(T * D), ATTENTION, "mla output");
    ck_assert_nmse(cpu.latent, ref.latent, (size_t)(T * R_KV), PROJECTION, "mla latent cache");
    ck_assert_nmse(cpu.k_pe, ref.k_pe, (size_t)(T * ROPE), PROJECTION, "mla k_pe cache");
    hylo_cpu_context_free(ctx);
    pool_free(&p);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Whole models                                                                                */
/* ------------------------------------------------------------------------------------------ */

static const char *const model_presets[] = {"tiny-llama", "tiny-qwen3", "tiny-hybrid-m2",
                                            "tiny-hybrid-gdn"};

/* A random checkpoint of the preset stored in `dtype`, loaded. */
static hylo_model *load_preset_as(const char *preset, uint64_t seed, hylo_dtype dtype)
{
    hylo_error err = {0};
    hylo_config cfg;
    hylo_hybrid_config hy;
    const bool hybrid = strncmp(preset, "tiny-hybrid", 11) == 0;
    if (hybrid) ck_assert_ok(hylo_hybrid_preset(preset, &cfg, &hy, &err), &err);
    else ck_assert_ok(hylo_preset(preset, &cfg, &err), &err);
    cfg.dtype = dtype;
    char *dir = hylo_test_tmpdir(preset);
    ck_assert_ok(hylo_init_random(&cfg, hybrid ? &hy : NULL, seed, dir, 0, &err), &err);
    hylo_model *model = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    free(dir);
    return model;
}

static hylo_model *load_preset(const char *preset, uint64_t seed)
{
    return load_preset_as(preset, seed, HYLO_BF16);
}

static hylo_state *state_on(hylo_model *m, hylo_backend backend, hylo_weights weights)
{
    hylo_error err = {0};
    hylo_state *s = NULL;
    ck_assert_ok(hylo_model_set_backend(m, backend, weights, &err), &err);
    ck_assert_ok(hylo_state_create(m, 0, &s, &err), &err);
    ck_assert_int_eq(hylo_state_backend(s), backend);
    return s;
}

/* A prefill of 13 tokens and 3 decode steps; logits [4, V] (the last row of each call). */
static void run_schedule(const hylo_model *m, hylo_state *s, float *logits)
{
    const int32_t tokens[16] = {7, 1, 42, 3, 99, 5, 17, 250, 11, 64, 2, 128, 9, 33, 4, 200};
    const int64_t V = hylo_model_config(m)->vocab_size;
    hylo_error err = {0};
    ck_assert_ok(hylo_forward(m, s, tokens, 13, HYLO_LOGITS_LAST, logits, &err), &err);
    for (int i = 0; i < 3; i++)
        ck_assert_ok(hylo_forward(m, s, tokens + 13 + i, 1, HYLO_LOGITS_LAST, logits + (i + 1) * V,
                                  &err), &err);
}

/* Both backends trace the same names and shapes in the same order, every tensor within MODEL
 * of the reference's. */
START_TEST(models_trace_the_same_tensors)
{
    hylo_model *m = load_preset(model_presets[_i], 5);
    hylo_error err = {0};
    const int64_t V = hylo_model_config(m)->vocab_size;
    float *logits = malloc((size_t)(4 * V) * sizeof *logits);
    const char *paths[2] = {"ref.trace.safetensors", "cpu.trace.safetensors"};
    for (int b = 0; b < 2; b++) {
        hylo_trace *trace = NULL;
        ck_assert_ok(hylo_trace_create(NULL, &trace, &err), &err);
        hylo_state *s = state_on(m, b ? HYLO_BACKEND_CPU : HYLO_BACKEND_REF, HYLO_WEIGHTS_F32);
        hylo_state_set_trace(s, trace);
        run_schedule(m, s, logits);
        ck_assert_ok(hylo_trace_save(trace, paths[b], NULL, &err), &err);
        hylo_state_free(s);
        hylo_trace_free(trace);
    }
    hylo_safetensors *ref = NULL, *cpu = NULL;
    ck_assert_ok(hylo_safetensors_open(paths[0], &ref, &err), &err);
    ck_assert_ok(hylo_safetensors_open(paths[1], &cpu, &err), &err);
    ck_assert_int_eq(hylo_safetensors_count(ref), hylo_safetensors_count(cpu));
    ck_assert_int_gt(hylo_safetensors_count(ref), 60);
    for (size_t i = 0; i < hylo_safetensors_count(ref); i++) {
        const hylo_tensor_view *a = hylo_safetensors_at(ref, i), *c = hylo_safetensors_at(cpu, i);
        ck_assert_str_eq(a->name, c->name);
        ck_assert_int_eq(a->numel, c->numel);
        ck_assert_nmse((const float *)c->data, (const float *)a->data, (size_t)a->numel, MODEL,
                       a->name);
    }
    hylo_safetensors_close(ref);
    hylo_safetensors_close(cpu);
    free(logits);
    hylo_model_free(m);
}
END_TEST

/* A cpu state's context is sized for its model's decode steps at creation: decode steps, from
 * the first position or after a prefill, never grow it. (Not tiny-hybrid-gdn, index 3: on a
 * Qwen3 base its MLA layers have a k_norm and rebuild every cached key at each step, a
 * workspace that grows with the context.) */
START_TEST(decode_steps_allocate_nothing)
{
    hylo_model *m = load_preset(model_presets[_i], 6);
    hylo_error err = {0};
    const int64_t V = hylo_model_config(m)->vocab_size;
    float *logits = malloc((size_t)V * sizeof *logits);
    for (int weights = 0; weights < 2; weights++) {
        hylo_state *s = state_on(m, HYLO_BACKEND_CPU, (hylo_weights)weights);
        const hylo_cpu_ctx *ctx = s->ctx;
        for (int32_t t = 0; t < 5; t++)
            ck_assert_ok(hylo_forward(m, s, &t, 1, HYLO_LOGITS_LAST, logits, &err), &err);
        ck_assert_int_eq(ctx->grows, 0);
        const int32_t prompt[9] = {3, 1, 4, 1, 5, 9, 2, 6, 5};
        ck_assert_ok(hylo_forward(m, s, prompt, 9, HYLO_LOGITS_LAST, logits, &err), &err);
        const int64_t after_prefill = ctx->grows;
        for (int32_t t = 0; t < 5; t++)
            ck_assert_ok(hylo_forward(m, s, &t, 1, HYLO_LOGITS_LAST, logits, &err), &err);
        ck_assert_int_eq(ctx->grows, after_prefill);
        hylo_state_free(s);
    }
    free(logits);
    hylo_model_free(m);
}
END_TEST

/* bf16 weights serve the projections of up to HYLO_CPU_GEMV_ROWS rows (decode steps, the LM
 * head of the last position): BF16_SPLIT on a bf16 checkpoint, BF16_ROUND on an fp32 one. */
START_TEST(bf16_weights_stay_close)
{
    const hylo_dtype dtypes[2] = {HYLO_BF16, HYLO_F32};
    const double bounds[2] = {BF16_SPLIT, BF16_ROUND};
    for (int k = 0; k < 2; k++) {
        hylo_model *m = load_preset_as(model_presets[_i], 7, dtypes[k]);
        const int64_t V = hylo_model_config(m)->vocab_size;
        float *want = malloc((size_t)(4 * V) * sizeof *want);
        float *got = malloc((size_t)(4 * V) * sizeof *got);
        hylo_state *s = state_on(m, HYLO_BACKEND_REF, HYLO_WEIGHTS_F32);
        run_schedule(m, s, want);
        hylo_state_free(s);
        s = state_on(m, HYLO_BACKEND_CPU, HYLO_WEIGHTS_BF16);
        run_schedule(m, s, got);
        hylo_state_free(s);
        ck_assert_nmse(got, want, (size_t)(4 * V), bounds[k], hylo_dtype_name(dtypes[k]));
        free(want);
        free(got);
        hylo_model_free(m);
    }
}
END_TEST

/* The bf16 GEMV against a double sum of the bf16 weights times x (the split of x into two bf16
 * halves keeps 16 bits), lengths with and without a tail. */
START_TEST(bf16_gemv_matches_widened_weights)
{
    pool p = {.rng = {31}};
    const int64_t rows = 7, lengths[] = {64, 77, 2048};
    for (size_t k = 0; k < 3; k++) {
        const int64_t n = lengths[k];
        const float *W = random_floats(&p, rows * n, 0.0, 1.0), *x = random_floats(&p, n, 0.0, 1.0);
        uint16_t *Wb = malloc((size_t)(rows * n) * sizeof *Wb);
        uint16_t *xs = malloc((size_t)(2 * n) * sizeof *xs);
        hylo_cpu_to_bf16(W, Wb, rows * n);
        hylo_cpu_split_bf16(x, xs, n);
        ck_assert_int_eq(Wb[0], hylo_f32_to_bf16(W[0])); /* the library's rounding */
        float got[7], want[7];
        hylo_cpu_gemv_bf16(Wb, x, xs, got, rows, n);
        for (int64_t r = 0; r < rows; r++) {
            double acc = 0.0;
            for (int64_t i = 0; i < n; i++)
                acc += (double)hylo_bf16_to_f32(Wb[r * n + i]) * (double)x[i];
            want[r] = (float)acc;
        }
        ck_assert_nmse(got, want, (size_t)rows, BF16_SPLIT, "bf16 gemv");
        free(Wb);
        free(xs);
    }
    pool_free(&p);
}
END_TEST

/* Decode over a random cache of 700 positions (across the key tiles) on both backends. */
START_TEST(long_context_decode_matches_reference)
{
    hylo_model *m = load_preset(model_presets[_i], 8);
    hylo_error err = {0};
    const int64_t V = hylo_model_config(m)->vocab_size;
    float *want = malloc((size_t)V * sizeof *want), *got = malloc((size_t)V * sizeof *got);
    const int32_t token = 5;
    for (int b = 0; b < 2; b++) {
        hylo_state *s = state_on(m, b ? HYLO_BACKEND_CPU : HYLO_BACKEND_REF, HYLO_WEIGHTS_F32);
        ck_assert_ok(hylo_state_fill_random(s, 700, 42, &err), &err);
        ck_assert_int_eq(hylo_state_length(s), 700);
        ck_assert_ok(hylo_forward(m, s, &token, 1, HYLO_LOGITS_LAST, b ? got : want, &err), &err);
        hylo_state_free(s);
    }
    ck_assert_nmse(got, want, (size_t)V, MODEL, "decode at 700 positions");
    free(want);
    free(got);
    hylo_model_free(m);
}
END_TEST

START_TEST(backend_selection_is_checked)
{
    hylo_model *m = load_preset("tiny-llama", 9);
    hylo_error err = {0};
    ck_assert_int_eq(hylo_model_set_backend(m, HYLO_BACKEND_REF, HYLO_WEIGHTS_BF16, &err),
                     HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "bf16"));
    ck_assert_int_eq(hylo_model_set_backend(m, (hylo_backend)7, HYLO_WEIGHTS_F32, &err),
                     HYLO_ERR_USAGE);
    hylo_backend b;
    hylo_weights w;
    ck_assert(hylo_backend_parse("cpu", &b) && b == HYLO_BACKEND_CPU);
    ck_assert(hylo_weights_parse("bf16", &w) && w == HYLO_WEIGHTS_BF16);
    ck_assert(!hylo_backend_parse("gpu", &b) && !hylo_weights_parse("f16", &w));
    ck_assert_str_eq(hylo_backend_name(HYLO_BACKEND_REF), "ref");
    /* a fresh model's states use the reference */
    hylo_state *s = NULL;
    ck_assert_ok(hylo_state_create(m, 0, &s, &err), &err);
    ck_assert_int_eq(hylo_state_backend(s), HYLO_BACKEND_REF);
    hylo_state_free(s);
    hylo_model_free(m);
    /* the user's OPENBLAS_CORETYPE always wins */
    setenv("OPENBLAS_CORETYPE", "Haswell", 1);
    ck_assert_ptr_null(hylo_blas_coretype_hint());
    unsetenv("OPENBLAS_CORETYPE");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("backend_cpu");
    TCase *layers = tcase_create("layers");
    tcase_set_timeout(layers, 120);
    tcase_add_test(layers, linear_matches_reference);
    tcase_add_test(layers, norm_and_rope_match_reference);
    tcase_add_test(layers, gqa_attention_matches_reference);
    tcase_add_test(layers, swiglu_mlp_matches_reference);
    tcase_add_test(layers, conv_matches_reference_across_calls);
    tcase_add_loop_test(layers, ssd_scan_matches_reference, 0, 3);
    tcase_add_loop_test(layers, mamba2_mixer_matches_reference, 0, 3);
    tcase_add_loop_test(layers, delta_rule_matches_reference, 0, 3);
    tcase_add_loop_test(layers, gdn_mixer_matches_reference, 0, 3);
    tcase_add_loop_test(layers, mla_matches_reference, 0, 16);
    tcase_add_test(layers, bf16_gemv_matches_widened_weights);
    suite_add_tcase(s, layers);
    TCase *models = tcase_create("models");
    tcase_set_timeout(models, 120);
    tcase_add_loop_test(models, models_trace_the_same_tensors, 0, 4);
    tcase_add_loop_test(models, decode_steps_allocate_nothing, 0, 3);
    tcase_add_loop_test(models, bf16_weights_stay_close, 0, 4);
    tcase_add_loop_test(models, long_context_decode_matches_reference, 0, 4);
    tcase_add_test(models, backend_selection_is_checked);
    suite_add_tcase(s, models);
    return s;
}

HYLO_TEST_MAIN
