/* mla.hip: Multi-head Latent Attention (spec sec. 3 and 6), the naive form over decompressed
 * K/V for prefills and the absorbed form over the latent cache for decode steps, as
 * ref/layers/mla.c (notation there: H query heads, Hm KV heads, g = h / (H / Hm), dq = nope +
 * rope, dkv = nope + v, W_UK[g] and W_UV[g] the blocks of kv_b). A layer with a k_norm, whose
 * keys are not linear in the latent, and a call of more than one token take the naive form in
 * both entries (the forms agree to rounding). */
#include "core/device.h"
#include "layers/hip_layers.h"

/* x [T, D] -> q [T, H, dq], latent [T, r], k_pe [T, rope] (fp32), nothing rotated yet:
 *   q = q_b(q_a_norm?(q_a x)) or q_proj x ;  q_h <- q_norm?(q_h)
 *   [latent | k_pe] = kv_a x ;  latent <- kv_a_norm?(latent)
 * x's projections (q_a or q_proj, and kv_a as its two blocks of rows) in one matrix-vector
 * launch for one token. */
static void mla_project(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const float *x, int64_t T,
                        float *q_a, float *q, float *latent, float *k_pe)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, dq = d->nope + d->rope, r = d->kv_rank;
    const bool low_rank = d->q_rank > 0;
    const float *const W[3] = {low_rank ? L->w.q_a : L->w.q_proj, L->w.kv_a,
                               L->w.kv_a + r * d->hidden};
    const float *const b[3] = {NULL, NULL, NULL};
    float *const y[3] = {low_rank ? q_a : q, latent, k_pe};
    const int64_t out[3] = {low_rank ? d->q_rank : H * dq, r, d->rope};
    hylo_hip_linears(ctx, x, T, d->hidden, 3, W, b, y, out);
    if (low_rank) {
        if (L->w.q_a_norm) hylo_hip_rmsnorm(ctx, q_a, L->w.q_a_norm, q_a, T, d->q_rank, d->eps);
        hylo_hip_linear(ctx, q_a, L->w.q_b, NULL, q, T, d->q_rank, H * dq);
    }
    if (L->w.q_norm) hylo_hip_rmsnorm(ctx, q, L->w.q_norm, q, T * H, dq, d->eps);
    if (L->w.kv_a_norm) hylo_hip_rmsnorm(ctx, latent, L->w.kv_a_norm, latent, T, r, d->eps);
}

/* RoPE of the tokens at positions pos0 .., their cache rows and, for a decode step in the
 * absorbed form (kv_b given), its queries q_cat [H, r + rope], one launch:
 *   q_pe_h <- RoPE(q_pe_h) ;  k_pe <- RoPE(k_pe) (raw with a k_norm) ;
 *   cache rows pos0 + t <- latent [t], k_pe [t] (the caches' type)
 *   q_cat[h] = [q~_h | q_pe_h] ,  q~_h = W_UK[g]^T q_nope_h :
 *   q~_h[c] = sum_i q_nope_h[i] W_UK[g][i, c] ,  W_UK[g] = kv_b rows g dkv .. + nope [nope, r] */
static void mla_rope_append(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const double *freq,
                            const float *kv_b, hylo_mla_cache *cache, int64_t T, int64_t pos0,
                            float *q, float *latent, float *k_pe, float *q_cat)
{
    const hylo_mla_dims *d = &L->dims;
    hylo_hip_rope_append_args a = {};
    a.q = q + d->nope;
    a.H = d->heads;
    a.q_head = d->nope + d->rope;
    a.k = k_pe;
    a.Hkv = 1;
    a.v = latent;
    a.v_width = d->kv_rank;
    a.k_cache = cache->k_pe;
    a.v_cache = cache->latent;
    a.T = T;
    a.dim = d->rope;
    a.interleaved = true;
    a.raw_k = L->w.k_norm != NULL;
    a.pos0 = hylo_hip_pos_of(ctx, pos0);
    a.inv_freq = freq;
    a.scale = L->rope_scale;
    if (kv_b) {
        a.q_cat = q_cat;
        a.w = kv_b;
        a.q_off = d->nope;
        a.w_cols = d->kv_rank;
        a.w_head = (d->nope + d->v) * d->kv_rank;
        a.w_group = d->heads / d->kv_heads;
    }
    hylo_hip_rope_append(ctx, &a);
}

/* Naive attention over positions 0 .. len - 1 into o [T, H, v]: kv [len, Hm, dkv] =
 * latent kv_b^T (fp32); with a k_norm the keys [len, Hm, dq] are rebuilt,
 *   k(j, g) = k_norm([k_nope(j, g) | k_pe_j]), its rope slice rotated to j;
 * otherwise keys are [k_nope(j, g) | k_pe_j], k_pe read from the cache. A bf16 context
 * attends over bf16 copies (kv and the rebuilt keys rounded into `half`, k_pe the bf16 cache
 * itself), as the teacher's attention does over its bf16 caches: the prefill's products then
 * run on bf16 operands; an fp32 context widens k_pe into keys [len, rope] and stays fp32. */
static void mla_naive(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const double *freq,
                      const hylo_mla_cache *cache, const float *q, int64_t T, int64_t len,
                      float *kv, float *keys, uint16_t *half, float *o)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t Hm = d->kv_heads, nope = d->nope, rope = d->rope, dq = nope + rope;
    const int64_t dkv = nope + d->v;
    if (ctx->steps.recording) {
        /* sized by the context: such a step runs unrecorded */
        hylo_hip_fail(ctx, HYLO_ERR_USAGE, "hip backend: the naive MLA form is not recorded");
        return;
    }
    hylo_hip_linear_cache(ctx, cache->latent, L->w.kv_b, kv, len, d->kv_rank, Hm * dkv);
    hylo_hip_attend_args a = {};
    a.q = q;
    a.na = nope;
    a.nb = rope;
    a.nv = d->v;
    a.ka = kv;
    a.ka_row = a.v_row = Hm * dkv;
    a.ka_head = a.v_head = dkv;
    a.v = kv + nope;
    a.out = o;
    a.T = T;
    a.len = len;
    a.H = d->heads;
    a.Hkv = Hm;
    a.scale = L->softmax_scale;
    if (L->w.k_norm) {
        hylo_hip_copy_rows(ctx, keys, dq, kv, dkv, len * Hm, nope);
        for (int64_t g = 0; g < Hm; g++)
            hylo_hip_cache_read_rows(ctx, keys + g * dq + nope, Hm * dq, cache->k_pe, rope, len,
                                     rope);
        hylo_hip_rmsnorm(ctx, keys, L->w.k_norm, keys, len * Hm, dq, d->eps);
        const hylo_hip_pos zero = {0, NULL};
        hylo_hip_rope_rows(ctx, keys + nope, len, Hm, rope, Hm * dq, dq, zero, freq,
                           L->rope_scale, true);
        a.ka = keys;
        a.ka_row = a.kb_row = Hm * dq;
        a.ka_head = a.kb_head = dq;
        a.kb = keys + nope;
    } else if (ctx->bf16) {
        a.kb = cache->k_pe;
        a.kb_row = rope;
    } else {
        hylo_hip_cache_read_rows(ctx, keys, rope, cache->k_pe, rope, len, rope);
        a.kb = keys;
        a.kb_row = rope;
    }
    if (ctx->bf16) {
        /* the value and key parts in bf16: kv, then the rebuilt keys (k_norm) */
        uint16_t *kv16 = half, *keys16 = half + len * Hm * dkv;
        hylo_hip_to_bf16(ctx, kv, kv16, len * Hm * dkv);
        a.v = kv16 + nope;
        if (L->w.k_norm) {
            hylo_hip_to_bf16(ctx, keys, keys16, len * Hm * dq);
            a.ka = keys16;
            a.kb = keys16 + nope;
        } else {
            a.ka = kv16;
        }
        a.bf16 = true;
    }
    hylo_hip_attend(ctx, &a);
}

/* Absorbed attention of one token over positions 0 .. len - 1 into o [H, v], per KV group
 * g of the head h, from q_cat = [q~ | q_pe] (mla_rope_append):
 *   o~_h = attention of q_cat_h over keys [latent | k_pe], values the latents        [r]
 *   o_h = W_UV[g] o~_h          (merged with the attention's partials, one kernel)    [v]
 * with W_UV[g] = kv_b rows g dkv + nope .. + v, [v, r]. */
static void mla_absorbed(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const float *kv_b,
                         const hylo_mla_cache *cache, const float *q_cat, int64_t len, float *o)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, r = d->kv_rank, rope = d->rope, nope = d->nope;
    hylo_hip_attend_args a = {};
    a.q = q_cat;
    a.na = a.nv = r;
    a.nb = rope;
    a.ka = a.v = cache->latent;
    a.kb = cache->k_pe;
    a.bf16 = ctx->bf16;
    a.ka_row = a.v_row = r;
    a.kb_row = rope;
    a.out = o;
    a.T = 1;
    a.len = len;
    a.H = H;
    a.Hkv = 1;
    a.scale = L->softmax_scale;
    a.wo = kv_b + nope * r;
    a.wo_rows = d->v;
    a.wo_row = r;
    a.wo_head = (nope + d->v) * r;
    a.wo_group = H / d->kv_heads;
    hylo_hip_attend(ctx, &a);
}

/* x [T, D], y [T, D]; cache latent [pos0 + T, r_kv], k_pe [pos0 + T, rope] (device, the
 * caches' type). Trace: mla.q_nope, mla.q_pe [T, H, nope / rope], mla.latent [T, r_kv],
 * mla.k_pe [T, rope] (the new cache rows before the caches' rounding), mla.o [T, H, v]. */
static hylo_status mla_forward(hylo_hip_ctx *ctx, const hylo_mla_layer *L, hylo_mla_cache *cache,
                               int64_t pos0, const float *x, int64_t T, float *y, bool absorbed,
                               const hylo_tracer *tr, hylo_error *err)
{
    const hylo_mla_dims *d = &L->dims;
    if (T <= 0) return HYLO_OK;
    const int64_t H = d->heads, Hm = d->kv_heads, r = d->kv_rank, rope = d->rope;
    const int64_t dq = d->nope + rope, dkv = d->nope + d->v, len = pos0 + T;
    absorbed = absorbed && T == 1 && !L->w.k_norm;
    const double *freq = hylo_hip_find_f64(ctx, L->rope_inv_freq, "the MLA rope frequencies");
    const float *kv_b = absorbed ? hylo_hip_find(ctx, L->w.kv_b, "mla kv_b") : NULL;
    if (!freq || (absorbed && !kv_b)) return hylo_hip_status(ctx, err);
    /* one LAYER block: q_a [T, r_q], q [T, H, dq], latent [T, r], k_pe [T, rope],
     * o [T, H, v], then naive: kv [len, Hm, dkv], keys [len, Hm, dq] (k_norm) or [len, rope];
     * absorbed: q_cat [T, H, r + rope] */
    const int64_t common = T * d->q_rank + T * H * dq + T * (r + rope) + T * H * d->v;
    /* keys: rebuilt with a k_norm; else k_pe widened (fp32 context) or read as cached (bf16) */
    const int64_t keys = L->w.k_norm ? len * Hm * dq : ctx->bf16 ? 0 : len * rope;
    const int64_t half = ctx->bf16 ? (len * Hm * dkv + (L->w.k_norm ? keys : 0) + 1) / 2 : 0;
    const int64_t form = absorbed ? T * H * (r + rope) : len * Hm * dkv + keys + half;
    float *q_a = (float *)hylo_hip_workspace(ctx, HYLO_HIP_LAYER,
                                             (size_t)(common + form) * sizeof(float));
    if (!q_a) return hylo_hip_status(ctx, err);
    float *q = q_a + T * d->q_rank, *latent = q + T * H * dq, *k_pe = latent + T * r;
    float *o = k_pe + T * rope, *extra = o + T * H * d->v;
    mla_project(ctx, L, x, T, q_a, q, latent, k_pe);
    mla_rope_append(ctx, L, freq, kv_b, cache, T, pos0, q, latent, k_pe, extra);
    if (absorbed)
        mla_absorbed(ctx, L, kv_b, cache, extra, len, o);
    else
        mla_naive(ctx, L, freq, cache, q, T, len, extra, extra + len * Hm * dkv,
                  (uint16_t *)(extra + len * Hm * dkv + keys), o);
    const int64_t q_nope_shape[] = {T, H, d->nope}, q_pe_shape[] = {T, H, rope};
    const int64_t latent_shape[] = {T, r}, k_pe_shape[] = {T, rope}, o_shape[] = {T, H, d->v};
    hylo_hip_trace_slice(ctx, tr, "mla.q_nope", q, T * H, dq, 0, d->nope, 3, q_nope_shape);
    hylo_hip_trace_slice(ctx, tr, "mla.q_pe", q, T * H, dq, d->nope, rope, 3, q_pe_shape);
    hylo_hip_trace(ctx, tr, "mla.latent", latent, 2, latent_shape);
    hylo_hip_trace(ctx, tr, "mla.k_pe", k_pe, 2, k_pe_shape);
    hylo_hip_trace(ctx, tr, "mla.o", o, 3, o_shape);
    hylo_hip_linear(ctx, o, L->w.out, NULL, y, T, H * d->v, d->hidden);
    return hylo_hip_status(ctx, err);
}

hylo_status hylo_hip_mla_prefill(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                 int64_t pos0, const float *x, int64_t T, float *y,
                                 const hylo_tracer *tr, hylo_error *err)
{
    return mla_forward((hylo_hip_ctx *)ctx, layer, cache, pos0, x, T, y, false, tr, err);
}

hylo_status hylo_hip_mla_decode(void *ctx, const hylo_mla_layer *layer, hylo_mla_cache *cache,
                                int64_t pos0, const float *x, int64_t T, float *y,
                                const hylo_tracer *tr, hylo_error *err)
{
    return mla_forward((hylo_hip_ctx *)ctx, layer, cache, pos0, x, T, y, true, tr, err);
}
