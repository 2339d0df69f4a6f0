/* stats.c: parameter counts and cache / state memory of teachers and hybrids (spec sec. 10). */
#include <stdlib.h>

#include "model/model.h"

/* Floats of the Mamba2 state per sequence: SSM [H, P, N] and conv [conv_dim, d_conv - 1]. */
static int64_t mamba2_state_floats(const hylo_config *c, const hylo_hybrid_config *hy)
{
    hylo_mamba2_dims d = hylo_mamba2_dims_of(c, hy);
    return d.nheads * d.headdim * d.d_state + hylo_mamba2_conv_dim(&d) * (d.d_conv - 1);
}

/* Floats of the GDN state per sequence: S [H_v, dk, dv] and the q, k, v conv states. */
static int64_t gdn_state_floats(const hylo_gdn_config *g)
{
    int64_t conv_channels = 2 * g->k_heads * g->head_k + g->v_heads * g->head_v;
    return g->v_heads * g->head_k * g->head_v + conv_channels * (g->d_conv - 1);
}

hylo_status hylo_model_stats_of(const hylo_config *base, const hylo_hybrid_config *hybrid,
                                int64_t cache_bytes, hylo_model_stats *out, hylo_error *err)
{
    hylo_param *params = NULL;
    size_t count = 0;
    hylo_status st = hylo_model_params(base, hybrid, &params, &count, err);
    if (st != HYLO_OK) return st;
    hylo_model_stats s = {0};
    for (size_t i = 0; i < count; i++) {
        const hylo_param *p = &params[i];
        int64_t n = hylo_param_numel(p);
        s.params_total += n;
        if (p->kind == HYLO_PARAM_EMBEDDING) s.params_embedding += n;
        else if (p->layer < 0 || p->is_mlp) s.params_mlp += n;
        else s.params_mixer[p->mixer] += n;
    }
    free(params);
    const int64_t attention_row = 2 * base->num_kv_heads * base->head_dim;
    for (int64_t i = 0; i < base->num_layers; i++) {
        hylo_mixer mixer = hybrid ? hybrid->mixers[i] : HYLO_MIXER_ATTENTION;
        s.layers_of[mixer]++;
        switch (mixer) {
        case HYLO_MIXER_ATTENTION: s.kv_bytes_per_token += attention_row * cache_bytes; break;
        case HYLO_MIXER_MLA:
            s.kv_bytes_per_token += (hybrid->mla.kv_rank + hybrid->mla.rope) * cache_bytes;
            break;
        case HYLO_MIXER_MAMBA2:
            s.state_bytes_per_sequence += mamba2_state_floats(base, hybrid) * (int64_t)sizeof(float);
            break;
        case HYLO_MIXER_GDN:
            s.state_bytes_per_sequence += gdn_state_floats(&hybrid->gdn) * (int64_t)sizeof(float);
            break;
        }
    }
    s.teacher_kv_bytes_per_token = base->num_layers * attention_row * cache_bytes;
    *out = s;
    return HYLO_OK;
}
