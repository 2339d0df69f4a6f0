/* params.c: the parameter table of teachers (HF Llama / Qwen2 / Qwen3 names) and hybrids (the
 * mixer parameters of spec sec. 3-5 under model.layers.{i}.mla / .mamba / .gdn), and the sizes
 * each mixer's layer function takes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#include "model/model.h"

typedef struct {
    hylo_param *items;
    size_t count, capacity;
    hylo_status status;
    int64_t layer;       /* the decoder layer being listed, -1 for model-level tensors */
    hylo_mixer mixer;    /* its mixer                                                  */
    bool is_mlp;
} param_list;

/* Appends "model.layers.{layer}.{stem}" (or `stem` itself at model level) of `shape`. */
static void add(param_list *list, hylo_param_kind kind, size_t slot, const char *stem, int ndim,
                int64_t d0, int64_t d1, int64_t d2)
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
    *p = (hylo_param){.ndim = ndim, .shape = {d0, d1, d2}, .kind = kind,
                      .fan_in = ndim == 3 ? d2 : ndim == 2 ? d1 : 0, .mixer = list->mixer,
                      .is_mlp = list->is_mlp, .layer = list->layer, .slot = slot};
    if (list->layer < 0) snprintf(p->name, sizeof p->name, "%s", stem);
    else snprintf(p->name, sizeof p->name, "model.layers.%lld.%s", (long long)list->layer, stem);
}

#define SLOT(field) offsetof(hylo_layer_weights, field)
#define MODEL_SLOT(field) offsetof(struct hylo_model, field)

static void vector(param_list *l, hylo_param_kind kind, size_t slot, const char *stem, int64_t n)
{
    add(l, kind, slot, stem, 1, n, 0, 0);
}

static void matrix(param_list *l, hylo_param_kind kind, size_t slot, const char *stem,
                   int64_t rows, int64_t cols)
{
    add(l, kind, slot, stem, 2, rows, cols, 0);
}

/* A depthwise conv1d weight [channels, 1, K]. */
static void conv(param_list *l, size_t slot, const char *stem, int64_t channels, int64_t K)
{
    add(l, HYLO_PARAM_CONV, slot, stem, 3, channels, 1, K);
}

/* A conv bias [channels], drawn with the fan-in K of its weight. */
static void conv_bias(param_list *l, size_t slot, const char *stem, int64_t channels, int64_t K)
{
    vector(l, HYLO_PARAM_CONV, slot, stem, channels);
    if (l->status == HYLO_OK) l->items[l->count - 1].fan_in = K;
}

/* A linear map [out, in] "{stem}.weight" and, when `bias`, its [out] "{stem}.bias". */
static void linear(param_list *l, size_t w_slot, size_t b_slot, bool bias, int64_t out,
                   int64_t in, const char *stem)
{
    char name[96];
    snprintf(name, sizeof name, "%s.weight", stem);
    matrix(l, HYLO_PARAM_LINEAR, w_slot, name, out, in);
    if (!bias) return;
    snprintf(name, sizeof name, "%s.bias", stem);
    vector(l, HYLO_PARAM_BIAS, b_slot, name, out);
}

static void attention_params(param_list *l, const hylo_config *c)
{
    const int64_t D = c->hidden_size, q = c->num_heads * c->head_dim;
    const int64_t kv = c->num_kv_heads * c->head_dim;
    linear(l, SLOT(attn.wq), SLOT(attn.bq), c->qkv_bias, q, D, "self_attn.q_proj");
    linear(l, SLOT(attn.wk), SLOT(attn.bk), c->qkv_bias, kv, D, "self_attn.k_proj");
    linear(l, SLOT(attn.wv), SLOT(attn.bv), c->qkv_bias, kv, D, "self_attn.v_proj");
    linear(l, SLOT(attn.wo), SLOT(attn.bo), c->o_bias, D, q, "self_attn.o_proj");
    if (!c->qk_norm) return;
    vector(l, HYLO_PARAM_NORM, SLOT(attn.q_norm), "self_attn.q_norm.weight", c->head_dim);
    vector(l, HYLO_PARAM_NORM, SLOT(attn.k_norm), "self_attn.k_norm.weight", c->head_dim);
}

/* Spec sec. 3: q_a/q_b (or q_proj), kv_a_proj_with_mqa, kv_b_proj, out_proj, optional norms. */
static void mla_params(param_list *l, const hylo_config *c, const hylo_mla_config *m)
{
    const int64_t D = c->hidden_size, H = c->num_heads, qk = m->nope + m->rope;
    if (m->q_rank > 0) {
        matrix(l, HYLO_PARAM_LINEAR, SLOT(mla.q_a), "mla.q_a_proj.weight", m->q_rank, D);
        if (m->q_latent_norm)
            vector(l, HYLO_PARAM_NORM, SLOT(mla.q_a_norm), "mla.q_a_layernorm.weight", m->q_rank);
        matrix(l, HYLO_PARAM_LINEAR, SLOT(mla.q_b), "mla.q_b_proj.weight", H * qk, m->q_rank);
    } else {
        matrix(l, HYLO_PARAM_LINEAR, SLOT(mla.q_proj), "mla.q_proj.weight", H * qk, D);
    }
    matrix(l, HYLO_PARAM_LINEAR, SLOT(mla.kv_a), "mla.kv_a_proj_with_mqa.weight",
           m->kv_rank + m->rope, D);
    if (m->kv_latent_norm)
        vector(l, HYLO_PARAM_NORM, SLOT(mla.kv_a_norm), "mla.kv_a_layernorm.weight", m->kv_rank);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(mla.kv_b), "mla.kv_b_proj.weight",
           m->kv_heads * (m->nope + m->v), m->kv_rank);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(mla.out), "mla.out_proj.weight", D, H * m->v);
    if (!m->qk_norm) return;
    vector(l, HYLO_PARAM_NORM, SLOT(mla.q_norm), "mla.q_norm.weight", qk);
    vector(l, HYLO_PARAM_NORM, SLOT(mla.k_norm), "mla.k_norm.weight", qk);
}

/* Spec sec. 4: in_proj rows [z | x | B | C | dt], the conv over xBC, and the SSM parameters. */
static void mamba2_params(param_list *l, const hylo_config *c, const hylo_hybrid_config *hy)
{
    const hylo_mamba2_dims d = hylo_mamba2_dims_of(c, hy);
    const int64_t d_inner = d.nheads * d.headdim;
    matrix(l, HYLO_PARAM_LINEAR, SLOT(mamba2.in_proj), "mamba.in_proj.weight",
           hylo_mamba2_in_proj_rows(&d), c->hidden_size);
    conv(l, SLOT(mamba2.conv_w), "mamba.conv1d.weight", hylo_mamba2_conv_dim(&d), d.d_conv);
    conv_bias(l, SLOT(mamba2.conv_b), "mamba.conv1d.bias", hylo_mamba2_conv_dim(&d), d.d_conv);
    vector(l, HYLO_PARAM_DT_BIAS, SLOT(mamba2.dt_bias), "mamba.dt_bias", d.nheads);
    vector(l, HYLO_PARAM_A_LOG, SLOT(mamba2.A_log), "mamba.A_log", d.nheads);
    vector(l, HYLO_PARAM_ONES, SLOT(mamba2.D), "mamba.D", d.nheads);
    vector(l, HYLO_PARAM_NORM, SLOT(mamba2.norm), "mamba.norm.weight", d_inner);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(mamba2.out_proj), "mamba.out_proj.weight", c->hidden_size,
           d_inner);
}

/* Spec sec. 5: q/k/v/g/a/b projections, A_log, dt_bias, the three short convs, o_norm, o_proj. */
static void gdn_params(param_list *l, const hylo_config *c, const hylo_gdn_config *g)
{
    const int64_t D = c->hidden_size, qk = g->k_heads * g->head_k, v = g->v_heads * g->head_v;
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.q_proj), "gdn.q_proj.weight", qk, D);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.k_proj), "gdn.k_proj.weight", qk, D);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.v_proj), "gdn.v_proj.weight", v, D);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.g_proj), "gdn.g_proj.weight", v, D);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.a_proj), "gdn.a_proj.weight", g->v_heads, D);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.b_proj), "gdn.b_proj.weight", g->v_heads, D);
    vector(l, HYLO_PARAM_A_LOG, SLOT(gdn.A_log), "gdn.A_log", g->v_heads);
    vector(l, HYLO_PARAM_DT_BIAS, SLOT(gdn.dt_bias), "gdn.dt_bias", g->v_heads);
    conv(l, SLOT(gdn.q_conv), "gdn.q_conv1d.weight", qk, g->d_conv);
    conv(l, SLOT(gdn.k_conv), "gdn.k_conv1d.weight", qk, g->d_conv);
    conv(l, SLOT(gdn.v_conv), "gdn.v_conv1d.weight", v, g->d_conv);
    vector(l, HYLO_PARAM_ONES, SLOT(gdn.o_norm), "gdn.o_norm.weight", g->head_v);
    matrix(l, HYLO_PARAM_LINEAR, SLOT(gdn.o_proj), "gdn.o_proj.weight", D, v);
}

/* The norms and SwiGLU MLP every layer keeps from the teacher (spec sec. 1). */
static void mlp_params(param_list *l, const hylo_config *c)
{
    const int64_t D = c->hidden_size, F = c->intermediate_size;
    linear(l, SLOT(w_gate), SLOT(b_gate), c->mlp_bias, F, D, "mlp.gate_proj");
    linear(l, SLOT(w_up), SLOT(b_up), c->mlp_bias, F, D, "mlp.up_proj");
    linear(l, SLOT(w_down), SLOT(b_down), c->mlp_bias, D, F, "mlp.down_proj");
}

static void layer_params(param_list *l, const hylo_config *c, const hylo_hybrid_config *hy,
                         int64_t i)
{
    l->layer = i;
    l->mixer = hy ? hy->mixers[i] : HYLO_MIXER_ATTENTION;
    l->is_mlp = true;
    vector(l, HYLO_PARAM_NORM, SLOT(input_norm), "input_layernorm.weight", c->hidden_size);
    l->is_mlp = false;
    switch (l->mixer) {
    case HYLO_MIXER_ATTENTION: attention_params(l, c); break;
    case HYLO_MIXER_MLA: mla_params(l, c, &hy->mla); break;
    case HYLO_MIXER_MAMBA2: mamba2_params(l, c, hy); break;
    case HYLO_MIXER_GDN: gdn_params(l, c, &hy->gdn); break;
    }
    l->is_mlp = true;
    vector(l, HYLO_PARAM_NORM, SLOT(post_norm), "post_attention_layernorm.weight", c->hidden_size);
    mlp_params(l, c);
}

hylo_status hylo_model_params(const hylo_config *cfg, const hylo_hybrid_config *hybrid,
                              hylo_param **out, size_t *count, hylo_error *err)
{
    const int64_t D = cfg->hidden_size, V = cfg->vocab_size;
    param_list l = {.layer = -1, .mixer = HYLO_MIXER_ATTENTION};
    matrix(&l, HYLO_PARAM_EMBEDDING, MODEL_SLOT(embed), "model.embed_tokens.weight", V, D);
    for (int64_t i = 0; i < cfg->num_layers; i++) layer_params(&l, cfg, hybrid, i);
    l.layer = -1;
    l.mixer = HYLO_MIXER_ATTENTION;
    l.is_mlp = false;
    vector(&l, HYLO_PARAM_NORM, MODEL_SLOT(final_norm), "model.norm.weight", D);
    /* Untied models carry lm_head; hylo writes hybrids untied (spec sec. 7 Decision). */
    if (!cfg->tie_word_embeddings)
        matrix(&l, HYLO_PARAM_EMBEDDING, MODEL_SLOT(lm_head), "lm_head.weight", V, D);
    if (l.status != HYLO_OK) {
        free(l.items);
        return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate the parameter table");
    }
    *out = l.items;
    *count = l.count;
    return HYLO_OK;
}

int64_t hylo_param_numel(const hylo_param *param)
{
    int64_t n = 1;
    for (int i = 0; i < param->ndim; i++) n *= param->shape[i];
    return n;
}

const float **hylo_param_slot(hylo_model *model, const hylo_param *param)
{
    char *base = param->layer < 0 ? (char *)model : (char *)&model->layers[param->layer];
    return (const float **)(void *)(base + param->slot);
}

hylo_mla_dims hylo_mla_dims_of(const hylo_config *cfg, const hylo_hybrid_config *hy)
{
    const hylo_mla_config *m = &hy->mla;
    return (hylo_mla_dims){cfg->hidden_size, cfg->num_heads, m->kv_heads, m->q_rank, m->kv_rank,
                           m->nope, m->rope, m->v, cfg->rms_norm_eps};
}

hylo_mamba2_dims hylo_mamba2_dims_of(const hylo_config *cfg, const hylo_hybrid_config *hy)
{
    const hylo_mamba2_config *m = &hy->mamba2;
    return (hylo_mamba2_dims){cfg->hidden_size, m->nheads, m->headdim, m->d_state, m->x_heads,
                              m->b_groups, m->c_groups, m->norm_groups, m->d_conv, m->chunk,
                              m->norm_eps};
}

hylo_gdn_dims hylo_gdn_dims_of(const hylo_config *cfg, const hylo_hybrid_config *hy)
{
    const hylo_gdn_config *g = &hy->gdn;
    return (hylo_gdn_dims){cfg->hidden_size, g->k_heads, g->v_heads, g->head_k, g->head_v,
                           g->d_conv, g->chunk, g->norm_eps};
}
