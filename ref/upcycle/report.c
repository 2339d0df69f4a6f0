/* report.c: what upcycle and assemble report: per layer the mixer, the singular-value energy
 * the MLA factors keep, the KV-cache share and the parameter counts; the totals of spec
 * sec. 10; the probe. Written as JSON with hylo_upcycle_report_save. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/json.h"
#include "upcycle/upcycle.h"

hylo_status hylo_report_fill(hylo_upcycle_report *r, const hylo_config *cfg,
                             const hylo_hybrid_config *hybrid, hylo_error *err)
{
    memset(r, 0, sizeof *r);
    r->config = *cfg;
    r->hybrid = *hybrid;
    hylo_model_stats stats;
    hylo_param *params = NULL;
    size_t count = 0;
    hylo_status st = hylo_model_stats_of(cfg, hybrid, 2, &stats, err);
    if (st == HYLO_OK) st = hylo_model_params(cfg, hybrid, &params, &count, err);
    if (st != HYLO_OK) return st;
    const double teacher_row = 2.0 * (double)(cfg->num_kv_heads * cfg->head_dim);
    for (int64_t i = 0; i < hybrid->num_layers; i++) {
        hylo_layer_report *l = &r->layers[i];
        l->mixer = hybrid->mixers[i];
        l->q_energy = l->kv_energy = NAN;
        l->kv_share = l->mixer == HYLO_MIXER_ATTENTION ? 1.0
                      : l->mixer == HYLO_MIXER_MLA
                          ? (double)(hybrid->mla.kv_rank + hybrid->mla.rope) / teacher_row
                          : 0.0;
    }
    for (size_t i = 0; i < count; i++) {
        const hylo_param *p = &params[i];
        if (p->layer < 0) continue;
        r->layers[p->layer].params += hylo_param_numel(p);
        if (!p->is_mlp) r->layers[p->layer].mixer_params += hylo_param_numel(p);
    }
    free(params);
    r->params_total = stats.params_total;
    r->kv_share = (double)stats.kv_bytes_per_token / (double)stats.teacher_kv_bytes_per_token;
    r->state_bytes_per_sequence = stats.state_bytes_per_sequence;
    return HYLO_OK;
}

/* A finite number, or null (energies unknown, no probe). */
static void put_number(hylo_text *t, double v)
{
    char num[48];
    if (isfinite(v)) hylo_json_format_double(v, num, sizeof num);
    else snprintf(num, sizeof num, "null");
    hylo_text_printf(t, "%s", num);
}

static void put_layers(hylo_text *t, const hylo_upcycle_report *r)
{
    hylo_text_printf(t, "[");
    for (int64_t i = 0; i < r->hybrid.num_layers; i++) {
        const hylo_layer_report *l = &r->layers[i];
        hylo_text_printf(t, "%s\n    {\"layer\": %lld, \"mixer\": \"%s\", \"q_energy\": ",
                         i ? "," : "", (long long)i, hylo_mixer_name(l->mixer));
        put_number(t, l->q_energy);
        hylo_text_printf(t, ", \"kv_energy\": ");
        put_number(t, l->kv_energy);
        hylo_text_printf(t, ", \"kv_share\": ");
        put_number(t, l->kv_share);
        hylo_text_printf(t, ", \"mixer_params\": %lld, \"params\": %lld}",
                         (long long)l->mixer_params, (long long)l->params);
    }
    hylo_text_printf(t, "\n  ]");
}

static void put_probe(hylo_text *t, const hylo_probe_result *p)
{
    if (p->tokens == 0) {
        hylo_text_printf(t, "null");
        return;
    }
    hylo_text_printf(t, "{\"tokens\": %lld, \"kl_mean\": ", (long long)p->tokens);
    put_number(t, p->kl_mean);
    hylo_text_printf(t, ", \"kl_max\": ");
    put_number(t, p->kl_max);
    hylo_text_printf(t, ", \"top1\": ");
    put_number(t, p->top1);
    hylo_text_printf(t, "}");
}

hylo_status hylo_upcycle_report_save(const hylo_upcycle_report *r, const char *teacher,
                                     const char *out, const char *path, hylo_error *err)
{
    const hylo_mla_config *m = &r->hybrid.mla;
    hylo_text t = {0};
    bool first = true;
    hylo_text_printf(&t, "{\n");
    hylo_json_put_string(&t, &first, 2, "teacher", teacher);
    hylo_json_put_string(&t, &first, 2, "output", out);
    hylo_json_put_string(&t, &first, 2, "arch", hylo_arch_name(r->config.arch));
    hylo_json_put_string(&t, &first, 2, "dtype", hylo_dtype_name(r->config.dtype));
    bool has_mla = false;
    for (int64_t i = 0; i < r->hybrid.num_layers; i++) has_mla |= r->hybrid.mixers[i] == HYLO_MIXER_MLA;
    if (has_mla) {
        hylo_json_put_int(&t, &first, 2, "q_lora_rank", m->q_rank);
        hylo_json_put_int(&t, &first, 2, "kv_lora_rank", m->kv_rank);
        hylo_json_put_int(&t, &first, 2, "qk_nope_head_dim", m->nope);
        hylo_json_put_int(&t, &first, 2, "qk_rope_head_dim", m->rope);
        hylo_json_put_int(&t, &first, 2, "v_head_dim", m->v);
    }
    hylo_json_put_int(&t, &first, 2, "params_total", r->params_total);
    hylo_json_put_key(&t, &first, 2, "kv_share");
    put_number(&t, r->kv_share);
    hylo_json_put_int(&t, &first, 2, "state_bytes_per_sequence", r->state_bytes_per_sequence);
    hylo_json_put_int(&t, &first, 2, "dropped_tensors", r->dropped_tensors);
    hylo_json_put_int(&t, &first, 2, "differing_shared", r->differing_shared);
    hylo_json_put_key(&t, &first, 2, "probe");
    put_probe(&t, &r->probe);
    hylo_json_put_key(&t, &first, 2, "layers");
    put_layers(&t, r);
    hylo_text_printf(&t, "\n}\n");
    hylo_status st = hylo_atomic_write_text(path, &t, err);
    hylo_text_free(&t);
    return st;
}
