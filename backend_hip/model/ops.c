/* ops.c: the HIP backend's table for the one model definition of ref/model/forward.c: every
 * weight and rope table uploaded once when a model selects the backend, one context (stream,
 * BLAS handle, workspaces) per state, and device memory for the activations, caches and
 * recurrent states that forward.c and state.c allocate through the table. */
#include <stdlib.h>

#include "layers/hip_layers.h"

/* Once per model: every parameter (matrices also in bf16 with bf16 weights), the LM head and
 * the rope frequencies. Switching a model to bf16 later adds the bf16 copies. */
static hylo_status model_prepare(hylo_model *m, hylo_error *err)
{
    const bool bf16 = m->weights == HYLO_WEIGHTS_BF16;
    if (m->device_weights)
        return bf16 ? hylo_hip_weights_add_bf16(m->device_weights, err) : HYLO_OK;
    hylo_param *params = NULL;
    size_t count = 0;
    hylo_status st = hylo_model_params(&m->cfg, &m->hybrid, &params, &count, err);
    if (st != HYLO_OK) return st;
    hylo_hip_array *arrays = calloc(count + 3, sizeof *arrays);
    if (!arrays) {
        free(params);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "hip backend: cannot list the weights");
    }
    size_t n = 0;
    for (size_t i = 0; i < count; i++)
        arrays[n++] = (hylo_hip_array){*hylo_param_slot(m, &params[i]),
                                       hylo_param_numel(&params[i]), sizeof(float),
                                       params[i].kind == HYLO_PARAM_LINEAR && params[i].ndim == 2};
    /* the LM head (the embedding when tied: uploaded once, with a bf16 copy) */
    arrays[n++] = (hylo_hip_array){m->lm_head, m->cfg.vocab_size * m->cfg.hidden_size,
                                   sizeof(float), true};
    arrays[n++] = (hylo_hip_array){m->rope_inv_freq, m->cfg.head_dim / 2, sizeof(double), false};
    arrays[n++] = (hylo_hip_array){m->mla_inv_freq, m->hybrid.mla.rope / 2, sizeof(double), false};
    hylo_hip_weights *w = NULL;
    st = hylo_hip_weights_new(arrays, n, bf16, &w, err);
    free(arrays);
    free(params);
    if (st != HYLO_OK) return st;
    m->device_weights = w;
    m->device_weights_free = hylo_hip_weights_free;
    return HYLO_OK;
}

static hylo_status context_create(const hylo_model *m, void **ctx, hylo_error *err)
{
    *ctx = NULL;
    if (!m->device_weights)
        return hylo_error_set(err, HYLO_ERR_USAGE, "hip backend: the model's weights are not "
                              "uploaded (select the backend with hylo_model_set_backend)");
    hylo_hip_ctx *c = NULL;
    hylo_status st = hylo_hip_context_new(m->device_weights, m->weights == HYLO_WEIGHTS_BF16, &c,
                                          err);
    *ctx = c;
    return st;
}

const hylo_ops hylo_hip_ops = {
    .backend = HYLO_BACKEND_HIP,
    .model_prepare = model_prepare,
    .context_create = context_create,
    .context_free = hylo_hip_context_free,
    .linear = hylo_hip_linear,
    .rmsnorm = hylo_hip_rmsnorm,
    .rope_rotate_half = hylo_hip_rope_rotate_half,
    .attention = hylo_hip_attention,
    .swiglu_mlp = hylo_hip_swiglu_mlp,
    .mla_prefill = hylo_hip_mla_prefill,
    .mla_decode = hylo_hip_mla_decode,
    .mamba2 = hylo_hip_mamba2_forward,
    .gdn = hylo_hip_gdn_forward,
    .mem_alloc = hylo_hip_alloc,
    .mem_free = hylo_hip_release,
    .mem_copy = hylo_hip_copy,
    .cache_value_bytes = hylo_hip_cache_value_bytes,
    .cache_store = hylo_hip_cache_store,
    .add = hylo_hip_add,
    .linears = hylo_hip_linears,
    .add_rmsnorm = hylo_hip_add_rmsnorm,
    .rope_store = hylo_hip_rope_store,
    .embed = hylo_hip_embed,
    .step_begin = hylo_hip_step_begin,
    .step_end = hylo_hip_step_end,
    .finish = hylo_hip_finish,
};
