/* test_hybrid.c: whole hybrid models (MLA + Mamba2, MLA + GDN): prefill against token-by-token
 * decode (naive vs absorbed MLA and chunked vs recurrent scans at once), continued prefill,
 * the checkpoint format, and `hylo run` / `hylo info` on them. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "model/model.h"
#include "testutil.h"

static const char *const presets[] = {"tiny-hybrid-m2", "tiny-hybrid-gdn"};

static char *make_hybrid(const char *preset, hylo_dtype dtype, uint64_t seed)
{
    char *dir = hylo_test_tmpdir(preset);
    hylo_config cfg;
    hylo_hybrid_config hy;
    hylo_error err = {0};
    ck_assert_ok(hylo_hybrid_preset(preset, &cfg, &hy, &err), &err);
    cfg.dtype = dtype;
    ck_assert_ok(hylo_init_random(&cfg, &hy, seed, dir, 0, &err), &err);
    return dir;
}

/* A model and two fresh states on it (two runs to compare). */
typedef struct {
    char *dir;
    hylo_model *m;
    hylo_state *a, *b;
} fixture;

static fixture open_fixture(const char *preset, hylo_dtype dtype, uint64_t seed)
{
    fixture f = {make_hybrid(preset, dtype, seed), NULL, NULL, NULL};
    hylo_error err = {0};
    ck_assert_ok(hylo_model_load(f.dir, &f.m, &err), &err);
    ck_assert_ok(hylo_state_create(f.m, 0, &f.a, &err), &err);
    ck_assert_ok(hylo_state_create(f.m, 0, &f.b, &err), &err);
    return f;
}

static void close_fixture(fixture *f)
{
    hylo_state_free(f->a);
    hylo_state_free(f->b);
    hylo_model_free(f->m);
    free(f->dir);
}

static float *run_all(const hylo_model *m, hylo_state *s, const int32_t *tokens, int64_t T)
{
    float *logits = malloc((size_t)(T * hylo_model_config(m)->vocab_size) * sizeof *logits);
    hylo_error err = {0};
    ck_assert_ptr_nonnull(logits);
    ck_assert_ok(hylo_forward(m, s, tokens, T, HYLO_LOGITS_ALL, logits, &err), &err);
    return logits;
}

/* Decode runs absorbed MLA and the Mamba2 / GDN recurrences; prefill runs naive MLA and the
 * chunked scans (chunks of 8 and 4 tokens here, so 37 tokens cross several). Each is computed
 * with double accumulators from fp32 storage; through 4 layers and the LM head the logits
 * agree to NMSE ~1e-13 in practice; 1e-10 leaves margin while a wrong state carry, chunk
 * boundary or absorption gives > 1e-4. */
START_TEST(prefill_equals_token_by_token_decode)
{
    fixture f = open_fixture(presets[_i], HYLO_F32, 11);
    hylo_model *m = f.m;
    hylo_state *a = f.a, *b = f.b;
    hylo_error err = {0};
    const int64_t V = hylo_model_config(m)->vocab_size;
    enum { T = 37 };
    int32_t tokens[T];
    hylo_test_random_tokens(tokens, T, V, 5 + _i);
    float *prefill = run_all(m, a, tokens, T);
    float *decode = malloc((size_t)(T * V) * sizeof *decode);
    for (int64_t t = 0; t < T; t++)
        ck_assert_ok(hylo_forward(m, b, tokens + t, 1, HYLO_LOGITS_LAST, decode + t * V, &err), &err);
    ck_assert_nmse(decode, prefill, (size_t)(T * V), 1e-10, presets[_i]);
    ck_assert(hylo_max_abs_diff(prefill, prefill + V, (size_t)V) > 1e-3); /* logits carry signal */
    free(prefill);
    free(decode);
    close_fixture(&f);
}
END_TEST

START_TEST(prefill_100_then_50_equals_prefill_150)
{
    fixture f = open_fixture(presets[_i], HYLO_BF16, 12);
    hylo_model *m = f.m;
    hylo_state *a = f.a, *b = f.b;
    const int64_t V = hylo_model_config(m)->vocab_size;
    int32_t tokens[150];
    hylo_test_random_tokens(tokens, 150, V, 8);
    float *whole = run_all(m, a, tokens, 150);
    float *first = run_all(m, b, tokens, 100);
    float *second = run_all(m, b, tokens + 100, 50);
    /* chunk boundaries fall elsewhere in the two runs: same tolerance as above */
    ck_assert_nmse(first, whole, (size_t)(100 * V), 1e-10, "prefill(100)");
    ck_assert_nmse(second, whole + 100 * V, (size_t)(50 * V), 1e-10, "prefill(50) after 100");
    free(whole);
    free(first);
    free(second);
    close_fixture(&f);
}
END_TEST

START_TEST(checkpoint_holds_the_spec_names)
{
    char *dir = make_hybrid(presets[_i], HYLO_BF16, 1);
    hylo_error err = {0};
    hylo_checkpoint *ck = NULL;
    ck_assert_ok(hylo_checkpoint_open(dir, &ck, &err), &err);
    const char *mla = "model.layers.0.mla.kv_a_proj_with_mqa.weight";
    const char *linear = _i == 0 ? "model.layers.1.mamba.in_proj.weight" : "model.layers.1.gdn.b_proj.weight";
    ck_assert_ptr_nonnull(hylo_checkpoint_find(ck, mla));
    ck_assert_ptr_nonnull(hylo_checkpoint_find(ck, linear));
    ck_assert_ptr_nonnull(hylo_checkpoint_find(ck, "lm_head.weight")); /* untied (spec sec. 7) */
    ck_assert_ptr_null(hylo_checkpoint_find(ck, "model.layers.1.self_attn.q_proj.weight"));
    const hylo_tensor_view *conv = hylo_checkpoint_find(
        ck, _i == 0 ? "model.layers.1.mamba.conv1d.weight" : "model.layers.1.gdn.q_conv1d.weight");
    ck_assert_ptr_nonnull(conv);
    ck_assert_int_eq(conv->ndim, 3);
    ck_assert_int_eq(conv->shape[1], 1);
    ck_assert_int_eq(conv->shape[2], 4);
    hylo_checkpoint_close(ck);
    free(dir);
}
END_TEST

START_TEST(cli_runs_and_describes_hybrids)
{
    char *dir = hylo_test_tmpdir("cli-hybrid");
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "%s init --preset %s --out %s/m --seed 2 >/dev/null && "
             "%s run --model %s/m --tokens '3 1 4 1 5 9 2 6' --generate 4 > run.txt && "
             "%s info --model %s/m --json > info.txt", hylo_test_cli(), presets[_i], dir,
             hylo_test_cli(), dir, hylo_test_cli(), dir);
    ck_assert_int_eq(system(cmd), 0);
    size_t len;
    char *run = (char *)hylo_test_read_file("run.txt", &len);
    char *info = (char *)hylo_test_read_file("info.txt", &len);
    ck_assert_ptr_nonnull(strstr(run, "generated: "));
    ck_assert_ptr_nonnull(strstr(info, "\"mla\", \"")); /* layer list starts with MLA */
    ck_assert_ptr_nonnull(strstr(info, "\"state_bytes_per_sequence\": "));
    free(run);
    free(info);
    free(dir);
}
END_TEST

/* embed, hylo_layer_forward layer by layer, final norm and LM head compose to hylo_forward
 * (the same arithmetic: equal to the bit). */
START_TEST(layer_by_layer_equals_forward)
{
    fixture f = open_fixture(presets[_i], HYLO_F32, 4);
    hylo_model *m = f.m;
    hylo_state *a = f.a, *b = f.b;
    hylo_error err = {0};
    const hylo_config *c = hylo_model_config(m);
    const int64_t D = c->hidden_size, V = c->vocab_size;
    enum { T = 13 };
    int32_t tokens[T];
    hylo_test_random_tokens(tokens, T, V, 21);
    float *want = run_all(m, a, tokens, T);
    float *x = malloc((size_t)(T * D) * sizeof *x), *y = malloc((size_t)(T * D) * sizeof *y);
    float *mix = malloc((size_t)(T * D) * sizeof *mix), *got = malloc((size_t)(T * V) * sizeof *got);
    ck_assert(x && y && mix && got);
    ck_assert_ok(hylo_embed(m, tokens, T, x, &err), &err);
    for (int64_t l = 0; l < c->num_layers; l++) {
        ck_assert_ok(hylo_layer_forward(m, b, l, x, T, mix, y, &err), &err);
        double mix_max = 0;
        for (int64_t i = 0; i < T * D; i++) mix_max = fmax(mix_max, fabs(mix[i]));
        ck_assert(mix_max > 1e-3 && isfinite(mix_max)); /* the mixer output was written */
        float *t = x;
        x = y;
        y = t;
    }
    hylo_final_norm(m, x, T, y);
    hylo_lm_head(m, y, T, got);
    ck_assert_mem_eq(got, want, (size_t)(T * V) * sizeof *got);
    ck_assert_int_eq(hylo_layer_forward(m, b, c->num_layers, x, T, NULL, y, &err), HYLO_ERR_RANGE);
    free(x);
    free(y);
    free(mix);
    free(got);
    free(want);
    close_fixture(&f);
}
END_TEST

/* An absurd capacity is refused, not wrapped into a small allocation. */
START_TEST(huge_capacity_is_refused)
{
    char *dir = make_hybrid(presets[0], HYLO_BF16, 1);
    hylo_error err = {0};
    hylo_model *m = NULL;
    hylo_state *s = NULL;
    ck_assert_ok(hylo_model_load(dir, &m, &err), &err);
    ck_assert_int_eq(hylo_state_create(m, (int64_t)1 << 61, &s, &err), HYLO_ERR_RANGE);
    ck_assert_ptr_null(s);
    hylo_model_free(m);
    free(dir);
}
END_TEST

/* A state holds exactly the positions it was created for (the cache memory `hylo info`
 * counts), and grows at least geometrically past them. */
START_TEST(state_capacity_is_exact_then_geometric)
{
    char *dir = make_hybrid(presets[0], HYLO_BF16, 1);
    hylo_error err = {0};
    hylo_model *m = NULL;
    hylo_state *s = NULL;
    ck_assert_ok(hylo_model_load(dir, &m, &err), &err);
    ck_assert_ok(hylo_state_create(m, 100, &s, &err), &err);
    ck_assert_int_eq(s->capacity, 100);
    ck_assert_ok(hylo_state_reserve(s, 100, &err), &err);
    ck_assert_int_eq(s->capacity, 100);
    ck_assert_ok(hylo_state_reserve(s, 101, &err), &err);
    ck_assert_int_eq(s->capacity, 200);
    ck_assert_ok(hylo_state_reserve(s, 1000, &err), &err);
    ck_assert_int_eq(s->capacity, 1000);
    hylo_state_free(s);
    hylo_model_free(m);
    free(dir);
}
END_TEST

/* hylo_init_random of a teacher over a directory that held a hybrid leaves a teacher: the
 * hybrid's hybrid_config.json goes, and the directory loads as (and equals) a fresh teacher. */
START_TEST(teacher_written_over_a_hybrid_is_a_teacher)
{
    char *dir = make_hybrid(presets[_i], HYLO_F32, 2);
    hylo_config cfg;
    hylo_hybrid_config hy;
    hylo_error err = {0};
    ck_assert_ok(hylo_hybrid_preset(presets[_i], &cfg, &hy, &err), &err);
    cfg.dtype = HYLO_F32;
    ck_assert_ok(hylo_init_random(&cfg, NULL, 3, dir, 0, &err), &err);
    char *hy_path = hylo_test_join(dir, "hybrid_config.json");
    ck_assert_int_ne(access(hy_path, F_OK), 0);
    hylo_model *m = NULL;
    ck_assert_ok(hylo_model_load(dir, &m, &err), &err);
    const hylo_hybrid_config *mixers = hylo_model_hybrid(m);
    for (int64_t i = 0; i < mixers->num_layers; i++)
        ck_assert_int_eq(mixers->mixers[i], HYLO_MIXER_ATTENTION);
    hylo_model_free(m);
    /* byte for byte the teacher written into an empty directory */
    char *fresh = hylo_test_tmpdir("teacher");
    ck_assert_ok(hylo_init_random(&cfg, NULL, 3, fresh, 0, &err), &err);
    ck_assert(hylo_test_same_file(dir, fresh, "model.safetensors"));
    ck_assert(hylo_test_same_file(dir, fresh, "config.json"));
    ck_assert_uint_eq(hylo_test_dir_entries(dir, NULL, 0), 2);
    free(fresh);
    free(hy_path);
    free(dir);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("hybrid");
    TCase *tc = tcase_create("model");
    tcase_set_timeout(tc, 120);
    tcase_add_loop_test(tc, prefill_equals_token_by_token_decode, 0, 2);
    tcase_add_loop_test(tc, prefill_100_then_50_equals_prefill_150, 0, 2);
    tcase_add_loop_test(tc, checkpoint_holds_the_spec_names, 0, 2);
    tcase_add_loop_test(tc, cli_runs_and_describes_hybrids, 0, 2);
    tcase_add_loop_test(tc, layer_by_layer_equals_forward, 0, 2);
    tcase_add_test(tc, huge_capacity_is_refused);
    tcase_add_test(tc, state_capacity_is_exact_then_geometric);
    tcase_add_loop_test(tc, teacher_written_over_a_hybrid_is_a_teacher, 0, 2);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
