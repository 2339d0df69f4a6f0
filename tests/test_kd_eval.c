/* test_kd_eval.c: `hylo kd-eval` end to end on a tiny teacher and a tiny hybrid student:
 * its numbers against an independent evaluation through the public model API, the three KL
 * forms against one another, a model against itself, and its errors. */
#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"


/* A tiny teacher (tiny-llama), a tiny hybrid student of the same base shape (tiny-hybrid-m2:
 * MLA and Mamba2 layers, random) and a file of 24 token ids. */
typedef struct {
    char *teacher, *student, *tokens;
} fixture;

enum { NTOK = 24 };
static const int32_t TOKENS[NTOK] = {1,   17,  200, 3,  45, 45, 99,  0,   255, 128, 7,  64,
                                     250, 13,  8,   21, 34, 55, 89,  144, 233, 2,   77, 5};

static char *init_model(const char *preset, const char *stem)
{
    char *dir = hylo_test_tmpdir(stem);
    rmdir(dir); /* init creates it */
    hylo_test_cli_expect(hylo_test_cli_run("init --preset %s --seed 4 --dtype f32 --out %s", preset, dir), 0, NULL);
    return dir;
}

static fixture make_fixture(void)
{
    fixture f = {init_model("tiny-llama", "kd-teacher"), init_model("tiny-hybrid-m2", "kd-student"),
                 strdup("kd-tokens.txt")};
    ck_assert_ptr_nonnull(f.tokens);
    char text[NTOK * 8] = "";
    for (int i = 0; i < NTOK; i++)
        snprintf(text + strlen(text), sizeof text - strlen(text), i % 5 == 4 ? "%d,\n" : "%d ",
                 TOKENS[i]);
    hylo_test_write_file(f.tokens, text, strlen(text));
    return f;
}

static void free_fixture(fixture *f)
{
    free(f->teacher);
    free(f->student);
    free(f->tokens);
}

/* `hylo kd-eval ... --json EXTRA` parsed. */
static cJSON *kd_eval_json(const char *teacher, const char *student, const char *tokens,
                           const char *extra)
{
    hylo_cli_result r = hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens-file %s --json %s", teacher,
                        student, tokens, extra);
    ck_assert_msg(r.status == 0, "kd-eval failed: %s", r.err);
    cJSON *j = cJSON_Parse(r.out);
    ck_assert_msg(j != NULL, "not JSON: %s", r.out);
    free(r.out);
    free(r.err);
    return j;
}

static double num(const cJSON *obj, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, key);
    ck_assert_msg(cJSON_IsNumber(item), "JSON lacks the number '%s'", key);
    return item->valuedouble;
}

static const cJSON *ild_layer(const cJSON *j, int l)
{
    const cJSON *layers = cJSON_GetObjectItemCaseSensitive(
        cJSON_GetObjectItemCaseSensitive(j, "ild"), "layers");
    ck_assert(cJSON_IsArray(layers));
    return cJSON_GetArrayItem(layers, l);
}

/* ---- an independent evaluation through the public model API -------------------------------- */

/* sum_t ||s_t - t_t|| / T in double, written out here (not through hylo_ild_distance). */
static double mean_norm(const float *s, const float *t, int64_t T, int64_t D)
{
    double sum = 0;
    for (int64_t i = 0; i < T; i++) {
        double ss = 0;
        for (int64_t d = 0; d < D; d++) {
            double diff = (double)s[i * D + d] - t[i * D + d];
            ss += diff * diff;
        }
        sum += sqrt(ss);
    }
    return sum / (double)T;
}

/* log-softmax of z [V] / tau at v, in double. */
static double log_softmax(const float *z, int64_t V, double tau, int64_t v)
{
    double m = -INFINITY, s = 0;
    for (int64_t i = 0; i < V; i++) m = fmax(m, z[i] / tau);
    for (int64_t i = 0; i < V; i++) s += exp(z[i] / tau - m);
    return z[v] / tau - m - log(s);
}

typedef struct {
    double kl, ce, hidden[4], mixer[4], final;
} expected;

/* KL and CE from both models' hylo_forward logits; ILD with hylo_embed / hylo_layer_forward. */
static expected evaluate_independently(const fixture *f, double tau)
{
    hylo_error err = {0};
    hylo_model *tm = NULL, *sm = NULL;
    ck_assert_ok(hylo_model_load(f->teacher, &tm, &err), &err);
    ck_assert_ok(hylo_model_load(f->student, &sm, &err), &err);
    const int64_t V = hylo_model_config(tm)->vocab_size, D = hylo_model_config(tm)->hidden_size;
    ck_assert_int_eq(hylo_model_config(tm)->num_layers, 4);
    float *zt = malloc(NTOK * V * sizeof(float)), *zs = malloc(NTOK * V * sizeof(float));
    float *x = malloc(NTOK * D * sizeof(float)), *y = malloc(NTOK * D * sizeof(float));
    float *at = malloc(NTOK * D * sizeof(float)), *as = malloc(NTOK * D * sizeof(float));
    float *hs = malloc(NTOK * D * sizeof(float)), *ft = malloc(NTOK * D * sizeof(float));
    float *fs = malloc(NTOK * D * sizeof(float));
    ck_assert(zt && zs && x && y && at && as && hs && ft && fs);
    hylo_state *st_t, *st_s, *st_f;
    ck_assert_ok(hylo_state_create(tm, NTOK, &st_t, &err), &err);
    ck_assert_ok(hylo_state_create(sm, NTOK, &st_s, &err), &err);
    ck_assert_ok(hylo_forward(tm, st_t, TOKENS, NTOK, HYLO_LOGITS_ALL, zt, &err), &err);
    ck_assert_ok(hylo_forward(sm, st_s, TOKENS, NTOK, HYLO_LOGITS_ALL, zs, &err), &err);
    expected e = {0};
    for (int t = 0; t < NTOK; t++) {
        for (int64_t v = 0; v < V; v++) {
            const double lpt = log_softmax(zt + t * V, V, tau, v);
            e.kl += tau * tau * exp(lpt) * (lpt - log_softmax(zs + t * V, V, tau, v));
        }
        if (t + 1 < NTOK) e.ce -= log_softmax(zs + t * V, V, 1.0, TOKENS[t + 1]) / (NTOK - 1);
    }
    hylo_state_free(st_t);
    hylo_state_free(st_s);
    ck_assert_ok(hylo_state_create(tm, NTOK, &st_t, &err), &err);
    ck_assert_ok(hylo_state_create(sm, NTOK, &st_f, &err), &err);
    ck_assert_ok(hylo_embed(tm, TOKENS, NTOK, x, &err), &err);
    for (int l = 0; l < 4; l++) {
        ck_assert_ok(hylo_layer_forward(tm, st_t, l, x, NTOK, at, y, &err), &err);
        ck_assert_ok(hylo_layer_forward(sm, st_f, l, x, NTOK, as, hs, &err), &err);
        e.hidden[l] = mean_norm(hs, y, NTOK, D);
        e.mixer[l] = mean_norm(as, at, NTOK, D);
        memcpy(x, y, NTOK * D * sizeof(float));
    }
    hylo_final_norm(tm, x, NTOK, ft);
    hylo_final_norm(sm, hs, NTOK, fs);
    e.final = mean_norm(fs, ft, NTOK, D);
    hylo_state_free(st_t);
    hylo_state_free(st_f);
    float *buffers[] = {zt, zs, x, y, at, as, hs, ft, fs};
    for (size_t i = 0; i < sizeof buffers / sizeof buffers[0]; i++) free(buffers[i]);
    hylo_model_free(tm);
    hylo_model_free(sm);
    return e;
}

/* Relative agreement: the tool and the test sum the same double terms in other orders (the KL
 * over ~6000 terms, log-sum-exps per row): a few hundred ulps at most, 1e-12 with margin. */
static void expect_rel(double got, double want, const char *what)
{
    ck_assert_msg(fabs(got - want) <= 1e-12 * fabs(want), "%s: %.17g vs %.17g", what, got, want);
}

START_TEST(kd_eval_matches_an_independent_evaluation)
{
    fixture f = make_fixture();
    const double taus[2] = {1.0, 2.0};
    for (int k = 0; k < 2; k++) {
        char extra[64];
        snprintf(extra, sizeof extra, "--temperature %g", taus[k]);
        cJSON *j = kd_eval_json(f.teacher, f.student, f.tokens, extra);
        expected e = evaluate_independently(&f, taus[k]);
        expect_rel(num(j, "kl"), e.kl, "KL");
        expect_rel(num(j, "ce"), e.ce, "CE");
        ck_assert_int_eq((int)num(j, "ce_targets"), NTOK - 1);
        ck_assert_int_eq((int)num(j, "tokens"), NTOK);
        ck_assert(num(j, "kl") > 0 && num(j, "temperature") == taus[k]);
        const char *mixers[4] = {"mla", "mamba2", "mamba2", "mla"};
        double total = 0;
        for (int l = 0; l < 4; l++) {
            const cJSON *layer = ild_layer(j, l);
            ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(layer, "mixer")->valuestring,
                             mixers[l]);
            expect_rel(num(layer, "hidden"), e.hidden[l], "ILD hidden");
            expect_rel(num(layer, "mixer_output"), e.mixer[l], "ILD mixer");
            ck_assert(num(layer, "hidden") > 0);
            total += num(layer, "hidden") + num(layer, "mixer_output");
        }
        const cJSON *ild = cJSON_GetObjectItemCaseSensitive(j, "ild");
        expect_rel(num(ild, "final_norm"), e.final, "ILD final norm");
        total += num(ild, "final_norm");
        expect_rel(num(ild, "total"), total, "ILD total");
        cJSON_Delete(j);
    }
    free_fixture(&f);
}
END_TEST

START_TEST(kd_eval_forms_agree_and_self_is_zero)
{
    fixture f = make_fixture();
    cJSON *full = kd_eval_json(f.teacher, f.student, f.tokens, "");
    const char *forms[3] = {"--chunk 5", "--chunk 5 --tile 37", "--tile 256"};
    const char *names[3] = {"chunked", "logit-free", "logit-free"};
    for (int k = 0; k < 3; k++) {
        cJSON *j = kd_eval_json(f.teacher, f.student, f.tokens, forms[k]);
        ck_assert_str_eq(cJSON_GetObjectItemCaseSensitive(j, "kl_form")->valuestring, names[k]);
        expect_rel(num(j, "kl"), num(full, "kl"), forms[k]);
        expect_rel(num(j, "ce"), num(full, "ce"), forms[k]);
        cJSON_Delete(j);
    }
    cJSON_Delete(full);
    /* a model against itself: the same arithmetic on both sides, so exactly 0 */
    for (int k = 0; k < 3; k++) {
        cJSON *j = kd_eval_json(f.teacher, f.teacher, f.tokens, k ? forms[k - 1] : "");
        ck_assert_msg(num(j, "kl") == 0.0, "self KL %g", num(j, "kl"));
        ck_assert_msg(num(cJSON_GetObjectItemCaseSensitive(j, "ild"), "total") == 0.0,
                      "self ILD");
        cJSON_Delete(j);
    }
    cJSON *j = kd_eval_json(f.student, f.student, f.tokens, "");
    const cJSON *ild = cJSON_GetObjectItemCaseSensitive(j, "ild");
    ck_assert(num(j, "kl") == 0.0 && num(ild, "total") == 0.0);
    cJSON_Delete(j);
    free_fixture(&f);
}
END_TEST

/* The cpu backend's layers give the reference's numbers to fp32 rounding: its forwards agree
 * with ref's to NMSE ~1e-12 (test_backend_cpu), which moves these sums by ~1e-6 relative at
 * most; 1e-4 leaves margin while a wrong layer moves them by O(1). bf16 weights stay close. */
START_TEST(kd_eval_on_the_cpu_backend_agrees_with_ref)
{
    fixture f = make_fixture();
    cJSON *ref = kd_eval_json(f.teacher, f.student, f.tokens, "");
    const char *runs[2] = {"--backend cpu", "--backend cpu --weights bf16"};
    const double limits[2] = {1e-4, 2e-2};
    for (int k = 0; k < 2; k++) {
        cJSON *j = kd_eval_json(f.teacher, f.student, f.tokens, runs[k]);
        const char *keys[2] = {"kl", "ce"};
        for (int i = 0; i < 2; i++)
            ck_assert_msg(fabs(num(j, keys[i]) - num(ref, keys[i])) <=
                              limits[k] * fabs(num(ref, keys[i])),
                          "%s %s: %.10g vs %.10g", runs[k], keys[i], num(j, keys[i]),
                          num(ref, keys[i]));
        const double t = num(cJSON_GetObjectItemCaseSensitive(j, "ild"), "total");
        const double t_ref = num(cJSON_GetObjectItemCaseSensitive(ref, "ild"), "total");
        ck_assert_msg(fabs(t - t_ref) <= limits[k] * fabs(t_ref), "%s ILD: %.10g vs %.10g",
                      runs[k], t, t_ref);
        cJSON_Delete(j);
    }
    cJSON_Delete(ref);
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens 1 "
                                           "--backend ref --weights bf16", f.teacher, f.student),
                         2, "bf16");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens 1 "
                                           "--backend gpu", f.teacher, f.student),
                         2, "ref, cpu or hip");
    free_fixture(&f);
}
END_TEST

START_TEST(kd_eval_prints_a_table_and_rejects_bad_input)
{
    fixture f = make_fixture();
    hylo_cli_result r = hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens '3 1 4 1 5 9 2 6'", f.teacher,
                        f.student);
    ck_assert_msg(r.status == 0, "%s", r.err);
    const char *lines[] = {"KD   KL(p_T || p_S), batchmean", "CE   student, next token",
                           "(7 targets)", "Enhanced ILD", "attention  mamba2", "final norm",
                           "total"};
    for (size_t i = 0; i < sizeof lines / sizeof lines[0]; i++)
        ck_assert_msg(strstr(r.out, lines[i]), "table lacks '%s':\n%s", lines[i], r.out);
    free(r.out);
    free(r.err);
    /* one token: a KL and ILD, but no next-token target */
    cJSON *j = NULL;
    r = hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens 7 --json", f.teacher, f.student);
    ck_assert_int_eq(r.status, 0);
    j = cJSON_Parse(r.out);
    ck_assert(j && cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(j, "ce")));
    ck_assert_int_eq((int)num(j, "ce_targets"), 0);
    cJSON_Delete(j);
    free(r.out);
    free(r.err);
    char *qwen = init_model("tiny-qwen3", "kd-qwen");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens 1", f.teacher, qwen), 1,
           "differ in vocab_size (256 vs 512)");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --tokens 1", f.teacher), 2, "--student");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s", f.teacher, f.student), 2, "exactly one");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens 1 --temperature 0", f.teacher,
                f.student),
           2, "--temperature");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens 1 --chunk 0", f.teacher, f.student), 2,
           "--chunk");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher %s --student %s --tokens '1 256'", f.teacher, f.student), 1,
           "outside the vocabulary");
    hylo_test_cli_expect(hylo_test_cli_run("kd-eval --teacher no-such-dir --student %s --tokens 1", f.student), 1,
           "no-such-dir");
    free(qwen);
    free_fixture(&f);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("kd_eval");
    TCase *tc = tcase_create("cli");
    tcase_set_timeout(tc, 60);
    tcase_add_test(tc, kd_eval_matches_an_independent_evaluation);
    tcase_add_test(tc, kd_eval_forms_agree_and_self_is_zero);
    tcase_add_test(tc, kd_eval_on_the_cpu_backend_agrees_with_ref);
    tcase_add_test(tc, kd_eval_prints_a_table_and_rejects_bad_input);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
