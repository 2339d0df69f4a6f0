/*
 * presets.c: built-in model shapes, written in the canonical form hylo_config_parse produces
 * (rope fields a type does not use: factor 1, beta_fast 32, beta_slow 1, truncate true, rest 0),
 * so that a preset saved and loaded again compares equal field by field.
 *
 * tiny-llama and tiny-qwen3 are for tests and the demo (a few hundred KB in bf16) and keep the
 * structure of the real models: GQA (4 query heads on 2 KV heads), llama3 rope scaling and
 * untied embeddings on the Llama side; q/k norms, tied embeddings and an explicit head_dim that
 * differs from hidden / heads on the Qwen3 side. The others are the real base geometries of
 * spec sec. 1, copied from the published config.json files.
 */
#include "hylo.h"

#include <stdio.h>
#include <string.h>

#define TINY_LLAMA "tiny-llama"
#define TINY_QWEN3 "tiny-qwen3"
#define LLAMA_1B "llama-3.2-1b"
#define LLAMA_3B "llama-3.2-3b"
#define QWEN3_1_7B "qwen3-1.7b"

#define DEFAULT_ROPE(base)                                                                      \
    {.type = HYLO_ROPE_DEFAULT, .theta = (base), .factor = 1.0, .beta_fast = 32.0,              \
     .beta_slow = 1.0, .truncate = true}

#define LLAMA3_ROPE(base, f, low, high, orig)                                                   \
    {.type = HYLO_ROPE_LLAMA3, .theta = (base), .factor = (f), .low_freq_factor = (low),        \
     .high_freq_factor = (high), .original_max_position = (orig), .beta_fast = 32.0,            \
     .beta_slow = 1.0, .truncate = true}

typedef struct {
    const char *name;
    hylo_config config;
} preset;

static const preset PRESETS[] = {
    /* head_dim 16 gives 8 frequency pairs with wavelengths 2 pi 5e5^(i/8) = 6.3, 32, 167, 862,
     * 4443, ... With original 2048, low 1, high 4, pairs 0-2 (wavelength < 512) keep their
     * frequency, pair 3 (512 <= 862 <= 2048) is blended with s = 0.46, and pairs 4-7 (> 2048)
     * are divided by the factor: all three llama3 regions occur. */
    {TINY_LLAMA,
     {.arch = HYLO_ARCH_LLAMA, .vocab_size = 256, .hidden_size = 64, .intermediate_size = 128,
      .num_layers = 4, .num_heads = 4, .num_kv_heads = 2, .head_dim = 16,
      .max_position_embeddings = 16384, .rms_norm_eps = 1e-5,
      .rope = LLAMA3_ROPE(500000.0, 8.0, 1.0, 4.0, 2048), .tie_word_embeddings = false,
      .dtype = HYLO_BF16}},
    {TINY_QWEN3,
     {.arch = HYLO_ARCH_QWEN3, .vocab_size = 512, .hidden_size = 64, .intermediate_size = 192,
      .num_layers = 4, .num_heads = 4, .num_kv_heads = 2, .head_dim = 32,
      .max_position_embeddings = 4096, .rms_norm_eps = 1e-6, .rope = DEFAULT_ROPE(1000000.0),
      .tie_word_embeddings = true, .qk_norm = true, .dtype = HYLO_BF16}},
    {LLAMA_1B,
     {.arch = HYLO_ARCH_LLAMA, .vocab_size = 128256, .hidden_size = 2048,
      .intermediate_size = 8192, .num_layers = 16, .num_heads = 32, .num_kv_heads = 8,
      .head_dim = 64, .max_position_embeddings = 131072, .rms_norm_eps = 1e-5,
      .rope = LLAMA3_ROPE(500000.0, 32.0, 1.0, 4.0, 8192), .tie_word_embeddings = true,
      .dtype = HYLO_BF16}},
    {LLAMA_3B,
     {.arch = HYLO_ARCH_LLAMA, .vocab_size = 128256, .hidden_size = 3072,
      .intermediate_size = 8192, .num_layers = 28, .num_heads = 24, .num_kv_heads = 8,
      .head_dim = 128, .max_position_embeddings = 131072, .rms_norm_eps = 1e-5,
      .rope = LLAMA3_ROPE(500000.0, 32.0, 1.0, 4.0, 8192), .tie_word_embeddings = true,
      .dtype = HYLO_BF16}},
    {QWEN3_1_7B,
     {.arch = HYLO_ARCH_QWEN3, .vocab_size = 151936, .hidden_size = 2048,
      .intermediate_size = 6144, .num_layers = 28, .num_heads = 16, .num_kv_heads = 8,
      .head_dim = 128, .max_position_embeddings = 40960, .rms_norm_eps = 1e-6,
      .rope = DEFAULT_ROPE(1000000.0), .tie_word_embeddings = true, .qk_norm = true,
      .dtype = HYLO_BF16}},
};
#define N_PRESETS (sizeof PRESETS / sizeof PRESETS[0])

static const char *const NAMES[N_PRESETS + 1] = {TINY_LLAMA, TINY_QWEN3, LLAMA_1B, LLAMA_3B,
                                                 QWEN3_1_7B, NULL};

hylo_status hylo_preset(const char *name, hylo_config *out, hylo_error *err)
{
    if (!name || !out) return hylo_error_set(err, HYLO_ERR_USAGE, "hylo_preset: NULL argument");
    for (size_t i = 0; i < N_PRESETS; i++) {
        if (strcmp(name, PRESETS[i].name) == 0) {
            *out = PRESETS[i].config;
            return HYLO_OK;
        }
    }
    char valid[256] = "";
    for (size_t i = 0; i < N_PRESETS; i++) {
        size_t used = strlen(valid);
        snprintf(valid + used, sizeof valid - used, "%s%s", i ? ", " : "", PRESETS[i].name);
    }
    return hylo_error_set(err, HYLO_ERR_CONFIG, "unknown preset \"%.64s\"; valid presets: %s",
                          name, valid);
}

const char *const *hylo_preset_names(void)
{
    return NAMES;
}

/* ------------------------------------------------------------------------------------------ */
/* Tiny hybrids                                                                                 */
/* ------------------------------------------------------------------------------------------ */

typedef struct {
    const char *name;
    const char *base;
    const char *layout;
} hybrid_preset;

/* MLA at layers 0 and 3 (first and last), with YaRN on its rope slice. Short chunks (Mamba2 8,
 * GDN 4) so that prompts of a few tokens already cross chunk boundaries; the GDN one has
 * H_v = 2 H_k and its MLA carries the Qwen3 base's q/k norms. */
static const hybrid_preset HYBRID_PRESETS[] = {
    {"tiny-hybrid-m2", TINY_LLAMA, "2MLA2M2"},
    {"tiny-hybrid-gdn", TINY_QWEN3, "2MLA2GDN"},
};

const char *const *hylo_hybrid_preset_names(void)
{
    static const char *const names[] = {"tiny-hybrid-m2", "tiny-hybrid-gdn", NULL};
    return names;
}

hylo_status hylo_hybrid_preset(const char *name, hylo_config *base, hylo_hybrid_config *hybrid,
                               hylo_error *err)
{
    for (size_t i = 0; i < sizeof HYBRID_PRESETS / sizeof HYBRID_PRESETS[0]; i++) {
        const hybrid_preset *p = &HYBRID_PRESETS[i];
        if (strcmp(name, p->name) != 0) continue;
        hylo_config cfg;
        hylo_hybrid_config hy;
        hylo_status st = hylo_preset(p->base, &cfg, err);
        if (st == HYLO_OK) st = hylo_hybrid_layout(&cfg, p->layout, &hy, err);
        if (st != HYLO_OK) return st;
        /* YaRN s 4, L0 8192: on tiny-llama's 8-dim rope slice (theta 5e5) pairs 0-1 keep their
         * frequency, 2 is blended, 3 is divided by s; on tiny-qwen3's 16 (theta 1e6) 0-2 keep,
         * 3-4 blend, 5-7 divide: every YaRN regime is exercised. */
        hy.mla.rope_scaling.factor = 4.0;
        hy.mla.rope_scaling.original_max_position = 8192;
        hy.mamba2.chunk = 8;
        hy.gdn = (hylo_gdn_config){.k_heads = 2, .v_heads = 4, .head_k = 16, .head_v = 24,
                                   .d_conv = 4, .chunk = 4, .norm_eps = 1e-5};
        *base = cfg;
        *hybrid = hy;
        return hylo_hybrid_config_validate(hybrid, base, name, err);
    }
    return hylo_error_set(err, HYLO_ERR_CONFIG,
                          "unknown hybrid preset '%s' (expected tiny-hybrid-m2 or tiny-hybrid-gdn)",
                          name);
}
