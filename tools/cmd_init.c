/* cmd_init.c: `hylo init`: a deterministic random HF-format checkpoint of a preset. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "model/checkpoint_dir.h"

#define COMMAND "init"

static bool parse_dtype(const char *text, hylo_dtype *out)
{
    static const struct { const char *name; hylo_dtype dtype; } names[] = {
        {"f32", HYLO_F32}, {"float32", HYLO_F32}, {"f16", HYLO_F16},
        {"float16", HYLO_F16}, {"bf16", HYLO_BF16}, {"bfloat16", HYLO_BF16}};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(text, names[i].name) == 0) {
            *out = names[i].dtype;
            return true;
        }
    fprintf(stderr, "hylo %s: --dtype must be f32, f16 or bf16, got '%s'\n", COMMAND, text);
    return false;
}

int cmd_init(int argc, char **argv)
{
    cli_option opts[] = {
        {"--preset", "NAME", "tiny-llama, tiny-qwen3, llama-3.2-1b, llama-3.2-3b, qwen3-1.7b, "
                             "tiny-hybrid-m2, tiny-hybrid-gdn", NULL},
        {"--layout", "L", "make a hybrid of the preset: 4MLA12GDN, 8MLA8M2, all-mla, ...", NULL},
        {"--out", "DIR", "output directory (created; must not hold a checkpoint)", NULL},
        {"--seed", "S", "random seed (default 0)", NULL},
        {"--dtype", "T", "weight dtype f32|f16|bf16 (default: the preset's, bf16 for real shapes)", NULL},
        {"--shard-mb", "N", "shard the weights above N MiB (default 5000, as HF)", NULL},
        {"--force", NULL, "replace a checkpoint already in --out", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Writes config.json and random safetensors weights of a preset shape.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    const char *preset = cli_get(opts, n, "--preset"), *out = cli_get(opts, n, "--out");
    if (!preset || !out) {
        fprintf(stderr, "hylo %s: --preset and --out are required\n", COMMAND);
        return CLI_USAGE;
    }
    int64_t seed, shard_mb;
    bool is_hybrid = false;
    if (!cli_int(COMMAND, opts, n, "--seed", 0, INT64_MAX, 0, &seed) ||
        !cli_int(COMMAND, opts, n, "--shard-mb", 1, INT64_MAX / 1048576, 5000, &shard_mb))
        return CLI_USAGE;
    hylo_error err = {0};
    hylo_config cfg;
    hylo_hybrid_config hybrid;
    if (cli_preset_model(preset, cli_get(opts, n, "--layout"), &cfg, &hybrid, &is_hybrid, &err) !=
        HYLO_OK) {
        fprintf(stderr, "hylo %s: %s\n", COMMAND, err.message);
        return CLI_USAGE;
    }
    const char *dtype = cli_get(opts, n, "--dtype");
    if (dtype && !parse_dtype(dtype, &cfg.dtype)) return CLI_USAGE;
    /* creates --out, or (with --force) clears the checkpoint it holds */
    if (hylo_output_check(out, cli_get(opts, n, "--force") != NULL, NULL, 0, &err) != HYLO_OK ||
        hylo_output_prepare(out, &err) != HYLO_OK ||
        hylo_init_random(&cfg, is_hybrid ? &hybrid : NULL, (uint64_t)seed, out,
                         (uint64_t)shard_mb * 1048576u, &err) != HYLO_OK)
        return cli_fail(COMMAND, &err);
    const char *layout = cli_get(opts, n, "--layout");
    printf("wrote %s: %s%s%s%s, seed %lld, %s weights\n", out, preset, layout ? " " : "",
           layout ? layout : "", is_hybrid ? " (hybrid)" : "", (long long)seed,
           hylo_dtype_name(cfg.dtype));
    return CLI_OK;
}
