/* cmd_upcycle.c: `hylo upcycle`: a teacher checkpoint -> a HyLo hybrid (spec sec. 7), from a
 * paper layout or explicit choices, with a report of what the initialization keeps. */
#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "io/json.h"

#define COMMAND "upcycle"

/* Parses a floating-point option in [lo, hi] (absent: *out unchanged). */
static bool parse_real(const cli_option *opts, size_t n, const char *name, double lo, double hi,
                       double *out)
{
    const char *text = cli_get(opts, n, name);
    if (!text) return true;
    char *end;
    errno = 0;
    double v = strtod(text, &end);
    if (errno || end == text || *end != '\0' || !(v >= lo && v <= hi)) {
        fprintf(stderr, "hylo %s: %s must be a number in [%g, %g], got '%s'\n", COMMAND, name, lo,
                hi, text);
        return false;
    }
    *out = v;
    return true;
}

/* An integer option overriding *field when given. */
static bool override_int(const cli_option *opts, size_t n, const char *name, int64_t lo,
                         int64_t *field)
{
    return cli_int(COMMAND, opts, n, name, lo, INT32_MAX, *field, field);
}

/* The target: --layout, or --mla-layers with --linear; then the MLA size overrides. */
static bool choose_target(const cli_option *opts, size_t n, const hylo_config *teacher,
                          hylo_hybrid_config *hy)
{
    const char *layout = cli_get(opts, n, "--layout"), *list = cli_get(opts, n, "--mla-layers");
    const char *linear = cli_get(opts, n, "--linear");
    hylo_error err = {0};
    if (!layout == !list) {
        fprintf(stderr, "hylo %s: give exactly one of --layout and --mla-layers\n", COMMAND);
        return false;
    }
    if (layout && linear) {
        fprintf(stderr, "hylo %s: --linear goes with --mla-layers (a layout names its block)\n",
                COMMAND);
        return false;
    }
    hylo_status st;
    if (layout) {
        st = hylo_hybrid_layout(teacher, layout, hy, &err);
    } else {
        bool mla[HYLO_MAX_LAYERS];
        hylo_mixer block = HYLO_MIXER_GDN;
        if (linear && strcmp(linear, "gdn") != 0 && strcmp(linear, "mamba2") != 0) {
            fprintf(stderr, "hylo %s: --linear must be gdn or mamba2, got '%s'\n", COMMAND, linear);
            return false;
        }
        if (linear && strcmp(linear, "mamba2") == 0) block = HYLO_MIXER_MAMBA2;
        st = teacher->num_layers > HYLO_MAX_LAYERS
                 ? hylo_error_set(&err, HYLO_ERR_CONFIG, "the teacher has more than %d layers",
                                  HYLO_MAX_LAYERS)
                 : hylo_parse_layer_list(list, teacher->num_layers, mla, &err);
        if (st == HYLO_OK) st = hylo_hybrid_choose(teacher, mla, block, hy, &err);
    }
    if (st != HYLO_OK) {
        fprintf(stderr, "hylo %s: %s\n", COMMAND, err.message);
        return false;
    }
    hylo_mla_config *m = &hy->mla;
    double factor = m->rope_scaling.type == HYLO_ROPE_YARN ? m->rope_scaling.factor : 1.0;
    if (!override_int(opts, n, "--q-rank", 0, &m->q_rank) ||
        !override_int(opts, n, "--kv-rank", 1, &m->kv_rank) ||
        !override_int(opts, n, "--rope-dim", 2, &m->rope) ||
        !override_int(opts, n, "--nope-dim", 0, &m->nope) ||
        !override_int(opts, n, "--v-dim", 1, &m->v) ||
        !override_int(opts, n, "--kv-heads", 1, &m->kv_heads) ||
        !override_int(opts, n, "--yarn-original", 1, &m->rope_scaling.original_max_position) ||
        !parse_real(opts, n, "--yarn-factor", 1.0, 1e6, &factor))
        return false;
    /* YaRN factor 1 is no scaling at all: plain rotary frequencies on the slice */
    m->rope_scaling.type = factor > 1.0 ? HYLO_ROPE_YARN : HYLO_ROPE_DEFAULT;
    m->rope_scaling.factor = factor;
    return true;
}

static bool parse_options(const cli_option *opts, size_t n, hylo_upcycle_options *o)
{
    int64_t seed, shard_mb;
    if (!cli_int(COMMAND, opts, n, "--seed", 0, INT64_MAX, 0, &seed) ||
        !cli_int(COMMAND, opts, n, "--shard-mb", 1, INT64_MAX / 1048576, 5000, &shard_mb) ||
        !cli_int(COMMAND, opts, n, "--probe-tokens", 0, 1 << 20, o->probe_tokens, &o->probe_tokens) ||
        !parse_real(opts, n, "--q-energy", 1e-9, 1.0, &o->q_energy) ||
        !parse_real(opts, n, "--kv-energy", 1e-9, 1.0, &o->kv_energy))
        return false;
    o->seed = (uint64_t)seed;
    o->max_shard_bytes = (uint64_t)shard_mb * 1048576u;
    o->force = cli_get(opts, n, "--force") != NULL;
    const char *rope = cli_get(opts, n, "--rope-init");
    if (rope && strcmp(rope, "svd") != 0 && strcmp(rope, "fresh") != 0) {
        fprintf(stderr, "hylo %s: --rope-init must be svd or fresh, got '%s'\n", COMMAND, rope);
        return false;
    }
    o->rope_init = rope && strcmp(rope, "fresh") == 0 ? HYLO_ROPE_INIT_FRESH : HYLO_ROPE_INIT_SVD;
    const char *dtype = cli_get(opts, n, "--dtype");
    if (!dtype) return true;
    char upper[16] = "";
    for (size_t i = 0; dtype[i] && i + 1 < sizeof upper; i++)
        upper[i] = (char)toupper((unsigned char)dtype[i]);
    o->keep_dtype = false;
    if (hylo_dtype_parse(upper, &o->dtype)) return true;
    fprintf(stderr, "hylo %s: --dtype must be f32, f16 or bf16, got '%s'\n", COMMAND, dtype);
    return false;
}

static void print_energy(double e)
{
    if (isfinite(e)) printf("  %9.4f", e);
    else printf("  %9s", "-");
}

static void print_report(const char *teacher, const char *out, const hylo_upcycle_report *r)
{
    const hylo_mla_config *m = &r->hybrid.mla;
    printf("upcycled %s -> %s (%s, %lld parameters)\n", teacher, out,
           hylo_dtype_name(r->config.dtype), (long long)r->params_total);
    printf("MLA: r_q %lld, r_kv %lld, nope %lld, rope %lld, v %lld, %lld KV heads\n",
           (long long)m->q_rank, (long long)m->kv_rank, (long long)m->nope, (long long)m->rope,
           (long long)m->v, (long long)m->kv_heads);
    printf("\nlayer  mixer      Q energy  KV energy   KV share   mixer params   layer params\n");
    for (int64_t i = 0; i < r->hybrid.num_layers; i++) {
        const hylo_layer_report *l = &r->layers[i];
        printf("%5lld  %-9s", (long long)i, hylo_mixer_name(l->mixer));
        print_energy(l->q_energy);
        print_energy(l->kv_energy);
        printf("  %8.2f%%  %13lld  %13lld\n", 100.0 * l->kv_share, (long long)l->mixer_params,
               (long long)l->params);
    }
    printf("\nKV cache per token: %.2f%% of the teacher's; recurrent state %lld B per sequence\n",
           100.0 * r->kv_share, (long long)r->state_bytes_per_sequence);
    if (r->dropped_tensors)
        printf("dropped teacher tensors without a slot: %lld\n", (long long)r->dropped_tensors);
    if (r->probe.tokens)
        printf("probe (%lld tokens): KL(teacher || student) mean %.6f nats, max %.6f; top-1 "
               "agreement %.1f%%\n", (long long)r->probe.tokens, r->probe.kl_mean,
               r->probe.kl_max, 100.0 * r->probe.top1);
}

int cmd_upcycle(int argc, char **argv)
{
    cli_option opts[] = {
        {"--teacher", "DIR", "teacher checkpoint (Llama / Qwen2 / Qwen3; never modified)", NULL},
        {"--out", "DIR", "output directory (created; must not hold a checkpoint)", NULL},
        {"--layout", "L", "4MLA12GDN, 8MLA8M2, 14MLA14GDN, ..., all-mla, all-gdn, all-mamba2", NULL},
        {"--mla-layers", "LIST", "instead of --layout: MLA layer indices, e.g. 1,5,10,14", NULL},
        {"--linear", "B", "with --mla-layers: the other layers' block, gdn (default) or mamba2", NULL},
        {"--q-rank", "N", "MLA q_lora_rank (0: a full q_proj)", NULL},
        {"--kv-rank", "N", "MLA kv_lora_rank", NULL},
        {"--rope-dim", "N", "MLA qk_rope_head_dim", NULL},
        {"--nope-dim", "N", "MLA qk_nope_head_dim", NULL},
        {"--v-dim", "N", "MLA v_head_dim (must be the teacher's head_dim)", NULL},
        {"--kv-heads", "N", "MLA KV heads (a multiple of the teacher's; H: full KV heads)", NULL},
        {"--q-energy", "F", "dynamic r_q: keep this share of W_Q's sigma^2 (multiple of 8)", NULL},
        {"--kv-energy", "F", "dynamic r_kv: keep this share of [W_K; W_V]'s sigma^2", NULL},
        {"--yarn-factor", "F", "YaRN factor s of the MLA rope slice (1: no scaling)", NULL},
        {"--yarn-original", "N", "YaRN original context L0", NULL},
        {"--rope-init", "M", "svd (default): rope rows from the SVD / mean; fresh: fresh init", NULL},
        {"--seed", "S", "seed of the fresh parameters (default 0)", NULL},
        {"--dtype", "T", "output dtype f32|f16|bf16 (default: the teacher's)", NULL},
        {"--shard-mb", "N", "shard the weights above N MiB (default 5000, as HF)", NULL},
        {"--probe-tokens", "N", "teacher <-> student probe length (default 64; 0: skip)", NULL},
        {"--json", "FILE", "also write the report as JSON", NULL},
        {"--force", NULL, "replace a checkpoint already in --out", NULL},
        {"--help", NULL, "show this help", NULL},
    };
    const size_t n = sizeof opts / sizeof opts[0];
    int rc = cli_begin(COMMAND, "Upcycles a teacher checkpoint into a HyLo hybrid (spec sec. 7).",
                       argc, argv, opts, n);
    if (rc != CLI_CONTINUE) return rc;
    const char *teacher = cli_get(opts, n, "--teacher"), *out = cli_get(opts, n, "--out");
    if (!teacher || !out) {
        fprintf(stderr, "hylo %s: --teacher and --out are required\n", COMMAND);
        return CLI_USAGE;
    }
    hylo_error err = {0};
    hylo_config cfg;
    if (hylo_dir_config_load(teacher, &cfg, &err) != HYLO_OK) return cli_fail(COMMAND, &err);
    hylo_hybrid_config target;
    hylo_upcycle_options o = hylo_upcycle_options_default();
    if (!choose_target(opts, n, &cfg, &target) || !parse_options(opts, n, &o)) return CLI_USAGE;
    hylo_upcycle_report report;
    if (hylo_upcycle(teacher, &target, &o, out, &report, &err) != HYLO_OK)
        return cli_fail(COMMAND, &err);
    print_report(teacher, out, &report);
    const char *json = cli_get(opts, n, "--json");
    if (json && hylo_upcycle_report_save(&report, teacher, out, json, &err) != HYLO_OK)
        return cli_fail(COMMAND, &err);
    return CLI_OK;
}
