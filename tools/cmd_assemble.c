/* cmd_assemble.c: `hylo assemble`: a hybrid built layer by layer from an all-MLA and an
 * all-linear model of one base (the recipe's stage 0 / I models, spec sec. 9). */
#include <stdio.h>

#include "cli.h"
#include "io/json.h"

#define COMMAND "assemble"

static void print_report(const char *mla, const char *linear, const char *out,
                         const hylo_upcycle_report *r)
{
    printf("assembled %s from %s (MLA layers) and %s (the others), %lld parameters\n", out, mla,
           linear, (long long)r->params_total);
    printf("\nlayer  mixer     from          KV share   layer params\n");
    for (int64_t i = 0; i < r->hybrid.num_layers; i++) {
        const hylo_layer_report *l = &r->layers[i];
        printf("%5lld  %-9s %-12s  %8.2f%%  %13lld\n", (long long)i, hylo_mixer_name(l->mixer),
               l->mixer == HYLO_MIXER_MLA ? "--mla" : "--linear", 100.0 * l->kv_share,
               (long long)l->params);
    }
    printf("\nKV cache per token: %.2f%% of the teacher's; recurrent state %lld B per sequence\n",
           100.0 * r->kv_share, (long long)r->state_bytes_per_sequence);
    printf("shared tensors that differ between the two models: %lld\n",
           (long long)r->differing_shared);
    if (r->probe.tokens)
        printf("probe (%lld tokens): KL(teacher || student) mean %.6f nats, max %.6f; top-1 "
               "agreement %.1f%%\n", (long long)r->probe.tokens, r->probe.kl_mean,
               r->probe.kl_max, 100.0 * r->probe.top1);
}

int cmd_assemble(int argc, char **argv)
{
    cli_option opts[] = {
        {"--mla", "DIR", "the all-MLA model (its shared tensors are the ones taken)", NULL},
        {"--linear", "DIR", "the all-linear model (Mamba2 or GDN)", NULL},
        {"--mla-layers", "LIST", "layers taken from --mla, e.g. 1,5,10,14; the rest from --linear", NULL},
        {"--out", "DIR", "output directory (created; must not hold a checkpoint)", NULL},
        {"--teacher", "DIR", "also probe the agreement with this teacher", NULL},
        {"--probe-tokens", "N", "probe length with --teacher (default 64)", NULL},
        {"--shard-mb", "N", "shard the weights above N MiB (default 5000, as HF)", NULL},
        {"--json", "FILE", "also write the report as JSON", NULL},
        {"--force", NULL, "replace a checkpoint already in --out", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Builds a hybrid layer by layer from an all-MLA and an all-linear model.",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    const char *mla = cli_get(opts, n, "--mla"), *linear = cli_get(opts, n, "--linear");
    const char *list = cli_get(opts, n, "--mla-layers"), *out = cli_get(opts, n, "--out");
    const char *teacher = cli_get(opts, n, "--teacher");
    if (!mla || !linear || !list || !out) {
        fprintf(stderr, "hylo %s: --mla, --linear, --mla-layers and --out are required\n", COMMAND);
        return CLI_USAGE;
    }
    int64_t shard_mb, probe;
    if (!cli_int(COMMAND, opts, n, "--shard-mb", 1, INT64_MAX / 1048576, 5000, &shard_mb) ||
        !cli_int(COMMAND, opts, n, "--probe-tokens", 1, 1 << 20, 64, &probe))
        return CLI_USAGE;
    hylo_error err = {0};
    hylo_config cfg;
    if (hylo_dir_config_load(mla, &cfg, &err) != HYLO_OK) return cli_fail(COMMAND, &err);
    bool layers[HYLO_MAX_LAYERS];
    hylo_status st = cfg.num_layers > HYLO_MAX_LAYERS
                         ? hylo_error_set(&err, HYLO_ERR_CONFIG, "%s has more than %d layers",
                                          mla, HYLO_MAX_LAYERS)
                         : hylo_parse_layer_list(list, cfg.num_layers, layers, &err);
    if (st != HYLO_OK) {
        fprintf(stderr, "hylo %s: --mla-layers: %s\n", COMMAND, err.message);
        return CLI_USAGE;
    }
    hylo_upcycle_report report;
    if (hylo_assemble(mla, linear, layers, out, (uint64_t)shard_mb * 1048576u,
                      cli_get(opts, n, "--force") != NULL, &report, &err) != HYLO_OK ||
        (teacher && hylo_probe_agreement(teacher, out, probe, &report.probe, &err) != HYLO_OK))
        return cli_fail(COMMAND, &err);
    print_report(mla, linear, out, &report);
    const char *json = cli_get(opts, n, "--json");
    if (json && hylo_upcycle_report_save(&report, teacher ? teacher : mla, out, json, &err) != HYLO_OK)
        return cli_fail(COMMAND, &err);
    return CLI_OK;
}
