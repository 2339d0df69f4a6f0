/* test_config.c: config.json parsing (HF 4.x and 5.x files of Llama-3.2, Qwen2.5 and Qwen3),
 * defaults, every error path, validation, atomic save + load round trips, and the presets. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "testutil.h"

/* ------------------------------------------------------------------------------------------ */
/* Real config.json files                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* meta-llama/Llama-3.2-1B, as written by transformers 4.45. */
static const char LLAMA_1B_HF4[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"eos_token_id\": 128001,\n"
    "  \"head_dim\": 64,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 8192,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 16,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_scaling\": {\n"
    "    \"factor\": 32.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"rope_theta\": 500000.0,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.45.0.dev0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

/* The same model as transformers 5.x writes it: rope_parameters (with rope_theta) and dtype. */
static const char LLAMA_1B_HF5[] =
    "{\n"
    "  \"architectures\": [\"LlamaForCausalLM\"],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 128000,\n"
    "  \"dtype\": \"bfloat16\",\n"
    "  \"eos_token_id\": 128001,\n"
    "  \"head_dim\": 64,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 8192,\n"
    "  \"max_position_embeddings\": 131072,\n"
    "  \"mlp_bias\": false,\n"
    "  \"model_type\": \"llama\",\n"
    "  \"num_attention_heads\": 32,\n"
    "  \"num_hidden_layers\": 16,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"pad_token_id\": null,\n"
    "  \"pretraining_tp\": 1,\n"
    "  \"rms_norm_eps\": 1e-05,\n"
    "  \"rope_parameters\": {\n"
    "    \"factor\": 32.0,\n"
    "    \"high_freq_factor\": 4.0,\n"
    "    \"low_freq_factor\": 1.0,\n"
    "    \"original_max_position_embeddings\": 8192,\n"
    "    \"rope_theta\": 500000.0,\n"
    "    \"rope_type\": \"llama3\"\n"
    "  },\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"transformers_version\": \"5.0.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"vocab_size\": 128256\n"
    "}\n";

/* meta-llama/Llama-3.2-3B (transformers 4.45). */
static const char LLAMA_3B_HF4[] =
    "{\"architectures\": [\"LlamaForCausalLM\"], \"attention_bias\": false,"
    " \"attention_dropout\": 0.0, \"bos_token_id\": 128000, \"eos_token_id\": 128001,"
    " \"head_dim\": 128, \"hidden_act\": \"silu\", \"hidden_size\": 3072,"
    " \"initializer_range\": 0.02, \"intermediate_size\": 8192,"
    " \"max_position_embeddings\": 131072, \"mlp_bias\": false, \"model_type\": \"llama\","
    " \"num_attention_heads\": 24, \"num_hidden_layers\": 28, \"num_key_value_heads\": 8,"
    " \"pretraining_tp\": 1, \"rms_norm_eps\": 1e-05,"
    " \"rope_scaling\": {\"factor\": 32.0, \"high_freq_factor\": 4.0, \"low_freq_factor\": 1.0,"
    " \"original_max_position_embeddings\": 8192, \"rope_type\": \"llama3\"},"
    " \"rope_theta\": 500000.0, \"tie_word_embeddings\": true, \"torch_dtype\": \"bfloat16\","
    " \"transformers_version\": \"4.45.0.dev0\", \"use_cache\": true, \"vocab_size\": 128256}";

/* Qwen/Qwen3-1.7B (transformers 4.51): rope_theta is written as an integer. */
static const char QWEN3_1_7B_HF4[] =
    "{\n"
    "  \"architectures\": [\n"
    "    \"Qwen3ForCausalLM\"\n"
    "  ],\n"
    "  \"attention_bias\": false,\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151645,\n"
    "  \"head_dim\": 128,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 2048,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 6144,\n"
    "  \"max_position_embeddings\": 40960,\n"
    "  \"max_window_layers\": 28,\n"
    "  \"model_type\": \"qwen3\",\n"
    "  \"num_attention_heads\": 16,\n"
    "  \"num_hidden_layers\": 28,\n"
    "  \"num_key_value_heads\": 8,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_scaling\": null,\n"
    "  \"rope_theta\": 1000000,\n"
    "  \"sliding_window\": null,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.51.0\",\n"
    "  \"use_cache\": true,\n"
    "  \"use_sliding_window\": false,\n"
    "  \"vocab_size\": 151936\n"
    "}\n";

/* Qwen/Qwen2.5-0.5B (transformers 4.40): no head_dim (896 / 14 = 64), no attention_bias. */
static const char QWEN2_5_0_5B_HF4[] =
    "{\n"
    "  \"architectures\": [\"Qwen2ForCausalLM\"],\n"
    "  \"attention_dropout\": 0.0,\n"
    "  \"bos_token_id\": 151643,\n"
    "  \"eos_token_id\": 151643,\n"
    "  \"hidden_act\": \"silu\",\n"
    "  \"hidden_size\": 896,\n"
    "  \"initializer_range\": 0.02,\n"
    "  \"intermediate_size\": 4864,\n"
    "  \"max_position_embeddings\": 32768,\n"
    "  \"max_window_layers\": 24,\n"
    "  \"model_type\": \"qwen2\",\n"
    "  \"num_attention_heads\": 14,\n"
    "  \"num_hidden_layers\": 24,\n"
    "  \"num_key_value_heads\": 2,\n"
    "  \"rms_norm_eps\": 1e-06,\n"
    "  \"rope_theta\": 1000000.0,\n"
    "  \"sliding_window\": 32768,\n"
    "  \"tie_word_embeddings\": true,\n"
    "  \"torch_dtype\": \"bfloat16\",\n"
    "  \"transformers_version\": \"4.40.1\",\n"
    "  \"use_cache\": true,\n"
    "  \"use_mrope\": false,\n"
    "  \"use_sliding_window\": false,\n"
    "  \"vocab_size\": 151936\n"
    "}\n";

/* ------------------------------------------------------------------------------------------ */
/* Helpers                                                                                      */
/* ------------------------------------------------------------------------------------------ */

/* The first field in which a and b differ, or NULL when they are identical. */
static const char *config_difference(const hylo_config *a, const hylo_config *b)
{
#define DIFF(field)                                                                             \
    if (a->field != b->field) return #field
    DIFF(arch);
    DIFF(vocab_size);
    DIFF(hidden_size);
    DIFF(intermediate_size);
    DIFF(num_layers);
    DIFF(num_heads);
    DIFF(num_kv_heads);
    DIFF(head_dim);
    DIFF(max_position_embeddings);
    DIFF(rms_norm_eps);
    DIFF(rope.type);
    DIFF(rope.theta);
    DIFF(rope.factor);
    DIFF(rope.low_freq_factor);
    DIFF(rope.high_freq_factor);
    DIFF(rope.original_max_position);
    DIFF(rope.beta_fast);
    DIFF(rope.beta_slow);
    DIFF(rope.attention_factor);
    DIFF(rope.mscale);
    DIFF(rope.mscale_all_dim);
    DIFF(rope.truncate);
    DIFF(tie_word_embeddings);
    DIFF(qkv_bias);
    DIFF(o_bias);
    DIFF(mlp_bias);
    DIFF(qk_norm);
    DIFF(dtype);
#undef DIFF
    return NULL;
}

#define ck_assert_config_eq(a, b, what)                                                         \
    do {                                                                                        \
        const char *d_ = config_difference((a), (b));                                          \
        ck_assert_msg(d_ == NULL, "%s: configs differ in '%s'", (what), d_ ? d_ : "");         \
    } while (0)

static hylo_config preset(const char *name)
{
    hylo_config c;
    hylo_error err = {0};
    ck_assert_ok(hylo_preset(name, &c, &err), &err);
    return c;
}

static hylo_config parse_ok(const char *json, const char *what)
{
    hylo_config c;
    hylo_error err = {0};
    hylo_status st = hylo_config_parse(json, strlen(json), what, &c, &err);
    ck_assert_msg(st == HYLO_OK, "%s: %s", what, err.message);
    return c;
}

/* Parses json expecting `status` and a message containing `needle`; `out` must be untouched. */
static void expect_error(const char *json, hylo_status status, const char *needle)
{
    hylo_config out, before;
    memset(&out, 0x5a, sizeof out);
    memcpy(&before, &out, sizeof out);
    hylo_error err = {0};
    hylo_status st = hylo_config_parse(json, strlen(json), "t.json", &out, &err);
    ck_assert_msg(st == status, "%s: got status %s (%s), want %s", json, hylo_status_name(st),
                  err.message, hylo_status_name(status));
    ck_assert_int_eq(err.status, status);
    ck_assert_msg(strncmp(err.message, "t.json: ", 8) == 0, "no label in \"%s\"", err.message);
    ck_assert_msg(strstr(err.message, needle) != NULL, "%s: message \"%s\" lacks \"%s\"", json,
                  err.message, needle);
    ck_assert_msg(memcmp(&out, &before, sizeof out) == 0, "%s: output modified on failure", json);
}

/* Validation of a config built in code must fail naming `needle`. */
static void expect_invalid(const hylo_config *c, const char *needle)
{
    hylo_error err = {0};
    hylo_status st = hylo_config_validate(c, "cfg", &err);
    ck_assert_msg(st == HYLO_ERR_CONFIG, "expected a config error naming %s, got %s", needle,
                  hylo_status_name(st));
    ck_assert_msg(strstr(err.message, needle) != NULL, "message \"%s\" lacks \"%s\"", err.message,
                  needle);
}

/* Saves c into a fresh directory, loads it back, checks identity and that nothing else (no
 * temporary file) was left; returns the saved text (malloc'd). */
static char *round_trip(const hylo_config *c, const char *what)
{
    char *dir = hylo_test_tmpdir("rt");
    char *path = hylo_test_join(dir, "config.json");
    hylo_error err = {0};
    ck_assert_ok(hylo_config_save(c, path, &err), &err);
    hylo_config back;
    memset(&back, 0, sizeof back);
    ck_assert_ok(hylo_config_load(path, &back, &err), &err);
    ck_assert_config_eq(&back, c, what);
    ck_assert_int_eq((int)hylo_test_dir_entries(dir, NULL, 0), 1);
    size_t len;
    char *saved = (char *)hylo_test_read_file(path, &len);
    free(path);
    free(dir);
    return saved;
}

/* ------------------------------------------------------------------------------------------ */
/* Real files                                                                                   */
/* ------------------------------------------------------------------------------------------ */

START_TEST(llama_3_2_1b_hf4)
{
    hylo_config c = parse_ok(LLAMA_1B_HF4, "Llama-3.2-1B");
    ck_assert_int_eq(c.arch, HYLO_ARCH_LLAMA);
    ck_assert_int_eq(c.hidden_size, 2048);
    ck_assert_int_eq(c.num_layers, 16);
    ck_assert_int_eq(c.num_heads, 32);
    ck_assert_int_eq(c.num_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.intermediate_size, 8192);
    ck_assert_int_eq(c.vocab_size, 128256);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert(c.rms_norm_eps == 1e-5);
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_LLAMA3);
    ck_assert(c.rope.theta == 500000.0);
    ck_assert(c.rope.factor == 32.0);
    ck_assert(c.rope.low_freq_factor == 1.0);
    ck_assert(c.rope.high_freq_factor == 4.0);
    ck_assert_int_eq(c.rope.original_max_position, 8192);
    ck_assert(c.tie_word_embeddings);
    ck_assert(!c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm);
    ck_assert_int_eq(c.dtype, HYLO_BF16);
    hylo_config p = preset("llama-3.2-1b");
    ck_assert_config_eq(&c, &p, "Llama-3.2-1B vs preset");
}
END_TEST

START_TEST(llama_3_2_1b_hf5)
{
    hylo_config c = parse_ok(LLAMA_1B_HF5, "Llama-3.2-1B (HF 5)");
    hylo_config p = preset("llama-3.2-1b");
    ck_assert_config_eq(&c, &p, "HF 5 Llama-3.2-1B vs preset");
}
END_TEST

START_TEST(llama_3_2_3b_hf4)
{
    hylo_config c = parse_ok(LLAMA_3B_HF4, "Llama-3.2-3B");
    hylo_config p = preset("llama-3.2-3b");
    ck_assert_config_eq(&c, &p, "Llama-3.2-3B vs preset");
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.num_heads, 24);
}
END_TEST

START_TEST(qwen3_1_7b_hf4)
{
    hylo_config c = parse_ok(QWEN3_1_7B_HF4, "Qwen3-1.7B");
    ck_assert_int_eq(c.arch, HYLO_ARCH_QWEN3);
    ck_assert_int_eq(c.hidden_size, 2048);
    ck_assert_int_eq(c.num_heads, 16);
    ck_assert_int_eq(c.num_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.intermediate_size, 6144);
    ck_assert_int_eq(c.num_layers, 28);
    ck_assert_int_eq(c.vocab_size, 151936);
    ck_assert_int_eq(c.max_position_embeddings, 40960);
    ck_assert(c.rms_norm_eps == 1e-6);
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_DEFAULT);
    ck_assert(c.rope.theta == 1e6);
    ck_assert(c.qk_norm && c.tie_word_embeddings);
    ck_assert(!c.qkv_bias && !c.o_bias && !c.mlp_bias);
    hylo_config p = preset("qwen3-1.7b");
    ck_assert_config_eq(&c, &p, "Qwen3-1.7B vs preset");
}
END_TEST

/* Qwen3-1.7B as transformers 5.x writes it, with layer_types and rope_parameters. */
START_TEST(qwen3_1_7b_hf5)
{
    char layers[28 * 20 + 8] = "";
    for (int i = 0; i < 28; i++) strcat(layers, i ? ", \"full_attention\"" : "\"full_attention\"");
    char json[4096];
    snprintf(json, sizeof json,
             "{\"architectures\": [\"Qwen3ForCausalLM\"], \"attention_bias\": false,"
             " \"dtype\": \"bfloat16\", \"head_dim\": 128, \"hidden_act\": \"silu\","
             " \"hidden_size\": 2048, \"intermediate_size\": 6144, \"layer_types\": [%s],"
             " \"max_position_embeddings\": 40960, \"max_window_layers\": 28,"
             " \"model_type\": \"qwen3\", \"num_attention_heads\": 16, \"num_hidden_layers\": 28,"
             " \"num_key_value_heads\": 8, \"rms_norm_eps\": 1e-06,"
             " \"rope_parameters\": {\"rope_theta\": 1000000, \"rope_type\": \"default\"},"
             " \"sliding_window\": null, \"tie_word_embeddings\": true,"
             " \"use_sliding_window\": false, \"vocab_size\": 151936}", layers);
    hylo_config c = parse_ok(json, "Qwen3-1.7B (HF 5)");
    hylo_config p = preset("qwen3-1.7b");
    ck_assert_config_eq(&c, &p, "HF 5 Qwen3-1.7B vs preset");
}
END_TEST

START_TEST(qwen2_5_0_5b_hf4)
{
    hylo_config c = parse_ok(QWEN2_5_0_5B_HF4, "Qwen2.5-0.5B");
    ck_assert_int_eq(c.arch, HYLO_ARCH_QWEN2);
    ck_assert_int_eq(c.vocab_size, 151936);
    ck_assert_int_eq(c.hidden_size, 896);
    ck_assert_int_eq(c.intermediate_size, 4864);
    ck_assert_int_eq(c.num_layers, 24);
    ck_assert_int_eq(c.num_heads, 14);
    ck_assert_int_eq(c.num_kv_heads, 2);
    ck_assert_int_eq(c.head_dim, 64);
    ck_assert_int_eq(c.max_position_embeddings, 32768);
    ck_assert(c.rms_norm_eps == 1e-6);
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_DEFAULT);
    ck_assert(c.rope.theta == 1e6);
    ck_assert(c.tie_word_embeddings);
    ck_assert(c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm);
    ck_assert_int_eq(c.dtype, HYLO_BF16);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Defaults                                                                                     */
/* ------------------------------------------------------------------------------------------ */

START_TEST(defaults_llama)
{
    hylo_config c = parse_ok("{\"model_type\": \"llama\"}", "llama defaults");
    ck_assert_int_eq(c.vocab_size, 32000);
    ck_assert_int_eq(c.hidden_size, 4096);
    ck_assert_int_eq(c.intermediate_size, 11008);
    ck_assert_int_eq(c.num_layers, 32);
    ck_assert_int_eq(c.num_heads, 32);
    ck_assert_int_eq(c.num_kv_heads, 32);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.max_position_embeddings, 2048);
    ck_assert(c.rms_norm_eps == 1e-6);
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_DEFAULT);
    ck_assert(c.rope.theta == 10000.0);
    ck_assert(!c.tie_word_embeddings && !c.qkv_bias && !c.o_bias && !c.mlp_bias && !c.qk_norm);
    ck_assert_int_eq(c.dtype, HYLO_F32);
    /* canonical unused rope fields */
    ck_assert(c.rope.factor == 1.0 && c.rope.beta_fast == 32.0 && c.rope.beta_slow == 1.0);
    ck_assert(c.rope.truncate && c.rope.original_max_position == 0);
}
END_TEST

START_TEST(defaults_qwen2_qwen3)
{
    hylo_config q2 = parse_ok("{\"model_type\": \"qwen2\"}", "qwen2 defaults");
    ck_assert_int_eq(q2.vocab_size, 151936);
    ck_assert_int_eq(q2.intermediate_size, 22016);
    ck_assert_int_eq(q2.max_position_embeddings, 32768);
    ck_assert_int_eq(q2.num_kv_heads, 32);
    ck_assert_int_eq(q2.head_dim, 128);
    ck_assert(q2.qkv_bias && !q2.o_bias && !q2.qk_norm && !q2.tie_word_embeddings);
    ck_assert(q2.rope.theta == 10000.0 && q2.rms_norm_eps == 1e-6);
    ck_assert_int_eq(q2.dtype, HYLO_F32);
    hylo_config q3 = parse_ok("{\"model_type\": \"qwen3\"}", "qwen3 defaults");
    ck_assert_int_eq(q3.vocab_size, 151936);
    ck_assert_int_eq(q3.num_kv_heads, 32);
    ck_assert(q3.qk_norm && !q3.qkv_bias && !q3.o_bias);
    /* Qwen3Config's head_dim default is 128 whatever hidden / heads is ... */
    hylo_config c = parse_ok("{\"model_type\": \"qwen3\", \"hidden_size\": 1024,"
                             " \"num_attention_heads\": 16, \"num_key_value_heads\": 8}", "q3");
    ck_assert_int_eq(c.head_dim, 128);
    /* ... while an explicit null falls back to hidden / heads. */
    c = parse_ok("{\"model_type\": \"qwen3\", \"hidden_size\": 1024, \"head_dim\": null,"
                 " \"num_attention_heads\": 16, \"num_key_value_heads\": 8}", "q3 null head_dim");
    ck_assert_int_eq(c.head_dim, 64);
}
END_TEST

START_TEST(defaults_kv_heads_and_head_dim)
{
    /* Llama: absent or null num_key_value_heads means MHA; head_dim = hidden / heads. */
    hylo_config c = parse_ok("{\"model_type\": \"llama\", \"hidden_size\": 96,"
                             " \"num_attention_heads\": 6}", "llama mha");
    ck_assert_int_eq(c.num_kv_heads, 6);
    ck_assert_int_eq(c.head_dim, 16);
    c = parse_ok("{\"model_type\": \"llama\", \"num_key_value_heads\": null,"
                 " \"num_attention_heads\": 8, \"head_dim\": null}", "llama nulls");
    ck_assert_int_eq(c.num_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 512);
    /* Qwen2: null num_key_value_heads means num_attention_heads (absent means 32). */
    c = parse_ok("{\"model_type\": \"qwen2\", \"num_key_value_heads\": null,"
                 " \"num_attention_heads\": 16}", "qwen2 null kv");
    ck_assert_int_eq(c.num_kv_heads, 16);
    /* explicit head_dim different from hidden / heads is kept, for every arch */
    c = parse_ok("{\"model_type\": \"llama\", \"hidden_size\": 100, \"num_attention_heads\": 4,"
                 " \"num_key_value_heads\": 2, \"head_dim\": 32}", "explicit head_dim");
    ck_assert_int_eq(c.head_dim, 32);
    /* attention_bias / mlp_bias for llama, attention_bias for qwen3, ignored for qwen2 */
    c = parse_ok("{\"model_type\": \"llama\", \"attention_bias\": true, \"mlp_bias\": true}", "b");
    ck_assert(c.qkv_bias && c.o_bias && c.mlp_bias);
    c = parse_ok("{\"model_type\": \"qwen3\", \"attention_bias\": true, \"mlp_bias\": true}", "b3");
    ck_assert(c.qkv_bias && c.o_bias && !c.mlp_bias);
    c = parse_ok("{\"model_type\": \"qwen2\", \"attention_bias\": false}", "b2");
    ck_assert(c.qkv_bias && !c.o_bias);
    /* nulls elsewhere read as absent */
    c = parse_ok("{\"model_type\": \"llama\", \"vocab_size\": null, \"torch_dtype\": null,"
                 " \"rope_scaling\": null, \"rope_parameters\": null, \"hidden_act\": null}", "n");
    ck_assert_int_eq(c.vocab_size, 32000);
    ck_assert_int_eq(c.dtype, HYLO_F32);
}
END_TEST

START_TEST(dtype_spellings)
{
    hylo_config c = parse_ok("{\"model_type\": \"llama\", \"torch_dtype\": \"float16\"}", "f16");
    ck_assert_int_eq(c.dtype, HYLO_F16);
    c = parse_ok("{\"model_type\": \"llama\", \"dtype\": \"float32\"}", "f32");
    ck_assert_int_eq(c.dtype, HYLO_F32);
    c = parse_ok("{\"model_type\": \"llama\", \"dtype\": \"bfloat16\","
                 " \"torch_dtype\": \"bfloat16\"}", "both");
    ck_assert_int_eq(c.dtype, HYLO_BF16);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* RoPE spellings                                                                               */
/* ------------------------------------------------------------------------------------------ */

START_TEST(rope_variants)
{
    hylo_config c = parse_ok("{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"linear\","
                             " \"factor\": 2}}", "linear (type)");
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_LINEAR);
    ck_assert(c.rope.factor == 2.0 && c.rope.theta == 10000.0);
    /* yarn with only the factor: L0 = max_position_embeddings, beta 32 / 1, truncate */
    c = parse_ok("{\"model_type\": \"qwen3\", \"rope_scaling\": {\"rope_type\": \"yarn\","
                 " \"factor\": 4.0}, \"rope_theta\": 1000000}", "yarn minimal");
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_YARN);
    ck_assert(c.rope.factor == 4.0);
    ck_assert_int_eq(c.rope.original_max_position, 32768);
    ck_assert(c.rope.beta_fast == 32.0 && c.rope.beta_slow == 1.0);
    ck_assert(c.rope.attention_factor == 0.0 && c.rope.mscale == 0.0);
    ck_assert(c.rope.mscale_all_dim == 0.0 && c.rope.truncate);
    c = parse_ok("{\"model_type\": \"llama\", \"max_position_embeddings\": 65536,"
                 " \"rope_parameters\": {\"rope_type\": \"yarn\", \"factor\": 32,"
                 " \"original_max_position_embeddings\": 2048, \"beta_fast\": 16, \"beta_slow\": 2,"
                 " \"attention_factor\": 1.25, \"mscale\": 0.707, \"mscale_all_dim\": 0.5,"
                 " \"truncate\": false, \"rope_theta\": 500000.0}}", "yarn full");
    ck_assert_int_eq(c.rope.original_max_position, 2048);
    ck_assert(c.rope.beta_fast == 16.0 && c.rope.beta_slow == 2.0);
    ck_assert(c.rope.attention_factor == 1.25 && c.rope.mscale == 0.707);
    ck_assert(c.rope.mscale_all_dim == 0.5 && !c.rope.truncate && c.rope.theta == 5e5);
    /* HF 5 default form; a rope object without a type is the default */
    c = parse_ok("{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"default\","
                 " \"rope_theta\": 500000.0}}", "hf5 default");
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_DEFAULT);
    ck_assert(c.rope.theta == 5e5);
    c = parse_ok("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_theta\": 1e6}}", "untyped");
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_DEFAULT);
    ck_assert(c.rope.theta == 1e6);
}
END_TEST

START_TEST(rope_sources_that_agree)
{
    /* both objects, same settings, theta in three places with one value */
    hylo_config c = parse_ok(
        "{\"model_type\": \"llama\", \"rope_theta\": 500000.0,"
        " \"rope_scaling\": {\"type\": \"llama3\", \"factor\": 32.0, \"low_freq_factor\": 1,"
        " \"high_freq_factor\": 4, \"original_max_position_embeddings\": 8192},"
        " \"rope_parameters\": {\"rope_type\": \"llama3\", \"factor\": 32,"
        " \"low_freq_factor\": 1.0, \"high_freq_factor\": 4.0,"
        " \"original_max_position_embeddings\": 8192, \"rope_theta\": 500000}}", "both");
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_LLAMA3);
    ck_assert(c.rope.theta == 5e5 && c.rope.factor == 32.0);
    /* type and rope_type both given and equal */
    c = parse_ok("{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"linear\","
                 " \"rope_type\": \"linear\", \"factor\": 3}}", "type + rope_type");
    ck_assert(c.rope.factor == 3.0);
    /* a null rope_scaling gives no information beside rope_parameters */
    c = parse_ok("{\"model_type\": \"llama\", \"rope_scaling\": null, \"rope_parameters\":"
                 " {\"rope_type\": \"linear\", \"factor\": 2}}", "null + params");
    ck_assert_int_eq(c.rope.type, HYLO_ROPE_LINEAR);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Errors                                                                                       */
/* ------------------------------------------------------------------------------------------ */

START_TEST(errors_model_type)
{
    expect_error("{\"model_type\": \"mistral\"}", HYLO_ERR_CONFIG, "'model_type'");
    expect_error("{\"model_type\": \"mistral\"}", HYLO_ERR_CONFIG, "llama, qwen2, qwen3");
    expect_error("{\"hidden_size\": 64}", HYLO_ERR_CONFIG, "'model_type' is missing");
    expect_error("{\"model_type\": 3}", HYLO_ERR_CONFIG, "'model_type': expected a string");
    expect_error("{\"model_type\": null}", HYLO_ERR_CONFIG, "'model_type' is missing");
}
END_TEST

START_TEST(errors_types)
{
    expect_error("{\"model_type\": \"llama\", \"hidden_size\": \"2048\"}", HYLO_ERR_CONFIG,
                 "'hidden_size': expected an integer");
    expect_error("{\"model_type\": \"llama\", \"hidden_size\": 2048.5}", HYLO_ERR_CONFIG,
                 "'hidden_size': expected an integer");
    expect_error("{\"model_type\": \"llama\", \"num_hidden_layers\": 1e300}", HYLO_ERR_CONFIG,
                 "'num_hidden_layers': expected an integer");
    expect_error("{\"model_type\": \"llama\", \"vocab_size\": [1]}", HYLO_ERR_CONFIG,
                 "'vocab_size': expected an integer (at most 2^53 in magnitude), got an array");
    expect_error("{\"model_type\": \"llama\", \"rms_norm_eps\": \"1e-5\"}", HYLO_ERR_CONFIG,
                 "'rms_norm_eps': expected a finite number");
    expect_error("{\"model_type\": \"llama\", \"rope_theta\": true}", HYLO_ERR_CONFIG,
                 "'rope_theta': expected a finite number");
    expect_error("{\"model_type\": \"llama\", \"tie_word_embeddings\": 1}", HYLO_ERR_CONFIG,
                 "'tie_word_embeddings': expected true or false");
    expect_error("{\"model_type\": \"llama\", \"attention_bias\": \"false\"}", HYLO_ERR_CONFIG,
                 "'attention_bias'");
    expect_error("{\"model_type\": \"llama\", \"mlp_bias\": 0}", HYLO_ERR_CONFIG, "'mlp_bias'");
    expect_error("{\"model_type\": \"llama\", \"num_key_value_heads\": 8.5}", HYLO_ERR_CONFIG,
                 "'num_key_value_heads'");
    expect_error("{\"model_type\": \"llama\", \"head_dim\": \"64\"}", HYLO_ERR_CONFIG,
                 "'head_dim'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": \"llama3\"}", HYLO_ERR_CONFIG,
                 "'rope_scaling': expected an object or null");
    expect_error("{\"model_type\": \"llama\", \"rope_parameters\": [1]}", HYLO_ERR_CONFIG,
                 "'rope_parameters'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\","
                 " \"factor\": \"2\"}}", HYLO_ERR_CONFIG, "'rope_scaling.factor'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": 3}}",
                 HYLO_ERR_CONFIG, "'rope_scaling.rope_type'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\","
                 " \"factor\": 2, \"truncate\": \"yes\"}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.truncate'");
    expect_error("{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"llama3\","
                 " \"factor\": 8, \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
                 " \"original_max_position_embeddings\": 8192.5}}", HYLO_ERR_CONFIG,
                 "'rope_parameters.original_max_position_embeddings'");
    expect_error("{\"model_type\": \"llama\", \"hidden_act\": 1}", HYLO_ERR_CONFIG,
                 "'hidden_act'");
    expect_error("{\"model_type\": \"llama\", \"torch_dtype\": 16}", HYLO_ERR_CONFIG,
                 "'torch_dtype'");
    expect_error("{\"model_type\": \"llama\", \"hidden_size\": 64, \"hidden_size\": 128}",
                 HYLO_ERR_CONFIG, "'hidden_size' appears twice");
}
END_TEST

START_TEST(errors_shapes)
{
    expect_error("{\"model_type\": \"llama\", \"num_attention_heads\": 32,"
                 " \"num_key_value_heads\": 12}", HYLO_ERR_CONFIG,
                 "'num_key_value_heads': 12 does not divide num_attention_heads (32)");
    expect_error("{\"model_type\": \"llama\", \"hidden_size\": 1000, \"num_attention_heads\": 3}",
                 HYLO_ERR_CONFIG, "'head_dim' is absent and hidden_size (1000) is not divisible "
                 "by num_attention_heads (3)");
    expect_error("{\"model_type\": \"qwen2\", \"hidden_size\": 1000, \"head_dim\": null,"
                 " \"num_attention_heads\": 3, \"num_key_value_heads\": 1}", HYLO_ERR_CONFIG,
                 "give head_dim explicitly");
    /* Qwen2's absent num_key_value_heads is 32, which does not divide 14 heads */
    expect_error("{\"model_type\": \"qwen2\", \"hidden_size\": 896, \"num_attention_heads\": 14}",
                 HYLO_ERR_CONFIG, "'num_key_value_heads' is absent");
    expect_error("{\"model_type\": \"llama\", \"head_dim\": 15}", HYLO_ERR_CONFIG, "'head_dim'");
    expect_error("{\"model_type\": \"llama\", \"vocab_size\": 0}", HYLO_ERR_CONFIG,
                 "'vocab_size': 0 is out of range");
    expect_error("{\"model_type\": \"llama\", \"num_hidden_layers\": -4}", HYLO_ERR_CONFIG,
                 "'num_hidden_layers'");
    expect_error("{\"model_type\": \"llama\", \"num_attention_heads\": 0}", HYLO_ERR_CONFIG,
                 "'num_attention_heads'");
    expect_error("{\"model_type\": \"llama\", \"intermediate_size\": 4294967296}",
                 HYLO_ERR_CONFIG, "'intermediate_size'");
    expect_error("{\"model_type\": \"llama\", \"max_position_embeddings\": 0}", HYLO_ERR_CONFIG,
                 "'max_position_embeddings'");
    expect_error("{\"model_type\": \"llama\", \"rms_norm_eps\": 0}", HYLO_ERR_CONFIG,
                 "'rms_norm_eps'");
    expect_error("{\"model_type\": \"llama\", \"rms_norm_eps\": -1e-6}", HYLO_ERR_CONFIG,
                 "'rms_norm_eps'");
}
END_TEST

START_TEST(errors_unsupported_features)
{
    expect_error("{\"model_type\": \"llama\", \"hidden_act\": \"gelu\"}", HYLO_ERR_CONFIG,
                 "'hidden_act': \"gelu\" is not supported");
    expect_error("{\"model_type\": \"qwen2\", \"use_sliding_window\": true}", HYLO_ERR_CONFIG,
                 "'use_sliding_window': sliding-window attention is not supported");
    expect_error("{\"model_type\": \"qwen3\", \"num_hidden_layers\": 2, \"layer_types\":"
                 " [\"full_attention\", \"sliding_attention\"]}", HYLO_ERR_CONFIG,
                 "'layer_types[1]'");
    expect_error("{\"model_type\": \"qwen3\", \"num_hidden_layers\": 3, \"layer_types\":"
                 " [\"full_attention\", \"full_attention\"]}", HYLO_ERR_CONFIG,
                 "'layer_types' has 2 entries");
    expect_error("{\"model_type\": \"qwen3\", \"layer_types\": \"full_attention\"}",
                 HYLO_ERR_CONFIG, "'layer_types': expected an array");
    expect_error("{\"model_type\": \"llama\", \"torch_dtype\": \"float64\"}", HYLO_ERR_CONFIG,
                 "'torch_dtype': \"float64\" is not supported");
    expect_error("{\"model_type\": \"llama\", \"dtype\": \"int8\"}", HYLO_ERR_CONFIG,
                 "'dtype': \"int8\"");
    expect_error("{\"model_type\": \"llama\", \"torch_dtype\": \"float16\","
                 " \"dtype\": \"bfloat16\"}", HYLO_ERR_CONFIG, "'torch_dtype'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"dynamic\","
                 " \"factor\": 2}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.rope_type': rope type \"dynamic\" is not supported");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"type\": \"longrope\"}}",
                 HYLO_ERR_CONFIG, "'rope_scaling.type': rope type \"longrope\" is not supported");
    expect_error("{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"ntk\"}}",
                 HYLO_ERR_CONFIG, "'rope_parameters.rope_type'");
}
END_TEST

START_TEST(errors_rope)
{
    static const char *const llama3_fields[] = {"factor", "low_freq_factor", "high_freq_factor",
                                                "original_max_position_embeddings"};
    static const char *const llama3_values[] = {"32.0", "1.0", "4.0", "8192"};
    for (int skip = 0; skip < 4; skip++) {
        char json[512], needle[128];
        int n = snprintf(json, sizeof json, "{\"model_type\": \"llama\", \"rope_scaling\": "
                         "{\"rope_type\": \"llama3\"");
        for (int i = 0; i < 4; i++)
            if (i != skip)
                n += snprintf(json + n, sizeof json - (size_t)n, ", \"%s\": %s",
                              llama3_fields[i], llama3_values[i]);
        snprintf(json + n, sizeof json - (size_t)n, "}}");
        snprintf(needle, sizeof needle, "'rope_scaling.%s' is required for rope type \"llama3\"",
                 llama3_fields[skip]);
        expect_error(json, HYLO_ERR_CONFIG, needle);
    }
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\"}}",
                 HYLO_ERR_CONFIG, "'rope_scaling.factor' is required");
    expect_error("{\"model_type\": \"llama\", \"rope_parameters\": {\"rope_type\": \"yarn\"}}",
                 HYLO_ERR_CONFIG, "'rope_parameters.factor' is required");
    expect_error("{\"model_type\": \"llama\", \"rope_theta\": 10000.0, \"rope_parameters\":"
                 " {\"rope_type\": \"default\", \"rope_theta\": 500000.0}}", HYLO_ERR_CONFIG,
                 "'rope_parameters.rope_theta' (500000) disagrees with 'rope_theta' (10000)");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_theta\": 1e6},"
                 " \"rope_parameters\": {\"rope_theta\": 5e5}}", HYLO_ERR_CONFIG, "rope_theta");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\","
                 " \"factor\": 2}, \"rope_parameters\": {\"rope_type\": \"linear\","
                 " \"factor\": 4}}",
                 HYLO_ERR_CONFIG, "'rope_scaling' and 'rope_parameters' disagree on 'factor'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\","
                 " \"factor\": 2}, \"rope_parameters\": {\"rope_type\": \"default\"}}",
                 HYLO_ERR_CONFIG, "disagree on 'rope_type'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\","
                 " \"type\": \"yarn\", \"factor\": 2}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.rope_type' (\"linear\") and 'rope_scaling.type' (\"yarn\")");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\","
                 " \"factor\": 8, \"low_freq_factor\": 4, \"high_freq_factor\": 4,"
                 " \"original_max_position_embeddings\": 8192}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.high_freq_factor'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"llama3\","
                 " \"factor\": 0.5, \"low_freq_factor\": 1, \"high_freq_factor\": 4,"
                 " \"original_max_position_embeddings\": 8192}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.factor': 0.5 must be at least 1");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"linear\","
                 " \"factor\": 0}}", HYLO_ERR_CONFIG, "'rope_scaling.factor'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\","
                 " \"factor\": 0.5}}", HYLO_ERR_CONFIG, "'rope_scaling.factor'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\","
                 " \"factor\": 4, \"attention_factor\": 0}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.attention_factor'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\","
                 " \"factor\": 4, \"beta_fast\": 1, \"beta_slow\": 1}}", HYLO_ERR_CONFIG,
                 "'rope_scaling.beta_fast'");
    expect_error("{\"model_type\": \"llama\", \"rope_scaling\": {\"rope_type\": \"yarn\","
                 " \"factor\": 4, \"mscale\": -1}}", HYLO_ERR_CONFIG, "'rope_scaling.mscale'");
    expect_error("{\"model_type\": \"llama\", \"rope_theta\": 0}", HYLO_ERR_CONFIG,
                 "'rope_theta'");
    expect_error("{\"model_type\": \"llama\", \"rope_theta\": -10000}", HYLO_ERR_CONFIG,
                 "'rope_theta'");
}
END_TEST

START_TEST(errors_not_json)
{
    expect_error("", HYLO_ERR_FORMAT, "empty");
    expect_error("  \n ", HYLO_ERR_FORMAT, "invalid JSON");
    expect_error("{\"model_type\": \"llama\",", HYLO_ERR_FORMAT, "invalid JSON");
    expect_error("{\"model_type\": \"llama\"}\n{}", HYLO_ERR_FORMAT, "after the JSON value");
    expect_error("{\"model_type\": 'llama'}", HYLO_ERR_FORMAT, "line 1");
    expect_error("[{\"model_type\": \"llama\"}]", HYLO_ERR_CONFIG, "expected a JSON object");
    expect_error("\"llama\"", HYLO_ERR_CONFIG, "got the string \"llama\"");
    expect_error("null", HYLO_ERR_CONFIG, "expected a JSON object");
    /* The length bounds the text: a valid prefix is not enough. */
    hylo_config c;
    hylo_error err = {0};
    const char *json = "{\"model_type\": \"llama\"}";
    ck_assert_int_eq(hylo_config_parse(json, strlen(json) - 1, "cut", &c, &err), HYLO_ERR_FORMAT);
    ck_assert_ok(hylo_config_parse(json, strlen(json), NULL, &c, &err), &err);
}
END_TEST

START_TEST(load_files)
{
    char *dir = hylo_test_tmpdir("load");
    char *path = hylo_test_join(dir, "config.json");
    hylo_config c;
    hylo_error err = {0};
    ck_assert_int_eq(hylo_config_load(path, &c, &err), HYLO_ERR_IO);
    ck_assert_msg(strstr(err.message, path) != NULL, "%s", err.message);
    hylo_test_write_file(path, "", 0);
    ck_assert_int_eq(hylo_config_load(path, &c, &err), HYLO_ERR_FORMAT);
    ck_assert_msg(strstr(err.message, path) && strstr(err.message, "empty"), "%s", err.message);
    /* a NUL byte after the object is not whitespace */
    hylo_test_write_file(path, "{\"model_type\": \"gpt2\"}", 23);
    ck_assert_int_eq(hylo_config_load(path, &c, &err), HYLO_ERR_FORMAT);
    hylo_test_write_file(path, "{\"model_type\": \"gpt2\"}", 22);
    ck_assert_int_eq(hylo_config_load(path, &c, &err), HYLO_ERR_CONFIG);
    ck_assert_msg(strncmp(err.message, path, strlen(path)) == 0, "%s", err.message);
    ck_assert_int_eq(hylo_config_load(dir, &c, &err), HYLO_ERR_IO);
    hylo_test_write_file(path, QWEN3_1_7B_HF4, strlen(QWEN3_1_7B_HF4));
    ck_assert_ok(hylo_config_load(path, &c, &err), &err);
    hylo_config p = preset("qwen3-1.7b");
    ck_assert_config_eq(&c, &p, "loaded Qwen3-1.7B");
    free(path);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Validation of configs built in code                                                          */
/* ------------------------------------------------------------------------------------------ */

START_TEST(validate_fields)
{
    const hylo_config base = preset("tiny-llama");
    hylo_error err = {0};
    ck_assert_ok(hylo_config_validate(&base, "tiny", &err), &err);
    hylo_config c;
#define CASE(change, needle)                                                                    \
    do {                                                                                        \
        c = base;                                                                               \
        change;                                                                                 \
        expect_invalid(&c, needle);                                                             \
    } while (0)
    CASE(c.num_kv_heads = 3, "'num_key_value_heads'");
    CASE(c.head_dim = 15, "'head_dim'");
    CASE(c.vocab_size = (int64_t)INT32_MAX + 1, "'vocab_size'");
    CASE(c.num_layers = 0, "'num_hidden_layers'");
    CASE(c.rms_norm_eps = NAN, "'rms_norm_eps'");
    CASE(c.rms_norm_eps = INFINITY, "'rms_norm_eps'");
    CASE(c.rope.theta = 0.0, "'rope_theta'");
    CASE(c.rope.theta = NAN, "'rope_theta'");
    CASE(c.rope.factor = 0.5, "'rope_scaling.factor'");
    CASE(c.rope.low_freq_factor = 0.0, "'rope_scaling.low_freq_factor'");
    CASE(c.rope.high_freq_factor = 1.0, "'rope_scaling.high_freq_factor'");
    CASE(c.rope.original_max_position = 0, "'rope_scaling.original_max_position_embeddings'");
    CASE((c.rope.type = HYLO_ROPE_LINEAR, c.rope.factor = 0.0), "'rope_scaling.factor'");
    CASE((c.rope.type = HYLO_ROPE_YARN, c.rope.beta_slow = 0.0), "'rope_scaling.beta_slow'");
    CASE((c.rope.type = HYLO_ROPE_YARN, c.rope.attention_factor = -1.0),
         "'rope_scaling.attention_factor'");
    CASE((c.rope.type = HYLO_ROPE_YARN, c.rope.original_max_position = -1),
         "'rope_scaling.original_max_position_embeddings'");
    CASE(c.rope.type = (hylo_rope_type)9, "'rope_scaling.rope_type'");
    CASE(c.arch = (hylo_arch)7, "'model_type'");
    CASE(c.dtype = (hylo_dtype)9, "'torch_dtype'");
    CASE(c.qk_norm = true, "'qk_norm'");
    CASE(c.qkv_bias = true, "'attention_bias'");
    CASE((c.arch = HYLO_ARCH_QWEN2, c.qkv_bias = true, c.o_bias = true), "'o_bias'");
    CASE((c.arch = HYLO_ARCH_QWEN2, c.qkv_bias = false), "'qkv_bias'");
    CASE((c.arch = HYLO_ARCH_QWEN3, c.qk_norm = false), "'qk_norm'");
    CASE((c.arch = HYLO_ARCH_QWEN3, c.qk_norm = true, c.mlp_bias = true), "'mlp_bias'");
#undef CASE
    ck_assert_int_eq(hylo_config_validate(NULL, "x", &err), HYLO_ERR_USAGE);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Saving                                                                                       */
/* ------------------------------------------------------------------------------------------ */

START_TEST(round_trip_presets)
{
    const char *const *names = hylo_preset_names();
    for (size_t i = 0; names[i]; i++) {
        hylo_config c = preset(names[i]);
        free(round_trip(&c, names[i]));
    }
}
END_TEST

START_TEST(saved_text_is_hf_style)
{
    hylo_config c = preset("llama-3.2-1b");
    char *text = round_trip(&c, "llama-3.2-1b");
    static const char *const llama_keys[] = {
        "\"architectures\": [\n    \"LlamaForCausalLM\"\n  ]", "\"model_type\": \"llama\"",
        "\"head_dim\": 64", "\"rope_theta\": 500000.0", "\"rms_norm_eps\": 1e-05",
        "\"factor\": 32.0", "\"high_freq_factor\": 4.0", "\"low_freq_factor\": 1.0",
        "\"original_max_position_embeddings\": 8192", "\"rope_type\": \"llama3\"",
        "\"torch_dtype\": \"bfloat16\"", "\"hidden_act\": \"silu\"", "\"attention_bias\": false",
        "\"mlp_bias\": false", "\"tie_word_embeddings\": true", "\"vocab_size\": 128256"};
    for (size_t i = 0; i < sizeof llama_keys / sizeof llama_keys[0]; i++)
        ck_assert_msg(strstr(text, llama_keys[i]) != NULL, "saved text lacks %s:\n%s",
                      llama_keys[i], text);
    free(text);
    c = preset("tiny-qwen3");
    text = round_trip(&c, "tiny-qwen3");
    static const char *const qwen_keys[] = {"\"Qwen3ForCausalLM\"", "\"rope_scaling\": null",
                                            "\"rope_theta\": 1000000.0", "\"head_dim\": 32",
                                            "\"rms_norm_eps\": 1e-06"};
    for (size_t i = 0; i < sizeof qwen_keys / sizeof qwen_keys[0]; i++)
        ck_assert_msg(strstr(text, qwen_keys[i]) != NULL, "saved text lacks %s:\n%s",
                      qwen_keys[i], text);
    ck_assert_ptr_null(strstr(text, "mlp_bias"));
    free(text);
}
END_TEST

START_TEST(round_trip_variants)
{
    hylo_config c = preset("tiny-llama");
    c.rope.type = HYLO_ROPE_YARN;
    c.rope.low_freq_factor = c.rope.high_freq_factor = 0.0;
    c.rope.factor = 4.0;
    c.rope.original_max_position = c.max_position_embeddings;
    char *text = round_trip(&c, "yarn minimal");
    /* equal to max_position_embeddings: left out so that HF 4.x keeps the factor */
    ck_assert_ptr_null(strstr(text, "original_max_position_embeddings"));
    ck_assert_ptr_null(strstr(text, "truncate"));
    free(text);
    c.rope.original_max_position = 4096;
    c.rope.beta_fast = 24.0;
    c.rope.beta_slow = 0.5;
    c.rope.attention_factor = 1.0 / 3.0;
    c.rope.mscale = 0.707;
    c.rope.mscale_all_dim = 0.1;
    c.rope.truncate = false;
    free(round_trip(&c, "yarn full"));
    c = preset("tiny-llama");
    c.rope = (hylo_rope_config){.type = HYLO_ROPE_LINEAR, .theta = 123456.789, .factor = 2.5,
                                .beta_fast = 32.0, .beta_slow = 1.0, .truncate = true};
    c.qkv_bias = c.o_bias = c.mlp_bias = true;
    c.rms_norm_eps = 1.234567890123e-7;
    c.dtype = HYLO_F16;
    free(round_trip(&c, "linear, biases, f16"));
    c = parse_ok(QWEN2_5_0_5B_HF4, "qwen2");
    c.dtype = HYLO_F32;
    c.rope.theta = 1e20;
    free(round_trip(&c, "qwen2 f32"));
}
END_TEST

START_TEST(save_failures)
{
    char *dir = hylo_test_tmpdir("save");
    hylo_config c = preset("tiny-qwen3");
    hylo_error err = {0};
    /* into a missing directory */
    char *missing = hylo_test_join(dir, "nope/config.json");
    ck_assert_int_eq(hylo_config_save(&c, missing, &err), HYLO_ERR_IO);
    ck_assert_msg(strstr(err.message, missing) != NULL, "%s", err.message);
    /* over a directory: the rename fails and the temporary file is removed */
    char *blocked = hylo_test_join(dir, "config.json");
    ck_assert_int_eq(mkdir(blocked, 0755), 0);
    ck_assert_int_eq(hylo_config_save(&c, blocked, &err), HYLO_ERR_IO);
    ck_assert_int_eq((int)hylo_test_dir_entries(dir, NULL, 0), 1);
    /* an invalid config writes nothing */
    char *other = hylo_test_join(dir, "other.json");
    c.num_kv_heads = 3;
    ck_assert_int_eq(hylo_config_save(&c, other, &err), HYLO_ERR_CONFIG);
    ck_assert_msg(strstr(err.message, "num_key_value_heads") != NULL, "%s", err.message);
    ck_assert_int_eq((int)hylo_test_dir_entries(dir, NULL, 0), 1);
    /* overwriting an existing file replaces it */
    hylo_config a = preset("tiny-llama"), b = preset("tiny-qwen3"), back;
    ck_assert_ok(hylo_config_save(&a, other, &err), &err);
    ck_assert_ok(hylo_config_save(&b, other, &err), &err);
    ck_assert_ok(hylo_config_load(other, &back, &err), &err);
    ck_assert_config_eq(&back, &b, "overwritten");
    ck_assert_int_eq((int)hylo_test_dir_entries(dir, NULL, 0), 2);
    struct stat st;
    ck_assert_int_eq(stat(other, &st), 0);
    mode_t mask = umask(022); /* read the process umask: files get 0666 & ~umask */
    umask(mask);
    ck_assert_int_eq(st.st_mode & 0777, 0666 & ~mask);
    free(other);
    free(blocked);
    free(missing);
    free(dir);
}
END_TEST

/* ------------------------------------------------------------------------------------------ */
/* Presets                                                                                      */
/* ------------------------------------------------------------------------------------------ */

START_TEST(preset_names_complete)
{
    static const char *const expected[] = {"tiny-llama", "tiny-qwen3", "llama-3.2-1b",
                                           "llama-3.2-3b", "qwen3-1.7b"};
    const char *const *names = hylo_preset_names();
    size_t n = 0;
    while (names[n]) n++;
    ck_assert_uint_eq(n, sizeof expected / sizeof expected[0]);
    for (size_t i = 0; i < n; i++) {
        ck_assert_str_eq(names[i], expected[i]);
        hylo_config c = preset(names[i]);
        hylo_error err = {0};
        ck_assert_ok(hylo_config_validate(&c, names[i], &err), &err);
    }
    hylo_config c;
    memset(&c, 0x5a, sizeof c);
    hylo_config before = c;
    hylo_error err = {0};
    ck_assert_int_eq(hylo_preset("llama-7b", &c, &err), HYLO_ERR_CONFIG);
    ck_assert_msg(memcmp(&c, &before, sizeof c) == 0, "output modified on failure");
    ck_assert_msg(strstr(err.message, "llama-7b") != NULL, "%s", err.message);
    for (size_t i = 0; i < n; i++)
        ck_assert_msg(strstr(err.message, expected[i]) != NULL, "%s lacks %s", err.message,
                      expected[i]);
}
END_TEST

START_TEST(preset_real_shapes)
{
    hylo_config c = preset("llama-3.2-3b");
    ck_assert_int_eq(c.hidden_size, 3072);
    ck_assert_int_eq(c.num_layers, 28);
    ck_assert_int_eq(c.num_heads, 24);
    ck_assert_int_eq(c.num_kv_heads, 8);
    ck_assert_int_eq(c.head_dim, 128);
    ck_assert_int_eq(c.intermediate_size, 8192);
    ck_assert_int_eq(c.vocab_size, 128256);
    ck_assert(c.rope.type == HYLO_ROPE_LLAMA3 && c.rope.factor == 32.0 && c.rope.theta == 5e5);
    ck_assert(c.rms_norm_eps == 1e-5 && c.tie_word_embeddings && c.dtype == HYLO_BF16);
    ck_assert_int_eq(c.max_position_embeddings, 131072);
    ck_assert_int_eq(c.rope.original_max_position, 8192);
    c = preset("qwen3-1.7b");
    ck_assert(c.arch == HYLO_ARCH_QWEN3 && c.qk_norm && c.tie_word_embeddings);
    ck_assert_int_eq(c.max_position_embeddings, 40960);
    ck_assert(c.rope.type == HYLO_ROPE_DEFAULT && c.rope.theta == 1e6 && c.rms_norm_eps == 1e-6);
}
END_TEST

/* Weight bytes of a teacher in bf16 (embeddings, LM head unless tied, layers, final norm). */
static double teacher_bytes(const hylo_config *c)
{
    double D = (double)c->hidden_size, hd = (double)c->head_dim;
    double attn = D * hd * (double)(2 * c->num_heads + 2 * c->num_kv_heads);
    double layer = attn + 3.0 * D * (double)c->intermediate_size + 2.0 * D;
    double embed = (double)c->vocab_size * D * (c->tie_word_embeddings ? 1.0 : 2.0);
    return 2.0 * (embed + (double)c->num_layers * layer + D);
}

START_TEST(preset_tiny_structure)
{
    hylo_config l = preset("tiny-llama");
    ck_assert_int_eq(l.arch, HYLO_ARCH_LLAMA);
    ck_assert_int_eq(l.num_heads, 4);
    ck_assert_int_eq(l.num_kv_heads, 2);
    ck_assert_int_eq(l.hidden_size, 64);
    ck_assert_int_eq(l.head_dim, 16);
    ck_assert_int_eq(l.head_dim * l.num_heads, l.hidden_size);
    ck_assert(!l.tie_word_embeddings && !l.qk_norm);
    ck_assert(l.num_layers >= 2 && l.num_layers <= 4);
    ck_assert(l.vocab_size >= 256 && l.vocab_size <= 512);
    ck_assert(l.intermediate_size >= 128 && l.intermediate_size <= 192);
    ck_assert(teacher_bytes(&l) < 4e6);
    /* llama3 scaling at head_dim 16: every region of the blend is used */
    ck_assert_int_eq(l.rope.type, HYLO_ROPE_LLAMA3);
    int keep = 0, blend = 0, divide = 0;
    double L0 = (double)l.rope.original_max_position;
    for (int64_t i = 0; i < l.head_dim / 2; i++) {
        double wavelen = 2.0 * M_PI * pow(l.rope.theta, 2.0 * (double)i / (double)l.head_dim);
        if (wavelen < L0 / l.rope.high_freq_factor) keep++;
        else if (wavelen > L0 / l.rope.low_freq_factor) divide++;
        else blend++;
    }
    ck_assert_msg(keep > 0 && blend > 0 && divide > 0, "keep %d blend %d divide %d", keep, blend,
                  divide);
    hylo_config q = preset("tiny-qwen3");
    ck_assert_int_eq(q.arch, HYLO_ARCH_QWEN3);
    ck_assert_int_eq(q.num_heads, 4);
    ck_assert_int_eq(q.num_kv_heads, 2);
    ck_assert_int_eq(q.head_dim, 32);
    ck_assert(q.head_dim * q.num_heads != q.hidden_size);
    ck_assert(q.qk_norm && q.tie_word_embeddings && !q.qkv_bias && !q.o_bias);
    ck_assert(q.num_layers >= 2 && q.num_layers <= 4);
    ck_assert(q.vocab_size >= 256 && q.vocab_size <= 512);
    ck_assert(teacher_bytes(&q) < 4e6);
    /* the real Llama-3.2-1B is ~2.5 GB in bf16 (tied): the estimate is sane */
    hylo_config big = preset("llama-3.2-1b");
    ck_assert(teacher_bytes(&big) > 2.4e9 && teacher_bytes(&big) < 2.6e9);
}
END_TEST

START_TEST(names)
{
    ck_assert_str_eq(hylo_arch_name(HYLO_ARCH_LLAMA), "llama");
    ck_assert_str_eq(hylo_arch_name(HYLO_ARCH_QWEN2), "qwen2");
    ck_assert_str_eq(hylo_arch_name(HYLO_ARCH_QWEN3), "qwen3");
    ck_assert_str_eq(hylo_arch_name((hylo_arch)9), "unknown");
    ck_assert_str_eq(hylo_rope_type_name(HYLO_ROPE_DEFAULT), "default");
    ck_assert_str_eq(hylo_rope_type_name(HYLO_ROPE_LINEAR), "linear");
    ck_assert_str_eq(hylo_rope_type_name(HYLO_ROPE_LLAMA3), "llama3");
    ck_assert_str_eq(hylo_rope_type_name(HYLO_ROPE_YARN), "yarn");
    ck_assert_str_eq(hylo_rope_type_name((hylo_rope_type)9), "unknown");
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("config");
    TCase *real = tcase_create("hf_files");
    tcase_add_test(real, llama_3_2_1b_hf4);
    tcase_add_test(real, llama_3_2_1b_hf5);
    tcase_add_test(real, llama_3_2_3b_hf4);
    tcase_add_test(real, qwen3_1_7b_hf4);
    tcase_add_test(real, qwen3_1_7b_hf5);
    tcase_add_test(real, qwen2_5_0_5b_hf4);
    suite_add_tcase(s, real);
    TCase *defaults = tcase_create("defaults");
    tcase_add_test(defaults, defaults_llama);
    tcase_add_test(defaults, defaults_qwen2_qwen3);
    tcase_add_test(defaults, defaults_kv_heads_and_head_dim);
    tcase_add_test(defaults, dtype_spellings);
    tcase_add_test(defaults, rope_variants);
    tcase_add_test(defaults, rope_sources_that_agree);
    suite_add_tcase(s, defaults);
    TCase *errors = tcase_create("errors");
    tcase_add_test(errors, errors_model_type);
    tcase_add_test(errors, errors_types);
    tcase_add_test(errors, errors_shapes);
    tcase_add_test(errors, errors_unsupported_features);
    tcase_add_test(errors, errors_rope);
    tcase_add_test(errors, errors_not_json);
    tcase_add_test(errors, load_files);
    tcase_add_test(errors, validate_fields);
    suite_add_tcase(s, errors);
    TCase *save = tcase_create("save");
    tcase_add_test(save, round_trip_presets);
    tcase_add_test(save, saved_text_is_hf_style);
    tcase_add_test(save, round_trip_variants);
    tcase_add_test(save, save_failures);
    suite_add_tcase(s, save);
    TCase *presets = tcase_create("presets");
    tcase_add_test(presets, preset_names_complete);
    tcase_add_test(presets, preset_real_shapes);
    tcase_add_test(presets, preset_tiny_structure);
    tcase_add_test(presets, names);
    suite_add_tcase(s, presets);
    return s;
}

HYLO_TEST_MAIN
