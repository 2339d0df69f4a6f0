/* test_hf_golden.c: the reference forward against logits computed by HF transformers on the
 * checkpoints it wrote itself (golden/hf/, see its README). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static const char *const cases[] = {"llama-gqa-llama3-untied", "llama-mha-biases-tied",
                                    "qwen2-qkv-bias", "qwen3-qknorm-tied", "qwen3-yarn"};

/* HF computes in fp32 (rope included), hylo accumulates in double: measured NMSE 3e-13 to
 * 5e-13; 1e-10 keeps a margin over rounding while any formula error gives > 1e-4. */
START_TEST(reference_matches_transformers)
{
    const char *root = getenv("HYLO_TEST_ROOT");
    char dir[1024], path[1200];
    snprintf(dir, sizeof dir, "%s/golden/hf/%s", root ? root : ".", cases[_i]);
    hylo_error err = {0};
    hylo_model *model = NULL;
    hylo_state *state = NULL;
    hylo_safetensors *expected = NULL;
    ck_assert_ok(hylo_model_load(dir, &model, &err), &err);
    ck_assert_ok(hylo_state_create(model, 0, &state, &err), &err);
    snprintf(path, sizeof path, "%s/logits.safetensors", dir);
    ck_assert_ok(hylo_safetensors_open(path, &expected, &err), &err);
    const hylo_tensor_view *want = hylo_safetensors_find(expected, "logits");
    ck_assert_ptr_nonnull(want);

    snprintf(path, sizeof path, "%s/tokens.txt", dir);
    size_t len;
    char *text = (char *)hylo_test_read_file(path, &len);
    int32_t tokens[64];
    int64_t T = 0;
    for (char *p = text, *end; T < 64; p = end) {
        long v = strtol(p, &end, 10);
        if (end == p) break;
        tokens[T++] = (int32_t)v;
    }
    free(text);
    const int64_t V = hylo_model_config(model)->vocab_size;
    ck_assert_int_eq(want->ndim, 2);
    ck_assert_int_eq(want->shape[0], T);
    ck_assert_int_eq(want->shape[1], V);

    float *got = malloc((size_t)(T * V) * sizeof *got), *ref = malloc(want->nbytes);
    ck_assert(got && ref);
    memcpy(ref, want->data, want->nbytes);
    ck_assert_ok(hylo_forward(model, state, tokens, T, HYLO_LOGITS_ALL, got, &err), &err);
    ck_assert_nmse(got, ref, (size_t)(T * V), 1e-10, cases[_i]);
    free(got);
    free(ref);
    hylo_safetensors_close(expected);
    hylo_state_free(state);
    hylo_model_free(model);
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("hf_golden");
    TCase *tc = tcase_create("transformers");
    tcase_add_loop_test(tc, reference_matches_transformers, 0, sizeof cases / sizeof cases[0]);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
