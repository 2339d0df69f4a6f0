/* forward.c: teachers and hybrids from token ids to logits (spec sec. 1-2):
 *   x_0 = embed[tokens]
 *   h   = x + Mixer(RMSNorm_in(x))             for each layer; Mixer is the layer's attention,
 *   x'  = h + MLP(RMSNorm_post(h))             MLA, Mamba2 or Gated DeltaNet
 *   logits = RMSNorm_final(x_L) lm_head^T
 * A prefill (T > 1) runs MLA naively over decompressed K/V and Mamba2 / GDN in their chunked
 * forms; a decode step (T = 1) runs MLA absorbed over the latent cache and the recurrences.  */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "layers/gdn.h"
#include "layers/layers.h"
#include "layers/mamba2.h"
#include "layers/mla.h"
#include "model/model.h"

/* Scratch activations of one forward call. */
typedef struct {
    float *x;    /* [T, D]      residual stream                 */
    float *xn;   /* [T, D]      normalized input of a sublayer  */
    float *q;    /* [T, H, hd]  queries                         */
    float *att;  /* [T, H, hd]  attention output per head       */
    float *y;    /* [T, D]      sublayer output                 */
} activations;

static void free_activations(activations *a)
{
    free(a->x);
    free(a->xn);
    free(a->q);
    free(a->att);
    free(a->y);
}

static hylo_status alloc_activations(activations *a, const hylo_config *cfg, int64_t T,
                                     hylo_error *err)
{
    size_t td = (size_t)(T * cfg->hidden_size), tq = (size_t)(T * cfg->num_heads * cfg->head_dim);
    a->x = malloc(td * sizeof(float));
    a->xn = malloc(td * sizeof(float));
    a->q = malloc(tq * sizeof(float));
    a->att = malloc(tq * sizeof(float));
    a->y = malloc(td * sizeof(float));
    if (a->x && a->xn && a->q && a->att && a->y) return HYLO_OK;
    free_activations(a);
    return hylo_error_set(err, HYLO_ERR_NOMEM, "cannot allocate activations for %lld tokens",
                          (long long)T);
}

static void add_into(float *x, const float *y, int64_t n)
{
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* Self-attention of layer `li` for T tokens at positions pos0 .. pos0+T-1; appends their keys
 * and values to the layer's cache.
 *   q = xn Wq^T + bq ; k = xn Wk^T + bk ; v = xn Wv^T + bv
 *   q, k <- RMSNorm_head(q), RMSNorm_head(k)          (Qwen3 only)
 *   q, k <- RoPE(q, p), RoPE(k, p)                     (rotate-half pairs)
 *   y = Attention(q, K_cache, V_cache) Wo^T + bo                                          */
static hylo_status attention_block(const hylo_model *m, hylo_state *s, int64_t li,
                                   activations *a, int64_t T, const hylo_tracer *tr,
                                   hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const hylo_attention_weights *w = &m->layers[li].attn;
    const int64_t D = c->hidden_size, H = c->num_heads, Hkv = c->num_kv_heads, hd = c->head_dim;
    const int64_t pos0 = s->length;
    hylo_layer_state *ls = &s->layers[li];
    float *k_new = ls->k + pos0 * Hkv * hd; /* [T, Hkv, hd] inside the cache */
    float *v_new = ls->v + pos0 * Hkv * hd;
    hylo_ref_linear(a->xn, w->wq, w->bq, a->q, T, D, H * hd);
    hylo_ref_linear(a->xn, w->wk, w->bk, k_new, T, D, Hkv * hd);
    hylo_ref_linear(a->xn, w->wv, w->bv, v_new, T, D, Hkv * hd);
    if (c->qk_norm) {
        hylo_ref_rmsnorm(a->q, w->q_norm, a->q, T * H, hd, c->rms_norm_eps);
        hylo_ref_rmsnorm(k_new, w->k_norm, k_new, T * Hkv, hd, c->rms_norm_eps);
    }
    for (int64_t t = 0; t < T; t++) {
        hylo_ref_rope_rotate_half(a->q + t * H * hd, H, hd, pos0 + t, m->rope_inv_freq,
                                  m->rope_scale);
        hylo_ref_rope_rotate_half(k_new + t * Hkv * hd, Hkv, hd, pos0 + t, m->rope_inv_freq,
                                  m->rope_scale);
    }
    hylo_status st = hylo_ref_attention(a->q, ls->k, ls->v, a->att, T, pos0 + T, H, Hkv, hd,
                                        1.0 / sqrt((double)hd), err);
    if (st != HYLO_OK) return st;
    /* trace: attn.q [T, H, hd] and attn.k [T, Hkv, hd] after norms and RoPE, attn.v, and the
     * attention output attn.o [T, H, hd] before o_proj */
    hylo_trace_emit(tr, "attn.q", a->q, 3, (int64_t[]){T, H, hd});
    hylo_trace_emit(tr, "attn.k", k_new, 3, (int64_t[]){T, Hkv, hd});
    hylo_trace_emit(tr, "attn.v", v_new, 3, (int64_t[]){T, Hkv, hd});
    hylo_trace_emit(tr, "attn.o", a->att, 3, (int64_t[]){T, H, hd});
    hylo_ref_linear(a->att, w->wo, w->bo, a->y, T, H * hd, D);
    return HYLO_OK;
}

/* The layer's token mixer on a->xn [T, D] into a->y [T, D], extending its cache or state. */
static hylo_status mixer_block(const hylo_model *m, hylo_state *s, int64_t li, activations *a,
                               int64_t T, const hylo_tracer *tr, hylo_error *err)
{
    hylo_layer_state *ls = &s->layers[li];
    const hylo_scan scan = T > 1 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
    switch (m->layers[li].mixer) {
    case HYLO_MIXER_ATTENTION: return attention_block(m, s, li, a, T, tr, err);
    case HYLO_MIXER_MLA: {
        hylo_mla_layer mla = hylo_model_mla_layer(m, li);
        return T > 1 ? hylo_ref_mla_forward(&mla, &ls->mla, s->length, a->xn, T, a->y, tr, err)
                     : hylo_ref_mla_forward_absorbed(&mla, &ls->mla, s->length, a->xn, T, a->y, tr,
                                                     err);
    }
    case HYLO_MIXER_MAMBA2: {
        hylo_mamba2_dims d = hylo_mamba2_dims_of(&m->cfg, &m->hybrid);
        return hylo_ref_mamba2_forward(&d, &m->layers[li].mamba2, &ls->mamba2, a->xn, T, a->y,
                                       scan, tr, err);
    }
    case HYLO_MIXER_GDN: {
        hylo_gdn_dims d = hylo_gdn_dims_of(&m->cfg, &m->hybrid);
        return hylo_ref_gdn_forward(&d, &m->layers[li].gdn, &ls->gdn, a->xn, T, a->y, scan, tr,
                                    err);
    }
    }
    return hylo_error_set(err, HYLO_ERR_USAGE, "layer %lld has an unknown mixer", (long long)li);
}

/* a->x <- layer li of a->x; the mixer output before the residual goes to mixer_out if given.
 * Trace (under layers.{li}): input_norm, the mixer's own tensors, mixer.out, post_norm,
 * mlp.out, out, all [T, D] but the mixer's. */
static hylo_status decoder_layer(const hylo_model *m, hylo_state *s, int64_t li,
                                 activations *a, int64_t T, float *mixer_out,
                                 const hylo_tracer *root, hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const hylo_layer_weights *w = &m->layers[li];
    const int64_t D = c->hidden_size;
    const int64_t shape[2] = {T, D};
    const hylo_tracer tr = hylo_tracer_child(root, "layers.%lld", (long long)li);
    hylo_ref_rmsnorm(a->x, w->input_norm, a->xn, T, D, c->rms_norm_eps);
    hylo_trace_emit(&tr, "input_norm", a->xn, 2, shape);
    hylo_status st = mixer_block(m, s, li, a, T, &tr, err);
    if (st != HYLO_OK) return st;
    hylo_trace_emit(&tr, "mixer.out", a->y, 2, shape);
    if (mixer_out) memcpy(mixer_out, a->y, (size_t)(T * D) * sizeof(float));
    add_into(a->x, a->y, T * D);
    hylo_ref_rmsnorm(a->x, w->post_norm, a->xn, T, D, c->rms_norm_eps);
    hylo_trace_emit(&tr, "post_norm", a->xn, 2, shape);
    st = hylo_ref_swiglu_mlp(a->xn, w->w_gate, w->b_gate, w->w_up, w->b_up, w->w_down,
                             w->b_down, a->y, T, D, c->intermediate_size, err);
    if (st != HYLO_OK) return st;
    hylo_trace_emit(&tr, "mlp.out", a->y, 2, shape);
    add_into(a->x, a->y, T * D);
    hylo_trace_emit(&tr, "out", a->x, 2, shape);
    return HYLO_OK;
}

static hylo_status check_tokens(const hylo_config *c, const int32_t *tokens, int64_t T,
                                hylo_error *err)
{
    if (T <= 0)
        return hylo_error_set(err, HYLO_ERR_RANGE, "no tokens to run (T = %lld)", (long long)T);
    for (int64_t t = 0; t < T; t++)
        if (tokens[t] < 0 || tokens[t] >= c->vocab_size)
            return hylo_error_set(err, HYLO_ERR_RANGE,
                                  "token %lld is %d, outside the vocabulary [0, %lld)",
                                  (long long)t, tokens[t], (long long)c->vocab_size);
    return HYLO_OK;
}

/* The shared preamble of the public entry points: the state belongs to the model and its
 * caches have room for T more positions. */
static hylo_status prepare(const hylo_model *m, hylo_state *s, int64_t T, hylo_error *err)
{
    if (s->model != m)
        return hylo_error_set(err, HYLO_ERR_USAGE, "the state was created for another model");
    if (T <= 0)
        return hylo_error_set(err, HYLO_ERR_RANGE, "no tokens to run (T = %lld)", (long long)T);
    return hylo_state_reserve(s, s->length + T, err);
}

hylo_status hylo_embed(const hylo_model *m, const int32_t *tokens, int64_t T, float *x,
                       hylo_error *err)
{
    const int64_t D = m->cfg.hidden_size;
    hylo_status st = check_tokens(&m->cfg, tokens, T, err);
    if (st != HYLO_OK) return st;
    for (int64_t t = 0; t < T; t++)
        memcpy(x + t * D, m->embed + (int64_t)tokens[t] * D, (size_t)D * sizeof(float));
    return HYLO_OK;
}

void hylo_final_norm(const hylo_model *m, const float *x, int64_t T, float *out)
{
    hylo_ref_rmsnorm(x, m->final_norm, out, T, m->cfg.hidden_size, m->cfg.rms_norm_eps);
}

void hylo_lm_head(const hylo_model *m, const float *h, int64_t T, float *logits)
{
    hylo_ref_linear(h, m->lm_head, NULL, logits, T, m->cfg.hidden_size, m->cfg.vocab_size);
}

hylo_status hylo_layer_forward(const hylo_model *m, hylo_state *s, int64_t layer,
                               const float *x, int64_t T, float *mixer_out, float *out,
                               hylo_error *err)
{
    if (layer < 0 || layer >= m->cfg.num_layers)
        return hylo_error_set(err, HYLO_ERR_RANGE, "layer %lld outside [0, %lld)",
                              (long long)layer, (long long)m->cfg.num_layers);
    hylo_status st = prepare(m, s, T, err);
    activations a = {0};
    if (st == HYLO_OK) st = alloc_activations(&a, &m->cfg, T, err);
    if (st != HYLO_OK) return st;
    memcpy(a.x, x, (size_t)(T * m->cfg.hidden_size) * sizeof(float));
    const hylo_tracer root = {s->trace, ""};
    const hylo_tracer tr = hylo_tracer_child(&root, "pos%lld", (long long)s->length);
    st = decoder_layer(m, s, layer, &a, T, mixer_out, &tr, err);
    if (st == HYLO_OK) memcpy(out, a.x, (size_t)(T * m->cfg.hidden_size) * sizeof(float));
    free_activations(&a);
    return st;
}

hylo_status hylo_forward(const hylo_model *m, hylo_state *s, const int32_t *tokens, int64_t T,
                         hylo_logits_mode mode, float *logits, hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const int64_t D = c->hidden_size;
    hylo_status st = check_tokens(c, tokens, T, err);
    if (st == HYLO_OK) st = prepare(m, s, T, err);
    activations a = {0};
    if (st == HYLO_OK) st = alloc_activations(&a, c, T, err);
    if (st != HYLO_OK) return st;
    /* trace names: pos{P}.embed [T, D], the layers, pos{P}.norm.out [rows, D], pos{P}.logits */
    const hylo_tracer root = {s->trace, ""};
    const hylo_tracer tr = hylo_tracer_child(&root, "pos%lld", (long long)s->length);
    st = hylo_embed(m, tokens, T, a.x, err);
    hylo_trace_emit(&tr, "embed", a.x, 2, (int64_t[]){T, D});
    for (int64_t li = 0; li < c->num_layers && st == HYLO_OK; li++)
        st = decoder_layer(m, s, li, &a, T, NULL, &tr, err);
    if (st == HYLO_OK) {
        /* Only the rows whose logits are wanted go through the final norm and LM head. */
        int64_t first = mode == HYLO_LOGITS_ALL ? 0 : T - 1, rows = T - first;
        if (mode != HYLO_LOGITS_NONE) {
            hylo_final_norm(m, a.x + first * D, rows, a.xn);
            hylo_lm_head(m, a.xn, rows, logits);
            hylo_trace_emit(&tr, "norm.out", a.xn, 2, (int64_t[]){rows, D});
            hylo_trace_emit(&tr, "logits", logits, 2, (int64_t[]){rows, c->vocab_size});
        }
        s->length += T; /* only a complete forward extends the sequence */
    }
    free_activations(&a);
    return st;
}
