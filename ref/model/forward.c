/* forward.c: teachers and hybrids from token ids to logits (spec sec. 1-2):
 *   x_0 = embed[tokens]
 *   h   = x + Mixer(RMSNorm_in(x))             for each layer; Mixer is the layer's attention,
 *   x'  = h + MLP(RMSNorm_post(h))             MLA, Mamba2 or Gated DeltaNet
 *   logits = RMSNorm_final(x_L) lm_head^T
 * A prefill (T > 1) runs MLA naively over decompressed K/V and Mamba2 / GDN in their chunked
 * forms; a decode step (T = 1) runs MLA absorbed over the latent cache and the recurrences.  */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "layers/gdn.h"
#include "layers/layers.h"
#include "layers/mamba2.h"
#include "layers/mla.h"
#include "model/model.h"

/* ------------------------------------------------------------------------------------------ */
/* The reference backend: every op is its ref/layers function (there is no context).          */
/* ------------------------------------------------------------------------------------------ */

static void ref_linear(void *ctx, const float *x, const float *W, const float *b, float *y,
                       int64_t T, int64_t in, int64_t out)
{
    (void)ctx;
    hylo_ref_linear(x, W, b, y, T, in, out);
}

static void ref_rmsnorm(void *ctx, const float *x, const float *w, float *y, int64_t rows,
                        int64_t n, double eps)
{
    (void)ctx;
    hylo_ref_rmsnorm(x, w, y, rows, n, eps);
}

static void ref_rope_rotate_half(void *ctx, float *x, int64_t T, int64_t heads, int64_t dim,
                                 int64_t pos0, const double *inv_freq, double scale)
{
    (void)ctx;
    for (int64_t t = 0; t < T; t++)
        hylo_ref_rope_rotate_half(x + t * heads * dim, heads, dim, pos0 + t, inv_freq, scale);
}

static hylo_status ref_attention(void *ctx, const float *q, const float *k_cache,
                                 const float *v_cache, float *out, int64_t T, int64_t len,
                                 int64_t H, int64_t Hkv, int64_t hd, double scale,
                                 hylo_error *err)
{
    (void)ctx;
    return hylo_ref_attention(q, k_cache, v_cache, out, T, len, H, Hkv, hd, scale, err);
}

static hylo_status ref_swiglu_mlp(void *ctx, const float *x, const float *Wg, const float *bg,
                                  const float *Wu, const float *bu, const float *Wd,
                                  const float *bd, float *y, int64_t T, int64_t D, int64_t F,
                                  hylo_error *err)
{
    (void)ctx;
    return hylo_ref_swiglu_mlp(x, Wg, bg, Wu, bu, Wd, bd, y, T, D, F, err);
}

static hylo_status ref_mla_prefill(void *ctx, const hylo_mla_layer *layer,
                                   hylo_mla_cache *cache, int64_t pos0, const float *x,
                                   int64_t T, float *y, const hylo_tracer *tr, hylo_error *err)
{
    (void)ctx;
    return hylo_ref_mla_forward(layer, cache, pos0, x, T, y, tr, err);
}

static hylo_status ref_mla_decode(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                  int64_t pos0, const float *x, int64_t T, float *y,
                                  const hylo_tracer *tr, hylo_error *err)
{
    (void)ctx;
    return hylo_ref_mla_forward_absorbed(layer, cache, pos0, x, T, y, tr, err);
}

static hylo_status ref_mamba2(void *ctx, const hylo_mamba2_dims *d, const hylo_mamba2_weights *w,
                              hylo_mamba2_state *state, const float *x, int64_t T, float *y,
                              hylo_scan scan, const hylo_tracer *tr, hylo_error *err)
{
    (void)ctx;
    return hylo_ref_mamba2_forward(d, w, state, x, T, y, scan, tr, err);
}

static hylo_status ref_gdn(void *ctx, const hylo_gdn_dims *d, const hylo_gdn_weights *w,
                           hylo_gdn_state *state, const float *x, int64_t T, float *y,
                           hylo_scan scan, const hylo_tracer *tr, hylo_error *err)
{
    (void)ctx;
    return hylo_ref_gdn_forward(d, w, state, x, T, y, scan, tr, err);
}

const hylo_ops hylo_ref_ops = {
    .backend = HYLO_BACKEND_REF,
    .linear = ref_linear,
    .rmsnorm = ref_rmsnorm,
    .rope_rotate_half = ref_rope_rotate_half,
    .attention = ref_attention,
    .swiglu_mlp = ref_swiglu_mlp,
    .mla_prefill = ref_mla_prefill,
    .mla_decode = ref_mla_decode,
    .mamba2 = ref_mamba2,
    .gdn = ref_gdn,
};

/* ------------------------------------------------------------------------------------------ */
/* The model                                                                                   */
/* ------------------------------------------------------------------------------------------ */

/* Scratch activations of one forward call: the state's own block for a decode step (T = 1),
 * a block of the call's for a prefill. They live where the state's backend computes: in
 * device memory for a device-resident backend, which also computes the logits there. */
typedef struct {
    float *x;      /* [T, D]      residual stream                 */
    float *xn;     /* [T, D]      normalized input of a sublayer  */
    float *q;      /* [T, H, hd]  queries                         */
    float *k, *v;  /* [T, Hkv, hd] keys and values of the tokens  */
    float *att;    /* [T, H, hd]  attention output per head       */
    float *y;      /* [T, D]      sublayer output                 */
    float *logits; /* [rows, V]   device backends only, else NULL */
    float *owned;  /* the block when the call allocated it        */
} activations;

int64_t hylo_activation_floats(const hylo_config *cfg, int64_t T)
{
    return T * (3 * cfg->hidden_size + 2 * cfg->num_heads * cfg->head_dim +
                2 * cfg->num_kv_heads * cfg->head_dim);
}

static bool on_device(const hylo_state *s)
{
    return s->ops->mem_alloc != NULL;
}

/* `rows` logits rows are carved after the activations on a device backend (the state's decode
 * block has room for one). */
static hylo_status alloc_activations(activations *a, const hylo_state *s, int64_t T,
                                     int64_t rows, hylo_error *err)
{
    const hylo_config *cfg = &s->model->cfg;
    const int64_t n = hylo_activation_floats(cfg, T);
    float *block = T == 1 && rows <= 1 ? s->decode_act : NULL;
    if (!block) {
        const size_t bytes =
            (size_t)(n + (on_device(s) ? rows * cfg->vocab_size : 0)) * sizeof(float);
        a->owned = block = on_device(s) ? s->ops->mem_alloc(s->ctx, bytes) : malloc(bytes);
        if (!block)
            return hylo_error_set(err, HYLO_ERR_NOMEM,
                                  "cannot allocate activations for %lld tokens", (long long)T);
    }
    const int64_t td = T * cfg->hidden_size, tq = T * cfg->num_heads * cfg->head_dim;
    const int64_t tkv = T * cfg->num_kv_heads * cfg->head_dim;
    a->x = block;
    a->xn = a->x + td;
    a->y = a->xn + td;
    a->q = a->y + td;
    a->att = a->q + tq;
    a->k = a->att + tq;
    a->v = a->k + tkv;
    a->logits = on_device(s) ? block + n : NULL;
    return HYLO_OK;
}

static void free_activations(const hylo_state *s, activations *a)
{
    if (on_device(s) && a->owned) s->ops->mem_free(s->ctx, a->owned);
    else free(a->owned);
}

static void add_into(const hylo_state *s, float *x, const float *y, int64_t n)
{
    if (s->ops->add) {
        s->ops->add(s->ctx, x, y, n);
        return;
    }
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

/* y_i = x W_i^T + b_i for i < n: the backend's fused entry, or one linear each. */
static void project(const hylo_state *s, const float *x, int64_t T, int64_t in, int n,
                    const float *const *W, const float *const *b, float *const *y,
                    const int64_t *out)
{
    if (s->ops->linears) {
        s->ops->linears(s->ctx, x, T, in, n, W, b, y, out);
        return;
    }
    for (int i = 0; i < n; i++) s->ops->linear(s->ctx, x, W[i], b[i], y[i], T, in, out[i]);
}

/* x [T, D] += y ; xn = RMSNorm(x) w: the backend's fused entry, or the two ops. */
static void add_then_norm(const hylo_state *s, float *x, const float *y, const float *w,
                          float *xn, int64_t T, int64_t D, double eps)
{
    if (s->ops->add_rmsnorm) {
        s->ops->add_rmsnorm(s->ctx, x, y, w, xn, T, D, eps);
        return;
    }
    add_into(s, x, y, T * D);
    s->ops->rmsnorm(s->ctx, x, w, xn, T, D, eps);
}

/* cache rows [row, row + rows) of `width` values <- src [rows, width], in the cache's type. */
static void cache_store(const hylo_state *s, float *cache, int64_t row, int64_t width,
                        const float *src, int64_t rows)
{
    if (s->ops->cache_store) s->ops->cache_store(s->ctx, cache, row, width, src, rows);
    else memcpy(cache + row * width, src, (size_t)(rows * width) * sizeof(float));
}

/* dst <- src, host memory on the caller's side and the state's memory on the other:
 * `to_state` copies into the state's memory, else out of it. */
static hylo_status copy_floats(const hylo_state *s, float *dst, const float *src, int64_t n,
                               bool to_state, hylo_error *err)
{
    if (!on_device(s)) {
        memcpy(dst, src, (size_t)n * sizeof(float));
        return HYLO_OK;
    }
    return s->ops->mem_copy(s->ctx, dst, src, (size_t)n * sizeof(float),
                            to_state ? HYLO_COPY_TO_DEVICE : HYLO_COPY_TO_HOST, err);
}

/* hylo_trace_emit of a tensor in the state's memory (copied to the host first on a device
 * backend, only while tracing; a failed copy is reported by the backend's finish). */
static void emit(const hylo_state *s, const hylo_tracer *tr, const char *name, const float *src,
                 int ndim, const int64_t *shape)
{
    if (!hylo_tracer_on(tr)) return;
    if (!on_device(s)) {
        hylo_trace_emit(tr, name, src, ndim, shape);
        return;
    }
    int64_t n = 1;
    for (int i = 0; i < ndim; i++) n *= shape[i];
    float *host = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    hylo_error ignored = {0};
    if (host && copy_floats(s, host, src, n, false, &ignored) == HYLO_OK)
        hylo_trace_emit(tr, name, host, ndim, shape);
    free(host);
}

/* Self-attention of layer `li` for T tokens at positions pos0 .. pos0+T-1; appends their keys
 * and values to the layer's cache (then attends over it: the new rows as the cache holds them).
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
    const hylo_ops *op = s->ops;
    float *k_new = a->k, *v_new = a->v;
    const float *const W[] = {w->wq, w->wk, w->wv}, *const b[] = {w->bq, w->bk, w->bv};
    float *const qkv[] = {a->q, k_new, v_new};
    const int64_t widths[] = {H * hd, Hkv * hd, Hkv * hd};
    project(s, a->xn, T, D, 3, W, b, qkv, widths);
    if (c->qk_norm) {
        op->rmsnorm(s->ctx, a->q, w->q_norm, a->q, T * H, hd, c->rms_norm_eps);
        op->rmsnorm(s->ctx, k_new, w->k_norm, k_new, T * Hkv, hd, c->rms_norm_eps);
    }
    if (op->rope_store) {
        op->rope_store(s->ctx, a->q, k_new, v_new, T, H, Hkv, hd, pos0, m->rope_inv_freq,
                       m->rope_scale, ls->k, ls->v);
    } else {
        op->rope_rotate_half(s->ctx, a->q, T, H, hd, pos0, m->rope_inv_freq, m->rope_scale);
        op->rope_rotate_half(s->ctx, k_new, T, Hkv, hd, pos0, m->rope_inv_freq, m->rope_scale);
        cache_store(s, ls->k, pos0, Hkv * hd, k_new, T);
        cache_store(s, ls->v, pos0, Hkv * hd, v_new, T);
    }
    hylo_status st = op->attention(s->ctx, a->q, ls->k, ls->v, a->att, T, pos0 + T, H, Hkv, hd,
                                   1.0 / sqrt((double)hd), err);
    if (st != HYLO_OK) return st;
    /* trace: attn.q [T, H, hd] and attn.k [T, Hkv, hd] after norms and RoPE, attn.v, and the
     * attention output attn.o [T, H, hd] before o_proj */
    emit(s, tr, "attn.q", a->q, 3, (int64_t[]){T, H, hd});
    emit(s, tr, "attn.k", k_new, 3, (int64_t[]){T, Hkv, hd});
    emit(s, tr, "attn.v", v_new, 3, (int64_t[]){T, Hkv, hd});
    emit(s, tr, "attn.o", a->att, 3, (int64_t[]){T, H, hd});
    op->linear(s->ctx, a->att, w->wo, w->bo, a->y, T, H * hd, D);
    return HYLO_OK;
}

/* The layer's token mixer on a->xn [T, D] into a->y [T, D], extending its cache or state. */
static hylo_status mixer_block(const hylo_model *m, hylo_state *s, int64_t li, activations *a,
                               int64_t T, const hylo_tracer *tr, hylo_error *err)
{
    hylo_layer_state *ls = &s->layers[li];
    const hylo_ops *op = s->ops;
    const hylo_scan scan = T > 1 ? HYLO_SCAN_CHUNKED : HYLO_SCAN_RECURRENT;
    switch (m->layers[li].mixer) {
    case HYLO_MIXER_ATTENTION: return attention_block(m, s, li, a, T, tr, err);
    case HYLO_MIXER_MLA: {
        hylo_mla_layer mla = hylo_model_mla_layer(m, li);
        return (T > 1 ? op->mla_prefill : op->mla_decode)(s->ctx, &mla, &ls->mla, s->length,
                                                          a->xn, T, a->y, tr, err);
    }
    case HYLO_MIXER_MAMBA2: {
        hylo_mamba2_dims d = hylo_mamba2_dims_of(&m->cfg, &m->hybrid);
        return op->mamba2(s->ctx, &d, &m->layers[li].mamba2, &ls->mamba2, a->xn, T, a->y, scan,
                          tr, err);
    }
    case HYLO_MIXER_GDN: {
        hylo_gdn_dims d = hylo_gdn_dims_of(&m->cfg, &m->hybrid);
        return op->gdn(s->ctx, &d, &m->layers[li].gdn, &ls->gdn, a->xn, T, a->y, scan, tr, err);
    }
    }
    return hylo_error_set(err, HYLO_ERR_USAGE, "layer %lld has an unknown mixer", (long long)li);
}

/* a->x <- layer li of a->x; the mixer output before the residual goes to mixer_out if given.
 * Layers in a row share a step: the residual add that ends layer li also normalizes x into
 * a->xn for layer li + 1 (one op on backends that fuse it), which then starts `normed`.
 * Trace (under layers.{li}): input_norm, the mixer's own tensors, mixer.out, post_norm,
 * mlp.out, out, all [T, D] but the mixer's. */
static hylo_status decoder_layer(const hylo_model *m, hylo_state *s, int64_t li,
                                 activations *a, int64_t T, float *mixer_out, bool normed,
                                 bool next_follows, const hylo_tracer *root, hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const hylo_layer_weights *w = &m->layers[li];
    const int64_t D = c->hidden_size;
    const int64_t shape[2] = {T, D};
    const hylo_tracer tr = hylo_tracer_child(root, "layers.%lld", (long long)li);
    const hylo_ops *op = s->ops;
    if (!normed) op->rmsnorm(s->ctx, a->x, w->input_norm, a->xn, T, D, c->rms_norm_eps);
    emit(s, &tr, "input_norm", a->xn, 2, shape);
    hylo_status st = mixer_block(m, s, li, a, T, &tr, err);
    if (st != HYLO_OK) return st;
    emit(s, &tr, "mixer.out", a->y, 2, shape);
    if (mixer_out) st = copy_floats(s, mixer_out, a->y, T * D, false, err);
    if (st != HYLO_OK) return st;
    add_then_norm(s, a->x, a->y, w->post_norm, a->xn, T, D, c->rms_norm_eps);
    emit(s, &tr, "post_norm", a->xn, 2, shape);
    st = op->swiglu_mlp(s->ctx, a->xn, w->w_gate, w->b_gate, w->w_up, w->b_up, w->w_down,
                        w->b_down, a->y, T, D, c->intermediate_size, err);
    if (st != HYLO_OK) return st;
    emit(s, &tr, "mlp.out", a->y, 2, shape);
    if (next_follows)
        add_then_norm(s, a->x, a->y, m->layers[li + 1].input_norm, a->xn, T, D, c->rms_norm_eps);
    else
        add_into(s, a->x, a->y, T * D);
    emit(s, &tr, "out", a->x, 2, shape);
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

/* The shared preamble of the public entry points: the state belongs to the model, is
 * consistent, and its caches have room for T more positions. */
static hylo_status prepare(const hylo_model *m, hylo_state *s, int64_t T, hylo_error *err)
{
    if (s->model != m)
        return hylo_error_set(err, HYLO_ERR_USAGE, "the state was created for another model");
    if (s->broken[0])
        return hylo_error_set(err, HYLO_ERR_USAGE, "the state is inconsistent since a forward "
                              "failed half-way (%s); create a new one", s->broken);
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

/* st, after the caches or states of `s` may have changed: a failure marks the state
 * inconsistent (see prepare). */
static hylo_status mark_if_failed(hylo_state *s, hylo_status st, const hylo_error *err)
{
    if (st != HYLO_OK && !s->broken[0])
        snprintf(s->broken, sizeof s->broken, "%.*s", (int)sizeof s->broken - 1,
                 err && err->message[0] ? err->message : "?");
    return st;
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
    if (st == HYLO_OK) st = alloc_activations(&a, s, T, 0, err);
    if (st != HYLO_OK) return st;
    const int64_t n = T * m->cfg.hidden_size;
    const hylo_tracer root = {s->trace, ""};
    const hylo_tracer tr = hylo_tracer_child(&root, "pos%lld", (long long)s->length);
    st = copy_floats(s, a.x, x, n, true, err);
    if (st == HYLO_OK)
        st = mark_if_failed(
            s, decoder_layer(m, s, layer, &a, T, mixer_out, false, false, &tr, err), err);
    /* a device backend reports a fault of the layer's queued work at the copy or the finish */
    if (st == HYLO_OK) st = mark_if_failed(s, copy_floats(s, out, a.x, n, false, err), err);
    if (st == HYLO_OK && s->ops->finish) st = mark_if_failed(s, s->ops->finish(s->ctx, err), err);
    free_activations(s, &a);
    return st;
}

/* Every op of a forward call: a->x <- the embedding of the tokens, then the layers, then the
 * logits of `rows` rows from `first` (into a->logits on a device backend, else `logits`). */
static hylo_status run_ops(const hylo_model *m, hylo_state *s, const int32_t *tokens,
                           int64_t T, activations *a, int64_t first, int64_t rows,
                           float *logits, const hylo_tracer *tr, hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const int64_t D = c->hidden_size;
    hylo_status st = HYLO_OK;
    if (s->ops->embed) s->ops->embed(s->ctx, m->embed, tokens, T, D, a->x);
    else st = hylo_embed(m, tokens, T, a->x, err);
    emit(s, tr, "embed", a->x, 2, (int64_t[]){T, D});
    for (int64_t li = 0; li < c->num_layers && st == HYLO_OK; li++)
        st = decoder_layer(m, s, li, a, T, NULL, li > 0, li + 1 < c->num_layers, tr, err);
    if (st == HYLO_OK && rows > 0) {
        s->ops->rmsnorm(s->ctx, a->x + first * D, m->final_norm, a->xn, rows, D, c->rms_norm_eps);
        s->ops->linear(s->ctx, a->xn, m->lm_head, NULL, a->logits ? a->logits : logits, rows, D,
                       c->vocab_size);
    }
    return st;
}

/* The ops of an untraced decode step whose logits are wanted, through the backend's
 * recording of steps when it has one (see hylo_ops.step_begin). */
static hylo_status run_step(const hylo_model *m, hylo_state *s, const int32_t *token,
                            activations *a, float *logits, const hylo_tracer *tr,
                            hylo_error *err)
{
    if (s->ops->step_begin(s->ctx, token[0], s->length, s->capacity)) return HYLO_OK;
    hylo_status st = run_ops(m, s, token, 1, a, 0, 1, logits, tr, err);
    bool again = false;
    const hylo_status end = s->ops->step_end(s->ctx, &again, err);
    if (again) return run_ops(m, s, token, 1, a, 0, 1, logits, tr, err);
    return st != HYLO_OK ? st : end;
}

hylo_status hylo_forward(const hylo_model *m, hylo_state *s, const int32_t *tokens, int64_t T,
                         hylo_logits_mode mode, float *logits, hylo_error *err)
{
    const hylo_config *c = &m->cfg;
    const int64_t D = c->hidden_size;
    hylo_status st = check_tokens(c, tokens, T, err);
    if (st == HYLO_OK) st = prepare(m, s, T, err);
    /* Only the rows whose logits are wanted go through the final norm and LM head. */
    const int64_t first = mode == HYLO_LOGITS_ALL ? 0 : T - 1;
    const int64_t rows = mode == HYLO_LOGITS_NONE ? 0 : T - first;
    activations a = {0};
    if (st == HYLO_OK) st = alloc_activations(&a, s, T, rows, err);
    if (st != HYLO_OK) return st;
    /* trace names: pos{P}.embed [T, D], the layers, pos{P}.norm.out [rows, D], pos{P}.logits */
    const hylo_tracer root = {s->trace, ""};
    const hylo_tracer tr = hylo_tracer_child(&root, "pos%lld", (long long)s->length);
    if (s->ops->step_begin && T == 1 && rows == 1 && !s->trace)
        st = run_step(m, s, tokens, &a, logits, &tr, err);
    else
        st = run_ops(m, s, tokens, T, &a, first, rows, logits, &tr, err);
    if (st == HYLO_OK && rows > 0) {
        if (a.logits) st = copy_floats(s, logits, a.logits, rows * c->vocab_size, false, err);
        emit(s, &tr, "norm.out", a.xn, 2, (int64_t[]){rows, D});
        hylo_trace_emit(&tr, "logits", logits, 2, (int64_t[]){rows, c->vocab_size});
    }
    if (st == HYLO_OK && s->ops->finish) st = s->ops->finish(s->ctx, err);
    /* past the embedding, a failure may have left caches or states ahead of the length */
    mark_if_failed(s, st, err);
    if (st == HYLO_OK) s->length += T; /* only a complete forward extends the sequence */
    free_activations(s, &a);
    return st;
}
