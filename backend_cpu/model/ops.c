/* ops.c: the CPU backend's table for the one model definition of ref/model/forward.c: its
 * layers, a per-state context sized for the model's decode steps, and the bf16 copies of the
 * projection matrices for HYLO_WEIGHTS_BF16. */
#include <stdlib.h>

#include "../layers/cpu_layers.h"
#include "model/model.h"

/* The workspace of one decode step (T = 1) of every block the model has. */
static hylo_cpu_need decode_need(const hylo_model *m)
{
    const hylo_config *c = &m->cfg;
    const int64_t D = c->hidden_size, q_width = c->num_heads * c->head_dim;
    hylo_cpu_need need = hylo_cpu_swiglu_mlp_need(1, D, c->intermediate_size);
    bool seen[4] = {false, false, false, false};
    for (int64_t i = 0; i < c->num_layers; i++) {
        const hylo_mixer mixer = m->layers[i].mixer;
        if (seen[mixer]) continue;
        seen[mixer] = true;
        hylo_cpu_need part = {{0, 0}};
        if (mixer == HYLO_MIXER_ATTENTION) {
            part = hylo_cpu_gqa_attention_need(1, c->num_heads, c->num_kv_heads, c->head_dim);
            const hylo_cpu_need linear = hylo_cpu_linear_need(1, D > q_width ? D : q_width);
            hylo_cpu_need_max(&part, &linear);
        } else if (mixer == HYLO_MIXER_MLA) {
            const hylo_mla_layer L = hylo_model_mla_layer(m, i);
            part = hylo_cpu_mla_need(&L, 1, 1, true);
        } else if (mixer == HYLO_MIXER_MAMBA2) {
            const hylo_mamba2_dims d = hylo_mamba2_dims_of(c, &m->hybrid);
            part = hylo_cpu_mamba2_need(&d, 1, HYLO_SCAN_RECURRENT);
        } else {
            const hylo_gdn_dims d = hylo_gdn_dims_of(c, &m->hybrid);
            part = hylo_cpu_gdn_need(&d, 1, HYLO_SCAN_RECURRENT);
        }
        hylo_cpu_need_max(&need, &part);
    }
    return need;
}

static hylo_status context_create(const hylo_model *m, void **ctx, hylo_error *err)
{
    const hylo_cpu_need need = decode_need(m);
    const hylo_cpu_weights *bf16 = m->weights == HYLO_WEIGHTS_BF16 ? m->backend_weights : NULL;
    hylo_cpu_ctx *c = NULL;
    hylo_status st = hylo_cpu_context_new(bf16, &need, &c, err);
    *ctx = c;
    return st;
}

static void context_free(void *ctx)
{
    hylo_cpu_context_free(ctx);
}

/* With bf16 weights, once per model: a copy of every projection matrix and of the LM head. */
static hylo_status model_prepare(hylo_model *m, hylo_error *err)
{
    if (m->weights != HYLO_WEIGHTS_BF16 || m->backend_weights) return HYLO_OK;
    hylo_param *params = NULL;
    size_t count = 0;
    hylo_status st = hylo_model_params(&m->cfg, &m->hybrid, &params, &count, err);
    if (st != HYLO_OK) return st;
    const float **matrices = calloc(count + 1, sizeof *matrices);
    int64_t *numel = calloc(count + 1, sizeof *numel);
    size_t n = 0;
    bool head_listed = false;
    for (size_t i = 0; matrices && numel && i < count; i++) {
        if (params[i].kind != HYLO_PARAM_LINEAR || params[i].ndim != 2) continue;
        matrices[n] = *hylo_param_slot(m, &params[i]);
        numel[n] = hylo_param_numel(&params[i]);
        head_listed = head_listed || matrices[n] == m->lm_head;
        n++;
    }
    if (matrices && numel && !head_listed) {
        matrices[n] = m->lm_head;
        numel[n++] = m->cfg.vocab_size * m->cfg.hidden_size;
    }
    hylo_cpu_weights *w = NULL;
    st = matrices && numel
             ? hylo_cpu_weights_new(matrices, numel, n, &w, err)
             : hylo_error_set(err, HYLO_ERR_NOMEM, "cpu backend: cannot list the weights");
    free(params);
    free(matrices);
    free(numel);
    if (st != HYLO_OK) return st;
    m->backend_weights = w;
    m->backend_weights_free = hylo_cpu_weights_free;
    return HYLO_OK;
}

const hylo_ops hylo_cpu_ops = {
    .backend = HYLO_BACKEND_CPU,
    .model_prepare = model_prepare,
    .context_create = context_create,
    .context_free = context_free,
    .linear = hylo_cpu_linear,
    .rmsnorm = hylo_cpu_rmsnorm,
    .rope_rotate_half = hylo_cpu_rope_rotate_half,
    .attention = hylo_cpu_gqa_attention,
    .swiglu_mlp = hylo_cpu_swiglu_mlp,
    .mla_prefill = hylo_cpu_mla_prefill,
    .mla_decode = hylo_cpu_mla_decode,
    .mamba2 = hylo_cpu_mamba2_forward,
    .gdn = hylo_cpu_gdn_forward,
};
