/* test_hybrid_config.c: layouts, hybrid_config.json (hylo and Zebra-Llama schemas), and the
 * parameter and memory accounting of spec sec. 3-5 and 10. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testutil.h"

static hylo_config base(const char *preset)
{
    hylo_config c;
    hylo_error err = {0};
    ck_assert_ok(hylo_preset(preset, &c, &err), &err);
    return c;
}

static hylo_hybrid_config layout(const hylo_config *b, const char *name)
{
    hylo_hybrid_config hy;
    hylo_error err = {0};
    ck_assert_ok(hylo_hybrid_layout(b, name, &hy, &err), &err);
    return hy;
}

static hylo_model_stats stats(const hylo_config *b, const hylo_hybrid_config *hy)
{
    hylo_model_stats s;
    hylo_error err = {0};
    ck_assert_ok(hylo_model_stats_of(b, hy, 2, &s, &err), &err);
    return s;
}

/* Spec sec. 1 (MLA indices) and sec. 10 (KV shares, to the paper's one decimal). */
START_TEST(paper_layouts_reproduce_indices_and_kv_shares)
{
    const struct {
        const char *preset, *layout;
        int n;
        int index[14];
        double share_percent;
    } cases[] = {
        {"llama-3.2-1b", "4MLA12GDN", 4, {1, 5, 10, 14}, 3.9},
        {"llama-3.2-1b", "4MLA12M2", 4, {1, 5, 10, 14}, 3.9},
        {"llama-3.2-1b", "8MLA8M2", 8, {0, 2, 4, 6, 8, 10, 12, 14}, 7.8},
        {"llama-3.2-3b", "6MLA22GDN", 6, {0, 5, 10, 16, 21, 26}, 2.0},
        {"llama-3.2-3b", "14MLA14M2", 14, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26}, 4.7},
        {"qwen3-1.7b", "7MLA21GDN", 7, {1, 5, 9, 13, 17, 21, 25}, 3.9},
        {"qwen3-1.7b", "14MLA14GDN", 14, {0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26}, 7.8},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hylo_config b = base(cases[c].preset);
        hylo_hybrid_config hy = layout(&b, cases[c].layout);
        int found = 0;
        for (int64_t i = 0; i < hy.num_layers; i++) {
            if (hy.mixers[i] != HYLO_MIXER_MLA) continue;
            ck_assert_msg(found < cases[c].n && cases[c].index[found] == i,
                          "%s %s: MLA at layer %lld", cases[c].preset, cases[c].layout, (long long)i);
            found++;
        }
        ck_assert_int_eq(found, cases[c].n);
        hylo_model_stats s = stats(&b, &hy);
        double share = 100.0 * (double)s.kv_bytes_per_token / (double)s.teacher_kv_bytes_per_token;
        ck_assert_msg(fabs(share - cases[c].share_percent) < 0.05, "%s %s: share %.3f%%",
                      cases[c].preset, cases[c].layout, share);
    }
}
END_TEST

/* Spec sec. 3 and 5: the Llama-1B MLA layer has 10,125,312 parameters and the GDN layer
 * 25,215,500; Qwen MLA layers carry 256 more than the formula (their q/k norms). */
START_TEST(block_parameter_counts_match_the_spec)
{
    hylo_config l1b = base("llama-3.2-1b");
    hylo_hybrid_config hy = layout(&l1b, "4MLA12GDN");
    hylo_model_stats s = stats(&l1b, &hy);
    ck_assert_int_eq(s.params_mixer[HYLO_MIXER_MLA], 4 * 10125312LL);
    ck_assert_int_eq(s.params_mixer[HYLO_MIXER_GDN], 12 * 25215500LL);
    hylo_config q = base("qwen3-1.7b");
    hylo_hybrid_config hq = layout(&q, "7MLA21GDN");
    hylo_model_stats sq = stats(&q, &hq);
    const int64_t formula = 1344LL * 2048 + 16LL * 128 * 1344 + (256LL + 64) * 2048 +
                            8LL * (64 + 128) * 256 + 2048LL * 16 * 128;
    ck_assert_int_eq(sq.params_mixer[HYLO_MIXER_MLA], 7 * (formula + 256));
    /* the teacher itself: all attention, its published total */
    hylo_model_stats t = stats(&l1b, NULL);
    ck_assert_int_eq(t.params_total, 1235814400LL);
    ck_assert_int_eq(t.kv_bytes_per_token, t.teacher_kv_bytes_per_token);
    ck_assert_int_eq(t.state_bytes_per_sequence, 0);
}
END_TEST

/* Spec sec. 10: Mamba2 state = nheads headdim d_state + conv; GDN = H_v dk dv + conv. */
START_TEST(recurrent_state_bytes)
{
    hylo_config b = base("llama-3.2-1b");
    hylo_hybrid_config m2 = layout(&b, "all-mamba2"), gdn = layout(&b, "all-gdn");
    int64_t mamba_floats = 32LL * 64 * 64 + (2048 + 2 * 512) * 3;
    int64_t gdn_floats = 6LL * 256 * 512 + (2 * 6 * 256 + 6 * 512) * 3;
    ck_assert_int_eq(stats(&b, &m2).state_bytes_per_sequence, 16 * 4 * mamba_floats);
    ck_assert_int_eq(stats(&b, &gdn).state_bytes_per_sequence, 16 * 4 * gdn_floats);
    ck_assert_int_eq(stats(&b, &gdn).kv_bytes_per_token, 0);
}
END_TEST

static void assert_same_hybrid(const hylo_hybrid_config *a, const hylo_hybrid_config *b)
{
    ck_assert_int_eq(a->num_layers, b->num_layers);
    for (int64_t i = 0; i < a->num_layers; i++) ck_assert_int_eq(a->mixers[i], b->mixers[i]);
    const hylo_mla_config *x = &a->mla, *y = &b->mla;
    ck_assert(x->q_rank == y->q_rank && x->kv_rank == y->kv_rank && x->nope == y->nope &&
              x->rope == y->rope && x->v == y->v && x->kv_heads == y->kv_heads &&
              x->q_latent_norm == y->q_latent_norm && x->kv_latent_norm == y->kv_latent_norm &&
              x->qk_norm == y->qk_norm);
    const hylo_rope_config *r = &x->rope_scaling, *s = &y->rope_scaling;
    ck_assert(r->type == s->type && r->theta == s->theta && r->factor == s->factor &&
              r->original_max_position == s->original_max_position &&
              r->beta_fast == s->beta_fast && r->beta_slow == s->beta_slow);
    ck_assert_mem_eq(&a->mamba2, &b->mamba2, sizeof a->mamba2);
    ck_assert_mem_eq(&a->gdn, &b->gdn, sizeof a->gdn);
}

START_TEST(save_load_round_trip)
{
    const char *presets[] = {"tiny-hybrid-m2", "tiny-hybrid-gdn"};
    for (int p = 0; p < 2; p++) {
        hylo_config b;
        hylo_hybrid_config hy, back;
        hylo_error err = {0};
        ck_assert_ok(hylo_hybrid_preset(presets[p], &b, &hy, &err), &err);
        ck_assert_ok(hylo_hybrid_config_save(&hy, "hybrid_config.json", &err), &err);
        ck_assert_ok(hylo_hybrid_config_load("hybrid_config.json", &b, &back, &err), &err);
        /* sections of mixers the model does not use are not written: compare the used ones */
        if (p == 0) back.gdn = hy.gdn;
        else back.mamba2 = hy.mamba2;
        assert_same_hybrid(&hy, &back);
    }
}
END_TEST

/* Zebra-Llama's fields for a Llama-1B 4MLA12M2 model read as hylo's own layout. */
START_TEST(zebra_llama_schema)
{
    const char *json =
        "{\"mla_layers\": [1, 5, 10, 14], \"kv_lora_rank\": 128, \"q_lora_rank\": 1344,"
        " \"qk_rope_head_dim\": 32, \"qk_nope_head_dim\": 32, \"v_head_dim\": 64,"
        " \"d_inner\": 2048, \"d_xb\": 512, \"d_model\": 2048, \"n_layer\": 16,"
        " \"ssm_cfg\": {\"d_state\": 64, \"d_conv\": 4, \"ngroups\": 32, \"expand\": 1},"
        " \"rope_scaling\": {\"rope_type\": \"yarn\", \"factor\": 32.0,"
        "  \"original_max_position_embeddings\": 2048}}";
    hylo_config b = base("llama-3.2-1b");
    hylo_hybrid_config got, want = layout(&b, "4MLA12M2");
    hylo_error err = {0};
    ck_assert_ok(hylo_hybrid_config_parse(json, strlen(json), "zebra", &b, &got, &err), &err);
    assert_same_hybrid(&got, &want);
}
END_TEST

START_TEST(bad_configs_name_the_field)
{
    hylo_config b = base("tiny-llama");
    const struct { const char *json, *needle; } cases[] = {
        {"{\"layer_types\": [\"mla\", \"gdn\", \"gdn\"]}", "lists 3 layers"},
        {"{\"layer_types\": [\"mla\", \"gdn\", \"gdn\", \"lstm\"]}", "layer_types[3]"},
        {"{\"layer_types\": [\"mla\", \"mla\", \"mla\", \"mla\"]}", "section 'mla'"},
        {"{\"layer_types\": [\"gdn\", \"gdn\", \"gdn\", \"gdn\"], \"gdn\": {\"num_k_heads\": 2,"
         " \"num_v_heads\": 3, \"head_k_dim\": 8, \"head_v_dim\": 8}}", "gdn.num_v_heads"},
        {"{\"layer_types\": [\"mla\", \"mla\", \"mla\", \"mla\"], \"mla\": {\"kv_lora_rank\": 16,"
         " \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 7, \"v_head_dim\": 8}}", "qk_rope_head_dim"},
        {"{\"layer_types\": [\"mamba2\", \"gdn\", \"gdn\", \"mamba2\"], \"mamba2\": {\"num_heads\": 4}}",
         "mamba2.head_dim"},
        {"{\"mla_layers\": [0, 7]}", "mla_layers"},
        {"{\"mla_layers\": [0], \"kv_lora_rank\": 16, \"qk_nope_head_dim\": 8,"
         " \"qk_rope_head_dim\": 8, \"v_head_dim\": 16, \"d_inner\": 64, \"d_xb\": 32,"
         " \"ssm_cfg\": {\"d_state\": 0, \"headdim\": 16}}", "d_state"},
        {"{\"layer_types\": [\"mla\", \"mla\", \"mla\", \"mla\"], \"mla\": {\"kv_lora_rank\": 16,"
         " \"qk_nope_head_dim\": 8, \"qk_rope_head_dim\": 8, \"v_head_dim\": 8,"
         " \"rope_scaling\": {\"rope_type\": \"linear\", \"factor\": 0}}}", "factor"},
        {"{\"layer_types\": [\"gdn\", \"gdn\", \"gdn\", \"gdn\"], \"gdn\": {\"num_k_heads\": 2,"
         " \"head_k_dim\": 1099511627776, \"head_v_dim\": 8}}", "gdn.head_k_dim"},
        {"{\"hylo_hybrid\": 1}", "layer_types"},
        {"[1, 2]", "expected a JSON object"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        hylo_hybrid_config hy;
        hylo_error err = {0};
        hylo_status st = hylo_hybrid_config_parse(cases[c].json, strlen(cases[c].json), "h.json",
                                                  &b, &hy, &err);
        ck_assert_msg(st == HYLO_ERR_CONFIG, "case %zu: status %d", c, st);
        ck_assert_msg(strstr(err.message, cases[c].needle) != NULL, "case %zu: '%s' lacks '%s'",
                      c, err.message, cases[c].needle);
    }
    /* a teacher deeper than the mixer table (HYLO_MAX_LAYERS) is refused at the config */
    const char *deep = "{\"model_type\": \"llama\", \"hidden_size\": 64, \"intermediate_size\": 128,"
                       " \"num_hidden_layers\": 300, \"num_attention_heads\": 4, \"vocab_size\": 256}";
    hylo_config deep_cfg;
    hylo_error deep_err = {0};
    ck_assert_int_eq(hylo_config_parse(deep, strlen(deep), "deep", &deep_cfg, &deep_err),
                     HYLO_ERR_CONFIG);
    ck_assert_ptr_nonnull(strstr(deep_err.message, "num_hidden_layers"));
    const char *layouts[] = {"4MLA11GDN", "2MLA2XYZ", "all-lstm", "MLA", "2MLA2GDNx",
                             "9223372036854775807MLA1GDN"};
    for (size_t i = 0; i < sizeof layouts / sizeof layouts[0]; i++) {
        hylo_hybrid_config hy;
        hylo_error err = {0};
        ck_assert_int_eq(hylo_hybrid_layout(&b, layouts[i], &hy, &err), HYLO_ERR_CONFIG);
        ck_assert_ptr_nonnull(strstr(err.message, layouts[i]));
    }
}
END_TEST

static Suite *make_suite(void)
{
    Suite *s = suite_create("hybrid_config");
    TCase *tc = tcase_create("hybrid_config");
    tcase_add_test(tc, paper_layouts_reproduce_indices_and_kv_shares);
    tcase_add_test(tc, block_parameter_counts_match_the_spec);
    tcase_add_test(tc, recurrent_state_bytes);
    tcase_add_test(tc, save_load_round_trip);
    tcase_add_test(tc, zebra_llama_schema);
    tcase_add_test(tc, bad_configs_name_the_field);
    suite_add_tcase(s, tc);
    return s;
}

HYLO_TEST_MAIN
