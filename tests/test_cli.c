/* test_cli.c: the `hylo` command line end to end: exit codes, messages, files it writes. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "testutil.h"


static char *tiny_model(void)
{
    char *dir = hylo_test_tmpdir("cli-model");
    rmdir(dir); /* init creates it */
    hylo_test_cli_expect(hylo_test_cli_run("init --preset tiny-llama --seed 3 --dtype f32 --out %s", dir), 0, NULL);
    return dir;
}

START_TEST(init_refuses_to_overwrite_without_force)
{
    char *dir = tiny_model();
    hylo_test_cli_expect(hylo_test_cli_run("init --preset tiny-qwen3 --out %s", dir), 1, "use --force");
    hylo_test_cli_expect(hylo_test_cli_run("init --preset tiny-qwen3 --out %s --force", dir), 0, NULL);
    hylo_config cfg;
    hylo_error err = {0};
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    ck_assert_ok(hylo_config_load(path, &cfg, &err), &err);
    ck_assert_int_eq(cfg.arch, HYLO_ARCH_QWEN3);
    hylo_test_cli_expect(hylo_test_cli_run("init --preset no-such --out x"), 2, "tiny-llama");
    hylo_test_cli_expect(hylo_test_cli_run("init --out x"), 2, "--preset");
    hylo_test_cli_expect(hylo_test_cli_run("init --preset tiny-llama --out x --dtype f64"), 2, "--dtype");
    free(dir);
}
END_TEST

START_TEST(run_rejects_bad_input_clearly)
{
    char *dir = tiny_model();
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens '1 256 3'", dir), 1, "outside the vocabulary");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens '1 -4'", dir), 1, "outside the vocabulary");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens ''", dir), 2, "no token ids");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens '1 x 3'", dir), 2, "not an integer");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens '1 99999999999'", dir), 2, "not an integer");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s", dir), 2, "--tokens");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens 1 --tokens-file f", dir), 2, "exactly one");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens-file no-such-file", dir), 2, "no-such-file");
    hylo_test_cli_expect(hylo_test_cli_run("run --model no-such-dir --tokens 1"), 1, "no-such-dir");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens 1 --bogus", dir), 2, "--bogus");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens 1 --generate -1", dir), 2, "--generate");
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens 1 --logits no-such-dir/l.safetensors", dir), 1, "no-such-dir");
    hylo_test_cli_expect(hylo_test_cli_run("frobnicate"), 2, "unknown command");
    free(dir);
}
END_TEST

/* The saved logits equal the library's prefill over prompt + generated tokens, and each
 * generated token is the argmax of the row before it. */
START_TEST(run_logits_file_matches_library_prefill)
{
    char *dir = tiny_model();
    hylo_test_write_file("prompt.txt", "5, 9,\n17 3\n", 12);
    hylo_test_cli_expect(hylo_test_cli_run("run --model %s --tokens-file prompt.txt --generate 4 --logits l.safetensors", dir), 0, NULL);
    hylo_error err = {0};
    hylo_safetensors *st = NULL;
    ck_assert_ok(hylo_safetensors_open("l.safetensors", &st, &err), &err);
    const hylo_tensor_view *v = hylo_safetensors_find(st, "logits");
    ck_assert_ptr_nonnull(v);
    ck_assert_int_eq(v->ndim, 2);
    ck_assert_int_eq(v->shape[0], 4 + 4 - 1);
    const char *ids = hylo_safetensors_metadata(st, "tokens");
    ck_assert_ptr_nonnull(ids);
    int32_t tokens[8];
    int n = 0;
    for (const char *p = ids; *p && n < 8;) tokens[n++] = (int32_t)strtol(p, (char **)&p, 10);
    ck_assert_int_eq(n, 8);
    ck_assert(tokens[0] == 5 && tokens[1] == 9 && tokens[2] == 17 && tokens[3] == 3);

    hylo_model *model = NULL;
    hylo_state *state = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    ck_assert_ok(hylo_state_create(model, 0, &state, &err), &err);
    const int64_t V = hylo_model_config(model)->vocab_size;
    ck_assert_int_eq(v->shape[1], V);
    float *want = malloc((size_t)(7 * V) * sizeof *want), *got = malloc((size_t)(7 * V) * sizeof *got);
    ck_assert_ok(hylo_forward(model, state, tokens, 7, HYLO_LOGITS_ALL, want, &err), &err);
    memcpy(got, v->data, (size_t)(7 * V) * sizeof *got);
    ck_assert_nmse(got, want, (size_t)(7 * V), 1e-12, "cli logits vs prefill");
    for (int r = 3; r < 7; r++) {
        int best = 0;
        for (int i = 1; i < V; i++)
            if (want[r * V + i] > want[r * V + best]) best = i;
        ck_assert_int_eq(tokens[r + 1], best);
    }
    free(want);
    free(got);
    hylo_state_free(state);
    hylo_model_free(model);
    hylo_safetensors_close(st);
    free(dir);
}
END_TEST

START_TEST(run_prints_generation_and_top_k)
{
    char *dir = tiny_model();
    hylo_cli_result r = hylo_test_cli_run("run --model %s --tokens '1 2 3' --generate 2 --top-k 3", dir);
    ck_assert_int_eq(r.status, 0);
    ck_assert_ptr_nonnull(strstr(r.out, "generated: "));
    ck_assert_ptr_nonnull(strstr(r.out, "top-3 of the last position"));
    hylo_test_cli_expect(r, 0, NULL);
    free(dir);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("cli");
    TCase *tc = tcase_create("hylo");
    tcase_set_timeout(tc, 120);
    tcase_add_test(tc, init_refuses_to_overwrite_without_force);
    tcase_add_test(tc, run_rejects_bad_input_clearly);
    tcase_add_test(tc, run_logits_file_matches_library_prefill);
    tcase_add_test(tc, run_prints_generation_and_top_k);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
