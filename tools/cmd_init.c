/* cmd_init.c: `hylo init`: a deterministic random HF-format checkpoint of a preset. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli.h"

#define COMMAND "init"

/* Files a checkpoint directory may hold: those --force replaces. */
static bool is_checkpoint_file(const char *name)
{
    size_t n = strlen(name);
    return strcmp(name, "config.json") == 0 || strcmp(name, "hybrid_config.json") == 0 ||
           strcmp(name, "model.safetensors.index.json") == 0 ||
           (strncmp(name, "model", 5) == 0 && n > 12 && strcmp(name + n - 12, ".safetensors") == 0);
}

/* Creates `dir`, or checks that it holds no checkpoint (unless `force`, which removes the old
 * checkpoint's files so that no stale shard or index outlives it). */
static bool prepare_output(const char *dir, bool force)
{
    if (mkdir(dir, 0755) == 0) return true;
    if (errno != EEXIST) {
        fprintf(stderr, "hylo %s: cannot create %s: %s\n", COMMAND, dir, strerror(errno));
        return false;
    }
    DIR *d = opendir(dir);
    if (!d) {
        fprintf(stderr, "hylo %s: %s exists and is not a readable directory\n", COMMAND, dir);
        return false;
    }
    bool ok = true;
    for (struct dirent *e; ok && (e = readdir(d));) {
        if (!is_checkpoint_file(e->d_name)) continue;
        if (!force) {
            fprintf(stderr, "hylo %s: %s already holds a checkpoint (%s); use --force to replace it\n",
                    COMMAND, dir, e->d_name);
            ok = false;
            continue;
        }
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (unlink(path) != 0) {
            fprintf(stderr, "hylo %s: cannot remove %s: %s\n", COMMAND, path, strerror(errno));
            ok = false;
        }
    }
    closedir(d);
    return ok;
}

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
    if (!prepare_output(out, cli_get(opts, n, "--force") != NULL)) return CLI_FAIL;
    if (hylo_init_random(&cfg, is_hybrid ? &hybrid : NULL, (uint64_t)seed, out,
                         (uint64_t)shard_mb * 1048576u, &err) != HYLO_OK)
        return cli_fail(COMMAND, &err);
    const char *layout = cli_get(opts, n, "--layout");
    printf("wrote %s: %s%s%s%s, seed %lld, %s weights\n", out, preset, layout ? " " : "",
           layout ? layout : "", is_hybrid ? " (hybrid)" : "", (long long)seed,
           hylo_dtype_name(cfg.dtype));
    return CLI_OK;
}
