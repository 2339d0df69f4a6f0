/* test_upcycle.c: upcycling a teacher into a hybrid (spec sec. 7) and assembling hybrids:
 * the exactness case, Eckart-Young, the dynamic rank, every mapped slice element by element,
 * bit-exact copies, fresh inits, assemble == direct upcycle, output safety, bad inputs, the
 * probe and the CLI. Teachers are the tiny presets, made in scratch directories. */
#include <cjson/cJSON.h>
#include <dirent.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"
#include "upcycle/upcycle.h"

/* LAPACK's QR-iteration SVD: singular values independent of the divide-and-conquer dgesdd the
 * upcycler uses. */
void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a,
             const int *lda, double *s, double *u, const int *ldu, double *vt, const int *ldvt,
             double *work, const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

/* s [min(m, n)] <- the singular values of the row-major A [m, n], descending. */
static void singular_values(const double *A, int m, int n, double *s)
{
    double *a = malloc((size_t)m * (size_t)n * sizeof *a), query, dummy = 0.0;
    ck_assert_ptr_nonnull(a);
    memcpy(a, A, (size_t)m * (size_t)n * sizeof *a);
    int lwork = -1, info = 0, one = 1;
    dgesvd_("N", "N", &n, &m, a, &n, s, &dummy, &one, &dummy, &one, &query, &lwork, &info, 1, 1);
    lwork = (int)query;
    double *work = malloc((size_t)lwork * sizeof *work);
    ck_assert_ptr_nonnull(work);
    dgesvd_("N", "N", &n, &m, a, &n, s, &dummy, &one, &dummy, &one, work, &lwork, &info, 1, 1);
    ck_assert_int_eq(info, 0);
    free(work);
    free(a);
}

/* ---- helpers ---------------------------------------------------------------------------------- */

static hylo_config preset(const char *name)
{
    hylo_config cfg;
    hylo_error err = {0};
    ck_assert_ok(hylo_preset(name, &cfg, &err), &err);
    return cfg;
}

static char *make_teacher(const hylo_config *cfg, uint64_t seed)
{
    char *dir = hylo_test_tmpdir("teacher");
    hylo_error err = {0};
    ck_assert_ok(hylo_init_random(cfg, NULL, seed, dir, 0, &err), &err);
    return dir;
}

static hylo_hybrid_config layout_of(const hylo_config *cfg, const char *layout)
{
    hylo_hybrid_config hy;
    hylo_error err = {0};
    ck_assert_ok(hylo_hybrid_layout(cfg, layout, &hy, &err), &err);
    return hy;
}

/* The library's defaults without the probe (tests that want it ask). */
static hylo_upcycle_options options(uint64_t seed)
{
    hylo_upcycle_options o = hylo_upcycle_options_default();
    o.seed = seed;
    o.probe_tokens = 0;
    return o;
}

static char *upcycle(const char *teacher, const hylo_hybrid_config *hy,
                     const hylo_upcycle_options *o, hylo_upcycle_report *report)
{
    char *out = hylo_test_tmpdir("hybrid");
    hylo_upcycle_report local;
    hylo_error err = {0};
    ck_assert_ok(hylo_upcycle(teacher, hy, o, out, report ? report : &local, &err), &err);
    return out;
}

static hylo_checkpoint *open_ckpt(const char *dir)
{
    hylo_checkpoint *ck = NULL;
    hylo_error err = {0};
    ck_assert_ok(hylo_checkpoint_open(dir, &ck, &err), &err);
    return ck;
}

__attribute__((format(printf, 2, 3)))
static const hylo_tensor_view *tensor(const hylo_checkpoint *ck, const char *fmt, ...)
{
    char name[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    const hylo_tensor_view *v = hylo_checkpoint_find(ck, name);
    ck_assert_msg(v != NULL, "tensor %s is missing", name);
    return v;
}

static float *widen(const hylo_tensor_view *v)
{
    float *f = malloc((size_t)v->numel * sizeof *f);
    ck_assert_ptr_nonnull(f);
    hylo_convert_to_f32(v->dtype, v->data, f, (size_t)v->numel);
    return f;
}

/* Elements per row (per first index) of v. */
static int64_t cols_of(const hylo_tensor_view *v)
{
    return v->numel / v->shape[0];
}

/* Rows [ra, ra + n) of a equal rows [rb, rb + n) of b byte for byte (same dtype and width). */
static bool rows_equal(const hylo_tensor_view *a, int64_t ra, const hylo_tensor_view *b,
                       int64_t rb, int64_t n)
{
    const size_t row = (size_t)cols_of(a) * hylo_dtype_size(a->dtype);
    ck_assert_int_eq(a->dtype, b->dtype);
    ck_assert_int_eq(cols_of(a), cols_of(b));
    return memcmp((const char *)a->data + (size_t)ra * row, (const char *)b->data + (size_t)rb * row,
                  (size_t)n * row) == 0;
}

static bool same_bytes(const hylo_tensor_view *a, const hylo_tensor_view *b)
{
    return a->dtype == b->dtype && a->nbytes == b->nbytes && memcmp(a->data, b->data, a->nbytes) == 0;
}

/* Every value of rows [r0, r1) of v lies in [-bound, bound] and not all are zero. */
static void assert_fresh_rows(const hylo_tensor_view *v, int64_t r0, int64_t r1, double bound)
{
    float *f = widen(v);
    const int64_t c = cols_of(v);
    double max = 0.0;
    for (int64_t i = r0 * c; i < r1 * c; i++) max = fmax(max, fabs(f[i]));
    ck_assert_msg(max > 0.0 && max <= bound, "fresh rows [%lld, %lld): max |w| %g, bound %g",
                  (long long)r0, (long long)r1, max, bound);
    free(f);
}

/* Every value of v equals `value`. */
static void assert_all(const hylo_tensor_view *v, float value)
{
    float *f = widen(v);
    for (int64_t i = 0; i < v->numel; i++) ck_assert_float_eq(f[i], value);
    free(f);
}

/* FNV-1a over the names, sizes and bytes of every entry of `dir`, in name order. */
static uint64_t hash_dir(const char *dir)
{
    struct dirent **names;
    int n = scandir(dir, &names, NULL, alphasort);
    ck_assert_int_ge(n, 0);
    uint64_t h = 1469598103934665603ull;
    for (int i = 0; i < n; i++) {
        char *path = hylo_test_join(dir, names[i]->d_name);
        size_t len = 0;
        unsigned char *bytes = names[i]->d_name[0] == '.' ? NULL : hylo_test_read_file(path, &len);
        for (const char *c = names[i]->d_name; *c; c++) h = (h ^ (unsigned char)*c) * 1099511628211ull;
        for (size_t k = 0; k < len; k++) h = (h ^ bytes[k]) * 1099511628211ull;
        h = (h ^ len) * 1099511628211ull;
        free(bytes);
        free(path);
        free(names[i]);
    }
    free(names);
    return h;
}

/* The MLA sizes of the exactness cases: full ranks, nope + rope = hd, v = hd, one KV head. */
static void full_rank_mla(hylo_hybrid_config *hy, const hylo_config *t)
{
    hylo_mla_config *m = &hy->mla;
    m->nope = t->head_dim / 2;
    m->rope = t->head_dim / 2;
    m->v = t->head_dim;
    m->kv_heads = t->num_kv_heads;
    m->q_rank = t->num_heads * t->head_dim < t->hidden_size ? t->num_heads * t->head_dim : t->hidden_size;
    m->kv_rank = 2 * m->kv_heads * t->head_dim < t->hidden_size ? 2 * m->kv_heads * t->head_dim
                                                                : t->hidden_size;
}

/* Runs teacher and student layer by layer on the teacher's layer inputs (teacher forcing) and
 * returns the worst per-layer NMSE of the mixer outputs; *logits_nmse gets the NMSE of the
 * students' own logits against the teacher's. */
static double compare_models(const char *teacher, const char *student, const int32_t *tokens,
                             int64_t T, double *logits_nmse)
{
    hylo_error err = {0};
    hylo_model *mt = NULL, *ms = NULL;
    hylo_state *st = NULL, *ss = NULL;
    ck_assert_ok(hylo_model_load(teacher, &mt, &err), &err);
    ck_assert_ok(hylo_model_load(student, &ms, &err), &err);
    ck_assert_ok(hylo_state_create(mt, T, &st, &err), &err);
    ck_assert_ok(hylo_state_create(ms, T, &ss, &err), &err);
    const hylo_config *c = hylo_model_config(mt);
    const size_t td = (size_t)(T * c->hidden_size), tv = (size_t)(T * c->vocab_size);
    float *x = malloc(td * sizeof *x), *yt = malloc(td * sizeof *yt), *ys = malloc(td * sizeof *ys);
    float *at = malloc(td * sizeof *at), *as = malloc(td * sizeof *as);
    float *lt = malloc(tv * sizeof *lt), *ls = malloc(tv * sizeof *ls);
    ck_assert(x && yt && ys && at && as && lt && ls);
    ck_assert_ok(hylo_embed(mt, tokens, T, x, &err), &err);
    double worst = 0.0;
    for (int64_t l = 0; l < c->num_layers; l++) {
        ck_assert_ok(hylo_layer_forward(mt, st, l, x, T, at, yt, &err), &err);
        ck_assert_ok(hylo_layer_forward(ms, ss, l, x, T, as, ys, &err), &err);
        worst = fmax(worst, hylo_nmse(as, at, td));
        memcpy(x, yt, td * sizeof *x);
    }
    hylo_state_free(st);
    hylo_state_free(ss);
    ck_assert_ok(hylo_state_create(mt, T, &st, &err), &err);
    ck_assert_ok(hylo_state_create(ms, T, &ss, &err), &err);
    ck_assert_ok(hylo_forward(mt, st, tokens, T, HYLO_LOGITS_ALL, lt, &err), &err);
    ck_assert_ok(hylo_forward(ms, ss, tokens, T, HYLO_LOGITS_ALL, ls, &err), &err);
    *logits_nmse = hylo_nmse(ls, lt, tv);
    free(x);
    free(yt);
    free(ys);
    free(at);
    free(as);
    free(lt);
    free(ls);
    hylo_state_free(st);
    hylo_state_free(ss);
    hylo_model_free(mt);
    hylo_model_free(ms);
    return worst;
}

/* ---- exactness (spec sec. 7) ------------------------------------------------------------------ */

/* The spec's case: a single-KV-head teacher without rope scaling, all-MLA at full ranks with
 * nope + rope = hd and v = hd, one token (position 0, where every rotation is the identity):
 * the MLA output equals the teacher attention output. The factors are fp32 roundings of a
 * double SVD (relative 6e-8 per entry), so products agree to NMSE ~1e-14; 1e-10 leaves margin
 * while any wrong slice, head or scale gives O(1). With one token only the value path
 * matters; the next test puts the scores to work. */
START_TEST(mla_equals_attention_on_one_token)
{
    hylo_config t = preset("tiny-llama");
    t.num_kv_heads = 1;
    t.rope = (hylo_rope_config){.type = HYLO_ROPE_DEFAULT, .theta = 500000.0, .factor = 1.0,
                                .beta_fast = 32.0, .beta_slow = 1.0, .truncate = true};
    t.dtype = HYLO_F32;
    char *teacher = make_teacher(&t, 3);
    hylo_hybrid_config hy = layout_of(&t, "all-mla");
    full_rank_mla(&hy, &t);
    hy.mla.rope_scaling.type = HYLO_ROPE_DEFAULT;
    hy.mla.rope_scaling.factor = 1.0;
    hylo_upcycle_options o = options(1);
    hylo_upcycle_report r;
    char *student = upcycle(teacher, &hy, &o, &r);
    for (int64_t l = 0; l < t.num_layers; l++) {
        ck_assert_double_eq_tol(r.layers[l].q_energy, 1.0, 1e-12);
        ck_assert_double_eq_tol(r.layers[l].kv_energy, 1.0, 1e-12);
    }
    const int32_t token = 77;
    double logits;
    double mixer = compare_models(teacher, student, &token, 1, &logits);
    printf("exactness (1 token): worst mixer NMSE %.3e, logits NMSE %.3e\n", mixer, logits);
    ck_assert_msg(mixer <= 1e-10, "mixer NMSE %.3e", mixer);
    ck_assert_msg(logits <= 1e-10, "logits NMSE %.3e", logits);
    free(teacher);
    free(student);
}
END_TEST

/* The same over 12 tokens with every rotation made the identity (linear scaling by 1e30 on
 * both sides: angles <= 1.1e-29, so cos = 1 and sin x rounds away in fp32): now scores and
 * softmax depend on q and k, and the agreement checks the Q and KV factors and the k_pe fill.
 * Same tolerance and reasoning as above. */
START_TEST(mla_equals_attention_without_rotation)
{
    hylo_config t = preset("tiny-llama");
    t.num_kv_heads = 1;
    t.rope = (hylo_rope_config){.type = HYLO_ROPE_LINEAR, .theta = 500000.0, .factor = 1e30,
                                .beta_fast = 32.0, .beta_slow = 1.0, .truncate = true};
    t.dtype = HYLO_F32;
    char *teacher = make_teacher(&t, 4);
    hylo_hybrid_config hy = layout_of(&t, "all-mla");
    full_rank_mla(&hy, &t);
    hy.mla.rope_scaling = t.rope;
    hylo_upcycle_options o = options(1);
    char *student = upcycle(teacher, &hy, &o, NULL);
    enum { T = 12 };
    const int32_t tokens[T] = {5, 200, 17, 17, 3, 99, 250, 0, 42, 8, 131, 64};
    double logits;
    double mixer = compare_models(teacher, student, tokens, T, &logits);
    printf("exactness (12 tokens, identity rotations): worst mixer NMSE %.3e, logits NMSE %.3e\n",
           mixer, logits);
    ck_assert_msg(mixer <= 1e-10, "mixer NMSE %.3e", mixer);
    ck_assert_msg(logits <= 1e-10, "logits NMSE %.3e", logits);
    free(teacher);
    free(student);
}
END_TEST

/* ---- SVD and ranks ------------------------------------------------------------------------------ */

/* Eckart-Young on the SVD itself, tall and wide: ||A - U_r S_r Vt_r||_F^2 equals the dropped
 * sigma^2 tail of the independent dgesvd values, and U, Vt have orthonormal columns / rows.
 * Everything in double: 1e-12 relative. */
START_TEST(svd_truncation_error_is_the_dropped_tail)
{
    const int shapes[2][2] = {{40, 24}, {24, 40}};
    for (int c = 0; c < 2; c++) {
        const int m = shapes[c][0], n = shapes[c][1], k = m < n ? m : n, r = 9;
        hylo_test_rng rng = {(uint64_t)(17 + c)};
        double *A = malloc((size_t)(m * n) * sizeof *A), *B = malloc((size_t)(m * n) * sizeof *B);
        double s[40];
        ck_assert(A && B);
        for (int i = 0; i < m * n; i++) A[i] = B[i] = hylo_test_normal(&rng);
        singular_values(A, m, n, s);
        hylo_svd svd;
        hylo_error err = {0};
        ck_assert_ok(hylo_svd_compute(B, m, n, true, &svd, &err), &err);
        double err2 = 0.0, tail = 0.0, total = 0.0, ortho = 0.0;
        for (int i = 0; i < m; i++)
            for (int j = 0; j < n; j++) {
                double p = 0.0;
                for (int a = 0; a < r; a++) p += svd.U[i * k + a] * svd.s[a] * svd.Vt[a * n + j];
                err2 += (A[i * n + j] - p) * (A[i * n + j] - p);
            }
        for (int a = 0; a < k; a++) {
            total += s[a] * s[a];
            if (a >= r) tail += s[a] * s[a];
            ck_assert_double_eq_tol(svd.s[a], s[a], 1e-12 * s[0]);
            for (int b = 0; b < k; b++) {
                double uu = 0.0, vv = 0.0;
                for (int i = 0; i < m; i++) uu += svd.U[i * k + a] * svd.U[i * k + b];
                for (int j = 0; j < n; j++) vv += svd.Vt[a * n + j] * svd.Vt[b * n + j];
                ortho = fmax(ortho, fmax(fabs(uu - (a == b)), fabs(vv - (a == b))));
            }
        }
        ck_assert_double_eq_tol(err2, tail, 1e-12 * total);
        ck_assert_double_eq_tol(hylo_svd_energy(svd.s, k, r), 1.0 - tail / total, 1e-12);
        ck_assert(ortho < 1e-12);
        hylo_svd_free(&svd);
        free(A);
        free(B);
    }
}
END_TEST

/* Eckart-Young through the upcycler: all-MLA with nope + rope = hd keeps every row of W_Q, so
 * q_b q_a is the rank-r_q truncation and its Frobenius error is the root of the dropped tail
 * of W_Q's singular values (dgesvd). The factors are fp32: their product moves by ~1e-7 of
 * ||W_Q||, the error (~0.5 ||W_Q|| here) by a relative ~1e-6; 1e-5 is the bound. The reported
 * energy is 1 - tail / total (double SVDs on both sides: 1e-10). KV keeps only the k_nope and
 * v rows of each head: their error is at most the tail of [W_K; W_V]. */
START_TEST(truncated_factors_meet_eckart_young)
{
    hylo_config t = preset("tiny-llama");
    t.dtype = HYLO_F32;
    char *teacher = make_teacher(&t, 5);
    hylo_hybrid_config hy = layout_of(&t, "all-mla");
    hy.mla.nope = 8;
    hy.mla.rope = 8;
    hy.mla.q_rank = 24;
    hy.mla.kv_rank = 16;
    hylo_upcycle_options o = options(2);
    hylo_upcycle_report r;
    char *student = upcycle(teacher, &hy, &o, &r);
    hylo_checkpoint *ct = open_ckpt(teacher), *cs = open_ckpt(student);
    const int64_t D = t.hidden_size, hd = t.head_dim, Hq = t.num_heads * hd, Hkv = t.num_kv_heads;
    double worst = 0.0;
    for (int64_t l = 0; l < t.num_layers; l++) {
        float *wq = widen(tensor(ct, "model.layers.%lld.self_attn.q_proj.weight", (long long)l));
        float *wk = widen(tensor(ct, "model.layers.%lld.self_attn.k_proj.weight", (long long)l));
        float *wv = widen(tensor(ct, "model.layers.%lld.self_attn.v_proj.weight", (long long)l));
        float *qa = widen(tensor(cs, "model.layers.%lld.mla.q_a_proj.weight", (long long)l));
        float *qb = widen(tensor(cs, "model.layers.%lld.mla.q_b_proj.weight", (long long)l));
        float *kva = widen(tensor(cs, "model.layers.%lld.mla.kv_a_proj_with_mqa.weight", (long long)l));
        float *kvb = widen(tensor(cs, "model.layers.%lld.mla.kv_b_proj.weight", (long long)l));
        /* Q */
        double A[64 * 64], s[64], err2 = 0.0, tail = 0.0, total = 0.0;
        for (int64_t i = 0; i < Hq * D; i++) A[i] = wq[i];
        singular_values(A, (int)Hq, (int)D, s);
        for (int64_t a = 0; a < 64; a++) {
            total += s[a] * s[a];
            tail += a >= 24 ? s[a] * s[a] : 0.0;
        }
        for (int64_t i = 0; i < Hq; i++)
            for (int64_t j = 0; j < D; j++) {
                double p = 0.0;
                for (int64_t a = 0; a < 24; a++) p += (double)qb[i * 24 + a] * qa[a * D + j];
                err2 += (wq[i * D + j] - p) * (wq[i * D + j] - p);
            }
        double rel = fabs(sqrt(err2) - sqrt(tail)) / sqrt(tail);
        worst = fmax(worst, rel);
        ck_assert_msg(rel < 1e-5, "layer %lld: ||W_Q - q_b q_a|| %.9g, sqrt(tail) %.9g",
                      (long long)l, sqrt(err2), sqrt(tail));
        ck_assert_double_eq_tol(r.layers[l].q_energy, 1.0 - tail / total, 1e-10);
        /* KV: M = [W_K; W_V] (Hm = Hkv), rows k_nope of each head and all of its v rows */
        double kv_tail = 0.0, kv_total = 0.0, kv_err2 = 0.0;
        for (int64_t i = 0; i < Hkv * hd * D; i++) {
            A[i] = wk[i];
            A[Hkv * hd * D + i] = wv[i];
        }
        singular_values(A, (int)(2 * Hkv * hd), (int)D, s);
        for (int64_t a = 0; a < 64; a++) {
            kv_total += s[a] * s[a];
            kv_tail += a >= 16 ? s[a] * s[a] : 0.0;
        }
        for (int64_t g = 0; g < Hkv; g++)
            for (int64_t i = 0; i < 8 + hd; i++) {
                const float *w = i < 8 ? wk + (g * hd + i) * D : wv + (g * hd + i - 8) * D;
                for (int64_t j = 0; j < D; j++) {
                    double p = 0.0;
                    for (int64_t a = 0; a < 16; a++)
                        p += (double)kvb[(g * (8 + hd) + i) * 16 + a] * kva[a * D + j];
                    kv_err2 += (w[j] - p) * (w[j] - p);
                }
            }
        ck_assert(kv_err2 <= kv_tail * (1.0 + 1e-5));
        ck_assert_double_eq_tol(r.layers[l].kv_energy, 1.0 - kv_tail / kv_total, 1e-10);
        free(wq);
        free(wk);
        free(wv);
        free(qa);
        free(qb);
        free(kva);
        free(kvb);
    }
    printf("Eckart-Young: worst relative gap between ||W_Q - q_b q_a||_F and the tail root %.3e\n",
           worst);
    hylo_checkpoint_close(ct);
    hylo_checkpoint_close(cs);
    free(teacher);
    free(student);
}
END_TEST

/* Equal sigma_i = 1 over k = 20 make energy(r) = r / 20 (sums of ones: exact). */
START_TEST(dynamic_rank_rounds_up_to_multiples_of_8)
{
    double s[20], zero[20] = {0};
    for (int i = 0; i < 20; i++) s[i] = 1.0;
    ck_assert_int_eq(hylo_rank_for_energy(s, 20, 0.05), 8);  /* r = 1 -> 8            */
    ck_assert_int_eq(hylo_rank_for_energy(s, 20, 0.40), 8);  /* r = 8 exactly          */
    ck_assert_int_eq(hylo_rank_for_energy(s, 20, 0.41), 16); /* r = 9 -> 16            */
    ck_assert_int_eq(hylo_rank_for_energy(s, 20, 0.81), 20); /* r = 17 -> 24, cap at k */
    ck_assert_int_eq(hylo_rank_for_energy(s, 20, 1.00), 20);
    ck_assert_int_eq(hylo_rank_for_energy(s, 5, 0.1), 5);    /* r = 1 -> 8, cap at 5   */
    ck_assert_int_eq(hylo_rank_for_energy(zero, 20, 0.9), 8); /* nothing to keep        */
}
END_TEST

/* End to end: the chosen ranks are multiples of 8 (or the full rank), every MLA layer keeps at
 * least the energy asked, and 8 fewer would leave some layer short (the largest of the
 * per-layer ranks is taken). */
START_TEST(dynamic_ranks_keep_the_energy_and_are_minimal)
{
    hylo_config t = preset("tiny-qwen3");
    char *teacher = make_teacher(&t, 6);
    hylo_hybrid_config hy = layout_of(&t, "all-mla");
    hylo_upcycle_options o = options(3);
    o.q_energy = 0.7;
    o.kv_energy = 0.8;
    hylo_upcycle_report r, less;
    char *student = upcycle(teacher, &hy, &o, &r);
    const int64_t rq = r.hybrid.mla.q_rank, rkv = r.hybrid.mla.kv_rank;
    printf("dynamic ranks for energies 0.7 / 0.8: r_q %lld, r_kv %lld\n", (long long)rq,
           (long long)rkv);
    ck_assert(rq % 8 == 0 && rq > 8 && rq < 64);
    ck_assert(rkv % 8 == 0 && rkv > 8 && rkv < 64);
    hy.mla.q_rank = rq - 8;
    hy.mla.kv_rank = rkv - 8;
    hylo_upcycle_options fixed = options(3);
    char *smaller = upcycle(teacher, &hy, &fixed, &less);
    bool q_short = false, kv_short = false;
    for (int64_t l = 0; l < t.num_layers; l++) {
        ck_assert(r.layers[l].q_energy >= 0.7 && r.layers[l].kv_energy >= 0.8);
        q_short |= less.layers[l].q_energy < 0.7;
        kv_short |= less.layers[l].kv_energy < 0.8;
    }
    ck_assert(q_short && kv_short);
    free(teacher);
    free(student);
    free(smaller);
}
END_TEST

/* ---- mapped slices ------------------------------------------------------------------------------ */

/* in_proj [z | x | B | C | dt] of every layer: x = v_proj, B = k_proj, C = q_proj byte for
 * byte (bf16 both sides), out_proj = o_proj; z and dt rows fresh U(+-1/sqrt(D)) (bf16 rounding
 * can reach the bound itself); conv U(+-1/2) (K = 4); softplus(dt_bias) in [1e-3, 0.1] (bf16
 * rounding of dt_bias moves dt by < 2%); A_log in [0, ln 16]; D and the norm exactly 1. */
START_TEST(mamba2_slices_come_from_attention)
{
    hylo_config t = preset("tiny-llama");
    char *teacher = make_teacher(&t, 7);
    hylo_hybrid_config hy = layout_of(&t, "all-mamba2");
    hylo_upcycle_options o = options(4);
    char *student = upcycle(teacher, &hy, &o, NULL);
    hylo_checkpoint *ct = open_ckpt(teacher), *cs = open_ckpt(student);
    const int64_t Hhd = t.num_heads * t.head_dim, kv = t.num_kv_heads * t.head_dim;
    const double bound = 1.0 / sqrt((double)t.hidden_size) * (1.0 + 1.0 / 128.0);
    for (int64_t l = 0; l < t.num_layers; l++) {
        const long long L = (long long)l;
        const hylo_tensor_view *in = tensor(cs, "model.layers.%lld.mamba.in_proj.weight", L);
        ck_assert_int_eq(in->shape[0], 2 * Hhd + 2 * kv + t.num_heads);
        ck_assert(rows_equal(in, Hhd, tensor(ct, "model.layers.%lld.self_attn.v_proj.weight", L), 0, kv));
        ck_assert(rows_equal(in, Hhd + kv, tensor(ct, "model.layers.%lld.self_attn.k_proj.weight", L), 0, kv));
        ck_assert(rows_equal(in, Hhd + 2 * kv, tensor(ct, "model.layers.%lld.self_attn.q_proj.weight", L), 0, Hhd));
        ck_assert(same_bytes(tensor(cs, "model.layers.%lld.mamba.out_proj.weight", L),
                             tensor(ct, "model.layers.%lld.self_attn.o_proj.weight", L)));
        assert_fresh_rows(in, 0, Hhd, bound);
        assert_fresh_rows(in, 2 * Hhd + 2 * kv, in->shape[0], bound);
        const hylo_tensor_view *conv = tensor(cs, "model.layers.%lld.mamba.conv1d.weight", L);
        assert_fresh_rows(conv, 0, conv->shape[0], 0.5 * (1.0 + 1.0 / 128.0));
        float *dt = widen(tensor(cs, "model.layers.%lld.mamba.dt_bias", L));
        float *a_log = widen(tensor(cs, "model.layers.%lld.mamba.A_log", L));
        for (int64_t h = 0; h < t.num_heads; h++) {
            double step = log1p(exp((double)dt[h]));
            ck_assert_msg(step >= 1e-3 * 0.98 && step <= 0.1 * 1.02, "dt %g", step);
            ck_assert(a_log[h] >= 0.0f && a_log[h] <= logf(16.0f) * (1.0f + 1.0f / 128.0f));
        }
        free(dt);
        free(a_log);
        assert_all(tensor(cs, "model.layers.%lld.mamba.D", L), 1.0f);
        assert_all(tensor(cs, "model.layers.%lld.mamba.norm.weight", L), 1.0f);
    }
    hylo_checkpoint_close(ct);
    hylo_checkpoint_close(cs);
    free(teacher);
    free(student);
}
END_TEST

/* GDN overlays on both tiny teachers: tiny-llama (H hd 64: H_k dk 48 < 64 < H_v dv 96, so
 * v_proj and o_proj get fresh rows / columns past 64) and tiny-qwen3 (H hd 128 > 96: every GDN
 * row is copied, the rest of the teacher's dropped). K and V rows come from teacher KV head
 * (r / hd) / (H / Hkv). Fresh parts: U(+-1/sqrt(fan_in)) up to bf16 rounding; o_norm = 1. */
START_TEST(gdn_overlays_come_from_attention)
{
    const char *name = _i == 0 ? "tiny-llama" : "tiny-qwen3";
    hylo_config t = preset(name);
    char *teacher = make_teacher(&t, 8);
    hylo_hybrid_config hy = layout_of(&t, "all-gdn");
    hylo_upcycle_options o = options(5);
    char *student = upcycle(teacher, &hy, &o, NULL);
    hylo_checkpoint *ct = open_ckpt(teacher), *cs = open_ckpt(student);
    const int64_t hd = t.head_dim, Hhd = t.num_heads * hd, rep = t.num_heads / t.num_kv_heads;
    const int64_t qk = hy.gdn.k_heads * hy.gdn.head_k, vd = hy.gdn.v_heads * hy.gdn.head_v;
    const int64_t n_qk = qk < Hhd ? qk : Hhd, n_v = vd < Hhd ? vd : Hhd;
    const size_t es = hylo_dtype_size(t.dtype);
    for (int64_t l = 0; l < t.num_layers; l++) {
        const long long L = (long long)l;
        const hylo_tensor_view *q = tensor(cs, "model.layers.%lld.gdn.q_proj.weight", L);
        const hylo_tensor_view *k = tensor(cs, "model.layers.%lld.gdn.k_proj.weight", L);
        const hylo_tensor_view *v = tensor(cs, "model.layers.%lld.gdn.v_proj.weight", L);
        const hylo_tensor_view *o_proj = tensor(cs, "model.layers.%lld.gdn.o_proj.weight", L);
        const hylo_tensor_view *wk = tensor(ct, "model.layers.%lld.self_attn.k_proj.weight", L);
        const hylo_tensor_view *wv = tensor(ct, "model.layers.%lld.self_attn.v_proj.weight", L);
        const hylo_tensor_view *wo = tensor(ct, "model.layers.%lld.self_attn.o_proj.weight", L);
        ck_assert(rows_equal(q, 0, tensor(ct, "model.layers.%lld.self_attn.q_proj.weight", L), 0, n_qk));
        for (int64_t r = 0; r < n_qk; r++)
            ck_assert(rows_equal(k, r, wk, (r / hd) / rep * hd + r % hd, 1));
        for (int64_t r = 0; r < n_v; r++)
            ck_assert(rows_equal(v, r, wv, (r / hd) / rep * hd + r % hd, 1));
        for (int64_t row = 0; row < t.hidden_size; row++)
            ck_assert(memcmp((const char *)o_proj->data + (size_t)(row * vd) * es,
                             (const char *)wo->data + (size_t)(row * Hhd) * es, (size_t)n_v * es) == 0);
        const double d_bound = (1.0 + 1.0 / 128.0) / sqrt((double)t.hidden_size);
        if (n_v < vd) {
            assert_fresh_rows(v, n_v, vd, d_bound);
            float *f = widen(o_proj);
            double max = 0.0;
            for (int64_t row = 0; row < t.hidden_size; row++)
                for (int64_t c = n_v; c < vd; c++) max = fmax(max, fabs(f[row * vd + c]));
            ck_assert(max > 0.0 && max <= (1.0 + 1.0 / 128.0) / sqrt((double)vd));
            free(f);
        }
        assert_fresh_rows(tensor(cs, "model.layers.%lld.gdn.g_proj.weight", L), 0, vd, d_bound);
        assert_fresh_rows(tensor(cs, "model.layers.%lld.gdn.a_proj.weight", L), 0, hy.gdn.v_heads, d_bound);
        assert_all(tensor(cs, "model.layers.%lld.gdn.o_norm.weight", L), 1.0f);
    }
    hylo_checkpoint_close(ct);
    hylo_checkpoint_close(cs);
    free(teacher);
    free(student);
}
END_TEST

/* MLA on tiny-qwen3 (fp32, two KV heads, q/k norms) with nope 8, rope 8 < hd 32, so the kept
 * rows [0, 8) and [24, 32) of each head differ from the first 16:
 *   k_pe rows of kv_a = the mean over KV heads of W_K's rows [24, 32) (both sides sum two fp32
 *   values in double and halve: equal to the bit); out_proj = o_proj; q_norm / k_norm = the
 *   teacher's at the kept rows; q_b q_a = the kept rows of W_Q at full rank r_q = 64 (fp32
 *   factors of a double SVD: NMSE ~1e-14, bound 1e-10).
 * With the fresh rope init the same seed gives the same non-rope rows, and other q rope rows
 * and k_pe rows (fresh U(+-1/sqrt(fan_in))). */
START_TEST(mla_slices_and_rope_init)
{
    hylo_config t = preset("tiny-qwen3");
    t.dtype = HYLO_F32;
    char *teacher = make_teacher(&t, 9);
    hylo_hybrid_config hy = layout_of(&t, "all-mla");
    hy.mla.nope = 8;
    hy.mla.rope = 8;
    hy.mla.q_rank = 64;
    hylo_upcycle_options o = options(6);
    char *svd = upcycle(teacher, &hy, &o, NULL);
    o.rope_init = HYLO_ROPE_INIT_FRESH;
    char *fresh = upcycle(teacher, &hy, &o, NULL);
    hylo_checkpoint *ct = open_ckpt(teacher), *cs = open_ckpt(svd), *cf = open_ckpt(fresh);
    const int64_t D = t.hidden_size, hd = t.head_dim, H = t.num_heads, r_kv = hy.mla.kv_rank;
    const int64_t kept[16] = {0, 1, 2, 3, 4, 5, 6, 7, 24, 25, 26, 27, 28, 29, 30, 31};
    for (int64_t l = 0; l < t.num_layers; l++) {
        const long long L = (long long)l;
        float *wk = widen(tensor(ct, "model.layers.%lld.self_attn.k_proj.weight", L));
        float *wq = widen(tensor(ct, "model.layers.%lld.self_attn.q_proj.weight", L));
        float *kva = widen(tensor(cs, "model.layers.%lld.mla.kv_a_proj_with_mqa.weight", L));
        float *qa = widen(tensor(cs, "model.layers.%lld.mla.q_a_proj.weight", L));
        float *qb = widen(tensor(cs, "model.layers.%lld.mla.q_b_proj.weight", L));
        for (int64_t i = 0; i < 8; i++)
            for (int64_t j = 0; j < D; j++) {
                double mean = ((double)wk[(24 + i) * D + j] + (double)wk[(hd + 24 + i) * D + j]) / 2.0;
                ck_assert_float_eq(kva[(r_kv + i) * D + j], (float)mean);
            }
        float *prod = malloc((size_t)(H * 16 * D) * sizeof *prod), *want = malloc((size_t)(H * 16 * D) * sizeof *want);
        ck_assert(prod && want);
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < 16; i++)
                for (int64_t j = 0; j < D; j++) {
                    double p = 0.0;
                    for (int64_t a = 0; a < 64; a++) p += (double)qb[(h * 16 + i) * 64 + a] * qa[a * D + j];
                    prod[(h * 16 + i) * D + j] = (float)p;
                    want[(h * 16 + i) * D + j] = wq[(h * hd + kept[i]) * D + j];
                }
        ck_assert_nmse(prod, want, (size_t)(H * 16 * D), 1e-10, "q_b q_a vs kept rows of W_Q");
        ck_assert(same_bytes(tensor(cs, "model.layers.%lld.mla.out_proj.weight", L),
                             tensor(ct, "model.layers.%lld.self_attn.o_proj.weight", L)));
        const char *norms[2][2] = {{"mla.q_norm", "self_attn.q_norm"}, {"mla.k_norm", "self_attn.k_norm"}};
        for (int n = 0; n < 2; n++) {
            float *mine = widen(tensor(cs, "model.layers.%lld.%s.weight", L, norms[n][0]));
            float *theirs = widen(tensor(ct, "model.layers.%lld.%s.weight", L, norms[n][1]));
            for (int64_t i = 0; i < 16; i++) ck_assert_float_eq(mine[i], theirs[kept[i]]);
            free(mine);
            free(theirs);
        }
        /* the fresh rope init: q rope rows and k_pe rows differ, nothing else */
        const hylo_tensor_view *qb_s = tensor(cs, "model.layers.%lld.mla.q_b_proj.weight", L);
        const hylo_tensor_view *qb_f = tensor(cf, "model.layers.%lld.mla.q_b_proj.weight", L);
        const hylo_tensor_view *kva_s = tensor(cs, "model.layers.%lld.mla.kv_a_proj_with_mqa.weight", L);
        const hylo_tensor_view *kva_f = tensor(cf, "model.layers.%lld.mla.kv_a_proj_with_mqa.weight", L);
        for (int64_t h = 0; h < H; h++) {
            ck_assert(rows_equal(qb_s, h * 16, qb_f, h * 16, 8));
            for (int64_t i = 8; i < 16; i++) ck_assert(!rows_equal(qb_s, h * 16 + i, qb_f, h * 16 + i, 1));
        }
        assert_fresh_rows(qb_f, 8, 16, 1.0 / 8.0); /* fan_in r_q = 64 */
        ck_assert(rows_equal(kva_s, 0, kva_f, 0, r_kv));
        for (int64_t i = 0; i < 8; i++) ck_assert(!rows_equal(kva_s, r_kv + i, kva_f, r_kv + i, 1));
        assert_fresh_rows(kva_f, r_kv, r_kv + 8, 1.0 / sqrt((double)D));
        ck_assert(same_bytes(tensor(cs, "model.layers.%lld.mla.kv_b_proj.weight", L),
                             tensor(cf, "model.layers.%lld.mla.kv_b_proj.weight", L)));
        free(wk);
        free(wq);
        free(kva);
        free(qa);
        free(qb);
        free(prod);
        free(want);
    }
    hylo_checkpoint_close(ct);
    hylo_checkpoint_close(cs);
    hylo_checkpoint_close(cf);
    free(teacher);
    free(svd);
    free(fresh);
}
END_TEST

/* ---- copies ----------------------------------------------------------------------------------- */

/* Every teacher tensor outside self_attn (embeddings, both norms, MLPs, final norm) is in the
 * hybrid byte for byte; lm_head.weight is written and equals the teacher's (untied tiny-llama)
 * or its embedding (tied tiny-qwen3); the config is untied. */
START_TEST(shared_tensors_are_copied_bit_for_bit)
{
    const char *name = _i == 0 ? "tiny-llama" : "tiny-qwen3";
    hylo_config t = preset(name);
    char *teacher = make_teacher(&t, 10);
    hylo_hybrid_config hy = layout_of(&t, _i == 0 ? "2MLA2M2" : "2MLA2GDN");
    hylo_upcycle_options o = options(7);
    char *student = upcycle(teacher, &hy, &o, NULL);
    hylo_checkpoint *ct = open_ckpt(teacher), *cs = open_ckpt(student);
    size_t copied = 0;
    for (size_t i = 0; i < hylo_checkpoint_count(ct); i++) {
        const hylo_tensor_view *v = hylo_checkpoint_at(ct, i);
        if (strstr(v->name, "self_attn")) continue;
        ck_assert_msg(same_bytes(v, tensor(cs, "%s", v->name)), "%s differs", v->name);
        copied++;
    }
    ck_assert_uint_eq(copied, 2 + (t.tie_word_embeddings ? 0 : 1) + 5 * (size_t)t.num_layers);
    const char *head = t.tie_word_embeddings ? "model.embed_tokens.weight" : "lm_head.weight";
    ck_assert(same_bytes(tensor(cs, "lm_head.weight"), tensor(ct, "%s", head)));
    hylo_config out;
    hylo_error err = {0};
    char *path = hylo_test_join(student, "config.json");
    ck_assert_ok(hylo_config_load(path, &out, &err), &err);
    ck_assert(!out.tie_word_embeddings);
    ck_assert_int_eq(out.dtype, t.dtype);
    hylo_checkpoint_close(ct);
    hylo_checkpoint_close(cs);
    free(path);
    free(teacher);
    free(student);
}
END_TEST

/* A target that keeps attention everywhere copies every teacher tensor: the probe then sees
 * the same logits (KL exactly 0, every top-1 equal). A Qwen2 teacher's q/k/v biases have no
 * slot in Mamba2 and are dropped and counted (3 per layer); the output still loads and runs. */
START_TEST(attention_layers_copy_and_biases_drop)
{
    hylo_config t = preset("tiny-llama");
    t.arch = HYLO_ARCH_QWEN2;
    t.qkv_bias = true;
    char *teacher = make_teacher(&t, 11);
    hylo_hybrid_config same;
    hylo_hybrid_teacher(&t, &same);
    hylo_upcycle_options o = options(8);
    o.probe_tokens = 24;
    hylo_upcycle_report r;
    char *copy = upcycle(teacher, &same, &o, &r);
    ck_assert_int_eq(r.dropped_tensors, 0);
    ck_assert_int_eq(r.probe.tokens, 24);
    ck_assert(r.probe.kl_mean == 0.0 && r.probe.kl_max == 0.0 && r.probe.top1 == 1.0);
    ck_assert_double_eq(r.kv_share, 1.0);
    hylo_hybrid_config m2 = layout_of(&t, "all-mamba2");
    char *hybrid = upcycle(teacher, &m2, &o, &r);
    ck_assert_int_eq(r.dropped_tensors, 3 * t.num_layers);
    ck_assert(r.probe.kl_mean > 0.0 && isfinite(r.probe.kl_mean) && r.probe.top1 < 1.0);
    ck_assert_double_eq(r.kv_share, 0.0);
    free(teacher);
    free(copy);
    free(hybrid);
}
END_TEST

/* ---- assemble ----------------------------------------------------------------------------------- */

/* Assembling the all-MLA and the all-linear upcycles of one teacher (same seed) layer by layer
 * gives the direct upcycle to the byte: every tensor, config.json and hybrid_config.json (the
 * linear model written in 64 KiB shards, to read a sharded source). A linear model upcycled
 * from another teacher disagrees on the shared tensors: counted (and warned about). */
START_TEST(assemble_equals_direct_upcycle)
{
    const char *name = _i == 0 ? "tiny-llama" : "tiny-qwen3";
    const char *direct_layout = _i == 0 ? "2MLA2M2" : "2MLA2GDN";
    hylo_config t = preset(name);
    char *teacher = make_teacher(&t, 12), *other = make_teacher(&t, 13);
    hylo_hybrid_config direct_hy = layout_of(&t, direct_layout);
    hylo_hybrid_config mla_hy = layout_of(&t, "all-mla");
    hylo_hybrid_config lin_hy = layout_of(&t, _i == 0 ? "all-mamba2" : "all-gdn");
    hylo_upcycle_options o = options(9);
    char *direct = upcycle(teacher, &direct_hy, &o, NULL);
    char *mla = upcycle(teacher, &mla_hy, &o, NULL);
    o.max_shard_bytes = 64 << 10;
    char *lin = upcycle(teacher, &lin_hy, &o, NULL);
    char *lin_other = upcycle(other, &lin_hy, &o, NULL);
    bool mla_layers[HYLO_MAX_LAYERS];
    for (int64_t l = 0; l < t.num_layers; l++) mla_layers[l] = direct_hy.mixers[l] == HYLO_MIXER_MLA;
    char *out = hylo_test_tmpdir("assembled"), *out2 = hylo_test_tmpdir("assembled-other");
    hylo_upcycle_report r;
    hylo_error err = {0};
    ck_assert_ok(hylo_assemble(mla, lin, mla_layers, out, 0, false, &r, &err), &err);
    ck_assert_int_eq(r.differing_shared, 0);
    hylo_checkpoint *cd = open_ckpt(direct), *ca = open_ckpt(out);
    ck_assert_uint_eq(hylo_checkpoint_count(cd), hylo_checkpoint_count(ca));
    for (size_t i = 0; i < hylo_checkpoint_count(cd); i++) {
        const hylo_tensor_view *v = hylo_checkpoint_at(cd, i);
        ck_assert_msg(same_bytes(v, tensor(ca, "%s", v->name)), "%s differs", v->name);
    }
    ck_assert(hylo_test_same_file(direct, out, "config.json"));
    ck_assert(hylo_test_same_file(direct, out, "hybrid_config.json"));
    ck_assert_ok(hylo_assemble(mla, lin_other, mla_layers, out2, 0, false, &r, &err), &err);
    ck_assert_int_eq(r.differing_shared, 2 + 5 * t.num_layers + 1); /* all but layer tensors */
    hylo_checkpoint *cm = open_ckpt(mla), *co = open_ckpt(out2);
    for (size_t i = 0; i < hylo_checkpoint_count(co); i++) {
        const hylo_tensor_view *v = hylo_checkpoint_at(co, i);
        if (!strstr(v->name, ".mla.") && !strstr(v->name, ".mamba.") && !strstr(v->name, ".gdn."))
            ck_assert_msg(same_bytes(v, tensor(cm, "%s", v->name)), "%s is not --mla's", v->name);
    }
    hylo_checkpoint_close(cm);
    hylo_checkpoint_close(co);
    hylo_checkpoint_close(cd);
    hylo_checkpoint_close(ca);
    free(teacher);
    free(other);
    free(direct);
    free(mla);
    free(lin);
    free(lin_other);
    free(out);
    free(out2);
}
END_TEST

/* ---- output safety and bad inputs --------------------------------------------------------------- */

/* Without force an existing checkpoint is refused and left as it was; with force it is
 * replaced and no stale shard survives; the teacher directory is never an output, force or
 * not, and is unchanged (hash of every file) by everything here. */
START_TEST(outputs_are_safe_and_the_teacher_untouched)
{
    hylo_config t = preset("tiny-llama");
    char *teacher = make_teacher(&t, 14);
    const uint64_t before = hash_dir(teacher);
    hylo_hybrid_config hy = layout_of(&t, "2MLA2GDN");
    hylo_upcycle_options o = options(10);
    o.max_shard_bytes = 64 << 10;
    hylo_upcycle_report r;
    char *out = upcycle(teacher, &hy, &o, &r);
    const uint64_t written = hash_dir(out);
    char first[256];
    const size_t sharded = hylo_test_dir_entries(out, first, sizeof first);
    ck_assert_uint_gt(sharded, 4); /* shards + index + two configs */
    hylo_error err = {0};
    o.max_shard_bytes = 0;
    ck_assert_int_eq(hylo_upcycle(teacher, &hy, &o, out, &r, &err), HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "already holds a checkpoint"));
    ck_assert_uint_eq(hash_dir(out), written);
    o.force = true;
    ck_assert_ok(hylo_upcycle(teacher, &hy, &o, out, &r, &err), &err);
    ck_assert_uint_eq(hylo_test_dir_entries(out, first, sizeof first), 3); /* no stale shard */
    ck_assert_int_eq(hylo_upcycle(teacher, &hy, &o, teacher, &r, &err), HYLO_ERR_USAGE);
    ck_assert_ptr_nonnull(strstr(err.message, "is the input"));
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s upcycle --teacher %s --out %s --layout all-gdn 2>err.txt >/dev/null",
             hylo_test_cli(), teacher, out);
    ck_assert_int_eq(system(cmd), 1 << 8);
    size_t len;
    char *msg = (char *)hylo_test_read_file("err.txt", &len);
    ck_assert_ptr_nonnull(strstr(msg, "--force"));
    free(msg);
    ck_assert_uint_eq(hash_dir(teacher), before);
    free(teacher);
    free(out);
}
END_TEST

/* A teacher checkpoint holding a tensor its config has no parameter for is refused before
 * anything is written, naming the file and the tensor (it was silently ignored). */
START_TEST(teachers_with_foreign_tensors_are_refused)
{
    hylo_config t = preset("tiny-llama");
    char *teacher = make_teacher(&t, 16);
    const char *foreign = "model.layers.1.self_attn.extra.weight";
    char *odd = hylo_test_edit_checkpoint(teacher, "model.layers.1.self_attn.o_proj.weight", NULL,
                                          foreign, 0);
    char *out = hylo_test_tmpdir("refused");
    hylo_hybrid_config hy = layout_of(&t, "2MLA2GDN");
    hylo_upcycle_options o = options(0);
    hylo_upcycle_report r;
    hylo_error err = {0};
    ck_assert_int_eq(hylo_upcycle(odd, &hy, &o, out, &r, &err), HYLO_ERR_SHAPE);
    char want[512];
    snprintf(want, sizeof want, "%s/model.safetensors: tensor '%s' is not a parameter of this "
             "model (llama, %lld layers)", odd, foreign, (long long)t.num_layers);
    ck_assert_msg(strstr(err.message, want), "%s", err.message);
    ck_assert_uint_eq(hylo_test_dir_entries(out, NULL, 0), 0);
    free(out);
    free(odd);
    free(teacher);
}
END_TEST

/* Targets the initializations cannot take fail before anything is written, naming the field. */
START_TEST(bad_targets_are_refused_clearly)
{
    hylo_config t = preset("tiny-llama");
    char *teacher = make_teacher(&t, 15);
    const struct {
        const char *field; int64_t value; const char *message;
    } cases[] = {
        {"kv_rank", 65, "at most 64"},      /* [W_K; W_V] is [64, 64] */
        {"q_rank", 72, "at most 64"},
        {"v", 8, "head_dim 16"},
        {"nope", 12, "exceeds the teacher's head_dim"},
        {"kv_heads", 1, "multiple of the teacher's"},
        {"x_heads", 4, "upcycled layout"},
    };
    char *out = hylo_test_tmpdir("refused");
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hylo_hybrid_config hy = layout_of(&t, "2MLA2M2");
        int64_t *fields[] = {&hy.mla.kv_rank, &hy.mla.q_rank, &hy.mla.v, &hy.mla.nope,
                             &hy.mla.kv_heads, &hy.mamba2.x_heads};
        *fields[c] = cases[c].value;
        hylo_upcycle_options o = options(0);
        hylo_upcycle_report r;
        hylo_error err = {0};
        ck_assert_int_eq(hylo_upcycle(teacher, &hy, &o, out, &r, &err), HYLO_ERR_CONFIG);
        ck_assert_msg(strstr(err.message, cases[c].message), "%s: %s", cases[c].field, err.message);
        ck_assert_uint_eq(hylo_test_dir_entries(out, NULL, 0), 0);
    }
    /* a hybrid is no teacher */
    hylo_hybrid_config hy = layout_of(&t, "2MLA2M2");
    hylo_upcycle_options o = options(0);
    hylo_upcycle_report r;
    hylo_error err = {0};
    char *student = upcycle(teacher, &hy, &o, NULL);
    ck_assert_int_eq(hylo_upcycle(student, &hy, &o, out, &r, &err), HYLO_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(err.message, "starts from a Transformer"));
    /* the CLI: layout depth, layer lists, the linear block, energies */
    const struct { const char *args; const char *message; } cli[] = {
        {"--layout 4MLA12GDN", "4 MLA + 12 linear layers but the teacher has 4"},
        {"--mla-layers 1,1", "listed twice"},
        {"--mla-layers 0,4", "out of range"},
        {"--mla-layers 0,3 --linear rwkv", "gdn or mamba2"},
        {"--layout all-mla --kv-energy 1.5", "--kv-energy must be"},
        {"--layout all-mla --kv-rank 100", "at most 64"},
        {"--layout all-mla --mla-layers 1", "exactly one of --layout and --mla-layers"},
    };
    for (size_t c = 0; c < sizeof cli / sizeof cli[0]; c++) {
        char cmd[4096];
        snprintf(cmd, sizeof cmd, "%s upcycle --teacher %s --out %s %s 2>err.txt >/dev/null",
                 hylo_test_cli(), teacher, out, cli[c].args);
        ck_assert_int_ne(system(cmd), 0);
        size_t len;
        char *msg = (char *)hylo_test_read_file("err.txt", &len);
        ck_assert_msg(strstr(msg, cli[c].message), "%s: %s", cli[c].args, msg);
        free(msg);
        ck_assert_uint_eq(hylo_test_dir_entries(out, NULL, 0), 0);
    }
    free(teacher);
    free(student);
    free(out);
}
END_TEST

/* ---- probe and CLI ------------------------------------------------------------------------------ */

/* KL against a direct long-double sum of p log(p / q), on logits that overflow a naive exp
 * (+-700 and a 1e4 spread): the log-sum-exp form stays finite and agrees to 1e-12 (relative,
 * double sums over 50 terms); identical logits give exactly 0. */
START_TEST(kl_uses_log_sum_exp)
{
    enum { V = 50 };
    float a[V], b[V];
    hylo_test_rng rng = {3};
    for (int scale = 0; scale < 3; scale++) {
        const double spread = scale == 0 ? 3.0 : scale == 1 ? 700.0 : 1e4;
        for (int v = 0; v < V; v++) {
            a[v] = (float)(spread * hylo_test_uniform(&rng));
            b[v] = (float)(spread * hylo_test_uniform(&rng));
        }
        long double ma = a[0], mb = b[0], za = 0, zb = 0, kl = 0;
        for (int v = 1; v < V; v++) {
            ma = fmaxl(ma, a[v]);
            mb = fmaxl(mb, b[v]);
        }
        for (int v = 0; v < V; v++) {
            za += expl(a[v] - ma);
            zb += expl(b[v] - mb);
        }
        for (int v = 0; v < V; v++) {
            long double lp = a[v] - ma - logl(za), lq = b[v] - mb - logl(zb);
            kl += expl(lp) * (lp - lq);
        }
        double got = hylo_logits_kl(a, b, V);
        ck_assert_msg(isfinite(got) && fabs(got - (double)kl) <= 1e-12 * fmax(1.0, (double)kl),
                      "spread %g: %.17g vs %.17Lg", spread, got, kl);
        ck_assert(hylo_logits_kl(a, a, V) == 0.0);
    }
}
END_TEST

/* The CLI end to end: --layout and the same choices given explicitly write the same bytes;
 * the JSON report holds every layer and the probe; hylo run and hylo info read the output;
 * hylo assemble joins two pure models. */
START_TEST(cli_upcycles_reports_and_assembles)
{
    char *dir = hylo_test_tmpdir("cli");
    char cmd[8192];
    const char *h = hylo_test_cli();
    snprintf(cmd, sizeof cmd,
             "cd %s && %s init --preset tiny-llama --out t >/dev/null && "
             "%s upcycle --teacher t --out a --layout 2MLA2M2 --probe-tokens 16 --json a.json > a.txt && "
             "%s upcycle --teacher t --out b --mla-layers 0,3 --linear mamba2 --probe-tokens 0 >/dev/null && "
             "%s upcycle --teacher t --out m --layout all-mla --probe-tokens 0 >/dev/null && "
             "%s upcycle --teacher t --out l --layout all-mamba2 --probe-tokens 0 >/dev/null && "
             "%s assemble --mla m --linear l --mla-layers 0,3 --out c --teacher t --probe-tokens 16 > c.txt && "
             "cmp a/model.safetensors b/model.safetensors && cmp a/model.safetensors c/model.safetensors && "
             "cmp a/hybrid_config.json c/hybrid_config.json && "
             "%s run --model a --tokens '3 1 4 1 5' --generate 3 > run.txt && "
             "%s info --model a --json > info.txt",
             dir, h, h, h, h, h, h, h, h);
    ck_assert_int_eq(system(cmd), 0);
    char *path = hylo_test_join(dir, "a.json");
    size_t len;
    char *json = (char *)hylo_test_read_file(path, &len);
    cJSON *root = cJSON_Parse(json);
    ck_assert_ptr_nonnull(root);
    ck_assert_int_eq(cJSON_GetArraySize(cJSON_GetObjectItem(root, "layers")), 4);
    const cJSON *probe = cJSON_GetObjectItem(root, "probe");
    ck_assert_int_eq(cJSON_GetObjectItem(probe, "tokens")->valueint, 16);
    double kl = cJSON_GetObjectItem(probe, "kl_mean")->valuedouble;
    double top1 = cJSON_GetObjectItem(probe, "top1")->valuedouble;
    ck_assert(kl > 0.0 && isfinite(kl) && top1 >= 0.0 && top1 <= 1.0);
    const cJSON *l0 = cJSON_GetArrayItem(cJSON_GetObjectItem(root, "layers"), 0);
    ck_assert_str_eq(cJSON_GetObjectItem(l0, "mixer")->valuestring, "mla");
    ck_assert(cJSON_GetObjectItem(l0, "kv_energy")->valuedouble > 0.5);
    ck_assert(cJSON_IsNull(cJSON_GetObjectItem(cJSON_GetArrayItem(cJSON_GetObjectItem(root, "layers"), 1), "q_energy")));
    /* the KV share matches hylo info's */
    char *info_path = hylo_test_join(dir, "info.txt");
    char *info = (char *)hylo_test_read_file(info_path, &len);
    cJSON *info_json = cJSON_Parse(info);
    ck_assert_ptr_nonnull(info_json);
    ck_assert_double_eq_tol(cJSON_GetObjectItem(info_json, "kv_share")->valuedouble,
                            cJSON_GetObjectItem(root, "kv_share")->valuedouble, 1e-6);
    char *text_path = hylo_test_join(dir, "c.txt");
    char *text = (char *)hylo_test_read_file(text_path, &len);
    ck_assert_ptr_nonnull(strstr(text, "probe (16 tokens)"));
    ck_assert_ptr_nonnull(strstr(text, "differ between the two models: 0"));
    cJSON_Delete(root);
    cJSON_Delete(info_json);
    free(json);
    free(info);
    free(text);
    free(path);
    free(info_path);
    free(text_path);
    free(dir);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("upcycle");
    TCase *tc = tcase_create("upcycle");
    tcase_set_timeout(tc, 300);
    tcase_add_test(tc, mla_equals_attention_on_one_token);
    tcase_add_test(tc, mla_equals_attention_without_rotation);
    tcase_add_test(tc, svd_truncation_error_is_the_dropped_tail);
    tcase_add_test(tc, truncated_factors_meet_eckart_young);
    tcase_add_test(tc, dynamic_rank_rounds_up_to_multiples_of_8);
    tcase_add_test(tc, dynamic_ranks_keep_the_energy_and_are_minimal);
    tcase_add_test(tc, mamba2_slices_come_from_attention);
    tcase_add_loop_test(tc, gdn_overlays_come_from_attention, 0, 2);
    tcase_add_test(tc, mla_slices_and_rope_init);
    tcase_add_loop_test(tc, shared_tensors_are_copied_bit_for_bit, 0, 2);
    tcase_add_test(tc, attention_layers_copy_and_biases_drop);
    tcase_add_loop_test(tc, assemble_equals_direct_upcycle, 0, 2);
    tcase_add_test(tc, outputs_are_safe_and_the_teacher_untouched);
    tcase_add_test(tc, bad_targets_are_refused_clearly);
    tcase_add_test(tc, teachers_with_foreign_tensors_are_refused);
    tcase_add_test(tc, kl_uses_log_sum_exp);
    tcase_add_test(tc, cli_upcycles_reports_and_assembles);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
