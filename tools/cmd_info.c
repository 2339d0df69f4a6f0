/* cmd_info.c: `hylo info`: parameters per block type, KV-cache bytes per token of teacher and
 * hybrid, recurrent state per sequence, and total cache memory at a context length (spec
 * sec. 10), from a checkpoint's configs or from a preset and a layout alone. */
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "io/json.h"

#define COMMAND "info"

typedef struct {
    char name[4200];
    hylo_config base;
    hylo_hybrid_config hybrid;
} model_desc;

/* The model to describe: --model DIR, --preset with an optional --layout, or a hybrid preset. */
static hylo_status describe_target(const cli_option *opts, size_t n, model_desc *d,
                                   hylo_error *err)
{
    const char *dir = cli_get(opts, n, "--model"), *preset = cli_get(opts, n, "--preset");
    const char *layout = cli_get(opts, n, "--layout");
    if (!dir == !preset)
        return hylo_error_set(err, HYLO_ERR_USAGE, "give exactly one of --model and --preset");
    if (dir && layout)
        return hylo_error_set(err, HYLO_ERR_USAGE, "--layout goes with --preset, not --model");
    hylo_status st;
    if (dir) {
        snprintf(d->name, sizeof d->name, "%s", dir);
        return hylo_dir_configs_load(dir, &d->base, &d->hybrid, NULL, err);
    }
    snprintf(d->name, sizeof d->name, "%s%s%s", preset, layout ? " " : "", layout ? layout : "");
    bool is_hybrid;
    st = cli_preset_model(preset, layout, &d->base, &d->hybrid, &is_hybrid, err);
    if (is_hybrid) d->base.tie_word_embeddings = false; /* hybrids write lm_head (spec sec. 7) */
    return st;
}

/* "1, 5, 10, 14" */
static void layer_list(const hylo_hybrid_config *hy, hylo_mixer mixer, char *buf, size_t size)
{
    size_t len = 0;
    buf[0] = '\0';
    for (int64_t i = 0; i < hy->num_layers && len < size; i++)
        if (hy->mixers[i] == mixer)
            len += (size_t)snprintf(buf + len, size - len, "%s%lld", len ? ", " : "", (long long)i);
}

static double mib(double bytes)
{
    return bytes / 1048576.0;
}

static void print_table(const model_desc *d, const hylo_model_stats *s, int64_t context,
                        const char *cache_dtype)
{
    static const char *const titles[] = {"attention", "MLA", "Mamba2", "GDN"};
    printf("model: %s (%s base, %lld layers)\n", d->name, hylo_arch_name(d->base.arch),
           (long long)d->base.num_layers);
    for (int k = 0; k < 4; k++) {
        char list[1024];
        layer_list(&d->hybrid, (hylo_mixer)k, list, sizeof list);
        if (s->layers_of[k]) printf("  %-9s layers: %s\n", titles[k], list);
    }
    printf("\nparameters\n");
    printf("  %-28s %16lld\n", "embeddings + LM head", (long long)s->params_embedding);
    for (int k = 0; k < 4; k++) {
        if (!s->layers_of[k]) continue;
        char label[64];
        snprintf(label, sizeof label, "%s blocks (%lld)", titles[k], (long long)s->layers_of[k]);
        printf("  %-28s %16lld   (%lld per layer)\n", label, (long long)s->params_mixer[k],
               (long long)(s->params_mixer[k] / s->layers_of[k]));
    }
    printf("  %-28s %16lld\n", "MLPs + norms", (long long)s->params_mlp);
    printf("  %-28s %16lld\n", "total", (long long)s->params_total);
    double share = 100.0 * (double)s->kv_bytes_per_token / (double)s->teacher_kv_bytes_per_token;
    printf("\nKV cache per token (%s)\n", cache_dtype);
    printf("  %-28s %16lld B\n", "teacher (attention)", (long long)s->teacher_kv_bytes_per_token);
    printf("  %-28s %16lld B   (%.1f%% of the teacher)\n", "this model",
           (long long)s->kv_bytes_per_token, share);
    printf("  %-28s %16lld B\n", "recurrent state / sequence", (long long)s->state_bytes_per_sequence);
    printf("\ncache memory at context %lld\n", (long long)context);
    printf("  %-28s %16.1f MiB\n", "teacher",
           mib((double)s->teacher_kv_bytes_per_token * (double)context));
    printf("  %-28s %16.1f MiB\n", "this model",
           mib((double)s->kv_bytes_per_token * (double)context + (double)s->state_bytes_per_sequence));
}

static void print_json(const model_desc *d, const hylo_model_stats *s, int64_t context,
                       int64_t cache_bytes)
{
    hylo_text name = {0};
    hylo_text_json_string(&name, d->name);
    printf("{\"model\": %s, \"arch\": \"%s\", \"layers\": [", name.data ? name.data : "null",
           hylo_arch_name(d->base.arch));
    hylo_text_free(&name);
    for (int64_t i = 0; i < d->hybrid.num_layers; i++)
        printf("%s\"%s\"", i ? ", " : "", hylo_mixer_name(d->hybrid.mixers[i]));
    printf("], \"params\": {\"total\": %lld, \"embedding\": %lld, \"mlp\": %lld",
           (long long)s->params_total, (long long)s->params_embedding, (long long)s->params_mlp);
    for (int k = 0; k < 4; k++)
        printf(", \"%s\": %lld", hylo_mixer_name((hylo_mixer)k), (long long)s->params_mixer[k]);
    printf("}, \"cache_bytes_per_element\": %lld, \"kv_bytes_per_token\": %lld, "
           "\"teacher_kv_bytes_per_token\": %lld, \"kv_share\": %.6f, "
           "\"state_bytes_per_sequence\": %lld, \"context\": %lld, "
           "\"teacher_cache_bytes\": %lld, \"cache_bytes\": %lld}\n",
           (long long)cache_bytes, (long long)s->kv_bytes_per_token,
           (long long)s->teacher_kv_bytes_per_token,
           (double)s->kv_bytes_per_token / (double)s->teacher_kv_bytes_per_token,
           (long long)s->state_bytes_per_sequence, (long long)context,
           (long long)(s->teacher_kv_bytes_per_token * context),
           (long long)(s->kv_bytes_per_token * context + s->state_bytes_per_sequence));
}

int cmd_info(int argc, char **argv)
{
    cli_option opts[] = {
        {"--model", "DIR", "a checkpoint directory (only its config files are read)", NULL},
        {"--preset", "NAME", "a preset shape (teacher or tiny hybrid) instead of a checkpoint", NULL},
        {"--layout", "L", "with --preset: 4MLA12GDN, 8MLA8M2, ..., all-mla, all-gdn, all-mamba2", NULL},
        {"--context", "N", "context length for the total cache memory (default 65536)", NULL},
        {"--cache-dtype", "T", "bytes of a cached element: bf16 (default) or f32", NULL},
        {"--json", NULL, "print one JSON object instead of the table", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Parameters, KV cache and state memory of a teacher or hybrid.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    int64_t context;
    if (!cli_int(COMMAND, opts, n, "--context", 0, INT64_MAX / 65536, 65536, &context))
        return CLI_USAGE;
    const char *dtype = cli_get(opts, n, "--cache-dtype");
    if (!dtype) dtype = "bf16";
    if (strcmp(dtype, "bf16") != 0 && strcmp(dtype, "f32") != 0) {
        fprintf(stderr, "hylo %s: --cache-dtype must be bf16 or f32, got '%s'\n", COMMAND, dtype);
        return CLI_USAGE;
    }
    int64_t cache_bytes = strcmp(dtype, "f32") == 0 ? 4 : 2;
    hylo_error err = {0};
    model_desc d;
    hylo_model_stats stats;
    hylo_status st = describe_target(opts, n, &d, &err);
    if (st == HYLO_OK) st = hylo_model_stats_of(&d.base, &d.hybrid, cache_bytes, &stats, &err);
    if (st != HYLO_OK) {
        cli_fail(COMMAND, &err);
        return st == HYLO_ERR_USAGE ? CLI_USAGE : CLI_FAIL;
    }
    if (cli_get(opts, n, "--json")) print_json(&d, &stats, context, cache_bytes);
    else print_table(&d, &stats, context, dtype);
    return CLI_OK;
}
