/* params.c: the parameter table of Llama / Qwen2 / Qwen3 teachers with HF tensor names. */
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"

typedef struct {
    hylo_param *items;
    size_t count, capacity;
    hylo_status status;
} param_list;

static void add(param_list *list, hylo_param_kind kind, int64_t layer, size_t slot, int64_t d0,
                int64_t d1, const char *name)
{
    if (list->status != HYLO_OK) return;
    if (list->count == list->capacity) {
        size_t cap = list->capacity ? 2 * list->capacity : 64;
        hylo_param *items = realloc(list->items, cap * sizeof *items);
        if (!items) {
            list->status = HYLO_ERR_NOMEM;
            return;
        }
        list->items = items;
        list->capacity = cap;
    }
    hylo_param *p = &list->items[list->count++];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = d1 > 0 ? 2 : 1;
    p->shape[0] = d0;
    p->shape[1] = d1 > 0 ? d1 : 0;
    p->kind = kind;
    p->layer = layer;
    p->slot = slot;
}

#define SLOT(field) offsetof(hylo_layer_weights, field)
#define MODEL_SLOT(field) offsetof(struct hylo_model, field)

/* A tensor of decoder layer `layer`: "model.layers.{layer}.{stem}". */
static void add_layer(param_list *list, hylo_param_kind kind, int64_t layer, size_t slot,
                      int64_t d0, int64_t d1, const char *stem)
{
    char name[sizeof ((hylo_param *)0)->name];
    snprintf(name, sizeof name, "model.layers.%lld.%s", (long long)layer, stem);
    add(list, kind, layer, slot, d0, d1, name);
}

/* A linear map [out, in] "{stem}.weight" and, when `bias`, its [out] "{stem}.bias". */
static void add_linear(param_list *list, int64_t layer, size_t w_slot, size_t b_slot, bool bias,
                       int64_t out, int64_t in, const char *stem)
{
    char name[64];
    snprintf(name, sizeof name, "%s.weight", stem);
    add_layer(list, HYLO_PARAM_LINEAR, layer, w_slot, out, in, name);
    if (!bias) return;
    snprintf(name, sizeof name, "%s.bias", stem);
    add_layer(list, HYLO_PARAM_BIAS, layer, b_slot, out, 0, name);
}

hylo_status hylo_teacher_params(const hylo_config *cfg, hylo_param **out, size_t *count,
                                hylo_error *err)
{
    const int64_t D = cfg->hidden_size, F = cfg->intermediate_size, V = cfg->vocab_size;
    const int64_t q_dim = cfg->num_heads * cfg->head_dim;
    const int64_t kv_dim = cfg->num_kv_heads * cfg->head_dim;
    param_list list = {0};
    add(&list, HYLO_PARAM_EMBEDDING, -1, MODEL_SLOT(embed), V, D, "model.embed_tokens.weight");
    for (int64_t i = 0; i < cfg->num_layers; i++) {
        add_layer(&list, HYLO_PARAM_NORM, i, SLOT(input_norm), D, 0, "input_layernorm.weight");
        add_linear(&list, i, SLOT(wq), SLOT(bq), cfg->qkv_bias, q_dim, D, "self_attn.q_proj");
        add_linear(&list, i, SLOT(wk), SLOT(bk), cfg->qkv_bias, kv_dim, D, "self_attn.k_proj");
        add_linear(&list, i, SLOT(wv), SLOT(bv), cfg->qkv_bias, kv_dim, D, "self_attn.v_proj");
        add_linear(&list, i, SLOT(wo), SLOT(bo), cfg->o_bias, D, q_dim, "self_attn.o_proj");
        if (cfg->qk_norm) {
            add_layer(&list, HYLO_PARAM_NORM, i, SLOT(q_norm), cfg->head_dim, 0,
                      "self_attn.q_norm.weight");
            add_layer(&list, HYLO_PARAM_NORM, i, SLOT(k_norm), cfg->head_dim, 0,
                      "self_attn.k_norm.weight");
        }
        add_layer(&list, HYLO_PARAM_NORM, i, SLOT(post_norm), D, 0,
                  "post_attention_layernorm.weight");
        add_linear(&list, i, SLOT(w_gate), SLOT(b_gate), cfg->mlp_bias, F, D, "mlp.gate_proj");
        add_linear(&list, i, SLOT(w_up), SLOT(b_up), cfg->mlp_bias, F, D, "mlp.up_proj");
        add_linear(&list, i, SLOT(w_down), SLOT(b_down), cfg->mlp_bias, D, F, "mlp.down_proj");
    }
    add(&list, HYLO_PARAM_NORM, -1, MODEL_SLOT(final_norm), D, 0, "model.norm.weight");
    if (!cfg->tie_word_embeddings)
        add(&list, HYLO_PARAM_EMBEDDING, -1, MODEL_SLOT(lm_head), V, D, "lm_head.weight");
    if (list.status != HYLO_OK) {
        free(list.items);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate the parameter table");
    }
    *out = list.items;
    *count = list.count;
    return HYLO_OK;
}

const float **hylo_param_slot(hylo_model *model, const hylo_param *param)
{
    char *base = param->layer < 0 ? (char *)model : (char *)&model->layers[param->layer];
    return (const float **)(void *)(base + param->slot);
}

int64_t hylo_param_numel(const hylo_param *param)
{
    return param->shape[0] * (param->ndim == 2 ? param->shape[1] : 1);
}
