/* test_gdn.c: the Gated DeltaNet reference (spec sec. 5): the chunked WY / UT-transform form
 * against the token recurrence, closed forms of the delta rule, prefill against decode, and
 * HF transformers' Qwen3-Next functions and mixer (golden/hf_blocks/gdn-*.safetensors). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/gdn.h"
#include "testutil.h"

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* Float buffers freed together. */
typedef struct {
    float *bufs[48];
    int n;
} pool;

static float *pool_alloc(pool *p, int64_t n)
{
    ck_assert_int_lt(p->n, 48);
    float *x = calloc((size_t)(n > 0 ? n : 1), sizeof *x);
    ck_assert_ptr_nonnull(x);
    return p->bufs[p->n++] = x;
}

static float *pool_normal(pool *p, hylo_test_rng *rng, int64_t n, double mean, double std)
{
    float *x = pool_alloc(p, n);
    hylo_test_fill_normal(rng, x, (size_t)n, std);
    for (int64_t i = 0; i < n; i++) x[i] += (float)mean;
    return x;
}

static void pool_free(pool *p)
{
    for (int i = 0; i < p->n; i++) free(p->bufs[i]);
    p->n = 0;
}

/* Asserts NMSE(a, r) <= tol and returns it (to report the largest one measured). */
static double nmse_checked(const float *a, const float *r, int64_t n, double tol,
                           const char *what)
{
    ck_assert_nmse(a, r, (size_t)n, tol, what);
    return hylo_nmse(a, r, (size_t)n);
}

static hylo_gdn_dims rule_dims(int64_t Hk, int64_t Hv, int64_t dk, int64_t dv, int64_t chunk)
{
    hylo_gdn_dims d = {0};
    d.k_heads = Hk;
    d.v_heads = Hv;
    d.head_k = dk;
    d.head_v = dv;
    d.chunk = chunk;
    return d;
}

/* Inputs of the bare rule: q, k normalized as the mixer does, g and beta through the mixer's
 * gates from random pre-activations, and a nonzero initial state S0. */
typedef struct {
    hylo_gdn_dims d;
    int64_t T;
    float *q, *k, *v, *g, *beta, *S0;
} rule_case;

static rule_case rule_case_random(pool *p, hylo_gdn_dims d, int64_t T, uint64_t seed)
{
    hylo_test_rng rng = {seed};
    rule_case c = {d, T, NULL, NULL, NULL, NULL, NULL, NULL};
    c.q = pool_normal(p, &rng, T * d.k_heads * d.head_k, 0.0, 1.0);
    c.k = pool_normal(p, &rng, T * d.k_heads * d.head_k, 0.0, 1.0);
    c.v = pool_normal(p, &rng, T * d.v_heads * d.head_v, 0.0, 1.0);
    hylo_ref_l2norm(c.q, T * d.k_heads, d.head_k, 1e-6, 1.0 / sqrt((double)d.head_k));
    hylo_ref_l2norm(c.k, T * d.k_heads, d.head_k, 1e-6, 1.0);
    float *a = pool_normal(p, &rng, T * d.v_heads, 0.0, 1.0);
    float *b = pool_normal(p, &rng, T * d.v_heads, 0.0, 1.5);
    float *A_log = pool_normal(p, &rng, d.v_heads, -2.0, 0.5);
    float *dt_bias = pool_normal(p, &rng, d.v_heads, 0.0, 0.5);
    c.g = pool_alloc(p, T * d.v_heads);
    c.beta = pool_alloc(p, T * d.v_heads);
    hylo_ref_gdn_gates(a, b, A_log, dt_bias, c.g, c.beta, T, d.v_heads);
    c.S0 = pool_normal(p, &rng, d.v_heads * d.head_k * d.head_v, 0.0, 0.5);
    return c;
}

/* Runs the rule from c's initial state: o [T, Hv, dv], S [Hv, dk, dv]. */
static void run_rule(const rule_case *c, int64_t chunk, hylo_scan scan, float *o, float *S)
{
    hylo_gdn_dims d = c->d;
    d.chunk = chunk;
    hylo_error err = {0};
    memcpy(S, c->S0, (size_t)(d.v_heads * d.head_k * d.head_v) * sizeof *S);
    ck_assert_ok(hylo_ref_gated_delta_rule(&d, c->q, c->k, c->v, c->g, c->beta, S, o, c->T,
                                           scan, &err),
                 &err);
}

/* ------------------------------------------------------------------------------------------ */
/* The bare rule                                                                               */
/* ------------------------------------------------------------------------------------------ */

/* Chunk lengths 1, 3, 16, 64 (64 > T for most lengths), T = 1 and lengths that are not
 * multiples of the chunk, H_v = 2 H_k, a nonzero initial state. */
START_TEST(chunked_matches_recurrence)
{
    const int64_t chunks[] = {1, 3, 16, 64}, lengths[] = {1, 7, 50, 130};
    const int64_t Hv = 4, dk = 16, dv = 12;
    double worst_o = 0.0, worst_S = 0.0;
    for (size_t li = 0; li < 4; li++) {
        pool p = {0};
        const int64_t T = lengths[li];
        rule_case c = rule_case_random(&p, rule_dims(2, Hv, dk, dv, 0), T, 100 + li);
        float *o_rec = pool_alloc(&p, T * Hv * dv), *S_rec = pool_alloc(&p, Hv * dk * dv);
        float *o = pool_alloc(&p, T * Hv * dv), *S = pool_alloc(&p, Hv * dk * dv);
        run_rule(&c, 0, HYLO_SCAN_RECURRENT, o_rec, S_rec);
        for (size_t ci = 0; ci < 4; ci++) {
            char what[96];
            run_rule(&c, chunks[ci], HYLO_SCAN_CHUNKED, o, S);
            /* Both forms accumulate in double and round once to fp32: measured NMSE 0 (the
             * same fp32 values); 1e-12 leaves room for a different double summation order,
             * while a dropped term or a wrong decay gives > 1e-4. */
            snprintf(what, sizeof what, "o, T %lld, chunk %lld", (long long)T,
                     (long long)chunks[ci]);
            worst_o = fmax(worst_o, nmse_checked(o, o_rec, T * Hv * dv, 1e-12, what));
            snprintf(what, sizeof what, "S, T %lld, chunk %lld", (long long)T,
                     (long long)chunks[ci]);
            worst_S = fmax(worst_S, nmse_checked(S, S_rec, Hv * dk * dv, 1e-12, what));
        }
        pool_free(&p);
    }
    printf("gdn: chunked vs recurrent rule: max NMSE o %.2e, S %.2e\n", worst_o, worst_S);
}
END_TEST

/* beta = 0: nothing is written, the state only decays:
 *   S_T = exp(sum_t g_t) S_0 ;  o_t = exp(G_t) q_t^T S_0 with G_t = sum_{s <= t} g_s        */
START_TEST(without_writes_state_only_decays)
{
    pool p = {0};
    const int64_t T = 10, Hk = 1, Hv = 2, dk = 6, dv = 5;
    rule_case c = rule_case_random(&p, rule_dims(Hk, Hv, dk, dv, 0), T, 7);
    memset(c.beta, 0, (size_t)(T * Hv) * sizeof *c.beta);
    float *o_want = pool_alloc(&p, T * Hv * dv), *S_want = pool_alloc(&p, Hv * dk * dv);
    for (int64_t h = 0; h < Hv; h++) {
        double G = 0.0;
        const float *S0 = c.S0 + h * dk * dv;
        for (int64_t t = 0; t < T; t++) {
            G += c.g[t * Hv + h];
            const float *qt = c.q + (t * Hk + h / (Hv / Hk)) * dk;
            for (int64_t e = 0; e < dv; e++) {
                double acc = 0.0;
                for (int64_t i = 0; i < dk; i++) acc += (double)qt[i] * S0[i * dv + e];
                o_want[(t * Hv + h) * dv + e] = (float)(exp(G) * acc);
            }
        }
        for (int64_t i = 0; i < dk * dv; i++) S_want[h * dk * dv + i] = (float)(exp(G) * S0[i]);
    }
    float *o = pool_alloc(&p, T * Hv * dv), *S = pool_alloc(&p, Hv * dk * dv);
    const hylo_scan scans[2] = {HYLO_SCAN_RECURRENT, HYLO_SCAN_CHUNKED};
    for (int s = 0; s < 2; s++) {
        run_rule(&c, 3, scans[s], o, S);
        /* double on both sides, each rounded once to fp32 (measured NMSE 0) */
        ck_assert_nmse(o, o_want, (size_t)(T * Hv * dv), 1e-12, "o with beta = 0");
        ck_assert_nmse(S, S_want, (size_t)(Hv * dk * dv), 1e-12, "S with beta = 0");
    }
    pool_free(&p);
}
END_TEST

/* n orthonormal keys (rows of key [n, dk]) by Gram-Schmidt of random vectors, in double. */
static void orthonormal_rows(hylo_test_rng *rng, float *key, int64_t n, int64_t dk)
{
    double *basis = malloc((size_t)(n * dk) * sizeof *basis);
    ck_assert_ptr_nonnull(basis);
    for (int64_t i = 0; i < n; i++) {
        double *bi = basis + i * dk;
        for (int64_t d = 0; d < dk; d++) bi[d] = hylo_test_normal(rng);
        for (int64_t j = 0; j < i; j++) {
            double proj = 0.0;
            for (int64_t d = 0; d < dk; d++) proj += bi[d] * basis[j * dk + d];
            for (int64_t d = 0; d < dk; d++) bi[d] -= proj * basis[j * dk + d];
        }
        double norm = 0.0;
        for (int64_t d = 0; d < dk; d++) norm += bi[d] * bi[d];
        for (int64_t d = 0; d < dk; d++) {
            bi[d] /= sqrt(norm);
            key[i * dk + d] = (float)bi[d];
        }
    }
    free(basis);
}

/* g = 0, beta = 1, orthonormal keys: each write replaces what the state returns for its key
 * (k^T (S + k u^T) = k^T S + u = v), whatever the initial state, and leaves the other keys
 * alone. Writing (k_j, v_j) with q_j = k_j returns v_j at once; a later read-only pass
 * (beta = 0) with q = k_j in reverse order returns v_j again. */
START_TEST(orthonormal_keys_are_stored_exactly)
{
    pool p = {0};
    hylo_test_rng rng = {99};
    const int64_t n = 6, dk = 8, dv = 5;
    rule_case c = rule_case_random(&p, rule_dims(1, 1, dk, dv, 4), n, 5);
    orthonormal_rows(&rng, c.k, n, dk);
    memcpy(c.q, c.k, (size_t)(n * dk) * sizeof *c.q);
    for (int64_t t = 0; t < n; t++) {
        c.g[t] = 0.0f;
        c.beta[t] = 1.0f;
    }
    /* the read pass: q_t = k_{n-1-t}, expecting v_{n-1-t} */
    float *q_read = pool_alloc(&p, n * dk), *v_want = pool_alloc(&p, n * dv);
    float *zeros = pool_alloc(&p, n);
    for (int64_t t = 0; t < n; t++) {
        memcpy(q_read + t * dk, c.k + (n - 1 - t) * dk, (size_t)dk * sizeof *q_read);
        memcpy(v_want + t * dv, c.v + (n - 1 - t) * dv, (size_t)dv * sizeof *v_want);
    }
    float *o = pool_alloc(&p, n * dv), *S = pool_alloc(&p, dk * dv);
    const hylo_scan scans[2] = {HYLO_SCAN_RECURRENT, HYLO_SCAN_CHUNKED};
    hylo_error err = {0};
    for (int s = 0; s < 2; s++) {
        run_rule(&c, 4, scans[s], o, S);
        /* fp32 keys are orthonormal only to ~1e-7 (measured NMSE <= 1e-15); forgetting the
         * delta correction (plain linear attention) gives ~1 */
        ck_assert_nmse(o, c.v, (size_t)(n * dv), 1e-12, "write then read the same key");
        ck_assert_ok(hylo_ref_gated_delta_rule(&c.d, q_read, c.k, c.v, zeros, zeros, S, o, n,
                                               scans[s], &err),
                     &err);
        ck_assert_nmse(o, v_want, (size_t)(n * dv), 1e-12, "read back every key");
    }
    pool_free(&p);
}
END_TEST

/* H_v = 3 H_k equals H_k' = H_v with q, k repeated per value head (hv reads hv / 3): same
 * arithmetic in the same order, so bit-identical. */
START_TEST(gqa_equals_repeated_heads)
{
    pool p = {0};
    const int64_t T = 9, Hk = 2, Hv = 6, dk = 4, dv = 3, rep = Hv / Hk;
    rule_case c = rule_case_random(&p, rule_dims(Hk, Hv, dk, dv, 0), T, 11);
    rule_case wide = c;
    wide.d.k_heads = Hv;
    wide.q = pool_alloc(&p, T * Hv * dk);
    wide.k = pool_alloc(&p, T * Hv * dk);
    for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < Hv; h++) {
            size_t bytes = (size_t)dk * sizeof(float);
            memcpy(wide.q + (t * Hv + h) * dk, c.q + (t * Hk + h / rep) * dk, bytes);
            memcpy(wide.k + (t * Hv + h) * dk, c.k + (t * Hk + h / rep) * dk, bytes);
        }
    float *o = pool_alloc(&p, T * Hv * dv), *S = pool_alloc(&p, Hv * dk * dv);
    float *o2 = pool_alloc(&p, T * Hv * dv), *S2 = pool_alloc(&p, Hv * dk * dv);
    const hylo_scan scans[2] = {HYLO_SCAN_RECURRENT, HYLO_SCAN_CHUNKED};
    for (int s = 0; s < 2; s++) {
        run_rule(&c, 4, scans[s], o, S);
        run_rule(&wide, 4, scans[s], o2, S2);
        ck_assert_mem_eq(o, o2, (size_t)(T * Hv * dv) * sizeof *o);
        ck_assert_mem_eq(S, S2, (size_t)(Hv * dk * dv) * sizeof *S);
    }
    pool_free(&p);
}
END_TEST

START_TEST(rule_rejects_bad_sizes_and_leaves_state)
{
    float S[12] = {1, 2, 3}, S_before[12];
    memcpy(S_before, S, sizeof S);
    const float x[12] = {0};
    float o[12];
    hylo_error err = {0};
    hylo_gdn_dims d = rule_dims(2, 3, 2, 2, 4); /* H_v not a multiple of H_k */
    ck_assert_int_eq(hylo_ref_gated_delta_rule(&d, x, x, x, x, x, S, o, 1, HYLO_SCAN_CHUNKED,
                                               &err),
                     HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "multiple"));
    d = rule_dims(1, 1, 2, 2, 0); /* chunk 0 is only wrong for the chunked form */
    ck_assert_int_eq(hylo_ref_gated_delta_rule(&d, x, x, x, x, x, S, o, 1, HYLO_SCAN_CHUNKED,
                                               &err),
                     HYLO_ERR_USAGE);
    ck_assert_mem_eq(S, S_before, sizeof S);
    ck_assert_ok(hylo_ref_gated_delta_rule(&d, x, x, x, x, x, S, o, 1, HYLO_SCAN_RECURRENT,
                                           &err),
                 &err);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Normalization and gates                                                                     */
/* ------------------------------------------------------------------------------------------ */

START_TEST(l2norm_and_gates_closed_form)
{
    /* [3, 4] -> scale [3, 4] / sqrt(25 + eps) */
    float x[2] = {3, 4};
    hylo_ref_l2norm(x, 1, 2, 1e-6, 0.5);
    ck_assert_double_eq_tol(x[0], 0.5 * 3 / sqrt(25 + 1e-6), 1e-7);
    ck_assert_double_eq_tol(x[1], 0.5 * 4 / sqrt(25 + 1e-6), 1e-7);

    /* g = -exp(A_log) softplus(a + dt_bias), beta = sigmoid(b), at pre-activations from
     * -800 to 800: no overflow, softplus(z) -> z and -> exp(z) at the two ends. */
    enum { N = 5 };
    const float pre[N] = {-800, -30, 0, 30, 800};
    const double softplus_want[N] = {0.0, exp(-30.0), log(2.0), 30.0 + exp(-30.0), 800.0};
    const double sigmoid_want[N] = {0.0, 1.0 / (1.0 + exp(30.0)), 0.5, 1.0 / (1.0 + exp(-30.0)),
                                    1.0};
    const float A_log[1] = {0.25f}, dt_bias[1] = {0.0f};
    float g[N], beta[N];
    hylo_ref_gdn_gates(pre, pre, A_log, dt_bias, g, beta, N, 1);
    for (int i = 0; i < N; i++) {
        double want = -exp(0.25) * softplus_want[i];
        ck_assert_msg(isfinite(g[i]) && isfinite(beta[i]), "non-finite gate at %g", pre[i]);
        ck_assert_double_eq_tol(g[i], want, 1e-6 * fmax(fabs(want), 1e-30)); /* fp32 rounding */
        ck_assert_double_eq_tol(beta[i], sigmoid_want[i], 1e-7 * fmax(sigmoid_want[i], 1e-30));
    }
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* The mixer                                                                                   */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    hylo_gdn_dims d;
    hylo_gdn_weights w;
} gdn_mixer;

static gdn_mixer mixer_random(pool *p, uint64_t seed)
{
    hylo_test_rng rng = {seed};
    gdn_mixer m;
    m.d = (hylo_gdn_dims){.hidden = 24, .k_heads = 2, .v_heads = 4, .head_k = 8, .head_v = 6,
                          .d_conv = 4, .chunk = 4, .eps = 1e-6};
    const int64_t D = m.d.hidden, nk = m.d.k_heads * m.d.head_k,
                  nv = m.d.v_heads * m.d.head_v, Hv = m.d.v_heads, K = m.d.d_conv;
    const double s = 1.0 / sqrt((double)D);
    m.w.q_proj = pool_normal(p, &rng, nk * D, 0.0, s);
    m.w.k_proj = pool_normal(p, &rng, nk * D, 0.0, s);
    m.w.v_proj = pool_normal(p, &rng, nv * D, 0.0, s);
    m.w.g_proj = pool_normal(p, &rng, nv * D, 0.0, s);
    m.w.a_proj = pool_normal(p, &rng, Hv * D, 0.0, s);
    m.w.b_proj = pool_normal(p, &rng, Hv * D, 0.0, s);
    m.w.A_log = pool_normal(p, &rng, Hv, -1.5, 0.5);
    m.w.dt_bias = pool_normal(p, &rng, Hv, 0.0, 0.5);
    m.w.q_conv = pool_normal(p, &rng, nk * K, 0.0, 0.4);
    m.w.k_conv = pool_normal(p, &rng, nk * K, 0.0, 0.4);
    m.w.v_conv = pool_normal(p, &rng, nv * K, 0.0, 0.4);
    m.w.o_norm = pool_normal(p, &rng, m.d.head_v, 1.0, 0.2);
    m.w.o_proj = pool_normal(p, &rng, D * nv, 0.0, 1.0 / sqrt((double)nv));
    return m;
}

static int64_t conv_len(const hylo_gdn_dims *d, int which)
{
    return (which < 2 ? d->k_heads * d->head_k : d->v_heads * d->head_v) * (d->d_conv - 1);
}

static hylo_gdn_state state_zero(pool *p, const hylo_gdn_dims *d)
{
    hylo_gdn_state s;
    s.q_conv = pool_alloc(p, conv_len(d, 0));
    s.k_conv = pool_alloc(p, conv_len(d, 1));
    s.v_conv = pool_alloc(p, conv_len(d, 2));
    s.S = pool_alloc(p, d->v_heads * d->head_k * d->head_v);
    return s;
}

/* The conv states must agree exactly (the same inputs copied); S within tol. */
static void assert_states_match(const hylo_gdn_dims *d, const hylo_gdn_state *a,
                                const hylo_gdn_state *b, double tol, const char *what)
{
    ck_assert_mem_eq(a->q_conv, b->q_conv, (size_t)conv_len(d, 0) * sizeof(float));
    ck_assert_mem_eq(a->k_conv, b->k_conv, (size_t)conv_len(d, 1) * sizeof(float));
    ck_assert_mem_eq(a->v_conv, b->v_conv, (size_t)conv_len(d, 2) * sizeof(float));
    ck_assert_nmse(a->S, b->S, (size_t)(d->v_heads * d->head_k * d->head_v), tol, what);
}

/* Prefill of T tokens (chunked, chunk 4: three chunks and a remainder) against T one-token
 * decode steps (recurrence), conv and S states carried between the steps. */
START_TEST(prefill_matches_token_by_token_decode)
{
    pool p = {0};
    hylo_test_rng rng = {3};
    gdn_mixer m = mixer_random(&p, 41);
    const int64_t T = 15, D = m.d.hidden;
    float *x = pool_normal(&p, &rng, T * D, 0.0, 1.0);
    float *y = pool_alloc(&p, T * D), *y_dec = pool_alloc(&p, T * D);
    hylo_gdn_state s = state_zero(&p, &m.d), s_dec = state_zero(&p, &m.d);
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &s, x, T, y, HYLO_SCAN_CHUNKED, NULL, &err), &err);
    for (int64_t t = 0; t < T; t++)
        ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &s_dec, x + t * D, 1, y_dec + t * D,
                                          HYLO_SCAN_RECURRENT, NULL, &err),
                     &err);
    /* decode rounds S to fp32 after every token, prefill once at the end: measured NMSE
     * 5e-15 (y) and 2e-15 (S); 1e-12 still fails any formula error by orders */
    double ny = nmse_checked(y_dec, y, T * D, 1e-12, "y: decode vs prefill");
    double ns = hylo_nmse(s_dec.S, s.S, (size_t)(m.d.v_heads * m.d.head_k * m.d.head_v));
    assert_states_match(&m.d, &s_dec, &s, 1e-12, "S: decode vs prefill");
    printf("gdn: prefill vs token-by-token decode: NMSE y %.2e, S %.2e\n", ny, ns);
    pool_free(&p);
}
END_TEST

/* prefill(a) then prefill(b) equals prefill(a + b): 6 + 9 tokens, the split off the chunk
 * grid (chunk 4). */
START_TEST(split_prefill_matches_one_prefill)
{
    pool p = {0};
    hylo_test_rng rng = {4};
    gdn_mixer m = mixer_random(&p, 43);
    const int64_t a = 6, b = 9, D = m.d.hidden;
    float *x = pool_normal(&p, &rng, (a + b) * D, 0.0, 1.0);
    float *y = pool_alloc(&p, (a + b) * D), *y2 = pool_alloc(&p, (a + b) * D);
    hylo_gdn_state s = state_zero(&p, &m.d), s2 = state_zero(&p, &m.d);
    hylo_error err = {0};
    ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &s, x, a + b, y, HYLO_SCAN_CHUNKED, NULL, &err),
                 &err);
    ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &s2, x, a, y2, HYLO_SCAN_CHUNKED, NULL, &err), &err);
    ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &s2, x + a * D, b, y2 + a * D,
                                      HYLO_SCAN_CHUNKED, NULL, &err),
                 &err);
    /* one extra fp32 rounding of S at the split (measured NMSE 5e-16) */
    double ny = nmse_checked(y2, y, (a + b) * D, 1e-12, "y: split vs one prefill");
    assert_states_match(&m.d, &s2, &s, 1e-12, "S: split vs one prefill");
    printf("gdn: prefill(a) + prefill(b) vs prefill(a+b): NMSE y %.2e\n", ny);
    pool_free(&p);
}
END_TEST

START_TEST(forward_rejects_bad_sizes_and_leaves_state)
{
    pool p = {0};
    gdn_mixer m = mixer_random(&p, 47);
    hylo_gdn_state s = state_zero(&p, &m.d);
    s.q_conv[0] = 1.0f;
    const float x[24] = {1};
    float y[24];
    hylo_error err = {0};
    m.d.v_heads = 3; /* not a multiple of H_k = 2 */
    ck_assert_int_eq(hylo_ref_gdn_forward(&m.d, &m.w, &s, x, 1, y, HYLO_SCAN_CHUNKED, NULL, &err),
                     HYLO_ERR_USAGE);
    ck_assert_float_eq(s.q_conv[0], 1.0f);
    m.d.v_heads = 4;
    m.d.d_conv = 0;
    ck_assert_int_eq(hylo_ref_gdn_forward(&m.d, &m.w, &s, x, 1, y, HYLO_SCAN_CHUNKED, NULL, &err),
                     HYLO_ERR_USAGE);
    m.d.d_conv = 4;
    ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &s, x, 0, y, HYLO_SCAN_CHUNKED, NULL, &err), &err);
    ck_assert_float_eq(s.q_conv[0], 1.0f);
    pool_free(&p);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* HF transformers (Qwen3-Next) golden data                                                    */
/* ------------------------------------------------------------------------------------------ */

/* A golden file and fp32 copies of the tensors read from it (the mapping is not aligned). */
typedef struct {
    hylo_safetensors *st;
    pool copies;
} golden;

static golden golden_open(const char *name)
{
    const char *root = getenv("HYLO_TEST_ROOT");
    char path[1024];
    snprintf(path, sizeof path, "%s/golden/hf_blocks/%s", root ? root : ".", name);
    golden g = {0};
    hylo_error err = {0};
    ck_assert_ok(hylo_safetensors_open(path, &g.st, &err), &err);
    return g;
}

static int64_t golden_meta(const golden *g, const char *key)
{
    const char *v = hylo_safetensors_metadata(g->st, key);
    ck_assert_msg(v != NULL, "golden metadata %s missing", key);
    return atoll(v);
}

/* A copy of tensor `name`, which must be F32 with `numel` elements. */
static float *golden_get(golden *g, const char *name, int64_t numel)
{
    const hylo_tensor_view *t = hylo_safetensors_find(g->st, name);
    ck_assert_msg(t != NULL, "golden tensor %s missing", name);
    ck_assert_msg(t->dtype == HYLO_F32 && t->numel == numel, "golden %s: %s with %lld elements",
                  name, hylo_dtype_name(t->dtype), (long long)t->numel);
    float *x = pool_alloc(&g->copies, numel);
    memcpy(x, t->data, t->nbytes);
    return x;
}

static void golden_close(golden *g)
{
    pool_free(&g->copies);
    hylo_safetensors_close(g->st);
}

/* HF computes in fp32 (the rule, its triangular solves, the mixer's projections and norm),
 * hylo accumulates in double: measured NMSE 2e-14 to 3e-14 for the rule and 2e-13 for the
 * mixer (README_gdn.md); 1e-10 keeps a wide margin over that rounding while a wrong q scale,
 * head mapping, decay, gate or norm order gives > 1e-3. */
#define HF_TOL 1e-10

/* Both hylo forms against both HF functions, q/k normalized by hylo_ref_l2norm. */
START_TEST(rule_matches_transformers)
{
    golden g = golden_open("gdn-rule.safetensors");
    const int64_t T = golden_meta(&g, "seq_len");
    hylo_gdn_dims d = rule_dims(golden_meta(&g, "k_heads"), golden_meta(&g, "v_heads"),
                                golden_meta(&g, "head_k"), golden_meta(&g, "head_v"),
                                golden_meta(&g, "chunk"));
    const int64_t nq = T * d.k_heads * d.head_k, no = T * d.v_heads * d.head_v,
                  ns = d.v_heads * d.head_k * d.head_v;
    rule_case c = {d, T, golden_get(&g, "q", nq), golden_get(&g, "k", nq),
                   golden_get(&g, "v", no), golden_get(&g, "g", T * d.v_heads),
                   golden_get(&g, "beta", T * d.v_heads), golden_get(&g, "initial_state", ns)};
    hylo_ref_l2norm(c.q, T * d.k_heads, d.head_k, 1e-6, 1.0 / sqrt((double)d.head_k));
    hylo_ref_l2norm(c.k, T * d.k_heads, d.head_k, 1e-6, 1.0);
    const char *hf_names[2] = {"chunk", "recurrent"};
    const hylo_scan scans[2] = {HYLO_SCAN_CHUNKED, HYLO_SCAN_RECURRENT};
    float *o = pool_alloc(&g.copies, no), *S = pool_alloc(&g.copies, ns);
    for (int s = 0; s < 2; s++) {
        run_rule(&c, d.chunk, scans[s], o, S);
        for (int h = 0; h < 2; h++) {
            char name[64], what[96];
            snprintf(name, sizeof name, "%s.o", hf_names[h]);
            const float *o_hf = golden_get(&g, name, no);
            snprintf(name, sizeof name, "%s.final_state", hf_names[h]);
            const float *S_hf = golden_get(&g, name, ns);
            snprintf(what, sizeof what, "hylo %s vs HF %s", hf_names[s], hf_names[h]);
            ck_assert_nmse(o, o_hf, (size_t)no, HF_TOL, what);
            ck_assert_nmse(S, S_hf, (size_t)ns, HF_TOL, what);
            printf("gdn: rule, %s: NMSE o %.2e, final state %.2e\n", what,
                   hylo_nmse(o, o_hf, (size_t)no), hylo_nmse(S, S_hf, (size_t)ns));
        }
    }
    golden_close(&g);
}
END_TEST

/* Qwen3NextGatedDeltaNet (fp32, zero state) against hylo_ref_gdn_forward on its re-sliced
 * weights, both forms. */
START_TEST(mixer_matches_transformers)
{
    golden g = golden_open("gdn-mixer.safetensors");
    gdn_mixer m;
    m.d = (hylo_gdn_dims){.hidden = golden_meta(&g, "hidden"),
                          .k_heads = golden_meta(&g, "k_heads"),
                          .v_heads = golden_meta(&g, "v_heads"),
                          .head_k = golden_meta(&g, "head_k"),
                          .head_v = golden_meta(&g, "head_v"),
                          .d_conv = golden_meta(&g, "d_conv"),
                          .chunk = 64,
                          .eps = atof(hylo_safetensors_metadata(g.st, "eps"))};
    const int64_t D = m.d.hidden, nk = m.d.k_heads * m.d.head_k,
                  nv = m.d.v_heads * m.d.head_v, Hv = m.d.v_heads, K = m.d.d_conv;
    const int64_t T = golden_meta(&g, "seq_len");
    m.w = (hylo_gdn_weights){golden_get(&g, "q_proj.weight", nk * D),
                             golden_get(&g, "k_proj.weight", nk * D),
                             golden_get(&g, "v_proj.weight", nv * D),
                             golden_get(&g, "g_proj.weight", nv * D),
                             golden_get(&g, "a_proj.weight", Hv * D),
                             golden_get(&g, "b_proj.weight", Hv * D),
                             golden_get(&g, "A_log", Hv),
                             golden_get(&g, "dt_bias", Hv),
                             golden_get(&g, "q_conv1d.weight", nk * K),
                             golden_get(&g, "k_conv1d.weight", nk * K),
                             golden_get(&g, "v_conv1d.weight", nv * K),
                             golden_get(&g, "o_norm.weight", m.d.head_v),
                             golden_get(&g, "o_proj.weight", D * nv)};
    const float *x = golden_get(&g, "input", T * D), *y_hf = golden_get(&g, "output", T * D);
    float *y = pool_alloc(&g.copies, T * D);
    hylo_error err = {0};
    const char *names[2] = {"chunked", "recurrent"};
    const hylo_scan scans[2] = {HYLO_SCAN_CHUNKED, HYLO_SCAN_RECURRENT};
    for (int s = 0; s < 2; s++) {
        hylo_gdn_state st = state_zero(&g.copies, &m.d);
        ck_assert_ok(hylo_ref_gdn_forward(&m.d, &m.w, &st, x, T, y, scans[s], NULL, &err), &err);
        ck_assert_nmse(y, y_hf, (size_t)(T * D), HF_TOL, names[s]);
        printf("gdn: mixer, hylo %s vs HF Qwen3NextGatedDeltaNet: NMSE y %.2e\n", names[s],
               hylo_nmse(y, y_hf, (size_t)(T * D)));
    }
    golden_close(&g);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("gdn");
    TCase *rule = tcase_create("rule");
    tcase_add_test(rule, chunked_matches_recurrence);
    tcase_add_test(rule, without_writes_state_only_decays);
    tcase_add_test(rule, orthonormal_keys_are_stored_exactly);
    tcase_add_test(rule, gqa_equals_repeated_heads);
    tcase_add_test(rule, rule_rejects_bad_sizes_and_leaves_state);
    tcase_add_test(rule, l2norm_and_gates_closed_form);
    suite_add_tcase(s, rule);
    TCase *mixer = tcase_create("mixer");
    tcase_add_test(mixer, prefill_matches_token_by_token_decode);
    tcase_add_test(mixer, split_prefill_matches_one_prefill);
    tcase_add_test(mixer, forward_rejects_bad_sizes_and_leaves_state);
    suite_add_tcase(s, mixer);
    TCase *hf = tcase_create("transformers");
    tcase_add_test(hf, rule_matches_transformers);
    tcase_add_test(hf, mixer_matches_transformers);
    suite_add_tcase(s, hf);
    return s;
}

HYLO_TEST_MAIN
