/* mla.hip: Multi-head Latent Attention (spec sec. 3 and 6), the naive form over decompressed
 * K/V for prefills and the absorbed form over the latent cache for decode steps, as
 * ref/layers/mla.c (notation there: H query heads, Hm KV heads, g = h / (H / Hm), dq = nope +
 * rope, dkv = nope + v, W_UK[g] and W_UV[g] the blocks of kv_b). A layer with a k_norm, whose
 * keys are not linear in the latent, and a call of more than one token take the naive form in
 * both entries (the forms agree to rounding). */
#include "core/device.h"
#include "layers/hip_layers.h"

/* x [T, D] -> q [T, H, dq] at positions pos0 ..:
 *   q = q_b(q_a_norm?(q_a x)) or q_proj x ;  q_h <- q_norm?(q_h) ;  q_pe_h <- RoPE(q_pe_h)   */
static void mla_queries(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const double *freq,
                        const float *x, int64_t T, int64_t pos0, float *q_a, float *q)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, dq = d->nope + d->rope;
    if (d->q_rank > 0) {
        hylo_hip_linear(ctx, x, L->w.q_a, NULL, q_a, T, d->hidden, d->q_rank);
        if (L->w.q_a_norm) hylo_hip_rmsnorm(ctx, q_a, L->w.q_a_norm, q_a, T, d->q_rank, d->eps);
        hylo_hip_linear(ctx, q_a, L->w.q_b, NULL, q, T, d->q_rank, H * dq);
    } else {
        hylo_hip_linear(ctx, x, L->w.q_proj, NULL, q, T, d->hidden, H * dq);
    }
    if (L->w.q_norm) hylo_hip_rmsnorm(ctx, q, L->w.q_norm, q, T * H, dq, d->eps);
    hylo_hip_rope_rows(ctx, q + d->nope, T, H, d->rope, H * dq, dq, hylo_hip_pos_of(ctx, pos0),
                       freq, L->rope_scale, true);
}

/* Cache rows pos0 .. pos0 + T - 1 from x [T, D], computed in fp32 into latent [T, r] and
 * k_pe [T, rope] (ckv [T, r + rope] scratch) and stored in the caches' type:
 *   [c_kv | k_pe] = kv_a x ;  latent = kv_a_norm?(c_kv) ;  k_pe <- RoPE(k_pe, p) (raw with a
 *   k_norm)                                                                                 */
static void mla_append(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const double *freq,
                       hylo_mla_cache *cache, const float *x, int64_t T, int64_t pos0, float *ckv,
                       float *latent, float *k_pe)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t r = d->kv_rank, rope = d->rope;
    hylo_hip_linear(ctx, x, L->w.kv_a, NULL, ckv, T, d->hidden, r + rope);
    hylo_hip_copy_rows(ctx, latent, r, ckv, r + rope, T, r);
    hylo_hip_copy_rows(ctx, k_pe, rope, ckv + r, r + rope, T, rope);
    if (L->w.kv_a_norm) hylo_hip_rmsnorm(ctx, latent, L->w.kv_a_norm, latent, T, r, d->eps);
    const hylo_hip_pos first = hylo_hip_pos_of(ctx, pos0);
    if (!L->w.k_norm)
        hylo_hip_rope_rows(ctx, k_pe, T, 1, rope, rope, 0, first, freq, L->rope_scale, true);
    hylo_hip_cache_write_rows(ctx, cache->latent, first, r, latent, r, T, r);
    hylo_hip_cache_write_rows(ctx, cache->k_pe, first, rope, k_pe, rope, T, rope);
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

/* Absorbed attention of one token over positions 0 .. len - 1 into o [H, v] (q_cat [H, r + rope],
 * o_lat [H, r] scratch), per KV group g (a batch of Hm products over its `group` heads):
 *   q_cat[h, :r] = q~_h = W_UK[g]^T q_nope_h      Q~_g [group, r] = Q_nope,g [group, nope] W_UK[g]
 *   q_cat[h, r:] = q_pe_h
 *   o~ = attention of q_cat over [latent | k_pe], values the latents       o_lat [H, r]
 *   o_h = W_UV[g] o~_h                             O_g [group, v] = O~_g [group, r] W_UV[g]^T
 * with W_UK[g] = kv_b rows g dkv .. + nope and W_UV[g] the next v rows, both [., r]. */
static void mla_absorbed(hylo_hip_ctx *ctx, const hylo_mla_layer *L, const float *kv_b,
                         const hylo_mla_cache *cache, const float *q, int64_t len, float *q_cat,
                         float *o_lat, float *o)
{
    const hylo_mla_dims *d = &L->dims;
    const int64_t H = d->heads, Hm = d->kv_heads, group = H / Hm, r = d->kv_rank;
    const int64_t rope = d->rope, nope = d->nope, dq = nope + rope, dkv = nope + d->v;
    hylo_hip_gemm_batched(ctx, HYLO_F32, false, false, group, r, nope, 1.0f, q, dq, group * dq,
                          kv_b, r, dkv * r, 0.0f, q_cat, r + rope, group * (r + rope), Hm);
    hylo_hip_copy_rows(ctx, q_cat + r, r + rope, q + nope, dq, H, rope);
    hylo_hip_attend_args a = {};
    a.q = q_cat;
    a.na = a.nv = r;
    a.nb = rope;
    a.ka = a.v = cache->latent;
    a.kb = cache->k_pe;
    a.bf16 = ctx->bf16;
    a.ka_row = a.v_row = r;
    a.kb_row = rope;
    a.out = o_lat;
    a.T = 1;
    a.len = len;
    a.H = H;
    a.Hkv = 1;
    a.scale = L->softmax_scale;
    hylo_hip_attend(ctx, &a);
    hylo_hip_gemm_batched(ctx, HYLO_F32, false, true, group, d->v, r, 1.0f, o_lat, r, group * r,
                          kv_b + nope * r, r, dkv * r, 0.0f, o, d->v, group * d->v, Hm);
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
    /* one LAYER block: q_a [T, r_q], q [T, H, dq], ckv [T, r + rope], latent [T, r],
     * k_pe [T, rope], o [T, H, v], then naive: kv [len, Hm, dkv], keys [len, Hm, dq] (k_norm)
     * or [len, rope]; absorbed: q_cat [T, H, r + rope], o_lat [T, H, r] */
    const int64_t common = T * d->q_rank + T * H * dq + 2 * T * (r + rope) + T * H * d->v;
    /* keys: rebuilt with a k_norm; else k_pe widened (fp32 context) or read as cached (bf16) */
    const int64_t keys = L->w.k_norm ? len * Hm * dq : ctx->bf16 ? 0 : len * rope;
    const int64_t half = ctx->bf16 ? (len * Hm * dkv + (L->w.k_norm ? keys : 0) + 1) / 2 : 0;
    const int64_t form = absorbed ? T * H * (r + rope) + T * H * r : len * Hm * dkv + keys + half;
    float *q_a = (float *)hylo_hip_workspace(ctx, HYLO_HIP_LAYER,
                                             (size_t)(common + form) * sizeof(float));
    if (!q_a) return hylo_hip_status(ctx, err);
    float *q = q_a + T * d->q_rank, *ckv = q + T * H * dq, *latent = ckv + T * (r + rope);
    float *k_pe = latent + T * r, *o = k_pe + T * rope, *extra = o + T * H * d->v;
    mla_queries(ctx, L, freq, x, T, pos0, q_a, q);
    mla_append(ctx, L, freq, cache, x, T, pos0, ckv, latent, k_pe);
    if (absorbed)
        mla_absorbed(ctx, L, kv_b, cache, q, len, extra, extra + T * H * (r + rope), o);
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
